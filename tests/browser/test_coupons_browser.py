"""A manager works the Coupons tab in a real browser."""

import re

import pytest
from playwright.sync_api import expect

from coupons.models import Coupon, CouponStatus
from tests.browser.conftest import login
from tests.factories import CouponFactory, CustomerFactory, PoolFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = CouponStatus


def row(page, code):
    return page.get_by_role("row", name=re.compile(re.escape(code)))


def test_row_action_bulk_action_transfer_and_customer_events(page):
    # Given a pool with claimed and unassigned coupons, and two customers
    UserFactory(username="eva")
    pool = PoolFactory(name="Welcome 10 off")
    anna = CustomerFactory(external_id="ANNA-1", email="anna@example.com")
    bob = CustomerFactory(external_id="BOB-2", email="bob@example.com")
    claimed = CouponFactory(pool=pool, code="WELCOME-CLAIMED", status=S.CLAIMED, customer=anna)
    spare = [CouponFactory(pool=pool, code=f"WELCOME-SPARE-{n}") for n in range(3)]
    login(page, "eva")
    page.goto(f"/pools/{pool.pk}/coupons/")
    expect(page).to_have_title(re.compile("Coupons · Welcome 10 off"))

    # When she redeems the claimed coupon from its hamburger menu, confirming the dialog
    row(page, "WELCOME-CLAIMED").get_by_role("button", name="Actions for WELCOME-CLAIMED").click()
    menu = row(page, "WELCOME-CLAIMED").get_by_role("button", name="Redeem")
    expect(row(page, "WELCOME-CLAIMED").locator("[data-row-action]")).to_have_count(4)
    menu.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Redeem coupon WELCOME-CLAIMED?")
    dialog.get_by_role("button", name="Redeem").click()
    expect(page.get_by_role("alert")).to_contain_text("Coupon WELCOME-CLAIMED redeemed.")
    expect(row(page, "WELCOME-CLAIMED")).to_contain_text("Redeemed")

    # And unredeems it again, then transfers it to Bob by email
    row(page, "WELCOME-CLAIMED").get_by_role("button", name="Actions for WELCOME-CLAIMED").click()
    row(page, "WELCOME-CLAIMED").get_by_role("button", name="Mark as unredeemed").click()
    page.get_by_role("dialog").get_by_role("button", name="Mark as unredeemed").click()
    expect(row(page, "WELCOME-CLAIMED")).to_contain_text("Claimed")
    row(page, "WELCOME-CLAIMED").get_by_role("button", name="Actions for WELCOME-CLAIMED").click()
    row(page, "WELCOME-CLAIMED").get_by_role("button", name="Transfer").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Target customer email").fill("bob@example.com")
    dialog.get_by_role("button", name="Transfer").click()
    expect(page.get_by_role("alert")).to_contain_text("Coupon WELCOME-CLAIMED transferred.")
    expect(row(page, "WELCOME-CLAIMED")).to_contain_text("BOB-2")

    # And invalidates two ticked coupons with the bulk button (plus one that is refused)
    invalidate = page.get_by_role("button", name="Invalidate selected")
    expect(invalidate).to_be_disabled()
    row(page, spare[0].code).get_by_role("checkbox").check()
    row(page, spare[1].code).get_by_role("checkbox").check()
    expect(invalidate).to_be_enabled()
    invalidate.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Invalidate 2 selected coupons?")
    dialog.get_by_role("button", name="Invalidate").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalidated 2 coupons.")
    expect(row(page, spare[0].code)).to_contain_text("Invalid")
    expect(row(page, spare[2].code)).to_contain_text("Not claimed yet")

    # Then the database agrees
    statuses = dict(Coupon.objects.filter(pool=pool).values_list("code", "status"))
    assert statuses == {"WELCOME-CLAIMED": S.CLAIMED, spare[0].code: S.INVALID, spare[1].code: S.INVALID,
                        spare[2].code: S.UNASSIGNED}
    claimed.refresh_from_db()
    assert claimed.customer == bob

    # And Anna's page shows her history, newest first
    page.get_by_role("link", name="Customers").click()
    page.get_by_role("searchbox", name="Search").fill("ANNA")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="ANNA-1").click()
    events = page.get_by_test_id("events").locator("tbody tr")
    expect(events).to_have_count(3)
    expect(events.nth(0)).to_contain_text("coupon_transfer")
    expect(events.nth(0)).to_contain_text("To customer BOB-2.")
    expect(events.nth(1)).to_contain_text("coupon_unredeem")
    expect(events.nth(2)).to_contain_text("coupon_redeem")
    expect(events.nth(2)).to_contain_text("eva")


def test_select_all_matching_and_assign_from_the_customer_page(page, monkeypatch):
    from coupons import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)  # the live server runs in this process
    UserFactory(username="eva")
    pool = PoolFactory(name="Autumn")
    for n in range(4):
        CouponFactory(pool=pool, code=f"AUTUMN-{n}", status=S.CLAIMED)
    spare = CouponFactory(pool=pool, code="AUTUMN-SPARE")
    carl = CustomerFactory(external_id="CARL-3")
    login(page, "eva")

    # Ticking the page's box offers all 4 matching coupons, not just the 2 shown
    page.goto(f"/pools/{pool.pk}/coupons/?status=claimed")
    expect(page.get_by_test_id("matching")).to_have_text("4 coupons match")
    page.locator("#select-page").check()
    page.get_by_role("button", name="Select all 4 matching coupons").click()
    expect(page.get_by_text("All 4 matching coupons are selected.")).to_be_visible()
    page.get_by_role("button", name="Redeem selected", exact=True).click()
    expect(page.get_by_role("dialog")).to_contain_text("Redeem all 4 matching coupons?")
    page.get_by_role("dialog").get_by_role("button", name="Redeem").click()
    expect(page.get_by_role("alert")).to_contain_text("Redeemed 4 coupons.")
    assert Coupon.objects.filter(pool=pool, status=S.REDEEMED).count() == 4
    assert Coupon.objects.get(pk=spare.pk).status == S.UNASSIGNED  # outside the filter

    # Assigning from the customer page issues the pool's next coupon
    page.goto(f"/customers/{carl.pk}/")
    page.get_by_label("Assign a coupon from pool…").select_option(label="Autumn")
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_role("alert")).to_contain_text("Coupon AUTUMN-SPARE from “Autumn” assigned to CARL-3.")
    expect(page.get_by_test_id("events").locator("tbody tr").first).to_contain_text("coupon_claim")
    assert Coupon.objects.get(pk=spare.pk).customer == carl
