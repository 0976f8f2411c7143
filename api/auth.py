"""``Authorization: Api-Key <key>``: DRF authentication by API key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from couponsite.rawsql import fetch_instance, select_list

from .models import ApiKey

KEYWORD = "Api-Key"
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(prefix, key): ``key`` is ``<prefix>.<secret>``."""
    prefix = secrets.token_hex(4)
    return prefix, f"{prefix}.{secrets.token_urlsafe(32)}"


def key_lookup(key: str) -> ApiKey | None:
    prefix, _, secret = key.partition(".")
    if not prefix or not secret:
        return None
    # Every request runs this: one raw query (the ORM's query building cost more than the
    # database), with whether the key is limited to groups.
    api_key = fetch_instance(
        ApiKey,
        f"SELECT {select_list(ApiKey, 'k')}, "
        "EXISTS (SELECT 1 FROM api_apikey_groups g WHERE g.apikey_id = k.id) AS has_groups "
        "FROM api_apikey k WHERE k.prefix = %s",
        [prefix], extra=("has_groups",),
    )
    if api_key is not None:
        api_key.has_groups = bool(api_key.has_groups)  # SQLite answers 0 or 1
    if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_key(key)):
        return None
    return api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, key = header.partition(" ")
        if keyword != KEYWORD or not key.strip():
            raise exceptions.AuthenticationFailed('Send the header "Authorization: Api-Key <key>".')
        api_key = key_lookup(key.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("This API key is not valid.")
        if not api_key.is_active:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        now = timezone.now()
        if api_key.last_used_at is None or api_key.last_used_at < now - LAST_USED_EVERY:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        return api_key, api_key

    def authenticate_header(self, request):
        return KEYWORD


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.user, ApiKey)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """The schema's security scheme for ``Authorization: Api-Key <key>``."""

    target_class = "api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "The header value is `Api-Key <key>`.",
        }
