from django.contrib import admin, messages
from django.utils import timezone

from couponsite.admin import ReadOnlyAdmin

from .auth import hash_key, new_key
from .models import ApiKey, BulkOperation, BulkOperationError


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    filter_horizontal = ("groups",)
    fields = ("name", "groups", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.prefix, key = new_key()
            obj.key_hash = hash_key(key)
            obj.created_by = request.user
            super().save_model(request, obj, form, change)
            self.message_user(
                request, f"The new API key is {key} \u2014 copy it now: it is stored hashed and is not shown again.",
                messages.WARNING,
            )
            return
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the key's history stays

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} API key(s) revoked.")


@admin.register(BulkOperation)
class BulkOperationAdmin(ReadOnlyAdmin):
    list_display = ("id", "pool", "action", "status", "total", "succeeded", "failed", "created_at")
    list_filter = ("action", "status")
    exclude = ("items",)


@admin.register(BulkOperationError)
class BulkOperationErrorAdmin(ReadOnlyAdmin):
    list_display = ("operation", "index", "code", "error_code", "message")
    raw_id_fields = ("operation",)
