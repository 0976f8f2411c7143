"""The source lock's cost: the lock is an ``exists()`` counted only for a message, once
per request; a generated pool's pattern change is decided from its patterns where they
cannot overlap, probed within a range of the unique code index where they can, refused
where that range is too large, and the 1% rule never counts past a small limit. The SQL
is asserted (CaptureQueriesContext): no read of the coupons without an index bound."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from coupons.models import Coupon
from coupons.propagation import pool_update
from coupons.services import Actor, coupon_claim
from pools.models import CouponPool, PoolSource, lock
from tests.factories import BulkPoolFactory, CouponFactory, CustomerFactory, PoolFactory

pytestmark = pytest.mark.django_db
TABLE = f'"{Coupon._meta.db_table}"'
FORM = {"name": "Welcome", "coupon_type": "amount", "value": "10.00"}


def generated_pool(pattern="GEN-#####", claimed=3):
    pool = PoolFactory(name="Welcome", source=PoolSource.GENERATED, pattern=pattern)
    customer = CustomerFactory()
    codes = [coupon_claim(pool=pool, customer=customer, actor=Actor.system()).code for _ in range(claimed)]
    return CouponPool.objects.get(pk=pool.pk), codes


def coupon_reads(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if TABLE in q["sql"] and not q["sql"].startswith("EXPLAIN")]


def unbounded(queries) -> list[str]:
    """Reads of the coupons that no index bounds: neither within a code range, nor the
    lock's exists() (LIMIT 1 on the pool's index), nor a count bounded by LIMIT."""
    bad = []
    for sql in coupon_reads(queries):
        within = '"code" >= ' in sql and '"code" <= ' in sql
        exists = sql.rstrip().endswith("LIMIT 1") and "COUNT" not in sql and " ~ " not in sql
        bounded_count = "COUNT" in sql and " LIMIT " in sql and " ~ " not in sql
        if not (within or exists or bounded_count):
            bad.append(sql)
    return bad


def regex_reads(queries) -> list[str]:
    return [sql for sql in coupon_reads(queries) if "::text ~ " in sql or " ~ " in sql]


def counts(queries) -> list[str]:
    return [sql for sql in coupon_reads(queries) if "COUNT(" in sql]


def analyze():
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")


def legacy_history(pool):
    """A pool that held coupons before the history was kept (the migration's NULL)."""
    CouponPool.objects.filter(pk=pool.pk).update(former_patterns=None)
    return CouponPool.objects.get(pk=pool.pk)


class TestPatternChangeWithoutScanning:
    def test_a_pattern_no_earlier_one_can_overlap_reads_no_coupon(self):
        # Given a generated pool that issued 3 codes of GEN-#####
        pool, codes = generated_pool()
        # When its pattern becomes one of another length (1% limit 1,000,000: estimated)
        with CaptureQueriesContext(connection) as queries:
            pool, _ = pool_update(pool=pool, actor=None, pattern="NEW-########")
        # Then it is saved, decided from the patterns: no probe, no count, only the lock's exists()
        assert CouponPool.objects.get(pk=pool.pk).pattern == "NEW-########"
        assert regex_reads(queries) == [] and counts(queries) == [] and unbounded(queries) == []
        assert len(coupon_reads(queries)) == 1  # the lock's exists(), once for the whole save
        # And the pool remembers the pattern its 3 codes came from
        assert CouponPool.objects.get(pk=pool.pk).former_patterns == ["GEN-#####"]
        assert sorted(Coupon.objects.filter(pool=pool).values_list("code", flat=True)) == sorted(codes)

    def test_disjoint_characters_at_one_position_need_no_probe(self):
        pool, _ = generated_pool(pattern="GEN-#####")
        with CaptureQueriesContext(connection) as queries:
            pool_update(pool=pool, actor=None, pattern="GEN-^^^^^")  # same length, letters where digits were
        assert CouponPool.objects.get(pk=pool.pk).pattern == "GEN-^^^^^"
        assert regex_reads(queries) == [] and unbounded(queries) == []

    def test_an_overlapping_pattern_is_probed_within_the_code_range(self):
        pool, codes = generated_pool(claimed=1)
        with CaptureQueriesContext(connection) as queries, pytest.raises(ValidationError) as error:
            pool_update(pool=pool, actor=None, pattern="GEN-####$")  # $ includes the digits
        assert f"(such as {codes[0]})" in error.value.message_dict["pattern"][0]
        probes = regex_reads(queries)
        assert len(probes) == 1
        assert "\"code\" >= 'GEN-00000'" in probes[0] and "\"code\" <= 'GEN-99999'" in probes[0]
        assert unbounded(queries) == []

    def test_an_earlier_pattern_is_remembered(self):
        # Given a pool whose codes came from GEN-#####, then a change to GEN2-######
        pool, codes = generated_pool(claimed=2)
        pool, _ = pool_update(pool=pool, actor=None, pattern="GEN2-######")
        # When a pattern overlapping the first one is asked for
        with pytest.raises(ValidationError) as error:
            pool_update(pool=CouponPool.objects.get(pk=pool.pk), actor=None, pattern="GEN-####$")
        # Then it is refused: the first pattern's codes would fit
        message = error.value.message_dict["pattern"][0]
        assert "could be the same as codes this pool issued already" in message
        assert re.search(r"such as (GEN-\d{5})\)", message).group(1) in codes

    def test_an_empty_pool_forgets_its_history_but_the_pattern_a_claim_may_be_using(self):
        pool = PoolFactory(source=PoolSource.GENERATED, pattern="EMPTY-#####")
        pool = legacy_history(pool)
        pool, _ = pool_update(pool=pool, actor=None, pattern="EMPTY2-#####")
        assert CouponPool.objects.get(pk=pool.pk).former_patterns == ["EMPTY-#####"]
        uploaded = PoolFactory(source=PoolSource.UPLOADED)
        uploaded, _ = pool_update(pool=legacy_history(uploaded), actor=None, source=PoolSource.GENERATED, pattern="UP-#####")
        assert CouponPool.objects.get(pk=uploaded.pk).former_patterns == []

    def test_a_pool_whose_history_is_not_known_is_probed_in_the_new_patterns_range(self):
        # Given a generated pool holding a code that no pattern of it made (from before the lock)
        pool, _ = generated_pool(claimed=1)
        CouponFactory(pool=pool, code="UPLOADED-0007")
        pool = legacy_history(pool)
        # When the new pattern could make that code, it is found within the new pattern's range
        with CaptureQueriesContext(connection) as queries, pytest.raises(ValidationError) as error:
            pool_update(pool=pool, actor=None, pattern="UPLOADED-####")
        assert "(such as UPLOADED-0007)" in error.value.message_dict["pattern"][0]
        assert "\"code\" >= 'UPLOADED-0000'" in regex_reads(queries)[0]
        assert unbounded(queries) == []
        # And a pattern whose range holds none of its codes is saved, the history still unknown
        pool, _ = pool_update(pool=CouponPool.objects.get(pk=pool.pk), actor=None, pattern="FRESH-#####")
        assert CouponPool.objects.get(pk=pool.pk).former_patterns is None

    def test_a_range_too_large_to_check_is_refused_not_scanned(self, monkeypatch):
        monkeypatch.setattr(lock, "PROBE_LIMIT", 20)
        pool = PoolFactory(source=PoolSource.GENERATED, pattern="GEN-#####")
        for n in range(60):
            CouponFactory(pool=pool, code=f"OLD-{n:04d}")
        pool = legacy_history(CouponPool.objects.get(pk=pool.pk))
        analyze()  # the planner sees the 60 codes in the new pattern's range
        with CaptureQueriesContext(connection) as queries, pytest.raises(ValidationError) as error:
            pool_update(pool=pool, actor=None, pattern="OLD-$$$$")
        message = error.value.message_dict["pattern"][0]
        assert "codes lie in their range: too many to check" in message
        assert regex_reads(queries) == [] and unbounded(queries) == []
        assert CouponPool.objects.get(pk=pool.pk).pattern == "GEN-#####"


class TestGuessingProtectionOnAPatternChange:
    @pytest.fixture
    def pool(self, monkeypatch):
        monkeypatch.setattr(lock, "EXACT_COUNT_LIMIT", 10)  # limits past 10 are "too large to count"
        pool = PoolFactory(source=PoolSource.GENERATED, pattern="GEN-#####")
        for n in range(60):
            CouponFactory(pool=pool, code=f"GEN-{n:05d}")
        analyze()
        return CouponPool.objects.get(pk=pool.pk)

    def test_far_below_a_large_limit_the_estimate_decides(self, pool):
        with CaptureQueriesContext(connection) as queries:
            pool_update(pool=pool, actor=None, pattern="NEW-#####")  # at most 1,000
        assert CouponPool.objects.get(pk=pool.pk).pattern == "NEW-#####"
        assert counts(queries) == []

    def test_near_a_large_limit_it_is_refused_without_counting(self, pool):
        with CaptureQueriesContext(connection) as queries, pytest.raises(ValidationError) as error:
            pool_update(pool=pool, actor=None, pattern="NEW-####")  # at most 100; about 60 held
        assert "the new pattern allows at most 100 (1% of its combinations, against guessing), too close" in (
            error.value.message_dict["pattern"][0])
        assert "about 6" in error.value.message_dict["pattern"][0]
        assert counts(queries) == []


class TestTheLockIsCountedOncePerRequest:
    def uploaded_pool(self, codes=31):
        pool = PoolFactory(name="Welcome", source=PoolSource.UPLOADED)
        for n in range(codes):
            CouponFactory(pool=pool, code=f"UPLOADED-{n:02d}")
        return pool

    def test_the_form_page_counts_once_for_its_message(self, manager_client):
        pool = self.uploaded_pool()
        with CaptureQueriesContext(connection) as queries:
            page = manager_client.get(reverse("pools:edit", args=[pool.pk])).content.decode()
        assert "This pool holds 31 coupons; its source can no longer change." in page
        lock_reads = [sql for sql in coupon_reads(queries) if '"pool_id" = ' in sql and "status" not in sql]
        assert len(counts(queries)) == 1, counts(queries)
        assert len([sql for sql in lock_reads if "COUNT(" not in sql]) == 1  # the exists()

    def test_a_save_that_shows_no_message_counts_nothing(self, manager_client):
        pool = self.uploaded_pool()
        with CaptureQueriesContext(connection) as queries:
            response = manager_client.post(reverse("pools:edit", args=[pool.pk]),
                                           {**FORM, "name": "Renamed", "update_method": "update_none"})
        assert response.status_code == 302
        assert CouponPool.objects.get(pk=pool.pk).name == "Renamed"
        assert [sql for sql in counts(queries) if '"pool_id" = ' in sql and "status" not in sql] == []


def source_text(html: str) -> str:
    match = re.search(r'<dl[^>]*data-testid="source"[^>]*>(.*?)</dl>', html, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


class TestOverviewSaysWhyTheSourceIsLocked:
    def test_an_uploaded_pool_holding_codes(self, manager_client):
        pool = TestTheLockIsCountedOncePerRequest().uploaded_pool()
        source = source_text(manager_client.get(reverse("pools:overview", args=[pool.pk])).content.decode())
        assert "Uploaded (locked: it holds 31 coupons)" in source
        assert "bulk generation" not in source

    def test_a_bulk_pool_whose_generation_started(self, manager_client):
        pool = BulkPoolFactory()
        CouponPool.objects.filter(pk=pool.pk).update(generation_started_at=timezone.now())
        source = source_text(manager_client.get(reverse("pools:overview", args=[pool.pk])).content.decode())
        assert "Bulk generation (locked: bulk generation started)" in source

    def test_an_empty_pool_is_not_locked(self, manager_client):
        pool = PoolFactory(source=PoolSource.UPLOADED)
        source = source_text(manager_client.get(reverse("pools:overview", args=[pool.pk])).content.decode())
        assert "locked" not in source


def test_the_planner_takes_the_probe_from_the_code_index_of_a_large_pool():
    # Given a generated pool of 200,000 coupons (codes of its earlier pattern, history not known)
    pool = PoolFactory(source=PoolSource.GENERATED, pattern="GEN-#######")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (pool_id, terms_id, code, shared_code, status, usages, claims) "
            "SELECT %s, %s, 'GEN-' || lpad(i::text, 7, '0'), false, 1, 0, 0 FROM generate_series(1, 200000) i",
            [pool.pk, pool.current_terms_id])
    analyze()
    pool = legacy_history(pool)
    # When a new pattern is checked, the probe reads the new pattern's range of the code index
    with CaptureQueriesContext(connection) as queries:
        pool_update(pool=pool, actor=None, pattern="GEN-X$$$$$$")
    probe = regex_reads(queries)[0]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + probe)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "coupon_code_unique" in plan and "coupon_pool_id" not in plan and "pkey" not in plan, plan
    assert "ORDER BY" not in probe
    assert CouponPool.objects.get(pk=pool.pk).pattern == "GEN-X$$$$$$"
