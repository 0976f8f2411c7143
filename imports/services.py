"""The import service: upload, configure, run (in a worker or a command), resume.

The file is parsed in Python (``imports.parsing``) and streamed into a per-import
staging table; everything else is set-based SQL in the database, which alone can
judge duplicates against every pool:

- reading phase: rows go into the staging table with their row numbers (COPY on
  PostgreSQL), in committed chunks; then the rows that repeat an earlier row's code
  are marked, with the row they repeat;
- importing phase, chunk by chunk of row numbers, in one transaction each: rows of
  unknown customers are marked invalid, rows whose code exists in any pool are marked,
  the rest are inserted as coupons (claimed, with a claim event, when the row names a
  customer), the rows not imported are copied to ``ImportRejection``, and the counters
  and the cursor move on. A worker killed anywhere leaves a job that resumes to the
  same final result.

The job's lifecycle (queue, heartbeat, interrupt, resume, cancel) is the shared one
of ``coupons.jobs``: every chunk checks the run's token under the job's row lock
(``Run.lock``), so a run that was taken over or cancelled stops at its next chunk.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import ProtectedError, Q
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone

from coupons import rows as row_sql
from coupons.jobs.engine import JobFailed, Run, acting_user, job_execute, job_queue, job_resume
from coupons.jobs.registry import JobKind, register
from coupons.jobs.storage import purge_unreferenced
from coupons.models import ActorKind, CouponStatus, EventAction
from couponsite.dberrors import is_deadlock
from pools.models import CouponPool, PoolSource

from .models import ImportJob, ImportPhase, JobStatus, RowOutcome
from .parsing import (
    ENCODINGS,
    SNIFF_BYTES,
    FileProblem,
    InvalidRow,
    Options,
    Record,
    check_head,
    head_rows,
    header_mapping,
    read_records,
    sniff,
)

log = logging.getLogger(__name__)

CHUNK = settings.COUPON_IMPORT_CHUNK  # rows per committed chunk, in both phases
DRAFTS_KEPT = timedelta(hours=24)  # an upload never started is removed with its file after this
RAW_LIMIT = 1000  # characters kept of an invalid row's cells
REJECTIONS_KEPT = 100_000  # rows kept of each kind not imported (invalid, repeated, existing)


class ImportRefused(Exception):
    """A request the service cannot accept; the message says why."""


def max_file_size() -> int:
    return settings.COUPON_IMPORT_MAX_FILE_SIZE


# --- upload and configure ------------------------------------------------------------


def import_upload(*, file, name: str, user=None, pool: CouponPool | None = None) -> ImportJob:
    """Keep an uploaded file in the storage and guess how to read it.

    Refuses (``FileProblem``) a file over the size limit, an empty or binary file,
    before anything is stored.
    """
    size = file.size
    if size > max_file_size():
        raise FileProblem(
            f"The file is {filesizeformat(size)}; files can be at most {filesizeformat(max_file_size())}. "
            "Split it into smaller files."
        )
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    check_head(head)
    options = _guess_options(head)
    file.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: file.read(1024 * 1024), b""):
        digest.update(block)
    file.seek(0)
    job = ImportJob(
        pool=pool, original_name=name[:255], size=size, sha256=digest.hexdigest(),
        delimiter=options.delimiter, has_header=options.has_header, encoding=options.encoding,
        created_by=acting_user(user),
    )
    job.file.save(_storage_name(name), file, save=False)
    job.save()
    return job


def _storage_name(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.rsplit("/", 1)[-1])[:80] or "upload.csv"
    return f"{uuid.uuid4().hex[:12]}-{stem}"


def _guess_options(head: bytes) -> Options:
    """The delimiter and header from the file's start, in the first encoding that reads it."""
    problem = None
    for encoding in ENCODINGS:
        try:
            return sniff(head, encoding)
        except FileProblem as exc:
            problem = problem or exc
    raise problem


def job_options(job: ImportJob) -> Options:
    return Options(
        delimiter=job.delimiter, has_header=job.has_header, encoding=job.encoding,
        mapping={name: int(column) for name, column in job.mapping.items()} or None,
    )


@dataclass
class Preview:
    columns: list[str]  # a label per column: "1: code" (with a header) or "Column 1"
    header_mapping: dict[str, int]  # what the header names (empty without a header)
    rows: list[Record | InvalidRow]
    problem: str = ""


PREVIEW_ROWS = 8


def import_preview(job: ImportJob, options: Options) -> Preview:
    """The first rows as they will be read with ``options``, or the file's problem."""
    with job.file.open("rb") as raw:
        try:
            first = head_rows(raw, options, limit=1)
        except FileProblem as exc:
            return Preview(columns=[], header_mapping={}, rows=[], problem=str(exc))
        width = len(first[0]) if first else 1
        if options.has_header and first:
            columns = [f"{index + 1}: {cell.strip() or '(no name)'}" for index, cell in enumerate(first[0])]
            named = header_mapping(first[0])
        else:
            columns = [f"Column {index + 1}" for index in range(width)]
            named = {}
        raw.seek(0)  # the same open file, read again from the start
        try:
            rows = list(islice(read_records(raw, options), PREVIEW_ROWS))
        except FileProblem as exc:
            return Preview(columns=columns, header_mapping=named, rows=[], problem=str(exc))
    return Preview(columns=columns, header_mapping=named, rows=rows)


def earlier_import_of_same_file(job: ImportJob, among=None) -> ImportJob | None:
    """A finished import of the same content (``among``: the imports the user may see)."""
    among = ImportJob.objects.all() if among is None else among
    return (
        among.filter(sha256=job.sha256, status=JobStatus.DONE)
        .exclude(pk=job.pk).select_related("pool").order_by("-id").first()
    )


def import_start(*, job: ImportJob, pool: CouponPool, options: Options, user=None, enqueue: bool = True) -> ImportJob:
    """Check the configuration against the file's first rows and queue the import."""
    if pool.source != PoolSource.UPLOADED:
        raise ImportRefused(f"\u201c{pool.name}\u201d does not take uploaded coupons: its source is {pool.get_source_display().lower()}.")
    with job.file.open("rb") as raw:
        next(read_records(raw, options))  # FileProblem for a file that cannot be read like this
    mapping = options.mapping
    if mapping is None:  # from the header's names, else the code is the first column
        with job.file.open("rb") as raw:
            first = head_rows(raw, options, limit=1)
        mapping = header_mapping(first[0]) if options.has_header else {"code": 0}
        options = Options(delimiter=options.delimiter, has_header=options.has_header, encoding=options.encoding, mapping=mapping)
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if not job.can_start:
            raise ImportRefused(f"Import #{job.pk} has started already.")
        job.pool = pool
        job.delimiter, job.has_header, job.encoding = options.delimiter, options.has_header, options.encoding
        job.mapping = dict(options.mapping)
        job.phase = ImportPhase.READING
        job.bytes_read = job.total = job.processed = 0
        job.staged = False
        job.created_by = job.created_by or acting_user(user)
        job_queue(job, enqueue=enqueue)
        job.save()
    return job


def import_resume(*, job: ImportJob, user=None, enqueue: bool = True) -> ImportJob:
    return job_resume(job=job, user=user, enqueue=enqueue)


# --- run -------------------------------------------------------------------------------


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
        if not (job.staged and _stage_is_filled(job)):
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
    _drop_stage(job)
    ImportJob.objects.filter(pk=job.pk).update(staged=False)
    return False


def _drop_stage(job: ImportJob) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {_stage(job)}")


def _lock(run: Run) -> ImportJob:
    return run.lock(ImportJob.objects.select_related("pool__current_terms"))


def _stage(job: ImportJob) -> str:
    return f"imports_stage_{int(job.pk)}"


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


def _stage_is_filled(job: ImportJob) -> bool:
    """An unlogged staging table is emptied by a database crash: then read again."""
    with connection.cursor() as cursor:
        if _stage(job) not in connection.introspection.table_names(cursor):
            return False
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {_stage(job)})")
        return bool(cursor.fetchone()[0])


def _read_phase(job: ImportJob, run: Run) -> ImportJob:
    options = job_options(job)
    stage = _stage(job)
    with transaction.atomic():
        job = _lock(run)
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {stage}")
            if _postgresql():
                cursor.execute(
                    f'CREATE UNLOGGED TABLE {stage} (row bigint NOT NULL, code text COLLATE "C" NOT NULL, '
                    "customer text, expires_at timestamptz, expires_text text, "
                    "outcome smallint NOT NULL DEFAULT 0, reason text)"
                )
            else:
                cursor.execute(
                    f"CREATE TABLE {stage} (row INTEGER PRIMARY KEY, code TEXT NOT NULL, customer TEXT, "
                    "expires_at TEXT, expires_text TEXT, outcome INTEGER NOT NULL DEFAULT 0, reason TEXT)"
                )
        job.phase, job.bytes_read, job.total, job.staged = ImportPhase.READING, 0, 0, False
        run.save(job, "phase", "bytes_read", "total", "staged")
    mapping = options.mapping
    with job.file.open("rb") as raw:
        records = read_records(raw, options)
        while True:
            with transaction.atomic():
                job = _lock(run)
                staged = _stage_rows(stage, records, mapping, limit=CHUNK)
                if not staged:
                    break
                job.total += staged
                job.bytes_read = min(_tell(raw), job.size)
                run.save(job, "total", "bytes_read")
    with transaction.atomic():
        job = _lock(run)
        with connection.cursor() as cursor:
            if _postgresql():
                cursor.execute(f"CREATE INDEX {stage}_row ON {stage} (row)")
                # One hash aggregate over the file's codes: about 100 bytes a row, in memory.
                work_mem = min(max(64, job.total // 10_000), 512)
                cursor.execute(f"SET LOCAL work_mem = '{int(work_mem)}MB'")
            # First what makes a row invalid whatever else is in the file (its customer),
            # then repeated codes among the rows left: every later step sees the same rows,
            # whichever run, chunk or look-ahead gets there first.
            if "customer" in job.mapping:  # a file without customers skips a pass over it
                _mark_customer_problems(cursor, stage, job.pool)
            # Every row that repeats the code of an earlier valid row, with that row.
            cursor.execute(
                f"UPDATE {stage} SET outcome = {int(RowOutcome.DUPLICATE_IN_FILE)}, "
                f"reason = 'The code appears earlier in the file, in row ' || first.row_number || '.' "
                f"FROM (SELECT code, min(row) AS row_number FROM {stage} WHERE outcome = 0 "
                "GROUP BY code HAVING count(*) > 1) AS first "
                f"WHERE {stage}.code = first.code AND {stage}.row <> first.row_number AND {stage}.outcome = 0"
            )
            if job.pool.aggregated and "customer" in job.mapping:
                _mark_repeated_customers(cursor, stage)
        job.staged, job.phase, job.bytes_read = True, ImportPhase.IMPORTING, job.size
        run.save(job, "staged", "phase", "bytes_read")
    return job


INVALID = int(RowOutcome.INVALID)


def _mark_customer_problems(cursor, stage: str, pool: CouponPool) -> None:
    """Rows naming a customer that does not exist, or one who cannot get this coupon."""
    cursor.execute(
        f"UPDATE {stage} SET outcome = {INVALID}, "
        "reason = 'No customer has the ID \"' || customer || '\". Create the customer first, or leave the customer out.' "
        f"WHERE outcome = 0 AND customer IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM coupons_customer cu WHERE cu.external_id = {stage}.customer)"
    )
    required = pool.current_terms.currency_required
    if required:
        cursor.execute(
            f"UPDATE {stage} SET outcome = {INVALID}, "
            f"reason = 'These gift cards are in {required}; customer \"' || customer || '\" has ' || "
            "CASE WHEN cu.currency = '' THEN 'no currency' ELSE cu.currency END || '.' "
            f"FROM coupons_customer cu WHERE {stage}.outcome = 0 AND cu.external_id = {stage}.customer "
            "AND cu.currency <> %s",
            [required],
        )
    if pool.aggregated:
        cursor.execute(
            f"UPDATE {stage} SET outcome = {INVALID}, "
            "reason = 'Customer \"' || customer || '\" holds a coupon of this pool already; the pool gives one "
            "coupon per customer.' "
            f"WHERE outcome = 0 AND customer IS NOT NULL AND EXISTS (SELECT 1 FROM coupons_coupon c "
            f"JOIN coupons_customer cu ON cu.id = c.customer_id WHERE cu.external_id = {stage}.customer "
            "AND c.pool_id = %s AND c.status = %s)",
            [pool.pk, int(CouponStatus.CLAIMED)],
        )


def _mark_repeated_customers(cursor, stage: str) -> None:
    """Aggregated pools give one coupon per customer: a customer's later rows are invalid."""
    cursor.execute(
        f"UPDATE {stage} SET outcome = {INVALID}, "
        "reason = 'Customer \"' || first.customer || '\" gets a coupon in row ' || first.row_number || "
        "' already; the pool gives one coupon per customer.' "
        f"FROM (SELECT customer, min(row) AS row_number FROM {stage} WHERE outcome = 0 AND customer IS NOT NULL "
        "GROUP BY customer HAVING count(*) > 1) AS first "
        f"WHERE {stage}.customer = first.customer AND {stage}.row <> first.row_number AND {stage}.outcome = 0"
    )


def _tell(raw) -> int:
    try:
        return raw.tell()
    except (OSError, ValueError):
        return 0


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\u2400"})


def _raw(cells, index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index][:RAW_LIMIT]


def _stage_rows(stage: str, records, mapping: dict[str, int], limit: int) -> int:
    """Up to ``limit`` records from the iterator into the staging table; returns how many."""
    count = 0
    if _postgresql():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            columns = "row, code, customer, expires_at, expires_text, outcome, reason"
            with cursor.copy(f"COPY {stage} ({columns}) FROM STDIN") as copy:
                # Slice by slice: the server stores one while Python reads the next.
                while count < limit:
                    piece = list(islice(records, min(COPY_SLICE, limit - count)))
                    if not piece:
                        break
                    copy.write(_copy_lines(piece, mapping))
                    count += len(piece)
        return count
    chunk = list(islice(records, limit))
    _insert_rows(stage, chunk, mapping)
    return len(chunk)


COPY_SLICE = 5_000


def _copy_lines(chunk: list, mapping: dict[str, int]) -> str:
    """COPY text rows for the staging table (backslash, tab, newline, CR escaped)."""
    code_at, customer_at, expires_at = mapping["code"], mapping.get("customer"), mapping.get("expires_at")
    lines = []
    append = lines.append
    for item in chunk:
        if type(item) is Record:
            row, code, customer, expires = item
            if "\\" in code:
                code = code.replace("\\", "\\\\")
            if customer is None and expires is None:  # the common case, kept short
                append(f"{row}\t{code}\t\\N\t\\N\t\\N\t0\t\\N\n")
                continue
            customer = "\\N" if customer is None else customer.replace("\\", "\\\\")
            expires_text = "\\N" if expires is None else expires.isoformat()
            append(f"{row}\t{code}\t{customer}\t{expires_text}\t{expires_text}\t0\t\\N\n")
        else:
            cells = item.cells
            raw = [_raw(cells, code_at), _raw(cells, customer_at), _raw(cells, expires_at), item.reason]
            code, customer, expires_text, reason = (value.translate(_COPY_ESCAPES) for value in raw)
            append(f"{item.row}\t{code}\t{customer}\t\\N\t{expires_text}\t{int(RowOutcome.INVALID)}\t{reason}\n")
    return "".join(lines)


def _insert_rows(stage: str, chunk: list, mapping: dict[str, int]) -> None:
    """The staging rows on SQLite (no COPY)."""
    code_at, customer_at, expires_at = mapping["code"], mapping.get("customer"), mapping.get("expires_at")
    adapt = connection.ops.adapt_datetimefield_value
    values = []
    for item in chunk:
        if type(item) is Record:
            expires = adapt(item.expires_at) if item.expires_at else None
            values.append((item.row, item.code, item.customer, expires, expires, 0, None))
        else:
            cells = item.cells
            values.append((
                item.row, _raw(cells, code_at), _raw(cells, customer_at), None, _raw(cells, expires_at),
                int(RowOutcome.INVALID), item.reason,
            ))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {stage} (row, code, customer, expires_at, expires_text, outcome, reason) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            values,
        )


def _import_phase(job: ImportJob, run: Run) -> ImportJob:
    stage = _stage(job)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT max(row) FROM {stage}")
        last_row = cursor.fetchone()[0] or 0
    ahead = _LookAhead(stage, job.pool_id) if _postgresql() and not connection.in_atomic_block else None
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
                counts = _import_chunk(job, stage, lower=job.cursor, upper=upper, probed=probed)
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
    index; then the chunk probes again itself (see ``_import_chunk``).
    """

    def __init__(self, stage: str, pool_id: int):
        from concurrent.futures import ThreadPoolExecutor

        self.stage, self.pool_id = stage, pool_id
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-probe")
        self.pending: dict[int, object] = {}  # lower bound of a chunk -> its future

    def probe(self, *, lower: int, upper: int) -> None:
        if lower not in self.pending:
            self.pending[lower] = self.executor.submit(self._probe, lower, upper)

    def _probe(self, lower: int, upper: int) -> None:
        with connection.cursor() as cursor:  # this thread's own connection, autocommit
            _mark_existing(cursor, self.stage, {"lower": lower, "upper": upper, "pool": self.pool_id})

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


def _import_chunk(job: ImportJob, stage: str, *, lower: int, upper: int, probed: bool = False) -> dict[int, int]:
    pool = job.pool
    terms = pool.current_terms
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    params = {
        "lower": lower, "upper": upper, "pool": pool.pk, "terms": terms.pk, "job": job.pk,
        "now": adapt(now), "expiry": adapt(terms.expires_at(now)),
        "unassigned": int(CouponStatus.UNASSIGNED), "claimed": int(CouponStatus.CLAIMED),
    }
    in_chunk = f"{stage}.row > %(lower)s AND {stage}.row <= %(upper)s AND {stage}.outcome = 0"
    with connection.cursor() as cursor:
        if _postgresql():
            # The chunk and the job's counters commit together; a crash loses both.
            cursor.execute("SET LOCAL synchronous_commit = off")
        for attempt in range(20):
            if attempt or not probed:
                _mark_existing(cursor, stage, params)
            try:
                with transaction.atomic():
                    _insert_coupons(cursor, stage, in_chunk, params)
                break
            except IntegrityError:
                # A code committed meanwhile by a parallel import or batch: mark it, again.
                log.info("Import %s: a code of rows %s-%s appeared meanwhile; retrying", job.pk, lower, upper)
            except OperationalError as exc:
                if not is_deadlock(exc):
                    raise
                # A parallel import inserting some of the same codes in another order.
                log.info("Import %s: deadlock on rows %s-%s; retrying", job.pk, lower, upper)
        else:
            raise IntegrityError("Codes keep appearing while importing; try again later.")
        if "customer" in job.mapping:
            _claim_events(cursor, stage, in_chunk, params, actor_user=job.created_by)
        # The rows not imported, up to REJECTIONS_KEPT of each kind (the counts stay exact):
        # importing a file of millions twice must not store millions of "exists already".
        kept = {RowOutcome.INVALID: job.invalid, RowOutcome.DUPLICATE_IN_FILE: job.duplicates_in_file,
                RowOutcome.EXISTS: job.existing}
        if all(REJECTIONS_KEPT - so_far >= upper - lower for so_far in kept.values()):
            kept = {}  # room for the whole chunk of every kind: one statement
            cursor.execute(
                "INSERT INTO imports_importrejection (job_id, row, outcome, reason, code, customer, expires_at) "
                f"SELECT %(job)s, row, outcome, reason, code, COALESCE(customer, ''), COALESCE(expires_text, '') "
                f"FROM {stage} WHERE row > %(lower)s AND row <= %(upper)s AND outcome <> 0",
                params,
            )
        for outcome, so_far in kept.items():
            room = REJECTIONS_KEPT - so_far
            if room <= 0:
                continue
            cursor.execute(
                "INSERT INTO imports_importrejection (job_id, row, outcome, reason, code, customer, expires_at) "
                f"SELECT %(job)s, row, outcome, reason, code, COALESCE(customer, ''), COALESCE(expires_text, '') "
                f"FROM {stage} WHERE row > %(lower)s AND row <= %(upper)s AND outcome = %(outcome)s "
                "ORDER BY row LIMIT %(room)s",
                {**params, "outcome": int(outcome), "room": room},
            )
        cursor.execute(
            f"SELECT outcome, count(*) FROM {stage} WHERE row > %(lower)s AND row <= %(upper)s GROUP BY outcome",
            params,
        )
        return dict(cursor.fetchall())


def _mark_existing(cursor, stage: str, params: dict) -> None:
    """Mark the chunk's rows whose code exists in any pool, saying which.

    A correlated scalar subquery is one index probe per row: an ``EXISTS ... OR
    EXISTS`` became a hashed subplan that read the whole coupons table per chunk.
    Two branches, so that each can use its index (see ``coupons.selectors.code_q``).
    """
    probe = "(SELECT c.pool_id FROM coupons_coupon c WHERE c.shared_code = {} AND c.code = s.code LIMIT 1)"
    cursor.execute(
        f"UPDATE {stage} SET outcome = {int(RowOutcome.EXISTS)}, reason = CASE WHEN found.pool_id = %(pool)s "
        "THEN 'The code exists already in this pool.' ELSE 'The code exists already in another pool.' END "
        f"FROM (SELECT s.row, COALESCE({probe.format('false')}, {probe.format('true')}) AS pool_id "
        f"FROM {stage} s WHERE s.row > %(lower)s AND s.row <= %(upper)s AND s.outcome = 0) AS found "
        f"WHERE found.pool_id IS NOT NULL AND {stage}.row = found.row "
        f"AND {stage}.row > %(lower)s AND {stage}.row <= %(upper)s",
        params,
    )


def _insert_coupons(cursor, stage: str, in_chunk: str, params: dict) -> None:
    claimed = "cu.id IS NOT NULL"
    cursor.execute(
        f"{row_sql.COUPON_INSERT}SELECT %(pool)s, %(terms)s, {stage}.code, false, "
        f"CASE WHEN {claimed} THEN %(claimed)s ELSE %(unassigned)s END, cu.id, "
        f"CASE WHEN {claimed} THEN %(now)s END, "
        f"CASE WHEN {claimed} THEN COALESCE({stage}.expires_at, %(expiry)s) END, 0, "
        f"CASE WHEN {claimed} THEN 1 ELSE 0 END "
        f"FROM {stage} LEFT JOIN coupons_customer cu ON cu.external_id = {stage}.customer "
        f"WHERE {in_chunk} ORDER BY {stage}.row",
        params,
    )


def _claim_events(cursor, stage: str, in_chunk: str, params: dict, actor_user) -> None:
    data = "jsonb_build_object" if _postgresql() else "json_object"
    cursor.execute(
        f"{row_sql.EVENT_INSERT}SELECT c.customer_id, '{EventAction.CLAIM.value}', c.id, c.pool_id, %(kind)s, %(user)s, %(label)s, "
        f"{data}('code', c.code, 'import', %(job)s), %(now)s "
        f"FROM {stage} JOIN coupons_coupon c ON c.shared_code = false AND c.code = {stage}.code "
        f"WHERE {in_chunk} AND {stage}.customer IS NOT NULL",
        {
            **params,
            "kind": ActorKind.USER if actor_user else ActorKind.SYSTEM,
            "user": actor_user.pk if actor_user else None,
            "label": actor_user.get_username() if actor_user else f"import #{params['job']}",
        },
    )


def _finish(job: ImportJob) -> str:
    _drop_stage(job)
    return _summary(job)


def _summary(job: ImportJob) -> str:
    if job.created:
        rows = f"{job.total:,} row{'s' if job.total != 1 else ''}"
        return f"{job.created:,} coupon{'s' if job.created != 1 else ''} created from {rows}."
    parts = [
        f"{count:,} {what}" for count, what in (
            (job.existing, "codes exist already"), (job.duplicates_in_file, "rows repeat an earlier row"),
            (job.invalid, "rows are invalid"),
        ) if count
    ]
    again = " This file was imported before." if job.existing and earlier_import_of_same_file(job) else ""
    return f"Nothing was created: {', '.join(parts) or 'the file has no rows'}.{again}"


def _cleanup(job: ImportJob) -> None:
    """A cancelled import: its staging table goes; a draft's file goes too (nothing of it
    was imported). What an import created stays, with its rows not imported."""
    _drop_stage(job)
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
        _drop_stage(ImportJob(pk=job_id))
    return removed


def local_file(path) -> File:
    """A file on this machine, for ``import_coupons``."""
    handle = open(path, "rb")  # noqa: SIM115 - closed by the caller through File
    return File(handle, name=str(path))


IMPORT = "import"

register(JobKind(
    name=IMPORT, label="Import", model=ImportJob, run=import_run_job, cleanup=_cleanup, purge=_purge,
    describe=lambda job: f"Import {job.original_name}", permission="coupons.add_coupon", unit="rows",
    result_url=lambda job: reverse("imports:detail", args=[job.pk]),
))
