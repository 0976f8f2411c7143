from django.contrib import admin

from couponsite.admin import ScopedReadOnlyAdmin

from .access import groups_assignable, pool_scoped, visible_pools
from .models import CouponPool, CouponTerms, ModuleSettings, Product, Store
from .services import pool_terms_sync


@admin.register(CouponPool)
class CouponPoolAdmin(admin.ModelAdmin):
    """Pools are never deleted: not here, not in the UI, not through the API."""

    list_display = ("name", "external_id", "source", "coupon_type", "value", "user_group")
    list_filter = ("source", "coupon_type", "user_group")
    search_fields = ("name", "external_id", "pattern")
    filter_horizontal = ("stores", "products")
    readonly_fields = ("current_terms", "generation_started_at", "created_at", "updated_at", "created_by")

    def get_list_filter(self, request):
        # Group names of other teams are not for everyone's eyes.
        return self.list_filter if request.user.is_superuser else ("source", "coupon_type")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user_group" and not request.user.is_superuser:
            kwargs["queryset"] = groups_assignable(request.user)  # the Management UI's rule
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request):
        # Staff users outside a pool's group must not see it here either.
        return super().get_queryset(request).filter(visible_pools(request.user))

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Stores and products are saved only now: snapshot the terms after them.
        # Existing coupons keep their terms (the Management UI offers the other methods).
        pool_terms_sync(pool=form.instance)


@admin.register(ModuleSettings)
class ModuleSettingsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "auto_redeem", "updated_at")

    def has_add_permission(self, request):
        # One row at most, and only for staff with the permission to add it.
        return super().has_add_permission(request) and not ModuleSettings.objects.exists()

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


@admin.register(CouponTerms)
class CouponTermsAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(pool_scoped)
    list_display = ("pool", "version", "effective", "coupon_type", "value", "currency", "created_at")
    list_filter = ("coupon_type",)
