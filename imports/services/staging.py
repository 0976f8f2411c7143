"""The import's staging table and the set-based SQL run on it: the rows read from the
file go in (COPY on PostgreSQL), the database marks what cannot be imported (unknown
customers, repeated codes, codes that exist in any pool) and inserts the rest as
coupons with their claim events, chunk by chunk of row numbers (``import_chunk``).
The coupon and event rows' shape comes from ``coupons.rows``."""

from __future__ import annotations

import logging
from itertools import islice

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from coupons import rows as row_sql
from coupons.models import ActorKind, CouponStatus, EventAction
from couponsite.dberrors import is_deadlock
from pools.models import CouponPool

from ..models import ImportJob, RowOutcome
from ..parsing import Record

log = logging.getLogger(__name__)

RAW_LIMIT = 1000  # characters kept of an invalid row's cells


REJECTIONS_KEPT = 100_000  # rows kept of each kind not imported (invalid, repeated, existing)


def stage_name(job: ImportJob) -> str:
    return f"imports_stage_{int(job.pk)}"


def postgresql() -> bool:
    return connection.vendor == "postgresql"


def stage_is_filled(job: ImportJob) -> bool:
    """An unlogged staging table is emptied by a database crash: then read again."""
    with connection.cursor() as cursor:
        if stage_name(job) not in connection.introspection.table_names(cursor):
            return False
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {stage_name(job)})")
        return bool(cursor.fetchone()[0])


def drop_stage(job: ImportJob) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {stage_name(job)}")


def create_stage(cursor, stage: str) -> None:
    """The import's staging table, empty (unlogged on PostgreSQL: rebuilt from the file
    after a crash)."""
    cursor.execute(f"DROP TABLE IF EXISTS {stage}")
    if postgresql():
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


def mark_after_reading(cursor, stage: str, job: ImportJob) -> None:
    """Once every row is staged: the row index, then the rows invalid whatever else is in
    the file, then the repeated codes (and customers, for aggregated pools)."""
    if postgresql():
        cursor.execute(f"CREATE INDEX {stage}_row ON {stage} (row)")
        # One hash aggregate over the file's codes: about 100 bytes a row, in memory.
        work_mem = min(max(64, job.total // 10_000), 512)
        cursor.execute(f"SET LOCAL work_mem = '{int(work_mem)}MB'")
    # First what makes a row invalid whatever else is in the file (its customer),
    # then repeated codes among the rows left: every later step sees the same rows,
    # whichever run, chunk or look-ahead gets there first.
    if "customer" in job.mapping:  # a file without customers skips a pass over it
        mark_customer_problems(cursor, stage, job.pool)
    # Every row that repeats the code of an earlier valid row, with that row.
    cursor.execute(
        f"UPDATE {stage} SET outcome = {int(RowOutcome.DUPLICATE_IN_FILE)}, "
        f"reason = 'The code appears earlier in the file, in row ' || first.row_number || '.' "
        f"FROM (SELECT code, min(row) AS row_number FROM {stage} WHERE outcome = 0 "
        "GROUP BY code HAVING count(*) > 1) AS first "
        f"WHERE {stage}.code = first.code AND {stage}.row <> first.row_number AND {stage}.outcome = 0"
    )
    if job.pool.aggregated and "customer" in job.mapping:
        mark_repeated_customers(cursor, stage)


INVALID = int(RowOutcome.INVALID)


def mark_customer_problems(cursor, stage: str, pool: CouponPool) -> None:
    """Rows naming a customer that does not exist, or one who cannot get this coupon."""
    cursor.execute(
        f"UPDATE {stage} SET outcome = {INVALID}, "
        "reason = 'No customer has the ID \"' || customer || '\". Create the customer first, or leave the customer out.' "
        f"WHERE outcome = 0 AND customer IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {row_sql.CUSTOMER_TABLE} cu WHERE cu.external_id = {stage}.customer)"
    )
    required = pool.current_terms.currency_required
    if required:
        cursor.execute(
            f"UPDATE {stage} SET outcome = {INVALID}, "
            f"reason = 'These gift cards are in {required}; customer \"' || customer || '\" has ' || "
            "CASE WHEN cu.currency = '' THEN 'no currency' ELSE cu.currency END || '.' "
            f"FROM {row_sql.CUSTOMER_TABLE} cu WHERE {stage}.outcome = 0 AND cu.external_id = {stage}.customer "
            "AND cu.currency <> %s",
            [required],
        )
    if pool.aggregated:
        cursor.execute(
            f"UPDATE {stage} SET outcome = {INVALID}, "
            "reason = 'Customer \"' || customer || '\" holds a coupon of this pool already; the pool gives one "
            "coupon per customer.' "
            f"WHERE outcome = 0 AND customer IS NOT NULL AND EXISTS (SELECT 1 FROM {row_sql.COUPON_TABLE} c "
            f"JOIN {row_sql.CUSTOMER_TABLE} cu ON cu.id = c.customer_id WHERE cu.external_id = {stage}.customer "
            "AND c.pool_id = %s AND c.status = %s)",
            [pool.pk, int(CouponStatus.CLAIMED)],
        )


def mark_repeated_customers(cursor, stage: str) -> None:
    """Aggregated pools give one coupon per customer: a customer's later rows are invalid."""
    cursor.execute(
        f"UPDATE {stage} SET outcome = {INVALID}, "
        "reason = 'Customer \"' || first.customer || '\" gets a coupon in row ' || first.row_number || "
        "' already; the pool gives one coupon per customer.' "
        f"FROM (SELECT customer, min(row) AS row_number FROM {stage} WHERE outcome = 0 AND customer IS NOT NULL "
        "GROUP BY customer HAVING count(*) > 1) AS first "
        f"WHERE {stage}.customer = first.customer AND {stage}.row <> first.row_number AND {stage}.outcome = 0"
    )


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\u2400"})


def _raw(cells, index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index][:RAW_LIMIT]


def stage_rows(stage: str, records, mapping: dict[str, int], limit: int) -> int:
    """Up to ``limit`` records from the iterator into the staging table; returns how many."""
    count = 0
    if postgresql():
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


def import_chunk(job: ImportJob, stage: str, *, lower: int, upper: int, probed: bool = False) -> dict[int, int]:
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
        if postgresql():
            # The chunk and the job's counters commit together; a crash loses both.
            cursor.execute("SET LOCAL synchronous_commit = off")
        for attempt in range(20):
            if attempt or not probed:
                mark_existing(cursor, stage, params)
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


def mark_existing(cursor, stage: str, params: dict) -> None:
    """Mark the chunk's rows whose code exists in any pool, saying which.

    A correlated scalar subquery is one index probe per row: an ``EXISTS ... OR
    EXISTS`` became a hashed subplan that read the whole coupons table per chunk.
    Two branches, so that each can use its index (see ``coupons.selectors.code_q``).
    """
    probe = f"(SELECT c.pool_id FROM {row_sql.COUPON_TABLE} c WHERE c.shared_code = {{}} AND c.code = s.code LIMIT 1)"
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
        f"FROM {stage} LEFT JOIN {row_sql.CUSTOMER_TABLE} cu ON cu.external_id = {stage}.customer "
        f"WHERE {in_chunk} ORDER BY {stage}.row",
        params,
    )


def _claim_events(cursor, stage: str, in_chunk: str, params: dict, actor_user) -> None:
    data = "jsonb_build_object" if postgresql() else "json_object"
    cursor.execute(
        f"{row_sql.EVENT_INSERT}SELECT c.customer_id, '{EventAction.CLAIM.value}', c.id, c.pool_id, %(kind)s, %(user)s, %(label)s, "
        f"{data}('code', c.code, 'import', %(job)s), %(now)s "
        f"FROM {stage} JOIN {row_sql.COUPON_TABLE} c ON c.shared_code = false AND c.code = {stage}.code "
        f"WHERE {in_chunk} AND {stage}.customer IS NOT NULL",
        {
            **params,
            "kind": ActorKind.USER if actor_user else ActorKind.SYSTEM,
            "user": actor_user.pk if actor_user else None,
            "label": actor_user.get_username() if actor_user else f"import #{params['job']}",
        },
    )
