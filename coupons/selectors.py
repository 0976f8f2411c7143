"""Reads for coupon and customer pages, built to stay fast on 100 million coupons.

- Lists are paged by keyset (``id < cursor``), never by OFFSET.
- No page runs COUNT(*) over a pool: counts shown to a manager come from the
  planner's estimate when it is large (``couponsite.counting``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from couponsite.counting import count_with_accuracy, estimate_counts
from pools.models import CouponPool, PoolSource

from . import rows as row_sql
from .access import visible_coupons, visible_customers, visible_events
from .models import Coupon, CouponStatus, Customer, CustomerEvent, EventAction

# --- coupons ---------------------------------------------------------------------


def coupons_of_pool(*, pool: CouponPool) -> QuerySet[Coupon]:
    return (
        Coupon.objects.filter(pool=pool)
        .select_related("customer", "terms__effective")
        .order_by("-id")
    )


def coupons_search(queryset: QuerySet[Coupon], *, text: str, mode: str = "prefix") -> QuerySet[Coupon]:
    """Code (exact or prefix, case-sensitive: codes are), or a customer's ID or email."""
    text = text.strip()
    if not text:
        return queryset
    by_code = code_q(text, prefix=mode != "exact")
    # A short list of ids, not a subquery: "code index OR customer index" then stays
    # two index scans instead of a scan of the whole pool.
    customer_ids = list(
        Customer.objects.filter(Q(external_id=text) | Q(email__iexact=text)).values_list("pk", flat=True)[:100]
    )
    if customer_ids:
        return queryset.filter(by_code | Q(customer_id__in=customer_ids))
    return queryset.filter(by_code)


def code_q(text: str, *, prefix: bool = False) -> Q:
    """Match a code (exactly or by prefix), written so PostgreSQL can use its indexes.

    The unique index on ``code`` is partial (generic codes repeat), so a query must
    state ``shared_code = false`` for the planner to use it; the generic codes have
    their own small partial index.
    """
    match = Q(code__startswith=text) if prefix else Q(code=text)
    return (Q(shared_code=False) & match) | (Q(shared_code=True) & match)


@dataclass
class Page:
    rows: list
    next_cursor: int | None
    prev_cursor: int | None
    has_prev: bool


def keyset_page(queryset: QuerySet, *, after: int | None, before: int | None, size: int) -> Page:
    """One page of a list ordered by descending id; ``after``/``before`` are ids."""
    if before is not None:
        rows = list(queryset.filter(id__gt=before).order_by("id")[: size + 1])
        has_more_newer = len(rows) > size
        rows = list(reversed(rows[:size]))
        return Page(rows, rows[-1].id if rows else None, rows[0].id if rows else None, has_more_newer)
    if after is not None:
        queryset = queryset.filter(id__lt=after)
    rows = list(queryset.order_by("-id")[: size + 1])
    has_next = len(rows) > size
    rows = rows[:size]
    return Page(
        rows,
        rows[-1].id if rows and has_next else None,
        rows[0].id if rows else None,
        after is not None,
    )


def coupon_get_visible(*, user, pk: int) -> Coupon:
    from django.shortcuts import get_object_or_404

    visible = Coupon.objects.filter(visible_coupons(user))
    return get_object_or_404(visible.select_related("pool", "customer", "terms__effective"), pk=pk)


def coupon_events(*, coupon: Coupon) -> QuerySet[CustomerEvent]:
    """The coupon's own history, newest first (index ``event_coupon``). Every event of a
    coupon belongs to its pool, so a user who may see the coupon may see them all."""
    return (
        CustomerEvent.objects.filter(coupon=coupon)
        .select_related("customer", "actor_user", "coupon__terms__effective")  # terms: the amounts' currency
        .order_by("-id")
    )


# --- statistics ------------------------------------------------------------------


def pool_status_counts(*, pool: CouponPool) -> dict[int, tuple[int, bool]]:
    """Coupons per status as ``(count, is_estimate)``: exact up to 100,000 each, the
    planner's estimate beyond, so the page never scans a pool of 100 million."""
    coupons = Coupon.objects.filter(pool=pool)
    return {status.value: count_with_accuracy(coupons.filter(status=status)) for status in CouponStatus}


@dataclass(frozen=True)
class StatusSummary:
    """A pool's coupons per status (``pool_status_counts``), in status order, with the total."""

    rows: list[tuple[CouponStatus, int, bool]]  # (status, count, is_estimate)
    holds_stock: bool = False  # ``pool_holds_stock``

    @property
    def total(self) -> int:
        return sum(n for _, n, _ in self.rows)

    @property
    def total_is_estimate(self) -> bool:
        return any(estimated for _, _, estimated in self.rows)

    def of(self, status: CouponStatus) -> tuple[int, bool]:
        return next((n, estimated) for s, n, estimated in self.rows if s == status)

    @property
    def stock(self) -> Stock | None:
        """The unassigned coupons, for a pool that holds stock."""
        return Stock(*self.of(CouponStatus.UNASSIGNED)) if self.holds_stock else None


def pool_status_summary(*, pool: CouponPool) -> StatusSummary:
    """The Statistics tab's and the overview's counts (one query per status, index-only)."""
    rows = [(CouponStatus(s), n, estimated) for s, (n, estimated) in pool_status_counts(pool=pool).items()]
    return StatusSummary(rows, pool_holds_stock(pool))


# --- stock -----------------------------------------------------------------------
#
# One rule for what a pool's stock is and how it reads, for the pool list (50 pools a
# page, each counted exactly up to LIST_STOCK_EXACT_LIMIT) and the overview (one pool,
# exact up to counting.EXACT_COUNT_LIMIT).

STOCK_SOURCES = frozenset({PoolSource.UPLOADED, PoolSource.BULK})
LIST_STOCK_EXACT_LIMIT = 10_000  # 50 pools a page: each stock counted exactly up to this, estimated beyond


def pool_holds_stock(pool: CouponPool) -> bool:
    """Whether claims take the pool's unassigned coupons (uploaded or bulk-generated);
    a generated pool makes each code at the claim, a remote pool asks its callback."""
    return pool.source in STOCK_SOURCES


@dataclass(frozen=True)
class Stock:
    """The unassigned coupons left for claims; ``str()`` is how every page writes it."""

    count: int
    estimated: bool = False

    def __str__(self) -> str:
        return f"about {self.count:,}" if self.estimated else f"{self.count:,}"


# One branch per pool, its id a constant (not a LATERAL join on a parameter): each
# branch is planned with that pool's statistics, so a small pool's count is an
# index-only scan of (pool, status, id) even in a table that one pool of 100 million
# dominates, and no branch reads more than LIMIT entries.
_STOCK_BRANCH = (f"SELECT %s, (SELECT count(*) FROM (SELECT 1 FROM {row_sql.COUPON_TABLE}"
                 " WHERE pool_id = %s AND status = %s LIMIT %s) AS bounded)")


def pools_stock(pools, *, limit: int | None = None) -> dict[int, Stock | None]:
    """Each pool's ``Stock`` (None for a pool that holds none, ``pool_holds_stock``), by
    pool id: one query counting each pool's unassigned coupons, at most ``limit + 1``
    each, then one EXPLAIN for the planner's estimates of the pools past ``limit``
    (``estimate_counts``)."""
    limit = LIST_STOCK_EXACT_LIMIT if limit is None else limit
    stock: dict[int, Stock | None] = {pool.pk: None for pool in pools}
    ids = [pool.pk for pool in pools if pool_holds_stock(pool)]
    if not ids:
        return stock
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join([_STOCK_BRANCH] * len(ids)),
                       [value for pool_id in ids for value in (pool_id, pool_id, int(CouponStatus.UNASSIGNED), limit + 1)])
        counted = dict(cursor.fetchall())
    over = [pool_id for pool_id in ids if counted[pool_id] > limit]
    unassigned = Coupon.objects.filter(status=CouponStatus.UNASSIGNED)
    estimates = estimate_counts([unassigned.filter(pool_id=pool_id) for pool_id in over])
    for pool_id in ids:
        stock[pool_id] = Stock(counted[pool_id])
    for pool_id, estimate in zip(over, estimates, strict=True):
        if estimate is None:  # no planner (SQLite, the embedded default): a laptop's pool, counted
            stock[pool_id] = Stock(unassigned.filter(pool_id=pool_id).count())
        else:
            stock[pool_id] = Stock(max(estimate, counted[pool_id]), True)
    return stock


def pool_daily_activity(*, pool: CouponPool, days: int = 30) -> dict:
    """Claims and redemptions per day over the last ``days`` days (from the events)."""
    since = timezone.now() - datetime.timedelta(days=days - 1)
    rows = (
        CustomerEvent.objects.filter(
            pool=pool, action__in=[EventAction.CLAIM, EventAction.REDEEM], created_at__gte=since.replace(hour=0, minute=0, second=0, microsecond=0)
        )
        .annotate(day=TruncDate("created_at"))
        .values("day", "action")
        .annotate(n=Count("id"))
        .order_by()
    )
    today = timezone.localdate()
    labels = [today - datetime.timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    series = {EventAction.CLAIM: dict.fromkeys(labels, 0), EventAction.REDEEM: dict.fromkeys(labels, 0)}
    for row in rows:
        if row["day"] in series[row["action"]]:
            series[row["action"]][row["day"]] = row["n"]
    return {
        "labels": [label.isoformat() for label in labels],
        "claims": list(series[EventAction.CLAIM].values()),
        "redemptions": list(series[EventAction.REDEEM].values()),
    }


# --- customers -------------------------------------------------------------------


# pg_trgm indexes text by its 3-character pieces (migration 0007): a shorter text could
# only be found by reading the whole index, so it matches the start of an ID or a whole email.
SEARCH_PART_MIN = 3


def customers_search(*, text: str, user) -> QuerySet[Customer]:
    """The customers the user may see (``coupons.access``) whose ID or email contains
    ``text`` (any case); a text under ``SEARCH_PART_MIN`` characters matches the start of
    an ID or a whole email."""
    customers = Customer.objects.filter(visible_customers(user)).order_by("-id")
    text = (text or "").strip()
    if len(text) >= SEARCH_PART_MIN:
        customers = customers.filter(Q(external_id__icontains=text) | Q(email__icontains=text))
    elif text:
        customers = customers.filter(Q(external_id__startswith=text) | Q(email__iexact=text))
    return customers


def customer_get_visible(*, user, pk: int) -> Customer:
    from django.shortcuts import get_object_or_404

    return get_object_or_404(Customer.objects.filter(visible_customers(user)), pk=pk)


def customer_coupons_visible(*, customer: Customer, user) -> QuerySet[Coupon]:
    return (
        Coupon.objects.filter(customer=customer).filter(visible_coupons(user))
        .select_related("pool", "terms__effective")
        .order_by("-id")
    )


def customer_events_visible(*, customer: Customer, user) -> QuerySet[CustomerEvent]:
    return (
        CustomerEvent.objects.filter(customer=customer).filter(visible_events(user))
        .select_related("coupon__terms__effective", "pool", "actor_user")  # terms: the amounts' currency
        .order_by("-id")
    )
