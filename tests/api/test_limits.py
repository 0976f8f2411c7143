"""Rate limits on the real Redis: requests per key and per address, the tight budget of
failed code lookups (against guessing) with its lock-out, and the login's lock-out."""

import random

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from api.limits import Rate, _period
from api.models import LookupLockout
from api.services import api_key_create
from coupons.models import Coupon, CouponStatus
from tests.factories import BulkPoolFactory, CouponFactory, GroupFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


@pytest.fixture(autouse=True)
def steady_clock(monkeypatch):
    """The limits' windows are fixed windows of the wall clock: a test that crossed the
    end of a minute would start counting again. Their clock stands mid-window."""
    from api import limits

    monkeypatch.setattr(limits, "_now", lambda: 1_800_000_030.0)


def client_for(key: str, ip: str = "203.0.113.7") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def error(response) -> dict:
    return response.json()["error"]


class TestRequestLimits:
    def test_a_key_over_its_rate_gets_429_with_retry_after(self, settings):
        settings.API_RATE_PER_KEY = "5/m"
        api = client_for(api_key_create(name="Busy shop")[1])
        answers = [api.get("/api/v1/coupon-pools") for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert answers[0]["X-RateLimit-Limit"] == "5" and answers[0]["X-RateLimit-Remaining"] == "4"
        assert 0 < int(answers[0]["X-RateLimit-Reset"]) <= 60
        assert error(answers[-1])["code"] == "rate_limited" and "at most 5 per minute" in error(answers[-1])["message"]
        assert 1 <= int(answers[-1]["Retry-After"]) <= 60
        assert (answers[-1]["X-RateLimit-Limit"], answers[-1]["X-RateLimit-Remaining"]) == ("5", "0")
        assert answers[-1]["X-RateLimit-Reset"] == answers[-1]["Retry-After"]
        other = client_for(api_key_create(name="Quiet shop")[1])
        assert other.get("/api/v1/coupon-pools").status_code == 200  # each key has its own budget

    def test_an_address_guessing_keys_is_limited_too(self, settings):
        settings.API_RATE_PER_IP = "3/m"
        guesser = client_for("abcd1234.not-a-key", ip="198.51.100.9")
        codes = [guesser.get("/api/v1/coupon-pools").status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        elsewhere = client_for(api_key_create(name="Shop")[1], ip="198.51.100.10")
        assert elsewhere.get("/api/v1/coupon-pools").status_code == 200

    def test_behind_a_trusted_proxy_the_forwarded_address_counts(self, settings):
        settings.API_RATE_PER_IP, settings.TRUSTED_PROXIES = "2/m", 1
        key = api_key_create(name="Shop")[1]
        first = client_for(key, ip="10.0.0.1")
        assert [first.get("/api/v1/coupon-pools", HTTP_X_FORWARDED_FOR="spoofed, 192.0.2.1").status_code
                for _ in range(3)] == [200, 200, 429]
        assert first.get("/api/v1/coupon-pools", HTTP_X_FORWARDED_FOR="192.0.2.2").status_code == 200


class TestFailedLookups:
    @pytest.fixture(autouse=True)
    def budget(self, settings):
        settings.API_LOOKUP_FAILURES_PER_KEY = "5/10m"
        settings.API_LOOKUP_FAILURES_PER_CUSTOMER = "3/10m"
        settings.API_LOOKUP_LOCKOUT_SECONDS = 600

    def test_a_key_that_fails_too_often_is_locked_out_of_code_lookups(self, caplog):
        CouponFactory(pool=PoolFactory(), code="REAL-ONE", status=S.CLAIMED)
        key, secret = api_key_create(name="Guesser")
        api = client_for(secret)
        answers = [api.get(f"/api/v1/coupons/NOPE-{n}").status_code for n in range(6)]
        assert answers == [404] * 6  # the sixth failure is counted and locks
        locked = api.get("/api/v1/coupons/REAL-ONE")  # even a real code now
        assert locked.status_code == 429 and error(locked)["code"] == "lookup_locked"
        assert "Retry-After" in locked
        assert api.post("/api/v1/coupons/REAL-ONE/validate", {"total": "10.00"}, format="json").status_code == 429
        assert api.get("/api/v1/coupon-pools").status_code == 200  # other endpoints go on
        lockout = LookupLockout.objects.get()
        assert (lockout.api_key, lockout.scope, lockout.failures) == (key, "key", 5)
        assert "Code lookups locked out for key" in caplog.text

    def test_a_customer_is_locked_out_after_fewer_failures_across_keys(self):
        events = {"action": "coupon_redeem", "customer": "invented"}
        first, second = (client_for(api_key_create(name=name)[1]) for name in ("A", "B"))
        statuses = [api.post("/api/v1/events", {**events, "data": {"code": f"GUESS-{n}"}}, format="json").status_code
                    for n, api in enumerate([first, second, first, second])]
        assert statuses == [404, 404, 404, 404]
        blocked = first.post("/api/v1/events", {**events, "data": {"code": "GUESS-X"}}, format="json")
        assert blocked.status_code == 429 and "This customer" in error(blocked)["message"]
        assert LookupLockout.objects.filter(scope="customer", customer="invented").count() == 1

    def test_another_groups_key_cannot_lock_this_groups_customer_out(self):
        mine, theirs = GroupFactory(), GroupFactory()
        CouponFactory(pool=PoolFactory(user_group=mine), code="MINE-1", status=S.UNASSIGNED)
        attacker = client_for(api_key_create(name="Theirs", groups=[theirs])[1])
        for n in range(5):
            attacker.post("/api/v1/events", {"action": "coupon_redeem", "customer": "alice", "data": {"code": f"G-{n}"}},
                          format="json")
        assert error(attacker.get("/api/v1/coupons/G-9", {"customer": "alice"}))["code"] == "lookup_locked"
        shop = client_for(api_key_create(name="Mine", groups=[mine])[1])
        assert shop.post("/api/v1/coupons/MINE-1/validate", {"total": "10.00", "customer": "alice"},
                         format="json").status_code == 200
        assert LookupLockout.objects.get(scope="customer").customer == "alice"

    def test_a_checkout_of_many_codes_looks_up_no_more_than_the_budget(self, settings):
        from pools.models import ModuleSettings

        ModuleSettings.objects.update_or_create(pk=1, defaults={"auto_redeem": True})
        settings.API_LOOKUP_FAILURES_PER_CUSTOMER = "100/10m"
        CouponFactory(pool=PoolFactory(), code="HIDDEN-99", status=S.UNASSIGNED)
        api = client_for(api_key_create(name="Attacker")[1])
        guesses = [f"HIDDEN-{n:02d}" for n in range(100)]
        response = api.post("/api/v1/events", {"action": "checkout", "customer": "eve",
                                                "data": {"total": "10.00", "coupons": guesses}}, format="json")
        results = response.json()["coupons"]
        looked_up = [r for r in results if not r["message"].startswith("Not looked up")]
        assert len(looked_up) == 6  # five failures within the budget, the sixth locks
        assert all(r["result"] == "refused" for r in results) and "HIDDEN-99" not in str(looked_up)
        assert api.post("/api/v1/events", {"action": "checkout", "customer": "eve",
                                           "data": {"total": "10.00", "coupons": ["HIDDEN-99"]}}, format="json").status_code == 429

    def test_a_bulk_add_of_another_groups_code_is_refused_and_spends_the_whole_budget(self):
        mine, theirs = GroupFactory(), GroupFactory()
        CouponFactory(pool=PoolFactory(user_group=theirs), code="SECRET-42")
        pool = PoolFactory(user_group=mine, source="uploaded")
        CouponFactory(pool=pool, code="OWN-1")
        api = client_for(api_key_create(name="Mine", groups=[mine])[1])
        url = f"/api/v1/bulk-operation/coupons/{pool.pk}/add"
        # Its own pool's codes are the usual "exists already" result, not a failed lookup
        assert api.post(url, {"coupons": ["OWN-1", "NEW-1"]}, format="json").status_code == 202
        guess = api.post(url, {"coupons": [f"SECRET-{n:02d}" for n in range(100)]}, format="json")
        assert guess.status_code == 429 and error(guess)["code"] == "lookup_locked"
        assert not Coupon.objects.filter(code__startswith="SECRET-").exclude(code="SECRET-42").exists()
        assert api.post(url, {"coupons": ["NEW-2"]}, format="json").status_code == 429  # locked for the window
        assert LookupLockout.objects.get().scope == "key"

    def test_a_query_of_the_coupon_list_by_code_is_a_lookup(self):
        CouponFactory(pool=PoolFactory(), code="LISTED-1", status=S.CLAIMED)
        api = client_for(api_key_create(name="Lister")[1])
        assert [len(api.get("/api/v1/coupons", {"code": f"LISTED-{n}"}).json()["results"]) for n in range(2, 8)] == [0] * 6
        locked = api.get("/api/v1/coupons", {"code": "LISTED-1"})
        assert locked.status_code == 429 and error(locked)["code"] == "lookup_locked"
        assert api.get("/api/v1/coupons").status_code == 200  # the list itself goes on

    def test_another_groups_code_answers_as_if_it_did_not_exist(self):
        team = GroupFactory()
        CouponFactory(pool=PoolFactory(user_group=GroupFactory()), code="THEIRS-1")
        api = client_for(api_key_create(name="Mine", groups=[team])[1])
        theirs, nothing = api.get("/api/v1/coupons/THEIRS-1"), api.get("/api/v1/coupons/NOTHING-1")
        assert theirs.status_code == nothing.status_code == 404
        assert error(theirs)["message"].replace("THEIRS-1", "X") == error(nothing)["message"].replace("NOTHING-1", "X")

    def test_the_guessing_attack_finds_at_most_one_code_within_the_budget(self, settings):
        """A 4-placeholder bulk pool filled to its 1% limit, guessed at through validate:
        once the budget is spent, every guess is refused, right or wrong."""
        from couponsite import settings as defaults

        settings.API_LOOKUP_FAILURES_PER_KEY = defaults.API_LOOKUP_FAILURES_PER_KEY  # 30 per 10 minutes
        pool = BulkPoolFactory(pattern="G-####")
        taken = random.Random(1).sample(range(10_000), 100)
        for n in taken:
            CouponFactory(pool=pool, code=f"G-{n:04d}", status=S.CLAIMED)
        api = client_for(api_key_create(name="Attacker")[1])
        found = refused = 0
        for guess in random.Random(2).sample(range(10_000), 300):
            response = api.post(f"/api/v1/coupons/G-{guess:04d}/validate", {"total": "50.00"}, format="json")
            if response.status_code == 429:
                refused += 1
            elif response.status_code == 200:
                found += 1
        # At 1% of the codes taken, 30 failures cost about 30 guesses: 0.3 codes found per
        # 10 minutes on average; then every guess is refused until the lock-out ends.
        answered = 300 - refused
        assert answered == 30 + 1 + found and found <= 1


class TestLogin:
    def test_repeated_wrong_passwords_lock_the_username_out_from_that_address(self, client):
        UserFactory(username="lena")
        for _ in range(4):
            response = client.post(reverse("login"), {"username": "lena", "password": "wrong"}, REMOTE_ADDR="192.0.2.50")
            assert response.status_code == 200 and "Please enter a correct" in response.content.decode()
        fifth = client.post(reverse("login"), {"username": "lena", "password": "wrong"}, REMOTE_ADDR="192.0.2.50")
        assert fifth.status_code == 429  # the fifth wrong password locks
        locked = client.post(reverse("login"), {"username": "lena", "password": "secret-pass-123"}, REMOTE_ADDR="192.0.2.50")
        assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
        assert "Logging in is refused for 15 minutes" in " ".join(locked.content.decode().split())
        assert "_auth_user_id" not in client.session
        elsewhere = client.post(reverse("login"), {"username": "lena", "password": "secret-pass-123"},
                                REMOTE_ADDR="192.0.2.51")
        assert elsewhere.status_code == 302  # the lock is for that username from that address

    def test_behind_a_trusted_proxy_the_forwarded_address_is_locked_not_the_proxy(self, client, settings):
        settings.TRUSTED_PROXIES = 1
        UserFactory(username="lena")
        for _ in range(5):
            client.post(reverse("login"), {"username": "lena", "password": "wrong"}, REMOTE_ADDR="10.0.0.1",
                        HTTP_X_FORWARDED_FOR="198.51.100.1")
        from axes.models import AccessAttempt

        assert AccessAttempt.objects.get().ip_address == "198.51.100.1"
        other_client = client.post(reverse("login"), {"username": "lena", "password": "secret-pass-123"},
                                   REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2")
        assert other_client.status_code == 302  # another client behind the same proxy logs in


def test_large_limits_are_counted_in_batches_that_add_up_exactly():
    """60,000 a minute need not wait for Redis at every request: each process sends its
    count every 50 requests; nothing is lost or counted twice, threads or not."""
    import threading

    from django.core.cache import cache

    from api.limits import _Batches

    batches = _Batches()
    key = "rl:test:batches"
    seen = []

    def hammer():
        for _ in range(250):
            seen.append(batches.hit([(key, 60, 50)])[0])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent, pending = cache.get(key), batches._known[key][1]
    assert sent + pending == 1_000 and sent % 50 == 0 and sent >= 950
    assert max(seen) == 1_000  # the last request saw every one


@pytest.mark.parametrize("rate, period", [
    ("5/m", "minute"), ("5/2m", "2 minutes"), ("5/h", "hour"), ("5/3h", "3 hours"), ("5/d", "day"), ("5/2d", "2 days"),
    ("5/90s", "90 s"),
])
def test_a_rates_period_reads_in_the_singular_and_the_plural(rate, period):
    assert _period(Rate.parse(rate)) == period
