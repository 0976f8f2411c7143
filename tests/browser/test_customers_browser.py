"""A manager creates a customer in a real browser and gives them a coupon at once."""

import re

import pytest
from playwright.sync_api import expect

from coupons.models import Coupon, CouponStatus, Customer
from tests.browser.conftest import login
from tests.factories import CouponFactory, CustomerFactory, PoolFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = CouponStatus


def menu(page):
    return page.get_by_role("navigation", name="Main")


def test_create_a_customer_assign_a_coupon_and_follow_its_code(page):
    # Given a fresh installation's manager: one pool with coupons, one customer already there
    UserFactory(username="eva")
    pool = PoolFactory(name="Spring welcome")
    CouponFactory(pool=pool, code="SPRING-0001")
    CustomerFactory(external_id="OLD-1", email="old@example.com")
    login(page, "eva")

    # When she opens Customers and creates one, first with an ID already taken
    menu(page).get_by_role("link", name="Customers").click()
    page.get_by_role("link", name="New customer").click()
    expect(page).to_have_title(re.compile("New customer"))
    page.get_by_label("Customer ID").fill("OLD-1")
    page.get_by_label("Email").fill("nina.kowalski@example.com")
    page.get_by_label("Currency").fill("eur")
    page.get_by_role("button", name="Create customer").click()

    # Then the form says why and keeps what she typed
    expect(page.get_by_text("A customer with the ID OLD-1 exists already.")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_value("nina.kowalski@example.com")
    expect(page.get_by_label("Customer ID")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("link", name="Open customer OLD-1")).to_be_visible()

    # When she corrects the ID
    page.get_by_label("Customer ID").fill("NINA-42")
    page.get_by_role("button", name="Create customer").click()

    # Then she lands on the new customer's page and assigns a coupon from the pool there
    expect(page.get_by_role("alert")).to_contain_text("Customer NINA-42 created.")
    expect(page.get_by_role("heading", name="Customer NINA-42")).to_be_visible()
    expect(page.get_by_test_id("customer-fields")).to_have_text("nina.kowalski@example.com · currency EUR")
    page.get_by_label("Assign a coupon from pool…").select_option(label="Spring welcome")
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_role("alert")).to_contain_text("Coupon SPRING-0001 from “Spring welcome” assigned to NINA-42.")
    first_event = page.get_by_test_id("events").locator("tbody tr").first
    expect(first_event).to_contain_text("Claimed")
    expect(first_event).to_contain_text("eva")
    nina = Customer.objects.get(external_id="NINA-42")
    assert Coupon.objects.get(code="SPRING-0001").customer == nina
    assert (nina.email, nina.currency) == ("nina.kowalski@example.com", "EUR")

    # And the search finds her by part of her email
    menu(page).get_by_role("link", name="Customers").click()
    page.get_by_role("searchbox", name="Search by customer ID or email").fill("kowalski")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="NINA-42")).to_be_visible()
    expect(page.get_by_role("link", name="OLD-1")).to_have_count(0)

    # And the code in her history leads to the coupon's own page, held by her
    CouponFactory(pool=pool, code="SPRING-0001-B")  # starts like it: the link is to the coupon, not a search
    page.get_by_role("link", name="NINA-42").click()
    first_event.get_by_role("link", name="SPRING-0001").click()
    expect(page).to_have_title(re.compile("Coupon SPRING-0001 · Spring welcome"))
    expect(page.get_by_role("main")).to_contain_text("NINA-42")
    expect(page.get_by_role("main")).not_to_contain_text("SPRING-0001-B")

    # And she edits the customer's email (the coupon's holder leads back to her)
    page.get_by_test_id("coupon").get_by_role("link", name="NINA-42").click()
    page.get_by_role("link", name="Edit customer").click()
    page.get_by_label("Email").fill("nina@example.com")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Customer NINA-42 saved.")
    expect(page.get_by_test_id("customer-fields")).to_have_text("nina@example.com · currency EUR")
