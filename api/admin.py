from django.contrib import admin
from django.db.models import Q
from django.template.response import TemplateResponse
from django.utils import timezone

from coupons.access import visible_jobs
from couponsite.admin import ScopedReadOnlyAdmin
from couponsite.wording import counted
from pools.access import groups_assignable, pool_scoped

from .auth import hash_key, new_key
from .models import ApiKey, BulkOperation, BulkOperationError, LookupLockout
from .ui import keys_manageable


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    filter_horizontal = ("groups",)
    fields = ("name", "groups", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_queryset(self, request):
        return keys_manageable(request.user)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups":
            kwargs["queryset"] = groups_assignable(request.user)
            kwargs["required"] = not request.user.is_superuser
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.prefix, request._new_api_key = new_key()
            obj.key_hash = hash_key(request._new_api_key)
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        # The key is shown on this response only, never in a redirect's message cookie.
        response = TemplateResponse(request, "api/admin_new_key.html", {
            **self.admin_site.each_context(request), "api_key": obj, "key": request._new_api_key,
            "opts": self.model._meta, "title": "API key created",
        })
        response["Cache-Control"] = "no-store"
        return response

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the key's history stays

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{counted(count, 'API key', 'API keys')} revoked.")


@admin.register(BulkOperation)
class BulkOperationAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(lambda user: visible_jobs(BulkOperation, user))
    list_display = ("id", "pool", "action", "status", "total", "succeeded", "failed", "created_at")
    list_filter = ("action", "status")
    exclude = ("items",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("items")  # up to 50,000 items, never shown


@admin.register(BulkOperationError)
class BulkOperationErrorAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(lambda user: pool_scoped(user, "operation__pool"))
    list_display = ("operation", "index", "code", "error_code", "message")
    raw_id_fields = ("operation",)


@admin.register(LookupLockout)
class LookupLockoutAdmin(ScopedReadOnlyAdmin):
    """Keys and customers locked out of code lookups (guessing), newest first."""

    scope = staticmethod(lambda user: Q(api_key__in=keys_manageable(user)))

    list_display = ("created_at", "scope", "api_key", "customer", "failures", "until")
    list_filter = ("scope",)
    list_select_related = ("api_key",)
    search_fields = ("customer", "api_key__name", "api_key__prefix")
