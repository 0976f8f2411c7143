"""Rows written before the job engine keep their meaning once migrated onto it."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("coupons", "0003_coupon_pool_terms_without_db_constraint"), ("imports", "0002_import_queued_at"),
          ("api", "0002_bulk_import_job"), ("pools", "0002_couponterms_couponpool_current_terms_and_more")]


@pytest.mark.django_db(transaction=True)
def test_jobs_from_before_the_engine_are_migrated():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    old = MigrationExecutor(connection).loader.project_state(BEFORE).apps
    try:
        pool = _old_pool(old)
        started = timezone.now()
        Batch, Job = old.get_model("coupons", "GenerationBatch"), old.get_model("coupons", "CouponJob")
        Import, Operation = old.get_model("imports", "ImportJob"), old.get_model("api", "BulkOperation")
        batch = Batch.objects.create(pool=pool, requested=500, generated=200, status="running",
                                     started_at=started, heartbeat_at=started, error="")
        failed = Batch.objects.create(pool=pool, requested=50, generated=10, status="failed", error="Pattern used up.")
        job = Job.objects.create(kind="bulk_action", pool=pool, params={"action": "invalidate"}, status="running",
                                 total=300, processed=100, applied=90, started_at=started)
        draft = Import.objects.create(original_name="a.csv", sha256="a", status="uploaded")
        done = Import.objects.create(pool=pool, original_name="b.csv", sha256="b", status="done", rows_read=10,
                                     created=7, duplicates_in_file=1, existing=1, invalid=1)
        key = old.get_model("api", "ApiKey").objects.create(name="Shop", prefix="p1", key_hash="h")
        operation = Operation.objects.create(pool=pool, api_key=key, action="assign", items=[], status="running", total=5)
    finally:
        MigrationExecutor(connection).migrate(latest)

    from api.models import BulkOperation
    from coupons.models import CouponJob, GenerationBatch
    from imports.models import ImportJob

    batch, failed = GenerationBatch.objects.get(pk=batch.pk), GenerationBatch.objects.get(pk=failed.pk)
    assert (batch.total, batch.processed, batch.status, batch.heartbeat_at) == (500, 200, "running", started)
    assert (failed.total, failed.processed, failed.message, failed.can_resume) == (50, 10, "Pattern used up.", True)
    job = CouponJob.objects.get(pk=job.pk)
    assert (job.total, job.processed, job.applied, job.kind_name) == (300, 100, 90, "bulk_action")
    assert job.heartbeat_at == started  # the watchdog can now judge a job that had no heartbeat
    assert ImportJob.objects.get(pk=draft.pk).status == "draft"
    done = ImportJob.objects.get(pk=done.pk)
    assert (done.total, done.processed, done.percent) == (10, 10, 100)
    operation = BulkOperation.objects.get(pk=operation.pk)
    assert operation.status == "running" and operation.heartbeat_at == operation.created_at


def _old_pool(apps):
    """A pool with its first terms version, written with the historical models."""
    Pool, Terms = apps.get_model("pools", "CouponPool"), apps.get_model("pools", "CouponTerms")
    pool = Pool.objects.create(name="Old pool", source="uploaded", coupon_type="amount")
    terms = Terms.objects.create(pool=pool, version=1, coupon_type="amount")
    Pool.objects.filter(pk=pool.pk).update(current_terms=terms)
    return pool
