"""Every kind of page works under the Content-Security-Policy in a real browser: htmx,
the progress bars, Chart.js, the admin and the Swagger UI. (The ``page`` fixture fails a
test on any violation; the first test proves it notices one.)"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from coupons.models import ActorKind, CouponJob, CouponStatus, CustomerEvent, EventAction, JobStatus
from tests.browser.conftest import PASSWORD, login
from tests.factories import CouponFactory, CustomerFactory, PoolFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_fixture_notices_what_the_policy_blocks(page):
    UserFactory(username="eve")
    login(page, "eve")

    # An injected inline script and style attribute are blocked and reported
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.injected = true";
        document.body.appendChild(script);
        document.body.setAttribute("style", "background: red");
    }""")
    page.wait_for_function("() => true")
    expect(page.locator("body")).not_to_have_css("background-color", "rgb(255, 0, 0)")
    assert page.evaluate("window.injected") is None
    page.wait_for_timeout(200)
    assert any("script-src" in text for text in page.csp_violations), page.csp_violations
    assert any("style-src" in text for text in page.csp_violations), page.csp_violations
    page.csp_violations.clear()


def test_login_pages_statistics_and_jobs_work_under_the_policy(page, client):
    UserFactory(username="lena")
    pool = PoolFactory(name="Autumn 5 off")
    customer = CustomerFactory(external_id="m-1")
    coupon = CouponFactory(pool=pool, code="AUT-1", customer=customer, status=CouponStatus.CLAIMED)
    now = timezone.now()
    for days in (0, 1, 3):
        CustomerEvent.objects.create(
            customer=customer, coupon=coupon, pool=pool, action=EventAction.CLAIM, actor_kind=ActorKind.API_KEY,
            created_at=now - timedelta(days=days),
        )
    CouponJob.objects.create(
        kind=CouponJob.Kind.BULK_ACTION, pool=pool, params={"action": "invalidate"},
        status=JobStatus.INTERRUPTED, total=100, processed=40,
    )

    # The login page, then the pool list (htmx loads its parts)
    login(page, "lena")
    expect(page.get_by_role("link", name="Autumn 5 off")).to_be_visible()

    # The statistics page draws its chart with the vendored Chart.js
    page.goto(f"/pools/{pool.pk}/statistics/")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('activity-chart'))")
    claims = page.evaluate("Chart.getChart(document.getElementById('activity-chart')).data.datasets[0].data")
    assert sum(claims) == 3

    # The Jobs page sets the progress bar's width from data-percent (no style attribute)
    page.goto("/jobs/")
    bar = page.locator(".progress-bar[data-percent='40']").first
    expect(bar).to_have_text("40%")
    width = page.evaluate("(bar) => bar.getBoundingClientRect().width / bar.parentElement.getBoundingClientRect().width", bar.element_handle())
    assert width == pytest.approx(0.40, abs=0.02)


def test_the_admin_and_the_swagger_ui_work_under_the_policy(page):
    UserFactory(username="ada", is_staff=True, is_superuser=True)
    pool = PoolFactory(name="Welcome", external_id="WELCOME")

    # The admin: log in, the index, a pool's change form with its widgets
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    page.goto(f"/admin/pools/couponpool/{pool.pk}/change/")
    expect(page.get_by_role("heading", name=re.compile("Change coupon pool"))).to_be_visible()
    expect(page.locator("#id_name")).to_have_value("Welcome")

    # The Swagger UI renders the operations from the schema, and one opens
    page.goto("/api/docs/")
    claim = page.locator(".opblock").filter(has_text="/api/v1/coupon-pools/{reference}/claim").first
    expect(claim).to_be_visible(timeout=20_000)
    claim.locator(".opblock-summary").click()
    expect(claim.get_by_text("Try it out")).to_be_visible()


def test_every_response_carries_the_policy(client):
    for path in ("/login/", "/api/docs/", "/api/v1/coupon-pools"):
        policy = client.get(path).headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
