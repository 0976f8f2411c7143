"""CSV import speed on PostgreSQL.

Builds a fresh database ``coupons_bench_imp``, writes a CSV of ``--rows`` rows (random
12-character codes; 3% of the rows hold a code that another pool has already, 2% repeat
an earlier row of the file), then runs ``manage.py import_coupons`` (the same service
the workers run: keeping the file in the storage, reading, staging, importing) in its
own process. ``seconds`` is that process's wall time, ``peak_rss_mb`` its peak RSS.
Checks that the counts add up exactly and prints one JSON line.

    .venv/bin/python bench/imports.py --rows 5000000
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
DATABASE = "coupons_bench_imp"
WORK = Path(tempfile.mkdtemp(prefix="coupons-bench-imports-"))
os.environ.update(
    DATABASE_URL=f"{SERVER}/{DATABASE}", SECRET_KEY="bench", DJANGO_SETTINGS_MODULE="couponsite.settings",
    LOG_LEVEL="WARNING", MEDIA_ROOT=str(WORK / "media"),
)

from benchlib import copy_codes, fresh_database, vm_hwm_kb  # noqa: E402

ALPHABET = np.frombuffer(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", np.uint8)


def random_codes(count: int, rng) -> np.ndarray:
    """``count`` distinct random 12-character codes, as a (count, 12) byte matrix."""
    codes = np.empty((0, 12), np.uint8)
    while len(codes) < count:
        more = ALPHABET[rng.integers(0, len(ALPHABET), size=(count - len(codes) + 1000, 12))]
        codes = np.unique(np.concatenate([codes, more]), axis=0)
    return codes[rng.permutation(len(codes))[:count]]


def write_file(path: Path, rows: int, rng):
    """The file's rows and the codes another pool holds already; returns (distinct, existing)."""
    duplicates = rows * 2 // 100
    distinct = rows - duplicates
    codes = random_codes(distinct, rng)
    existing = rows * 3 // 100
    taken = codes[rng.choice(distinct, size=existing, replace=False)]
    # Each duplicate repeats a code from earlier in the file.
    order = np.arange(distinct)
    positions = np.sort(rng.integers(1, distinct, size=duplicates))
    repeated = rng.integers(0, positions)  # an index before the insertion point
    sequence = np.insert(order, positions, repeated)
    with open(path, "wb") as handle:
        handle.write(b"code\n")
        for start in range(0, len(sequence), 500_000):
            part = codes[sequence[start : start + 500_000]]
            lines = np.empty((len(part), 13), np.uint8)
            lines[:, :12], lines[:, 12] = part, ord("\n")
            handle.write(lines.tobytes())
    return distinct, taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--filler", type=int, default=0, help="other coupons in the database first")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    fresh_database(SERVER, DATABASE)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from pools.patterns import parse_pattern
    from pools.services import pool_create

    call_command("migrate", verbosity=0)

    def pool(name):
        return pool_create(actor=None, name=name, external_id=f"BENCH-{name}", source="uploaded", coupon_type="amount", value=5)

    rng = np.random.default_rng(args.seed)
    path = WORK / "codes.csv"
    distinct, taken = write_file(path, args.rows, rng)
    other = pool("OTHER")
    copy_codes(other, b"".join(bytes(code) + b"\n" for code in taken))
    if args.filler:
        copy_codes(pool("FILLER"), parse_pattern("F-$$$$$$$$$$").generate_lines(args.filler))
    pool("TARGET")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE coupons_coupon")
    connection.close()
    expected_created, expected_skipped = distinct - len(taken), args.rows - distinct + len(taken)
    del taken

    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "manage.py", "import_coupons", "BENCH-TARGET", str(path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    peak_kb = 0
    while child.poll() is None:
        peak_kb = max(peak_kb, vm_hwm_kb(child.pid))
        time.sleep(0.05)
    seconds = time.monotonic() - started
    output = child.stdout.read()
    assert child.returncode == 0, output[-2000:]
    summary = re.search(r"Import #\d+ .*", output).group(0)

    from coupons.models import Coupon
    from imports.models import ImportJob

    job = ImportJob.objects.get()
    in_pool = Coupon.objects.filter(pool__external_id="BENCH-TARGET").count()
    skipped = job.duplicates_in_file + job.existing + job.invalid
    assert job.total == args.rows and job.created + skipped == args.rows, summary
    assert (job.created, skipped) == (expected_created, expected_skipped), summary
    assert in_pool == job.created, (in_pool, job.created)
    from imports.services import REJECTIONS_KEPT

    kept = sum(min(n, REJECTIONS_KEPT) for n in (job.duplicates_in_file, job.existing, job.invalid))
    assert job.rejections.count() == kept, (job.rejections.count(), kept)
    print(json.dumps({
        "rows": job.total,
        "seconds": round(seconds, 1),
        "rows_per_s": round(job.total / seconds),
        "created": job.created,
        "skipped": skipped,
        "duplicates_in_file": job.duplicates_in_file,
        "existing": job.existing,
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "other_coupons": args.filler + args.rows * 3 // 100,
    }))


if __name__ == "__main__":
    main()
