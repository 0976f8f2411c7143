"""Fill a pool quickly with a realistic mix of coupons, for demos and benchmarks.

On PostgreSQL the codes stream into a staging table with COPY and land in the pool
with one INSERT ... SELECT that draws each coupon's status in SQL, followed by the
claim and redeem events of the customers that hold them. Other databases take a
slower ORM path.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from pools.models import CouponPool
from pools.patterns import parse_pattern

from . import rows as row_sql
from .models import Coupon, CouponStatus, Customer, CustomerEvent, EventAction

S = CouponStatus
# share of each status, in the order the SQL CASE tests them
MIX = [(S.UNASSIGNED, 0.60), (S.CLAIMED, 0.25), (S.REDEEMED, 0.08), (S.EXPIRED, 0.04), (S.INVALID, 0.03)]
COPY_CHUNK = 500_000


def _code_pattern(pool: CouponPool):
    compiled = pool.compiled_pattern()
    if compiled is not None and not compiled.is_generic:
        return compiled
    return parse_pattern(f"S{pool.pk}-$$$$$$$$$$$$")


def coupons_seed(*, pool: CouponPool, count: int, progress=None) -> int:
    """Add about ``count`` coupons to ``pool``; returns how many were added."""
    if connection.vendor == "postgresql":
        return _seed_postgresql(pool, count, progress or (lambda done: None))
    return _seed_orm(pool, count)


def _seed_postgresql(pool: CouponPool, count: int, progress) -> int:
    token = secrets.token_hex(3)
    pattern = _code_pattern(pool)
    customers = max(1, count // 10)
    with transaction.atomic(), connection.cursor() as cursor:
        # Check foreign keys row by row as they are inserted, instead of queueing
        # millions of deferred checks for the COMMIT.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        before = Coupon.objects.filter(pool=pool).order_by("-id").values_list("id", flat=True).first() or 0
        cursor.execute("CREATE TEMP TABLE seed_codes (code text) ON COMMIT DROP")
        written = 0
        while written < count:
            size = min(COPY_CHUNK, count - written)
            with cursor.copy("COPY seed_codes (code) FROM STDIN") as copy:
                copy.write(pattern.generate_lines(size))
            written += size
            progress(written // 2)
        cursor.execute(
            "INSERT INTO coupons_customer (external_id, email, currency, created_at) "
            "SELECT %s || n, %s || n || '@example.com', 'EUR', now() FROM generate_series(1, %s) n",
            [f"SEED-{token}-", f"seed-{token}-", customers],
        )
        cursor.execute(
            "SELECT min(id), max(id), count(*) FROM coupons_customer WHERE external_id LIKE %s", [f"SEED-{token}-%"]
        )
        first_customer, last_customer, made = cursor.fetchone()
        # One INSERT took one block of the sequence, so customer k is first + k; a
        # join would hand the coupons out grouped by customer.
        assert last_customer - first_customer + 1 == made == customers, "seed customers are not contiguous"
        bounds, case = 0.0, []
        for status, share in MIX[:-1]:
            bounds += share
            case.append(f"WHEN r < {bounds} THEN {int(status)}")
        status_sql = f"CASE {' '.join(case)} ELSE {int(MIX[-1][0])} END"
        held = row_sql.status_list(S.CLAIMED, S.REDEEMED, S.EXPIRED)  # a customer's, claimed once
        recent = row_sql.status_list(S.CLAIMED, S.REDEEMED)
        expired, redeemed = int(S.EXPIRED), int(S.REDEEMED)
        cursor.execute(
            f"""
            INSERT INTO {row_sql.COUPON_TABLE} {row_sql.column_list((*row_sql.COUPON_COLUMNS, "balance"))}
            SELECT %(pool)s, %(terms)s, s.code, false, s.status,
                   CASE WHEN s.status IN {held} THEN %(first_customer)s + s.rn %% %(customers)s END,
                   CASE WHEN s.status IN {recent} THEN now() - s.age * interval '25 days'
                        WHEN s.status = {expired} THEN now() - (40 + s.age * 50) * interval '1 day' END,
                   CASE WHEN s.status IN {recent} THEN now() - s.age * interval '25 days' + interval '30 days'
                        WHEN s.status = {expired} THEN now() - (10 + s.age * 50) * interval '1 day' END,
                   CASE WHEN s.status = {redeemed} THEN 1 ELSE 0 END,
                   CASE WHEN s.status IN {held} THEN 1 ELSE 0 END,
                   CASE WHEN s.status = {redeemed} AND %(gift)s THEN 0 END
            FROM (SELECT code, {status_sql} AS status, random() AS age, row_number() OVER () AS rn
                  FROM (SELECT code, random() AS r FROM seed_codes) raw) s
            ON CONFLICT (code) WHERE shared_code = false DO NOTHING
            """,
            {"pool": pool.pk, "terms": pool.current_terms_id, "customers": customers,
             "first_customer": first_customer, "gift": pool.is_gift_card},
        )
        added = cursor.rowcount
        progress(count * 3 // 4)
        # Events in time order, as the product writes them (ids follow time).
        cursor.execute(
            f"{row_sql.EVENT_INSERT}"
            "SELECT customer_id, action, id, pool_id, 'system', NULL, 'seed', jsonb_build_object('code', code), at "
            "FROM (SELECT customer_id, %s AS action, id, pool_id, code, claimed_at AS at FROM coupons_coupon "
            f"      WHERE pool_id = %s AND id > %s AND status IN {held} AND customer_id IS NOT NULL "
            "      UNION ALL "
            "      SELECT customer_id, %s, id, pool_id, code, claimed_at + interval '2 hours' FROM coupons_coupon "
            f"      WHERE pool_id = %s AND id > %s AND status = {redeemed} AND customer_id IS NOT NULL) e "
            "ORDER BY at",
            [EventAction.CLAIM, pool.pk, before, EventAction.REDEEM, pool.pk, before],
        )
        cursor.execute("DELETE FROM coupons_customer c WHERE c.external_id LIKE %s AND NOT EXISTS "
                       "(SELECT 1 FROM coupons_coupon k WHERE k.customer_id = c.id)", [f"SEED-{token}-%"])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE coupons_coupon")
        cursor.execute("ANALYZE coupons_customer")
        cursor.execute("ANALYZE coupons_customerevent")
    progress(count)
    return added


def _seed_orm(pool: CouponPool, count: int) -> int:
    token = secrets.token_hex(3)
    now = timezone.now()
    codes = _code_pattern(pool).generate(count)
    customers = Customer.objects.bulk_create(
        Customer(external_id=f"SEED-{token}-{n}", email=f"seed-{token}-{n}@example.com", currency="EUR")
        for n in range(max(1, count // 10))
    )
    coupons, draws = [], [secrets.randbelow(10_000) / 10_000 for _ in codes]
    for index, (code, r) in enumerate(zip(codes, draws, strict=True)):
        status, bound = S.INVALID, 0.0
        for candidate, share in MIX:
            bound += share
            if r < bound:
                status = candidate
                break
        held = status in (S.CLAIMED, S.REDEEMED, S.EXPIRED)
        claimed = now - timedelta(days=40 if status == S.EXPIRED else 5)
        coupons.append(Coupon(
            pool=pool, terms_id=pool.current_terms_id, code=code, status=status,
            customer=customers[index % len(customers)] if held else None,
            claimed_at=claimed if held else None, expires_at=claimed + timedelta(days=30) if held else None,
            usages=1 if status == S.REDEEMED else 0, claims=1 if held else 0,
            balance=0 if status == S.REDEEMED and pool.is_gift_card else None,
        ))
    created = Coupon.objects.bulk_create(coupons, batch_size=2000, ignore_conflicts=True)
    saved = Coupon.objects.filter(pool=pool, customer__isnull=False, code__in=[c.code for c in created if c.customer])
    CustomerEvent.objects.bulk_create(
        CustomerEvent(customer_id=c.customer_id, action=EventAction.CLAIM, coupon=c, pool=pool, actor_kind="system",
                      actor_label="seed", data={"code": c.code}, created_at=c.claimed_at)
        for c in saved
    )
    return len(created)
