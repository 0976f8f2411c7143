"""The layout at the two widths managers use (1280 and 1920 px): the pool form, the
Coupons tab's toolbar, the import preview with a long code."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from coupons.generation import generation_start
from coupons.models import Coupon
from tests.browser.conftest import ARTIFACTS, login
from tests.factories import BulkPoolFactory, PoolFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = [1280, 1920]


def box(locator):
    locator.scroll_into_view_if_needed()
    return locator.bounding_box()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_pool_form_is_compact_and_updating_sits_next_to_value(page, width):
    # Given a bulk pool of gift cards (the most fields a pool shows) and its manager
    UserFactory(username="lena")
    pool = BulkPoolFactory(name="Layout cards", coupon_type="gift_card", value="50.00", currency="EUR")
    page.set_viewport_size({"width": width, "height": 900})
    login(page, "lena")

    # When she opens its settings
    page.goto(reverse("pools:edit", args=[pool.pk]))
    page.screenshot(path=ARTIFACTS / f"layout-pool-form-{width}.png", full_page=True)

    # Then the whole form is far shorter than the 2,900 px it was, every section shown
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 1800, height
    for title in ("Source", "General settings", "Updating coupons", "Restrictions", "Pass template", "User group"):
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    # And "Updating coupons" comes right after Value (only its help text in between), in
    # the same column: it was some 1,800 px further down
    value, updating = box(page.get_by_label("Value", exact=True)), box(page.get_by_role("heading", name="Updating coupons"))
    assert 0 < updating["y"] - (value["y"] + value["height"]) < 220
    general = box(page.get_by_role("heading", name="General settings"))
    assert abs(updating["x"] - general["x"]) < 2 and general["x"] <= value["x"] < general["x"] + general["width"]
    # And placeholders read as examples, in italics, not as values
    for label in ("Pattern", "Currency"):
        field = page.get_by_label(label, exact=True)
        assert field.get_attribute("placeholder").startswith("e.g. ")
        assert field.evaluate("el => getComputedStyle(el, '::placeholder').fontStyle") == "italic"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_pool_forms_errors_are_shown_once(page, width):
    UserFactory(username="lena")
    page.set_viewport_size({"width": width, "height": 900})
    login(page, "lena")
    # When she saves the create form without filling it in
    page.goto(reverse("pools:create"))
    page.get_by_role("button", name="Save").click()
    page.screenshot(path=ARTIFACTS / f"layout-pool-form-errors-{width}.png", full_page=True)
    # Then one alert says to look below, and each field's error stands once, under its field
    alert = page.get_by_test_id("form-errors")
    expect(page.locator(".alert:visible")).to_have_count(1)
    expect(alert).to_have_text("Please correct the fields marked below.")
    expect(page.locator("#wrap_name .invalid-feedback")).to_have_count(1)
    errors = page.locator(".invalid-feedback:visible").all_inner_texts()
    assert errors and not any(error in alert.inner_text() for error in errors)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_coupons_toolbar_keeps_its_buttons_on_one_line(page, width):
    # Given a bulk pool with a batch and coupons, filtered (so Clear shows)
    UserFactory(username="lena")
    pool = BulkPoolFactory(name="Toolbar pool", pattern="TB-$$$$$$")
    generation_start(pool=pool, count=10, enqueue=False)
    Coupon.objects.create(pool=pool, terms=pool.current_terms, code="TB-AAAAAA")
    page.set_viewport_size({"width": width, "height": 900})
    login(page, "lena")
    page.goto(f"/pools/{pool.pk}/coupons/?q=TB")
    page.screenshot(path=ARTIFACTS / f"layout-coupons-toolbar-{width}.png", full_page=True)
    # Then Filter and Clear share a line, and so do Bulk generation and Export CSV
    filter_button, clear = box(page.get_by_role("button", name="Filter")), box(page.get_by_role("link", name="Clear"))
    generation, export = box(page.get_by_role("link", name="Bulk generation")), box(page.get_by_role("link", name="Export CSV"))
    assert filter_button["y"] == clear["y"] and generation["y"] == export["y"]
    # And no button is broken over two lines
    for button in (filter_button, clear, generation, export):
        assert button["height"] < 45, button


@pytest.mark.parametrize("width", WIDTHS)
def test_the_import_preview_keeps_a_long_code_and_its_reason_readable(page, width, tmp_path):
    # Given a file with a 70-character code among good ones
    UserFactory(username="lena")
    pool = PoolFactory(name="Long codes")
    path = tmp_path / "long.csv"
    path.write_text("code\nOK-1\n" + "X" * 70 + "\n" + "Y" * 64 + "\nOK-2\n", encoding="utf-8")
    page.set_viewport_size({"width": width, "height": 900})
    login(page, "lena")
    page.goto(f"/imports/new/?pool={pool.pk}")
    page.get_by_label("CSV file").set_input_files(str(path))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", name="Configure the import")).to_be_visible()
    page.screenshot(path=ARTIFACTS / f"layout-import-preview-{width}.png", full_page=True)
    preview = page.get_by_test_id("preview")
    # Then the reason of the long row keeps whole words on a few lines, in a column of its own
    reason = box(preview.get_by_role("cell", name="70 characters long"))
    assert reason["width"] > 170 and reason["height"] < 100, reason
    # And the 64-character code wraps inside its column instead of widening the table
    table, code = box(preview), box(preview.get_by_role("cell", name="Y" * 64))
    assert table["width"] <= page.viewport_size["width"] and code["width"] < table["width"] * 0.5

