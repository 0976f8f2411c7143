"""Races on PostgreSQL with real parallel connections (one thread, one connection)."""

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection, connections

from coupons import bulk, services
from coupons.expiry import coupons_expire_due
from coupons.models import Coupon, CouponStatus, CustomerEvent, GiftCardRedemption
from coupons.services import Actor, CouponActionError
from coupons.services.rules import lock_coupon
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory, PoolFactory

pytestmark = pytest.mark.django_db(transaction=True)
S = CouponStatus


def race(workers: int, work) -> list:
    """Run ``work(i)`` in ``workers`` threads released at the same instant."""
    barrier = threading.Barrier(workers)
    results: list = [None] * workers

    def run(index):
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # noqa: BLE001 - the test inspects every outcome
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_runs_on_postgresql():
    assert connection.vendor == "postgresql"


def test_twenty_claims_on_ten_coupons():
    pool = PoolFactory(name="Ten")
    coupons = [CouponFactory(pool=pool) for _ in range(10)]
    customers = [CustomerFactory() for _ in range(20)]
    actor = Actor.system("test")

    results = race(20, lambda i: services.coupon_claim(pool=pool, customer=customers[i], actor=actor).pk)

    issued = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, CouponActionError)]
    assert sorted(issued) == sorted(c.pk for c in coupons)  # 10 distinct coupons
    assert len(refused) == 10 and all("no unassigned coupons left" in str(r) for r in refused)
    assert Coupon.objects.filter(pool=pool, status=S.CLAIMED).count() == 10
    assert CustomerEvent.objects.filter(action="coupon_claim").count() == 10
    holders = Coupon.objects.filter(pool=pool).values_list("customer_id", flat=True)
    assert len(set(holders)) == 10


def test_parallel_gift_card_redemptions_never_overdraw():
    card = CouponFactory(pool=GiftCardPoolFactory(value="100.00"), status=S.CLAIMED)
    actor = Actor.system("test")

    results = race(12, lambda i: services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("30")))

    succeeded = [r for r in results if isinstance(r, Coupon)]
    refused = [r for r in results if isinstance(r, CouponActionError)]
    assert len(succeeded) == 3 and len(refused) == 9  # 3 x 30 fit into 100
    assert all("cannot be taken" in str(r) for r in refused)
    card.refresh_from_db()
    assert card.balance == Decimal("10.00") and card.status == S.PARTIALLY_REDEEMED
    assert sum(r.amount for r in GiftCardRedemption.objects.filter(coupon=card)) == Decimal("90.00")


def test_aggregated_claims_by_one_customer_give_one_coupon():
    pool = PoolFactory(aggregated=True)
    for _ in range(5):
        CouponFactory(pool=pool)
    customer = CustomerFactory()
    actor = Actor.system("test")

    results = race(8, lambda i: services.coupon_claim(pool=pool, customer=customer, actor=actor).pk)

    assert len(set(results)) == 1
    coupon = Coupon.objects.get(pk=results[0])
    assert coupon.claims == 8
    assert Coupon.objects.filter(pool=pool, status=S.CLAIMED).count() == 1


def test_bulk_invalidate_racing_redeems_leaves_one_consistent_state():
    pool = PoolFactory()
    coupons = [CouponFactory(pool=pool, status=S.CLAIMED) for _ in range(60)]
    actor = Actor.system("test")

    def work(index):
        if index == 0:
            return bulk.bulk_apply(action=bulk.BULK_ACTIONS["invalidate"], queryset=Coupon.objects.filter(pool=pool),
                                   pool_id=pool.pk, actor=actor)
        outcomes = Counter()
        for coupon in coupons[index - 1::5]:
            try:
                services.coupon_redeem(coupon=coupon, actor=actor)
                outcomes["redeemed"] += 1
            except CouponActionError:
                outcomes["refused"] += 1
        return outcomes

    results = race(6, work)

    bulk_result = results[0]
    redeemed_by_api = sum(r["redeemed"] for r in results[1:])
    statuses = Counter(Coupon.objects.filter(pool=pool).values_list("status", flat=True))
    # every coupon ends either invalid or redeemed, never both, never in between
    assert set(statuses) <= {S.INVALID, S.REDEEMED}
    assert statuses[S.REDEEMED] == redeemed_by_api
    assert statuses[S.INVALID] == bulk_result.applied
    assert bulk_result.applied + sum(bulk_result.skipped.values()) == 60
    # and its events tell the same story
    events = Counter(CustomerEvent.objects.values_list("action", flat=True))
    assert events["coupon_redeem"] == redeemed_by_api
    assert events["coupon_invalidate"] == bulk_result.applied


def test_two_expiry_runs_at_once_expire_each_coupon_once():
    from datetime import timedelta

    from django.utils import timezone

    past = timezone.now() - timedelta(minutes=1)
    for _ in range(300):
        CouponFactory(status=S.CLAIMED, expires_at=past)

    results = race(2, lambda i: coupons_expire_due(chunk=50))

    assert sum(results) == 300
    assert Coupon.objects.filter(status=S.EXPIRED).count() == 300
    assert CustomerEvent.objects.filter(action="coupon_expire").count() == 300


def test_aggregated_claim_and_an_action_on_the_same_customer_do_not_deadlock():
    # Given a customer holding a coupon of an aggregated pool
    import time

    from django.db import transaction

    pool = PoolFactory(aggregated=True)
    customer = CustomerFactory()
    held = CouponFactory(pool=pool, status=S.CLAIMED, customer=customer)
    CouponFactory(pool=pool)
    actor = Actor.system("test")
    locked = threading.Event()

    def unassign(_):
        with transaction.atomic():
            lock_coupon(held)  # what coupon_unassign takes first
            locked.set()
            time.sleep(0.5)  # meanwhile the claim takes the customer's lock
            services.coupon_unassign(coupon=held, actor=actor)  # its event checks the customer FK
        return "unassigned"

    def claim(_):
        locked.wait(10)
        time.sleep(0.1)
        return services.coupon_claim(pool=pool, customer=customer, actor=actor)

    # When both run at once
    results = race(2, lambda i: (unassign, claim)[i](i))
    # Then neither hits a deadlock
    assert results[0] == "unassigned", results
    assert isinstance(results[1], Coupon), results
