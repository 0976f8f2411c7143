"""API bulk operations: many coupons in one request, run as a job of the shared lifecycle
(``coupons.jobs``); a bulk add goes through the import service, the other actions through
``coupons.services``."""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import time

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from coupons import services as coupon_services
from coupons.jobs.engine import (
    JobFailed,
    JobRefused,
    JobStopped,
    Run,
    job_cancel,
    job_create,
    job_execute,
    job_is_stale,
)
from coupons.jobs.registry import JobKind, register
from coupons.models import Coupon, CouponStatus
from coupons.selectors import code_q
from coupons.services import Actor, CouponActionError, customer_get_or_create
from couponsite.wording import counted
from imports.models import ImportJob, JobStatus, RowOutcome
from imports.parsing import FileProblem, Options
from imports.services import IMPORT, ImportRefused, import_resume, import_start, import_upload, job_options
from pools.models import CouponPool, PoolSource

from .models import ApiKey, BulkOperation, BulkOperationError

log = logging.getLogger(__name__)
S = CouponStatus


from .services import actor_of


def bulk_start(*, api_key: ApiKey, pool: CouponPool, action: str, items: list[dict]) -> BulkOperation:
    if action == BulkOperation.Action.ADD and pool.source != PoolSource.UPLOADED:
        raise CouponActionError(
            f"Coupons can be added only to uploaded pools; \u201c{pool.name}\u201d is {pool.get_source_display().lower()}.",
            code="pool_not_uploaded",
        )
    return job_create(BulkOperation, pool=pool, api_key=api_key, action=action, items=items, total=len(items))


BULK_CHUNK = settings.COUPON_API_BULK_CHUNK


def bulk_run_job(operation: BulkOperation, run: Run) -> str:
    """Apply the operation item by item, committing progress every ``BULK_CHUNK`` items
    (with the cursor, so a resumed operation goes on where the last chunk ended)."""
    operation = BulkOperation.objects.select_related("pool", "api_key").get(pk=operation.pk)
    if operation.action == BulkOperation.Action.ADD:
        return _bulk_add(operation, run)
    actor = actor_of(operation.api_key)
    items = operation.items  # read once, not again (up to 50,000) for every chunk
    while True:
        with transaction.atomic():
            operation = run.lock(BulkOperation.objects.select_related("pool").defer("items"))
            if operation.cursor >= len(items):
                break
            start, end = operation.cursor, min(operation.cursor + BULK_CHUNK, len(items))
            errors = []
            for index in range(start, end):
                item = items[index]
                try:
                    with transaction.atomic():
                        _bulk_apply_one(operation, item, actor)
                except CouponActionError as exc:
                    errors.append(BulkOperationError(
                        operation=operation, index=index, code=item["code"][:200], error_code=exc.code, message=str(exc)
                    ))
            BulkOperationError.objects.bulk_create(errors)
            operation.processed += end - start
            operation.failed += len(errors)
            operation.succeeded += end - start - len(errors)
            operation.cursor = end
            run.save(operation, "processed", "failed", "succeeded", "cursor")
    return _bulk_message(operation)


def _bulk_message(operation: BulkOperation) -> str:
    done = {"add": "added", "assign": "assigned", "unassign": "unassigned"}[operation.action]
    text = f"{operation.succeeded:,} of {counted(operation.total, 'coupon', 'coupons')} {done}"
    return text + (f"; {operation.failed:,} refused (see the errors)." if operation.failed else ".")


def _bulk_apply_one(operation: BulkOperation, item: dict, actor: Actor) -> None:
    coupon = Coupon.objects.filter(code_q(item["code"]), pool=operation.pool).order_by("-id").first()
    if coupon is None:
        raise CouponActionError(f"The pool has no coupon {item['code']}.", code="coupon_not_found")
    if operation.action == BulkOperation.Action.ASSIGN:
        customer = customer_get_or_create(item["customer"])
        coupon_services.coupon_assign(coupon=coupon, customer=customer, actor=actor)
    else:
        coupon_services.coupon_unassign(coupon=coupon, actor=actor)


def _bulk_add(operation: BulkOperation, run: Run) -> str:
    """``add`` is an import of the given codes: the same duplicate checks, in any pool.

    The import job is created once (under the operation's row lock) and remembered, so
    a resumed operation goes on with that import instead of importing again (which
    would report every code as existing). Cancelling the operation cancels its import;
    the operation's counters then say what the import did before it stopped."""
    with transaction.atomic():
        operation = run.lock(BulkOperation.objects.select_related("pool"))
        if operation.import_job_id is None:
            operation.import_job = _import_of(operation)
            operation.save(update_fields=["import_job"])
    job = _import_to_its_end(operation.import_job, run)
    with transaction.atomic():
        # This run's row, also when it was cancelled meanwhile (not when it was taken over).
        operation = BulkOperation.objects.select_for_update().defer("items").filter(pk=run.job_id, runner=run.token).first()
        if operation is None:
            raise JobStopped
        _record_import(operation, job)
        run.save(operation)
    if job.status == JobStatus.DONE:
        return f"Import #{job.pk}: {job.message}"
    if operation.status == JobStatus.CANCELLED:
        raise JobStopped  # cancelled, and its import with it
    raise JobFailed(f"Import #{job.pk} of the codes was cancelled; what it added stays ({job.message})")


_REFUSALS = {
    RowOutcome.INVALID: "invalid", RowOutcome.DUPLICATE_IN_FILE: "duplicate_in_request", RowOutcome.EXISTS: "code_exists",
}


def _record_import(operation: BulkOperation, job: ImportJob) -> None:
    """The operation's counters and refused items from its import (under its row lock)."""
    BulkOperationError.objects.filter(operation=operation).delete()
    BulkOperationError.objects.bulk_create(
        BulkOperationError(
            operation=operation, index=rejection.row - 2,  # row 1 is the header
            code=rejection.code[:200], error_code=_REFUSALS[rejection.outcome], message=rejection.reason,
        )
        for rejection in job.rejections.order_by("row").iterator()
    )
    operation.processed, operation.succeeded, operation.failed = job.processed, job.created, job.skipped
    operation.cursor = operation.total if job.status == JobStatus.DONE else 0
    operation.save(update_fields=["processed", "succeeded", "failed", "cursor"])


def _import_of(operation: BulkOperation) -> ImportJob:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["code", "customer"])
    for item in operation.items:
        writer.writerow([item["code"], item.get("customer", "")])
    content = ContentFile(buffer.getvalue().encode(), name=f"bulk-operation-{operation.pk}.csv")
    job = import_upload(file=content, name=content.name, pool=operation.pool)
    return import_start(
        job=job, pool=operation.pool, enqueue=False,
        options=Options(delimiter=",", has_header=True, encoding="utf-8", mapping={"code": 0, "customer": 1}),
    )


def _import_to_its_end(job: ImportJob, run: Run) -> ImportJob:
    """Run the operation's import here, to its end: done, or cancelled (with the operation,
    or on its own from the Jobs page).

    One that a previous run of the operation left behind goes on: interrupted or failed
    after some rows, it is resumed; failed before any row, started again with its
    settings; running with a live worker elsewhere (resumed on its own), waited for. The
    import runs under a token derived from the operation's, so a retry of the operation
    takes back the import it left running when the database went away; a database error
    is left to the operation's retries (the import waits queued for them).
    """
    token = hashlib.md5(f"{run.token}:import".encode()).hexdigest()
    ran = False
    while True:
        job.refresh_from_db()
        if job.status in (JobStatus.DONE, JobStatus.CANCELLED):
            return job
        if job.status == JobStatus.FAILED and ran:
            raise JobFailed(f"Import #{job.pk} of the codes failed: {job.message}")
        if job.status == JobStatus.FAILED and job.can_start:
            try:
                job = import_start(job=job, pool=job.pool, options=job_options(job), enqueue=False)
            except (ImportRefused, FileProblem, OSError) as exc:
                raise JobFailed(f"Import #{job.pk} of the codes cannot start again: {exc}") from exc
        elif job.status in (JobStatus.INTERRUPTED, JobStatus.FAILED) or (
                job.status == JobStatus.RUNNING and job.runner != token):
            try:
                job = import_resume(job=job, enqueue=False)
            except JobRefused:
                if job.status != JobStatus.RUNNING:
                    raise JobFailed(f"Import #{job.pk} of the codes cannot go on: {job.message}") from None
                _wait_a_moment(run)  # running with a live worker of its own
                continue
        ran = True
        job_execute(kind=IMPORT, job_id=job.pk, runner=token, retry_in=settings.JOB_RETRY_DELAY_SECONDS,
                    progress=_stop_with(run))


def _wait_a_moment(run: Run) -> None:
    time.sleep(1)
    with transaction.atomic():
        run.save(run.lock(BulkOperation.objects.defer("items")))  # still ours, and alive


def _stop_with(run: Run):
    """The import's progress callback: once its operation is cancelled, the import is
    too, in the chunk that just ran, so it stops at its next one."""
    def follow(job: ImportJob) -> None:
        if BulkOperation.objects.filter(pk=run.job_id, status=JobStatus.CANCELLED).exists():
            ImportJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                status=JobStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled with its bulk operation.",
            )
    return follow


def _cancel_its_import(operation: BulkOperation, user) -> None:
    """A cancelled add: its import goes too. A running import stops at its next chunk
    (the operation's run records what it did); one that does not run is cancelled here
    and what it did is recorded at once."""
    job = operation.import_job
    if job is None:
        return
    running = job.status == JobStatus.RUNNING and not job_is_stale(job)
    if not running and job.can_cancel:
        try:
            job = job_cancel(job=job, user=user)
        except JobRefused:
            return  # it ended, or got busy, meanwhile: the operation's run (or a resume) records it
    if not running:
        with transaction.atomic():
            _record_import(BulkOperation.objects.select_for_update().defer("items").get(pk=operation.pk), job)


register(JobKind(
    name="api_bulk", label="API bulk operation", model=BulkOperation, run=bulk_run_job, unit=("item", "items"),
    describe=lambda op: f"{op.get_action_display()} ({op.total:,}), API key {op.api_key.name}",
    on_cancel=_cancel_its_import, related=("api_key",),
))
