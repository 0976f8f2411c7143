from celery import shared_task
from django.db import OperationalError

from . import jobs
from .expiry import coupons_expire_due


@shared_task(bind=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def run_coupon_job(self, job_id: int) -> None:
    jobs.job_run(job_id=job_id)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def expire_coupons() -> int:
    return coupons_expire_due()
