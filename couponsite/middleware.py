from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpResponseBadRequest, JsonResponse


def error_body(type: str, code: str, message: str, details=None) -> dict:
    """The JSON API's error envelope (one shape for every error it answers)."""
    error = {"type": type, "code": code, "message": message}
    if details:
        error["details"] = details
    return {"status": "error", "error": error}


def is_api(request) -> bool:
    return request.path_info.startswith("/api/")


def client_ip(request) -> str:
    """The client's address: behind ``TRUSTED_PROXIES`` proxies, the address the
    outermost of them saw (from X-Forwarded-For); else the connection's."""
    proxies = settings.TRUSTED_PROXIES
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies and forwarded:
        return forwarded[-min(proxies, len(forwarded))]
    return request.META.get("REMOTE_ADDR", "")


class RequestHygieneMiddleware:
    """NUL characters in the address, the query or a form's fields (PostgreSQL refuses
    them in text) are refused before any view sees them, with a clear 400 (the JSON
    envelope under ``/api/``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        problem = self.problem(request)
        if problem is None:
            return self.get_response(request)
        if is_api(request):
            return JsonResponse(error_body("validation_error", "invalid", problem), status=400)
        return HttpResponseBadRequest(problem, content_type="text/plain; charset=utf-8")

    @staticmethod
    def problem(request) -> str | None:
        if "\x00" in request.path_info:
            return "NUL characters are not allowed in addresses."
        if any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()):
            return "NUL characters are not allowed in the query."
        # The API reads JSON only (a form body is its 415); a page's form is checked here.
        if request.method == "POST" and not is_api(request) and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"
        ):
            if any("\x00" in key or any("\x00" in v for v in values) for key, values in request.POST.lists()):
                return "NUL characters are not allowed in a form."
        return None


class LoginRequiredExceptApiMiddleware(LoginRequiredMiddleware):
    """Every page needs a login, except the JSON API (``/api/``), which authenticates
    each request by API key and answers in JSON, never with a redirect to the login."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if is_api(request):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
