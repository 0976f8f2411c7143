"""Every error as ``{"status": "error", "error": {"type", "code", "message"}}``."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from couponsite.middleware import error_body

from .errors import TYPES, ApiError

log = logging.getLogger(__name__)


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
        return "Invalid request."
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "Invalid request."
    return str(detail)




def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = ApiError(f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.",
                       code="body_too_large", status_code=413)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_handler(exc, context)
    if response is None:
        # A bug: logged with its traceback, answered in the API's format.
        log.error("Unexpected error in %s", context.get("view").__class__.__name__, exc_info=exc)
        return Response(error_body("server_error", "internal_error", "Something went wrong on our side; it has been logged."),
                        status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, ApiError):
        body = error_body(exc.type, exc.error_code, str(exc.detail), exc.details)
    else:
        type_, code = next((v for k, v in TYPES.items() if isinstance(exc, k)), ("request_error", "error"))
        details = exc.detail if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict) else None
        body = error_body(type_, code, _first_message(exc.detail), details)
    response.data = body
    return response


@csrf_exempt  # an API client has no CSRF token: any method on an unknown URL is a JSON 404
def not_found_view(request, exception=None):
    """404 for unknown /api/ URLs, in the API's error format."""
    return JsonResponse(error_body("not_found", "not_found", "No such endpoint."), status=status.HTTP_404_NOT_FOUND)


