from django.contrib import admin

from .models import CouponPool, ModuleSettings, Product, Store
from .selectors import pool_visibility_filter


@admin.register(CouponPool)
class CouponPoolAdmin(admin.ModelAdmin):
    """Pools are never deleted: not here, not in the UI, not through the API."""

    list_display = ("name", "external_id", "source", "coupon_type", "value", "user_group")
    list_filter = ("source", "coupon_type", "user_group")
    search_fields = ("name", "external_id", "pattern")
    filter_horizontal = ("stores", "products")
    readonly_fields = ("generation_started_at", "created_at", "updated_at", "created_by")

    def get_queryset(self, request):
        # Staff users outside a pool's group must not see it here either.
        return super().get_queryset(request).filter(pool_visibility_filter(request.user))

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(ModuleSettings)
class ModuleSettingsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "auto_redeem", "updated_at")

    def has_add_permission(self, request):
        return not ModuleSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ("name", "external_id")
    search_fields = ("name", "external_id")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "sku")
    search_fields = ("name", "sku")
