from celery import shared_task

from couponsite.dberrors import RETRYABLE

from .expiry import coupons_expire_due
from .jobs.tasks import purge_jobs, run_job, sweep_jobs  # noqa: F401 - registered with the worker


@shared_task(autoretry_for=RETRYABLE, retry_backoff=True, max_retries=3)
def expire_coupons() -> int:
    return coupons_expire_due()
