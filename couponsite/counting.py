"""Counting rows of tables that may hold 100 million: exact while small, the planner's
estimate beyond (no page, admin list or job start runs an unbounded COUNT(*))."""

from __future__ import annotations

import json
import re

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import QuerySet

EXACT_COUNT_LIMIT = 100_000
_ROWS = re.compile(r"rows=(\d+)")


def count_or_estimate(queryset: QuerySet, limit: int = EXACT_COUNT_LIMIT) -> int:
    """The exact count when it is small, else the planner's estimate (no full scan).

    The exact count is bounded (``COUNT`` over ``LIMIT limit + 1``): a stale estimate
    can never turn into counting millions of rows.
    """
    return count_with_accuracy(queryset, limit)[0]


def count_with_accuracy(queryset: QuerySet, limit: int = EXACT_COUNT_LIMIT) -> tuple[int, bool]:
    """``(count, is_estimate)``: exact up to ``limit``, the planner's estimate beyond."""
    estimate = estimate_count(queryset)
    if estimate is None:
        return queryset.count(), False  # no planner estimate (SQLite: small installations)
    if estimate > limit:
        return estimate, True
    bounded = queryset.order_by()[: limit + 1].count()
    if bounded <= limit:
        return bounded, False
    return max(estimate, bounded), True


def estimate_count(queryset: QuerySet) -> int | None:
    if connection.vendor != "postgresql":
        return None
    try:
        sql, params = queryset.values("pk").query.sql_with_params()
    except EmptyResultSet:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        first_line = cursor.fetchone()[0]
    match = _ROWS.search(first_line)
    return int(match.group(1)) if match else None


def estimate_counts(querysets: list[QuerySet]) -> list[int | None]:
    """The planner's row estimate of each queryset, from ONE ``EXPLAIN`` of their
    ``UNION ALL`` (its Append node has a child per queryset, in order); no row is read.
    Each is None where there is no planner estimate (SQLite: the caller counts)."""
    if not querysets:
        return []
    if connection.vendor != "postgresql":
        return [None] * len(querysets)
    if len(querysets) == 1:
        return [estimate_count(querysets[0])]
    parts, params = [], []
    for queryset in querysets:
        sql, part_params = queryset.order_by().values("pk").query.sql_with_params()
        parts.append(f"({sql})")
        params.extend(part_params)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {' UNION ALL '.join(parts)}", params)
        plan = cursor.fetchone()[0]
    plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    children = plan.get("Plans", []) if plan.get("Node Type") == "Append" else []
    if len(children) != len(querysets):  # an unexpected plan shape: one EXPLAIN each
        return [estimate_count(queryset) for queryset in querysets]
    return [int(child["Plan Rows"]) for child in children]
