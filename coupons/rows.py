"""The SQL shape of the coupon and event rows, for every raw statement that writes them
(generation's COPY, imports, seeding, the event insert of every action, the bench).

The ORM knows these rows through the models; raw SQL on the hottest paths names their
columns itself, here and nowhere else. ``tests/coupons/test_rows.py`` fails when a
NOT NULL column without a database default is added to either model and not here.
"""

from __future__ import annotations

from .models import Coupon, CouponStatus, Customer, CustomerEvent

S = CouponStatus

COUPON_TABLE = Coupon._meta.db_table
EVENT_TABLE = CustomerEvent._meta.db_table
CUSTOMER_TABLE = Customer._meta.db_table  # joined by external_id

# A new coupon as an import or a seed writes it (balance: NULL, or set by the caller).
COUPON_COLUMNS = ("pool_id", "terms_id", "code", "shared_code", "status", "customer_id", "claimed_at", "expires_at",
                  "usages", "claims")
# A new unassigned coupon as generation COPYs it: the columns that are not NULL.
UNASSIGNED_COLUMNS = ("pool_id", "terms_id", "code", "shared_code", "status", "usages", "claims")
EVENT_COLUMNS = ("customer_id", "action", "coupon_id", "pool_id", "actor_kind", "actor_user_id", "actor_label", "data",
                 "created_at")


def column_list(columns: tuple[str, ...]) -> str:
    return f"({', '.join(columns)})"


COUPON_INSERT = f"INSERT INTO {COUPON_TABLE} {column_list(COUPON_COLUMNS)} "
UNASSIGNED_INSERT = f"INSERT INTO {COUPON_TABLE} {column_list(UNASSIGNED_COLUMNS)} "
UNASSIGNED_COPY = f"COPY {COUPON_TABLE} {column_list(UNASSIGNED_COLUMNS)} FROM STDIN"
EVENT_INSERT = f"INSERT INTO {EVENT_TABLE} {column_list(EVENT_COLUMNS)} "


def unassigned_copy_affixes(pool_id: int, terms_id: int) -> tuple[str, str]:
    """The text of a COPY row of ``UNASSIGNED_COLUMNS`` before and after its code: a
    unique (not shared) code, unassigned, never used or claimed."""
    return f"{pool_id}\t{terms_id}\t", f"\tf\t{int(S.UNASSIGNED)}\t0\t0\n"


def status_list(*statuses: CouponStatus) -> str:
    """``(2, 4)``: statuses as an SQL list, from ``CouponStatus`` (never a literal)."""
    return f"({', '.join(str(int(status)) for status in statuses)})"
