"""The pool overview (first tab, landing page after save), stock on the pool list, and a
coupon's detail page with its restrictions and events."""

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from coupons import selectors
from coupons.models import CouponJob, CouponStatus, CustomerEvent
from coupons.services import Actor, coupon_claim, coupon_redeem, coupon_transfer
from couponsite import counting
from pools.models import CouponPool
from tests.factories import (
    BulkPoolFactory,
    CouponFactory,
    CustomerFactory,
    GiftCardPoolFactory,
    GroupFactory,
    PoolFactory,
    ProductFactory,
    StoreFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
S = CouponStatus


def text_of(html: str) -> str:
    """The page's text with tags dropped and white space folded, to assert sentences."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def section(html: str, testid: str) -> str:
    """The text of the element marked ``data-testid`` (one holding no element of its own tag)."""
    match = re.search(rf'<(\w+)[^>]*data-testid="{testid}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"no {testid} on the page"
    return text_of(match.group(2))


class TestOverview:
    def test_stock_terms_source_and_recent_jobs(self, manager_client):
        team = GroupFactory(name="Shop team")
        manager = UserFactory(username="manager", groups=[team])
        berlin, nowhere = StoreFactory(name="Berlin", external_id="BER-01"), StoreFactory(name="Pop-up", external_id=None)
        shoes = ProductFactory(name="Shoes", sku="SKU-SHOE")
        pool = BulkPoolFactory(name="Spring", pattern="SPR-$$$$$$", coupon_type="percentage", value="15.00",
                               purchase_minimum="30.00", expiration_period_count=2, expiration_period_unit="week",
                               pass_template="spring-pass", user_group=team, external_id="SPRING-2026",
                               excluded_characters="O,0", stores=[berlin, nowhere], products=[shoes])
        for _ in range(3):
            CouponFactory(pool=pool)
        CouponFactory(pool=pool, status=S.CLAIMED)
        CouponFactory(pool=pool, status=S.REDEEMED)
        CouponJob.objects.create(kind="bulk_action", pool=pool, params={"action": "invalidate"}, status="done",
                                 total=2, processed=2, message="2 coupons invalidated.")
        CouponJob.objects.create(kind="bulk_action", pool=PoolFactory(), params={"action": "invalidate"}, total=9)
        manager_client.force_login(manager)

        response = manager_client.get(reverse("pools:overview", args=[pool.pk]))

        assert response.status_code == 200
        html = response.content.decode()
        assert "<title>Spring · " in html
        tabs = re.search(r'<ul class="nav nav-tabs.*?</ul>', html, re.S).group(0)
        assert re.findall(r">(\w+)</a>", tabs) == ["Overview", "Settings", "Coupons", "Statistics"]
        assert f'active" aria-current="page" href="/pools/{pool.pk}/">Overview' in tabs
        cards = {slug: text_of(card) for slug, card in re.findall(r'data-testid="overview-count-(\w+)">(.*?)</a>', html, re.S)}
        assert cards == {"unassigned": "Not claimed yet 3", "claimed": "Claimed 1", "partially_redeemed": "Partially redeemed 0",
                         "redeemed": "Redeemed 1", "expired": "Expired 0", "invalid": "Invalid 0"}
        assert f'href="/pools/{pool.pk}/coupons/?status=unassigned"' in html
        summary = section(html, "stock-summary")
        assert "5 coupons in all." in summary and "3 are left for claims." in summary
        assert "Bulk generation can add" in summary
        terms = section(html, "terms")
        for expected in ["Type Percentage off", "Value 15.00%", "Currency any", "Purchase minimum baskets of at least 30.00",
                         "Expiry 2 weeks after the claim", "Berlin BER-01", "Pop-up no external ID",
                         "Products Shoes SKU-SHOE", "Aggregated no", "Pass template spring-pass",
                         "User group Shop team", "External ID SPRING-2026"]:
            assert expected in terms, expected
        source = section(html, "source")
        assert "Source Bulk generation" in source and "Pattern SPR-$$$$$$" in source and "Excluded characters O 0" in source
        jobs = section(html, "recent-jobs")
        assert "Invalidate 2 coupons" in jobs and "Done" in jobs and "2 coupons invalidated." in jobs
        assert "9 coupons" not in jobs  # another pool's job
        assert f'href="/pools/{pool.pk}/settings/"' in html  # Edit settings, for a manager

    def test_gift_card_terms(self, manager_client):
        pool = GiftCardPoolFactory(value="50.00", currency="EUR", minimum_value="5.00", minimum_redemption_value="10.00")
        terms = section(manager_client.get(reverse("pools:overview", args=[pool.pk])).content.decode(), "terms")
        assert "Value 50.00 EUR" in terms and "Currency EUR: only customers with this currency" in terms
        assert "voided when the balance falls below 5.00" in terms and "each redemption uses at least 10.00" in terms
        assert "Stores every store" in terms and "Products every product" in terms and "Expiry never" in terms

    def test_an_empty_pool_says_claims_fail_and_offers_the_upload(self, manager_client):
        pool = PoolFactory()
        html = manager_client.get(reverse("pools:overview", args=[pool.pk])).content.decode()
        summary = section(html, "stock-summary")
        assert "None is left for claims" in summary and "a claim fails until coupons are uploaded." in summary
        assert f'href="/imports/new/?pool={pool.pk}"' in html

    def test_generated_and_remote_sources(self, manager_client):
        generated = PoolFactory(source="generated", pattern="GEN-######")
        CouponFactory(pool=generated, status=S.CLAIMED)
        html = manager_client.get(reverse("pools:overview", args=[generated.pk])).content.decode()
        # 10^6 combinations, 1% = 10,000; one issued.
        assert "A code is made at each claim: up to 9,999 more" in section(html, "stock-summary")
        generic = PoolFactory(source="generated", pattern="SPRINGCOUPON")
        html = manager_client.get(reverse("pools:overview", args=[generic.pk])).content.decode()
        assert "Every claim gets the same code, SPRINGCOUPON." in section(html, "stock-summary")
        remote = PoolFactory(source="remote", callback_url="https://93.184.215.14/issue", callback_api_key="k" * 20)
        html = manager_client.get(reverse("pools:overview", args=[remote.pk])).content.decode()
        source = section(html, "source")
        assert "Callback URL https://93.184.215.14/issue" in source and "Callback API key stored (not shown)" in source
        assert "k" * 20 not in html
        assert "Each claim asks the remote system for a code." in section(html, "stock-summary")

    def test_big_pools_are_estimated_not_counted(self, manager_client, monkeypatch):
        pool = PoolFactory()
        CouponFactory(pool=pool)
        monkeypatch.setattr(counting, "estimate_count", lambda queryset: 5_000_000)
        with CaptureQueriesContext(connection) as queries:
            html = manager_client.get(reverse("pools:overview", args=[pool.pk])).content.decode()
        assert "About 30,000,000 coupons in all." in section(html, "stock-summary")
        assert not [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper() and "coupons_coupon" in q["sql"]]

    def test_readers_see_it_without_edit_links_and_other_groups_get_404(self, client):
        pool = PoolFactory(name="Open")
        hidden = PoolFactory(user_group=GroupFactory())
        client.force_login(UserFactory(username="reader", manager=False))
        response = client.get(reverse("pools:overview", args=[pool.pk]))
        assert response.status_code == 200
        assert "Edit settings" not in response.content.decode()
        assert client.get(reverse("pools:overview", args=[hidden.pk])).status_code == 404

    def test_anonymous_users_are_sent_to_login(self, client):
        pool = PoolFactory()
        response = client.get(reverse("pools:overview", args=[pool.pk]))
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


class TestLandingAfterSave:
    FORM = {"name": "Welcome", "source": "uploaded", "coupon_type": "amount", "value": "5.00"}

    def test_create_then_edit_land_on_the_overview(self, manager_client):
        response = manager_client.post(reverse("pools:create"), self.FORM)
        pool = CouponPool.objects.get()
        assert response.status_code == 302 and response["Location"] == reverse("pools:overview", args=[pool.pk])
        response = manager_client.post(reverse("pools:edit", args=[pool.pk]), {**self.FORM, "value": "6.00"}, follow=True)
        assert response.redirect_chain[-1][0] == f"/pools/{pool.pk}/"
        html = response.content.decode()
        assert "Coupon pool “Welcome” saved." in html and "Value 6.00" in section(html, "terms")

    def test_cancel_leads_back_to_the_list_or_to_the_pool_edited(self, manager_client):
        pool = PoolFactory()
        cancel = r'href="([^"]+)">Cancel</a>'
        assert re.search(cancel, manager_client.get(reverse("pools:create")).content.decode()).group(1) == reverse("pools:list")
        edit = manager_client.get(reverse("pools:edit", args=[pool.pk])).content.decode()
        assert re.search(cancel, edit).group(1) == reverse("pools:overview", args=[pool.pk])

    def test_the_form_moved_under_settings(self, manager_client):
        pool = PoolFactory()
        assert reverse("pools:edit", args=[pool.pk]) == f"/pools/{pool.pk}/settings/"
        assert 'id="pool-form"' in manager_client.get(f"/pools/{pool.pk}/settings/").content.decode()

    def test_store_and_product_choices_name_their_api_ids(self, manager_client):
        StoreFactory(name="Berlin", external_id="BER-01")
        StoreFactory(name="Pop-up", external_id=None)
        ProductFactory(name="Shoes", sku="SKU-SHOE")
        html = manager_client.get(reverse("pools:create")).content.decode()
        assert re.search(r'<option value="\d+">Berlin \(BER-01\)</option>', html)
        assert re.search(r'<option value="\d+">Pop-up \(no external ID\)</option>', html)
        assert re.search(r'<option value="\d+">Shoes \(SKU-SHOE\)</option>', html)


class TestPoolListStock:
    def test_each_pool_shows_its_stock_and_links_to_its_overview(self, manager_client):
        uploaded = PoolFactory(name="Uploaded")
        for _ in range(3):
            CouponFactory(pool=uploaded)
        CouponFactory(pool=uploaded, status=S.CLAIMED)
        PoolFactory(name="Generated", source="generated", pattern="G-######")
        empty = BulkPoolFactory(name="Empty bulk")
        html = manager_client.get(reverse("pools:list")).content.decode()
        rows = {re.search(r">([\w ]+)</a>", row).group(1): text_of(row) for row in re.findall(r"<tr.*?</tr>", html, re.S)[1:]}
        assert "3 unassigned" in rows["Uploaded"]
        assert "made at each claim" in rows["Generated"]
        assert "0 unassigned" in rows["Empty bulk"]
        assert f'href="/pools/{uploaded.pk}/"' in html and f'href="/pools/{empty.pk}/"' in html
        assert re.search(r"<th[^>]*>\s*Stock\s*</th>", html)

    def test_a_page_of_50_pools_counts_its_stock_in_one_bounded_query(self, manager_client, django_assert_max_num_queries):
        # Given 50 pools on the page: 48 uploaded ones with 0..2 unassigned, a generated and a remote one
        pools = [PoolFactory(name=f"Pool {n:02}") for n in range(48)]
        for n, pool in enumerate(pools):
            for _ in range(n % 3):
                CouponFactory(pool=pool)
            CouponFactory(pool=pool, status=S.CLAIMED)  # not stock
        PoolFactory(name="Made", source="generated", pattern="G-######")
        PoolFactory(name="Asked", source="remote", callback_url="https://93.184.215.14/issue", callback_api_key="k" * 20)
        # When the list is read
        with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(12):
            html = manager_client.get(reverse("pools:list")).content.decode()
        # Then one query reads the coupons, bounded per pool, and every count is exact
        on_coupons = [q["sql"] for q in queries.captured_queries if "coupons_coupon" in q["sql"]]
        assert len(on_coupons) == 1 and "LIMIT 10001" in on_coupons[0]
        rows = {re.search(r">([\w ]+)</a>", row).group(1): text_of(row) for row in re.findall(r"<tr.*?</tr>", html, re.S)[1:]}
        assert len(rows) == 50
        assert all(f"{n % 3} unassigned" in rows[f"Pool {n:02}"] for n in range(48))
        assert "made at each claim" in rows["Made"] and "from the remote system" in rows["Asked"]

    def test_pools_past_the_cap_say_about_with_one_explain_for_all(self, manager_client, monkeypatch):
        monkeypatch.setattr(selectors, "LIST_STOCK_EXACT_LIMIT", 2)
        small = PoolFactory(name="Small")
        CouponFactory.create_batch(2, pool=small)
        big = [PoolFactory(name=f"Big {n}") for n in range(3)]
        for pool in big:
            CouponFactory.create_batch(5, pool=pool)
        with CaptureQueriesContext(connection) as queries:
            html = manager_client.get(reverse("pools:list")).content.decode()
        on_coupons = [q["sql"] for q in queries.captured_queries if "coupons_coupon" in q["sql"]]
        assert len(on_coupons) == 2 and "LIMIT 3" in on_coupons[0] and on_coupons[1].startswith("EXPLAIN")
        assert html.count('data-testid="stock">2<') == 1
        abouts = [int(n.replace(",", "")) for n in re.findall(r'data-testid="stock">about ([\d,]+)<', html)]
        assert len(abouts) == 3 and all(n >= 3 for n in abouts)  # never below what the bounded count met
        monkeypatch.setattr(selectors, "LIST_STOCK_EXACT_LIMIT", 10_000)
        html = manager_client.get(reverse("pools:list")).content.decode()
        assert html.count('data-testid="stock">5<') == 3

    def test_the_list_and_the_overview_say_the_same_stock(self, manager_client, monkeypatch):
        # One rule (selectors.pool_holds_stock, selectors.Stock): the same source test and wording
        pool = BulkPoolFactory(name="Bulk", pattern="B-######")
        CouponFactory.create_batch(3, pool=pool)
        listed = text_of(manager_client.get(reverse("pools:list")).content.decode())
        overview = section(manager_client.get(reverse("pools:overview", args=[pool.pk])).content.decode(), "stock-summary")
        assert "3 unassigned" in listed and "3 are left for claims." in overview
        monkeypatch.setattr(selectors, "LIST_STOCK_EXACT_LIMIT", 1)
        monkeypatch.setattr(counting, "estimate_count", lambda queryset: 500_000)
        listed = text_of(manager_client.get(reverse("pools:list")).content.decode())
        overview = section(manager_client.get(reverse("pools:overview", args=[pool.pk])).content.decode(), "stock-summary")
        assert "about 500,000 unassigned" in listed and "About 500,000 are left for claims." in overview
        assert selectors.pool_holds_stock(pool) and not selectors.pool_holds_stock(CouponPool(source="generated"))


class TestCouponDetail:
    def test_code_on_the_coupons_tab_links_to_it(self, manager_client):
        coupon = CouponFactory(code="LINK-ME-1")
        html = manager_client.get(reverse("coupons:pool_coupons", args=[coupon.pool_id])).content.decode()
        assert f'<a href="/coupons/{coupon.pk}/">LINK-ME-1</a>' in html

    def test_holder_value_restrictions_and_readable_events_newest_first(self, manager_client):
        berlin = StoreFactory(name="Berlin", external_id="BER-01")
        shoes = ProductFactory(name="Shoes", sku="SKU-SHOE")
        pool = GiftCardPoolFactory(name="Gifts", value="100.00", currency="EUR", purchase_minimum="20.00",
                                   minimum_redemption_value="5.00", expiration_period_count=1, expiration_period_unit="year",
                                   pass_template="gift-pass", stores=[berlin], products=[shoes])
        CouponFactory(pool=pool, code="GIFT-0001")
        alice, bob = CustomerFactory(external_id="ALICE"), CustomerFactory(external_id="BOB")
        coupon = coupon_claim(pool=pool, customer=alice, actor=Actor.system())
        coupon = coupon_transfer(coupon=coupon, actor=Actor.system(), customer_id="BOB")
        coupon_redeem(coupon=coupon, actor=Actor.system(), amount=Decimal("30.00"))

        response = manager_client.get(reverse("coupons:coupon_detail", args=[coupon.pk]))

        assert response.status_code == 200
        html = response.content.decode()
        assert "<title>Coupon GIFT-0001 · Gifts" in html
        facts = section(html, "coupon")
        assert "Pool Gifts" in facts and "Customer BOB" in facts and "Balance / value 70.00 / 100.00 EUR" in facts
        assert f'href="/customers/{bob.pk}/"' in html and f'href="/pools/{pool.pk}/"' in html
        restrictions = section(html, "restrictions")
        for expected in ["Type Gift card", "Value 100.00 EUR", "Purchase minimum baskets of at least 20.00", "Berlin BER-01",
                         "Shoes SKU-SHOE", "Currency EUR", "each redemption uses at least 5.00", "Expiry 1 year after the claim",
                         "Pass template gift-pass"]:
            assert expected in restrictions, expected
        events = section(html, "events")
        assert [e.action for e in response.context["events_page"].rows] == [
            "coupon_redeem", "coupon_receive", "coupon_transfer", "coupon_claim"]
        assert "from customer alice" in events.lower() and "to customer bob" in events.lower()  # coupons.events_display
        assert "30.00 EUR" in events and "70.00 EUR" in events and "balance:" not in events
        assert "30.00" in section(html, "redemptions")
        # A manager gets what the status allows (actions.allowed_actions), coming back here
        assert re.findall(r'data-row-action="(\w+)"', html) == ["redeem", "unredeem", "invalidate"]  # a part-spent card can be voided
        assert f"/coupons/{coupon.pk}/redeem/?next=%2Fcoupons%2F{coupon.pk}%2F" in html

    def test_the_terms_read_as_on_the_overview_and_the_value_as_on_the_coupons_tab(self, manager_client):
        """One terms block (pools/_terms.html) and one value formatter (pools.models.value_text)."""
        card = CouponFactory(pool=GiftCardPoolFactory(value="50.00", currency="EUR", purchase_minimum="20.00"),
                             status=S.CLAIMED)
        shipping = CouponFactory(pool=PoolFactory(coupon_type="free_shipping", value=None))
        said = {}
        for coupon, value in [(card, "50.00 / 50.00 EUR"), (shipping, "Free shipping")]:
            page = manager_client.get(reverse("coupons:coupon_detail", args=[coupon.pk])).content.decode()
            overview = manager_client.get(reverse("pools:overview", args=[coupon.pool_id])).content.decode()
            tab = manager_client.get(reverse("coupons:pool_coupons", args=[coupon.pool_id])).content.decode()
            assert re.search(rf"<td[^>]*>\s*{re.escape(value)}\s*</td>", tab), value
            assert value in section(page, "coupon")
            shared = section(page, "restrictions").split(" Terms version")[0]
            assert shared.startswith("Type ") and shared in section(overview, "terms"), shared
            said[coupon.code] = shared
        assert "Value 50.00 EUR Currency EUR: only customers with this currency" in said[card.code]
        assert "Type Free shipping Value none Currency any Purchase minimum none" in said[shipping.code]

    def test_an_action_from_the_detail_page_returns_to_it(self, manager_client):
        coupon = CouponFactory(status=S.CLAIMED)
        url = reverse("coupons:coupon_detail", args=[coupon.pk])
        response = manager_client.post(reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"]), {"next": url}, follow=True)
        assert response.redirect_chain[-1][0] == url
        assert response.context["coupon"].status == S.INVALID
        assert f"Coupon {coupon.code} invalidated." in response.content.decode()

    def test_readers_see_no_actions_and_other_groups_get_404(self, client):
        coupon = CouponFactory(status=S.CLAIMED)
        hidden = CouponFactory(pool=PoolFactory(user_group=GroupFactory()))
        client.force_login(UserFactory(username="reader", manager=False))
        response = client.get(reverse("coupons:coupon_detail", args=[coupon.pk]))
        assert response.status_code == 200
        html = response.content.decode()
        assert "data-row-action" not in html and 'id="dialog"' not in html
        assert client.get(reverse("coupons:coupon_detail", args=[hidden.pk])).status_code == 404
        assert client.get(reverse("coupons:coupon_detail", args=[999_999])).status_code == 404

    def test_events_are_paged_by_keyset(self, manager_client, monkeypatch):
        from coupons import views

        monkeypatch.setattr(views, "PAGE_SIZE", 2)
        pool = PoolFactory(aggregated=True)
        CouponFactory(pool=pool)
        customer = CustomerFactory()
        for _ in range(3):
            coupon = coupon_claim(pool=pool, customer=customer, actor=Actor.system())
        url = reverse("coupons:coupon_detail", args=[coupon.pk])
        first = manager_client.get(url)
        ids = [e.pk for e in first.context["events_page"].rows]
        events = section(first.content.decode(), "events")
        assert len(ids) == 2 and events.count("Claimed again") == 2 and "again: True" not in events
        older = manager_client.get(url, {"events_after": first.context["events_page"].next_cursor})
        assert [e.pk for e in older.context["events_page"].rows] == [
            CustomerEvent.objects.filter(coupon=coupon).order_by("id").first().pk]
