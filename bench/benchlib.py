"""Helpers the bench scripts share (importing it sets no database: each script does)."""

import time


def fresh_database(server: str, name: str) -> None:
    """Drop and create the bench's own database on ``server``."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


class _Rollback(Exception):
    pass


def copy_codes(pool, lines: bytes, keep: bool = True) -> float:
    """A plain COPY of ready-made codes into the coupons table, in one transaction."""
    from django.db import connection, transaction

    started = time.monotonic()
    seconds = 0.0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            _copy(cursor, pool, lines)
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # what COMMIT would check
            seconds = time.monotonic() - started
            if not keep:
                raise _Rollback
        seconds = time.monotonic() - started
    except _Rollback:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM coupons_coupon")  # clear the dead index entries
    return seconds


def _copy(cursor, pool, lines: bytes) -> None:
    from coupons import rows as row_shape

    with cursor.copy(row_shape.UNASSIGNED_COPY) as copy:
        prefix, suffix = (part.encode() for part in row_shape.unassigned_copy_affixes(pool.pk, pool.current_terms_id))
        step = 500_000
        rows = lines.split(b"\n")[:-1]
        for start in range(0, len(rows), step):
            copy.write(b"".join(prefix + code + suffix for code in rows[start : start + step]))


def vm_hwm_kb(pid: int) -> int:
    """The process's own peak RSS since exec. (getrusage's ru_maxrss would include the
    parent's memory, which Linux carries into a child's high-water mark at exec.)"""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
