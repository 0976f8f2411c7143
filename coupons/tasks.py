import psycopg
from celery import shared_task
from django.db import OperationalError

from pools.patterns import PatternError

from . import generation, jobs
from .expiry import coupons_expire_due


@shared_task(bind=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def run_coupon_job(self, job_id: int) -> None:
    jobs.job_run(job_id=job_id)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def expire_coupons() -> int:
    return coupons_expire_due()


# psycopg's own errors too: COPY runs on the raw cursor, outside Django's error wrapping.
RETRYABLE = (OperationalError, psycopg.OperationalError)


@shared_task(bind=True, acks_late=True, autoretry_for=RETRYABLE, retry_backoff=True, max_retries=5)
def generate_batch(self, batch_id: int) -> None:
    """Fill a generation batch; a deadlock or lost connection retries from the last chunk."""
    try:
        generation.generation_run(batch_id=batch_id)
    except RETRYABLE:
        raise  # retried; the batch goes on from its last committed chunk
    except (PatternError, generation.GenerationError) as exc:
        generation.generation_fail(batch_id=batch_id, error=str(exc))
    except Exception as exc:
        generation.generation_fail(batch_id=batch_id, error=f"Unexpected error: {exc}")
        raise


@shared_task
def mark_interrupted_generation() -> int:
    return generation.generation_mark_interrupted()
