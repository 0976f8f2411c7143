from django.db.models import Q, QuerySet

from pools.models import CouponPool, PoolSource
from pools.selectors import pool_list_visible

from .models import ImportJob


def imports_visible(*, user) -> QuerySet[ImportJob]:
    """Imports into pools the user may see, and the user's own uploads not configured yet."""
    jobs = ImportJob.objects.select_related("pool", "created_by")
    if user.is_superuser:
        return jobs
    return jobs.filter(Q(pool__in=pool_list_visible(user=user)) | Q(pool__isnull=True, created_by=user))


def upload_pools(*, user) -> QuerySet[CouponPool]:
    return pool_list_visible(user=user).filter(source=PoolSource.UPLOADED).order_by("name")
