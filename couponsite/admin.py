"""Admin helpers shared by the apps."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from .counting import count_or_estimate


class EstimatedCountPaginator(Paginator):
    """Admin paginator for huge tables: the planner's estimate instead of COUNT(*)."""

    @cached_property
    def count(self):
        return count_or_estimate(self.object_list)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never written here: state changes go through the services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ScopedAdmin(admin.ModelAdmin):
    """Non-superuser staff list, open and pick only what the access policy lets them
    see (``pools.access``, ``coupons.access``): ``scope(user)`` is the condition on this
    model's rows; other groups' rows are as if they did not exist (404 on their pages)."""

    scope = None  # staticmethod(user -> Q)

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        return rows if self.scope is None else rows.filter(self.scope(request.user))


class ScopedReadOnlyAdmin(ScopedAdmin, ReadOnlyAdmin):
    pass
