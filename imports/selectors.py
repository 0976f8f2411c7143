from django.db.models import QuerySet

from coupons.jobs.selectors import jobs_visible
from pools.models import CouponPool, PoolSource
from pools.selectors import pool_list_visible

from .models import ImportJob


def imports_visible(*, user) -> QuerySet[ImportJob]:
    """Imports into pools the user may see, and the user's own uploads not configured yet."""
    return jobs_visible(ImportJob, user=user).select_related("pool", "created_by")


def upload_pools(*, user) -> QuerySet[CouponPool]:
    return pool_list_visible(user=user).filter(source=PoolSource.UPLOADED).order_by("name")
