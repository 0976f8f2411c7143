"""The JSON API (SPEC section 7), authenticated by ``Authorization: Api-Key <key>``."""

from __future__ import annotations

import math
import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from coupons import services as coupon_services
from coupons.jobs.engine import QUEUE_UNREACHABLE
from coupons.models import Coupon, CouponStatus, Customer
from coupons.propagation import UpdateMethod, pool_update
from coupons.selectors import code_q
from coupons.services import CouponActionError
from couponsite.middleware import client_ip
from pools.services import pool_create

from . import limits, services
from .errors import ApiError
from .models import BulkOperation
from .serializers import (
    BasketSerializer,
    BulkErrorSerializer,
    BulkRequestSerializer,
    BulkStatusSerializer,
    ClaimSerializer,
    CouponSerializer,
    CustomerSerializer,
    EventResultSerializer,
    EventSerializer,
    PoolSerializer,
    PoolUpdateSerializer,
    ValidationResultSerializer,
)

ERROR = inline_serializer(
    "Error",
    {
        "status": serializers.CharField(default="error"),
        "error": inline_serializer(
            "ErrorDetail",
            {"type": serializers.CharField(), "code": serializers.CharField(), "message": serializers.CharField()},
        ),
    },
)
ERRORS = {code: OpenApiResponse(ERROR) for code in (400, 401, 403, 404, 409, 413, 415, 429, 502, 503)}


BROKEN_UTF8 = re.compile("%[89A-F][0-9A-F]")  # how Django re-escapes bytes that are not UTF-8


class _Lookup:
    """``with view.lookup(customer) as lookup:`` (see ``KeyedView.lookup``)."""

    def __init__(self, api_key, customer: str):
        self.api_key, self.customer = api_key, customer

    def __enter__(self):
        limits.lookup_guard(api_key=self.api_key, customer=self.customer)
        return self

    def failed(self, code: str = "", weight: int | None = 1) -> bool:
        """Count a failed lookup (unless ``code`` tells nothing of the code's existence),
        as ``weight`` failures (``None``: the whole budget); whether lookups are now
        locked out."""
        if code in LOOKUP_NEUTRAL:
            return False
        return limits.lookup_failed(api_key=self.api_key, customer=self.customer, weight=weight)

    def __exit__(self, kind, exc, traceback):
        if isinstance(exc, CouponActionError):
            self.failed(exc.code)
        return False


# Refusals that are not failed lookups: they tell nothing of the code, or (nothing_to_pay)
# that it is a usable gift card, as a success would.
LOOKUP_NEUTRAL = {"customer_required", "amount_invalid", "amount_not_allowed", "coupon_ambiguous", "nothing_to_pay"}


def refused(exc: CouponActionError) -> ApiError:
    """A refused coupon action: 409, or 404 when the coupon does not exist, 502 for a
    remote system that failed, 503 with Retry-After for one that is busy or paused."""
    if exc.code in ("coupon_not_found", "customer_not_found"):
        return ApiError(str(exc), code=exc.code, type="not_found", status_code=404)
    if exc.retry_after is not None and exc.code.startswith("remote_"):
        error = ApiError(str(exc), code=exc.code, type="remote_error", status_code=503)
        error.wait = exc.retry_after  # DRF's handler sends it as Retry-After
        return error
    if exc.code.startswith("remote_"):
        return ApiError(str(exc), code=exc.code, type="remote_error", status_code=502)
    return ApiError(str(exc), code=exc.code, type="refused", status_code=409)


def model_errors(exc: DjangoValidationError) -> ApiError:
    details = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    details = {("type" if k == "coupon_type" else k): v for k, v in details.items()}
    field, messages = next(iter(details.items()))
    message = messages[0] if field in ("non_field_errors", "__all__") else f"{field}: {messages[0]}"
    return ApiError(message, code="invalid", type="validation_error", details=details)


class KeyedView(APIView):
    """Every endpoint: the key, the request limits (``api.limits``) and their headers."""

    budget = None

    def initial(self, request, *args, **kwargs):
        try:
            try:
                super().initial(request, *args, **kwargs)
            except (AuthenticationFailed, NotAuthenticated):
                limits.request_limits(ip=client_ip(request))  # guessing keys counts against the address
                raise
            self.budget = limits.request_limits(ip=client_ip(request), api_key=request.user)
        except limits.RateLimited as exc:
            self.budget = getattr(exc, "budget", None)
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.budget is not None:
            response["X-RateLimit-Limit"] = str(self.budget.limit)
            response["X-RateLimit-Remaining"] = str(max(0, self.budget.remaining))
            response["X-RateLimit-Reset"] = str(math.ceil(self.budget.reset))
        return response

    def lookup(self, customer: str = ""):
        """Around a code lookup: refused while the key or customer is locked out; a
        failed lookup (``CouponActionError``, or ``failed()``) counts against them."""
        return _Lookup(self.request.user, (customer or "").strip())

    def pool_or_404(self, reference: str):
        pool = services.pool_for_key(self.request.user, reference)
        if pool is None:
            raise ApiError(f"No coupon pool has the id or external id {reference!r}.", code="pool_not_found",
                           type="not_found", status_code=404)
        return pool


# --- pools --------------------------------------------------------------------------------


class Pages(CursorPagination):
    """Cursor pages of up to 1,000 (``limit``); a cursor that cannot be decoded is a 400
    (DRF answers 404 "Invalid cursor", as if the list did not exist)."""

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000

    def get_page_size(self, request):
        """``limit`` is a whole number from 1 to 1,000; anything else is a 400 (DRF would
        quietly use the default)."""
        limit = request.query_params.get(self.page_size_query_param)
        if limit is None:
            return self.page_size
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= self.max_page_size):
            raise ApiError(f"limit must be a whole number from 1 to {self.max_page_size:,}; {limit[:20]!r} is not.",
                           code="invalid_limit", type="validation_error")
        return int(limit)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
            # Every list here is ordered by id: a position is a whole number (DRF does not check).
            if cursor is not None and cursor.position is not None and not (
                cursor.position.isascii() and cursor.position.isdigit() and int(cursor.position) < 2**63
            ):
                raise NotFound
            return cursor
        except NotFound:
            raise ApiError("This cursor is not valid; follow the next or previous link of a page.",
                           code="invalid_cursor", type="validation_error") from None


class PoolCursor(Pages):
    ordering = "id"


PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="Page size (at most 1000)"),
    OpenApiParameter("cursor", str, description="From the previous page's next/previous link"),
]


def page_of(name: str, serializer) -> serializers.Serializer:
    """The schema of a cursor page (``CursorPagination.get_paginated_response``)."""
    return inline_serializer(name, {
        "next": serializers.URLField(allow_null=True, help_text="The next page, or null"),
        "previous": serializers.URLField(allow_null=True),
        "results": serializer,
    })


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


# --- coupons ------------------------------------------------------------------------------


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


CUSTOMER_PARAM = OpenApiParameter("customer", str, description="Whose coupon, for a generic code held by many")


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


# --- events and customers -----------------------------------------------------------------


class EventView(KeyedView):
    @extend_schema(
        request=EventSerializer,
        responses={200: inline_serializer("EventAccepted", {
            "status": serializers.CharField(default="ok"), "action": serializers.CharField(),
            "auto_redeem": serializers.BooleanField(allow_null=True), "coupons": EventResultSerializer(many=True),
        }), **ERRORS},
        summary="Record a coupon_redeem or checkout event", operation_id="events_create",
    )
    def post(self, request):
        serializer = EventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            with self.lookup(data["customer"]) as lookup:
                outcome = services.event_record(
                    api_key=request.user, customer_id=data["customer"], action=data["action"], data=data["data"],
                    refused=lookup.failed,
                )
        except CouponActionError as exc:
            raise refused(exc) from None
        return Response({
            "status": "ok",
            "action": outcome.action,
            "auto_redeem": outcome.auto_redeem,
            "coupons": [
                {"code": r.code, "result": r.result, **({"message": r.message} if r.message else {}),
                 **({"coupon": CouponSerializer(r.coupon).data} if r.coupon else {})}
                for r in outcome.results
            ],
        })


class CustomerView(KeyedView):
    @extend_schema(request=CustomerSerializer, responses={200: CustomerSerializer, 201: CustomerSerializer, **ERRORS},
                   summary="Create or update a customer", operation_id="customers_put")
    def put(self, request, customer_id):
        serializer = CustomerSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer_id = customer_id.strip()
        if not customer_id or len(customer_id) > 128:
            raise ApiError("A customer ID has 1 to 128 characters.", code="invalid", type="validation_error")
        if BROKEN_UTF8.search(customer_id):
            # Django hands bytes that are not UTF-8 on as their escapes ("%FF%FE"): such an
            # ID would be created as that text.
            raise ApiError("The customer ID in the address is not valid UTF-8.", code="invalid", type="validation_error")
        data = serializer.validated_data
        try:
            customer, created = services.customer_put(
                api_key=request.user, external_id=customer_id, email=data.get("email"), currency=data.get("currency")
            )
        except CouponActionError as exc:
            raise refused(exc) from None
        return Response(CustomerSerializer(customer).data, status=201 if created else 200)


# --- bulk operations ------------------------------------------------------------------------


class BulkOperationView(KeyedView):
    @extend_schema(
        parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH, enum=BulkOperation.Action.values)],
        request=BulkRequestSerializer, responses={202: BulkStatusSerializer, **ERRORS},
        summary="Queue a bulk add, assign or unassign of up to 50,000 coupons", operation_id="bulk_create",
    )
    def post(self, request, reference, action):
        if action not in BulkOperation.Action.values:
            raise ApiError(f"Unknown bulk action {action!r}; use add, assign or unassign.", code="not_found",
                           type="not_found", status_code=404)
        pool = self.pool_or_404(reference)
        serializer = BulkRequestSerializer(data=request.data, context={"action": action})
        serializer.is_valid(raise_exception=True)
        if action == BulkOperation.Action.ADD:
            # Codes are unique across all pools: adding one that another group's pool holds
            # would confirm that it exists. Such a request is refused as a failed lookup
            # that spends the key's whole budget (one such answer per lock-out window).
            with self.lookup() as lookup:
                if services.codes_held_elsewhere(request.user, [item["code"] for item in serializer.validated_data["coupons"]]):
                    lookup.failed(weight=None)
                    limits.lookup_guard(api_key=request.user)
        try:
            with transaction.atomic():
                operation = services.bulk_start(
                    api_key=request.user, pool=pool, action=action, items=serializer.validated_data["coupons"]
                )
        except CouponActionError as exc:
            raise refused(exc) from None
        if operation.dispatch_failed:  # as the row says: it runs once the queue is back
            operation.message = QUEUE_UNREACHABLE
        return Response(BulkStatusSerializer(operation).data, status=status.HTTP_202_ACCEPTED)


class BulkStatusView(KeyedView):
    def operation_or_404(self, batch_id: int) -> BulkOperation:
        operation = BulkOperation.objects.filter(
            pk=batch_id, pool__in=services.pools_for_key(self.request.user)
        ).defer("items").first()
        if operation is None:
            raise ApiError(f"No bulk operation #{batch_id}.", code="not_found", type="not_found", status_code=404)
        return operation

    @extend_schema(responses={200: BulkStatusSerializer, **ERRORS}, summary="A bulk operation's progress", operation_id="bulk_status")
    def get(self, request, batch_id):
        return Response(BulkStatusSerializer(self.operation_or_404(batch_id)).data)


class BulkErrorsView(BulkStatusView):
    @extend_schema(responses={200: BulkErrorSerializer(many=True), **ERRORS}, summary="The items a bulk operation refused", operation_id="bulk_errors")
    def get(self, request, batch_id):
        operation = self.operation_or_404(batch_id)
        return Response(BulkErrorSerializer(operation.errors.all()[:50_000], many=True).data)


