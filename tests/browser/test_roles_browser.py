"""Three roles walk the Management UI in a real browser: a viewer (the view permissions
only), a manager limited to one user group (the "Coupon managers" group plus the
"North" group) and a superuser. Each sees the pages that fit it; what it may not do is
not offered, and an address it may not open is a styled 403 or 404 with the menu."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from coupons.models import Coupon, CouponJob, CouponStatus, GenerationBatch, JobStatus
from couponsite.permissions import manager_group_ensure
from tests.browser.conftest import login
from tests.factories import (
    BulkPoolFactory,
    CouponFactory,
    CustomerFactory,
    GroupFactory,
    PoolFactory,
    UserFactory,
    ViewerFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = CouponStatus


@pytest.fixture
def world():
    """North's and South's pools, one pool of no group, a customer holding a North coupon,
    an interrupted bulk job; Vera views North, Mona manages North, Root is a superuser."""
    north, south = GroupFactory(name="North"), GroupFactory(name="South")
    managers = manager_group_ensure()
    users = {
        "vera": ViewerFactory(username="vera", groups=[north]),
        "mona": UserFactory(username="mona", manager=False, groups=[managers, north]),
        "root": UserFactory(username="root", manager=False, is_staff=True, is_superuser=True),
    }
    pools = {
        "north": PoolFactory(name="North welcome", user_group=north),
        "south": PoolFactory(name="South welcome", user_group=south),
        "open": BulkPoolFactory(name="Open bulk"),
    }
    GenerationBatch.objects.create(pool=pools["open"], total=5, processed=5, status=JobStatus.DONE)
    anna = CustomerFactory(external_id="ANNA-1")
    CouponFactory(pool=pools["north"], code="NORTH-CLAIMED", status=S.CLAIMED, customer=anna)
    CouponFactory(pool=pools["north"], code="NORTH-FREE")
    CouponFactory(pool=pools["south"], code="SOUTH-FREE")
    CouponJob.objects.create(kind=CouponJob.Kind.BULK_ACTION, pool=pools["north"], params={"action": "invalidate"},
                             status=JobStatus.INTERRUPTED, total=100, processed=40)
    return {"users": users, "pools": pools, "managers": managers}


def row(page, code):
    return page.get_by_role("row", name=re.compile(re.escape(code)))


def nav(page):
    return page.get_by_role("navigation", name="Main")


def tabs(page):
    return page.locator(".nav-tabs")


def expect_not_found(page, url) -> str:
    """The styled 404 with the menu; returns its text, to compare."""
    response = page.goto(url)
    assert response.status == 404, url
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(nav(page).get_by_role("link", name="Coupon pools")).to_be_visible()
    expect(page.get_by_role("link", name="Go to the coupon pools")).to_be_visible()
    return page.get_by_role("main").inner_text()


def test_a_viewer_reads_every_page_and_is_offered_no_change(page, world):
    north, south, open_bulk = (world["pools"][name] for name in ("north", "south", "open"))
    login(page, "vera")

    # The menu offers looking only; the pool list shows North's pools and those of no group
    for hidden in ("Create coupon pool", "Module settings", "API keys", "Admin"):
        expect(nav(page).get_by_role("link", name=hidden, exact=True)).to_have_count(0)
    expect(page.get_by_role("main").get_by_role("link", name="Create coupon pool")).to_have_count(0)
    table = page.get_by_role("table")
    expect(table).to_contain_text("North welcome")
    expect(table).to_contain_text("Open bulk")
    expect(table).not_to_contain_text("South welcome")

    # The pool's name opens its overview, then the Coupons tab, read-only: no Settings tab,
    # no edit button, ticks, menus or bulk buttons
    page.get_by_role("link", name="North welcome").click()
    expect(page).to_have_url(re.compile(f"/pools/{north.pk}/$"))
    expect(tabs(page).get_by_role("link", name="Settings")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit settings")).to_have_count(0)
    tabs(page).get_by_role("link", name="Coupons").click()
    expect(tabs(page).get_by_role("link", name="Coupons")).to_be_visible()
    expect(row(page, "NORTH-CLAIMED")).to_contain_text("ANNA-1")
    expect(row(page, "NORTH-FREE")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Actions for"))).to_have_count(0)
    expect(page.get_by_role("main").get_by_role("checkbox")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("selected$"))).to_have_count(0)
    expect(page.get_by_role("link", name="Upload")).to_have_count(0)
    expect(page.get_by_role("link", name="Export CSV")).to_be_visible()

    # Statistics, and a bulk pool without its generation button
    tabs(page).get_by_role("link", name="Statistics").click()
    expect(page.get_by_test_id("count-claimed")).to_have_text("1")
    page.goto(reverse("coupons:pool_coupons", args=[open_bulk.pk]))
    expect(page.get_by_role("link", name="Bulk generation")).to_have_count(0)

    # The customer's page without "Assign"; the jobs without Resume or Cancel
    nav(page).get_by_role("link", name="Customers").click()
    page.get_by_role("link", name="ANNA-1").click()
    expect(page.get_by_role("heading", name="Customer ANNA-1")).to_be_visible()
    expect(page.get_by_role("table").first).to_contain_text("NORTH-CLAIMED")
    expect(page.get_by_role("button", name="Assign")).to_have_count(0)
    nav(page).get_by_role("link", name="Jobs", exact=True).click()
    expect(page.locator("[data-testid=job-row][data-kind=bulk_action]")).to_have_count(1)
    expect(page.get_by_test_id("job-resume")).to_have_count(0)
    expect(page.get_by_test_id("job-cancel")).to_have_count(0)

    # An address it may not open (an old bookmark of the pool form): the styled 403 and the way back
    page.goto(reverse("coupons:pool_coupons", args=[north.pk]))
    coupons_url = page.url
    response = page.goto(reverse("pools:edit", args=[north.pk]), referer=coupons_url)
    assert response.status == 403
    expect(page).to_have_title(re.compile("^Not allowed"))
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("does not have the permission this page or action needs")
    expect(nav(page).get_by_role("link", name="Customers")).to_be_visible()
    page.get_by_role("link", name="Back to the previous page").click()
    expect(page).to_have_url(coupons_url)
    response = page.goto(reverse("pools:create"))
    assert response.status == 403
    page.get_by_role("link", name="Go to the coupon pools").click()
    expect(page).to_have_url(re.compile("/pools/$"))

    # Another group's pool is the same 404 as one that does not exist
    hidden = expect_not_found(page, reverse("coupons:pool_coupons", args=[south.pk]))
    assert "South" not in hidden
    assert expect_not_found(page, reverse("coupons:pool_coupons", args=[south.pk + 1000])) == hidden


def test_a_manager_of_one_group_works_its_pools_and_never_sees_the_others(page, world):
    north, south = world["pools"]["north"], world["pools"]["south"]
    login(page, "mona")

    # The menu offers creating pools and the module settings, not the administrators' pages
    expect(nav(page).get_by_role("link", name="Create coupon pool")).to_be_visible()
    expect(nav(page).get_by_role("link", name="Module settings", exact=True)).to_be_visible()
    expect(nav(page).get_by_role("link", name="API keys")).to_have_count(0)
    expect(nav(page).get_by_role("link", name="Admin")).to_have_count(0)
    table = page.get_by_role("table")
    expect(table).to_contain_text("North welcome")
    expect(table).not_to_contain_text("South welcome")

    # North's pool: the Settings tab opens the form; the Coupons tab has menus and bulk buttons
    page.get_by_role("link", name="North welcome").click()
    tabs(page).get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(f"{reverse('pools:edit', args=[north.pk])}$"))
    expect(page.locator("#id_name")).to_have_value("North welcome")
    tabs(page).get_by_role("link", name="Coupons").click()
    expect(page.get_by_role("button", name="Invalidate selected")).to_be_disabled()
    row(page, "NORTH-FREE").get_by_role("button", name="Actions for NORTH-FREE").click()
    row(page, "NORTH-FREE").get_by_role("button", name="Invalidate").click()
    page.get_by_role("dialog").get_by_role("button", name="Invalidate").click()
    expect(page.get_by_role("alert")).to_contain_text("Coupon NORTH-FREE invalidated.")
    assert Coupon.objects.get(code="NORTH-FREE").status == S.INVALID

    # The customer can be given a coupon; the interrupted job can be resumed or cancelled
    nav(page).get_by_role("link", name="Customers").click()
    page.get_by_role("link", name="ANNA-1").click()
    expect(page.get_by_role("button", name="Assign")).to_be_visible()
    nav(page).get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_test_id("job-resume")).to_be_visible()
    expect(page.get_by_test_id("job-cancel")).to_be_visible()

    # South's pool, its form and its coupons are "not found", exactly like a pool that does not exist
    hidden = expect_not_found(page, reverse("coupons:pool_coupons", args=[south.pk]))
    assert expect_not_found(page, reverse("pools:edit", args=[south.pk])) == hidden
    assert expect_not_found(page, reverse("coupons:pool_coupons", args=[south.pk + 1000])) == hidden
    coupon = Coupon.objects.get(code="SOUTH-FREE")
    assert expect_not_found(page, reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"])) == hidden


def test_a_refused_dialog_says_so_instead_of_loading_for_ever(page, world):
    # Given a manager's Coupons tab, open while an administrator takes the permissions away
    north = world["pools"]["north"]
    login(page, "mona")
    page.goto(reverse("coupons:pool_coupons", args=[north.pk]))
    world["users"]["mona"].groups.remove(world["managers"])

    # When she chooses Invalidate in a row's menu of the page she still has
    row(page, "NORTH-CLAIMED").get_by_role("button", name="Actions for NORTH-CLAIMED").click()
    row(page, "NORTH-CLAIMED").get_by_role("button", name="Invalidate").click()

    # Then the dialog says why, with the focus on its Close button, and closes
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(dialog.get_by_role("alert")).to_have_text("Your account does not have the permission this page or action needs.")
    expect(dialog.get_by_text("Loading")).to_have_count(0)
    close = dialog.locator(".modal-footer").get_by_role("button", name="Close")
    expect(close).to_be_focused()
    close.click()
    expect(dialog).to_be_hidden()
    assert Coupon.objects.get(code="NORTH-CLAIMED").status == S.CLAIMED

    # And once the page is reloaded, it offers no menu any more
    page.reload()
    expect(page.get_by_role("button", name=re.compile("^Actions for"))).to_have_count(0)


def test_a_superuser_sees_every_pool_and_every_menu(page, world):
    south = world["pools"]["south"]
    login(page, "root")

    for shown in ("Create coupon pool", "Module settings", "API keys", "Admin"):
        expect(nav(page).get_by_role("link", name=shown, exact=True)).to_be_visible()
    table = page.get_by_role("table")
    for name in ("North welcome", "South welcome", "Open bulk"):
        expect(table).to_contain_text(name)

    page.get_by_role("link", name="South welcome").click()
    expect(page).to_have_url(re.compile(f"/pools/{south.pk}/$"))
    expect(tabs(page).get_by_role("link", name="Settings")).to_be_visible()
    expect(page.get_by_role("link", name="Edit settings")).to_be_visible()
    tabs(page).get_by_role("link", name="Coupons").click()
    expect(row(page, "SOUTH-FREE").get_by_role("button", name="Actions for SOUTH-FREE")).to_be_visible()
    nav(page).get_by_role("link", name="Module settings", exact=True).click()
    expect(page).to_have_url(re.compile(f"{reverse('pools:settings')}$"))
    nav(page).get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    expect_not_found(page, reverse("coupons:pool_coupons", args=[south.pk + 1000]))


def test_a_polled_card_that_is_refused_says_so_at_the_top_of_the_page(page, world):
    # Given a manager watching a running bulk job on North's Coupons tab
    north = world["pools"]["north"]
    CouponJob.objects.create(kind=CouponJob.Kind.BULK_ACTION, pool=north, params={"action": "redeem"},
                             status=JobStatus.RUNNING, total=100, processed=10)
    login(page, "mona")
    page.goto(reverse("coupons:pool_coupons", args=[north.pk]))
    expect(page.get_by_test_id("job-card")).to_have_count(1)
    expect(page.get_by_test_id("htmx-error")).to_be_hidden()

    # When the pool is moved to a group she is not in, the card's next poll is refused
    north.user_group = GroupFactory(name="Elsewhere")
    north.save(update_fields=["user_group"])

    # Then the page says so instead of going on as if nothing happened
    error = page.get_by_test_id("htmx-error")
    expect(error).to_be_visible()
    expect(error).to_have_text(re.compile("^Page not found: There is nothing here"))
