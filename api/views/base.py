"""What every API view shares: the error answers, the lookup budget guard, paging, and
``KeyedView`` (authenticated by ``Authorization: Api-Key <key>``, rate-limited)."""

from __future__ import annotations

import math
import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.views import APIView

from coupons.services import CouponActionError
from couponsite.middleware import client_ip

from .. import idempotency, limits, services
from ..errors import ApiError

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
    """A refused coupon action: 409, or 404 when the coupon or customer does not exist
    or is another group's (``customer_id_unavailable``), 502 for a remote system that
    failed, 503 with Retry-After for one that is busy or paused."""
    if exc.code in ("coupon_not_found", "customer_not_found", "customer_id_unavailable"):
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


class KeyedSchema(AutoSchema):
    """Every POST and PUT: the ``Idempotency-Key`` header and its 409 and 422 answers."""

    def get_override_parameters(self):
        parameters = super().get_override_parameters()
        return [*parameters, idempotency.PARAMETER] if self.method in idempotency.METHODS else parameters

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is not None and self.method in idempotency.METHODS:
            responses = operation["responses"]
            error = responses["409"]["content"]  # every operation answers ERRORS
            for code, description in idempotency.RESPONSES.items():
                responses[code] = {"content": error, "description": description}
        return operation


class KeyedView(APIView):
    """Every endpoint: the key, the request limits (``api.limits``) and their headers."""

    # Every POST and PUT with an Idempotency-Key runs in one transaction with its record
    # (api.idempotency): dispatch, initial and handle_exception.

    budget = None
    idempotent = None
    idempotency_record = None
    schema = KeyedSchema()

    def dispatch(self, request, *args, **kwargs):
        self.idempotent = None  # the atomic block, entered by initial() once the key is known
        try:
            response = super().dispatch(request, *args, **kwargs)
        except BaseException as exc:
            if self.idempotent is not None:
                self.idempotent.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if self.idempotent is not None:
            try:
                idempotency.finish(self.idempotency_record, response)
            except BaseException as exc:  # the answer could not be stored: nothing commits
                self.idempotent.__exit__(type(exc), exc, exc.__traceback__)
                raise
            self.idempotent.__exit__(None, None, None)
        return response

    def handle_exception(self, exc):
        if isinstance(exc, idempotency.Replay):
            return exc.response
        return super().handle_exception(exc)

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
        if idempotency.wanted(request):
            # After the key's authentication, whose last-used write must not hold the
            # key's row for the whole request.
            self.idempotent = transaction.atomic()
            self.idempotent.__enter__()
            self.idempotency_record = idempotency.begin(request, request.user)

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


# --- coupons ------------------------------------------------------------------------------


CUSTOMER_PARAM = OpenApiParameter("customer", str, description="Whose coupon, for a generic code held by many")


# --- events and customers -----------------------------------------------------------------


# --- bulk operations ------------------------------------------------------------------------


