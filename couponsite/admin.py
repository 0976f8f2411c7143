"""Admin helpers shared by the apps."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """Admin paginator for huge tables: the planner's estimate instead of COUNT(*)."""

    @cached_property
    def count(self):
        from coupons.selectors import count_or_estimate

        return count_or_estimate(self.object_list)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never written here: state changes go through the services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
