"""The JSON API (SPEC section 7), authenticated by ``Authorization: Api-Key <key>``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from coupons.models import Coupon, CouponStatus, Customer
from coupons.selectors import code_q
from coupons.services import CouponActionError

from .. import services
from ..errors import ApiError
from ..serializers import (
    BasketSerializer,
    CouponSerializer,
    ValidationResultSerializer,
)
from .base import CUSTOMER_PARAM, ERRORS, PAGE_PARAMETERS, KeyedView, Pages, page_of, refused


class CouponCursor(Pages):
    ordering = "-id"


class CouponListView(KeyedView):
    @extend_schema(
        parameters=[
            OpenApiParameter("code", str, description="Exact code"),
            OpenApiParameter("status", str, enum=[s.slug for s in CouponStatus]),
            OpenApiParameter("customer", str, description="Customer ID"),
            OpenApiParameter("pool", str, description="Pool id or external id"),
            *PAGE_PARAMETERS,
        ],
        responses={200: page_of("CouponPage", CouponSerializer(many=True)), **ERRORS},
        summary="Query coupons (newest first, cursor pagination)", operation_id="coupons_list",
    )
    def get(self, request):
        coupons = Coupon.objects.filter(pool__in=services.pools_for_key(request.user))
        params = request.query_params
        if code := params.get("code", "").strip():
            coupons = coupons.filter(code_q(code))
        if slug := params.get("status", ""):
            try:
                coupons = coupons.filter(status=CouponStatus.from_slug(slug))
            except KeyError:
                raise ApiError(f"Unknown status {slug!r}; use one of {', '.join(s.slug for s in CouponStatus)}.",
                               code="invalid", type="validation_error") from None
        if customer := params.get("customer", "").strip():
            coupons = coupons.filter(customer__external_id=customer)
        if reference := params.get("pool", "").strip():
            coupons = coupons.filter(pool=self.pool_or_404(reference))
        paginator = CouponCursor()
        if not code:
            page = paginator.paginate_queryset(coupons.select_related("pool", "customer", "terms__effective"), request, view=self)
            return paginator.get_paginated_response(CouponSerializer(page, many=True).data)
        # A query by code is a code lookup: an empty answer counts as a failed one.
        with self.lookup(params.get("customer", "")) as lookup:
            page = paginator.paginate_queryset(coupons.select_related("pool", "customer", "terms__effective"), request, view=self)
            if not page and not request.query_params.get(paginator.cursor_query_param):
                lookup.failed()
        return paginator.get_paginated_response(CouponSerializer(page, many=True).data)


class CouponDetailView(KeyedView):
    @extend_schema(parameters=[CUSTOMER_PARAM], responses={200: CouponSerializer, **ERRORS}, summary="One coupon by code", operation_id="coupons_retrieve")
    def get(self, request, code):
        customer_id = request.query_params.get("customer", "")
        try:
            with self.lookup(customer_id):
                customer = Customer.objects.filter(external_id=customer_id.strip()).first() if customer_id else None
                coupon = services.coupon_for_key(request.user, code, customer)
        except CouponActionError as exc:
            raise refused(exc) from None
        return Response(CouponSerializer(coupon).data)


class CouponValidateView(KeyedView):
    @extend_schema(request=BasketSerializer, responses={200: ValidationResultSerializer, **ERRORS},
                   summary="Can the coupon be used on this basket? Every reason if not, and the discount", operation_id="coupons_validate")
    def post(self, request, code):
        basket = BasketSerializer(data=request.data)
        basket.is_valid(raise_exception=True)
        try:
            with self.lookup(basket.validated_data.get("customer", "")) as lookup:
                result = services.coupon_validate(api_key=request.user, code=code, basket=basket.validated_data)
                if not result.valid:
                    lookup.failed()  # a code that exists but cannot be used: guessed, perhaps
        except CouponActionError as exc:
            raise refused(exc) from None
        return Response({
            "valid": result.valid,
            "reasons": [{"code": code_, "message": message} for code_, message in result.reasons],
            "discount": str(result.discount),
            "free_shipping": result.free_shipping,
            "coupon": CouponSerializer(result.coupon).data,
        })
