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


from benchlib import copy_codes, fresh_database, vm_hwm_kb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5_000_000)
    parser.add_argument("--filler", type=int, default=5_000_000)
    args = parser.parse_args()
    fresh_database(SERVER, DATABASE)

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
        peak_kb = max(peak_kb, vm_hwm_kb(child.pid))
        time.sleep(0.05)
    process_seconds = time.monotonic() - started
    output = child.stdout.read()
    assert child.returncode == 0, child.returncode
    # The command's own timing: from the batch's start to its end, like the baseline,
    # without the interpreter and Django starting up (that is in process_s).
    seconds = max(0.05, float(re.search(r"generated for .* in ([0-9.]+) s", output).group(1)))  # printed to 0.1 s

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
