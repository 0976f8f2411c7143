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

log = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with its own type and code."""

    def __init__(self, message: str, *, code: str, type: str = "request_error", status_code: int = 400, details=None):
        super().__init__(message, code)
        self.status_code, self.type, self.error_code, self.details = status_code, type, code, details


TYPES = {
    exceptions.ValidationError: ("validation_error", "invalid"),
    exceptions.ParseError: ("request_error", "malformed_json"),
    exceptions.AuthenticationFailed: ("authentication_error", "invalid_api_key"),
    exceptions.NotAuthenticated: ("authentication_error", "api_key_required"),
    exceptions.PermissionDenied: ("permission_error", "forbidden"),
    exceptions.NotFound: ("not_found", "not_found"),
    exceptions.MethodNotAllowed: ("request_error", "method_not_allowed"),
    exceptions.NotAcceptable: ("request_error", "not_acceptable"),
    exceptions.UnsupportedMediaType: ("request_error", "unsupported_media_type"),
    exceptions.Throttled: ("request_error", "throttled"),
}


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


