"""Accessibility: axe-core (vendored, ``tests/browser/assets/axe-core``) finds no serious or
critical violation on any page of the walk-through, dialogs open included; and a manager
reaches the actions with the keyboard alone."""

import re

import pytest
from playwright.sync_api import expect

from coupons.models import CouponJob, CouponStatus, JobStatus
from tests.browser.conftest import axe_audit, login
from tests.factories import (
    BulkPoolFactory,
    CouponFactory,
    CustomerFactory,
    GiftCardPoolFactory,
    PoolFactory,
    UserFactory,
    ViewerFactory,
)


def nav(page):
    return page.get_by_role("navigation", name="Main")


pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = CouponStatus


def test_the_audit_notices_a_violation(page):
    # An image without a text alternative and a form field without a label are found
    UserFactory(username="eve")
    login(page, "eve")
    page.evaluate("""() => {
        const field = document.createElement("input");
        document.querySelector("main").appendChild(field);
        const img = document.createElement("img");
        img.src = "/static/favicon.svg";
        document.querySelector("main").appendChild(img);
    }""")
    with pytest.raises(AssertionError) as failure:
        axe_audit(page)
    assert "image-alt" in str(failure.value) and "label" in str(failure.value)


@pytest.mark.worker_env(COUPON_IMPORT_CHUNK="1000")
def test_every_page_of_the_walk_through_has_no_serious_violation(page, celery_worker_process, tmp_path):
    UserFactory(username="ada", is_staff=True, is_superuser=True)
    pool = PoolFactory(name="Welcome 10 off")
    anna = CustomerFactory(external_id="ANNA-1", email="anna@example.com")
    CouponFactory(pool=pool, code="WELCOME-CLAIMED", status=S.CLAIMED, customer=anna)
    for n in range(3):
        CouponFactory(pool=pool, code=f"WELCOME-SPARE-{n}")
    bulk = BulkPoolFactory(name="Spring bulk")
    GiftCardPoolFactory(name="Gift cards")
    CouponJob.objects.create(kind=CouponJob.Kind.BULK_ACTION, pool=pool, params={"action": "invalidate"},
                             status=JobStatus.INTERRUPTED, total=100, processed=40)

    # The login page, before logging in
    page.goto("/login/")
    axe_audit(page, "login")
    login(page, "ada")

    # The pool list, the pool form (new and existing), a pool's overview
    axe_audit(page, "pool list")
    page.get_by_role("link", name="Create coupon pool").first.click()
    expect(page).to_have_title(re.compile("Create coupon pool"))
    axe_audit(page, "new pool form")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Please correct the fields marked below.")).to_be_visible()
    axe_audit(page, "pool form with errors")
    page.goto("/pools/")
    page.get_by_role("link", name="Welcome 10 off").click()
    expect(page).to_have_url(re.compile(f"/pools/{pool.pk}/$"))
    axe_audit(page, "overview")
    page.get_by_role("link", name="Settings", exact=True).click()
    expect(page.locator("#id_name")).to_have_value("Welcome 10 off")
    axe_audit(page, "pool form")

    # The Coupons tab, with a row's menu, a row's dialog and a bulk dialog open
    page.goto(f"/pools/{pool.pk}/coupons/")
    axe_audit(page, "coupons tab")
    claimed = page.get_by_role("row", name=re.compile("WELCOME-CLAIMED"))
    claimed.get_by_role("button", name="Actions for WELCOME-CLAIMED").click()
    axe_audit(page, "row menu")
    claimed.get_by_role("button", name="Transfer").click()
    expect(page.get_by_role("dialog").get_by_label("Target customer email")).to_be_visible()
    axe_audit(page, "transfer dialog")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    page.get_by_role("row", name=re.compile("WELCOME-SPARE-0")).get_by_role("checkbox").check()
    page.get_by_role("button", name="Invalidate selected").click()
    expect(page.get_by_role("dialog")).to_contain_text("Invalidate 1 selected coupon?")
    axe_audit(page, "bulk dialog")
    page.keyboard.press("Escape")

    # A coupon's page, from its code
    page.get_by_role("link", name="WELCOME-CLAIMED").click()
    expect(page).to_have_title(re.compile("Coupon WELCOME-CLAIMED"))
    axe_audit(page, "coupon detail")

    # Statistics, generation (a bulk pool), the export page
    page.goto(f"/pools/{pool.pk}/statistics/")
    axe_audit(page, "statistics")
    page.goto(f"/pools/{bulk.pk}/generation/")
    axe_audit(page, "generation")
    page.goto(f"/pools/{pool.pk}/coupons/")
    page.get_by_role("link", name="Export CSV").click()
    axe_audit(page, "export")

    # Each import step: upload, configure, progress and result
    path = tmp_path / "codes.csv"
    path.write_text("code\n" + "\n".join(f"IMP-{n:04d}" for n in range(50)) + "\nIMP-0001\n", encoding="utf-8")
    page.goto(f"/pools/{pool.pk}/coupons/")
    page.get_by_role("link", name="Upload", exact=True).click()
    axe_audit(page, "import upload")
    page.get_by_label("CSV file").set_input_files(str(path))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", name="Configure the import")).to_be_visible()
    axe_audit(page, "import configure")
    page.get_by_role("button", name="Start import").click()
    expect(page.get_by_test_id("import-status")).to_have_attribute("data-status", "done", timeout=60_000)
    axe_audit(page, "import result")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Imports").click()
    axe_audit(page, "import list")

    # Customers: the list, a new customer (with a mistake first), a customer's page
    nav(page).get_by_role("link", name="Customers").click()
    axe_audit(page, "customer list")
    page.get_by_role("link", name="New customer").click()
    axe_audit(page, "new customer form")
    page.get_by_label("Customer ID").fill("ANNA-1")
    page.get_by_role("button", name=re.compile("Create|Save")).click()
    expect(page.locator(".invalid-feedback, .is-invalid").first).to_be_visible()
    axe_audit(page, "customer form with an error")
    nav(page).get_by_role("link", name="Customers").click()
    page.get_by_role("link", name="ANNA-1").click()
    axe_audit(page, "customer page")

    # Jobs, API keys, the module settings, the styled 404
    nav(page).get_by_role("link", name="Jobs", exact=True).click()
    axe_audit(page, "jobs")
    nav(page).get_by_role("link", name="API keys").click()
    axe_audit(page, "api keys")
    nav(page).get_by_role("link", name="Module settings").click()
    axe_audit(page, "module settings")
    page.goto("/pools/999999/")
    expect(page.get_by_role("link", name="Go to the coupon pools")).to_be_visible()
    axe_audit(page, "404")


def test_a_reader_s_pages_and_the_styled_403_have_no_serious_violation(page):
    pool = PoolFactory(name="Welcome 10 off")
    CouponFactory(pool=pool, code="WELCOME-CLAIMED", status=S.CLAIMED, customer=CustomerFactory(external_id="ANNA-1"))
    ViewerFactory(username="vera")
    login(page, "vera")
    axe_audit(page, "pool list, reader")
    page.get_by_role("link", name="Welcome 10 off").click()
    axe_audit(page, "overview, reader")
    page.get_by_role("main").get_by_role("link", name="Coupons", exact=True).click()
    axe_audit(page, "coupons tab, reader")
    page.goto(f"/pools/{pool.pk}/settings/")
    expect(page.get_by_role("link", name="Go to the coupon pools")).to_be_visible()
    axe_audit(page, "403")


def test_a_manager_redeems_a_coupon_with_the_keyboard_alone(page):
    UserFactory(username="eva")
    pool = PoolFactory(name="Welcome 10 off")
    CouponFactory(pool=pool, code="WELCOME-CLAIMED", status=S.CLAIMED, customer=CustomerFactory())
    login(page, "eva")
    page.goto(f"/pools/{pool.pk}/coupons/")

    # Tab to the row's menu button, open it and choose Redeem with the keys
    menu = page.get_by_role("button", name="Actions for WELCOME-CLAIMED")
    for _ in range(60):
        page.keyboard.press("Tab")
        if menu.evaluate("(el) => el === document.activeElement"):
            break
    else:
        pytest.fail("the row's menu button is not reachable with Tab")
    page.keyboard.press("Enter")
    redeem = page.get_by_role("row", name=re.compile("WELCOME-CLAIMED")).get_by_role("button", name="Redeem")
    expect(redeem).to_be_visible()
    for _ in range(10):
        if redeem.evaluate("(el) => el === document.activeElement"):
            break
        page.keyboard.press("ArrowDown")
    else:
        pytest.fail("the menu's Redeem entry is not reachable with the arrow keys")
    page.keyboard.press("Enter")

    # The dialog takes the focus; Tab reaches its confirm button and Enter confirms
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Redeem coupon WELCOME-CLAIMED?")
    confirm = dialog.get_by_role("button", name="Redeem")
    for _ in range(10):
        if confirm.evaluate("(el) => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        pytest.fail("the dialog's confirm button is not reachable with Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Coupon WELCOME-CLAIMED redeemed.")


def tab_to(page, target, limit=80, key="Tab"):
    """Press ``key`` until ``target`` has the focus (fails if it never gets it)."""
    for _ in range(limit):
        if target.evaluate("(el) => el === document.activeElement"):
            return
        page.keyboard.press(key)
    seen = page.evaluate("() => document.activeElement.outerHTML.slice(0, 120)")
    pytest.fail(f"not reachable with {key}: {target} (the focus is on {seen})")


def test_a_manager_works_the_tabs_a_bulk_action_the_pool_form_and_the_customer_page_with_the_keyboard(page):
    UserFactory(username="eva")
    pool = PoolFactory(name="Welcome 10 off")
    for n in range(3):
        CouponFactory(pool=pool, code=f"WELCOME-SPARE-{n}")
    anna = CustomerFactory(external_id="ANNA-1")
    login(page, "eva")

    # The pool list's link and the pool's tabs: Tab and Enter
    tab_to(page, page.get_by_role("link", name="Welcome 10 off"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/pools/{pool.pk}/$"))
    tab_to(page, page.get_by_role("main").get_by_role("link", name="Coupons", exact=True))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/pools/{pool.pk}/coupons/$"))

    # A bulk action: Space ticks two rows, Enter opens the dialog, Tab and Enter confirm
    for code in ("WELCOME-SPARE-0", "WELCOME-SPARE-1"):
        tab_to(page, page.get_by_role("row", name=re.compile(code)).get_by_role("checkbox"))
        page.keyboard.press("Space")
    invalidate = page.get_by_role("button", name="Invalidate selected")
    tab_to(page, invalidate, key="Shift+Tab")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Invalidate 2 selected coupons?")
    confirm = dialog.get_by_role("button", name="Invalidate")
    expect(confirm).to_be_enabled()  # once the server counted what it will change
    page.wait_for_function("() => document.getElementById('dialog').contains(document.activeElement)")  # it takes the focus
    tab_to(page, confirm, limit=10)
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Invalidated 2 coupons.")

    # The pool form: Tab to a field, type, Enter saves
    page.goto(f"/pools/{pool.pk}/settings/")
    name = page.get_by_label("Name")
    tab_to(page, name)
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("Welcome 15 off")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Coupon pool “Welcome 15 off” saved.")

    # The customer page: choose a pool with the arrow keys, Tab to Assign, Enter
    page.goto(f"/customers/{anna.pk}/")
    choice = page.locator("#id_pool")
    tab_to(page, choice)
    page.keyboard.press("ArrowDown")
    expect(choice).to_have_value(str(pool.pk))
    tab_to(page, page.get_by_role("button", name="Assign"), limit=5)
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("WELCOME-SPARE-2")
    expect(page.get_by_test_id("events")).to_contain_text("WELCOME-SPARE-2")
