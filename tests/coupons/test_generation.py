"""Bulk generation: exact counts, uniqueness across pools, limits, crash and resume."""

import re
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from coupons import generation
from coupons.generation import GenerationError, generation_start
from coupons.jobs import engine
from coupons.jobs.engine import job_execute, job_run_here
from coupons.models import Coupon, CouponStatus, GenerationBatch, JobStatus
from coupons.propagation import pool_update
from coupons.services import Actor, CouponActionError, coupon_claim
from pools.models import CouponPool, PoolSource
from pools.patterns.parsing import Pattern
from tests.conftest import start_worker
from tests.factories import BulkPoolFactory, CouponFactory, CustomerFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


def generate(pool, count, **kwargs):
    batch = generation_start(pool=pool, count=count, enqueue=False, **kwargs)
    return job_run_here(batch)  # what the worker runs


class TestExactCounts:
    def test_a_batch_ends_with_exactly_the_requested_coupons(self, monkeypatch):
        monkeypatch.setattr(generation, "CHUNK", 700)
        pool = BulkPoolFactory(pattern="EX-$$$$$$$$")
        batch = generate(pool, 5_000)
        assert (batch.status, batch.processed) == (JobStatus.DONE, 5_000)
        codes = list(Coupon.objects.filter(pool=pool).values_list("code", flat=True))
        assert len(codes) == len(set(codes)) == 5_000
        compiled = pool.compiled_pattern()
        assert all(compiled.matches(code) for code in codes)
        assert set(Coupon.objects.filter(pool=pool).values_list("status", "terms_id")) == {(S.UNASSIGNED, pool.current_terms_id)}

    def test_collisions_with_codes_of_any_pool_are_skipped_and_topped_up(self, monkeypatch):
        # Given codes of another pool that the generator is made to draw again
        other = PoolFactory()
        taken = [CouponFactory(pool=other, code=f"COL-{n:04d}").code for n in range(30)]
        pool = BulkPoolFactory(pattern="COL-####")
        real = Pattern.generate_matrix
        calls = []

        def with_collisions(self, count):
            matrix = real(self, count)
            if not calls:  # the first chunk repeats every taken code
                forced = np.frombuffer("".join(taken).encode(), dtype=np.uint8).reshape(len(taken), -1)
                matrix = np.concatenate([forced, matrix[: count - len(taken)]])
            calls.append(count)
            return matrix

        monkeypatch.setattr(Pattern, "generate_matrix", with_collisions)
        # When a batch of 80 runs
        batch = generate(pool, 80)
        # Then the taken codes stay in their pool, and the batch still made exactly 80
        assert batch.processed == 80 == Coupon.objects.filter(pool=pool).count()
        assert set(Coupon.objects.filter(code__in=taken).values_list("pool_id", flat=True)) == {other.pk}
        assert calls[0] == 80 and calls[1] >= 30  # the second chunk topped up what was skipped

    def test_excluded_characters_and_phrases_are_honoured(self):
        pool = BulkPoolFactory(pattern="XP-@@@@##", excluded_characters="a,e,i,o,u,0,1", excluded_phrases="xx\nzz")
        generate(pool, 3_000)
        codes = list(Coupon.objects.filter(pool=pool).values_list("code", flat=True))
        assert len(codes) == 3_000
        assert not any(set(code[3:]) & set("aeiou01") for code in codes)
        assert not any("xx" in code.lower() or "zz" in code.lower() for code in codes)


class TestLimits:
    @pytest.mark.parametrize("count, message", [
        (0, "between 1 and 5,000,000"), (5_000_001, "between 1 and 5,000,000"),
    ])
    def test_batch_size(self, count, message):
        with pytest.raises(GenerationError, match=message):
            generation_start(pool=BulkPoolFactory(), count=count, enqueue=False)
        assert not GenerationBatch.objects.exists()

    def test_one_percent_of_the_combinations(self):
        pool = BulkPoolFactory(pattern="OP-####")  # 10,000 combinations: 100 coupons at most
        with pytest.raises(GenerationError, match=r"only 100 more coupons \(at most 1% of the pattern's 10,000"):
            generation_start(pool=pool, count=101, enqueue=False)
        generate(pool, 60)
        with pytest.raises(GenerationError, match="only 40 more coupons"):
            generation_start(pool=pool, count=41, enqueue=False)
        generate(pool, 40)
        with pytest.raises(GenerationError, match="reached its maximum of 100"):
            generation_start(pool=pool, count=1, enqueue=False)
        assert Coupon.objects.filter(pool=pool).count() == 100

    def test_one_percent_counts_after_excluded_characters(self):
        pool = BulkPoolFactory(pattern="EC-####", excluded_characters="0,1,2,3,4")  # 5^4 = 625 -> 6
        with pytest.raises(GenerationError, match="only 6 more"):
            generation_start(pool=pool, count=7, enqueue=False)

    def test_per_pool_maximum(self, monkeypatch):
        monkeypatch.setattr(generation, "POOL_LIMIT", 50)
        pool = BulkPoolFactory()
        with pytest.raises(GenerationError, match=r"only 50 more coupons \(at most 50 coupons per pool\)"):
            generation_start(pool=pool, count=51, enqueue=False)

    def test_a_failed_batch_gives_back_what_it_did_not_make(self):
        pool = BulkPoolFactory(pattern="FB-####")
        batch = generation_start(pool=pool, count=100, enqueue=False)
        GenerationBatch.objects.filter(pk=batch.pk).update(status=JobStatus.FAILED, message="boom")
        assert generation.pool_generation_capacity(pool).available == 100

    def test_only_bulk_pools(self):
        with pytest.raises(GenerationError, match="Only bulk generation pools"):
            generation_start(pool=PoolFactory(), count=1, enqueue=False)


def test_source_and_pattern_lock_when_the_first_batch_starts():
    pool = BulkPoolFactory(pattern="LK-$$$$$$")
    pool_update(pool=pool, actor=None, pattern="LK-$$$$$$$")  # still free before generation
    generation_start(pool=pool, count=10, enqueue=False)
    pool.refresh_from_db()
    assert pool.generation_started_at is not None
    with pytest.raises(ValidationError, match="cannot change once bulk generation has started"):
        pool_update(pool=pool, actor=None, pattern="LK-########")


@pytest.mark.django_db(transaction=True)
def test_parallel_batches_never_break_the_limit_or_duplicate(monkeypatch):
    monkeypatch.setattr(generation, "CHUNK", 40)
    pool = BulkPoolFactory(pattern="PB-####")  # at most 100
    other = BulkPoolFactory(pattern="PB-^####")  # at most 2,600; runs alongside
    barrier = threading.Barrier(4)
    outcomes = []

    def work(target, count):
        try:
            barrier.wait()
            batch = generation_start(pool=target, count=count, enqueue=False)
            outcomes.append(job_run_here(batch).processed)
        except GenerationError as exc:
            outcomes.append(str(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=args) for args in
               [(pool, 60), (pool, 60), (other, 150), (other, 150)]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    made = sorted(o for o in outcomes if isinstance(o, int))
    refused = [o for o in outcomes if isinstance(o, str)]
    assert made == [60, 150, 150] and len(refused) == 1 and "only 40 more" in refused[0]
    assert Coupon.objects.filter(pool=pool).count() == 60
    assert Coupon.objects.filter(pool=other).count() == 300
    assert Coupon.objects.values("code").distinct().count() == Coupon.objects.count()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker_env(COUPON_GENERATION_CHUNK="4000")
def test_killed_worker_loses_nothing_and_the_batch_resumes_to_the_exact_count(celery_worker_process):
    pool = BulkPoolFactory(pattern="KW-$$$$$$$$$$")
    # Given a batch running in a real worker, in chunks of 4,000
    batch = generation_start(pool=pool, count=300_000)
    celery_worker_process.wait_for(lambda: GenerationBatch.objects.get(pk=batch.pk), lambda b: b.processed >= 8_000)
    # When the worker is killed mid-batch
    celery_worker_process.process.kill()
    celery_worker_process.process.wait(timeout=10)
    batch.refresh_from_db()
    in_database = Coupon.objects.filter(pool=pool).count()
    # Then what was committed is counted exactly: nothing lost, nothing twice
    assert 8_000 <= batch.processed < 300_000
    assert in_database == batch.processed
    assert batch.status == JobStatus.RUNNING
    # And the watchdog marks it interrupted once its heartbeat is stale
    assert engine.jobs_mark_interrupted(now=timezone.now() + timedelta(minutes=5)) == 1
    batch.refresh_from_db()
    assert batch.status == JobStatus.INTERRUPTED and batch.can_resume
    # And a new worker resumes it to exactly the requested count
    second = start_worker(celery_worker_process.queue, COUPON_GENERATION_CHUNK="50000")
    try:
        generation.generation_resume(batch=batch)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch.refresh_from_db()
            if batch.status == JobStatus.DONE:
                break
            time.sleep(0.3)
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert (batch.status, batch.processed) == (JobStatus.DONE, 300_000)
    assert Coupon.objects.filter(pool=pool).count() == 300_000
    assert Coupon.objects.filter(pool=pool).values("code").distinct().count() == 300_000


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_run_twice_at_once_does_not_overshoot(monkeypatch):
    monkeypatch.setattr(generation, "CHUNK", 300)
    pool = BulkPoolFactory()
    batch = generation_start(pool=pool, count=5_000, enqueue=False)
    barrier = threading.Barrier(2)

    runs = []

    def run():
        barrier.wait()
        runs.append(job_execute(kind="generation", job_id=batch.pk))  # e.g. a task delivered twice
        connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    batch.refresh_from_db()
    assert (batch.status, batch.processed, batch.attempts) == (JobStatus.DONE, 5_000, 1)
    assert sorted(runs, key=bool)[0] is None  # the second delivery found the batch taken
    assert Coupon.objects.filter(pool=pool).count() == 5_000


@pytest.mark.django_db(transaction=True)
def test_two_batches_of_one_small_pool_run_together_without_duplicates(monkeypatch):
    monkeypatch.setattr(generation, "CHUNK", 20)
    pool = BulkPoolFactory(pattern="TW-####")  # 100 at most, so the batches' codes meet often
    first = generation_start(pool=pool, count=50, enqueue=False)
    second = generation_start(pool=pool, count=50, enqueue=False)
    barrier = threading.Barrier(2)

    def run(batch):
        barrier.wait()
        job_run_here(batch)
        connections.close_all()

    threads = [threading.Thread(target=run, args=(b,)) for b in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    codes = list(Coupon.objects.filter(pool=pool).values_list("code", flat=True))
    assert len(codes) == len(set(codes)) == 100


class TestParallelLanes:
    """A batch writes several chunks at once, each on its own connection."""

    pytestmark = pytest.mark.django_db(transaction=True)

    def lanes_seen(self, monkeypatch, lanes, chunk):
        monkeypatch.setattr(generation, "CHUNK", chunk)
        monkeypatch.setattr(generation.settings, "COUPON_GENERATION_LANES", lanes)
        seen = set()
        insert = generation._insert_codes

        def recording(pool, matrix):
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                seen.add(cursor.fetchone()[0])
            return insert(pool, matrix)

        monkeypatch.setattr(generation, "_insert_codes", recording)
        return seen

    @staticmethod
    def fail_insert(monkeypatch, *, call, error, write_first=False):
        """The ``call``-th chunk's insert raises ``error()``, after writing its codes if asked."""
        insert, calls = generation._insert_codes, []

        def failing(pool, matrix):
            calls.append(1)
            if len(calls) == call:
                if write_first:
                    insert(pool, matrix)
                raise error()
            return insert(pool, matrix)

        monkeypatch.setattr(generation, "_insert_codes", failing)

    def test_lanes_end_with_exactly_the_requested_count(self, monkeypatch):
        backends = self.lanes_seen(monkeypatch, lanes=3, chunk=997)
        pool = BulkPoolFactory(pattern="LN-######")  # at most 10,000
        CouponFactory.create_batch(50, pool=BulkPoolFactory(pattern="LO-######"))
        progress = []
        batch = generation_start(pool=pool, count=9_000, enqueue=False)
        batch = job_run_here(batch, progress=lambda b: progress.append(b.processed))
        assert (batch.status, batch.processed) == (JobStatus.DONE, 9_000)
        codes = list(Coupon.objects.filter(pool=pool).values_list("code", flat=True))
        assert len(codes) == len(set(codes)) == 9_000
        assert len(backends) == 3  # three connections wrote chunks
        assert progress == sorted(progress) and progress[-1] == 9_000

    def test_codes_that_meet_existing_ones_are_topped_up_across_lanes(self, monkeypatch):
        backends = self.lanes_seen(monkeypatch, lanes=2, chunk=30)
        pool = BulkPoolFactory(pattern="DN-####")  # 10,000 combinations: at most 100
        other = PoolFactory(source=PoolSource.UPLOADED)
        taken = [f"DN-{n:04d}" for n in range(0, 10_000, 2)]  # half the combinations, in another pool
        Coupon.objects.bulk_create(Coupon(pool=other, terms=other.current_terms, code=c) for c in taken)
        batch = generate(pool, 100)
        assert batch.processed == Coupon.objects.filter(pool=pool).count() == 100
        assert Coupon.objects.values("code").distinct().count() == Coupon.objects.count() == 5_100
        assert len(backends) == 2

    def test_a_failing_lane_stops_the_run_and_the_count_matches_the_table(self, monkeypatch):
        self.lanes_seen(monkeypatch, lanes=2, chunk=500)
        self.fail_insert(monkeypatch, call=4, error=lambda: RuntimeError("disk full"))
        pool = BulkPoolFactory()
        batch = generation_start(pool=pool, count=20_000, enqueue=False)
        batch = job_run_here(batch)
        assert batch.status == JobStatus.FAILED and "disk full" in batch.message and batch.can_resume
        assert 0 < batch.processed < 20_000
        assert Coupon.objects.filter(pool=pool).count() == batch.processed

    @pytest.mark.parametrize("wrapped", [False, True], ids=["from COPY (psycopg's own)", "from execute (Django's)"])
    def test_a_deadlocked_chunk_is_made_again(self, monkeypatch, wrapped):
        import psycopg
        from django.db import OperationalError

        self.lanes_seen(monkeypatch, lanes=2, chunk=400)

        def deadlock():
            error = psycopg.errors.DeadlockDetected("deadlock detected")
            if wrapped:  # as Django's cursor wrapper raises it
                wrapper = OperationalError("deadlock detected")
                wrapper.__cause__ = error
                return wrapper
            return error

        # The codes are written, then rolled back with the chunk.
        self.fail_insert(monkeypatch, call=2, error=deadlock, write_first=True)
        pool = BulkPoolFactory()
        batch = generate(pool, 2_000)
        assert (batch.status, batch.processed) == (JobStatus.DONE, 2_000)
        assert Coupon.objects.filter(pool=pool).count() == 2_000

    def test_each_chunk_follows_the_pools_current_phrases(self, monkeypatch):
        self.lanes_seen(monkeypatch, lanes=2, chunk=500)
        insert = generation._insert_codes
        pool = BulkPoolFactory(pattern="PH-######")  # at most 10,000
        seen = []

        def edited_meanwhile(pool_, matrix):
            seen.append(pool_.excluded_phrases)
            if len(seen) == 2:  # an editor excludes a phrase while the batch runs
                CouponPool.objects.filter(pk=pool.pk).update(excluded_phrases="77")
            return insert(pool_, matrix)

        monkeypatch.setattr(generation, "_insert_codes", edited_meanwhile)
        batch = generate(pool, 5_000)
        assert batch.processed == 5_000 and seen[0] == "" and seen[-1] == "77"
        last = Coupon.objects.filter(pool=pool).order_by("-id")[:400]  # the last chunk's codes
        assert not [c.code for c in last if "77" in c.code]

    def test_a_batch_cancelled_meanwhile_stops_the_lanes_and_gives_back_its_capacity(self, monkeypatch):
        from coupons.jobs.engine import job_cancel

        self.lanes_seen(monkeypatch, lanes=2, chunk=200)
        insert = generation._insert_codes
        pool = BulkPoolFactory(pattern="CM-######")  # at most 10,000
        batch = generation_start(pool=pool, count=10_000, enqueue=False)

        once = threading.Lock()

        def cancel_from_elsewhere():
            try:
                job_cancel(job=batch)  # from another connection, as a manager on the Jobs page would
            finally:
                connections.close_all()

        def cancelled_meanwhile(pool, matrix):
            inserted = insert(pool, matrix)
            # Once, though both lanes get here.
            if GenerationBatch.objects.get(pk=batch.pk).processed >= 1_000 and once.acquire(blocking=False):
                stopper = threading.Thread(target=cancel_from_elsewhere)
                stopper.start()
                stopper.join()
            return inserted

        monkeypatch.setattr(generation, "_insert_codes", cancelled_meanwhile)
        batch = job_run_here(batch)
        assert batch.status == JobStatus.CANCELLED and not batch.can_resume
        assert 1_000 <= batch.processed < 10_000
        assert Coupon.objects.filter(pool=pool).count() == batch.processed
        assert generation.pool_generation_capacity(pool).available == 10_000 - batch.processed


class TestReviewedEdges:
    def test_resuming_a_failed_batch_takes_its_capacity_again(self):
        pool = BulkPoolFactory(pattern="RF-####")  # at most 100
        failed = generation_start(pool=pool, count=100, enqueue=False)
        GenerationBatch.objects.filter(pk=failed.pk).update(status=JobStatus.FAILED, message="boom")
        generate(pool, 100)  # the capacity it gave back is used by another batch
        with pytest.raises(engine.JobRefused, match="reached its maximum of 100"):
            generation.generation_resume(batch=failed, enqueue=False)
        assert Coupon.objects.filter(pool=pool).count() == 100

    def test_a_chunk_does_not_lock_the_pool_row(self, monkeypatch):
        # Claims write events that reference the pool: they must not wait for a chunk.
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        pool = BulkPoolFactory()
        batch = generation_start(pool=pool, count=10, enqueue=False)
        with CaptureQueriesContext(connection) as queries:
            job_run_here(batch)
        sql = [q["sql"] for q in queries.captured_queries]
        assert not [s for s in sql if "FOR UPDATE" in s]
        assert [s for s in sql if s.startswith("UPDATE coupons_generationbatch SET processed = processed +")]

    def test_a_batch_that_cannot_make_progress_fails_with_the_reason(self, monkeypatch):
        pool = BulkPoolFactory(pattern="NP-####")
        batch = generation_start(pool=pool, count=10, enqueue=False)
        monkeypatch.setattr(generation, "_insert_codes", lambda pool, matrix: 0)  # every code taken
        batch = job_run_here(batch)
        assert batch.status == JobStatus.FAILED and batch.message.startswith("No new codes could be made")

    def test_a_few_taken_codes_at_the_end_of_a_batch_are_not_a_used_up_pattern(self, monkeypatch):
        pool = BulkPoolFactory()
        batch = generation_start(pool=pool, count=1, enqueue=False)
        insert, misses = generation._insert_codes, []

        def taken_five_times(pool, matrix):
            if len(misses) < 5:  # the last code drawn exists already, five times in a row
                misses.append(len(matrix))
                return 0
            return insert(pool, matrix)

        monkeypatch.setattr(generation, "_insert_codes", taken_five_times)
        assert job_run_here(batch).processed == 1 and misses == [1] * 5

    def test_psycopg_errors_inside_the_copy_are_retried(self, monkeypatch):
        import psycopg

        from coupons.jobs.tasks import run_job

        pool = BulkPoolFactory()
        batch = generation_start(pool=pool, count=10, enqueue=False)

        def lost(*args, **kwargs):
            raise psycopg.OperationalError("terminating connection")

        monkeypatch.setattr(generation, "_insert_codes", lost)
        with pytest.raises(psycopg.OperationalError):
            run_job.run("generation", batch.pk)
        batch.refresh_from_db()
        assert batch.status == JobStatus.QUEUED  # left for the retry, not failed
        assert batch.message.startswith("Retrying after a database error: terminating connection")

    def test_ctrl_c_leaves_a_resumable_batch(self, monkeypatch):
        from django.core.management import CommandError

        pool = BulkPoolFactory(external_id="CTRL-C-01")

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(generation, "_insert_codes", interrupted)
        with pytest.raises(CommandError, match="--resume"):
            call_command("generate_coupons", "CTRL-C-01", "--count", "10")
        assert GenerationBatch.objects.get(pool=pool).status == JobStatus.INTERRUPTED


class TestGeneratedPools:
    @pytest.mark.parametrize("estimate", [5, 9, 10, 50, None])
    def test_near_the_one_percent_limit_the_estimate_is_not_trusted(self, monkeypatch, estimate):
        """A large limit trusts the planner's estimate only far below it (under half):
        from half the limit up, or with no estimate, the pool is counted exactly."""
        from coupons.services import claims as services
        from couponsite import counting

        monkeypatch.setattr(services, "EXACT_GUESSING_CHECK", 5)  # limit 10 counts as large
        monkeypatch.setattr(counting, "estimate_count", lambda queryset: estimate)
        pool = PoolFactory(source=PoolSource.GENERATED, pattern="GS-###")  # at most 10
        for _ in range(10):
            coupon_claim(pool=pool, customer=CustomerFactory(), actor=Actor.system())
        with pytest.raises(CouponActionError, match="the most its pattern allows"):
            coupon_claim(pool=pool, customer=CustomerFactory(), actor=Actor.system())
        assert Coupon.objects.filter(pool=pool).count() == 10

    def test_far_below_the_limit_the_estimate_spares_the_count(self, monkeypatch):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from coupons.services import claims as services
        from couponsite import counting

        monkeypatch.setattr(services, "EXACT_GUESSING_CHECK", 5)
        monkeypatch.setattr(counting, "estimate_count", lambda queryset: 4)  # under half of 10
        pool = PoolFactory(source=PoolSource.GENERATED, pattern="GS-###")
        with CaptureQueriesContext(connection) as queries:
            coupon_claim(pool=pool, customer=CustomerFactory(), actor=Actor.system())
        assert not any("COUNT(" in query["sql"].upper() for query in queries.captured_queries)

    def test_claims_respect_the_one_percent_rule(self):
        pool = PoolFactory(source=PoolSource.GENERATED, pattern="G-###")  # 1,000 combinations: 10
        for _ in range(10):
            coupon_claim(pool=pool, customer=CustomerFactory(), actor=Actor.system())
        with pytest.raises(CouponActionError, match="has issued 10 coupons, the most its pattern allows"):
            coupon_claim(pool=pool, customer=CustomerFactory(), actor=Actor.system())
        assert Coupon.objects.filter(pool=pool).count() == 10


def test_generate_coupons_command(capsys):
    pool = BulkPoolFactory(external_id="BULK-CMD-1", pattern="CMD-######")  # at most 10,000
    call_command("generate_coupons", "BULK-CMD-1", "--count", "1234")
    out = capsys.readouterr().out
    assert "1,234 coupons generated" in out and "[" in out
    assert Coupon.objects.filter(pool=pool).count() == 1234
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="only 8,766 more"):
        call_command("generate_coupons", str(pool.pk), "--count", "9000")
    with pytest.raises(CommandError, match="No coupon pool"):
        call_command("generate_coupons", "NOPE-404", "--count", "1")


class TestPages:
    def test_empty_bulk_pool_offers_to_start(self, manager_client):
        pool = BulkPoolFactory()
        html = manager_client.get(reverse("coupons:pool_coupons", args=[pool.pk])).content.decode()
        assert "Click here to start generation process" in html and "Bulk generation</a>" not in html
        generation_start(pool=pool, count=5, enqueue=False)
        html = manager_client.get(reverse("coupons:pool_coupons", args=[pool.pk])).content.decode()
        assert "Click here to start generation process" not in html and "Bulk generation</a>" in html

    def test_generation_form_shows_capacity_and_refuses_too_many(self, manager_client, django_capture_on_commit_callbacks):
        pool = BulkPoolFactory(pattern="PG-####")
        url = reverse("coupons:pool_generation", args=[pool.pk])
        page = manager_client.get(url).content.decode()
        assert re.search(r'can still take <strong data-testid="capacity-available">100</strong> coupons\.', page)
        refused = manager_client.post(url, {"count": "101"})
        assert "only 100 more coupons" in refused.content.decode()
        with django_capture_on_commit_callbacks() as callbacks:
            response = manager_client.post(url, {"count": "30"})
        assert response.status_code == 302 and len(callbacks) == 1  # the task is queued on commit
        batch = GenerationBatch.objects.get()
        assert (batch.total, batch.created_by.username) == (30, "manager")
        fragment = manager_client.get(reverse("coupons:generation_batch", args=[batch.pk])).content.decode()
        assert 'hx-trigger="every 1s"' in fragment

    def test_the_admin_says_generation_batches(self, client):
        client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
        html = client.get(reverse("admin:index")).content.decode()
        assert ">Generation batches</a>" in html and "batchs" not in html.lower()

    def test_capacity_is_a_short_table_in_singular_and_plural(self, manager_client):
        pool = BulkPoolFactory(pattern="PS-####")  # 10,000 combinations: at most 100 coupons
        url = reverse("coupons:pool_generation", args=[pool.pk])
        generation_start(pool=pool, count=99, enqueue=False)
        page = manager_client.get(url).content.decode()
        assert re.search(r'can still take <strong data-testid="capacity-available">1</strong> coupon\.', page)
        rows = re.findall(r'<tr><th scope="row"[^>]*>(.*?)</th><td[^>]*>(.*?)</td></tr>', page)
        assert rows == [
            ("Most coupons per pool", "100,000,000"), ("Guessing protection: 1% of 10,000 combinations", "100"),
            ("Maximum of this pool (the smaller)", "100"), ("Generated or on their way", "&minus;&nbsp;99"),
            ("Still available", "1"),
        ]
        refused = manager_client.post(url, {"count": "2"}).content.decode()
        assert "can take only 1 more coupon (at most 1% of the pattern&#x27;s 10,000 combinations" in refused
        assert "; 2 were requested." in refused

    def test_resume_button(self, manager_client, django_capture_on_commit_callbacks):
        pool = BulkPoolFactory()
        batch = generation_start(pool=pool, count=10, enqueue=False)
        GenerationBatch.objects.filter(pk=batch.pk).update(status=JobStatus.INTERRUPTED)
        assert "Resume" in manager_client.get(reverse("coupons:pool_generation", args=[pool.pk])).content.decode()
        with django_capture_on_commit_callbacks():
            manager_client.post(reverse("coupons:job_action", args=["generation", batch.pk, "resume"]))
        batch.refresh_from_db()
        assert batch.status == JobStatus.QUEUED and batch.resumed_at is not None

    def test_read_only_users_cannot_generate(self, client):
        from tests.factories import UserFactory

        pool = BulkPoolFactory()
        client.force_login(UserFactory(username="reader", manager=False))
        assert client.post(reverse("coupons:pool_generation", args=[pool.pk]), {"count": "5"}).status_code == 403
        assert not GenerationBatch.objects.exists()


def test_pattern_engine_failures_fail_the_batch_with_the_reason():
    from coupons.jobs.tasks import run_job

    pool = BulkPoolFactory(pattern="PF-####")
    batch = generation_start(pool=pool, count=50, enqueue=False)
    pool.__class__.objects.filter(pk=pool.pk).update(excluded_phrases="\n".join(str(d) for d in range(10)))
    run_job.apply(args=["generation", batch.pk])
    batch.refresh_from_db()
    assert batch.status == JobStatus.FAILED and "excluded phrase" in batch.message


def test_generated_coupons_keep_a_random_order():
    pool = BulkPoolFactory(pattern="RO-$$$$$$")
    generate(pool, 500)
    codes = list(Coupon.objects.filter(pool=pool).order_by("id").values_list("code", flat=True))
    assert codes != sorted(codes) and codes != sorted(codes, reverse=True)
