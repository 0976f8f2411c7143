"""The JSON API (SPEC section 7), authenticated by ``Authorization: Api-Key <key>``."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from coupons.jobs.engine import QUEUE_UNREACHABLE
from coupons.services import CouponActionError

from .. import bulk, limits, services
from ..errors import ApiError
from ..models import BulkOperation
from ..serializers import (
    BulkErrorSerializer,
    BulkRequestSerializer,
    BulkStatusSerializer,
    CouponSerializer,
    CustomerSerializer,
    EventResultSerializer,
    EventSerializer,
)
from .base import BROKEN_UTF8, ERRORS, KeyedView, model_errors, refused


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
        if BROKEN_UTF8.search(customer_id):
            # Django hands bytes that are not UTF-8 on as their escapes ("%FF%FE"): such an
            # ID would be created as that text.
            raise ApiError("The customer ID in the address is not valid UTF-8.", code="invalid", type="validation_error")
        data = serializer.validated_data
        try:
            customer, created = services.customer_put(
                api_key=request.user, external_id=customer_id, email=data.get("email"), currency=data.get("currency")
            )
        except DjangoValidationError as exc:  # the customer's fields' rules (coupons.services.customer_clean)
            named = {("id" if field == "external_id" else field): errors for field, errors in exc.message_dict.items()}
            raise model_errors(DjangoValidationError(named)) from None
        except CouponActionError as exc:
            raise refused(exc) from None
        return Response(CustomerSerializer(customer).data, status=201 if created else 200)


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
                operation = bulk.bulk_start(
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
