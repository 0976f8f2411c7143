"""Idempotency-Key on every POST and PUT (api.idempotency), on the real PostgreSQL."""

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from api.idempotency import purge_expired
from api.models import BulkOperation, IdempotencyRecord
from api.services import api_key_create
from api.tasks import purge_idempotency_records
from coupons import services as coupon_services
from coupons.models import Coupon, CouponStatus, CustomerEvent
from tests.api.conftest import client_for
from tests.factories import CouponFactory, PoolFactory
from tests.test_couponsite import ROOT, migrated_embedded_default

pytestmark = pytest.mark.django_db



def claim(client, pool, customer="anna", key="k-1", **extra):
    return client.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": customer}, format="json",
                       HTTP_IDEMPOTENCY_KEY=key, **extra)


def claim_events(pool):
    return CustomerEvent.objects.filter(pool_id=pool.pk, action="coupon_claim").count()


@pytest.fixture
def pool():
    pool = PoolFactory()
    for n in range(5):
        CouponFactory(pool=pool, code=f"ID-{n}")
    return pool


def test_a_retried_claim_returns_the_same_coupon_and_claims_once(api, pool):
    first = claim(api, pool)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    again = claim(api, pool)
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.content == first.content and again["Content-Type"] == first["Content-Type"]
    assert again.json()["code"] == "ID-0"
    assert Coupon.objects.filter(pool=pool, status=CouponStatus.CLAIMED).count() == 1
    assert claim_events(pool) == 1
    # Another key is another request; no key is no idempotency.
    assert claim(api, pool, key="k-2").json()["code"] == "ID-1"
    assert api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "anna"}, format="json").json()["code"] == "ID-2"
    assert claim_events(pool) == 3


def test_the_same_key_with_another_body_or_path_is_a_mismatch(api, pool):
    assert claim(api, pool, customer="anna").status_code == 201
    other_body = claim(api, pool, customer="bert")
    assert other_body.status_code == 422 and other_body.json()["error"]["code"] == "idempotency_mismatch"
    other_path = api.put("/api/v1/customers/anna", {"email": "a@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other_path.status_code == 422 and other_path.json()["error"]["code"] == "idempotency_mismatch"
    assert claim_events(pool) == 1 and Coupon.objects.filter(customer__external_id="bert").count() == 0


def test_another_api_key_with_the_same_idempotency_key_is_its_own(api, pool):
    other = client_for(api_key_create(name="Other shop")[1])
    assert claim(api, pool, customer="anna").json()["code"] == "ID-0"
    theirs = claim(other, pool, customer="bert")
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs and theirs.json()["code"] == "ID-1"
    assert IdempotencyRecord.objects.filter(key="k-1").count() == 2


def test_a_refusal_is_replayed(api):
    empty = PoolFactory(name="Empty")
    refused = claim(api, empty)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "pool_empty"
    CouponFactory(pool=empty, code="LATE-1")
    again = claim(api, empty)
    assert again.status_code == 409 and again["Idempotent-Replayed"] == "true" and again.content == refused.content
    assert claim(api, empty, key="fresh").status_code == 201


def test_a_server_error_is_not_stored_and_the_retry_runs(api, pool, monkeypatch):
    real = coupon_services.coupon_claim_for

    def boom(**kwargs):
        real(**kwargs)  # the work is done, then the request fails: it must not commit
        raise RuntimeError("a bug")

    monkeypatch.setattr(coupon_services, "coupon_claim_for", boom)
    failed = claim(api, pool)
    assert failed.status_code == 500
    assert not IdempotencyRecord.objects.exists() and claim_events(pool) == 0
    monkeypatch.setattr(coupon_services, "coupon_claim_for", real)
    retried = claim(api, pool)
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried and retried.json()["code"] == "ID-0"
    assert claim_events(pool) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_key_that_is_not_valid_is_a_400(api, pool, key):
    response = claim(api, pool, key=key)
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "idempotency_key_invalid" and "1 to 255 printable ASCII" in body["message"]
    assert claim_events(pool) == 0 and not IdempotencyRecord.objects.exists()


def test_a_key_of_255_printable_characters_is_accepted(api, pool):
    assert claim(api, pool, key="~ " + "a" * 253).status_code == 201


def test_put_and_validate_are_idempotent_too(api, pool):
    created = api.put("/api/v1/customers/zoe", {"email": "z@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="put-1")
    assert created.status_code == 201
    again = api.put("/api/v1/customers/zoe", {"email": "z@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY="put-1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"  # replayed: not "updated" (200)


def test_a_retried_bulk_operation_is_queued_once(api, pool, django_capture_on_commit_callbacks):
    url = f"/api/v1/bulk-operation/coupons/{pool.pk}/add"
    with django_capture_on_commit_callbacks() as callbacks:
        first = api.post(url, {"coupons": ["BK-1", "BK-2"]}, format="json", HTTP_IDEMPOTENCY_KEY="bulk-1")
        again = api.post(url, {"coupons": ["BK-1", "BK-2"]}, format="json", HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert first.status_code == again.status_code == 202 and again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert BulkOperation.objects.count() == 1 and len(callbacks) == 1  # dispatched once, on commit


def test_records_expire(api, pool):
    assert claim(api, pool, key="old").status_code == 201
    assert claim(api, pool, key="older").status_code == 201
    assert claim(api, pool, key="new").status_code == 201
    IdempotencyRecord.objects.filter(key__startswith="old").update(created_at=timezone.now() - timedelta(hours=25))
    # Past its 24 hours, a key not purged yet is a new request.
    rerun = claim(api, pool, key="old")
    assert rerun.status_code == 201 and "Idempotent-Replayed" not in rerun and rerun.json()["code"] == "ID-3"
    assert purge_expired(chunk=1) == 1
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new", "old"]
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    assert purge_idempotency_records() == 2 and not IdempotencyRecord.objects.exists()


def test_the_schema_documents_the_header_on_every_post_and_put(api):
    schema = APIClient().get("/api/schema/?format=json").json()
    operations = [(path, method, operation) for path, item in schema["paths"].items()
                  for method, operation in item.items()]
    writes = [(path, method, operation) for path, method, operation in operations if method in ("post", "put")]
    assert len(writes) >= 6
    for path, method, operation in writes:
        headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
        assert [(p["name"], p.get("required", False)) for p in headers] == [("Idempotency-Key", False)], (path, method)
        assert {"409", "422"} <= set(operation["responses"]), (path, method)
        assert "idempotency_mismatch" in operation["responses"]["422"]["description"]
        assert "idempotency_in_progress" in operation["responses"]["409"]["description"]
    for path, method, operation in operations:
        if method == "get":
            assert not any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", [])), path


# --- in parallel, on real threads -----------------------------------------------------------


def parallel(pool, count, key="same"):
    api_key = api_key_create(name="Parallel")[1]
    barrier = threading.Barrier(count)

    def one(n):
        client = client_for(api_key)
        barrier.wait()
        try:
            response = claim(client, pool, customer="anna" if key else f"c{n}", key=key or f"key-{n}")
            return response.status_code, response.json(), response.get("Idempotent-Replayed")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as executor:
        return list(executor.map(one, range(count)))


@pytest.fixture
def slow_claims(monkeypatch):
    """Each claim takes 0.3 s more: the others arrive while it runs."""
    real = coupon_services.coupon_claim_for

    def slow(**kwargs):
        coupon = real(**kwargs)
        time.sleep(0.3)
        return coupon

    monkeypatch.setattr(coupon_services, "coupon_claim_for", slow)


@pytest.mark.django_db(transaction=True)
def test_ten_parallel_requests_with_one_key_claim_once(pool, slow_claims):
    results = parallel(pool, 10)
    assert [status for status, *_ in results] == [201] * 10
    assert {body["code"] for _, body, _ in results} == {"ID-0"}
    assert sorted(replayed or "" for *_, replayed in results) == [""] + ["true"] * 9
    assert Coupon.objects.filter(pool=pool, status=CouponStatus.CLAIMED).count() == 1
    assert claim_events(pool) == 1


@pytest.mark.django_db(transaction=True)
def test_requests_with_other_keys_do_not_wait_for_each_other(pool, slow_claims):
    """The key's first use writes its last-used time before the request's transaction:
    five requests of one API key with five idempotency keys run side by side."""
    started = time.monotonic()
    results = parallel(pool, 5, key=None)
    elapsed = time.monotonic() - started
    assert [status for status, *_ in results] == [201] * 5 and elapsed < 1.2, elapsed
    assert len({body["code"] for _, body, _ in results}) == 5 and claim_events(pool) == 5


@pytest.mark.django_db(transaction=True)
def test_with_a_short_wait_the_others_are_told_it_is_in_progress(pool, slow_claims, settings):
    settings.API_IDEMPOTENCY_WAIT_SECONDS = 0.05
    results = parallel(pool, 10)
    done = [body for status, body, _ in results if status == 201]
    busy = [body for status, body, _ in results if status == 409]
    assert len(done) + len(busy) == 10 and len(busy) >= 1
    assert {body["code"] for body in done} == {"ID-0"}
    assert {body["error"]["code"] for body in busy} == {"idempotency_in_progress"}
    assert Coupon.objects.filter(pool=pool, status=CouponStatus.CLAIMED).count() == 1
    assert claim_events(pool) == 1
    assert IdempotencyRecord.objects.get().status_code == 201  # a retry now replays it


def test_on_the_embedded_sqlite_a_retry_replays(tmp_path):
    env, manage = migrated_embedded_default(tmp_path)
    script = (
        "from django.test import Client; from api.services import api_key_create;"
        "from coupons.models import CustomerEvent; from tests.factories import CouponFactory, PoolFactory;"
        "p = PoolFactory(); [CouponFactory(pool=p, code=f'SQ-{n}') for n in range(3)];"
        "k = api_key_create(name='s')[1]; c = Client(HTTP_AUTHORIZATION=f'Api-Key {k}', HTTP_HOST='localhost');"
        "post = lambda body: c.post(f'/api/v1/coupon-pools/{p.pk}/claim', body, content_type='application/json',"
        " HTTP_IDEMPOTENCY_KEY='sq');"
        "a = post({'customer': 'anna'}); b = post({'customer': 'anna'}); m = post({'customer': 'bert'});"
        "print(a.status_code, a.json()['code'], b.status_code, b.json()['code'], b.get('Idempotent-Replayed'),"
        " m.status_code, CustomerEvent.objects.count())"
    )
    run = subprocess.run([*manage, "shell", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "201 SQ-0 201 SQ-0 true 422 1"
