"""The pool pages: list, create/edit form, live combinations, access, admin."""

import re
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from pools.models import CouponPool, ModuleSettings, PoolSource
from tests.factories import BulkPoolFactory, GroupFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Summer sale",
    "source": "bulk",
    "pattern": "SUMMER-$$$$$$",
    "excluded_characters": "O, 0",
    "excluded_phrases": "",
    "coupon_type": "percentage",
    "value": "15",
    "purchase_minimum": "30.00",
    "expiration_period_count": "30",
    "expiration_period_unit": "day",
}


class TestLoginRequired:
    @pytest.mark.parametrize("name", ["pools:list", "pools:create", "pools:settings", "pools:combinations"])
    def test_anonymous_users_are_sent_to_login(self, client, name):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))

    def test_edit_page_needs_login(self, client):
        pool = PoolFactory()
        response = client.get(reverse("pools:edit", args=[pool.pk]))
        assert response.status_code == 302

    def test_login_page_logs_in(self, client, manager):
        response = client.post(reverse("login"), {"username": "manager", "password": "secret-pass-123"})
        assert response.status_code == 302
        assert client.get(reverse("pools:list")).status_code == 200


class TestPoolList:
    def test_lists_name_source_type_value(self, manager_client):
        PoolFactory(name="Ten off", value=Decimal("10.00"))
        PoolFactory(name="Gift", coupon_type="gift_card", value=Decimal("50.00"), currency="EUR")
        BulkPoolFactory(name="Spring pct", coupon_type="percentage", value=Decimal("15.00"))
        html = manager_client.get(reverse("pools:list")).content.decode()
        assert "Ten off" in html and "10.00" in html
        assert "50.00 EUR" in html and "Gift card" in html
        assert "15.00%" in html and "Bulk generation" in html
        assert "Create coupon pool" in html
        assert "<title>Coupon pools" in html

    def test_search_and_filters(self, manager_client):
        PoolFactory(name="Spring voucher", external_id="SPRING-01")
        PoolFactory(name="Autumn voucher", coupon_type="free_shipping", value=None)
        BulkPoolFactory(name="Winter bulk")

        def names(**params):
            table = manager_client.get(reverse("pools:list"), params).context["table"]
            return sorted(row.record.name for row in table.paginated_rows)

        assert names(q="spring") == ["Spring voucher"]
        assert names(q="SPRING-0") == ["Spring voucher"]
        assert names(source="bulk") == ["Winter bulk"]
        assert names(coupon_type="free_shipping") == ["Autumn voucher"]
        assert names(q="voucher", coupon_type="amount") == ["Spring voucher"]
        assert names(q="nothing like this") == []


class TestAccessByUserGroup:
    def test_pool_of_another_group_is_invisible(self, client):
        vip = GroupFactory(name="VIP team")
        member = UserFactory(username="member", groups=[vip])
        outsider = UserFactory(username="outsider")
        hidden = PoolFactory(name="VIP only", user_group=vip)
        PoolFactory(name="Public pool")

        client.force_login(outsider)
        html = client.get(reverse("pools:list")).content.decode()
        assert "Public pool" in html and "VIP only" not in html
        assert client.get(reverse("pools:edit", args=[hidden.pk])).status_code == 404
        assert client.post(reverse("pools:edit", args=[hidden.pk]), {**FORM}).status_code == 404
        hidden.refresh_from_db()
        assert hidden.name == "VIP only"

        client.force_login(member)
        assert "VIP only" in client.get(reverse("pools:list")).content.decode()
        assert client.get(reverse("pools:edit", args=[hidden.pk])).status_code == 200

    def test_superuser_sees_every_pool(self, admin_client_):
        PoolFactory(name="VIP only", user_group=GroupFactory())
        assert "VIP only" in admin_client_.get(reverse("pools:list")).content.decode()

    def test_manager_can_only_assign_own_groups(self, client):
        mine, other = GroupFactory(name="Mine"), GroupFactory(name="Other")
        user = UserFactory(username="grouped", groups=[mine])
        client.force_login(user)
        response = client.post(reverse("pools:create"), {**FORM, "user_group": other.pk})
        assert response.status_code == 200
        assert "Select a valid choice" in str(response.context["form"].errors["user_group"])
        response = client.post(reverse("pools:create"), {**FORM, "user_group": mine.pk})
        assert response.status_code == 302
        assert CouponPool.objects.get().user_group == mine


class TestCreateAndEdit:
    def test_form_shows_the_sections(self, manager_client):
        html = manager_client.get(reverse("pools:create")).content.decode()
        for section in ["Source", "General settings", "Restrictions", "Pass template", "User group"]:
            assert f">{section}</h2>" in html
        assert 'data-show-sources="bulk"' in html  # excluded characters only for bulk
        assert 'data-show-types="gift_card"' in html  # currency & minimums only for gift cards

    def test_create_bulk_pool(self, manager_client, manager):
        response = manager_client.post(reverse("pools:create"), FORM)
        pool = CouponPool.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("pools:overview", args=[pool.pk])
        assert (pool.source, pool.pattern, pool.excluded_characters) == ("bulk", "SUMMER-$$$$$$", "O,0")
        assert pool.value == Decimal("15.00") and pool.created_by == manager
        assert pool.expiration_period_display == "30 days"

    def test_invalid_input_is_explained_and_nothing_saved(self, manager_client):
        response = manager_client.post(
            reverse("pools:create"),
            {**FORM, "pattern": "AB-$$$", "value": "150", "currency": "EUR", "external_id": "x"},
        )
        assert response.status_code == 200
        errors = response.context["form"].errors
        assert "at least 4 placeholders" in errors["pattern"][0]
        assert "cannot be more than 100" in errors["value"][0]
        assert "applies to gift cards only" in errors["currency"][0]
        assert "6 to 24 characters" in errors["external_id"][0]
        assert "Please correct the fields marked below" in response.content.decode()
        assert not CouponPool.objects.exists()

    def test_currency_is_uppercased(self, manager_client):
        data = {**FORM, "coupon_type": "gift_card", "value": "50", "currency": "usd"}
        assert manager_client.post(reverse("pools:create"), data).status_code == 302
        assert CouponPool.objects.get().currency == "USD"

    def test_edit_pool(self, manager_client):
        pool = BulkPoolFactory(name="Old", pattern="OLD-$$$$", coupon_type="amount", value="5")
        data = {**FORM, "name": "New name", "pattern": "NEW-$$$$"}
        response = manager_client.post(reverse("pools:edit", args=[pool.pk]), data)
        assert response.status_code == 302
        pool.refresh_from_db()
        assert (pool.name, pool.pattern) == ("New name", "NEW-$$$$")

    def test_locked_pool_ignores_a_posted_pattern(self, manager_client):
        from django.utils import timezone

        pool = BulkPoolFactory(pattern="LOCKED-$$$$", generation_started_at=timezone.now())
        page = manager_client.get(reverse("pools:edit", args=[pool.pk])).content.decode()
        assert "Locked: bulk generation has started" in page
        data = {**FORM, "source": "uploaded", "pattern": "CHANGED-$$$$", "name": "Renamed"}
        assert manager_client.post(reverse("pools:edit", args=[pool.pk]), data).status_code == 302
        pool.refresh_from_db()
        assert (pool.source, pool.pattern, pool.name) == ("bulk", "LOCKED-$$$$", "Renamed")

    def test_duplicate_pattern_is_refused(self, manager_client):
        BulkPoolFactory(pattern="SUMMER-$$$$$$")
        response = manager_client.post(reverse("pools:create"), FORM)
        assert "each pool needs its own" in response.context["form"].errors["pattern"][0]

    def test_no_delete_anywhere_in_the_ui(self, manager_client):
        pool = PoolFactory()
        html = manager_client.get(reverse("pools:edit", args=[pool.pk])).content.decode()
        assert "Delete" not in html and "delete" not in html.lower().replace("data-bs-", "")
        assert manager_client.delete(reverse("pools:edit", args=[pool.pk])).status_code == 405
        assert CouponPool.objects.filter(pk=pool.pk).exists()


class TestCombinations:
    def get(self, client, **params):
        return client.get(reverse("pools:combinations"), params).content.decode()

    def test_counts_with_and_without_excluded_characters(self, manager_client):
        html = self.get(manager_client, source="bulk", pattern="SPRING-$$$$$$$$")
        assert "2,821,109,907,456" in html  # 36^8
        assert "28,211,099,074" in html  # 1%
        html = self.get(manager_client, source="bulk", pattern="SPRING-$$$$$$$$",
                        excluded_characters="O,0,I,1")
        assert "1,099,511,627,776" in html and "10,995,116,277" in html

    def test_generated_pool_ignores_bulk_only_exclusions(self, manager_client):
        html = self.get(manager_client, source="generated", pattern="####", excluded_characters="0")
        assert "10,000" in html

    def test_generic_code_and_errors(self, manager_client):
        assert "same generic code" in self.get(manager_client, source="generated", pattern="SPRING")
        assert "at least 4 placeholders" in self.get(manager_client, source="bulk", pattern="SPRING")
        assert "not a single character" in self.get(
            manager_client, source="bulk", pattern="####", excluded_characters="OO")
        assert "type a pattern" in self.get(manager_client, source="bulk", pattern="")

    def test_huge_counts_are_shown_compactly(self, manager_client):
        assert "about 5.2 × 10^114" in self.get(manager_client, source="bulk", pattern="*" * 64)

    def test_phrases_lower_the_capacity(self, manager_client):
        html = self.get(manager_client, source="bulk", pattern="#^^^", excluded_phrases="1\n2\n3\n4\n5")
        assert re.search(r"Excluded phrases rule out about \d+(\.\d+)?% of these combinations", html)

    def test_a_rare_phrase_is_less_than_a_share_not_about_less_than(self, manager_client):
        html = self.get(manager_client, source="bulk", pattern="*" * 12, excluded_phrases="QZXQZXQZ")
        assert "Excluded phrases rule out less than 0.01% of these combinations" in html
        assert "about less than" not in html


class TestModuleSettings:
    def test_the_page_is_named_apart_from_a_pools_settings_tab(self, manager_client):
        pool = PoolFactory()
        html = manager_client.get(reverse("pools:settings")).content.decode()
        assert "<title>Coupon module settings" in html and '<h1 class="h3 mb-1">Coupon module settings</h1>' in html
        menu = re.search(r'href="/pools/settings/">([^<]*)</a>', html)
        assert menu.group(1) == "Module settings"
        tab = manager_client.get(reverse("pools:edit", args=[pool.pk])).content.decode()
        assert re.search(r'href="/pools/settings/">Module settings</a>', tab)  # the menu
        assert re.search(r'aria-current="page" href="[^"]+">Settings</a>', tab)  # the pool's own tab

    def test_auto_redeem_toggle(self, manager_client):
        assert manager_client.post(reverse("pools:settings"), {"auto_redeem": "on"}).status_code == 302
        assert ModuleSettings.load().auto_redeem is True
        manager_client.post(reverse("pools:settings"), {})
        assert ModuleSettings.load().auto_redeem is False


class TestAdmin:
    def test_every_model_is_registered(self):
        ours = [m for app in ("pools", "coupons", "imports") for m in apps.get_app_config(app).get_models()]
        assert ours
        assert [m for m in ours if not admin.site.is_registered(m)] == []

    def test_pools_cannot_be_deleted_in_admin(self, admin_client_):
        pool = PoolFactory()
        url = reverse("admin:pools_couponpool_delete", args=[pool.pk])
        assert admin_client_.post(url, {"post": "yes"}).status_code == 403
        changelist = admin_client_.get(reverse("admin:pools_couponpool_changelist"))
        assert "delete_selected" not in changelist.content.decode()
        assert CouponPool.objects.filter(pk=pool.pk).exists()

    def test_admin_create_checks_the_same_rules(self, admin_client_):
        response = admin_client_.post(
            reverse("admin:pools_couponpool_add"),
            {"name": "Admin pool", "source": PoolSource.BULK, "pattern": "AB##",
             "coupon_type": "amount", "value": "1"},
        )
        assert response.status_code == 200
        assert "at least 4 placeholders" in response.content.decode()
        assert not CouponPool.objects.exists()


def test_staff_outside_a_group_does_not_see_its_pools_in_admin(client):
    staff = UserFactory(username="staffer", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_couponpool"))
    PoolFactory(name="Team pool", user_group=GroupFactory())
    PoolFactory(name="Open pool")
    client.force_login(staff)
    html = client.get(reverse("admin:pools_couponpool_changelist")).content.decode()
    assert "Open pool" in html and "Team pool" not in html


class TestPermissions:
    def test_read_only_user_cannot_write(self, client):
        pool = PoolFactory()
        client.force_login(UserFactory(username="reader", manager=False))
        assert client.get(reverse("pools:list")).status_code == 200
        assert client.get(reverse("pools:create")).status_code == 403
        assert client.post(reverse("pools:create"), FORM).status_code == 403
        assert client.post(reverse("pools:edit", args=[pool.pk]), FORM).status_code == 403
        assert client.post(reverse("pools:settings"), {"auto_redeem": "on"}).status_code == 403
        assert not CouponPool.objects.filter(name=FORM["name"]).exists()
        assert ModuleSettings.load().auto_redeem is False

    def test_demo_setup_creates_the_manager_group(self):
        from django.core.management import call_command

        from couponsite.permissions import MANAGER_GROUP

        call_command("demo_setup", stdout=__import__("io").StringIO())
        user = UserFactory(username="newbie", manager=False)
        user.groups.add(__import__("django.contrib.auth.models", fromlist=["Group"]).Group.objects.get(name=MANAGER_GROUP))
        user = type(user).objects.get(pk=user.pk)
        assert user.has_perms(["pools.add_couponpool", "coupons.change_coupon", "pools.change_modulesettings"])


def test_admin_offers_only_own_groups_to_staff(client):
    from django.contrib.auth.models import Permission

    mine = GroupFactory(name="Mine")
    GroupFactory(name="Theirs")
    staff = UserFactory(username="staffer2", is_staff=True, groups=[mine])
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_couponpool", "view_couponpool"]))
    client.force_login(staff)
    html = client.get(reverse("admin:pools_couponpool_add")).content.decode()
    assert ">Mine<" in html and ">Theirs<" not in html


def test_callback_api_key_is_never_sent_back_and_kept_when_left_empty(manager_client, fake_dns):
    # The host resolves when the pool is created, then no more: the unchanged URL does
    # not stop the edit.
    fake_dns.answers["partner.example"] = [["93.184.215.14"]]
    pool = PoolFactory(source="remote", callback_url="https://partner.example/coupons", callback_api_key="s3cr3t-key")
    html = manager_client.get(reverse("pools:edit", args=[pool.pk])).content.decode()
    assert "s3cr3t-key" not in html and "A key is stored" in html
    data = {"name": "Renamed", "source": "remote", "callback_url": "https://partner.example/coupons",
            "callback_api_key": "", "coupon_type": "amount", "value": "10"}
    assert manager_client.post(reverse("pools:edit", args=[pool.pk]), data).status_code == 302
    pool.refresh_from_db()
    assert (pool.name, pool.callback_api_key) == ("Renamed", "s3cr3t-key")
    assert fake_dns.lookups == ["partner.example", "partner.example"]


@pytest.mark.parametrize("share, text", [(0.0, "less than 0.01%"), (0.0004, "about 0.04%"), (0.123, "about 12.3%"),
                                         (0.9995, "more than 99.9%"), (0.05, "about 5%")])
def test_phrase_share_is_readable(share, text):
    from pools.views import percent_text

    assert percent_text(share) == text


def test_checkbox_help_texts_are_shown(manager_client):
    pool = PoolFactory()
    html = manager_client.get(reverse("pools:edit", args=[pool.pk])).content.decode()
    assert "A customer always gets the same code from this pool." in html
    assert "Only update coupons whose value is the current value" in html


def test_the_currency_field_keeps_its_bootstrap_class(manager_client):
    """Upper-case by a class (the Content-Security-Policy allows no style attribute)."""
    html = manager_client.get(reverse("pools:create")).content.decode()
    field = next(tag for tag in html.split("<input") if 'name="currency"' in tag)
    assert 'class="form-control text-uppercase"' in field and "style=" not in field
