"""From the pool list to a pool's overview, its Coupons tab and a coupon's detail, in a
real browser; a coupon's action from its detail page."""

import re

import pytest
from playwright.sync_api import expect

from coupons.models import Coupon, CouponStatus
from coupons.services import Actor, coupon_claim
from tests.browser.conftest import login
from tests.factories import CouponFactory, CustomerFactory, PoolFactory, ProductFactory, StoreFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = CouponStatus


def test_pool_list_to_overview_to_coupons_to_a_coupon(page):
    # Given a pool restricted to a store and a product, with three coupons, one claimed
    UserFactory(username="eva")
    store = StoreFactory(name="Berlin Mitte", external_id="BER-MITTE")
    product = ProductFactory(name="Running shoes", sku="SHOE-42")
    pool = PoolFactory(name="Spring 5 off", value="5.00", purchase_minimum="25.00", stores=[store], products=[product],
                       pass_template="spring-wallet", expiration_period_count=30, expiration_period_unit="day")
    for n in range(3):
        CouponFactory(pool=pool, code=f"SPRING-{n}")
    claimed = coupon_claim(pool=pool, customer=CustomerFactory(external_id="ANNA-1"), actor=Actor.system())
    login(page, "eva")

    # When Eva reads the pool list, the pool's stock is in its row
    row = page.get_by_role("row", name=re.compile("Spring 5 off"))
    expect(row).to_contain_text("2 unassigned")

    # And its name leads to the overview: counts per status and the terms the API enforces
    row.get_by_role("link", name="Spring 5 off").click()
    expect(page).to_have_title(re.compile("^Spring 5 off"))
    expect(page.locator(".nav-tabs").get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    expect(page.get_by_test_id("overview-count-unassigned")).to_contain_text("2")
    expect(page.get_by_test_id("overview-count-claimed")).to_contain_text("1")
    terms = page.get_by_test_id("terms")
    expect(terms).to_contain_text("baskets of at least 25.00")
    expect(terms).to_contain_text("Berlin Mitte BER-MITTE")
    expect(terms).to_contain_text("Running shoes SHOE-42")
    expect(terms).to_contain_text("spring-wallet")
    expect(terms).to_contain_text("30 days after the claim")

    # And a status card leads to the Coupons tab filtered by it; the code to the coupon
    page.get_by_test_id("overview-count-claimed").click()
    expect(page).to_have_title(re.compile("Coupons · Spring 5 off"))
    expect(page.get_by_role("row")).to_have_count(2)  # the header and the claimed coupon
    page.get_by_role("link", name=claimed.code).click()

    # Then the coupon's page shows its holder, restrictions and events
    expect(page).to_have_title(re.compile(f"Coupon {claimed.code}"))
    expect(page.get_by_test_id("coupon")).to_contain_text("ANNA-1")
    restrictions = page.get_by_test_id("restrictions")
    expect(restrictions).to_contain_text("BER-MITTE")
    expect(restrictions).to_contain_text("SHOE-42")
    events = page.get_by_test_id("events").locator("tbody tr")
    expect(events).to_have_count(1)
    expect(events.first).to_contain_text("coupon_claim")

    # And its actions open the Coupons tab's dialog and come back here
    page.get_by_role("button", name="Invalidate").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Invalidate coupon {claimed.code}?")
    dialog.get_by_role("button", name="Invalidate").click()
    expect(page.get_by_role("alert")).to_contain_text(f"Coupon {claimed.code} invalidated.")
    expect(page).to_have_title(re.compile(f"Coupon {claimed.code}"))
    expect(page.get_by_test_id("events").locator("tbody tr").first).to_contain_text("coupon_invalidate")
    assert Coupon.objects.get(pk=claimed.pk).status == S.INVALID

    # And the breadcrumb leads back to the overview
    page.get_by_role("navigation", name="breadcrumb").get_by_role("link", name="Spring 5 off").click()
    expect(page.get_by_test_id("overview-count-invalid")).to_contain_text("1")


def test_a_reader_sees_the_overview_and_coupon_without_actions(page):
    UserFactory(username="rita", manager=False)
    pool = PoolFactory(name="Read me")
    CouponFactory(pool=pool)
    coupon = coupon_claim(pool=pool, customer=CustomerFactory(), actor=Actor.system())
    login(page, "rita")
    page.get_by_role("link", name="Read me").click()
    expect(page.get_by_test_id("terms")).to_be_visible()
    expect(page.get_by_role("link", name="Edit settings")).to_have_count(0)
    page.goto(f"/coupons/{coupon.pk}/")
    expect(page.get_by_test_id("restrictions")).to_be_visible()
    expect(page.locator("[data-row-action]")).to_have_count(0)
