"""Job rows for long work on many coupons: created here, run by ``tasks.run_coupon_job``.

Progress is written per chunk in the chunk's own transaction, together with the
``cursor`` (the last coupon id done), so a worker that dies mid-job is resumed by the
redelivered task from where the last committed chunk ended.
"""

from __future__ import annotations

import logging

from django.db import OperationalError, transaction
from django.utils import timezone

from .models import CouponJob, JobStatus

log = logging.getLogger(__name__)


def job_start(*, kind: str, pool, params: dict, user=None, total: int = 0) -> CouponJob:
    job = CouponJob.objects.create(
        kind=kind,
        pool=pool,
        params=params,
        total=total,
        created_by=user if user is not None and getattr(user, "is_authenticated", False) else None,
    )
    from .tasks import run_coupon_job

    transaction.on_commit(lambda: run_coupon_job.delay(job.pk))
    return job


def job_lock(job: CouponJob) -> CouponJob:
    """Inside a chunk's transaction: the job row, locked and fresh.

    Two runners of the same job (a redelivered task) take turns per chunk and each
    starts from the cursor the other committed, so no chunk is done twice.
    """
    return CouponJob.objects.select_for_update().get(pk=job.pk)


def job_progress(job: CouponJob, *, processed: int, applied: int, cursor: int, skipped: dict | None = None) -> None:
    job.processed += processed
    job.applied += applied
    job.cursor = cursor
    for reason, count in (skipped or {}).items():
        job.skipped[reason] = job.skipped.get(reason, 0) + count
    job.save(update_fields=["processed", "applied", "cursor", "skipped"])


def job_run(*, job_id: int) -> None:
    from .bulk import bulk_run_job
    from .propagation import run_propagation

    job = CouponJob.objects.select_related("pool").get(pk=job_id)
    if job.is_finished:
        return
    job.status = JobStatus.RUNNING
    job.started_at = job.started_at or timezone.now()
    job.save(update_fields=["status", "started_at"])
    try:
        if job.kind == CouponJob.Kind.BULK_ACTION:
            message = bulk_run_job(job)
        else:
            run_propagation(pool=job.pool, params=job.params, job=job)
            job.refresh_from_db()
            message = f"{job.applied:,} coupons updated."
    except OperationalError:
        # A deadlock or a lost connection: the task retries and goes on from the cursor.
        try:
            CouponJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, message="Retrying after a database error.")
        except OperationalError:
            pass  # the connection is gone; the retry finds the job as it was
        raise
    except Exception as exc:
        log.exception("Coupon job %s failed", job.pk)
        job.status = JobStatus.FAILED
        job.message = f"Stopped after {job.processed:,} coupons: {exc}"
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "message", "finished_at"])
        raise
    job.status = JobStatus.DONE
    job.message = message
    job.total = max(job.total, job.processed)
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "message", "total", "finished_at"])


def job_resume(*, job: CouponJob) -> CouponJob:
    """Queue a failed job again; it goes on from its last committed chunk."""
    from .tasks import run_coupon_job

    with transaction.atomic():
        job = CouponJob.objects.select_for_update().get(pk=job.pk)
        if job.status != JobStatus.FAILED:
            raise ValueError("Only a failed job can be resumed.")
        job.status, job.message, job.finished_at = JobStatus.QUEUED, "", None
        job.save(update_fields=["status", "message", "finished_at"])
        transaction.on_commit(lambda: run_coupon_job.delay(job.pk))
    return job
