"""API claim throughput on PostgreSQL through gunicorn.

Builds a fresh database ``coupons_bench_api`` with one uploaded pool of ``--coupons``
coupons, starts gunicorn (``--workers`` processes of ``--threads`` threads) on it, then
runs ``--clients`` concurrent clients that each claim for a new customer, one request
after another over a kept-alive connection, for ``--seconds``. Prints one JSON line:
claims, claims_per_s, p50_ms, p99_ms, errors (any answer but 201), duplicates (codes
issued more than once, checked in the answers and in the database).
``--idempotency-key`` sends a fresh ``Idempotency-Key`` with every claim. The database
is ``$BENCH_DATABASE`` (default ``coupons_bench_api``), dropped and made again.

    .venv/bin/python bench/api_claims.py
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
DATABASE = os.environ.get("BENCH_DATABASE", "coupons_bench_api")
os.environ.update(
    DATABASE_URL=f"{SERVER}/{DATABASE}", SECRET_KEY="bench", DJANGO_SETTINGS_MODULE="couponsite.settings",
    LOG_LEVEL="WARNING", ALLOWED_HOSTS="127.0.0.1,localhost", CONN_MAX_AGE="600",
    # The rate limits count in Redis, as in production (every request: one round trip).
    CACHE_URL=os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/13"),
)

from benchlib import copy_codes, fresh_database  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--coupons", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--idempotency-key", action="store_true", help="a fresh Idempotency-Key per request")
    args = parser.parse_args()
    fresh_database(SERVER, DATABASE)

    import django

    django.setup()
    import requests
    from django.core.management import call_command
    from django.db import connection

    from api.services import api_key_create
    from pools.patterns import parse_pattern
    from pools.services import pool_create

    call_command("migrate", verbosity=0)
    pool = pool_create(actor=None, name="Bench claims", external_id="BENCH-CLAIMS", source="uploaded",
                       coupon_type="amount", value=5)
    copy_codes(pool, parse_pattern("API-$$$$$$$$$$").generate_lines(args.coupons))
    key = api_key_create(name="Bench")[1]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "couponsite.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.workers), "--threads", str(args.threads), "--worker-class", "gthread",
         "--log-level", "warning"],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/api/v1/coupon-pools", timeout=5)
                break
            except requests.RequestException:
                time.sleep(0.2)
        latencies, codes, errors = [], [], Counter()
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds
        start = threading.Barrier(args.clients + 1)

        path = f"/api/v1/coupon-pools/{pool.pk}/claim"
        headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}

        def client(number: int) -> None:
            # http.client on one kept-alive connection: a light client, so that the
            # machine's two cores measure the server rather than the load generator.
            connection_ = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine_latencies, mine_codes, mine_errors, n = [], [], Counter(), 0
            start.wait()
            while time.monotonic() < stop_at:
                n += 1
                began = time.perf_counter()
                try:
                    sent = {**headers, "Idempotency-Key": f"bench-{number}-{n}"} if args.idempotency_key else headers
                    connection_.request("POST", path, body=json.dumps({"customer": f"bench-{number}-{n}"}), headers=sent)
                    response = connection_.getresponse()
                    status, body = response.status, response.read()
                except (OSError, http.client.HTTPException) as exc:
                    status, body = type(exc).__name__, b""
                    connection_.close()
                    connection_ = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                mine_latencies.append((time.perf_counter() - began) * 1000)
                if status == 201:
                    mine_codes.append(json.loads(body)["code"])
                else:
                    mine_errors[str(status)] += 1
            with lock:
                latencies.extend(mine_latencies)
                codes.extend(mine_codes)
                errors.update(mine_errors)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.monotonic()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
    finally:
        server.terminate()
        server.wait(timeout=30)

    from coupons.models import Coupon

    latencies.sort()
    in_answers = sum(count - 1 for count in Counter(codes).values() if count > 1)
    claimed = Coupon.objects.filter(pool=pool, status=2)
    in_database = claimed.count() - claimed.values("code").distinct().count()
    print(json.dumps({
        "claims": len(codes),
        "claims_per_s": round(len(codes) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "duplicates": in_answers + in_database,
        "claimed_in_database": claimed.count(),
        "clients": args.clients,
        "idempotency_key": args.idempotency_key,
        "server": f"gunicorn gthread {args.workers}x{args.threads}",
    }))


if __name__ == "__main__":
    main()
