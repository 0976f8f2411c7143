"""The JSON API (SPEC section 7), authenticated by ``Authorization: Api-Key <key>``."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from coupons import services as coupon_services
from coupons.propagation import UpdateMethod, pool_update
from coupons.services import CouponActionError
from pools.services import pool_create

from .. import services
from ..errors import ApiError
from ..serializers import (
    ClaimSerializer,
    CouponSerializer,
    PoolSerializer,
    PoolUpdateSerializer,
)
from .base import ERRORS, PAGE_PARAMETERS, KeyedView, Pages, model_errors, page_of, refused


class PoolCursor(Pages):
    ordering = "id"


class PoolListView(KeyedView):
    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: page_of("PoolPage", PoolSerializer(many=True)), **ERRORS},
                   summary="List coupon pools (oldest first, cursor pagination)", operation_id="pools_list")
    def get(self, request):
        pools = services.pools_for_key(request.user).select_related("user_group").prefetch_related("stores", "products")
        paginator = PoolCursor()
        page = paginator.paginate_queryset(pools, request, view=self)
        return paginator.get_paginated_response(PoolSerializer(page, many=True).data)

    @extend_schema(request=PoolSerializer, responses={201: PoolSerializer, **ERRORS}, summary="Create a coupon pool", operation_id="pools_create")
    def post(self, request):
        serializer = PoolSerializer(data=request.data, context={"api_key": request.user})
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        groups = list(request.user.groups.all())
        if groups and fields.get("user_group") is None:
            if len(groups) > 1:
                raise ApiError("This API key is limited to several user groups: name one in user_group.",
                               code="user_group_required", type="validation_error")
            fields["user_group"] = groups[0]
        try:
            pool = pool_create(actor=None, **fields)
        except DjangoValidationError as exc:
            raise model_errors(exc) from None
        return Response(PoolSerializer(pool).data, status=status.HTTP_201_CREATED)


class PoolDetailView(KeyedView):
    @extend_schema(responses={200: PoolSerializer, **ERRORS}, summary="A coupon pool by id or external id", operation_id="pools_retrieve")
    def get(self, request, reference):
        return Response(PoolSerializer(self.pool_or_404(reference)).data)


class PoolUpdateView(KeyedView):
    @extend_schema(
        request=PoolUpdateSerializer,
        responses={200: inline_serializer("PoolUpdated", {
            "pool": PoolSerializer(), "update_method": serializers.CharField(),
            "coupons_updated": serializers.IntegerField(), "message": serializers.CharField(),
        }), **ERRORS},
        summary="Update a coupon pool; update_method decides which existing coupons follow", operation_id="pools_update",
    )
    def post(self, request, reference):
        pool = self.pool_or_404(reference)
        serializer = PoolUpdateSerializer(pool, data=request.data, partial=True, context={"api_key": request.user})
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        # partial=True skips defaults: state them here.
        method, matching = fields.pop("update_method", UpdateMethod.NONE), fields.pop("update_matching", False)
        try:
            pool, propagation = pool_update(pool=pool, actor=None, update_method=method, matching=matching, **fields)
        except DjangoValidationError as exc:
            raise model_errors(exc) from None
        return Response({
            "pool": PoolSerializer(pool).data,
            "update_method": method,
            "coupons_updated": propagation.changed if propagation else 0,
            "message": propagation.message() if propagation else "No coupon property changed.",
        })


class PoolClaimView(KeyedView):
    @extend_schema(request=ClaimSerializer, responses={201: CouponSerializer, 200: CouponSerializer, **ERRORS},
                   description="201 with the coupon issued; 200 when an aggregated pool answers a repeat claim "
                   "with the coupon the customer holds already.",
                   summary="Issue a coupon of the pool to a customer", operation_id="pools_claim")
    def post(self, request, reference):
        pool = self.pool_or_404(reference)
        serializer = ClaimSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            coupon = coupon_services.coupon_claim_for(
                pool=pool, external_id=data["customer"], email=data.get("email", ""),
                currency=data.get("currency", ""), actor=services.actor_of(request.user),
            )
        except CouponActionError as exc:
            raise refused(exc) from None
        # An aggregated pool answers a repeat claim with the coupon the customer holds.
        again = coupon.claims > 1
        return Response(CouponSerializer(coupon).data, status=status.HTTP_200_OK if again else status.HTTP_201_CREATED)
