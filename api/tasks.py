from celery import shared_task

from couponsite.dberrors import RETRYABLE

from .idempotency import purge_expired


@shared_task(autoretry_for=RETRYABLE, retry_backoff=True, max_retries=3)
def purge_idempotency_records() -> int:
    """Beat, hourly: the Idempotency-Key records past their 24 hours."""
    return purge_expired()
