"""Input an attacker sends, and requests that race each other: a clear 4xx in the
envelope (or a page's 400), never a 500, and no change to the data."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connections
from django.test import Client
from rest_framework.test import APIClient

from api.services import api_key_create
from coupons.models import Coupon, CouponStatus, Customer, GiftCardRedemption
from pools.models import ModuleSettings
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory, PoolFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


def client_for(key: str) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def key():
    return api_key_create(name="Shop")[1]


@pytest.fixture
def api(key):
    return client_for(key)


def error(response) -> dict:
    body = response.json()
    assert body["status"] == "error", body
    return body["error"]


class TestInput:
    def test_nul_characters_anywhere_are_a_400(self, api, manager_client):
        assert manager_client.get("/customers/", {"q": "a\x00b"}).status_code == 400
        assert manager_client.get("/pools/", {"q": "\x00"}).status_code == 400
        assert manager_client.post("/pools/new/", {"name": "x\x00"}).status_code == 400
        response = api.get("/api/v1/coupons", {"status": "claimed\x00"})
        assert response.status_code == 400 and "NUL" in error(response)["message"]
        response = api.put("/api/v1/customers/c-1", {"email": "a@b.c", "currency": "EU\x00"}, format="json")
        assert response.status_code == 400 and "NUL" in error(response)["message"]
        response = api.post("/api/v1/events", {"action": "coupon_redeem", "customer": "c\x00", "data": {"code": "x"}},
                            format="json")
        assert response.status_code == 400
        assert not Customer.objects.exists()

    def test_deep_json_is_a_400(self, api):
        deep = "[" * 100_000 + "]" * 100_000
        response = api.generic("POST", "/api/v1/events", deep, content_type="application/json")
        assert response.status_code == 400 and "nested too deeply" in error(response)["message"]
        response = api.post("/api/v1/events", {"action": "checkout", "customer": "c", "data": {"x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
                            format="json")
        assert response.status_code == 400

    def test_an_oversize_body_is_a_413(self, api, settings):
        settings.API_MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
        response = api.post(f"/api/v1/bulk-operation/coupons/{PoolFactory().pk}/add",
                            {"coupons": [f"BIG-{n:05d}" for n in range(500)]}, format="json")
        assert response.status_code == 413 and error(response)["code"] == "body_too_large"

    def test_a_ten_megabyte_body_is_a_clear_answer(self, api):
        body = json.dumps({"coupons": ["X" * 60] * 170_000})  # about 10 MB
        response = api.generic("POST", f"/api/v1/bulk-operation/coupons/{PoolFactory().pk}/add", body,
                               content_type="application/json")
        assert response.status_code == 400 and "50000" in error(response)["message"].replace(",", "")

    @pytest.mark.parametrize("charset", ["bz2", "zlib", "rot13", "latin-1"])
    def test_a_body_in_any_charset_but_utf_is_a_415_and_never_decompressed(self, api, charset):
        import bz2

        bomb = bz2.compress(json.dumps({"coupons": ["X" * 100] * 100_000}).encode())  # 10 MB in 20 KB
        response = api.generic("POST", f"/api/v1/bulk-operation/coupons/{PoolFactory().pk}/add", bomb,
                               content_type=f"application/json; charset={charset}")
        assert response.status_code == 415 and error(response)["code"] == "unsupported_charset"
        utf16 = api.generic("PUT", "/api/v1/customers/c-16", json.dumps({"email": "x@example.com"}).encode("utf-16"),
                            content_type="application/json; charset=utf-16")
        assert utf16.status_code == 201

    @pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                              "multipart/form-data"])
    def test_a_form_body_under_the_api_is_a_json_answer(self, api, settings, content_type):
        settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
        body = "&".join(f"f{n}=v" for n in range(50)) if "urlencoded" in content_type else "--x\r\nbroken"
        response = api.generic("POST", "/api/v1/events", body, content_type=content_type)
        assert response.status_code == 415 and response["Content-Type"] == "application/json"
        assert error(response)["code"] == "unsupported_media_type"

    @pytest.mark.parametrize("position", ["abc", "1.5", "\x00", "-3", "99999999999999999999"])
    def test_a_forged_cursor_is_a_400(self, api, position):
        from base64 import b64encode
        from urllib.parse import urlencode

        cursor = b64encode(urlencode({"p": position, "o": "0"}).encode()).decode()
        for url in ("/api/v1/coupons", "/api/v1/coupon-pools"):
            response = api.get(url, {"cursor": cursor})
            assert response.status_code == 400 and error(response)["code"] == "invalid_cursor", (url, response.content)

    @pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
    def test_any_method_on_an_unknown_api_url_is_a_json_404_without_csrf(self, api, method):
        for url in ("/api/v1/nope", "/api/v1/coupon-pools/1/claim/extra", "/api/v2/coupons"):
            response = getattr(api, method)(url)
            assert response.status_code == 404 and error(response)["type"] == "not_found", (method, url)

    def test_an_external_id_works_wherever_a_pool_id_does(self, api):
        pool = PoolFactory(external_id="SPRING-24")
        response = api.post("/api/v1/bulk-operation/coupons/SPRING-24/add", {"coupons": ["EXT-1"]}, format="json")
        assert response.status_code == 202 and response.json()["pool"] == pool.pk
        assert api.post("/api/v1/bulk-operation/coupons/NOPE/add", {"coupons": ["EXT-1"]}, format="json").status_code == 404

    @pytest.mark.parametrize("limit", ["0", "-1", "abc", "1001", "1e3", "²"])
    def test_a_bad_limit_is_a_400(self, api, limit):
        response = api.get("/api/v1/coupons", {"limit": limit})
        assert response.status_code == 400 and error(response)["code"] == "invalid_limit"

    def test_a_bad_cursor_is_a_400(self, api):
        response = api.get("/api/v1/coupon-pools", {"cursor": "@@not-base64@@"})
        assert response.status_code == 400 and error(response)["code"] == "invalid_cursor"


class TestRefusalsChangeNothing:
    def test_a_refused_redeem_creates_no_customer(self, api):
        coupon = CouponFactory(pool=PoolFactory(), code="TAKEN-1", status=S.CLAIMED)
        response = api.post("/api/v1/events", {"action": "coupon_redeem", "customer": "invented-1",
                                                "data": {"code": "TAKEN-1"}}, format="json")
        assert response.status_code == 409 and error(response)["code"] == "wrong_customer"
        assert not Customer.objects.filter(external_id="invented-1").exists()
        assert Coupon.objects.get(pk=coupon.pk).status == S.CLAIMED

    def test_a_checkout_that_redeems_nothing_creates_no_customer(self, api):
        ModuleSettings.objects.update_or_create(pk=1, defaults={"auto_redeem": True})
        response = api.post("/api/v1/events", {"action": "checkout", "customer": "invented-2",
                                                "data": {"total": "10.00", "coupons": ["NOPE-1"]}}, format="json")
        assert response.status_code == 200 and response.json()["coupons"][0]["result"] == "refused"
        assert not Customer.objects.filter(external_id="invented-2").exists()

    def test_a_customer_id_that_is_not_utf8_is_refused(self, api):
        response = api.put("/api/v1/customers/%ff%fe", {"email": "x@example.com"}, format="json")
        assert response.status_code == 400 and "not valid UTF-8" in error(response)["message"]
        assert not Customer.objects.exists()
        assert api.put("/api/v1/customers/caf%C3%A9", {}, format="json").status_code == 201  # UTF-8 is fine
        assert Customer.objects.get().external_id == "café"


@pytest.mark.django_db(transaction=True)
class TestRaces:
    """Threads with their own connections on one coupon at once."""

    def at_once(self, count, work):
        barrier = threading.Barrier(count)

        def run(n):
            barrier.wait()
            try:
                return work(n)
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=count) as executor:
            return list(executor.map(run, range(count)))

    def test_concurrent_transfers_redeems_and_unredeems_of_one_coupon_never_fail_with_a_500(self, key):
        from django.contrib.auth import get_user_model

        from couponsite.permissions import manager_group_ensure

        user = get_user_model().objects.create_user("racer", password="pw")
        user.groups.add(manager_group_ensure())
        pool = PoolFactory()
        holder = CustomerFactory(external_id="holder")
        targets = [CustomerFactory(external_id=f"target-{n}", currency="EUR") for n in range(5)]
        coupon = CouponFactory(pool=pool, code="RACE-ONE", status=S.CLAIMED, customer=holder)

        def act(n):
            client = Client()
            client.force_login(user)
            if n < 5:
                return client.post(f"/coupons/{coupon.pk}/transfer/", {"customer_id": targets[n].external_id}).status_code
            action = "redeem" if n % 2 else "unredeem"
            api = client_for(key)
            if action == "redeem":
                return api.post("/api/v1/events", {"action": "coupon_redeem", "customer": "holder",
                                                    "data": {"code": "RACE-ONE"}}, format="json").status_code
            return client.post(f"/coupons/{coupon.pk}/unredeem/").status_code

        statuses = self.at_once(10, act)
        assert 500 not in statuses, statuses
        coupon.refresh_from_db()
        transfers = coupon.pk and Coupon.objects.get(pk=coupon.pk).customer
        assert transfers is not None and transfers.external_id in {"holder", *(t.external_id for t in targets)}

    def test_checkouts_naming_the_same_coupons_in_another_order_do_not_deadlock(self, key):
        ModuleSettings.objects.update_or_create(pk=1, defaults={"auto_redeem": True})
        pool = PoolFactory()
        anna = CustomerFactory(external_id="anna", currency="EUR")
        codes = [f"PAIR-{n}" for n in range(4)]
        for code in codes:
            CouponFactory(pool=pool, code=code, status=S.CLAIMED, customer=anna)

        def checkout(n):
            basket = codes if n % 2 else list(reversed(codes))
            response = client_for(key).post("/api/v1/events", {
                "action": "checkout", "customer": "anna", "data": {"total": "100.00", "coupons": basket},
            }, format="json")
            return response.status_code, [c["result"] for c in response.json().get("coupons", [])]

        answers = self.at_once(10, checkout)
        assert {status for status, _ in answers} == {200}, answers
        assert sum(results.count("redeemed") for _, results in answers) == len(codes)  # each once
        assert Coupon.objects.filter(code__in=codes, status=S.REDEEMED).count() == len(codes)

    def test_parallel_checkouts_on_one_gift_card_pay_exactly_its_balance(self, key):
        ModuleSettings.objects.update_or_create(pk=1, defaults={"auto_redeem": True})
        pool = GiftCardPoolFactory(value="100.00", currency="EUR")
        anna = CustomerFactory(external_id="anna", currency="EUR")
        card = CouponFactory(pool=pool, code="GIFT-RACE", status=S.CLAIMED, customer=anna)

        def checkout(n):
            response = client_for(key).post("/api/v1/events", {
                "action": "checkout", "customer": "anna",
                "data": {"total": "30.00", "currency": "EUR", "coupons": ["GIFT-RACE"]},
            }, format="json")
            assert response.status_code == 200, response.content
            return response.json()["coupons"][0]["result"]

        results = self.at_once(8, checkout)
        paid = sorted(GiftCardRedemption.objects.filter(coupon=card).values_list("amount", flat=True))
        assert paid == [Decimal("10.00"), Decimal("30.00"), Decimal("30.00"), Decimal("30.00")]
        assert results.count("redeemed") == 4 and results.count("refused") == 4
        card.refresh_from_db()
        assert (card.balance, card.status) == (Decimal("0.00"), S.REDEEMED)
