"""The Management UI's 403 and 404 pages (``handler403`` / ``handler404`` in
``couponsite.urls``, and ``CSRF_FAILURE_VIEW`` for a form sent from a stale page):
styled, with the menu, a sentence saying what happened and a way back. The JSON API
answers its own errors (``api.handlers``).

The 404 says the same for a page that does not exist and for a pool, coupon, customer
or job of a group the user is not in (``pools.access``): it never tells them apart.
htmx requests get the same page; ``static/js/htmx_errors.js`` shows its
``data-error-title`` and ``data-error-message`` in the dialog or the page that asked.
"""

from urllib.parse import urlsplit

from django.core.exceptions import DisallowedHost
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme


def back_url(request) -> str:
    """The page the user came from, when it is one of this site's other pages."""
    referer = request.META.get("HTTP_REFERER", "")
    if not referer:
        return ""
    try:
        host = request.get_host()
    except DisallowedHost:
        return ""
    if not url_has_allowed_host_and_scheme(referer, allowed_hosts={host}, require_https=request.is_secure()):
        return ""
    return referer if urlsplit(referer).path != request.path else ""


def permission_denied(request, exception=None):
    return render(request, "403.html", {"back_url": back_url(request)}, status=403)


def page_not_found(request, exception=None):
    return render(request, "404.html", {"back_url": back_url(request)}, status=404)


def csrf_failure(request, reason=""):
    """A form whose CSRF token no longer matches (sent after logging out and in again,
    or from a page open in another session): nothing was done."""
    return render(request, "403_csrf.html", {"back_url": back_url(request)}, status=403)
