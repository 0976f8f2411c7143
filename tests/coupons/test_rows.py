"""``coupons.rows`` is the one place raw SQL learns the coupon and event rows' shape:
it must name every column a new row needs, and its COPY row must load as the ORM reads it."""

import pytest
from django.db import connection

from coupons import rows
from coupons.models import Coupon, CouponStatus, CustomerEvent
from tests.factories import BulkPoolFactory


def required_columns(fields) -> set[str]:
    """Columns a raw INSERT must name: NOT NULL, no database default, not the id."""
    return {f.column for f in fields if not f.null and not f.primary_key and not f.has_db_default()}


def all_columns(model) -> set[str]:
    return {f.column for f in model._meta.concrete_fields}


@pytest.mark.parametrize(("model", "columns"), [
    (Coupon, rows.COUPON_COLUMNS), (Coupon, rows.UNASSIGNED_COLUMNS), (CustomerEvent, rows.EVENT_COLUMNS),
], ids=["coupon", "unassigned", "event"])
def test_every_required_column_is_named_and_every_named_one_exists(model, columns):
    required = required_columns(model._meta.concrete_fields)
    assert required <= set(columns), required - set(columns)
    assert set(columns) <= all_columns(model), set(columns) - all_columns(model)
    assert len(columns) == len(set(columns))


def test_a_new_not_null_column_would_fail_the_check():
    """The check above is not vacuous: a NOT NULL column it does not know is reported."""
    from django.db import models

    added = models.IntegerField()
    added.set_attributes_from_name("new_counter")
    with_it = [*Coupon._meta.concrete_fields, added]
    assert required_columns(with_it) - set(rows.COUPON_COLUMNS) == {"new_counter"}
    nullable = models.IntegerField(null=True)
    nullable.set_attributes_from_name("optional")
    assert required_columns([*Coupon._meta.concrete_fields, nullable]) <= set(rows.COUPON_COLUMNS)


@pytest.mark.django_db
def test_the_copy_row_loads_as_an_unassigned_coupon():
    pool = BulkPoolFactory()
    prefix, suffix = rows.unassigned_copy_affixes(pool.pk, pool.current_terms_id)
    with connection.cursor() as cursor, cursor.copy(rows.UNASSIGNED_COPY) as copy:
        copy.write(f"{prefix}ROW-SHAPE-1{suffix}")
    coupon = Coupon.objects.get(code="ROW-SHAPE-1")
    assert (coupon.pool_id, coupon.terms_id, coupon.status, coupon.shared_code, coupon.usages, coupon.claims,
            coupon.customer_id) == (pool.pk, pool.current_terms_id, CouponStatus.UNASSIGNED, False, 0, 0, None)


def test_status_lists_come_from_the_enum():
    assert rows.status_list(CouponStatus.CLAIMED, CouponStatus.REDEEMED) == \
        f"({int(CouponStatus.CLAIMED)}, {int(CouponStatus.REDEEMED)})"
