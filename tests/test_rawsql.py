"""couponsite.rawsql: a raw row read as the ORM would read it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from coupons.models import Coupon
from couponsite.rawsql import fetch_instance, select_list
from pools.models import CouponTerms
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory

pytestmark = pytest.mark.django_db


def field_values(instance):
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_every_field_reads_as_the_orm_reads_it():
    pool = GiftCardPoolFactory()
    terms = pool.current_terms
    CouponTerms.objects.filter(pk=terms.pk).update(store_ids=["s-1", "s-2"], product_ids=[7])
    now = timezone.now().replace(microsecond=123456)
    coupon = CouponFactory(pool=pool, customer=CustomerFactory(), status=2, claimed_at=now,
                           expires_at=now + timedelta(days=3), balance=Decimal("12.34"))
    for model, pk in ((Coupon, coupon.pk), (CouponTerms, terms.pk), (type(pool), pool.pk)):
        table = model._meta.db_table
        raw = fetch_instance(model, f"SELECT {select_list(model, 't')}, 42 AS answer FROM {table} t WHERE t.id = %s",
                             [pk], extra=("answer",))
        assert field_values(raw) == field_values(model.objects.get(pk=pk))
        assert raw.answer == 42 and raw._state.adding is False and raw._state.db == "default"
    raw_terms = fetch_instance(CouponTerms, f"SELECT {select_list(CouponTerms)} FROM pools_couponterms WHERE id = %s",
                               [terms.pk])
    assert raw_terms.store_ids == ["s-1", "s-2"] and raw_terms.product_ids == [7]


def test_no_row_is_none():
    assert fetch_instance(Coupon, f"SELECT {select_list(Coupon)} FROM coupons_coupon WHERE id = %s", [-1]) is None
