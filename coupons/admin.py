from django.contrib import admin

from couponsite.admin import EstimatedCountPaginator, ScopedAdmin, ScopedReadOnlyAdmin
from pools.access import pool_scoped

from .access import visible_coupons, visible_customers, visible_events, visible_jobs
from .models import Coupon, CouponJob, Customer, CustomerEvent, ExportJob, GenerationBatch, GiftCardRedemption


@admin.register(Coupon)
class CouponAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(visible_coupons)
    list_display = ("code", "pool", "status", "customer", "claimed_at", "expires_at", "usages")
    list_select_related = ("pool", "customer")
    search_fields = ("=code",)
    raw_id_fields = ("pool", "terms", "customer")
    paginator = EstimatedCountPaginator
    show_full_result_count = False


@admin.register(Customer)
class CustomerAdmin(ScopedAdmin):
    scope = staticmethod(visible_customers)
    list_display = ("external_id", "email", "currency", "created_at")
    search_fields = ("=external_id", "email")
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def has_delete_permission(self, request, obj=None):
        return False  # customers carry their coupons and event history


@admin.register(CustomerEvent)
class CustomerEventAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(visible_events)
    list_display = ("created_at", "action", "customer", "coupon", "actor_kind", "actor_label")
    list_select_related = ("customer", "coupon")
    raw_id_fields = ("customer", "coupon", "pool", "actor_user")
    paginator = EstimatedCountPaginator
    show_full_result_count = False


@admin.register(GiftCardRedemption)
class GiftCardRedemptionAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(lambda user: pool_scoped(user, "coupon__pool"))
    list_display = ("coupon", "amount", "balance_before", "created_at", "reversed_at")
    raw_id_fields = ("coupon",)


@admin.register(CouponJob)
class CouponJobAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(lambda user: visible_jobs(CouponJob, user))
    list_display = ("id", "kind", "pool", "status", "processed", "total", "applied", "created_at", "finished_at")
    list_filter = ("kind", "status")


@admin.register(GenerationBatch)
class GenerationBatchAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(lambda user: visible_jobs(GenerationBatch, user))
    list_display = ("id", "pool", "total", "processed", "status", "created_by", "created_at", "finished_at")
    list_filter = ("status",)


@admin.register(ExportJob)
class ExportJobAdmin(ScopedReadOnlyAdmin):
    scope = staticmethod(lambda user: visible_jobs(ExportJob, user))
    list_display = ("id", "pool", "status", "processed", "total", "compress", "created_by", "created_at", "expires_at")
    list_filter = ("status",)
