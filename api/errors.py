"""The API's errors: ``ApiError`` and the type and code of each of DRF's (answered by
``api.handlers``)."""

from __future__ import annotations

from rest_framework import exceptions


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


