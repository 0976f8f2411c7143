"""A manager creates a bulk pool in a real browser; a user outside its group never sees it."""

import re

import pytest
from playwright.sync_api import expect

from pools.models import CouponPool
from tests.browser.conftest import login, logout
from tests.factories import GroupFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_bulk_pool_with_live_combinations_and_group_visibility(page):
    # Given a manager in the "Loyalty EU" group and a user outside it
    team = GroupFactory(name="Loyalty EU")
    UserFactory(username="eva", groups=[team])
    UserFactory(username="otto")

    # When Eva logs in and opens "Create coupon pool"
    login(page, "eva")
    expect(page).to_have_title(re.compile("Coupon pools"))
    page.get_by_role("link", name="Create coupon pool").first.click()
    expect(page).to_have_title(re.compile("Create coupon pool"))
    page.get_by_label("Name").fill("Spring bulk")

    # Only the fields of the chosen source show
    expect(page.get_by_label("Excluded characters")).to_be_hidden()
    page.locator("label", has_text="Bulk generation").click()
    expect(page.get_by_label("Excluded characters")).to_be_visible()
    expect(page.get_by_label("Callback URL")).to_be_hidden()

    # The number of combinations follows the pattern as she types it
    combinations = page.get_by_test_id("combinations")
    pattern = page.get_by_label("Pattern")
    pattern.press_sequentially("SPRING-$$$$", delay=20)
    expect(combinations).to_have_text("1,679,616")  # 36^4
    pattern.press_sequentially("$$$$", delay=20)
    expect(combinations).to_have_text("2,821,109,907,456")  # 36^8
    expect(page.get_by_test_id("max-coupons")).to_have_text("28,211,099,074")

    # ... and the excluded characters
    page.get_by_label("Excluded characters").press_sequentially("O,0,I,1", delay=20)
    expect(combinations).to_have_text("1,099,511,627,776")  # 32^8
    expect(page.get_by_test_id("max-coupons")).to_have_text("10,995,116,277")

    # Only the fields of the chosen type show
    page.locator("#id_coupon_type").select_option("gift_card")
    expect(page.get_by_label("Currency")).to_be_visible()
    page.locator("#id_coupon_type").select_option("percentage")
    expect(page.get_by_label("Currency")).to_be_hidden()
    page.locator("#id_value").fill("15")
    page.get_by_role("combobox", name="User group").select_option(label="Loyalty EU")
    page.get_by_role("button", name="Save").click()

    # Then the pool is saved and listed
    expect(page.get_by_role("alert")).to_contain_text("Coupon pool “Spring bulk” created.")
    pool = CouponPool.objects.get(name="Spring bulk")
    assert (pool.source, pool.pattern, pool.excluded_characters) == ("bulk", "SPRING-$$$$$$$$", "O,0,I,1")
    assert pool.currency == "" and pool.user_group == team
    page.get_by_role("link", name="Coupon pools").first.click()
    page.get_by_label("Search").fill("spring")
    page.get_by_role("button", name="Filter").click()
    row = page.get_by_role("row", name=re.compile("Spring bulk"))
    expect(row).to_contain_text("Bulk generation")
    expect(row).to_contain_text("15.00%")

    # And a user outside the group sees neither the pool in the list nor its page
    logout(page)
    login(page, "otto")
    expect(page.get_by_role("table")).not_to_contain_text("Spring bulk")
    response = page.goto(f"/pools/{pool.pk}/")
    assert response.status == 404


def test_server_errors_are_shown_next_to_the_fields(page):
    UserFactory(username="eva")
    login(page, "eva")
    page.goto("/pools/new/")
    page.get_by_label("Name").fill("Broken")
    page.locator("label", has_text="Bulk generation").click()
    page.get_by_label("Pattern").fill("AB-$$$")
    expect(page.locator("#combinations")).to_contain_text("at least 4 placeholders")
    page.locator("#id_coupon_type").select_option("percentage")
    page.locator("#id_value").fill("120")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Please correct the fields marked below.")).to_be_visible()
    expect(page.locator("#wrap_pattern")).to_contain_text("needs at least 4 placeholders")
    expect(page.locator("#wrap_value")).to_contain_text("A percentage cannot be more than 100.")
    assert not CouponPool.objects.exists()
