"""The Celery tasks of the job engine: one runs any job, one sweeps, one purges."""

import uuid

from celery import shared_task
from django.conf import settings

from couponsite.dberrors import RETRYABLE

from . import engine


@shared_task(name=engine.RUN_TASK, bind=True, acks_late=True, max_retries=settings.JOB_MAX_RETRIES)
def run_job(self, kind: str, job_id: int, runner: str | None = None) -> None:
    """Run one job; after a database error retry later with the same runner token."""
    runner = runner or uuid.uuid4().hex
    last = self.request.retries >= self.max_retries
    retry_in = None if last else engine.retry_delay(self.request.retries)
    try:
        engine.job_execute(kind=kind, job_id=job_id, runner=runner, retry_in=retry_in)
    except RETRYABLE as exc:
        raise self.retry(exc=exc, countdown=retry_in, kwargs={"kind": kind, "job_id": job_id, "runner": runner}) from exc


@shared_task(name="coupons.jobs.sweep")
def sweep_jobs() -> dict:
    return {"interrupted": engine.jobs_mark_interrupted(), "sent": engine.jobs_dispatch_pending()}


@shared_task(name="coupons.jobs.purge")
def purge_jobs() -> int:
    return engine.jobs_purge()
