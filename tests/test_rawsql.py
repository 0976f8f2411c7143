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


COMPARE_ON_SQLITE = """
from datetime import timedelta
from decimal import Decimal
from django.utils import timezone
from coupons.models import Coupon, Customer
from couponsite.rawsql import fetch_instance, select_list
from pools.models import CouponTerms
from pools.services import pool_create
pool = pool_create(actor=None, name='gift', external_id='RAW-GIFT', source='uploaded', coupon_type='gift_card',
                   value=20, currency='EUR')
CouponTerms.objects.filter(pk=pool.current_terms_id).update(store_ids=['s-1'], product_ids=[7])
now = timezone.now().replace(microsecond=123456)
coupon = Coupon.objects.create(pool=pool, terms_id=pool.current_terms_id, code='RAW-1', status=2, claimed_at=now,
                               expires_at=now + timedelta(days=3), balance=Decimal('12.34'),
                               customer=Customer.objects.create(external_id='raw'))
for model, pk in ((Coupon, coupon.pk), (CouponTerms, pool.current_terms_id), (type(pool), pool.pk)):
    raw = fetch_instance(model, f'SELECT {select_list(model)} FROM {model._meta.db_table} WHERE id = %s', [pk])
    orm = model.objects.get(pk=pk)
    for field in model._meta.concrete_fields:
        assert getattr(raw, field.attname) == getattr(orm, field.attname), (model, field.attname)
        assert type(getattr(raw, field.attname)) is type(getattr(orm, field.attname)), (model, field.attname)
print('same on', __import__('django.db').db.connection.vendor)
"""


def test_every_field_reads_as_the_orm_reads_it_on_sqlite(tmp_path):
    """SQLite is where datetimes, decimals and booleans need the converters."""
    import subprocess

    from tests.test_couponsite import ROOT, migrated_embedded_default

    env, manage = migrated_embedded_default(tmp_path)
    (tmp_path / "compare.py").write_text(COMPARE_ON_SQLITE)
    run = subprocess.run([*manage, "shell", "-c", f"exec(open({str(tmp_path / 'compare.py')!r}).read())"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "same on sqlite"
