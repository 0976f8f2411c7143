"""Dialogs that keep what was typed, bulk dialogs that count first, and the pool form's
locked source, in a real browser."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from coupons.models import Coupon, CouponStatus
from pools.models import PoolSource
from tests.browser.conftest import login
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory, PoolFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = CouponStatus


def row(page, code):
    return page.get_by_role("row", name=re.compile(re.escape(code)))


def actions(page):
    """A coupon's page's action buttons."""
    return page.get_by_role("group", name="Actions for this coupon")


def open_row_action(page, code, action):
    row(page, code).get_by_role("button", name=f"Actions for {code}").click()
    row(page, code).get_by_role("button", name=action).click()
    return page.get_by_role("dialog")


def test_a_transfer_to_an_unknown_customer_keeps_the_input_until_corrected(page):
    # Given a claimed coupon of Anna's, and Bob
    UserFactory(username="eva")
    pool = PoolFactory(name="Spring")
    anna = CustomerFactory(external_id="ANNA-1")
    bob = CustomerFactory(external_id="BOB-2")
    coupon = CouponFactory(pool=pool, code="SPRING-1", status=S.CLAIMED, customer=anna)
    login(page, "eva")
    page.goto(f"/pools/{pool.pk}/coupons/")

    # When Eva transfers it to a customer ID that does not exist
    dialog = open_row_action(page, "SPRING-1", "Transfer")
    dialog.get_by_label("Target customer ID").fill("BOB-9")
    dialog.get_by_role("button", name="Transfer").click()

    # Then the dialog stays open with her text and the reason next to it; no page alert
    expect(dialog).to_contain_text("No customer has the ID BOB-9.")
    expect(dialog.get_by_label("Target customer ID")).to_have_value("BOB-9")
    expect(dialog.get_by_label("Target customer ID")).to_be_focused()
    expect(page.locator(".alert-danger").filter(has_text="BOB-9")).to_have_count(0)
    assert Coupon.objects.get(pk=coupon.pk).customer == anna

    # When she corrects it, the transfer is done
    dialog.get_by_label("Target customer ID").fill("BOB-2")
    dialog.get_by_role("button", name="Transfer").click()
    expect(page.get_by_role("alert")).to_contain_text("Coupon SPRING-1 transferred.")
    expect(row(page, "SPRING-1")).to_contain_text("BOB-2")
    assert Coupon.objects.get(pk=coupon.pk).customer == bob


def test_a_gift_card_amount_too_high_stays_in_the_dialog(page):
    UserFactory(username="eva")
    pool = GiftCardPoolFactory(name="Gift", value="50.00")
    CouponFactory(pool=pool, code="GIFT-1", status=S.CLAIMED)
    login(page, "eva")
    page.goto(f"/pools/{pool.pk}/coupons/")
    dialog = open_row_action(page, "GIFT-1", "Redeem")
    dialog.get_by_label("Amount").fill("80")
    dialog.get_by_role("button", name="Redeem").click()
    expect(dialog).to_contain_text("The gift card's balance is 50.00; 80.00 cannot be taken from it.")
    expect(dialog.get_by_label("Amount")).to_have_value("80")
    dialog.get_by_label("Amount").fill("20")
    dialog.get_by_role("button", name="Redeem").click()
    expect(page.get_by_role("alert")).to_contain_text("Coupon GIFT-1 redeemed.")
    expect(row(page, "GIFT-1")).to_contain_text("Partially redeemed")


def test_the_bulk_dialog_says_how_many_are_applied_and_skipped_before_confirming(page):
    UserFactory(username="eva")
    pool = PoolFactory(name="Autumn")
    fresh = [CouponFactory(pool=pool, code=f"AUTUMN-{n}") for n in range(2)]
    used = CouponFactory(pool=pool, code="AUTUMN-USED", status=S.REDEEMED)
    login(page, "eva")
    page.goto(f"/pools/{pool.pk}/coupons/")
    for coupon in (*fresh, used):
        row(page, coupon.code).get_by_role("checkbox").check()
    page.get_by_role("button", name="Invalidate selected").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Invalidate 3 selected coupons?")
    expect(dialog.get_by_test_id("bulk-preview")).to_contain_text("2 coupons will be invalidated.")
    expect(dialog.get_by_test_id("bulk-preview")).to_contain_text("1 is skipped: already redeemed.")
    expect(dialog.get_by_role("button", name="Invalidate")).to_have_class(re.compile(r"\bbtn-danger\b"))
    dialog.get_by_role("button", name="Invalidate").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalidated 2 coupons. Skipped 1: 1 already redeemed.")
    assert Coupon.objects.filter(pool=pool, status=S.INVALID).count() == 2

    # A selection the action cannot change says so, and cannot be confirmed
    row(page, "AUTUMN-USED").get_by_role("checkbox").check()
    page.get_by_role("button", name="Unassign selected").click()
    expect(dialog.get_by_test_id("bulk-preview")).to_contain_text("No selected coupon can be unassigned.")
    expect(dialog.get_by_role("button", name="Unassign")).to_be_disabled()


def test_the_pool_form_shows_why_the_source_is_locked(page):
    UserFactory(username="eva")
    pool = PoolFactory(name="Uploaded codes", source=PoolSource.UPLOADED)
    for n in range(31):
        CouponFactory(pool=pool, code=f"UPL-{n:02d}")
    login(page, "eva")
    page.goto(reverse("pools:edit", args=[pool.pk]))
    expect(page.get_by_text("This pool holds 31 coupons; its source can no longer change.")).to_be_visible()
    expect(page.get_by_role("radio", name="Generated")).to_be_disabled()
    expect(page.get_by_role("radio", name="Uploaded")).to_be_checked()
    page.locator("#id_name").fill("Uploaded codes (spring)")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert").first).to_contain_text("saved")
    pool.refresh_from_db()
    assert (pool.name, pool.source) == ("Uploaded codes (spring)", PoolSource.UPLOADED)


def test_a_refused_transfer_on_a_coupons_page_stays_in_its_dialog(page):
    # Given Anna's coupon, its page open, and Bob
    UserFactory(username="eva")
    pool = PoolFactory(name="Spring")
    anna = CustomerFactory(external_id="ANNA-1")
    bob = CustomerFactory(external_id="BOB-2")
    coupon = CouponFactory(pool=pool, code="SPRING-7", status=S.CLAIMED, customer=anna)
    login(page, "eva")
    detail = reverse("coupons:coupon_detail", args=[coupon.pk])
    page.goto(detail)

    # When Eva transfers it to a customer ID that does not exist
    actions(page).get_by_role("button", name="Transfer").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Target customer ID").fill("BOB-9")
    dialog.get_by_role("button", name="Transfer").click()

    # Then the dialog keeps her text with the reason next to it (no "Something went wrong")
    expect(dialog).to_contain_text("No customer has the ID BOB-9.")
    expect(dialog.get_by_label("Target customer ID")).to_have_value("BOB-9")
    expect(dialog.get_by_label("Target customer ID")).to_be_focused()
    expect(dialog).not_to_contain_text("Something went wrong")
    expect(page.get_by_test_id("htmx-error")).to_be_hidden()
    assert Coupon.objects.get(pk=coupon.pk).customer == anna

    # When she corrects it, the transfer is done and she is back on the coupon's page
    dialog.get_by_label("Target customer ID").fill("BOB-2")
    dialog.get_by_role("button", name="Transfer").click()
    expect(page.get_by_role("alert")).to_contain_text("Coupon SPRING-7 transferred.")
    expect(page).to_have_url(re.compile(re.escape(detail) + "$"))
    expect(page.get_by_test_id("coupon")).to_contain_text("BOB-2")
    assert Coupon.objects.get(pk=coupon.pk).customer == bob


def test_a_gift_card_amount_too_high_stays_in_the_dialog_on_its_page(page):
    UserFactory(username="eva")
    pool = GiftCardPoolFactory(name="Gift", value="50.00")
    coupon = CouponFactory(pool=pool, code="GIFT-7", status=S.CLAIMED)
    login(page, "eva")
    page.goto(reverse("coupons:coupon_detail", args=[coupon.pk]))
    actions(page).get_by_role("button", name="Redeem").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Amount").fill("80")
    dialog.get_by_role("button", name="Redeem").click()
    expect(dialog).to_contain_text("The gift card's balance is 50.00; 80.00 cannot be taken from it.")
    expect(dialog.get_by_label("Amount")).to_have_value("80")
    expect(dialog.get_by_label("Amount")).to_be_focused()
    dialog.get_by_label("Amount").fill("20")
    dialog.get_by_role("button", name="Redeem").click()
    expect(page.get_by_role("alert")).to_contain_text("Coupon GIFT-7 redeemed.")
    expect(page.get_by_test_id("coupon")).to_contain_text("Partially redeemed")


def test_a_reopened_dialog_shows_loading_until_its_own_coupon_arrives(page):
    # Given two coupons, the first one's Invalidate dialog opened, then closed
    UserFactory(username="eva")
    pool = PoolFactory(name="Spring")
    CouponFactory(pool=pool, code="SPRING-A")
    CouponFactory(pool=pool, code="SPRING-B")
    login(page, "eva")
    page.goto(f"/pools/{pool.pk}/coupons/")
    dialog = open_row_action(page, "SPRING-A", "Invalidate")
    expect(dialog).to_contain_text("Invalidate coupon SPRING-A?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    # The focus is back on the row's menu button
    expect(row(page, "SPRING-A").get_by_role("button", name="Actions for SPRING-A")).to_be_focused()

    # When the second one's dialog is opened while its answer is held back
    held = []
    page.route(re.compile(r"/invalidate/\?"), lambda route: held.append(route))
    dialog = open_row_action(page, "SPRING-B", "Invalidate")

    # Then it shows "Loading…" with nothing to confirm, not the first coupon's dialog
    expect(dialog).to_contain_text("Loading")
    expect(dialog).not_to_contain_text("SPRING-A")
    expect(dialog.get_by_role("button", name="Invalidate")).to_have_count(0)
    expect(dialog.get_by_role("button", name="Confirm")).to_be_disabled()

    # And once the answer comes, the second coupon's dialog
    for _ in range(50):  # the request reaches the route
        if held:
            break
        page.wait_for_timeout(100)
    assert len(held) == 1
    held[0].continue_()
    expect(dialog).to_contain_text("Invalidate coupon SPRING-B?")
    expect(dialog.get_by_role("button", name="Invalidate")).to_be_enabled()
