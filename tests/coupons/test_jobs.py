"""The job engine: submitting (also with the broker down), the sweeper, the watchdog,
resume and cancel rules, the Jobs page and who sees which job."""

import time
from datetime import timedelta

import psycopg
import pytest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from api.models import BulkOperation
from coupons.generation import generation_start
from coupons.jobs import engine
from coupons.jobs import run as run_module
from coupons.jobs.engine import (
    QUEUE_UNREACHABLE,
    JobRefused,
    job_cancel,
    job_create,
    job_execute,
    job_resume,
    jobs_dispatch_pending,
    jobs_mark_interrupted,
)
from coupons.models import Coupon, CouponJob, CouponStatus, CustomerEvent, ExportJob, GenerationBatch, JobStatus
from coupons.templatetags.job_tags import job_unit
from imports.models import ImportJob
from tests.factories import BulkPoolFactory, CouponFactory, GroupFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db
S = CouponStatus
INVALIDATE = {"action": "invalidate", "filters": {}, "ids": None}


class Broker:
    """``send_task`` as the tests need it: recorded, or refused like a stopped Redis."""

    def __init__(self, monkeypatch, *, down=False):
        self.sent, self.down = [], down
        monkeypatch.setattr(engine.current_app, "send_task", self.send_task)

    def send_task(self, name, args=None, **options):
        if self.down:
            raise BrokerDown("Error 111 connecting to 127.0.0.1:6399. Connection refused.")
        self.sent.append((name, tuple(args)))


def bulk_job(pool, **fields):
    return job_create(CouponJob, kind=CouponJob.Kind.BULK_ACTION, pool=pool, params=INVALIDATE, **fields)


class TestSubmitting:
    def test_the_task_is_sent_once_the_row_commits(self, monkeypatch, django_capture_on_commit_callbacks):
        broker = Broker(monkeypatch)
        with django_capture_on_commit_callbacks(execute=True):
            job = bulk_job(PoolFactory())
            assert broker.sent == []  # not before the commit: the worker would not find the row
        assert broker.sent == [(engine.RUN_TASK, ("bulk_action", job.pk))]
        job.refresh_from_db()
        assert (job.status, job.message, job.dispatch_failed) == (JobStatus.QUEUED, "", False)
        assert job.dispatched_at is not None

    def test_a_broker_that_is_down_leaves_a_queued_job_that_says_so(self, monkeypatch, django_capture_on_commit_callbacks):
        Broker(monkeypatch, down=True)
        with django_capture_on_commit_callbacks(execute=True):
            job = bulk_job(PoolFactory())
        assert job.dispatch_failed  # the page can tell the user
        job.refresh_from_db()
        assert (job.status, job.message, job.dispatched_at) == (JobStatus.QUEUED, QUEUE_UNREACHABLE, None)

    def test_the_sweeper_sends_it_once_the_broker_is_back(self, monkeypatch, django_capture_on_commit_callbacks):
        broker = Broker(monkeypatch, down=True)
        with django_capture_on_commit_callbacks(execute=True):
            job = bulk_job(PoolFactory())
        assert jobs_dispatch_pending() == 0  # still down: it stays unsent, and says so
        job.refresh_from_db()
        assert (job.dispatched_at, job.message) == (None, QUEUE_UNREACHABLE)
        broker.down = False
        assert jobs_dispatch_pending() == 1
        assert broker.sent == [(engine.RUN_TASK, ("bulk_action", job.pk))]
        job.refresh_from_db()
        assert job.dispatched_at is not None and job.message == "" and job.dispatches == 1
        assert jobs_dispatch_pending() == 0  # sent: not again at the next sweep

    def test_a_task_that_never_started_is_sent_again_less_and_less_often(self, monkeypatch):
        broker = Broker(monkeypatch)
        job = bulk_job(PoolFactory(), enqueue=False)
        sent = job.dispatched_at
        assert jobs_dispatch_pending(now=sent + timedelta(minutes=1)) == 0
        assert jobs_dispatch_pending(now=sent + timedelta(minutes=3)) == 1  # lost with a broker restart?
        again = sent + timedelta(minutes=3)
        assert jobs_dispatch_pending(now=again + timedelta(minutes=3)) == 0  # now waits 4 minutes
        assert jobs_dispatch_pending(now=again + timedelta(minutes=5)) == 1
        assert len(broker.sent) == 2

    def test_a_retry_due_later_is_not_sent_early(self, monkeypatch):
        broker = Broker(monkeypatch)
        job = bulk_job(PoolFactory(), enqueue=False)
        CouponJob.objects.filter(pk=job.pk).update(dispatched_at=timezone.now() + timedelta(minutes=5))
        assert jobs_dispatch_pending() == 0 and broker.sent == []

    def test_the_same_submission_twice_is_one_job(self):
        pool = PoolFactory()
        first = bulk_job(pool, submission="form-key-1", enqueue=False, total=10, total_is_estimate=True)
        again = bulk_job(pool, submission="form-key-1", enqueue=False, total=12, total_is_estimate=True)  # estimate moved
        assert again.pk == first.pk and CouponJob.objects.count() == 1
        # The same page sent back with another choice is another job; no key, always a new one.
        other = job_create(CouponJob, kind=CouponJob.Kind.BULK_ACTION, pool=pool, params={"action": "redeem"},
                           submission="form-key-1", enqueue=False)
        assert other.pk != first.pk
        bulk_job(pool, enqueue=False)
        assert CouponJob.objects.count() == 3


class TestRunning:
    def test_a_job_runs_once_whatever_the_deliveries(self):
        pool = PoolFactory()
        coupons = CouponFactory.create_batch(3, pool=pool, status=S.CLAIMED)
        job = bulk_job(pool, enqueue=False)
        assert job_execute(kind="bulk_action", job_id=job.pk).status == JobStatus.DONE
        assert job_execute(kind="bulk_action", job_id=job.pk) is None  # a second delivery: nothing to do
        job.refresh_from_db()
        assert (job.applied, job.attempts) == (3, 1)
        assert all(Coupon.objects.get(pk=c.pk).status == S.INVALID for c in coupons)

    def test_a_cancelled_job_stops_at_its_next_chunk_and_keeps_what_it_did(self, monkeypatch):
        from coupons import bulk

        monkeypatch.setattr(bulk, "CHUNK", 2)
        pool = PoolFactory()
        CouponFactory.create_batch(6, pool=pool, status=S.CLAIMED)
        job = bulk_job(pool, enqueue=False)
        execute = bulk.BulkAction.execute_chunk

        def cancel_after_the_first_chunk(self, ids, **kwargs):
            result = execute(self, ids, **kwargs)
            if not CouponJob.objects.get(pk=job.pk).processed:
                CouponJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)  # as job_cancel, elsewhere
            return result

        monkeypatch.setattr(bulk.BulkAction, "execute_chunk", cancel_after_the_first_chunk)
        job = job_execute(kind="bulk_action", job_id=job.pk)
        # The chunk under way when the cancel came commits; the next one sees it and stops.
        assert (job.status, job.processed, job.applied) == (JobStatus.CANCELLED, 2, 2)
        assert Coupon.objects.filter(pool=pool, status=S.INVALID).count() == 2
        assert CustomerEvent.objects.filter(action="coupon_invalidate").count() == 2


class TestWatchdogResumeCancel:
    def test_a_running_job_without_heartbeat_is_interrupted_in_every_table(self):
        pool, bulk_pool = PoolFactory(), BulkPoolFactory()
        stale = timezone.now() - timedelta(minutes=5)
        rows = [
            bulk_job(pool, enqueue=False),
            generation_start(pool=bulk_pool, count=5, enqueue=False),
            ImportJob.objects.create(pool=pool, original_name="x.csv", sha256="x", status=JobStatus.QUEUED),
            ExportJob.objects.create(pool=pool, status=JobStatus.QUEUED),
        ]
        for row in rows:
            type(row).objects.filter(pk=row.pk).update(status=JobStatus.RUNNING, heartbeat_at=stale)
        fresh = bulk_job(pool, enqueue=False)
        CouponJob.objects.filter(pk=fresh.pk).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
        assert jobs_mark_interrupted() == 4
        for row in rows:
            row.refresh_from_db()
            assert (row.status, row.message) == (JobStatus.INTERRUPTED, engine.INTERRUPTED), type(row)
        fresh.refresh_from_db()
        assert fresh.status == JobStatus.RUNNING  # its worker is alive

    def test_resume_goes_on_and_says_when(self):
        job = bulk_job(PoolFactory(), enqueue=False)
        CouponJob.objects.filter(pk=job.pk).update(status=JobStatus.INTERRUPTED, message=engine.INTERRUPTED)
        job = job_resume(job=job, enqueue=False)
        job.refresh_from_db()
        assert (job.status, job.message, job.runner) == (JobStatus.QUEUED, "", "")
        assert job.resumed_at is not None

    @pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.DONE, JobStatus.CANCELLED, JobStatus.DRAFT])
    def test_only_interrupted_or_failed_jobs_resume(self, status):
        job = bulk_job(PoolFactory(), enqueue=False)
        CouponJob.objects.filter(pk=job.pk).update(status=status)
        with pytest.raises(JobRefused, match="Only an interrupted or failed job can be resumed"):
            job_resume(job=job, enqueue=False)

    def test_a_finished_generation_batch_cannot_resume(self):
        batch = generation_start(pool=BulkPoolFactory(), count=5, enqueue=False)
        GenerationBatch.objects.filter(pk=batch.pk).update(status=JobStatus.FAILED, processed=5)
        with pytest.raises(JobRefused, match="cannot go on from where it stopped"):
            job_resume(job=batch, enqueue=False)

    @pytest.mark.parametrize("status", [JobStatus.DONE, JobStatus.CANCELLED])
    def test_finished_jobs_cannot_be_cancelled(self, status):
        job = bulk_job(PoolFactory(), enqueue=False)
        CouponJob.objects.filter(pk=job.pk).update(status=status)
        with pytest.raises(JobRefused, match="cannot be cancelled"):
            job_cancel(job=job)

    def test_cancel_says_who_and_how_far(self):
        user = UserFactory(username="carla")
        job = bulk_job(PoolFactory(), enqueue=False)
        CouponJob.objects.filter(pk=job.pk).update(status=JobStatus.INTERRUPTED, processed=40, total=100)
        job = job_cancel(job=job, user=user)
        assert (job.status, job.message) == (JobStatus.CANCELLED, "Cancelled by carla after 40 of 100; what was done stays done.")
        assert job.finished_at is not None and not job.can_resume


class TestPages:
    def test_the_jobs_page_lists_every_kind_newest_first(self, manager_client):
        pool, bulk_pool = PoolFactory(name="Spring"), BulkPoolFactory()
        bulk_job(pool, enqueue=False)
        generation_start(pool=bulk_pool, count=7, enqueue=False)
        ImportJob.objects.create(pool=pool, original_name="spring.csv", sha256="s", status=JobStatus.DONE, total=3)
        ExportJob.objects.create(pool=pool, status=JobStatus.RUNNING, total=10, processed=4)
        response = manager_client.get(reverse("coupons:jobs"))
        rows = [(kind.name, job.pk) for kind, job in response.context["page"].rows]
        assert [name for name, _ in rows] == ["export", "import", "generation", "bulk_action"]
        html = response.content.decode()
        assert "Generate 7 coupons" in html and "Import spring.csv" in html and "Invalidate" in html
        assert 'hx-trigger="every 2s"' in html  # one of them is running: the table stays live

    def test_filters_by_kind_status_and_pool(self, manager_client):
        pool, other = PoolFactory(name="Mine"), PoolFactory(name="Other")
        done = bulk_job(pool, enqueue=False)
        CouponJob.objects.filter(pk=done.pk).update(status=JobStatus.DONE)
        bulk_job(other, enqueue=False)
        ExportJob.objects.create(pool=pool, status=JobStatus.DONE)
        page = manager_client.get(reverse("coupons:jobs"), {"kind": "bulk_action", "status": "done"}).context["page"]
        assert [job.pk for _, job in page.rows] == [done.pk]
        page = manager_client.get(reverse("coupons:jobs"), {"pool": other.pk}).context["page"]
        assert [(kind.name, job.pool_id) for kind, job in page.rows] == [("bulk_action", other.pk)]

    def test_pages_follow_each_other_without_gaps(self, manager_client, monkeypatch):
        from coupons.jobs import views

        monkeypatch.setattr(views, "PAGE_SIZE", 2)
        pool = PoolFactory()
        made = [bulk_job(pool, enqueue=False) for _ in range(3)] + [ExportJob.objects.create(pool=pool) for _ in range(2)]
        same_time = timezone.now()
        ExportJob.objects.filter(pool=pool).update(created_at=same_time)  # ties across tables
        CouponJob.objects.filter(pk=made[0].pk).update(created_at=same_time)
        seen, after = [], None
        for _ in range(4):
            response = manager_client.get(reverse("coupons:jobs"), {"after": after} if after else {})
            page = response.context["page"]
            seen += [(kind.name, job.pk) for kind, job in page.rows]
            after = page.next_after
            if not after:
                break
        assert sorted(seen) == sorted([("bulk_action", j.pk) for j in made[:3]] + [("export", j.pk) for j in made[3:]])
        assert len(seen) == len(set(seen)) == 5

    def test_users_see_only_the_jobs_of_pools_they_may_see(self, client):
        team, other_team = GroupFactory(), GroupFactory()
        user = UserFactory(groups=[team])
        mine, theirs = PoolFactory(user_group=team), PoolFactory(user_group=other_team)
        visible, hidden = bulk_job(mine, enqueue=False), bulk_job(theirs, enqueue=False)
        own_draft = ImportJob.objects.create(original_name="mine.csv", sha256="m", status=JobStatus.DRAFT, created_by=user)
        ImportJob.objects.create(original_name="theirs.csv", sha256="t", status=JobStatus.DRAFT)
        client.force_login(user)
        rows = {(kind.name, job.pk) for kind, job in client.get(reverse("coupons:jobs")).context["page"].rows}
        assert rows == {("bulk_action", visible.pk), ("import", own_draft.pk)}
        # Another group's job: no card, no resume, no cancel (404, as if it did not exist).
        CouponJob.objects.filter(pk=hidden.pk).update(status=JobStatus.INTERRUPTED)
        assert client.get(reverse("coupons:job", args=["bulk_action", hidden.pk])).status_code == 404
        for action in ("resume", "cancel"):
            assert client.post(reverse("coupons:job_action", args=["bulk_action", hidden.pk, action])).status_code == 404
        assert CouponJob.objects.get(pk=hidden.pk).status == JobStatus.INTERRUPTED
        assert client.get(reverse("coupons:job", args=["nonsense", 1])).status_code == 404
        assert client.post(reverse("coupons:job_action", args=["bulk_action", visible.pk, "delete"])).status_code == 404

    def test_resume_and_cancel_need_the_kinds_permission(self, client):
        pool = PoolFactory()
        job = bulk_job(pool, enqueue=False)
        CouponJob.objects.filter(pk=job.pk).update(status=JobStatus.INTERRUPTED)
        client.force_login(UserFactory(username="reader", manager=False))
        html = client.get(reverse("coupons:jobs")).content.decode()
        assert 'data-testid="job-resume"' not in html and 'data-testid="job-cancel"' not in html
        assert client.post(reverse("coupons:job_action", args=["bulk_action", job.pk, "resume"])).status_code == 403
        assert CouponJob.objects.get(pk=job.pk).status == JobStatus.INTERRUPTED

    @pytest.mark.django_db(transaction=True)  # on_commit runs as in production: the task is sent
    def test_resume_and_cancel_from_the_page(self, manager_client, monkeypatch):
        broker = Broker(monkeypatch)
        job = bulk_job(PoolFactory(), enqueue=False)
        CouponJob.objects.filter(pk=job.pk).update(status=JobStatus.INTERRUPTED)
        html = manager_client.get(reverse("coupons:jobs")).content.decode()
        assert 'data-testid="job-resume"' in html
        response = manager_client.post(reverse("coupons:job_action", args=["bulk_action", job.pk, "resume"]),
                                       {"next": "https://evil.example/"}, follow=True)
        assert response.redirect_chain[-1][0] == reverse("coupons:jobs")  # never off-site
        assert f"Bulk action #{job.pk} resumed." in response.content.decode()
        assert broker.sent == [(engine.RUN_TASK, ("bulk_action", job.pk))]
        response = manager_client.post(reverse("coupons:job_action", args=["bulk_action", job.pk, "cancel"]), follow=True)
        assert f"Bulk action #{job.pk} cancelled." in response.content.decode()
        assert CouponJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED
        response = manager_client.post(reverse("coupons:job_action", args=["bulk_action", job.pk, "cancel"]), follow=True)
        assert "it cannot be cancelled" in response.content.decode()


@pytest.mark.django_db(transaction=True)  # on_commit runs as in production, before the page answers
class TestSubmittingFromPages:
    def test_a_bulk_action_with_the_broker_down_answers_plainly(self, manager_client, monkeypatch):
        from coupons import bulk

        Broker(monkeypatch, down=True)
        monkeypatch.setattr(bulk, "ASYNC_THRESHOLD", 2)
        pool = PoolFactory()
        CouponFactory.create_batch(3, pool=pool, status=S.CLAIMED)
        form = {"action": "invalidate", "select_all": "1", "submission": "key-1"}
        url = reverse("coupons:pool_coupons_bulk", args=[pool.pk])
        response = manager_client.post(url, form, follow=True)
        assert response.status_code == 200
        assert "Queued: it starts as soon as the task queue is reachable." in response.content.decode()
        again = manager_client.post(url, form, follow=True)  # the user tries again
        assert again.status_code == 200 and CouponJob.objects.count() == 1

    def test_generation_with_the_broker_down_answers_plainly(self, manager_client, monkeypatch):
        Broker(monkeypatch, down=True)
        pool = BulkPoolFactory(pattern="BD-####")
        url = reverse("coupons:pool_generation", args=[pool.pk])
        form = {"count": "60", "submission": "key-2"}
        response = manager_client.post(url, form, follow=True)
        assert "Queued: it starts as soon as the task queue is reachable." in response.content.decode()
        # A retry of the same form: the same batch, not a refusal for want of capacity.
        response = manager_client.post(url, form, follow=True)
        assert response.status_code == 200 and GenerationBatch.objects.count() == 1
        assert "only 40 more" not in response.content.decode()

    def test_the_same_bulk_action_while_one_runs_is_that_job(self, manager_client, monkeypatch):
        from coupons import bulk

        Broker(monkeypatch)
        monkeypatch.setattr(bulk, "ASYNC_THRESHOLD", 2)
        pool = PoolFactory()
        CouponFactory.create_batch(3, pool=pool, status=S.CLAIMED)
        url = reverse("coupons:pool_coupons_bulk", args=[pool.pk])
        manager_client.post(url, {"action": "invalidate", "select_all": "1", "submission": "a"})
        manager_client.post(url, {"action": "invalidate", "select_all": "1", "submission": "b"})  # another tab
        assert CouponJob.objects.count() == 1
        manager_client.post(url, {"action": "redeem", "select_all": "1", "submission": "c"})
        assert CouponJob.objects.count() == 2


def test_every_kind_is_registered_with_its_table():
    from coupons.jobs.registry import job_models, kinds

    assert {kind.name for kind in kinds()} == {"bulk_action", "propagation", "generation", "import", "api_bulk", "export"}
    assert set(job_models()) == {CouponJob, GenerationBatch, ImportJob, BulkOperation, ExportJob}


@pytest.mark.django_db(transaction=True)
class TestLocksHeldElsewhere:
    """A chunk holds its job's row; a worker machine gone mid-chunk holds it until the
    database gives up the connection. Nothing else must wait for it for long."""

    @pytest.fixture
    def held(self):
        from django.db import connection

        conn = psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}")
        yield lambda job: conn.execute(f"SELECT 1 FROM {job._meta.db_table} WHERE id = %s FOR UPDATE", [job.pk])
        conn.rollback()
        conn.close()

    def test_the_watchdog_skips_a_locked_row_instead_of_waiting(self, held):
        job = bulk_job(PoolFactory(), enqueue=False)
        CouponJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1))
        held(job)
        started = time.monotonic()
        assert jobs_mark_interrupted() == 0 and time.monotonic() - started < 2

    def test_cancel_and_resume_give_up_with_a_clear_answer(self, held, monkeypatch):
        monkeypatch.setattr(engine, "ROW_LOCK_WAIT", "300ms")
        job = bulk_job(PoolFactory(), enqueue=False)
        CouponJob.objects.filter(pk=job.pk).update(status=JobStatus.INTERRUPTED)
        held(job)
        for action in (job_cancel, job_resume):
            with pytest.raises(JobRefused, match=f"Bulk action #{job.pk} is busy with a chunk of its work; try again"):
                action(job=job)
        assert CouponJob.objects.get(pk=job.pk).status == JobStatus.INTERRUPTED

    def test_a_run_that_stopped_moving_stops_its_heartbeat(self, monkeypatch):
        monkeypatch.setattr(run_module, "STUCK_AFTER", 0.5)
        monkeypatch.setattr(run_module, "HEARTBEAT_EVERY", 0.1)
        job = bulk_job(PoolFactory(), enqueue=False)
        then = timezone.now() - timedelta(minutes=1)
        CouponJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, runner="r1", heartbeat_at=then)
        beat = run_module._Heartbeat(CouponJob, job.pk, "r1")
        beat.start()
        try:
            time.sleep(0.3)
            alive = CouponJob.objects.get(pk=job.pk).heartbeat_at
            assert alive > then  # the work moved a moment ago
            time.sleep(1.0)
            stuck = CouponJob.objects.get(pk=job.pk).heartbeat_at
            time.sleep(0.5)
            assert CouponJob.objects.get(pk=job.pk).heartbeat_at == stuck  # no move for 0.5 s: no more beats
            beat.touched = time.monotonic()
            time.sleep(0.3)
            assert CouponJob.objects.get(pk=job.pk).heartbeat_at > stuck
        finally:
            beat.stop()


@pytest.mark.parametrize("job, one, many", [
    (lambda: CouponJob(kind=CouponJob.Kind.BULK_ACTION), "coupon", "coupons"),
    (lambda: ExportJob(), "coupon", "coupons"),
    (lambda: GenerationBatch(), "coupon", "coupons"),
    (lambda: ImportJob(), "row", "rows"),
    (lambda: BulkOperation(), "item", "items"),
])
def test_a_jobs_unit_is_named_in_the_singular_and_the_plural(job, one, many):
    job = job()
    job.total = 1
    assert job_unit(job) == one
    job.total = 2
    assert job_unit(job) == many
    job.status, job.processed = JobStatus.RUNNING, 1
    assert render_to_string("jobs/_progress_text.html", {"job": job}).strip() == f"1 of 2 {many} done."
