"""Every endpoint of the JSON API, success and error paths, through Django's test client."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from api.models import ApiKey, BulkOperation
from api.services import api_key_create, api_key_revoke
from coupons.jobs.engine import job_execute, job_resume
from coupons.models import Coupon, CouponStatus, Customer, CustomerEvent
from coupons.propagation import UpdateMethod, pool_update
from pools.models import CouponPool, ModuleSettings, PoolSource, Product, Store
from tests.api.conftest import client_for
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory, GroupFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


def error(response) -> dict:
    body = response.json()
    assert body["status"] == "error", body
    assert set(body["error"]) >= {"type", "code", "message"}
    return body["error"]


# --- keys ---------------------------------------------------------------------------------


class TestKeys:
    def test_no_key_a_wrong_key_and_a_revoked_key_are_refused(self):
        pool = PoolFactory()
        assert error(APIClient().get("/api/v1/coupon-pools"))["code"] == "api_key_required"
        assert APIClient().get("/api/v1/coupon-pools").status_code == 401
        assert error(client_for("deadbeef.nope").get("/api/v1/coupon-pools"))["code"] == "invalid_api_key"
        bad_scheme = APIClient()
        bad_scheme.credentials(HTTP_AUTHORIZATION="Bearer x")
        assert "Api-Key" in error(bad_scheme.get(f"/api/v1/coupon-pools/{pool.pk}"))["message"]
        api_key, key = api_key_create(name="Old")
        assert client_for(key).get("/api/v1/coupon-pools").status_code == 200
        api_key_revoke(api_key=api_key)
        response = client_for(key).get("/api/v1/coupon-pools")
        assert response.status_code == 401 and "revoked" in error(response)["message"]

    def test_keys_are_stored_hashed_and_record_their_last_use(self):
        api_key, key = api_key_create(name="Shop")
        assert key.startswith(api_key.prefix + ".") and key not in api_key.key_hash and len(api_key.key_hash) == 64
        assert api_key.last_used_at is None
        client_for(key).get("/api/v1/coupon-pools")
        api_key.refresh_from_db()
        assert api_key.last_used_at is not None

    def test_a_key_limited_to_a_group_sees_only_that_groups_pools(self):
        team, other = GroupFactory(name="Team A"), GroupFactory(name="Team B")
        mine, theirs, open_pool = PoolFactory(user_group=team), PoolFactory(user_group=other), PoolFactory()
        _, key = api_key_create(name="Team A shop", groups=[team])
        api = client_for(key)
        assert [p["id"] for p in api.get("/api/v1/coupon-pools").json()["results"]] == [mine.pk]
        assert api.get(f"/api/v1/coupon-pools/{theirs.pk}").status_code == 404
        assert api.post(f"/api/v1/coupon-pools/{open_pool.pk}/claim", {"customer": "c1"}, format="json").status_code == 404
        created = api.post("/api/v1/coupon-pools", {"name": "New", "source": "uploaded", "type": "amount", "value": "5"}, format="json")
        assert created.status_code == 201 and created.json()["user_group"] == "Team A"
        refused = api.post("/api/v1/coupon-pools", {"name": "X", "source": "uploaded", "type": "amount", "value": "5",
                                                    "user_group": "Team B"}, format="json")
        assert refused.status_code == 400 and "own user groups" in error(refused)["message"]

    def test_create_api_key_command_prints_the_key_alone_on_the_last_line(self, capsys):
        GroupFactory(name="Partners")
        call_command("create_api_key", "Loyalty engine", "--group", "Partners")
        key = capsys.readouterr().out.strip().splitlines()[-1]
        api_key = ApiKey.objects.get(name="Loyalty engine")
        assert key.startswith(api_key.prefix + ".") and [g.name for g in api_key.groups.all()] == ["Partners"]
        assert client_for(key).get("/api/v1/coupon-pools").status_code == 200


# --- pools ----------------------------------------------------------------------------------


class TestPools:
    def test_create_list_and_detail_by_id_or_external_id(self, api):
        Store.objects.create(name="Main street", external_id="STORE-1")
        Product.objects.create(name="Shoes", sku="SKU-1")
        response = api.post("/api/v1/coupon-pools", {
            "name": "Spring", "external_id": "SPRING-2026", "source": "bulk", "pattern": "SP-$$$$$$$$",
            "type": "percentage", "value": "15", "stores": ["STORE-1"], "products": ["SKU-1"],
            "expiration_period_count": 30, "expiration_period_unit": "day", "callback_api_key": "",
        }, format="json")
        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["type"] == "percentage" and body["value"] == "15.00" and body["stores"] == ["STORE-1"]
        assert "callback_api_key" not in body
        assert api.get(f"/api/v1/coupon-pools/{body['id']}").json()["external_id"] == "SPRING-2026"
        assert api.get("/api/v1/coupon-pools/SPRING-2026").json()["id"] == body["id"]
        assert [p["name"] for p in api.get("/api/v1/coupon-pools").json()["results"]] == ["Spring"]

    def test_the_list_comes_in_cursor_pages_oldest_first(self, api):
        pools = [PoolFactory(name=f"Page {n}") for n in range(5)]
        page = api.get("/api/v1/coupon-pools", {"limit": 2}).json()
        assert [p["id"] for p in page["results"]] == [pools[0].pk, pools[1].pk] and page["previous"] is None
        seen = [p["id"] for p in page["results"]]
        while page["next"]:
            page = api.get(page["next"]).json()
            seen += [p["id"] for p in page["results"]]
        assert seen == [pool.pk for pool in pools]
        assert len(api.get("/api/v1/coupon-pools").json()["results"]) == 5  # 100 a page by default
        for path in ("/api/v1/coupon-pools", "/api/v1/coupons"):
            bad = api.get(path, {"cursor": "garbage"})
            assert bad.status_code == 400 and error(bad)["code"] == "invalid_cursor", error(bad)
            assert "follow the next or previous link" in error(bad)["message"]

    def test_create_refuses_what_the_pool_rules_refuse(self, api):
        response = api.post("/api/v1/coupon-pools", {"name": "Bad", "source": "bulk", "type": "amount", "value": "5"}, format="json")
        assert response.status_code == 400
        assert error(response)["type"] == "validation_error" and "pattern" in error(response)["details"]
        unknown = api.post("/api/v1/coupon-pools", {"name": "Bad", "source": "uploaded", "type": "amount", "value": "5",
                                                    "stores": ["NOPE"]}, format="json")
        assert unknown.status_code == 400 and "stores" in error(unknown)["message"]
        assert CouponPool.objects.count() == 0
        assert error(api.get("/api/v1/coupon-pools/NOPE-POOL"))["code"] == "pool_not_found"

    def test_update_with_update_method_moves_existing_coupons(self, api):
        pool = PoolFactory(value="10.00", external_id="UPD-POOL-1")
        unassigned = CouponFactory(pool=pool)
        claimed = CouponFactory(pool=pool, status=S.CLAIMED, customer=CustomerFactory())
        response = api.post("/api/v1/coupon-pools/UPD-POOL-1/update", {"value": "12.50", "update_method": "update_unassigned"}, format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["pool"]["value"] == "12.50" and response.json()["coupons_updated"] == 1
        unassigned.refresh_from_db(), claimed.refresh_from_db()
        assert unassigned.effective_terms.value == Decimal("12.50") and claimed.effective_terms.value == Decimal("10.00")
        bad = api.post("/api/v1/coupon-pools/UPD-POOL-1/update", {"update_method": "sometimes"}, format="json")
        assert bad.status_code == 400 and "update_method" in error(bad)["message"]


# --- claim ------------------------------------------------------------------------------------


class TestClaim:
    def test_claim_issues_the_next_coupon_and_creates_a_new_customer(self, api):
        pool = PoolFactory()
        first, second = CouponFactory(pool=pool, code="CL-1"), CouponFactory(pool=pool, code="CL-2")
        response = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "new-member", "email": "n@example.com"}, format="json")
        assert response.status_code == 201
        body = response.json()
        assert (body["code"], body["status"], body["customer"], body["claims"]) == ("CL-1", "claimed", "new-member", 1)
        assert Customer.objects.get(external_id="new-member").email == "n@example.com"
        event = CustomerEvent.objects.get(coupon=first)
        assert (event.action, event.actor_kind, event.actor_label) == ("coupon_claim", "api_key", "API key Web shop")
        del second

    def test_an_empty_pool_and_a_bad_body_are_clear_errors(self, api):
        pool = PoolFactory(name="Empty")
        response = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "c"}, format="json")
        assert response.status_code == 409 and error(response)["code"] == "pool_empty"
        assert "no unassigned coupons left" in error(response)["message"]
        missing = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {}, format="json")
        assert missing.status_code == 400 and error(missing)["message"].startswith("customer:")
        garbage = api.generic("POST", f"/api/v1/coupon-pools/{pool.pk}/claim", "{not json", content_type="application/json")
        assert garbage.status_code == 400 and error(garbage)["code"] == "malformed_json"

    @pytest.mark.django_db(transaction=True)  # autocommit, as a request runs: no test transaction around it
    def test_a_plain_claim_is_one_statement_after_the_key_and_the_pool(self, api, django_assert_num_queries):
        pool = PoolFactory(expiration_period_count=30, expiration_period_unit="day")
        CouponFactory(pool=pool, code="ONE-1"), CouponFactory(pool=pool, code="ONE-2")
        # The key's first use writes its last-used time, and the pool's terms are cached.
        assert api.get(f"/api/v1/coupon-pools/{pool.pk}").status_code == 200
        url = f"/api/v1/coupon-pools/{pool.pk}/claim"
        with django_assert_num_queries(3):  # the key, the pool, the claim
            response = api.post(url, {"customer": " solo ", "email": "s@example.com", "currency": "eur"}, format="json")
        assert response.status_code == 201, response.json()
        coupon, customer = Coupon.objects.get(code="ONE-1"), Customer.objects.get(external_id="solo")
        assert (customer.email, customer.currency) == ("s@example.com", "EUR")
        assert (coupon.status, coupon.customer, coupon.claims) == (S.CLAIMED, customer, 1)
        assert coupon.expires_at == coupon.claimed_at + timedelta(days=30)
        body = response.json()
        assert (body["customer"], body["claims"], body["value"]) == ("solo", 1, "10.00")
        assert datetime.fromisoformat(body["expires_at"]) == coupon.expires_at
        event = CustomerEvent.objects.get(coupon=coupon)
        assert (event.customer, event.pool_id, event.action, event.data) == (customer, pool.pk, "coupon_claim", {"code": "ONE-1"})
        assert (event.actor_kind, event.actor_label, event.created_at) == ("api_key", "API key Web shop", coupon.claimed_at)
        with django_assert_num_queries(3):  # a known customer: the same statement finds it
            again = api.post(url, {"customer": "solo", "email": "other@example.com"}, format="json")
        assert again.json()["code"] == "ONE-2" and Customer.objects.filter(external_id="solo").count() == 1
        assert Customer.objects.get(external_id="solo").email == "s@example.com"

    def test_an_older_coupon_keeps_its_own_terms_and_an_updated_one_follows_the_new(self, api):
        pool = PoolFactory(expiration_period_count=10, expiration_period_unit="day")
        CouponFactory(pool=pool, code="KEEP-1")
        pool, _ = pool_update(pool=pool, actor=None, value=Decimal("20.00"), expiration_period_count=90)  # update none
        CouponFactory(pool=pool, code="NEW-1")
        url = f"/api/v1/coupon-pools/{pool.pk}/claim"
        kept = api.post(url, {"customer": "a"}, format="json").json()
        assert (kept["code"], kept["value"]) == ("KEEP-1", "10.00")
        coupon = Coupon.objects.get(code="KEEP-1")
        assert coupon.expires_at == coupon.claimed_at + timedelta(days=10)
        new = api.post(url, {"customer": "b"}, format="json").json()
        assert (new["code"], new["value"]) == ("NEW-1", "20.00")
        CouponFactory(pool=pool, code="FOLLOW-1")
        pool, _ = pool_update(pool=pool, actor=None, update_method=UpdateMethod.ALL, value=Decimal("30.00"), expiration_period_count=5)
        followed = api.post(url, {"customer": "c"}, format="json").json()
        assert (followed["code"], followed["value"]) == ("FOLLOW-1", "30.00")
        coupon = Coupon.objects.get(code="FOLLOW-1")
        assert coupon.terms_id != pool.current_terms_id and coupon.expires_at == coupon.claimed_at + timedelta(days=5)
        assert Customer.objects.filter(external_id__in=["a", "b", "c"]).count() == 3

    def test_a_refused_claim_creates_no_customer(self, api):
        pool = PoolFactory()
        CouponFactory(pool=pool, code="LAST-1")
        url = f"/api/v1/coupon-pools/{pool.pk}/claim"
        assert api.post(url, {"customer": "first"}, format="json").status_code == 201
        refused = api.post(url, {"customer": "second"}, format="json")
        assert refused.status_code == 409 and error(refused)["code"] == "pool_empty"
        assert not Customer.objects.filter(external_id="second").exists()
        blank = api.post(url, {"customer": "   "}, format="json")
        assert blank.status_code == 400 and not Customer.objects.filter(external_id="").exists()

    def test_a_gift_card_goes_only_to_a_customer_with_its_currency(self, api):
        pool = GiftCardPoolFactory(value="100.00", currency="EUR")
        CouponFactory(pool=pool, code="GC-1"), CouponFactory(pool=pool, code="GC-2")
        CustomerFactory(external_id="dollars", currency="USD"), CustomerFactory(external_id="euros", currency="EUR")
        url = f"/api/v1/coupon-pools/{pool.pk}/claim"
        held = api.post(url, {"customer": "dollars"}, format="json")
        assert held.status_code == 409 and error(held)["code"] == "currency_mismatch"
        new = api.post(url, {"customer": "new-dollars", "currency": "usd"}, format="json")
        assert new.status_code == 409 and error(new)["code"] == "currency_mismatch"
        assert not Customer.objects.filter(external_id="new-dollars").exists()
        assert Coupon.objects.filter(pool=pool, status=S.UNASSIGNED).count() == 2
        assert api.post(url, {"customer": "euros"}, format="json").json()["code"] == "GC-1"
        assert api.post(url, {"customer": "new-euros", "currency": "eur"}, format="json").json()["code"] == "GC-2"

    def test_a_generated_pool_makes_a_code_per_claim(self, api):
        pool = PoolFactory(source=PoolSource.GENERATED, pattern="GEN-######")
        codes = {api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": f"c{n}"}, format="json").json()["code"] for n in range(3)}
        assert len(codes) == 3 and all(code.startswith("GEN-") for code in codes)


# --- coupons ------------------------------------------------------------------------------------


class TestCoupons:
    def test_query_by_code_status_and_customer_with_cursor_pages(self, api):
        pool = PoolFactory(external_id="QUERY-POOL")
        anna = CustomerFactory(external_id="anna")
        for n in range(5):
            CouponFactory(pool=pool, code=f"Q-{n}", status=S.CLAIMED if n % 2 else S.UNASSIGNED, customer=anna if n % 2 else None)
        page = api.get("/api/v1/coupons", {"limit": 2}).json()
        assert [c["code"] for c in page["results"]] == ["Q-4", "Q-3"] and page["next"]
        rest = api.get(page["next"]).json()
        assert [c["code"] for c in rest["results"]] == ["Q-2", "Q-1"]
        assert [c["code"] for c in api.get("/api/v1/coupons", {"code": "Q-3"}).json()["results"]] == ["Q-3"]
        assert [c["code"] for c in api.get("/api/v1/coupons", {"status": "claimed", "customer": "anna"}).json()["results"]] == ["Q-3", "Q-1"]
        assert len(api.get("/api/v1/coupons", {"pool": "QUERY-POOL"}).json()["results"]) == 5
        bad = api.get("/api/v1/coupons", {"status": "lost"})
        assert bad.status_code == 400 and "Unknown status" in error(bad)["message"]

    def test_one_coupon_by_code(self, api):
        coupon = CouponFactory(code="ONE-1")
        body = api.get("/api/v1/coupons/ONE-1").json()
        assert (body["id"], body["status"], body["pool"]) == (coupon.pk, "unassigned", coupon.pool_id)
        missing = api.get("/api/v1/coupons/NOPE-1")
        assert missing.status_code == 404 and error(missing)["code"] == "coupon_not_found"


# --- events ----------------------------------------------------------------------------------------


class TestEvents:
    def test_coupon_redeem_of_a_claimed_coupon(self, api):
        anna = CustomerFactory(external_id="anna")
        coupon = CouponFactory(code="RD-1", status=S.CLAIMED, customer=anna)
        response = api.post("/api/v1/events", {"customer": "anna", "action": "coupon_redeem", "data": {"code": "RD-1"}}, format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["coupons"][0]["coupon"]["status"] == "redeemed"
        coupon.refresh_from_db()
        assert (coupon.status, coupon.usages) == (S.REDEEMED, 1)
        again = api.post("/api/v1/events", {"customer": "anna", "action": "coupon_redeem", "data": {"code": "RD-1"}}, format="json")
        assert again.status_code == 409 and "redeemed" in error(again)["message"]

    def test_an_unassigned_uploaded_coupon_is_assigned_when_redeemed(self, api):
        coupon = CouponFactory(code="UP-1")
        response = api.post("/api/v1/events", {"customer": "walk-in", "action": "coupon_redeem", "data": {"code": "UP-1"}}, format="json")
        assert response.status_code == 200
        coupon.refresh_from_db()
        assert (coupon.status, coupon.customer.external_id) == (S.REDEEMED, "walk-in")

    def test_gift_card_amounts(self, api):
        pool = GiftCardPoolFactory(value="100.00", currency="EUR")
        eve = CustomerFactory(external_id="eve", currency="EUR")
        card = CouponFactory(pool=pool, code="GC-1", status=S.CLAIMED, customer=eve)
        response = api.post("/api/v1/events", {"customer": "eve", "action": "coupon_redeem", "data": {"code": "GC-1", "amount": "30.00"}}, format="json")
        assert response.json()["coupons"][0]["coupon"]["balance"] == "70.00"
        too_much = api.post("/api/v1/events", {"customer": "eve", "action": "coupon_redeem", "data": {"code": "GC-1", "amount": "80.00"}}, format="json")
        assert too_much.status_code == 409
        card.refresh_from_db()
        assert card.balance == Decimal("70.00") and card.status == S.PARTIALLY_REDEEMED
        negative = api.post("/api/v1/events", {"customer": "eve", "action": "coupon_redeem", "data": {"code": "GC-1", "amount": "-5"}}, format="json")
        assert negative.status_code == 400

    def test_checkout_redeems_only_when_auto_redeem_is_on(self, api):
        anna = CustomerFactory(external_id="anna")
        coupon = CouponFactory(code="CO-1", status=S.CLAIMED, customer=anna)
        event = {"customer": "anna", "action": "checkout", "data": {"total": "50.00", "coupons": ["CO-1", "NOPE-9"]}}
        off = api.post("/api/v1/events", event, format="json").json()
        assert off["auto_redeem"] is False and {r["result"] for r in off["coupons"]} == {"not_processed"}
        coupon.refresh_from_db()
        assert coupon.status == S.CLAIMED
        ModuleSettings.objects.update_or_create(pk=1, defaults={"auto_redeem": True})
        on = api.post("/api/v1/events", event, format="json").json()
        assert [(r["code"], r["result"]) for r in on["coupons"]] == [("CO-1", "redeemed"), ("NOPE-9", "refused")]
        coupon.refresh_from_db()
        assert coupon.status == S.REDEEMED

    def test_bad_events_are_validation_errors(self, api):
        assert error(api.post("/api/v1/events", {"customer": "a", "action": "party", "data": {}}, format="json"))["type"] == "validation_error"
        assert "data.code" in error(api.post("/api/v1/events", {"customer": "a", "action": "coupon_redeem", "data": {}}, format="json"))["message"]
        assert "data.total" in error(api.post("/api/v1/events", {"customer": "a", "action": "checkout", "data": {}}, format="json"))["message"]


# --- customers -------------------------------------------------------------------------------------


def test_put_customer_creates_then_updates(api):
    created = api.put("/api/v1/customers/member-7", {"email": "m7@example.com", "currency": "eur"}, format="json")
    assert created.status_code == 201 and created.json() == {
        "id": "member-7", "email": "m7@example.com", "currency": "EUR", "created_at": created.json()["created_at"]}
    updated = api.put("/api/v1/customers/member-7", {"currency": "USD"}, format="json")
    assert updated.status_code == 200 and updated.json()["email"] == "m7@example.com" and updated.json()["currency"] == "USD"
    bad = api.put("/api/v1/customers/member-7", {"currency": "XXQ"}, format="json")
    assert bad.status_code == 400 and error(bad)["message"].startswith("currency:")


def test_put_customer_keeps_the_currency_of_held_gift_cards_and_checks_the_id(api):
    """The rules of the Management UI's customer form, which uses the same service."""
    holder = CustomerFactory(external_id="gc-holder", currency="EUR")
    CouponFactory(pool=GiftCardPoolFactory(currency="EUR"), status=S.CLAIMED, customer=holder)
    refused = api.put("/api/v1/customers/gc-holder", {"currency": "USD"}, format="json")
    assert refused.status_code == 409 and error(refused)["code"] == "currency_held"
    assert "holds gift cards in EUR" in error(refused)["message"]
    holder.refresh_from_db()
    assert holder.currency == "EUR"
    too_long = api.put(f"/api/v1/customers/{'x' * 129}", {}, format="json")
    assert too_long.status_code == 400 and error(too_long)["message"] == "id: A customer ID has 1 to 128 characters."


# --- bulk operations ----------------------------------------------------------------------------------


class TestBulk:
    def test_add_assign_unassign_with_status_and_errors(self, api, django_capture_on_commit_callbacks):
        pool, other = PoolFactory(), PoolFactory()
        CouponFactory(pool=other, code="TAKEN")
        with django_capture_on_commit_callbacks() as callbacks:
            response = api.post(f"/api/v1/bulk-operation/coupons/{pool.pk}/add",
                                {"coupons": ["B-1", "B-2", {"code": "B-3"}, "TAKEN", "B-1"]}, format="json")
        assert response.status_code == 202 and response.json()["status"] == "queued" and len(callbacks) == 1
        operation_id = response.json()["id"]
        job_execute(kind="api_bulk", job_id=operation_id)  # what the worker runs
        status = api.get(f"/api/v1/bulk-operation/coupons/{operation_id}/status").json()
        assert (status["status"], status["total"], status["succeeded"], status["failed"]) == ("done", 5, 3, 2)
        errors = api.get(f"/api/v1/bulk-operation/coupons/{operation_id}/status/error").json()
        assert [(e["index"], e["code"], e["error_code"]) for e in errors] == [(3, "TAKEN", "code_exists"), (4, "B-1", "duplicate_in_request")]

        assign = api.post(f"/api/v1/bulk-operation/coupons/{pool.pk}/assign",
                          {"coupons": [{"code": "B-1", "customer": "anna"}, {"code": "NOPE", "customer": "anna"}]}, format="json")
        job_execute(kind="api_bulk", job_id=assign.json()["id"])
        assert Coupon.objects.get(code="B-1").customer.external_id == "anna"
        assert api.get(f"/api/v1/bulk-operation/coupons/{assign.json()['id']}/status/error").json()[0]["error_code"] == "coupon_not_found"

        unassign = api.post(f"/api/v1/bulk-operation/coupons/{pool.pk}/unassign", {"coupons": ["B-1", "B-2"]}, format="json")
        job_execute(kind="api_bulk", job_id=unassign.json()["id"])
        assert Coupon.objects.get(code="B-1").status == S.UNASSIGNED
        unassign_errors = api.get(f"/api/v1/bulk-operation/coupons/{unassign.json()['id']}/status/error").json()
        assert [(e["code"], e["error_code"]) for e in unassign_errors] == [("B-2", "status_unassigned")]

    def test_bad_bulk_requests(self, api):
        pool = PoolFactory()
        assert api.post(f"/api/v1/bulk-operation/coupons/{pool.pk}/explode", {"coupons": ["X"]}, format="json").status_code == 404
        assert "needs a customer" in error(api.post(f"/api/v1/bulk-operation/coupons/{pool.pk}/assign", {"coupons": ["X"]}, format="json"))["message"]
        too_many = api.post(f"/api/v1/bulk-operation/coupons/{pool.pk}/unassign", {"coupons": ["X"] * 50_001}, format="json")
        assert too_many.status_code == 400 and "50000" in error(too_many)["message"]
        bulk_pool = PoolFactory(source=PoolSource.BULK, pattern="BK-$$$$$$$$")
        refused = api.post(f"/api/v1/bulk-operation/coupons/{bulk_pool.pk}/add", {"coupons": ["X"]}, format="json")
        assert refused.status_code == 409 and error(refused)["code"] == "pool_not_uploaded"
        assert BulkOperation.objects.count() == 0
        assert api.get("/api/v1/bulk-operation/coupons/999999/status").status_code == 404


# --- validate ---------------------------------------------------------------------------------------


class TestValidate:
    def test_a_usable_coupon_and_its_discount(self, api):
        pool = PoolFactory(coupon_type="percentage", value="20.00", purchase_minimum="30.00")
        CouponFactory(pool=pool, code="V-1", status=S.CLAIMED, customer=CustomerFactory(external_id="anna"))
        body = api.post("/api/v1/coupons/V-1/validate", {"customer": "anna", "total": "80.00"}, format="json").json()
        assert (body["valid"], body["reasons"], body["discount"]) == (True, [], "16.00")

    def test_every_reason_at_once(self, api):
        store = Store.objects.create(name="Main", external_id="STORE-1")
        product = Product.objects.create(name="Shoes", sku="SKU-1")
        pool = GiftCardPoolFactory(value="50.00", currency="EUR", purchase_minimum="30.00", stores=[store], products=[product])
        from django.utils import timezone

        CouponFactory(pool=pool, code="V-2", status=S.REDEEMED, customer=CustomerFactory(external_id="ben"),
                      expires_at=timezone.now() - timezone.timedelta(days=1))
        body = api.post("/api/v1/coupons/V-2/validate", {"customer": "anna", "total": "10.00", "currency": "USD",
                                                          "store": "STORE-9", "products": ["SKU-9"]}, format="json").json()
        assert body["valid"] is False and body["discount"] == "0.00"
        assert [r["code"] for r in body["reasons"]] == ["status", "expired", "customer", "purchase_minimum", "store", "products", "currency"]

    def test_unknown_code_and_bad_basket(self, api):
        assert api.post("/api/v1/coupons/NOPE/validate", {"total": "1"}, format="json").status_code == 404
        CouponFactory(code="V-3")
        assert error(api.post("/api/v1/coupons/V-3/validate", {}, format="json"))["message"].startswith("total:")


def test_schema_and_docs_are_served():
    schema = APIClient().get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/coupon-pools/{reference}/claim" in schema.content
    docs = APIClient().get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content and b"cdn" not in docs.content.lower()


class TestKeysPage:
    def test_administrators_create_a_key_shown_once_and_revoke_it(self, admin_client_):
        GroupFactory(name="Partners")
        page = admin_client_.get("/settings/api-keys/")
        assert page.status_code == 200 and "No API keys yet." in page.content.decode()
        assert 'type="checkbox" name="groups"' in page.content.decode() and 'class="form-check-input"' in page.content.decode()
        from django.contrib.auth.models import Group

        created = admin_client_.post("/settings/api-keys/", {"name": "Kiosk", "groups": [Group.objects.get(name="Partners").pk]})
        key = created.context["new_key"][1]
        assert key in created.content.decode() and "never shown again" in created.content.decode()
        assert key not in admin_client_.get("/settings/api-keys/").content.decode()
        api_key = ApiKey.objects.get(name="Kiosk")
        assert [g.name for g in api_key.groups.all()] == ["Partners"]
        assert client_for(key).get("/api/v1/coupon-pools").status_code == 200
        admin_client_.post("/settings/api-keys/", {"revoke": api_key.pk})
        assert client_for(key).get("/api/v1/coupon-pools").status_code == 401
        assert "Revoked" in admin_client_.get("/settings/api-keys/").content.decode()

    def test_managers_without_the_permission_cannot_see_keys(self, manager_client):
        assert manager_client.get("/settings/api-keys/").status_code == 403
        assert "API keys" not in manager_client.get("/pools/").content.decode()

    def test_the_admin_creates_a_key_and_shows_it_once(self, admin_client_):
        response = admin_client_.post("/admin/api/apikey/add/", {"name": "Admin made"})
        api_key = ApiKey.objects.get(name="Admin made")
        key = response.context["key"]
        assert response.status_code == 200 and "no-store" in response["Cache-Control"]
        assert key in response.content.decode() and not list(response.context["messages"])  # not in a cookie
        assert key.startswith(api_key.prefix + ".") and client_for(key).get("/api/v1/coupon-pools").status_code == 200

    def test_a_manager_gives_a_key_only_their_own_groups(self, client):
        from django.contrib.auth.models import Permission

        team_a, team_b = GroupFactory(name="Team A"), GroupFactory(name="Team B")
        pool_b = PoolFactory(user_group=team_b)
        user = UserFactory(groups=[team_a])
        user.user_permissions.add(Permission.objects.get(codename="add_apikey"))
        client.force_login(user)
        page = client.get("/settings/api-keys/")
        assert "Team A" in page.content.decode() and "Team B" not in page.content.decode()
        refused = client.post("/settings/api-keys/", {"name": "Everything"})
        assert refused.status_code == 400 and not ApiKey.objects.exists()
        sneaky = client.post("/settings/api-keys/", {"name": "Other team", "groups": [team_b.pk]})
        assert sneaky.status_code == 400 and not ApiKey.objects.exists()
        created = client.post("/settings/api-keys/", {"name": "Mine", "groups": [team_a.pk]})
        key = created.context["new_key"][1]
        assert client_for(key).get(f"/api/v1/coupon-pools/{pool_b.pk}").status_code == 404
        # Keys reaching further than the user's groups are neither listed nor revocable.
        everything, _ = api_key_create(name="Company-wide")
        assert "Company-wide" not in client.get("/settings/api-keys/").content.decode()
        assert client.post("/settings/api-keys/", {"revoke": everything.pk}).status_code == 404


def test_the_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/bulk-operation/coupons/{batch_id}/status/error" in (tmp_path / "schema.yaml").read_text()



class TestReviewFindings:
    def test_checkout_pays_with_gift_cards_only_what_is_left_and_honours_purchase_minimums(self, api):
        ModuleSettings.objects.update_or_create(pk=1, defaults={"auto_redeem": True})
        eve = CustomerFactory(external_id="eve", currency="EUR")
        card = CouponFactory(pool=GiftCardPoolFactory(value="100.00", currency="EUR"), code="CK-GC",
                             status=S.CLAIMED, customer=eve)
        minimum = CouponFactory(pool=PoolFactory(value="10.00", purchase_minimum="50.00"), code="CK-MIN",
                                status=S.CLAIMED, customer=eve)
        body = api.post("/api/v1/events", {"customer": "eve", "action": "checkout",
                                           "data": {"total": "30.00", "coupons": ["CK-MIN", "CK-GC"]}}, format="json").json()
        assert [(r["code"], r["result"]) for r in body["coupons"]] == [("CK-MIN", "refused"), ("CK-GC", "redeemed")]
        assert "minimum purchase of 50.00" in body["coupons"][0]["message"]
        card.refresh_from_db(), minimum.refresh_from_db()
        assert (card.balance, card.status) == (Decimal("70.00"), S.PARTIALLY_REDEEMED)
        assert minimum.status == S.CLAIMED

    def test_unknown_api_urls_and_odd_references_answer_in_json(self, api):
        for url in ("/api/v1/nope", "/api/v1/coupon-pools/", "/api/v1/coupon-pools/%C2%B2"):
            response = api.get(url)
            assert response.status_code == 404 and error(response)["type"] == "not_found", url
        nul = api.get("/api/v1/coupons", {"code": "A\x00B"})
        assert nul.status_code == 400 and "NUL" in error(nul)["message"]
        long_email = api.put("/api/v1/customers/c-1", {"email": "a" * 250 + "@example.com"}, format="json")
        assert long_email.status_code == 400 and error(long_email)["message"].startswith("email:")
        nul_group = api.post("/api/v1/coupon-pools", {"name": "X", "source": "uploaded", "type": "amount", "value": "1",
                                                      "user_group": "A\x00"}, format="json")
        assert nul_group.status_code == 400

    def test_codes_with_a_slash_can_be_read_and_validated(self, api):
        CouponFactory(code="SALE/0001", status=S.CLAIMED, customer=CustomerFactory(external_id="sl"))
        assert api.get("/api/v1/coupons/SALE/0001").json()["code"] == "SALE/0001"
        assert api.post("/api/v1/coupons/SALE/0001/validate", {"total": "20"}, format="json").json()["valid"] is True

    def test_a_repeat_claim_on_an_aggregated_pool_is_200_with_the_same_coupon(self, api):
        pool = PoolFactory(aggregated=True)
        CouponFactory(pool=pool, code="AG-1"), CouponFactory(pool=pool, code="AG-2")
        first = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "ann"}, format="json")
        again = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "ann"}, format="json")
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["code"] == first.json()["code"] and again.json()["claims"] == 2

    def test_a_claim_refuses_a_bad_currency_and_put_customer_trims_the_id(self, api):
        pool = PoolFactory()
        CouponFactory(pool=pool)
        bad = api.post(f"/api/v1/coupon-pools/{pool.pk}/claim", {"customer": "c", "currency": "1$"}, format="json")
        assert bad.status_code == 400 and error(bad)["message"].startswith("currency:")
        api.put("/api/v1/customers/%20trim-me%20", {"email": "t@example.com"}, format="json")
        assert Customer.objects.filter(external_id="trim-me").exists()

    def test_running_a_bulk_add_twice_gives_the_same_result(self, api):
        pool = PoolFactory()
        response = api.post(f"/api/v1/bulk-operation/coupons/{pool.pk}/add", {"coupons": ["RR-1", "RR-2", "RR-1"]},
                            format="json")
        operation_id = response.json()["id"]
        job_execute(kind="api_bulk", job_id=operation_id)
        # A run that did the work and died before it said so: interrupted, then resumed.
        BulkOperation.objects.filter(pk=operation_id).update(status="interrupted")
        job_resume(job=BulkOperation.objects.get(pk=operation_id), enqueue=False)
        job_execute(kind="api_bulk", job_id=operation_id)
        status = api.get(f"/api/v1/bulk-operation/coupons/{operation_id}/status").json()
        assert (status["succeeded"], status["failed"]) == (2, 1)
        assert [e["error_code"] for e in api.get(f"/api/v1/bulk-operation/coupons/{operation_id}/status/error").json()] == [
            "duplicate_in_request"]
        assert Coupon.objects.filter(pool=pool).count() == 2


def test_the_terms_cache_never_serves_another_pools_terms():
    from pools.selectors import terms_get

    first, second = PoolFactory(value="10.00"), PoolFactory(value="20.00")
    assert terms_get(first.current_terms_id, pool_id=first.pk).value == Decimal("10.00")
    # An id that came back for another pool (a restore, a reset sequence) is read again.
    from pools.selectors import _TERMS

    _TERMS[second.current_terms_id] = terms_get(first.current_terms_id, pool_id=first.pk)
    assert terms_get(second.current_terms_id, pool_id=second.pk).value == Decimal("20.00")


class TestBulkAddRuns:
    """A bulk ``add`` runs its import inside its own run: errors, resumes and cancels of
    the one reach the other."""

    def start(self, api, pool, codes):
        response = api.post(f"/api/v1/bulk-operation/coupons/{pool.pk}/add", {"coupons": codes}, format="json")
        return BulkOperation.objects.get(pk=response.json()["id"])

    def test_a_database_error_in_the_import_is_left_to_the_operations_retries(self, api, monkeypatch):
        from django.db import OperationalError

        from imports.services import runner as import_services

        pool = PoolFactory()
        operation = self.start(api, pool, ["DE-1", "DE-2"])
        real, calls = import_services.import_chunk, []

        def deadlocked_once(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise OperationalError("deadlock detected")
            return real(*args, **kwargs)

        monkeypatch.setattr(import_services, "import_chunk", deadlocked_once)
        with pytest.raises(OperationalError):
            job_execute(kind="api_bulk", job_id=operation.pk, retry_in=5)  # the task retries
        operation.refresh_from_db()
        assert operation.status == "queued" and operation.import_job.status == "queued"
        operation = job_execute(kind="api_bulk", job_id=operation.pk)  # the retry
        assert (operation.status, operation.succeeded, operation.import_job.status) == ("done", 2, "done")

    def test_an_import_that_failed_before_any_row_starts_again_when_the_operation_resumes(self, api, monkeypatch):
        from django.db import OperationalError

        from imports.services import runner as import_services

        pool = PoolFactory()
        operation = self.start(api, pool, ["FB-1", "FB-2"])
        real = import_services.import_chunk

        def database_gone(*args, **kwargs):
            raise OperationalError("gone")

        monkeypatch.setattr(import_services, "import_chunk", database_gone)
        # The operation's last attempt fails; its import, sent on its own by the sweeper, fails its last too.
        job_execute(kind="api_bulk", job_id=operation.pk, retry_in=None)
        operation.refresh_from_db()
        assert operation.status == "failed" and operation.can_resume
        job_execute(kind="import", job_id=operation.import_job_id, retry_in=None)
        operation.import_job.refresh_from_db()
        assert operation.import_job.status == "failed" and not operation.import_job.can_resume
        # When the database is back and a manager resumes the operation
        monkeypatch.setattr(import_services, "import_chunk", real)
        job_resume(job=operation, enqueue=False)
        operation = job_execute(kind="api_bulk", job_id=operation.pk)
        assert (operation.status, operation.succeeded) == ("done", 2)
        assert Coupon.objects.filter(pool=pool).count() == 2

    def cancelled_after_the_first_chunk(self, api, monkeypatch, pool, cancel):
        """Run an add of 8 codes, 2 rows a chunk; ``cancel(import_job, operation_id)`` after
        the first chunk, as a manager on the Jobs page would."""
        from imports.services import runner as import_services

        monkeypatch.setattr(import_services, "CHUNK", 2)
        operation = self.start(api, pool, [f"CX-{n}" for n in range(8)])
        real = import_services.import_chunk

        def chunk_then_cancel(job, *args, **kwargs):
            counts = real(job, *args, **kwargs)
            if job.cursor == 0:
                cancel(job, operation.pk)
            return counts

        monkeypatch.setattr(import_services, "import_chunk", chunk_then_cancel)
        return job_execute(kind="api_bulk", job_id=operation.pk)

    def test_cancelling_the_operation_cancels_its_import_and_says_what_was_done(self, api, monkeypatch):
        from coupons.jobs.engine import job_cancel

        pool = PoolFactory()
        operation = self.cancelled_after_the_first_chunk(
            api, monkeypatch, pool, lambda job, pk: job_cancel(job=BulkOperation.objects.get(pk=pk)))
        assert operation.status == "cancelled" and operation.import_job.status == "cancelled"
        created = Coupon.objects.filter(pool=pool).count()
        assert 0 < created < 8 and operation.processed == operation.succeeded == created

    def test_an_import_cancelled_on_its_own_fails_its_operation_saying_so(self, api, monkeypatch):
        from coupons.jobs.engine import job_cancel

        pool = PoolFactory()
        operation = self.cancelled_after_the_first_chunk(api, monkeypatch, pool, lambda job, pk: job_cancel(job=job))
        assert operation.status == "failed"
        assert operation.message.startswith(f"Import #{operation.import_job_id} of the codes was cancelled")
        assert operation.succeeded == Coupon.objects.filter(pool=pool).count() > 0

    @pytest.mark.django_db(transaction=True)
    def test_with_the_broker_down_the_answer_says_it_is_queued(self, api, monkeypatch):
        from kombu.exceptions import OperationalError as BrokerDown

        from coupons.jobs import engine

        def down(*args, **kwargs):
            raise BrokerDown("Connection refused")

        monkeypatch.setattr(engine.current_app, "send_task", down)
        response = api.post(f"/api/v1/bulk-operation/coupons/{PoolFactory().pk}/add", {"coupons": ["BD-1"]}, format="json")
        assert response.status_code == 202
        assert (response.json()["status"], response.json()["message"]) == ("queued", engine.QUEUE_UNREACHABLE)

    def test_a_retry_takes_back_the_import_it_left_running_when_the_database_went_away(self, api, monkeypatch):
        from django.db import OperationalError

        from coupons.jobs import engine
        from imports.services import runner as import_services

        pool = PoolFactory()
        operation = self.start(api, pool, ["TB-1", "TB-2"])
        real_chunk, real_requeue = import_services.import_chunk, engine._requeue

        def connection_lost(*args, **kwargs):
            raise OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(import_services, "import_chunk", connection_lost)
        monkeypatch.setattr(engine, "_requeue", lambda *args: None)  # nothing could be written
        with pytest.raises(OperationalError):
            job_execute(kind="api_bulk", job_id=operation.pk, retry_in=5)
        operation.refresh_from_db()
        assert operation.status == "running" and operation.import_job.status == "running"
        monkeypatch.setattr(import_services, "import_chunk", real_chunk)
        monkeypatch.setattr(engine, "_requeue", real_requeue)
        # The task's retry carries the operation's token: it takes both back
        operation = job_execute(kind="api_bulk", job_id=operation.pk, runner=operation.runner)
        assert (operation.status, operation.succeeded, operation.attempts) == ("done", 2, 2)
        assert operation.import_job.attempts == 2

    def test_cancelling_an_interrupted_operation_records_what_its_import_did(self, api, monkeypatch):
        from coupons.jobs.engine import job_cancel
        from imports.services import runner as import_services

        monkeypatch.setattr(import_services, "CHUNK", 2)
        pool = PoolFactory()
        operation = self.start(api, pool, [f"IR-{n}" for n in range(6)])

        class Killed(BaseException):  # the worker dies mid-import
            pass

        real = import_services.import_chunk

        def killed_after_a_chunk(job, *args, **kwargs):
            if job.cursor:
                raise Killed
            return real(job, *args, **kwargs)

        monkeypatch.setattr(import_services, "import_chunk", killed_after_a_chunk)
        with pytest.raises(Killed):
            job_execute(kind="api_bulk", job_id=operation.pk)
        # The watchdog marks the operation interrupted; its import still says running (stale)
        from datetime import timedelta as delta

        from django.utils import timezone

        stale = timezone.now() - delta(hours=1)
        BulkOperation.objects.filter(pk=operation.pk).update(status="interrupted")
        operation.refresh_from_db()
        type(operation.import_job).objects.filter(pk=operation.import_job_id).update(heartbeat_at=stale)
        operation = job_cancel(job=BulkOperation.objects.get(pk=operation.pk), user=UserFactory(username="carla"))
        operation.refresh_from_db()
        added = Coupon.objects.filter(pool=pool).count()
        assert operation.status == "cancelled" and operation.succeeded == added > 0
        assert operation.import_job.status == "cancelled" and operation.import_job.message.startswith("Cancelled by carla")
