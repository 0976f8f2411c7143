"""Running an import as a job of the shared lifecycle (``coupons.jobs``): the reading
phase streams the file into the staging table in committed chunks, the importing phase
imports it chunk by chunk, each under the job's row lock (``Run.lock``), so a run that
was taken over or cancelled stops at its next chunk and a killed worker's import
resumes to the same final result. Also the cleanup of cancelled imports and the purge
of old drafts and orphaned staging tables."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import ProtectedError, Q
from django.urls import reverse
from django.utils import timezone

from coupons.jobs.engine import JobFailed, Run, job_execute
from coupons.jobs.registry import JobKind, register
from coupons.jobs.storage import purge_unreferenced
from couponsite.wording import counted
from pools.models import PoolSource

from ..models import ImportJob, ImportPhase, JobStatus, RowOutcome
from ..parsing import FileProblem, read_records
from .staging import (
    create_stage,
    drop_stage,
    import_chunk,
    mark_after_reading,
    mark_existing,
    postgresql,
    stage_is_filled,
    stage_name,
    stage_rows,
)
from .upload import DRAFTS_KEPT, IMPORT, earlier_import_of_same_file, job_options

log = logging.getLogger(__name__)

CHUNK = settings.COUPON_IMPORT_CHUNK  # rows per committed chunk, in both phases


def import_run(*, job_id: int, progress=None) -> ImportJob:
    """Run a queued import here (a command, a test); the job as it ended."""
    job_execute(kind=IMPORT, job_id=job_id, progress=progress)
    return ImportJob.objects.get(pk=job_id)


def import_run_job(job: ImportJob, run: Run) -> str:
    """The import's work, as a run of the job engine; returns the summary."""
    job = ImportJob.objects.select_related("pool").get(pk=job.pk)
    try:
        if job.pool is None or job.pool.source != PoolSource.UPLOADED:
            raise FileProblem("The import has no pool that takes uploaded coupons.")
        if not (job.staged and stage_is_filled(job)):
            job = _read_phase(job, run)
        job = _import_phase(job, run)
    except FileProblem as exc:
        imported = _forget_failed_start(job)
        raise JobFailed(str(exc) + (" Resume the import once this is fixed." if imported else "")) from exc
    return _finish(job)


def _forget_failed_start(job: ImportJob) -> bool:
    """A file that cannot be imported, before any row was: drop what was staged, so that
    it can be configured and started again (``can_start``). Whether rows were imported."""
    job.refresh_from_db(fields=["cursor"])
    if job.cursor:
        return True  # coupons exist: keep the stage, the import resumes once the problem is fixed
    drop_stage(job)
    ImportJob.objects.filter(pk=job.pk).update(staged=False)
    return False


def _lock(run: Run) -> ImportJob:
    return run.lock(ImportJob.objects.select_related("pool__current_terms"))


def _read_phase(job: ImportJob, run: Run) -> ImportJob:
    options = job_options(job)
    stage = stage_name(job)
    with transaction.atomic():
        job = _lock(run)
        with connection.cursor() as cursor:
            create_stage(cursor, stage)
        job.phase, job.bytes_read, job.total, job.staged = ImportPhase.READING, 0, 0, False
        run.save(job, "phase", "bytes_read", "total", "staged")
    mapping = options.mapping
    with job.file.open("rb") as raw:
        records = read_records(raw, options)
        while True:
            with transaction.atomic():
                job = _lock(run)
                staged = stage_rows(stage, records, mapping, limit=CHUNK)
                if not staged:
                    break
                job.total += staged
                job.bytes_read = min(_tell(raw), job.size)
                run.save(job, "total", "bytes_read")
    with transaction.atomic():
        job = _lock(run)
        with connection.cursor() as cursor:
            mark_after_reading(cursor, stage, job)
        job.staged, job.phase, job.bytes_read = True, ImportPhase.IMPORTING, job.size
        run.save(job, "staged", "phase", "bytes_read")
    return job


def _tell(raw) -> int:
    try:
        return raw.tell()
    except (OSError, ValueError):
        return 0


def _import_phase(job: ImportJob, run: Run) -> ImportJob:
    stage = stage_name(job)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT max(row) FROM {stage}")
        last_row = cursor.fetchone()[0] or 0
    ahead = _LookAhead(stage, job.pool_id) if postgresql() and not connection.in_atomic_block else None
    try:
        while True:
            probed = ahead.take(job.cursor) if ahead else False
            if ahead and job.cursor + CHUNK < last_row:
                ahead.probe(lower=job.cursor + CHUNK, upper=job.cursor + 2 * CHUNK)
            with transaction.atomic():
                job = _lock(run)
                if job.cursor >= last_row:
                    return job
                upper = job.cursor + CHUNK
                counts = import_chunk(job, stage, lower=job.cursor, upper=upper, probed=probed)
                job.created += counts.get(0, 0)
                job.invalid += counts.get(RowOutcome.INVALID, 0)
                job.duplicates_in_file += counts.get(RowOutcome.DUPLICATE_IN_FILE, 0)
                job.existing += counts.get(RowOutcome.EXISTS, 0)
                job.processed += sum(counts.values())
                job.cursor = min(upper, last_row)
                run.save(job, "created", "invalid", "duplicates_in_file", "existing", "processed", "cursor")
    finally:
        if ahead:
            ahead.close()


class _LookAhead:
    """Marks the codes of the *next* chunk that exist already, on a second connection,
    while this chunk is being inserted: the probe and the insert use both cores.

    Safe because a mark is a fact that stays true (coupons are never deleted), and a
    code that appears after the probe makes the chunk's plain INSERT fail on the unique
    index; then the chunk probes again itself (see ``import_chunk``).
    """

    def __init__(self, stage: str, pool_id: int):
        self.stage, self.pool_id = stage, pool_id
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-probe")
        self.pending: dict[int, object] = {}  # lower bound of a chunk -> its future

    def probe(self, *, lower: int, upper: int) -> None:
        if lower not in self.pending:
            self.pending[lower] = self.executor.submit(self._probe, lower, upper)

    def _probe(self, lower: int, upper: int) -> None:
        with connection.cursor() as cursor:  # this thread's own connection, autocommit
            mark_existing(cursor, self.stage, {"lower": lower, "upper": upper, "pool": self.pool_id})

    def take(self, lower: int) -> bool:
        """Whether the chunk starting after ``lower`` has been probed already."""
        future = self.pending.pop(lower, None)
        if future is None:
            return False
        try:
            future.result()
        except Exception:  # the chunk probes itself
            log.warning("Import look-ahead probe failed for rows after %s", lower, exc_info=True)
            return False
        return True

    def close(self) -> None:
        self.executor.submit(lambda: connection.close())  # the probe thread's own connection
        self.executor.shutdown(wait=True)


def _finish(job: ImportJob) -> str:
    drop_stage(job)
    return _summary(job)


def _summary(job: ImportJob) -> str:
    if job.created:
        return f"{counted(job.created, 'coupon', 'coupons')} created from {counted(job.total, 'row', 'rows')}."
    parts = [
        counted(count, singular, plural) for count, singular, plural in (
            (job.existing, "code exists already", "codes exist already"),
            (job.duplicates_in_file, "row repeats an earlier row", "rows repeat an earlier row"),
            (job.invalid, "row is invalid", "rows are invalid"),
        ) if count
    ]
    again = " This file was imported before." if job.existing and earlier_import_of_same_file(job) else ""
    return f"Nothing was created: {', '.join(parts) or 'the file has no rows'}.{again}"


def _cleanup(job: ImportJob) -> None:
    """A cancelled import: its staging table goes; a draft's file goes too (nothing of it
    was imported). What an import created stays, with its rows not imported."""
    drop_stage(job)
    if job.started_at is None and job.file:
        job.file.delete(save=False)
        ImportJob.objects.filter(pk=job.pk).update(file="")


def _purge() -> int:
    """Uploads never started (drafts, and drafts cancelled) are removed with their file
    after ``DRAFTS_KEPT``; staging tables of imports that will not run again are dropped."""
    # Never queued (an API bulk add's import is queued at once): a draft, or a discarded one.
    never_started = Q(started_at__isnull=True, dispatched_at__isnull=True, created_at__lt=timezone.now() - DRAFTS_KEPT) & (
        Q(status=JobStatus.DRAFT) | Q(status=JobStatus.CANCELLED)
    )
    removed = 0
    for pk in ImportJob.objects.filter(never_started).values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            # Locked and checked again: a draft being started right now is left alone.
            job = ImportJob.objects.select_for_update(skip_locked=True).filter(never_started, pk=pk).first()
            if job is None:
                continue
            try:
                with transaction.atomic():
                    job.delete()
            except ProtectedError:
                continue  # an API bulk operation's import: kept with its operation
            if job.file:
                transaction.on_commit(lambda name=job.file.name: default_storage.delete(name))
            removed += 1
    known = set(ImportJob.objects.exclude(file="").values_list("file", flat=True))
    removed += purge_unreferenced("imports", known)
    with connection.cursor() as cursor:
        staged = [int(name.rsplit("_", 1)[1]) for name in connection.introspection.table_names(cursor)
                  if name.startswith("imports_stage_") and name.rsplit("_", 1)[1].isdigit()]
    may_run = ImportJob.objects.filter(pk__in=staged, status__in=[
        JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.INTERRUPTED, JobStatus.FAILED,
    ]).values_list("pk", flat=True)
    for job_id in set(staged) - set(may_run):
        drop_stage(ImportJob(pk=job_id))
    return removed


register(JobKind(
    name=IMPORT, label="Import", model=ImportJob, run=import_run_job, cleanup=_cleanup, purge=_purge,
    describe=lambda job: f"Import {job.original_name}", permission="coupons.add_coupon", unit=("row", "rows"),
    result_url=lambda job: reverse("imports:detail", args=[job.pk]),
))
