"""Rows written before the job engine keep their meaning once migrated onto it."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from coupons.models import ActorKind, CustomerEvent, EventAction
from couponsite.indexes import ExtensionMissing, index_is_valid
from tests.factories import CouponFactory, CustomerFactory

ROOT = Path(__file__).resolve().parents[1]

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


# --- indexes built CONCURRENTLY on the hot tables (coupons 0007, 0008) ----------------------------

INDEXES = ["customer_email_trgm", "customer_external_id_trgm", "event_coupon"]
BEFORE_INDEXES = [("coupons", "0006_customer_created_for")]


def _migrate(target):
    """Migrate to ``target``; the SQL the database was sent."""
    sent = []

    def record(execute, sql, params, many, context):
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        executor = MigrationExecutor(connection)
        executor.migrate(target or executor.loader.graph.leaf_nodes())
    return sent


@pytest.mark.django_db(transaction=True)
def test_hot_table_indexes_are_built_concurrently_backwards_and_forwards():
    assert connection.vendor == "postgresql"
    try:
        backwards = _migrate(BEFORE_INDEXES)
        assert [index_is_valid(connection, name) for name in INDEXES] == [None, None, None]
        assert sum("DROP INDEX CONCURRENTLY" in sql for sql in backwards) == 3
    finally:
        forwards = _migrate(None)
    assert [index_is_valid(connection, name) for name in INDEXES] == [True, True, True]
    creates = [sql for sql in forwards if "CREATE INDEX" in sql]
    assert len(creates) == 3 and all("CREATE INDEX CONCURRENTLY IF NOT EXISTS" in sql for sql in creates), creates
    assert MigrationExecutor(connection).migration_plan(MigrationExecutor(connection).loader.graph.leaf_nodes()) == []


@pytest.mark.django_db(transaction=True)
def test_a_failed_concurrent_build_is_rebuilt_by_the_next_migrate():
    # Given a concurrent build of event_coupon that failed, leaving an INVALID index behind
    _migrate([("coupons", "0007_customer_search_trigram")])
    try:
        coupon = CouponFactory()
        customer = CustomerFactory()
        for _ in range(2):
            CustomerEvent.objects.create(customer=customer, coupon=coupon, action=EventAction.CLAIM,
                                         actor_kind=ActorKind.SYSTEM, created_at=timezone.now())
        with pytest.raises(IntegrityError), connection.cursor() as cursor:
            cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY event_coupon ON {CustomerEvent._meta.db_table} (coupon_id)")
        assert index_is_valid(connection, "event_coupon") is False
    finally:
        # When migrate runs again
        _migrate(None)
    # Then the index is the migration's, and valid
    assert index_is_valid(connection, "event_coupon") is True
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'event_coupon'")
        definition = cursor.fetchone()[0]
    assert "UNIQUE" not in definition and "(coupon_id, id DESC)" in definition, definition


@pytest.mark.django_db(transaction=True)
def test_a_role_that_may_not_create_pg_trgm_is_told_what_to_run():
    migration = importlib.import_module("coupons.migrations.0007_customer_search_trigram")
    _migrate(BEFORE_INDEXES)
    apps = MigrationExecutor(connection).loader.project_state(BEFORE_INDEXES).apps
    try:
        with connection.cursor() as cursor:
            cursor.execute("DROP EXTENSION IF EXISTS pg_trgm")
            cursor.execute("DROP ROLE IF EXISTS coupons_no_create")
            cursor.execute("CREATE ROLE coupons_no_create")
            cursor.execute("SET ROLE coupons_no_create")
        try:
            with connection.schema_editor(atomic=False) as editor, pytest.raises(ExtensionMissing) as error:
                migration.create_indexes(apps, editor)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET ROLE")
                cursor.execute("DROP ROLE coupons_no_create")
        message = str(error.value)
        assert "pg_trgm is not installed" in message and "permission denied" in message
        assert "CREATE EXTENSION IF NOT EXISTS pg_trgm" in message and "run migrate again" in message
        assert index_is_valid(connection, "customer_email_trgm") is None
    finally:
        _migrate(None)
    assert index_is_valid(connection, "customer_email_trgm") is True


def test_the_index_migrations_run_outside_a_transaction():
    for name in ("0007_customer_search_trigram", "0008_event_coupon"):
        assert importlib.import_module(f"coupons.migrations.{name}").Migration.atomic is False


def test_sqlite_migrates_the_event_index_forwards_and_backwards(tmp_path):
    """The embedded default (`make run`): a plain index on SQLite, and back."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update({"DEBUG": "true", "COUPONS_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "couponsite.settings"})
    manage = [sys.executable, "manage.py"]
    indexes = ("from django.db import connection; c = connection.cursor(); "
               "print(sorted(r[0] for r in c.execute(\"SELECT name FROM sqlite_master WHERE type='index' AND name LIKE 'event_%'\")))")

    def run(*args):
        return subprocess.run([*manage, *args], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True, text=True).stdout.strip().splitlines()[-1:]

    run("migrate", "-v0")
    assert run("shell", "-c", indexes) == ["['event_coupon', 'event_customer', 'event_pool_action_day']"]
    run("migrate", "coupons", "0007", "-v0")
    assert run("shell", "-c", indexes) == ["['event_customer', 'event_pool_action_day']"]
    run("migrate", "-v0")
    assert run("shell", "-c", indexes) == ["['event_coupon', 'event_customer', 'event_pool_action_day']"]
