"""The styled 403 and 404 pages (couponsite.errors): the menu, a sentence, a way back;
the same 404 for a missing page and for another group's pool."""

import re

import pytest
from django.conf import settings
from django.test import Client, RequestFactory
from django.urls import reverse

from couponsite.errors import back_url
from pools.models import ModuleSettings
from tests.factories import CouponFactory, CustomerFactory, GroupFactory, PoolFactory, UserFactory, ViewerFactory

pytestmark = pytest.mark.django_db


def main_of(response) -> str:
    """The page's <main> (the menu and its CSRF token are outside it)."""
    return re.search(r"<main.*?</main>", response.content.decode(), re.S).group(0)


def test_the_pages_are_tested_as_in_production():
    assert settings.DEBUG is False  # Django shows its technical 404 page only with DEBUG on


class TestForbidden:
    def test_a_logged_in_user_without_the_permission_gets_the_styled_page_not_the_login(self, client):
        pool = PoolFactory(name="Spring")
        client.force_login(ViewerFactory(username="vera"))

        response = client.get(reverse("pools:edit", args=[pool.pk]))

        assert response.status_code == 403
        assert [t.name for t in response.templates][:2] == ["403.html", "base.html"]
        html = response.content.decode()
        assert "<title>Not allowed · Coupon management</title>" in html
        assert 'aria-label="Main"' in html and "vera" in html  # the menu, with the user
        assert "does not have the permission this page or action needs" in html
        assert f'href="{reverse("pools:list")}" data-testid="error-pools"' in html
        assert 'data-testid="error-back"' not in html  # no page to go back to

    def test_every_refusal_of_a_page_is_the_styled_page(self, client):
        pool = PoolFactory()
        coupon = CouponFactory(pool=pool)
        customer = CustomerFactory()
        client.force_login(ViewerFactory())
        refused = [
            ("get", reverse("pools:create")), ("get", reverse("pools:edit", args=[pool.pk])),
            ("get", reverse("pools:settings")), ("get", reverse("api_keys")), ("get", reverse("imports:new")),
            ("get", reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"])),
            ("post", reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"])),
            ("post", reverse("coupons:pool_coupons_bulk", args=[pool.pk])),
            ("post", reverse("coupons:customer_assign", args=[customer.pk])),
        ]
        for method, url in refused:
            response = getattr(client, method)(url)
            assert response.status_code == 403, url
            assert 'data-testid="error-page" data-status="403"' in response.content.decode(), url

    def test_the_way_back_is_the_page_the_user_came_from_on_this_site(self, client):
        pool = PoolFactory()
        client.force_login(ViewerFactory())
        url = reverse("pools:edit", args=[pool.pk])
        came_from = f"http://testserver{reverse('coupons:pool_coupons', args=[pool.pk])}?status=claimed"

        html = client.get(url, HTTP_REFERER=came_from).content.decode()
        assert f'<a class="btn btn-primary" href="{came_from}" data-testid="error-back">' in html

        elsewhere = client.get(url, HTTP_REFERER="https://evil.example/phish").content.decode()
        assert "evil.example" not in elsewhere and 'data-testid="error-back"' not in elsewhere

    def test_an_anonymous_visitor_still_goes_to_the_login(self, client):
        response = client.get(reverse("pools:create"))
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))

    def test_an_htmx_request_gets_the_words_the_dialog_shows(self, client):
        coupon = CouponFactory()
        client.force_login(ViewerFactory())
        response = client.get(reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"]), HTTP_HX_REQUEST="true")
        html = response.content.decode()
        assert response.status_code == 403
        assert re.search(r"data-error-title>.*Not allowed</h1>", html)
        assert '<p data-error-message>Your account does not have the permission' in html


class TestStaleForm:
    def test_a_form_from_a_stale_page_is_the_styled_403_and_changes_nothing(self):
        coupon = CouponFactory()
        client = Client(enforce_csrf_checks=True)
        client.force_login(UserFactory(username="mona"))

        response = client.post(reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"]),
                               {"csrfmiddlewaretoken": "stale"}, HTTP_REFERER="http://testserver/pools/")

        assert response.status_code == 403
        html = response.content.decode()
        assert "<title>Form expired · Coupon management</title>" in html and "nothing was done" in html
        assert 'aria-label="Main"' in html and "mona" in html
        assert 'href="http://testserver/pools/" data-testid="error-back"' in html
        coupon.refresh_from_db()
        assert coupon.status == 1


class TestNotFound:
    def test_another_groups_pool_is_exactly_a_missing_one(self, client):
        hidden = PoolFactory(user_group=GroupFactory(name="South"))
        client.force_login(UserFactory(username="north-manager", groups=[GroupFactory(name="North")]))

        other_group = client.get(reverse("coupons:pool_coupons", args=[hidden.pk]))
        missing = client.get(reverse("coupons:pool_coupons", args=[hidden.pk + 1000]))
        no_page = client.get("/no/such/page/")

        assert other_group.status_code == missing.status_code == no_page.status_code == 404
        assert main_of(other_group) == main_of(missing) == main_of(no_page)
        assert hidden.name not in other_group.content.decode()
        html = other_group.content.decode()
        assert "<title>Page not found · Coupon management</title>" in html
        assert 'aria-label="Main"' in html and "belongs to a user group you are not in" in html
        assert 'data-testid="error-pools"' in html

    def test_an_anonymous_visitor_of_a_missing_page_gets_it_without_the_menu(self, client):
        response = client.get("/no/such/page/")
        assert response.status_code == 404
        html = response.content.decode()
        assert 'data-testid="error-page" data-status="404"' in html and "Log out" not in html

    def test_the_api_keeps_its_json_404(self, client):
        response = client.get("/api/v1/nothing-here")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


class TestBackUrl:
    def test_only_another_page_of_this_site(self):
        factory = RequestFactory()
        assert back_url(factory.get("/pools/1/", HTTP_REFERER="http://testserver/pools/")) == "http://testserver/pools/"
        assert back_url(factory.get("/pools/1/", HTTP_REFERER="http://testserver/pools/1/")) == ""  # itself
        assert back_url(factory.get("/pools/1/", HTTP_REFERER="http://other.example/pools/")) == ""
        assert back_url(factory.get("/pools/1/", HTTP_REFERER="javascript:alert(1)")) == ""
        assert back_url(factory.get("/pools/1/")) == ""


class TestAdmin:
    def test_a_staff_viewer_reads_the_admin_and_cannot_add_settings(self, client):
        ModuleSettings.objects.all().delete()
        pool = PoolFactory(name="Readable")
        viewer = ViewerFactory(is_staff=True)
        client.force_login(viewer)

        assert client.get(reverse("admin:index")).status_code == 200
        changelist = client.get(reverse("admin:pools_couponpool_changelist"))
        assert changelist.status_code == 200 and "Readable" in changelist.content.decode()
        assert client.get(reverse("admin:pools_couponpool_change", args=[pool.pk])).status_code == 200  # read-only
        assert client.get(reverse("admin:pools_couponpool_add")).status_code == 403
        # ModuleSettings' "at most one row" no longer skips the permission to add it
        refused = client.get(reverse("admin:pools_modulesettings_add"))
        assert refused.status_code == 403 and 'data-testid="error-page"' in refused.content.decode()
        assert not ModuleSettings.objects.exists()
