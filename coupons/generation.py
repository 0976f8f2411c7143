"""Bulk generation: batches of millions of unique codes for a bulk pool.

A batch is reserved against the pool's limits when it is created (under the pool's
row lock, so parallel batches can never break them together), then filled chunk by
chunk. Each chunk runs in one transaction: it draws codes from the pattern engine
(CSPRNG, excluded characters and phrases honoured), inserts them skipping any code that
exists in any pool, and raises the batch's ``processed`` by exactly what was inserted,
on condition that it stays within ``total`` (the coupons requested). A worker killed
mid-chunk therefore leaves the committed chunks and a counter that matches them;
resuming (the job engine, ``coupons.jobs``) tops up to ``total``.

On PostgreSQL a chunk is COPYed straight into the table, or through a staging table
when it meets existing codes (see ``_insert_postgresql``): no ORM in the hot path,
memory flat at about one chunk per lane. Several chunks of a batch are written at once
(``COUPON_GENERATION_LANES``, see ``generation_run_job``). SQLite takes a slower
``INSERT OR IGNORE`` path, one chunk at a time.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import psycopg
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Case, F, IntegerField, Sum, When
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import ngettext

from couponsite.dberrors import is_deadlock
from couponsite.wording import counted
from pools.models import CouponPool, PoolSource
from pools.patterns import PatternError, codes_to_lines, codes_to_str

from . import rows as row_sql
from .jobs.engine import JobRefused, JobStopped, Run, job_create, job_resume, job_submitted
from .jobs.registry import JobKind, register
from .models import CouponStatus, GenerationBatch, JobStatus

log = logging.getLogger(__name__)

BATCH_LIMIT = 5_000_000
POOL_LIMIT = 100_000_000
CHUNK = settings.COUPON_GENERATION_CHUNK
BARREN_CODES = 1_000  # codes drawn in a row that all existed already: the pattern is used up


class GenerationError(Exception):
    """A generation request that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class Capacity:
    limit: int  # the smaller of the per-pool maximum and 1% of the combinations
    reserved: int  # coupons of the pool's batches, done or still to come
    pool_limit: int
    combinations: int

    @property
    def guessing_limit(self) -> int:
        return self.combinations // 100

    @property
    def available(self) -> int:
        return max(0, self.limit - self.reserved)


def pool_generation_capacity(pool: CouponPool) -> Capacity:
    try:
        pattern = pool.compiled_pattern()
    except PatternError:  # a pattern made invalid behind the model's back: no capacity
        pattern = None
    combinations = pattern.combinations if pattern is not None else 0
    reserved = GenerationBatch.objects.filter(pool=pool).aggregate(
        n=Sum(Case(
            # A failed or cancelled batch keeps what it made and gives back the rest.
            When(status__in=[JobStatus.FAILED, JobStatus.CANCELLED], then=F("processed")),
            default=F("total"),
            output_field=IntegerField(),
        ))
    )["n"] or 0
    return Capacity(
        limit=min(POOL_LIMIT, combinations // 100), reserved=reserved, pool_limit=POOL_LIMIT,
        combinations=combinations,
    )


def generation_start(*, pool: CouponPool, count: int, user=None, enqueue: bool = True,
                     submission: str = "") -> GenerationBatch:
    """Reserve ``count`` coupons of the pool's capacity and queue the batch.

    The same form sent again (``submission``) is the batch it started, not a second one.
    """
    earlier = job_submitted(GenerationBatch, submission, pool=pool, total=count)
    if earlier is not None:
        return earlier
    if pool.source != PoolSource.BULK:
        raise GenerationError("Only bulk generation pools generate coupons in batches.")
    if not 1 <= count <= BATCH_LIMIT:
        raise GenerationError(f"Generate between 1 and {BATCH_LIMIT:,} coupons per batch.")
    with transaction.atomic():
        pool = CouponPool.objects.select_for_update().get(pk=pool.pk)
        earlier = job_submitted(GenerationBatch, submission, pool=pool, total=count)
        if earlier is not None:  # the same form, sent twice at once: the other send got the lock first
            return earlier
        capacity = pool_generation_capacity(pool)
        if count > capacity.available:
            raise GenerationError(_capacity_refusal(count, capacity))
        batch = job_create(GenerationBatch, pool=pool, total=count, user=user, submission=submission, enqueue=enqueue)
        if pool.generation_started_at is None:
            # From now on source and pattern are locked (CouponPool.clean).
            CouponPool.objects.filter(pk=pool.pk).update(generation_started_at=timezone.now())
    return batch


def _capacity_refusal(count: int, capacity: Capacity) -> str:
    if capacity.available == 0:
        return "This pool cannot take more coupons: it has reached its maximum of " f"{capacity.limit:,}."
    why = (
        f"at most 1% of the pattern's {capacity.combinations:,} combinations, against guessing"
        if capacity.guessing_limit < capacity.pool_limit
        else f"at most {capacity.pool_limit:,} coupons per pool"
    )
    return (
        f"This pool can take only {capacity.available:,} more {ngettext('coupon', 'coupons', capacity.available)} "
        f"({why}); {count:,} {ngettext('was', 'were', count)} requested."
    )


def generation_resume(*, batch: GenerationBatch, user=None, enqueue: bool = True) -> GenerationBatch:
    return job_resume(job=batch, user=user, enqueue=enqueue)


def _take_capacity_again(batch: GenerationBatch) -> None:
    """Before a batch is queued again (under its row lock): a failed batch gave its
    unmade coupons back to the pool, so it takes them again, under the pool's lock like
    ``generation_start``, so that parallel resumes and starts cannot pass the limits."""
    pool = CouponPool.objects.select_for_update().get(pk=batch.pool_id)
    if batch.status != JobStatus.FAILED:
        return
    capacity = pool_generation_capacity(pool)
    missing = batch.total - batch.processed
    if missing > capacity.available:
        raise JobRefused(_capacity_refusal(missing, capacity))


def generation_run_job(batch: GenerationBatch, run: Run) -> str:
    """Fill the batch up to ``total``, chunk by chunk (``COUPON_GENERATION_LANES`` at once).

    On PostgreSQL, outside a caller's transaction, several chunks are written at once,
    each by its own thread on its own connection: PostgreSQL spends a core per COPY, and
    one COPY is what a single connection can do. Every chunk commits with the counter
    that counts it, on condition that this run still owns the batch and the counter
    never passes ``total``: lanes can never overshoot, a cancel stops them.
    """
    while True:
        batch = GenerationBatch.objects.get(pk=batch.pk)  # the chunks read the pool themselves
        if batch.runner != run.token or batch.status != JobStatus.RUNNING:
            raise JobStopped
        if batch.processed >= batch.total:
            return f"{counted(batch.processed, 'coupon', 'coupons')} generated."
        _fill(batch, run)  # returns when its share is made, or the batch was stopped


def _lanes() -> int:
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return 1  # SQLite has one writer; a caller's transaction must see every chunk
    return max(1, settings.COUPON_GENERATION_LANES)


class _Plan:
    """What the lanes of one run share: the coupons still to start, under a lock."""

    def __init__(self, batch: GenerationBatch, run: Run):
        self.batch, self.run = batch, run
        self.planned = batch.processed  # committed, plus what lanes are making now
        self.stopped = False
        self.lock = threading.Lock()

    def take(self) -> int:
        with self.lock:
            if self.stopped:
                return 0
            size = max(0, min(CHUNK, self.batch.total - self.planned))
            self.planned += size
            return size

    def done(self, size: int, inserted: int, generated: int) -> None:
        """Account for a committed chunk and report progress (from the lane's thread,
        one report at a time, in increasing order)."""
        with self.lock:
            self.planned -= size - inserted  # codes that met existing ones are made again
            if generated > self.batch.processed:  # lanes commit in any order
                self.batch.processed = generated
                self.run.report(self.batch)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True


def _fill(batch: GenerationBatch, run: Run) -> None:
    plan = _Plan(batch, run)
    lanes = _lanes()
    if lanes == 1:
        _lane(plan)
        return
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix=f"generation-{batch.pk}") as executor:
        futures = [executor.submit(_threaded_lane, plan) for _ in range(lanes)]
        try:
            for future in as_completed(futures):
                future.result()  # the first error stops the other lanes after their chunk
        except BaseException:
            plan.stop()
            raise


def _threaded_lane(plan: _Plan) -> None:
    try:
        _lane(plan)
    finally:
        connection.close()  # this thread's own connection


def _lane(plan: _Plan) -> None:
    barren = 0  # codes drawn since the last chunk that added any
    while size := plan.take():
        committed = _chunk(plan.batch.pk, plan.run.token, plan.batch.pool_id, size)
        if committed is None:  # the batch is full, or this run no longer owns it
            plan.stop()
            return
        inserted, generated = committed
        plan.done(size, inserted, generated)
        # Counted in codes, not chunks: the last chunks of a batch are small, and a few
        # codes that all exist already say nothing about the pattern being used up.
        barren = 0 if inserted else barren + size
        if barren >= BARREN_CODES:
            plan.stop()
            raise GenerationError(
                "No new codes could be made: nearly every combination of the pattern exists "
                "already (in this pool or another)."
            )


_COUNT = (
    "UPDATE coupons_generationbatch SET processed = processed + %s, heartbeat_at = %s "
    "WHERE id = %s AND runner = %s AND status = %s AND processed + %s <= total RETURNING processed"
)


def _chunk(batch_id: int, runner: str, pool_id: int, size: int) -> tuple[int, int] | None:
    """Make ``size`` codes and commit the new ones with the counter, in one transaction.

    Returns (inserted, generated), or None, with nothing kept, when counting them would
    take the batch past ``total`` or the run no longer owns the batch. Only the batch row
    is locked, and only from the count to the commit: claims on the pool go on meanwhile.
    The pool is read for every chunk: its excluded phrases and its terms may be edited
    while a batch runs, and the next chunk follows them.
    """
    for attempt in range(5):
        try:
            with transaction.atomic():
                pool = CouponPool.objects.get(pk=pool_id)
                matrix = pool.compiled_pattern().generate_matrix(size)
                inserted = _insert_codes(pool, matrix)
                now = timezone.now()
                with connection.cursor() as cursor:
                    cursor.execute(_COUNT, [inserted, now, batch_id, runner, JobStatus.RUNNING, inserted])
                    row = cursor.fetchone()
                if row is None:
                    transaction.set_rollback(True)
                    return None
                return inserted, row[0]
        except (OperationalError, psycopg.errors.DeadlockDetected) as exc:
            # Parallel chunks that met on the same new codes: one gives way, nothing kept.
            if not is_deadlock(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")


def _insert_codes(pool: CouponPool, matrix) -> int:
    """Insert the codes as unassigned coupons of ``pool``; returns how many were new."""
    if connection.vendor == "postgresql":
        return _insert_postgresql(pool, matrix)
    return _insert_portable(pool, codes_to_str(matrix))


_FROM_STAGE = f"{row_sql.UNASSIGNED_INSERT}SELECT %s, %s, code, false, %s, 0, 0 FROM generation_stage"


def _insert_postgresql(pool: CouponPool, matrix) -> int:
    """Move one chunk of codes into the coupons table.

    First, in a savepoint, a plain COPY straight into the table: with codes drawn at
    random from a pattern that allows 100 times the pool's size, a chunk almost never
    meets an existing code, and this is as fast as loading ready-made rows. It is
    safe because the unique index refuses any duplicate, also one a parallel batch
    has just inserted: then the savepoint is rolled back and the chunk goes through a
    staging table and ``ON CONFLICT DO NOTHING``, in code order (parallel batches then
    lock codes in the same order and cannot deadlock).
    """
    params = [pool.pk, pool.current_terms_id, int(CouponStatus.UNASSIGNED)]
    with connection.cursor() as cursor:
        # The chunk and the batch counter commit together, so a database crash can only
        # lose both (the resume makes them again): no need to wait for the WAL flush.
        cursor.execute("SET LOCAL synchronous_commit = off")
        try:
            with transaction.atomic():
                with cursor.copy(row_sql.UNASSIGNED_COPY) as copy:
                    prefix, suffix = row_sql.unassigned_copy_affixes(pool.pk, pool.current_terms_id)
                    copy.write(_copy_rows(matrix, prefix=prefix, suffix=suffix))
                return len(matrix)
        except (IntegrityError, psycopg.IntegrityError):  # cursor.copy is psycopg's own, unwrapped
            pass
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS generation_stage (code text) ON COMMIT DELETE ROWS")
        cursor.execute("TRUNCATE generation_stage")
        with cursor.copy("COPY generation_stage (code) FROM STDIN") as copy:
            copy.write(codes_to_lines(matrix))
        cursor.execute(
            _FROM_STAGE + ' ORDER BY code COLLATE "C" ON CONFLICT (code) WHERE shared_code = false DO NOTHING',
            params,
        )
        return cursor.rowcount


def _copy_rows(matrix, *, prefix: str, suffix: str) -> bytes:
    """COPY text rows ``prefix + code + suffix`` for every code, built without a loop."""
    head, tail = np.frombuffer(prefix.encode(), np.uint8), np.frombuffer(suffix.encode(), np.uint8)
    rows = np.empty((len(matrix), len(head) + matrix.shape[1] + len(tail)), dtype=np.uint8)
    rows[:, : len(head)] = head
    rows[:, len(head) : len(head) + matrix.shape[1]] = matrix
    rows[:, len(head) + matrix.shape[1] :] = tail
    return rows.tobytes()


def _insert_portable(pool: CouponPool, codes: list[str]) -> int:
    with connection.cursor() as cursor:
        cursor.executemany(
            row_sql.UNASSIGNED_INSERT.replace("INSERT", "INSERT OR IGNORE", 1) + "VALUES (%s, %s, %s, 0, %s, 0, 0)",
            # The engine's random order: SQLite has one writer, so there is no lock order
            # to keep, and ids in code order would hand out neighbouring codes in turn.
            [(pool.pk, pool.current_terms_id, code, int(CouponStatus.UNASSIGNED)) for code in codes],
        )
        return cursor.rowcount


register(JobKind(
    name="generation", label="Generation", model=GenerationBatch, run=generation_run_job,
    failures=(GenerationError, PatternError), before_resume=_take_capacity_again,
    describe=lambda batch: f"Generate {counted(batch.total, 'coupon', 'coupons')}", permission="coupons.add_coupon",
    result_url=lambda batch: reverse("coupons:pool_generation", args=[batch.pool_id]),
))
