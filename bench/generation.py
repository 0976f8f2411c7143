"""Bulk generation speed on PostgreSQL.

Builds a fresh database ``coupons_bench_gen`` holding ``--filler`` other coupons, then
in the same run measures, both against that same table:
- ``copy_baseline_s``: a plain psycopg COPY of ``--count`` ready-made codes straight
  into the coupons table (no generation, no conflict handling), rolled back and
  vacuumed away afterwards, and
- ``seconds``: ``manage.py generate_coupons POOL --count N`` (the service the workers
  run) in its own process, as timed by the command from the batch's start to its end
  (``process_s`` adds the interpreter and Django starting up); its peak RSS is
  ``peak_rss_mb``.
Prints one JSON line.

    .venv/bin/python bench/generation.py --count 5000000
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
DATABASE = "coupons_bench_gen"
os.environ.update(
    DATABASE_URL=f"{SERVER}/{DATABASE}", SECRET_KEY="bench", DJANGO_SETTINGS_MODULE="couponsite.settings",
    LOG_LEVEL="WARNING",
)


def fresh_database():
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


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
    with cursor.copy(
        "COPY coupons_coupon (pool_id, terms_id, code, shared_code, status, usages, claims) FROM STDIN"
    ) as copy:
        prefix = f"{pool.pk}\t{pool.current_terms_id}\t".encode()
        suffix = b"\tf\t1\t0\t0\n"
        step = 500_000
        rows = lines.split(b"\n")[:-1]
        for start in range(0, len(rows), step):
            copy.write(b"".join(prefix + code + suffix for code in rows[start : start + step]))


def _vm_hwm_kb(pid: int) -> int:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5_000_000)
    parser.add_argument("--filler", type=int, default=5_000_000)
    args = parser.parse_args()
    fresh_database()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from pools.patterns import parse_pattern
    from pools.services import pool_create

    call_command("migrate", verbosity=0)

    def pool(name, source="uploaded", pattern=None):
        return pool_create(actor=None, name=name, external_id=name, source=source, pattern=pattern,
                           coupon_type="amount", value=5)

    copy_codes(pool("FILLER"), parse_pattern("F-$$$$$$$$$$").generate_lines(args.filler))
    ready = parse_pattern("C-$$$$$$$$$$").generate_lines(args.count)  # made before the clock starts
    copy_baseline = copy_codes(pool("BASELINE"), ready, keep=False)
    del ready
    target = pool("GENERATED", source="bulk", pattern="G-$$$$$$$$$$")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE coupons_coupon")
    connection.close()

    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "manage.py", "generate_coupons", "GENERATED", "--count", str(args.count)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    peak_kb = 0
    while child.poll() is None:
        peak_kb = max(peak_kb, _vm_hwm_kb(child.pid))
        time.sleep(0.05)
    process_seconds = time.monotonic() - started
    output = child.stdout.read()
    assert child.returncode == 0, child.returncode
    # The command's own timing: from the batch's start to its end, like the baseline,
    # without the interpreter and Django starting up (that is in process_s).
    seconds = float(re.search(r"generated for .* in ([0-9.]+) s", output).group(1))

    from coupons.models import Coupon

    generated = Coupon.objects.filter(pool=target).count()
    assert generated == args.count, generated
    print(json.dumps({
        "count": generated,
        "seconds": round(seconds, 1),
        "process_s": round(process_seconds, 1),
        "codes_per_s": round(generated / seconds),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "copy_baseline_s": round(copy_baseline, 1),
        "ratio": round(seconds / copy_baseline, 2),
        "other_coupons": args.filler,
    }))


if __name__ == "__main__":
    main()
