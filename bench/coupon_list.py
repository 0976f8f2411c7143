"""Coupons tab speed on a big pool (PostgreSQL).

Seeds (or reuses) a pool of N coupons in the database ``coupons_bench`` (override with
DATABASE_URL), requests the real pages through Django's test client as a logged-in
manager and prints one JSON line: server time in ms of each page (median of 5 warm
requests; ``pool_list_ms`` is the pool list, a page of 50 pools, one of them holding the
N coupons, and ``pool_list_queries`` its queries; ``bulk_preview_ms`` and
``bulk_preview_search_ms`` the bulk dialog's counts of the whole pool and of a
customer's coupons), the seconds to invalidate 1,000,000 unassigned coupons with their
events, and what the pages sent to the database: ``count_star_over_pool`` and
``offset`` (both must be 0).

    .venv/bin/python bench/coupon_list.py [--count 10000000]
"""

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/coupons_bench")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "couponsite.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

BENCH_POOL = "BENCH-LIST"
INVALIDATE = 1_000_000
LIST_PAGE = 50  # pools a page of the pool list shows


def ensure_database():
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000_000)
    parser.add_argument("--invalidate", type=int, default=INVALIDATE, help="coupons of the timed bulk invalidate")
    args = parser.parse_args()
    invalidate = args.invalidate
    ensure_database()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from coupons.bulk import BULK_ACTIONS, bulk_apply
    from coupons.models import Coupon, CouponStatus
    from coupons.seeding import coupons_seed
    from coupons.selectors import LIST_STOCK_EXACT_LIMIT
    from coupons.services import Actor
    from pools.models import CouponPool
    from pools.services import pool_create

    call_command("migrate", verbosity=0)
    pool = CouponPool.objects.filter(external_id=BENCH_POOL).first() or pool_create(
        actor=None, name="Bench pool", external_id=BENCH_POOL, source="uploaded",
        coupon_type="amount", value=5, expiration_period_count=30, expiration_period_unit="day",
    )
    seed_seconds = 0.0
    have = _estimate(connection, pool.pk)
    unassigned = Coupon.objects.filter(pool=pool, status=CouponStatus.UNASSIGNED)
    if have < args.count * 0.98:
        started = time.monotonic()
        coupons_seed(pool=pool, count=args.count - have)
        seed_seconds = time.monotonic() - started
    while not unassigned.filter(pk__in=unassigned.order_by("-id").values("pk")[invalidate - 1:invalidate]).exists():
        coupons_seed(pool=pool, count=invalidate)  # earlier runs used the unassigned ones up

    user, _ = get_user_model().objects.get_or_create(username="bench-manager", defaults={"is_superuser": True})
    client = Client()
    client.force_login(user)
    base = f"/pools/{pool.pk}/coupons/"
    sample = Coupon.objects.filter(pool=pool, customer__isnull=False).order_by("-id").select_related("customer").first()
    figures, sql = {}, []

    def timed(name, url, params=None, *, checked=True):
        runs = []
        for _ in range(6):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url, params or {})
                runs.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        if checked:
            sql.extend(q["sql"] for q in queries.captured_queries)
        figures[name] = round(statistics.median(runs[1:]), 1)
        return response

    timed("first_page_ms", base)
    cursor = None
    for _ in range(100):  # 100 "next" clicks
        response = client.get(base, {"after": cursor} if cursor else {})
        cursor = re.search(r'rel="next" href="[^"]*after=(\d+)"', response.content.decode()).group(1)
    timed("page_100_ms", base, {"after": cursor})
    timed("code_search_ms", base, {"q": sample.code, "match": "exact"})
    timed("prefix_search_ms", base, {"q": sample.code[:6]})
    timed("status_filter_ms", base, {"status": "claimed"})
    timed("customer_page_ms", f"/customers/{sample.customer_id}/")
    for n in range(1, LIST_PAGE):  # the rest of a page of the pool list, after "Bench pool"
        if not CouponPool.objects.filter(external_id=f"{BENCH_POOL}-{n:02}").exists():
            pool_create(actor=None, name=f"Bench pool {n:02}", external_id=f"{BENCH_POOL}-{n:02}", source="uploaded",
                        coupon_type="amount", value=5)
    # Its stock column counts each pool bounded at 10,001 (that COUNT is not over the pool: not checked)
    with CaptureQueriesContext(connection) as queries:
        listed = timed("pool_list_ms", "/pools/", checked=False).content.decode()
    assert listed.count('data-testid="stock"') == LIST_PAGE, "every listed pool shows its stock"
    held = unassigned[:LIST_STOCK_EXACT_LIMIT + 1].count()
    assert held <= LIST_STOCK_EXACT_LIMIT or "about " in listed, "past the cap the bench pool's stock is estimated"
    figures["pool_list_queries"] = len(queries.captured_queries) // 6
    # The bulk dialog's counts (bounded at 100,001 rows of the selection, then estimated)
    preview_url = reverse("coupons:pool_coupons_bulk_preview", args=[pool.pk])
    timed("bulk_preview_ms", preview_url, {"action": "invalidate", "select_all": "1"}, checked=False)
    timed("bulk_preview_search_ms", preview_url, {"action": "invalidate", "select_all": "1", "q": sample.customer.external_id},
          checked=False)

    bound = unassigned.order_by("-id").values_list("id", flat=True)[invalidate - 1]
    target = Coupon.objects.filter(pool=pool, status=CouponStatus.UNASSIGNED, id__gte=bound)
    started = time.monotonic()
    result = bulk_apply(action=BULK_ACTIONS["invalidate"], queryset=target, pool_id=pool.pk, actor=Actor.system("bench"))
    figures["bulk_invalidate_s"] = round(time.monotonic() - started, 1)
    assert result.applied == invalidate, result

    lowered = [q.lower() for q in sql]
    figures.update({
        "coupons_in_pool": _estimate(connection, pool.pk),
        "seed_s": round(seed_seconds, 1),
        "count_star_over_pool": sum(1 for q in lowered if "count(" in q and "code" not in q and "customer" not in q),
        "offset": sum(1 for q in lowered if " offset " in q),
    })
    print(json.dumps(figures))


def _estimate(connection, pool_id) -> int:
    from coupons.models import Coupon
    from couponsite.counting import count_or_estimate

    return count_or_estimate(Coupon.objects.filter(pool_id=pool_id))


if __name__ == "__main__":
    main()
