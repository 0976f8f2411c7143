"""Bulk actions (set-based, counted), jobs in a real Celery worker, expiry, propagation."""

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from coupons import bulk
from coupons.expiry import coupons_expire_due
from coupons.jobs.engine import JobRefused, job_create, job_execute, job_resume
from coupons.models import Coupon, CouponJob, CouponStatus, CustomerEvent
from coupons.propagation import UpdateMethod, affected_coupons, pool_update
from coupons.services import Actor
from tests.factories import CouponFactory, GiftCardPoolFactory, PoolFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


def apply(action, pool, **filters):
    return bulk.bulk_apply(action=bulk.BULK_ACTIONS[action], queryset=Coupon.objects.filter(pool=pool, **filters),
                           pool_id=pool.pk, actor=Actor.system("test"))


class TestBulkActions:
    def test_invalidate_applies_allowed_and_counts_skipped_by_reason(self):
        pool = PoolFactory()
        for status in [S.UNASSIGNED] * 3 + [S.CLAIMED] * 2 + [S.REDEEMED, S.EXPIRED, S.INVALID]:
            CouponFactory(pool=pool, status=status)
        result = apply("invalidate", pool)
        assert result.applied == 5
        assert dict(result.skipped) == {"already redeemed": 1, "already expired": 1, "already invalid": 1}
        assert result.message(bulk.BULK_ACTIONS["invalidate"]) == (
            "Invalidated 5 coupons. Skipped 3: 1 already redeemed; 1 already expired; 1 already invalid."
        )
        assert Coupon.objects.filter(pool=pool, status=S.INVALID).count() == 6
        assert CustomerEvent.objects.filter(action="coupon_invalidate").count() == 2  # the claimed ones

    def test_chunks_cover_every_coupon(self, monkeypatch):
        monkeypatch.setattr(bulk, "CHUNK", 7)
        pool = PoolFactory()
        for _ in range(30):
            CouponFactory(pool=pool, status=S.CLAIMED)
        result = apply("redeem", pool)
        assert result.applied == 30
        assert set(Coupon.objects.filter(pool=pool).values_list("status", "usages")) == {(S.REDEEMED, 1)}
        assert CustomerEvent.objects.filter(action="coupon_redeem").count() == 30

    def test_unassign_writes_events_for_the_previous_holder(self):
        pool = PoolFactory()
        coupon = CouponFactory(pool=pool, status=S.CLAIMED)
        holder = coupon.customer_id
        apply("unassign", pool)
        coupon.refresh_from_db()
        assert (coupon.status, coupon.customer_id, coupon.claims) == (S.UNASSIGNED, None, 0)
        assert CustomerEvent.objects.get().customer_id == holder

    def test_unredeem_then_redeem_gift_cards_go_through_their_balance(self):
        pool = GiftCardPoolFactory(value="40.00")
        cards = [CouponFactory(pool=pool, status=S.CLAIMED) for _ in range(2)]
        apply("redeem", pool)
        for card in cards:
            card.refresh_from_db()
            assert (card.status, card.balance) == (S.REDEEMED, Decimal("0.00"))
        apply("unredeem", pool)
        for card in cards:
            card.refresh_from_db()
            assert (card.status, card.balance) == (S.CLAIMED, Decimal("40.00"))


@pytest.mark.django_db(transaction=True)
def test_a_large_bulk_action_runs_in_a_real_celery_worker(celery_worker_process):
    # Given a job for more coupons than one chunk
    pool = PoolFactory()
    for _ in range(25):
        CouponFactory(pool=pool, status=S.CLAIMED)
    job = job_create(CouponJob, kind=CouponJob.Kind.BULK_ACTION, pool=pool, total=30, total_is_estimate=True,
                     params={"action": "invalidate", "filters": {"status": "claimed"}, "ids": None})
    # When the worker picks it up, then it finishes with every coupon invalidated
    job = celery_worker_process.wait_for(lambda: CouponJob.objects.get(pk=job.pk), lambda j: j.is_finished)
    assert job.status == "done", job.message
    assert (job.processed, job.applied, job.total, job.total_is_estimate) == (25, 25, 25, False)  # counted exactly
    assert job.message == "Invalidated 25 coupons."
    assert Coupon.objects.filter(pool=pool, status=S.INVALID).count() == 25


def test_job_resumes_from_its_cursor():
    pool = PoolFactory()
    coupons = [CouponFactory(pool=pool, status=S.CLAIMED) for _ in range(6)]
    job = CouponJob.objects.create(kind=CouponJob.Kind.BULK_ACTION, pool=pool, total=6,
                                   params={"action": "redeem", "filters": {}, "ids": None})
    # a previous run committed the three newest and then died
    newest = sorted(coupons, key=lambda c: -c.pk)[:3]
    Coupon.objects.filter(pk__in=[c.pk for c in newest]).update(status=S.REDEEMED, usages=1)
    CouponJob.objects.filter(pk=job.pk).update(cursor=newest[-1].pk, processed=3, applied=3, status="interrupted")
    job_resume(job=job, enqueue=False)
    job = job_execute(kind="bulk_action", job_id=job.pk)
    assert (job.status, job.processed, job.applied) == ("done", 6, 6)
    assert set(Coupon.objects.filter(pool=pool).values_list("usages", flat=True)) == {1}  # none twice


class TestExpiry:
    def test_expires_only_live_coupons_past_their_date(self):
        past, future = timezone.now() - datetime.timedelta(hours=1), timezone.now() + datetime.timedelta(days=1)
        due = [CouponFactory(status=S.CLAIMED, expires_at=past), CouponFactory(status=S.PARTIALLY_REDEEMED, expires_at=past)]
        kept = [CouponFactory(status=S.CLAIMED, expires_at=future), CouponFactory(status=S.REDEEMED, expires_at=past),
                CouponFactory(status=S.CLAIMED, expires_at=None)]
        assert coupons_expire_due() == 2
        assert {c.pk for c in Coupon.objects.filter(status=S.EXPIRED)} == {c.pk for c in due}
        assert all(Coupon.objects.get(pk=c.pk).status != S.EXPIRED for c in kept)
        event = CustomerEvent.objects.filter(action="coupon_expire").first()
        assert (event.actor_kind, event.actor_label) == ("system", "expiry task")
        assert coupons_expire_due() == 0  # a second run finds nothing

    def test_beat_runs_the_expiry_task_when_it_is_due(self):
        """Celery beat's own scheduler, on the schedule the settings give it: every
        entry names a registered task, and the expiry, once due, expires a coupon."""
        from celery.beat import Scheduler

        from couponsite.celery import app

        app.loader.import_default_modules()
        scheduler = Scheduler(app, lazy=True)
        scheduler.setup_schedule()
        entries = scheduler.schedule
        assert {"expire-coupons", "sweep-jobs", "purge-jobs"} <= set(entries)
        assert all(entry.task in app.tasks for entry in entries.values()), [e.task for e in entries.values()]
        expiry = entries["expire-coupons"]
        coupon = CouponFactory(status=S.CLAIMED, expires_at=timezone.now() - datetime.timedelta(minutes=1))
        app.tasks[expiry.task].apply(args=expiry.args, kwargs=expiry.kwargs).get()
        assert Coupon.objects.get(pk=coupon.pk).status == S.EXPIRED


class TestPropagation:
    def make_pool(self):
        pool = PoolFactory(value="10.00", expiration_period_count=30, expiration_period_unit="day")
        coupons = {status: CouponFactory(pool=pool, status=status) for status in S}
        return pool, coupons

    def value_of(self, coupon):
        coupon = Coupon.objects.select_related("terms__effective").get(pk=coupon.pk)
        return coupon.effective_terms.value

    @pytest.mark.parametrize("method, changed", [
        (UpdateMethod.NONE, set()),
        (UpdateMethod.UNASSIGNED, {S.UNASSIGNED}),
        (UpdateMethod.NOT_REDEEMED, {S.UNASSIGNED, S.CLAIMED}),
        (UpdateMethod.ALL, set(S)),
    ])
    def test_update_methods(self, method, changed):
        pool, coupons = self.make_pool()
        _, propagation = pool_update(pool=pool, actor=None, value=Decimal("12.00"), update_method=method)
        for status, coupon in coupons.items():
            assert self.value_of(coupon) == (Decimal("12.00") if status in changed else Decimal("10.00")), status
        assert propagation.changed == len(changed)
        assert CouponFactory(pool=pool).terms.value == Decimal("12.00")  # new coupons always get it

    def test_matching_only_touches_coupons_with_the_old_value(self):
        pool, coupons = self.make_pool()
        pool_update(pool=pool, actor=None, value=Decimal("11.00"))  # v2; old coupons stay on 10
        newer = CouponFactory(pool=pool, status=S.CLAIMED)  # on 11
        pool_update(pool=pool, actor=None, value=Decimal("15.00"), update_method=UpdateMethod.ALL, matching=True)
        assert self.value_of(newer) == Decimal("15.00")
        assert self.value_of(coupons[S.CLAIMED]) == Decimal("10.00")

    def test_update_all_changes_terms_rows_not_coupons(self, django_assert_max_num_queries):
        pool, _ = self.make_pool()
        for _ in range(40):
            CouponFactory(pool=pool)
        with django_assert_max_num_queries(30):
            pool_update(pool=pool, actor=None, value=Decimal("13.00"), update_method=UpdateMethod.ALL)
        assert set(Coupon.objects.filter(pool=pool).values_list("terms__effective__value", flat=True)) == {Decimal("13.00")}

    def test_a_new_expiration_period_reaches_claimed_coupons(self):
        pool, coupons = self.make_pool()
        claimed = coupons[S.CLAIMED]
        pool_update(pool=pool, actor=None, expiration_period_count=60, update_method=UpdateMethod.NOT_REDEEMED)
        claimed.refresh_from_db()
        assert claimed.expires_at - claimed.claimed_at == datetime.timedelta(days=60)

    def test_nothing_changes_without_a_property_change(self):
        pool, _ = self.make_pool()
        _, propagation = pool_update(pool=pool, actor=None, name="Renamed", update_method=UpdateMethod.ALL)
        assert propagation is None and pool.terms_versions.count() == 1

    def test_preview_counts_what_the_method_will_change(self):
        pool, _ = self.make_pool()
        coupons = affected_coupons(pool=pool, old_terms=pool.current_terms, method=UpdateMethod.NOT_REDEEMED, matching=False)
        assert coupons.count() == 2

    def test_gift_card_balance_follows_a_value_change_until_first_use(self):
        pool = GiftCardPoolFactory(value="50.00")
        untouched = CouponFactory(pool=pool, status=S.CLAIMED)
        used = CouponFactory(pool=pool, status=S.PARTIALLY_REDEEMED, balance=Decimal("20.00"))
        pool_update(pool=pool, actor=None, value=Decimal("60.00"), update_method=UpdateMethod.ALL)
        assert Coupon.objects.select_related("terms__effective").get(pk=untouched.pk).current_balance == Decimal("60.00")
        assert Coupon.objects.select_related("terms__effective").get(pk=used.pk).current_balance == Decimal("20.00")


def invalidate_one_claimed_coupon_job() -> CouponJob:
    pool = PoolFactory()
    CouponFactory(pool=pool, status=S.CLAIMED)
    return CouponJob.objects.create(kind=CouponJob.Kind.BULK_ACTION, pool=pool,
                                    params={"action": "invalidate", "filters": {}, "ids": None})


def test_a_job_stopped_by_a_database_error_is_retried_from_its_cursor():
    from unittest import mock

    from django.db import OperationalError

    job = invalidate_one_claimed_coupon_job()
    with mock.patch("coupons.bulk.bulk_apply", side_effect=OperationalError("deadlock detected")):
        with pytest.raises(OperationalError):
            job_execute(kind="bulk_action", job_id=job.pk, retry_in=5)
    job.refresh_from_db()
    assert job.status == "queued"  # not failed: Celery's retry must find work to do
    assert job.dispatched_at > timezone.now()  # the retry is due in 5 s: the sweeper leaves it alone
    job_execute(kind="bulk_action", job_id=job.pk)  # the retry
    job.refresh_from_db()
    assert (job.status, job.applied, job.attempts) == ("done", 1, 2)


def test_retries_exhausted_end_failed_with_the_reason_and_resumable():
    from unittest import mock

    from django.db import OperationalError

    job = invalidate_one_claimed_coupon_job()
    with mock.patch("coupons.bulk.bulk_apply", side_effect=OperationalError("could not obtain lock")):
        job_execute(kind="bulk_action", job_id=job.pk, retry_in=None)  # the last attempt
    job.refresh_from_db()
    assert job.status == "failed" and job.can_resume
    assert job.message == "Stopped by a database error after 1 attempt: could not obtain lock. Resume to go on."
    job_resume(job=job, enqueue=False)
    job = job_execute(kind="bulk_action", job_id=job.pk)
    assert (job.status, job.applied) == ("done", 1)


def test_a_failed_job_can_be_resumed(django_capture_on_commit_callbacks):
    pool = PoolFactory()
    job = CouponJob.objects.create(kind=CouponJob.Kind.BULK_ACTION, pool=pool, status="failed",
                                   params={"action": "invalidate", "filters": {}, "ids": None})
    with django_capture_on_commit_callbacks() as callbacks:
        job_resume(job=job)
    job.refresh_from_db()
    assert job.status == "queued" and len(callbacks) == 1
    with pytest.raises(JobRefused, match="Only an interrupted or failed job can be resumed"):
        job_resume(job=job)


def test_an_older_edit_job_never_undoes_a_newer_edit(monkeypatch, django_capture_on_commit_callbacks):
    from coupons import propagation

    monkeypatch.setattr(propagation, "ASYNC_THRESHOLD", 0)
    pool = PoolFactory(value="10.00")
    for _ in range(3):
        CouponFactory(pool=pool)
    with django_capture_on_commit_callbacks(execute=False):
        _, first = pool_update(pool=pool, actor=None, value=Decimal("20.00"), update_method=UpdateMethod.UNASSIGNED)
        _, second = pool_update(pool=pool, actor=None, value=Decimal("30.00"), update_method=UpdateMethod.UNASSIGNED)
    job_execute(kind="propagation", job_id=second.job.pk)  # a worker picks the newer job first
    job_execute(kind="propagation", job_id=first.job.pk)
    values = set(Coupon.objects.filter(pool=pool).values_list("terms__effective__value", flat=True))
    assert values == {Decimal("30.00")}
    second.job.refresh_from_db()
    assert (second.job.total, second.job.applied) == (3, 3)


def test_statistics_never_count_a_huge_pool(monkeypatch):
    from coupons import selectors
    from couponsite import counting

    pool = PoolFactory()
    for _ in range(3):
        CouponFactory(pool=pool)
    monkeypatch.setattr(counting, "estimate_count", lambda queryset: 5_000_000)
    counts = selectors.pool_status_counts(pool=pool)
    assert counts[S.UNASSIGNED] == (5_000_000, True)
