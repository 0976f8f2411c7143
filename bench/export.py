"""CSV export speed on PostgreSQL: the background export job against a plain COPY.

Builds a fresh database ``coupons_bench_exp`` with a pool of ``--count`` coupons (the
seeding mix: 40% claimed, redeemed, expired or invalid, with their customers), then
runs one export job of the whole pool in its own process, exactly as a worker runs it
(one snapshot, ``COPY ... TO STDOUT``, the formula guard, written to the storage), and
in the same run a plain ``COPY (SELECT * FROM coupons_coupon WHERE pool_id = ...) TO
STDOUT`` of the same rows into a file. Checks that the file holds exactly the rows that
match and prints one JSON line: ``rows``, ``seconds`` (the job), ``copy_baseline_s``,
``ratio``, ``peak_rss_mb`` (the job's process) and the file's ``mb``.

    .venv/bin/python bench/export.py --count 2000000 [--gzip]
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
DATABASE = "coupons_bench_exp"
WORK = Path(tempfile.gettempdir()) / "coupons-bench-export"
os.environ.update(
    DATABASE_URL=f"{SERVER}/{DATABASE}", SECRET_KEY="bench", DJANGO_SETTINGS_MODULE="couponsite.settings",
    LOG_LEVEL="WARNING", MEDIA_ROOT=str(WORK / "media"),
)

from benchlib import fresh_database, vm_hwm_kb  # noqa: E402

POOL = "BENCH-EXPORT"


def run_job(job_id: int) -> None:
    """In the child process: run the export job as the worker would, print its seconds."""
    import django

    django.setup()
    from coupons.jobs.engine import job_execute

    started = time.monotonic()
    job = job_execute(kind="export", job_id=job_id)
    print(json.dumps({"seconds": time.monotonic() - started, "status": job.status, "message": job.message}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2_000_000)
    parser.add_argument("--gzip", action="store_true", help="export as .csv.gz")
    parser.add_argument("--job", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.job:
        run_job(args.job)
        return
    fresh_database(SERVER, DATABASE)
    WORK.mkdir(parents=True, exist_ok=True)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from coupons.exports import export_submit
    from coupons.models import Coupon, ExportJob
    from coupons.seeding import coupons_seed
    from pools.services import pool_create

    call_command("migrate", verbosity=0)
    pool = pool_create(actor=None, name="Bench export", external_id=POOL, source="uploaded", coupon_type="amount", value=5)
    coupons_seed(pool=pool, count=args.count)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE coupons_coupon")
        cursor.execute("VACUUM ANALYZE coupons_customer")
    matched = Coupon.objects.filter(pool=pool).count()
    job = export_submit(pool=pool, filters={}, compress=args.gzip, user=None, total=matched)
    connection.close()

    baseline = copy_baseline(pool.pk)
    child = subprocess.Popen([sys.executable, __file__, "--job", str(job.pk)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak_kb = 0
    while child.poll() is None:
        peak_kb = max(peak_kb, vm_hwm_kb(child.pid))
        time.sleep(0.02)
    output = child.stdout.read()
    assert child.returncode == 0, output[-2000:]
    result = json.loads(output.strip().splitlines()[-1])
    job = ExportJob.objects.get(pk=job.pk)
    assert job.status == "done", result
    raw = (WORK / "media" / job.file.name).read_bytes()
    text = gzip.decompress(raw) if args.gzip else raw
    rows = text.count(b"\n") - 1  # the header
    assert rows == matched == job.processed, (rows, matched, job.processed)
    print(json.dumps({
        "rows": rows,
        "seconds": round(result["seconds"], 2),
        "copy_baseline_s": round(baseline, 2),
        "ratio": round(result["seconds"] / baseline, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "mb": round(len(raw) / 1e6, 1),
        "gzip": args.gzip,
    }))


def copy_baseline(pool_id: int) -> float:
    """A plain COPY of the pool's coupon rows into a file, on a connection of its own."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(f"{SERVER}/{DATABASE}") as conn, conn.cursor() as cursor, open(WORK / "baseline.csv", "wb") as out:
        with cursor.copy("COPY (SELECT * FROM coupons_coupon WHERE pool_id = %s) TO STDOUT WITH (FORMAT csv)", [pool_id]) as copy:
            for block in copy:
                out.write(block)
    return time.monotonic() - started


if __name__ == "__main__":
    main()
