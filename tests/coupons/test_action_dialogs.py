"""The row action dialog keeps what was typed and shows a refusal inside it (coupons/views.py
CouponActionView); the bulk dialog counts what would be applied and skipped first
(coupons/bulk.py bulk_preview, PoolCouponsBulkPreviewView)."""

from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from coupons import bulk
from coupons.bulk import BULK_ACTIONS, BulkPreview
from coupons.models import Coupon, CouponJob, CouponStatus, CustomerEvent
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db
S = CouponStatus
HTMX = {"HTTP_HX_REQUEST": "true"}


class TestDialogRefusals:
    def test_a_transfer_to_an_unknown_customer_comes_back_in_the_dialog(self, manager_client):
        # Given a claimed coupon
        coupon = CouponFactory(status=S.CLAIMED)
        owner = coupon.customer
        url = reverse("coupons:coupon_action", args=[coupon.pk, "transfer"])
        # When the manager transfers it to a customer ID nobody has
        response = manager_client.post(url, {"customer_id": "NOBODY-9", "email": "", "next": "/pools/"}, **HTMX)
        # Then the dialog comes back (422) with the typed ID and the reason on that field
        assert response.status_code == 422
        html = response.content.decode()
        assert 'name="customer_id" value="NOBODY-9"' in html
        assert "No customer has the ID NOBODY-9." in html and 'aria-invalid="true"' in html
        assert response.context["form"].errors["customer_id"] == ["No customer has the ID NOBODY-9."]
        assert 'hx-post="' in html and "Transfer coupon" in html
        # And nothing changed in the database
        coupon.refresh_from_db()
        assert coupon.customer == owner and not CustomerEvent.objects.filter(coupon_id=coupon.pk).exists()

    def test_after_the_correction_the_transfer_is_done_and_the_page_reloads(self, manager_client):
        coupon = CouponFactory(status=S.CLAIMED)
        target = CustomerFactory(external_id="REAL-1")
        url = reverse("coupons:coupon_action", args=[coupon.pk, "transfer"])
        response = manager_client.post(url, {"customer_id": "REAL-1", "next": "/pools/"}, **HTMX)
        assert response.status_code == 200 and response["HX-Redirect"] == "/pools/"
        assert Coupon.objects.get(pk=coupon.pk).customer == target
        assert f"Coupon {coupon.code} transferred." in manager_client.get("/pools/").content.decode()

    def test_an_email_that_finds_nobody_is_shown_on_the_email_field(self, manager_client):
        coupon = CouponFactory(status=S.CLAIMED)
        url = reverse("coupons:coupon_action", args=[coupon.pk, "transfer"])
        response = manager_client.post(url, {"email": "nobody@example.com"}, **HTMX)
        assert response.status_code == 422
        assert response.context["form"].errors["email"] == ["No customer has the email nobody@example.com."]
        assert 'value="nobody@example.com"' in response.content.decode()

    def test_an_empty_transfer_says_so_inside_the_dialog(self, manager_client):
        coupon = CouponFactory(status=S.CLAIMED)
        response = manager_client.post(reverse("coupons:coupon_action", args=[coupon.pk, "transfer"]), {}, **HTMX)
        assert response.status_code == 422
        assert 'data-testid="dialog-error"' in response.content.decode()
        assert response.context["form"].non_field_errors() == ["Enter the target customer's ID, email, or both."]
        assert "Enter the target customer&#x27;s ID, email, or both." in response.content.decode()

    def test_a_gift_card_amount_too_high_keeps_the_amount(self, manager_client):
        card = CouponFactory(pool=GiftCardPoolFactory(value="50.00"), status=S.CLAIMED)
        url = reverse("coupons:coupon_action", args=[card.pk, "redeem"])
        response = manager_client.post(url, {"amount": "80"}, **HTMX)
        assert response.status_code == 422
        html = response.content.decode()
        assert 'name="amount" value="80"' in html
        assert response.context["form"].errors["amount"] == ["The gift card's balance is 50.00; 80.00 cannot be taken from it."]
        assert "balance is <strong>50.00 EUR</strong>" in html
        card.refresh_from_db()
        assert (card.status, card.balance) == (S.CLAIMED, None)

    def test_an_invalid_amount_is_a_field_error_in_the_dialog(self, manager_client):
        card = CouponFactory(pool=GiftCardPoolFactory(value="50.00"), status=S.CLAIMED)
        response = manager_client.post(reverse("coupons:coupon_action", args=[card.pk, "redeem"]), {"amount": "-1"}, **HTMX)
        assert response.status_code == 422
        assert "greater than or equal to 0.01" in response.context["form"].errors["amount"][0]
        assert 'value="-1"' in response.content.decode()

    def test_a_refusal_without_a_form_is_shown_above_the_confirmation(self, manager_client):
        coupon = CouponFactory(status=S.EXPIRED)
        response = manager_client.post(reverse("coupons:coupon_action", args=[coupon.pk, "redeem"]), {}, **HTMX)
        assert response.status_code == 422
        html = response.content.decode()
        assert "Only claimed coupons can be redeemed; this one is expired." in html and 'data-testid="dialog-error"' in html
        assert Coupon.objects.get(pk=coupon.pk).status == S.EXPIRED

    def test_without_javascript_a_refusal_goes_back_to_the_list_with_the_reason(self, manager_client):
        card = CouponFactory(pool=GiftCardPoolFactory(value="50.00"), status=S.CLAIMED)
        response = manager_client.post(reverse("coupons:coupon_action", args=[card.pk, "redeem"]), {"amount": "80"}, follow=True)
        assert "cannot be taken from it" in response.content.decode()
        assert Coupon.objects.get(pk=card.pk).balance is None


def preview(client, pool, **params):
    return client.get(reverse("coupons:pool_coupons_bulk_preview", args=[pool.pk]), params)


class TestBulkPreview:
    def test_all_matching_counts_applied_and_skipped_with_reasons(self, manager_client):
        pool = PoolFactory()
        for status in (S.UNASSIGNED, S.CLAIMED, S.CLAIMED, S.REDEEMED, S.INVALID):
            CouponFactory(pool=pool, status=status)
        CouponFactory(status=S.CLAIMED)  # another pool's
        response = preview(manager_client, pool, action="invalidate", select_all="1")
        assert response.status_code == 200
        assert response.context["sentences"] == [
            "3 coupons will be invalidated.", "2 are skipped: 1 already redeemed, 1 already invalid."]
        assert 'data-applied="3"' in response.content.decode()

    def test_ticked_coupons_within_the_filters(self, manager_client):
        pool = PoolFactory()
        claimed = CouponFactory(pool=pool, status=S.CLAIMED)
        redeemed = CouponFactory(pool=pool, status=S.REDEEMED)
        unassigned = CouponFactory(pool=pool)
        foreign = CouponFactory(status=S.CLAIMED)
        response = preview(manager_client, pool, action="redeem", selected=[claimed.pk, redeemed.pk, foreign.pk])
        assert response.context["sentences"] == ["1 coupon will be redeemed.", "1 is skipped: already redeemed."]
        filtered = preview(manager_client, pool, action="unassign", status="claimed",
                           selected=[claimed.pk, unassigned.pk])
        assert filtered.context["sentences"] == ["1 coupon will be unassigned.", "None is skipped."]

    def test_nothing_to_apply_is_said_and_blocks_the_confirmation(self, manager_client):
        pool = PoolFactory()
        CouponFactory(pool=pool, status=S.REDEEMED)
        response = preview(manager_client, pool, action="redeem", select_all="1")
        assert response.context["sentences"] == ["No selected coupon can be redeemed.", "1 is skipped: already redeemed."]
        assert 'data-applied="0"' in response.content.decode()

    def test_gift_cards_follow_their_own_rule(self, manager_client):
        pool = GiftCardPoolFactory(value="50.00")
        CouponFactory(pool=pool, status=S.PARTIALLY_REDEEMED, balance=Decimal("10.00"))
        CouponFactory(pool=pool, status=S.CLAIMED)
        CouponFactory(pool=pool)
        response = preview(manager_client, pool, action="redeem", select_all="1")
        assert response.context["sentences"] == ["2 coupons will be redeemed.", "1 is skipped: not claimed yet."]

    def test_bad_selections(self, manager_client):
        pool = PoolFactory()
        assert "Tick at least one coupon first." in preview(manager_client, pool, action="invalidate").content.decode()
        bad = preview(manager_client, pool, action="invalidate", select_all="1", claimed_from="nope")
        assert "The filters are not valid" in bad.content.decode() and 'data-applied="0"' in bad.content.decode()
        assert preview(manager_client, pool, action="delete", select_all="1").status_code == 400

    def test_needs_the_change_permission(self, client):
        pool = PoolFactory()
        client.force_login(UserFactory(username="viewer", manager=False))
        assert preview(client, pool, action="invalidate", select_all="1").status_code == 403

    def test_one_bounded_group_by_counts_the_selection(self, manager_client, django_assert_max_num_queries):
        # Given a search by customer ID
        pool = PoolFactory()
        holder = CustomerFactory(external_id="HOLDER-1")
        for status in (S.CLAIMED, S.CLAIMED, S.REDEEMED, S.UNASSIGNED):
            CouponFactory(pool=pool, status=status, customer=holder if status != S.UNASSIGNED else None)
        # When the dialog opens: session, user, pool, gift terms, the customer search, then the count
        with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(8):
            response = preview(manager_client, pool, action="invalidate", select_all="1", q="HOLDER-1")
        # Then one GROUP BY over at most PREVIEW_LIMIT + 1 rows read the coupons, no EXPLAIN
        on_coupons = [q["sql"] for q in queries.captured_queries if "coupons_coupon" in q["sql"]]
        assert len(on_coupons) == 1 and "GROUP BY" in on_coupons[0] and f"LIMIT {bulk.PREVIEW_LIMIT + 1}" in on_coupons[0]
        assert response.context["sentences"] == ["2 coupons will be invalidated.", "1 is skipped: already redeemed."]

    def test_past_the_limit_the_counts_are_estimates_with_the_gift_card_rule(self, manager_client, monkeypatch):
        # Given a gift-card pool whose selection is past the (lowered) limit
        monkeypatch.setattr(bulk, "PREVIEW_LIMIT", 2)
        pool = GiftCardPoolFactory(value="50.00")
        CouponFactory.create_batch(3, pool=pool, status=S.PARTIALLY_REDEEMED, balance=Decimal("10.00"))
        CouponFactory(pool=pool, status=S.REDEEMED)
        # When the dialog opens
        with CaptureQueriesContext(connection) as queries:
            response = preview(manager_client, pool, action="invalidate", select_all="1")
        # Then one EXPLAIN estimates every status, and the part-spent cards still count as applied
        on_coupons = [q["sql"] for q in queries.captured_queries if "coupons_coupon" in q["sql"]]
        assert len(on_coupons) == 2 and on_coupons[1].startswith("EXPLAIN") and "count(" not in on_coupons[1].lower()
        result = response.context["preview"]
        assert result.estimated and result.applied >= 3 and set(result.skipped) <= {"already redeemed", "already invalid",
                                                                                  "already expired", "not claimed yet"}
        assert response.context["sentences"][0].startswith("About ")
        # And the same selection applied counts it exactly, as before
        monkeypatch.setattr(bulk, "PREVIEW_LIMIT", 100_000)
        exact = preview(manager_client, pool, action="invalidate", select_all="1")
        assert exact.context["sentences"] == ["3 coupons will be invalidated.", "1 is skipped: already redeemed."]


class TestOneBackgroundDecision:
    def test_the_dialog_and_the_submit_decide_alike(self, manager_client, monkeypatch):
        monkeypatch.setattr(bulk, "ASYNC_THRESHOLD", 3)
        pool = PoolFactory()
        CouponFactory.create_batch(2, pool=pool, status=S.CLAIMED)
        CouponFactory.create_batch(2, pool=pool, status=S.REDEEMED)  # skipped ones count too: the job walks them
        url = reverse("coupons:pool_coupons_bulk", args=[pool.pk])
        # 4 selected: the dialog says "in the background" and the submit makes a job of 4
        dialog = preview(manager_client, pool, action="invalidate", select_all="1")
        assert dialog.context["preview"].background and "in the background" in dialog.context["sentences"][-1]
        manager_client.post(url, {"action": "invalidate", "select_all": "1", "submission": "one"})
        assert CouponJob.objects.get().total == 4
        # 3 selected: neither the dialog nor the submit goes to the background
        CouponJob.objects.all().delete()
        narrowed = {"action": "invalidate", "status": "claimed", "select_all": "1"}
        CouponFactory(pool=pool, status=S.CLAIMED)
        dialog = preview(manager_client, pool, **narrowed)
        assert not dialog.context["preview"].background
        response = manager_client.post(url, {**narrowed, "submission": "two"}, follow=True)
        assert not CouponJob.objects.exists() and "Invalidated 3 coupons." in response.content.decode()

    def test_the_rule_is_the_threshold(self, monkeypatch):
        monkeypatch.setattr(bulk, "ASYNC_THRESHOLD", 10)
        assert not bulk.runs_in_background(10) and bulk.runs_in_background(11)
        assert BulkPreview(applied=6, skipped=Counter({"already redeemed": 5})).background


def test_estimated_counts_read_about_and_large_ones_say_background():
    action = BULK_ACTIONS["invalidate"]
    result = BulkPreview(applied=10_204, skipped=Counter({"already redeemed": 37}), estimated=True)  # past ASYNC_THRESHOLD
    assert result.sentences(action) == [
        "About 10,204 coupons will be invalidated.", "About 37 are skipped: already redeemed.",
        "They are changed in the background; the list refreshes when they are done."]
    assert BulkPreview(applied=1).sentences(action) == ["1 coupon will be invalidated.", "None is skipped."]
