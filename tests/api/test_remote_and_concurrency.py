"""Remote pools through the API against a real local HTTP server, and parallel claims
over real HTTP against a running server."""

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from rest_framework.test import APIClient

from api.services import api_key_create
from coupons.models import Coupon, CouponStatus, CustomerEvent
from pools.models import PoolSource
from tests.factories import CouponFactory, PoolFactory


class RemoteShop(BaseHTTPRequestHandler):
    """The remote system: /good answers a new code per request, the others misbehave."""

    counter = 0
    received: list = []
    failing = True  # for /flaky

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RemoteShop.received.append(body)
        if self.path == "/good":
            RemoteShop.counter += 1
            self._answer(200, json.dumps({"code": f"  REMOTE-{RemoteShop.counter:04d} "}))
        elif self.path == "/slow-good":
            time.sleep(0.5)
            RemoteShop.counter += 1
            self._answer(200, json.dumps({"code": f"SLOW-{RemoteShop.counter:04d}"}))
        elif self.path == "/slow":
            time.sleep(1.5)
            self._answer(200, json.dumps({"code": "TOO-LATE"}))
        elif self.path == "/very-slow":
            time.sleep(2.5)
            RemoteShop.counter += 1
            self._answer(200, json.dumps({"code": f"VERY-SLOW-{RemoteShop.counter:04d}"}))
        elif self.path == "/flaky":
            if RemoteShop.failing:
                self._answer(503, "down")
            else:
                RemoteShop.counter += 1
                self._answer(200, json.dumps({"code": f"FLAKY-{RemoteShop.counter:04d}"}))
        elif self.path == "/error":
            self._answer(500, "boom")
        elif self.path == "/garbage":
            self._answer(200, "<html>not json</html>")
        elif self.path == "/duplicate":
            self._answer(200, json.dumps({"code": "ALREADY-THERE"}))
        else:
            self._answer(404, "{}")

    def _answer(self, status, text):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def remote():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RemoteShop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RemoteShop.received = []
    RemoteShop.failing = True
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_create(name='Shop')[1]}")
    return client


@pytest.fixture
def callbacks(settings):
    settings.COUPON_CALLBACK_ALLOW_LOOPBACK = True
    settings.COUPON_CALLBACK_READ_TIMEOUT = 0.5
    settings.COUPON_CALLBACK_CONNECT_TIMEOUT = 0.5


def remote_pool(url, **extra):
    fields = {"coupon_type": "percentage", "value": "20.00", **extra}
    return PoolFactory(source=PoolSource.REMOTE, callback_url=url, callback_api_key="remote-secret", **fields)


@pytest.mark.django_db
class TestRemotePools:
    def test_the_remote_code_becomes_a_coupon_claimed_by_the_customer(self, api, remote, callbacks):
        pool = remote_pool(f"{remote}/good")
        response = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "anna"}, format="json")
        assert response.status_code == 201, response.json()
        body = response.json()
        assert (body["code"], body["status"], body["customer"]) == ("REMOTE-0001", "claimed", "anna")
        assert RemoteShop.received == [{"api_key": "remote-secret", "customer": "anna", "type": "percentage",
                                        "value": "20.00", "coupon_percentage": "20.00"}]
        coupon = Coupon.objects.get(code="REMOTE-0001")
        assert coupon.pool == pool and CustomerEvent.objects.filter(coupon=coupon, action="coupon_claim").exists()

    @pytest.mark.parametrize(
        "path,code,words",
        [
            ("/slow", "remote_timeout", "did not answer"),
            ("/error", "remote_status", "500"),
            ("/garbage", "remote_not_json", "JSON"),
            ("/duplicate", "remote_duplicate", "exists already"),
        ],
        ids=["slow answer", "500", "garbage", "duplicate"],
    )
    def test_a_failing_remote_system_is_a_clear_error_and_creates_nothing(self, api, remote, callbacks, path, code, words):
        CouponFactory(code="ALREADY-THERE")
        pool = remote_pool(f"{remote}{path}")
        response = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "ben"}, format="json")
        error = response.json()["error"]
        assert response.status_code == 502 and error["type"] == "remote_error" and error["code"] == code
        assert words.lower() in error["message"].lower()
        assert Coupon.objects.filter(pool=pool).count() == 0
        assert not CustomerEvent.objects.filter(pool=pool).exists()

    def test_nothing_is_asked_or_created_for_a_claim_that_would_be_refused(self, api, remote, callbacks):
        from coupons.models import Customer

        pool = remote_pool(f"{remote}/good", coupon_type="gift_card", value="50.00", currency="EUR")
        Customer.objects.create(external_id="dollar", currency="USD")
        refused = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "dollar"}, format="json")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "currency_mismatch"
        assert RemoteShop.received == []  # the remote system issued no code to lose
        failing = remote_pool(f"{remote}/error")
        assert api.post(f"/api/v1/coupon-pools/{failing.pk}/claim", {"customer": "brand-new"}, format="json").status_code == 502
        assert not Customer.objects.filter(external_id="brand-new").exists()

    def test_callback_urls_to_internal_addresses_are_refused_at_each_call(self, api, remote, settings):
        settings.COUPON_CALLBACK_ALLOW_LOOPBACK = True
        pool = remote_pool(f"{remote}/good")  # accepted when saved
        settings.COUPON_CALLBACK_ALLOW_LOOPBACK = False  # and no more
        response = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "eve"}, format="json")
        assert response.status_code == 502 and response.json()["error"]["code"] == "remote_refused_address"
        assert RemoteShop.received == [] and Coupon.objects.count() == 0


def claim_status(api, pool, customer):
    response = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": customer}, format="json")
    return response.status_code, response.json()["error"]["code"] if response.status_code >= 400 else None, response


@pytest.mark.django_db
class TestCircuitBreaker:
    """Repeated failures pause a remote pool's claims (counted in the real Redis)."""

    @pytest.fixture(autouse=True)
    def breaker(self, settings, callbacks):
        settings.COUPON_CALLBACK_BREAKER_FAILURES = 3
        settings.COUPON_CALLBACK_BREAKER_SECONDS = 1

    def test_failures_in_a_row_pause_the_pool_without_calling_it(self, api, remote):
        pool = remote_pool(f"{remote}/flaky")
        assert [claim_status(api, pool, f"c{n}")[:2] for n in range(3)] == [(502, "remote_status")] * 3
        status, code, response = claim_status(api, pool, "c3")
        assert (status, code) == (503, "remote_paused") and response["Retry-After"] == "1"
        assert "paused" in response.json()["error"]["message"]
        assert len(RemoteShop.received) == 3  # the paused claim did not reach the remote system
        assert Coupon.objects.count() == 0

    def test_after_the_pause_one_failure_pauses_again_and_one_success_resumes(self, api, remote):
        pool = remote_pool(f"{remote}/flaky")
        for n in range(3):
            claim_status(api, pool, f"c{n}")
        time.sleep(1.1)
        assert claim_status(api, pool, "retry")[:2] == (502, "remote_status")  # let through, failed
        assert claim_status(api, pool, "again")[:2] == (503, "remote_paused")  # paused at once
        time.sleep(1.1)
        RemoteShop.failing = False
        assert claim_status(api, pool, "ok")[0] == 201
        RemoteShop.failing = True
        # Forgotten: it takes three failures in a row again.
        assert [claim_status(api, pool, f"d{n}")[:2] for n in range(3)] == [(502, "remote_status")] * 3
        assert claim_status(api, pool, "d3")[:2] == (503, "remote_paused")

    def test_one_pool_paused_leaves_the_others_alone(self, api, remote):
        broken, healthy = remote_pool(f"{remote}/flaky"), remote_pool(f"{remote}/good")
        for n in range(3):
            claim_status(api, broken, f"c{n}")
        assert claim_status(api, broken, "x")[:2] == (503, "remote_paused")
        assert claim_status(api, healthy, "x")[0] == 201

    def test_a_refused_address_does_not_count_as_a_failure(self, api, remote, settings):
        pool = remote_pool(f"{remote}/good")
        settings.COUPON_CALLBACK_ALLOW_LOOPBACK = False
        assert [claim_status(api, pool, f"c{n}")[:2] for n in range(4)] == [(502, "remote_refused_address")] * 4

    def test_an_unusable_answer_counts(self, api, remote):
        pool = remote_pool(f"{remote}/garbage")
        assert [claim_status(api, pool, f"c{n}")[1] for n in range(4)] == ["remote_not_json"] * 3 + ["remote_paused"]


@pytest.mark.django_db(transaction=True)
class TestConcurrencyCap:
    @pytest.fixture(autouse=True)
    def cap(self, settings, callbacks):
        settings.COUPON_CALLBACK_MAX_CONCURRENT = 2
        settings.COUPON_CALLBACK_READ_TIMEOUT = 5

    def parallel_claims(self, pool, count):
        from django.db import connections

        key = api_key_create(name="Parallel")[1]
        barrier = threading.Barrier(count)

        def claim(n):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
            barrier.wait()
            try:
                started = time.monotonic()
                status, code, response = claim_status(client, pool, f"p{n}")
                return status, code, time.monotonic() - started, response
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=count) as executor:
            return list(executor.map(claim, range(count)))

    def test_one_claim_over_the_cap_is_refused_at_once(self, remote):
        pool = remote_pool(f"{remote}/slow-good")
        results = self.parallel_claims(pool, 6)
        assert sorted(status for status, *_ in results) == [201, 201, 503, 503, 503, 503]
        busy = [(code, seconds, response) for status, code, seconds, response in results if status == 503]
        assert {code for code, *_ in busy} == {"remote_busy"}
        assert all(seconds < 0.4 for _, seconds, _ in busy)  # the remote system takes 0.5 s
        assert all(response["Retry-After"] == "1" for *_, response in busy)
        assert len(RemoteShop.received) == 2 and Coupon.objects.filter(pool=pool).count() == 2
        # The slots are free again.
        assert sorted(status for status, *_ in self.parallel_claims(pool, 2)) == [201, 201]

    def test_busy_does_not_count_as_a_failure(self, remote, settings):
        settings.COUPON_CALLBACK_BREAKER_FAILURES = 2
        pool = remote_pool(f"{remote}/slow-good")
        self.parallel_claims(pool, 6)  # four busy refusals
        assert sorted(status for status, *_ in self.parallel_claims(pool, 2)) == [201, 201]

    def test_a_slot_left_by_a_killed_process_frees_itself(self, remote, monkeypatch):
        from django.core.cache import cache

        from couponsite import outbound

        pool = remote_pool(f"{remote}/good")
        monkeypatch.setattr(outbound.breaker, "_longest_call", lambda: 1)
        for index in range(2):  # what two processes killed mid-call leave behind
            cache.add(f"outbound:slot:pool-{pool.pk}:{index}", "dead", timeout=1)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_create(name='After')[1]}")
        assert claim_status(api, pool, "early")[:2] == (503, "remote_busy")
        time.sleep(1.1)
        assert claim_status(api, pool, "later")[0] == 201


@pytest.mark.django_db(transaction=True)
def test_slow_remote_claims_do_not_stall_the_server(remote, settings):
    """gunicorn with 4 threads: ten claims on a remote pool that takes 2.5 s each would
    hold every thread; with the cap, two run, eight are refused at once, and an unrelated
    request is answered at once."""
    settings.COUPON_CALLBACK_ALLOW_LOOPBACK = True
    pool = remote_pool(f"{remote}/very-slow")
    other = PoolFactory(name="Unrelated")
    CouponFactory(pool=other, code="OTHER-1")
    key = api_key_create(name="Busy shop")[1]
    headers = {"Authorization": f"Api-Key {key}"}
    with running_gunicorn(workers=1, threads=4, COUPON_CALLBACK_ALLOW_LOOPBACK="true",
                          COUPON_CALLBACK_MAX_CONCURRENT="2") as url:
        def claim(n):
            return requests.post(f"{url}/api/v1/coupon-pools/{pool.pk}/claim", json={"customer": f"s{n}"},
                                 headers=headers, timeout=30)

        with ThreadPoolExecutor(max_workers=10) as executor:
            claims = [executor.submit(claim, n) for n in range(10)]
            time.sleep(0.5)  # the ten are in
            started = time.monotonic()
            unrelated = requests.post(f"{url}/api/v1/coupon-pools/{other.pk}/claim", json={"customer": "calm"},
                                      headers=headers, timeout=30)
            waited = time.monotonic() - started
            results = [future.result() for future in claims]
    assert unrelated.status_code == 201 and waited < 1.0, waited
    statuses = sorted(response.status_code for response in results)
    assert statuses == [201] * 2 + [503] * 8
    assert {r.json()["error"]["code"] for r in results if r.status_code == 503} == {"remote_busy"}
    assert len(RemoteShop.received) == 2


@contextlib.contextmanager
def running_gunicorn(workers=4, threads=8, **env_extra):
    """gunicorn (the production server) on the test database, on a free port."""
    import os
    import socket
    import subprocess
    import sys

    from django.db import connection

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        **env_extra,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "couponsite.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
         "--log-level", "warning"],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/api/v1/coupon-pools", timeout=5)  # 401 when up
                break
            except requests.RequestException:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def gunicorn_server(transactional_db):
    with running_gunicorn() as url:
        yield url


def test_fifty_parallel_claims_over_http_never_give_one_coupon_twice(gunicorn_server):
    pool = PoolFactory(name="Rush")
    for n in range(40):
        CouponFactory(pool=pool, code=f"RUSH-{n:02d}")
    key = api_key_create(name="Rush shop")[1]
    url = f"{gunicorn_server}/api/v1/coupon-pools/{pool.pk}/claim"
    barrier = threading.Barrier(50)

    def claim(n):
        barrier.wait()
        response = requests.post(url, json={"customer": f"rush-{n}"}, headers={"Authorization": f"Api-Key {key}"}, timeout=60)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=50) as executor:
        results = list(executor.map(claim, range(50)))
    issued = [body["code"] for status, body in results if status == 201]
    refused = [body["error"]["code"] for status, body in results if status != 201]
    assert len(issued) == 40 and len(set(issued)) == 40
    assert refused == ["pool_empty"] * 10
    claimed = Coupon.objects.filter(pool=pool, status=CouponStatus.CLAIMED)
    assert claimed.count() == 40 and claimed.values("customer").distinct().count() == 40
    assert CustomerEvent.objects.filter(pool=pool, action="coupon_claim").count() == 40


@pytest.mark.django_db(transaction=True)
def test_two_claims_of_one_customer_on_an_aggregated_remote_pool_ask_for_one_code(remote, settings):
    settings.COUPON_CALLBACK_ALLOW_LOOPBACK = True
    settings.COUPON_CALLBACK_READ_TIMEOUT = 5
    from django.db import connections

    pool = remote_pool(f"{remote}/slow-good", aggregated=True)
    key = api_key_create(name="Twice")[1]
    barrier = threading.Barrier(2)

    def claim():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        barrier.wait()
        try:
            response = client.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "anna"}, format="json")
            return response.status_code, response.json()["code"]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as executor:
        results = list(executor.map(lambda _: claim(), range(2)))
    assert sorted(status for status, _ in results) == [200, 201]
    assert len({code for _, code in results}) == 1 and len(RemoteShop.received) == 1
    assert Coupon.objects.filter(pool=pool).count() == 1


def claim_in_thread(pool, external_id: str, outcome: dict) -> threading.Thread:
    """A thread (to start) claiming for the customer with its own connection; the coupon
    or the error ends up in ``outcome``."""
    from django.db import connections

    from coupons.services import Actor, coupon_claim_for

    def claim():
        try:
            outcome["coupon"] = coupon_claim_for(pool=pool, external_id=external_id, actor=Actor.system())
        except Exception as exc:  # noqa: BLE001 - reported by the tests' assertions
            outcome["error"] = exc
        finally:
            connections.close_all()

    return threading.Thread(target=claim)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("other_request", ["commits", "rolls back"])
def test_a_claim_for_a_customer_another_request_is_creating_waits_and_claims_once(other_request, monkeypatch):
    """The one-statement claim waits on a customer another transaction is inserting. If
    that commits, the statement cannot see the row (its snapshot is older): it writes
    nothing and the general path claims. If it rolls back, the statement claims."""
    from django.db import transaction

    from coupons.models import Customer
    from coupons.services import claims as services

    pool = PoolFactory(name="Race")
    CouponFactory(pool=pool, code="RACE-1"), CouponFactory(pool=pool, code="RACE-2")
    outcome, one_statement = {}, services._claim_in_one_statement

    def spy(*args):
        outcome["one statement"] = one_statement(*args)
        return outcome["one statement"]

    monkeypatch.setattr(services, "_claim_in_one_statement", spy)

    claimer = claim_in_thread(pool, "racer", outcome)
    with transaction.atomic():
        Customer.objects.create(external_id="racer", email="first@example.com")
        claimer.start()
        time.sleep(0.5)
        waited = claimer.is_alive()  # on the customer row of this open transaction
        if other_request == "rolls back":
            transaction.set_rollback(True)
    claimer.join(timeout=30)
    assert waited and "error" not in outcome, outcome
    if other_request == "commits":
        assert outcome["one statement"] is None  # left to the general path
    else:
        assert outcome["one statement"].code == "RACE-1"
    customer = Customer.objects.get(external_id="racer")
    assert customer.email == ("first@example.com" if other_request == "commits" else "")
    coupon = Coupon.objects.get(code="RACE-1")
    assert (coupon.status, coupon.customer_id, outcome["coupon"].customer.pk) == (CouponStatus.CLAIMED, customer.pk, customer.pk)
    assert Coupon.objects.get(code="RACE-2").status == CouponStatus.UNASSIGNED
    assert CustomerEvent.objects.filter(pool=pool, action="coupon_claim").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_claim_that_meets_a_bulk_assign_of_its_coupon_to_its_new_customer_gives_way():
    """A bulk assign creates customer X, then locks coupon C to give it to X. A claim for
    X meanwhile locked C (the next unassigned one) and waits on X's row: a deadlock.
    PostgreSQL fails the claim's statement; the general path then claims the next coupon."""
    from django.db import transaction

    from coupons.models import Customer
    from coupons.services import Actor, coupon_assign, customer_get_or_create

    pool = PoolFactory(name="Crossing")
    first, _ = CouponFactory(pool=pool, code="CROSS-1"), CouponFactory(pool=pool, code="CROSS-2")
    outcome = {}
    claimer = claim_in_thread(pool, "crossing", outcome)
    with transaction.atomic():  # as a chunk of bulk_run
        customer = customer_get_or_create("crossing")
        claimer.start()
        time.sleep(0.3)  # the claim holds CROSS-1 and waits on this customer
        coupon_assign(coupon=first, customer=customer, actor=Actor.system())
    claimer.join(timeout=30)
    assert "error" not in outcome, outcome
    assert outcome["coupon"].code == "CROSS-2"
    customer = Customer.objects.get(external_id="crossing")
    assert set(Coupon.objects.filter(pool=pool).values_list("code", "status", "customer")) == {
        ("CROSS-1", CouponStatus.CLAIMED, customer.pk), ("CROSS-2", CouponStatus.CLAIMED, customer.pk)}
    assert CustomerEvent.objects.filter(pool=pool, action="coupon_claim").count() == 2
