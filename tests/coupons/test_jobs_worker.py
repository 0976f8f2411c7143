"""The job engine with real workers on PostgreSQL and Redis: ``kill -9`` mid-run for
every kind, the broker down when a job is submitted, a task delivered twice, retries
that run out. (Generation and imports have their kill tests beside their services.)"""

import gzip
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import requests
from django.db import connection
from django.test import Client
from django.urls import reverse

from api.bulk import bulk_start
from coupons import rows
from coupons.bulk import BULK_ACTIONS, bulk_submit
from coupons.exports import export_submit
from coupons.jobs import engine
from coupons.jobs.engine import job_create, job_resume, jobs_mark_interrupted
from coupons.models import Coupon, CouponJob, CouponStatus, CustomerEvent, ExportJob, GenerationBatch, JobStatus
from coupons.propagation import UpdateMethod, pool_update
from tests.conftest import start_worker
from tests.factories import BulkPoolFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
S = CouponStatus
ROOT = Path(__file__).resolve().parents[2]
FAST_BEATS = {"JOB_HEARTBEAT_SECONDS": "0.3"}


def seed(pool, count: int, prefix: str, *, claimed: bool) -> None:
    """``count`` coupons in one statement each (claimed ones with a customer each)."""
    with connection.cursor() as cursor:
        if claimed:
            cursor.execute(
                "INSERT INTO coupons_customer (external_id, email, currency, created_at) "
                "SELECT %s || g, '', '', now() FROM generate_series(1, %s) g", [prefix, count],
            )
        cursor.execute(
            f"{rows.COUPON_INSERT}"
            f"SELECT %s, %s, %s || g, false, %s, {'cu.id' if claimed else 'NULL'}, {'now()' if claimed else 'NULL'}, NULL, 0, %s "
            "FROM generate_series(1, %s) g "
            + ("JOIN coupons_customer cu ON cu.external_id = %s || g" if claimed else ""),
            [pool.pk, pool.current_terms_id, prefix, int(S.CLAIMED if claimed else S.UNASSIGNED), int(claimed), count]
            + ([prefix] if claimed else []),
        )
        cursor.execute("ANALYZE coupons_coupon")


def reload(job):
    return type(job).objects.get(pk=job.pk)


def kill_mid_run(worker, job, started):
    """Wait until the worker has done some of the job, then ``kill -9`` it."""
    running = worker.wait_for(lambda: reload(job), lambda j: j.status == JobStatus.RUNNING and started(j), timeout=120)
    worker.process.kill()
    worker.process.wait(timeout=10)
    return running


def interrupted_by_the_watchdog(job, monkeypatch):
    """The beat task's watchdog, with a short window: the job is interrupted once its
    dead worker's heartbeats are older than the window, not before."""
    monkeypatch.setattr(engine, "STALE_AFTER", timedelta(seconds=2))
    assert reload(job).status == JobStatus.RUNNING  # nothing says it ended
    deadline = time.monotonic() + 20
    while not jobs_mark_interrupted():
        assert time.monotonic() < deadline, "never interrupted"
        time.sleep(0.25)
    job = reload(job)
    assert (job.status, job.message, job.can_resume) == (JobStatus.INTERRUPTED, engine.INTERRUPTED, True)
    return job


def resumed_to_its_end(queue, job, **env):
    """Resume the job (the Resume button's service) and let a new worker finish it."""
    worker = start_worker(queue, **FAST_BEATS, **env)
    try:
        job_resume(job=job)
        deadline = time.monotonic() + 180
        while (job := reload(job)).status in (JobStatus.QUEUED, JobStatus.RUNNING):
            assert time.monotonic() < deadline, f"not finished: {job.status} {job.processed}/{job.total}"
            time.sleep(0.3)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert job.status == JobStatus.DONE, job.message
    assert job.attempts == 2 and job.resumed_at is not None
    return job


def one_event_per_coupon(action: str, coupons) -> None:
    events = CustomerEvent.objects.filter(action=action, coupon__in=coupons)
    assert events.count() == events.values("coupon").distinct().count() == coupons.count()


@pytest.mark.worker_env(COUPON_BULK_CHUNK="1000", **FAST_BEATS)
def test_a_killed_bulk_action_resumes_to_every_coupon_changed_exactly_once(celery_worker_process, monkeypatch):
    # Given 100,000 claimed coupons being invalidated in a real worker, 1,000 per chunk
    pool = PoolFactory()
    seed(pool, 100_000, "KB-", claimed=True)
    job = bulk_submit(pool=pool, action=BULK_ACTIONS["invalidate"], filters={"status": "claimed"}, ids=None,
                      user=None, total=99_000)  # the page's estimate
    # When the worker is killed with 10,000 or more done
    running = kill_mid_run(celery_worker_process, job, lambda j: j.processed >= 10_000)
    job = reload(job)
    # Then what the counters say is exactly what the database holds
    assert (job.total, job.total_is_estimate) == (100_000, False)  # counted by the worker
    assert 10_000 <= job.processed < 100_000 and job.processed >= running.processed
    assert Coupon.objects.filter(pool=pool, status=S.INVALID).count() == job.applied == job.processed
    job = interrupted_by_the_watchdog(job, monkeypatch)
    # And a resume finishes it: every selected coupon changed once, with one event each
    job = resumed_to_its_end(celery_worker_process.queue, job, COUPON_BULK_CHUNK="20000")
    assert (job.processed, job.applied, job.total) == (100_000, 100_000, 100_000)
    assert job.message == "Invalidated 100,000 coupons."
    coupons = Coupon.objects.filter(pool=pool)
    assert coupons.filter(status=S.INVALID).count() == 100_000
    one_event_per_coupon("coupon_invalidate", coupons)


@pytest.mark.worker_env(COUPON_PROPAGATION_CHUNK="500", **FAST_BEATS)
def test_a_killed_propagation_resumes_to_every_coupon_moved(celery_worker_process, monkeypatch):
    pool = PoolFactory(value="10.00")
    seed(pool, 30_000, "KP-", claimed=False)
    pool, propagation = pool_update(pool=pool, actor=None, value=Decimal("12.00"), update_method=UpdateMethod.UNASSIGNED)
    job = propagation.job
    assert job is not None  # 30,000 coupons: in the background
    kill_mid_run(celery_worker_process, job, lambda j: j.processed >= 3_000)
    job = reload(job)
    assert 3_000 <= job.processed < 30_000
    assert Coupon.objects.filter(pool=pool, terms=pool.current_terms).count() == job.applied
    job = interrupted_by_the_watchdog(job, monkeypatch)
    job = resumed_to_its_end(celery_worker_process.queue, job)
    assert (job.processed, job.applied, job.total) == (30_000, 30_000, 30_000)
    values = Coupon.objects.filter(pool=pool).values_list("terms__effective__value", flat=True).distinct()
    assert list(values) == [Decimal("12.00")]


@pytest.mark.worker_env(COUPON_API_BULK_CHUNK="100", **FAST_BEATS)
def test_a_killed_api_bulk_operation_resumes_and_its_status_says_so(celery_worker_process, monkeypatch):
    from api.services import api_key_create

    pool = PoolFactory()
    seed(pool, 3_000, "KA-", claimed=False)
    key, secret = api_key_create(name="Shop")
    items = [{"code": f"KA-{n}", "customer": f"ka-customer-{n}"} for n in range(1, 3_001)]
    operation = bulk_start(api_key=key, pool=pool, action="assign", items=items)
    kill_mid_run(celery_worker_process, operation, lambda op: op.processed >= 300)
    operation = interrupted_by_the_watchdog(operation, monkeypatch)
    # What the shop sees meanwhile, through the API
    shop = Client(headers={"Authorization": f"Api-Key {secret}"})
    status = shop.get(f"/api/v1/bulk-operation/coupons/{operation.pk}/status").json()
    assert (status["status"], status["attempts"], status["resumed_at"]) == ("interrupted", 1, None)
    operation = resumed_to_its_end(celery_worker_process.queue, operation)
    assert (operation.processed, operation.succeeded, operation.failed) == (3_000, 3_000, 0)
    status = shop.get(f"/api/v1/bulk-operation/coupons/{operation.pk}/status").json()
    assert (status["status"], status["attempts"]) == ("done", 2) and status["resumed_at"]
    coupons = Coupon.objects.filter(pool=pool)
    assert coupons.filter(status=S.CLAIMED).count() == 3_000
    one_event_per_coupon("coupon_claim", coupons)


@pytest.mark.worker_env(**FAST_BEATS)
def test_a_killed_export_resumes_to_a_complete_file(celery_worker_process, monkeypatch, settings):
    pool = PoolFactory()
    seed(pool, 50_000, "KE-", claimed=True)
    # Given an export that a worker has started: counted, its COPY waiting for a lock
    blocker = psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}")
    blocker.execute("LOCK TABLE coupons_customer IN ACCESS EXCLUSIVE MODE")
    try:
        job = export_submit(pool=pool, filters={}, compress=True, user=None, total=49_000)
        running = kill_mid_run(celery_worker_process, job, lambda j: j.total == 50_000 and not j.total_is_estimate)
        assert running.heartbeat_at is not None
    finally:
        blocker.rollback()
        blocker.close()
    # When the watchdog has seen the dead worker, a resume writes the whole file
    job = interrupted_by_the_watchdog(job, monkeypatch)
    job = resumed_to_its_end(celery_worker_process.queue, job)
    text = gzip.decompress((Path(settings.MEDIA_ROOT) / job.file.name).read_bytes()).decode()
    assert text.count("\n") == 50_001 and job.processed == 50_000
    assert ExportJob.objects.get(pk=job.pk).is_downloadable


@pytest.mark.worker_env(**FAST_BEATS)
def test_the_same_task_delivered_three_times_to_two_workers_runs_once(celery_worker_process):
    from celery import current_app

    pool = PoolFactory()
    seed(pool, 2_000, "TW-", claimed=True)
    job = job_create(CouponJob, kind=CouponJob.Kind.BULK_ACTION, pool=pool, enqueue=False,
                     params={"action": "redeem", "filters": {}, "ids": None}, total=2_000)
    other = start_worker(celery_worker_process.queue, **FAST_BEATS)
    try:
        for _ in range(3):  # a resend by the sweeper, a redelivery after a restart...
            current_app.send_task(engine.RUN_TASK, args=["bulk_action", job.pk])
        celery_worker_process.wait_for(lambda: reload(job), lambda j: j.status == JobStatus.DONE)
        time.sleep(1)  # the other deliveries have been taken and found nothing to do
    finally:
        other.terminate()
        other.wait(timeout=30)
    job = reload(job)
    assert (job.attempts, job.applied) == (1, 2_000)
    coupons = Coupon.objects.filter(pool=pool)
    assert set(coupons.values_list("status", "usages")) == {(S.REDEEMED, 1)}
    one_event_per_coupon("coupon_redeem", coupons)


@pytest.mark.worker_env(JOB_LOCK_WAIT_SECONDS="0.3", JOB_MAX_RETRIES="1", JOB_RETRY_DELAY_SECONDS="0.2", **FAST_BEATS)
def test_retries_that_run_out_end_failed_with_the_reason_and_resumable(celery_worker_process):
    # Given a coupon of the selection locked by a long transaction elsewhere
    pool = PoolFactory()
    seed(pool, 20, "RO-", claimed=True)
    blocker = psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}")
    blocker.execute("SELECT id FROM coupons_coupon WHERE code = 'RO-7' FOR UPDATE")
    try:
        job = job_create(CouponJob, kind=CouponJob.Kind.BULK_ACTION, pool=pool,
                         params={"action": "invalidate", "filters": {}, "ids": None}, total=20)
        # When every attempt times out on the lock (the first and one retry)
        job = celery_worker_process.wait_for(lambda: reload(job), lambda j: j.status == JobStatus.FAILED, timeout=60)
    finally:
        blocker.rollback()
        blocker.close()
    # Then the job failed, says why, changed nothing, and can be resumed
    assert job.attempts == 2 and job.can_resume
    assert job.message.startswith("Stopped by a database error after 2 attempts: canceling statement due to lock timeout")
    assert Coupon.objects.filter(pool=pool, status=S.INVALID).count() == 0
    job_resume(job=job)
    job = celery_worker_process.wait_for(lambda: reload(job), lambda j: j.status == JobStatus.DONE)
    assert job.applied == 20
    one_event_per_coupon("coupon_invalidate", Coupon.objects.filter(pool=pool))


# --- the broker down at submission -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_the_broker_down_at_submission_answers_plainly_and_the_job_runs_once_it_is_back(tmp_path):
    # Given gunicorn, a worker and beat whose broker (a Redis of their own) is not running
    broker_port, web_port = free_port(), free_port()
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "SECURE_COOKIES": "false",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{broker_port}/0", "JOB_SWEEP_INTERVAL_SECONDS": "2",
        "COUPONS_VAR_DIR": str(tmp_path),
    }
    processes = [subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "couponsite.wsgi", "--bind", f"127.0.0.1:{web_port}", "--workers", "1"],
        cwd=ROOT, env=env, stderr=subprocess.DEVNULL,
    )]
    user = UserFactory(username="ops-manager")
    pool = BulkPoolFactory(pattern="BRK-######")
    try:
        wait_for_port(web_port)
        base = f"http://127.0.0.1:{web_port}"
        browser = requests.Session()
        login = browser.get(f"{base}/login/")
        token = browser.cookies["csrftoken"]
        browser.post(f"{base}/login/", {"username": user.username, "password": "secret-pass-123",
                                          "csrfmiddlewaretoken": token}, headers={"Referer": f"{base}/login/"})
        assert login.status_code == 200 and "sessionid" in browser.cookies
        page = browser.get(f"{base}{reverse('coupons:pool_generation', args=[pool.pk])}").text
        submission = page.split('name="submission" value="')[1].split('"')[0]
        form = {"count": "5000", "submission": submission, "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        headers = {"Referer": f"{base}/"}
        # When a manager starts a generation
        started = time.monotonic()
        response = browser.post(f"{base}{reverse('coupons:pool_generation', args=[pool.pk])}", form, headers=headers)
        # Then the page says plainly that it is queued, fast, and not a 500
        assert response.status_code == 200 and time.monotonic() - started < 10
        assert "Queued: it starts as soon as the task queue is reachable." in response.text
        batch = GenerationBatch.objects.get()
        assert (batch.status, batch.dispatched_at, batch.message) == (JobStatus.QUEUED, None, engine.QUEUE_UNREACHABLE)
        # And the manager's retry of the same form is the same job
        again = browser.post(f"{base}{reverse('coupons:pool_generation', args=[pool.pk])}", form, headers=headers)
        assert again.status_code == 200 and GenerationBatch.objects.count() == 1
        # When the worker and beat run, and the broker comes back
        for command in (["worker", "--pool=solo", "--without-gossip", "--without-mingle", "--loglevel=WARNING"],
                        ["beat", "--loglevel=WARNING", f"--schedule={tmp_path / 'beat-schedule'}"]):
            processes.append(subprocess.Popen([sys.executable, "-m", "celery", "-A", "couponsite", *command], cwd=ROOT,
                                              env=env, stderr=subprocess.DEVNULL))
        time.sleep(2)
        processes.append(subprocess.Popen(["redis-server", "--port", str(broker_port), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL))
        back = time.monotonic()
        # Then the job starts by itself within a minute, and runs once
        while (batch := GenerationBatch.objects.get()).status != JobStatus.DONE:
            assert time.monotonic() - back < 60, (batch.status, batch.message)
            time.sleep(0.5)
        assert (batch.processed, batch.attempts, batch.message) == (5_000, 1, "5,000 coupons generated.")
        assert GenerationBatch.objects.count() == 1 and Coupon.objects.filter(pool=pool).count() == 5_000
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
