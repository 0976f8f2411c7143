"""The Coupons tab, row actions, bulk posts, export, statistics and customer pages."""

import csv
import io

import pytest
from django.urls import reverse

from coupons.models import Coupon, CouponJob, CouponStatus, CustomerEvent
from coupons.propagation import UpdateMethod
from tests.factories import CouponFactory, CustomerFactory, GroupFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


def page_codes(response):
    return [row.record.code for row in response.context["table"].rows]


class TestCouponsTab:
    def test_lists_the_pools_coupons_newest_first(self, manager_client):
        pool = PoolFactory()
        first, second = CouponFactory(pool=pool, code="AAA-1"), CouponFactory(pool=pool, code="AAA-2")
        CouponFactory(code="OTHER-POOL")
        response = manager_client.get(reverse("coupons:pool_coupons", args=[pool.pk]))
        assert page_codes(response) == [second.code, first.code]
        html = response.content.decode()
        assert "Not claimed yet" in html and "Invalidate selected" in html
        assert "<title>Coupons · " in html

    def test_keyset_pages_without_offset(self, manager_client, monkeypatch, django_assert_max_num_queries):
        from coupons import views

        monkeypatch.setattr(views, "PAGE_SIZE", 3)
        pool = PoolFactory()
        codes = [CouponFactory(pool=pool, code=f"K-{n:02d}").code for n in range(8)]
        url = reverse("coupons:pool_coupons", args=[pool.pk])
        first = manager_client.get(url)
        assert page_codes(first) == codes[::-1][:3]
        nxt = first.context["page"].next_cursor
        second = manager_client.get(url, {"after": nxt})
        assert page_codes(second) == codes[::-1][3:6]
        back = manager_client.get(url, {"before": second.context["page"].prev_cursor})
        assert page_codes(back) == codes[::-1][:3]
        last = manager_client.get(url, {"after": second.context["page"].next_cursor})
        assert page_codes(last) == codes[::-1][6:] and last.context["page"].next_cursor is None

    @pytest.mark.parametrize("params, expected", [
        ({"q": "SPRING-AB"}, {"SPRING-ABC", "SPRING-ABD"}),
        ({"q": "SPRING-ABC", "match": "exact"}, {"SPRING-ABC"}),
        ({"q": "spring-abc"}, set()),  # codes are case-sensitive
        ({"q": "CUST-X"}, {"SPRING-XYZ"}),
        ({"q": "holder@example.com"}, {"SPRING-XYZ"}),
        ({"status": "claimed"}, {"SPRING-XYZ"}),
        ({"status": "unassigned"}, {"SPRING-ABC", "SPRING-ABD"}),
    ])
    def test_search_and_filters(self, manager_client, params, expected):
        pool = PoolFactory()
        CouponFactory(pool=pool, code="SPRING-ABC"), CouponFactory(pool=pool, code="SPRING-ABD")
        CouponFactory(pool=pool, code="SPRING-XYZ", status=S.CLAIMED,
                      customer=CustomerFactory(external_id="CUST-X", email="Holder@example.com"))
        response = manager_client.get(reverse("coupons:pool_coupons", args=[pool.pk]), params)
        assert set(page_codes(response)) == expected

    def test_date_filters(self, manager_client):
        import datetime

        from django.utils import timezone

        pool = PoolFactory()
        day = timezone.make_aware(datetime.datetime(2026, 3, 10, 12))
        CouponFactory(pool=pool, code="IN", status=S.CLAIMED, claimed_at=day, expires_at=day + datetime.timedelta(days=30))
        CouponFactory(pool=pool, code="OUT", status=S.CLAIMED, claimed_at=day - datetime.timedelta(days=5))
        url = reverse("coupons:pool_coupons", args=[pool.pk])
        assert page_codes(manager_client.get(url, {"claimed_from": "2026-03-10", "claimed_to": "2026-03-10"})) == ["IN"]
        assert page_codes(manager_client.get(url, {"expires_from": "2026-04-09", "expires_to": "2026-04-09"})) == ["IN"]
        bad = manager_client.get(url, {"claimed_from": "not-a-date"})
        assert page_codes(bad) == [] and "Enter a valid date" in bad.content.decode()

    def test_row_menu_shows_only_allowed_actions(self, manager_client):
        pool = PoolFactory()
        CouponFactory(pool=pool, status=S.REDEEMED, code="RED-1")
        html = manager_client.get(reverse("coupons:pool_coupons", args=[pool.pk])).content.decode()
        import re

        assert re.findall(r'data-row-action="(\w+)"', html) == ["unredeem"]

    def test_pool_of_another_group_is_404(self, client):
        pool = PoolFactory(user_group=GroupFactory())
        coupon = CouponFactory(pool=pool)
        client.force_login(UserFactory(username="outsider"))
        for url in [reverse("coupons:pool_coupons", args=[pool.pk]), reverse("coupons:pool_statistics", args=[pool.pk]),
                    reverse("coupons:pool_coupons_export", args=[pool.pk]),
                    reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"])]:
            assert client.get(url).status_code == 404, url
        assert client.post(reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"])).status_code == 404
        assert client.post(reverse("coupons:pool_coupons_bulk", args=[pool.pk]),
                           {"action": "invalidate", "select_all": "1"}).status_code == 404
        assert Coupon.objects.get(pk=coupon.pk).status == S.UNASSIGNED


class TestRowActions:
    def test_dialog_then_action(self, manager_client):
        coupon = CouponFactory(status=S.CLAIMED)
        url = reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"])
        dialog = manager_client.get(url).content.decode()
        assert "Invalidate coupon" in dialog and coupon.customer.external_id in dialog
        response = manager_client.post(url, {"next": "/pools/"}, follow=True)
        assert response.redirect_chain[-1][0] == "/pools/"
        assert f"Coupon {coupon.code} invalidated." in response.content.decode()
        assert Coupon.objects.get(pk=coupon.pk).status == S.INVALID

    def test_refusal_is_reported_and_nothing_changes(self, manager_client):
        coupon = CouponFactory(status=S.EXPIRED)
        url = reverse("coupons:coupon_action", args=[coupon.pk, "redeem"])
        response = manager_client.post(url, follow=True)
        assert "Only claimed coupons can be redeemed; this one is expired." in response.content.decode()
        assert Coupon.objects.get(pk=coupon.pk).status == S.EXPIRED

    def test_transfer_asks_for_the_target(self, manager_client):
        coupon = CouponFactory(status=S.CLAIMED)
        target = CustomerFactory(email="new@example.com")
        url = reverse("coupons:coupon_action", args=[coupon.pk, "transfer"])
        assert "Target customer email" in manager_client.get(url).content.decode()
        empty = manager_client.post(url, {}, follow=True)
        assert "Enter the target customer" in empty.content.decode()
        manager_client.post(url, {"email": "new@example.com"})
        assert Coupon.objects.get(pk=coupon.pk).customer == target

    def test_gift_card_redeem_asks_for_an_amount(self, manager_client):
        from decimal import Decimal

        from tests.factories import GiftCardPoolFactory

        card = CouponFactory(pool=GiftCardPoolFactory(value="50.00"), status=S.CLAIMED)
        url = reverse("coupons:coupon_action", args=[card.pk, "redeem"])
        dialog = manager_client.get(url).content.decode()
        assert "balance is <strong>50.00 EUR</strong>" in dialog and 'name="amount"' in dialog
        manager_client.post(url, {"amount": "20"})
        card.refresh_from_db()
        assert (card.status, card.balance) == (S.PARTIALLY_REDEEMED, Decimal("30.00"))
        refused = manager_client.post(url, {"amount": "31"}, follow=True)
        assert "balance is 30.00; 31.00 cannot be taken" in refused.content.decode()
        bad = manager_client.post(url, {"amount": "-1"}, follow=True)
        assert "greater than or equal to 0.01" in bad.content.decode()
        manager_client.post(url, {"amount": ""})  # empty: the whole balance
        card.refresh_from_db()
        assert (card.status, card.balance) == (S.REDEEMED, Decimal("0.00"))

    def test_open_redirects_are_refused(self, manager_client):
        coupon = CouponFactory(status=S.CLAIMED)
        response = manager_client.post(reverse("coupons:coupon_action", args=[coupon.pk, "redeem"]),
                                       {"next": "https://evil.example/"})
        assert response["Location"] == reverse("coupons:pool_coupons", args=[coupon.pool_id])

    def test_unknown_action_is_404(self, manager_client):
        coupon = CouponFactory()
        assert manager_client.get(f"/coupons/{coupon.pk}/explode/").status_code == 404


class TestBulkPost:
    def test_selected_ids_are_narrowed_by_the_pool_and_filters(self, manager_client):
        pool = PoolFactory()
        mine = [CouponFactory(pool=pool, status=S.CLAIMED) for _ in range(3)]
        foreign = CouponFactory(status=S.CLAIMED)
        response = manager_client.post(reverse("coupons:pool_coupons_bulk", args=[pool.pk]), {
            "action": "redeem", "status": "claimed",
            "selected": [mine[0].pk, mine[1].pk, foreign.pk],
        }, follow=True)
        assert "Redeemed 2 coupons." in response.content.decode()
        assert Coupon.objects.get(pk=foreign.pk).status == S.CLAIMED
        assert Coupon.objects.get(pk=mine[2].pk).status == S.CLAIMED

    def test_all_matching_with_skips_explained(self, manager_client):
        pool = PoolFactory()
        for status in (S.UNASSIGNED, S.UNASSIGNED, S.REDEEMED):
            CouponFactory(pool=pool, status=status)
        response = manager_client.post(reverse("coupons:pool_coupons_bulk", args=[pool.pk]),
                                       {"action": "invalidate", "select_all": "1"}, follow=True)
        assert "Invalidated 2 coupons. Skipped 1: 1 already redeemed." in response.content.decode()

    def test_large_selection_becomes_a_job(self, manager_client, monkeypatch):
        from coupons import bulk

        monkeypatch.setattr(bulk, "ASYNC_THRESHOLD", 2)
        pool = PoolFactory()
        for _ in range(3):
            CouponFactory(pool=pool, status=S.CLAIMED)
        response = manager_client.post(reverse("coupons:pool_coupons_bulk", args=[pool.pk]),
                                       {"action": "unassign", "select_all": "1", "status": "claimed"})
        job = CouponJob.objects.get()
        assert (job.params["action"], job.params["filters"], job.total) == ("unassign", {"status": "claimed"}, 3)
        assert response["Location"].endswith(f"status=claimed&job=bulk_action%3A{job.pk}")
        page = manager_client.get(response["Location"]).content.decode()
        assert "About 3 coupons are being unassigned in the background; the list refreshes when they are done." in page and f'id="job-bulk_action-{job.pk}"' in page
        fragment = manager_client.get(reverse("coupons:job", args=["bulk_action", job.pk])).content.decode()
        assert 'hx-trigger="every 1s"' in fragment and "0 of about 3 coupons done" in fragment

    @pytest.mark.parametrize("data, message", [
        ({"action": "invalidate"}, "Tick at least one coupon first."),
        ({"action": "invalidate", "select_all": "1", "claimed_from": "nope"}, "The filters are not valid"),
    ])
    def test_bad_posts_change_nothing(self, manager_client, data, message):
        pool = PoolFactory()
        coupon = CouponFactory(pool=pool)
        response = manager_client.post(reverse("coupons:pool_coupons_bulk", args=[pool.pk]), data, follow=True)
        assert message in response.content.decode()
        assert Coupon.objects.get(pk=coupon.pk).status == S.UNASSIGNED

    def test_unknown_action_is_a_bad_request(self, manager_client):
        pool = PoolFactory()
        assert manager_client.post(reverse("coupons:pool_coupons_bulk", args=[pool.pk]),
                                   {"action": "delete", "select_all": "1"}).status_code == 400


def test_export_streams_the_filtered_list_with_formulas_neutralised(manager_client, monkeypatch):

    pool = PoolFactory()
    CouponFactory(pool=pool, code="=HYPERLINK(1)")
    CouponFactory(pool=pool, code="+SUM", status=S.CLAIMED, customer=CustomerFactory(external_id="@evil"))
    CouponFactory(pool=pool, code="PLAIN")
    response = manager_client.get(reverse("coupons:pool_coupons_export", args=[pool.pk]))
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:5] == ["code", "customer", "claimed_at", "expires_at", "status"]
    assert [r[0] for r in rows[1:]] == ["PLAIN", "'+SUM", "'=HYPERLINK(1)"]
    assert rows[2][1] == "'@evil" and rows[2][4] == "claimed"
    filtered = manager_client.get(reverse("coupons:pool_coupons_export", args=[pool.pk]), {"status": "claimed"})
    assert b"".join(filtered.streaming_content).decode("utf-8-sig").count("\n") == 2


def test_statistics_page(manager_client):
    from coupons.services import Actor, coupon_claim, coupon_redeem

    pool = PoolFactory()
    for _ in range(3):
        CouponFactory(pool=pool)
    customer = CustomerFactory()
    coupon = coupon_claim(pool=pool, customer=customer, actor=Actor.system())
    coupon_redeem(coupon=coupon, actor=Actor.system())
    response = manager_client.get(reverse("coupons:pool_statistics", args=[pool.pk]))
    counts = {s.slug: n for s, n, _ in response.context["status_counts"]}
    assert counts["unassigned"] == 2 and counts["redeemed"] == 1
    activity = response.context["activity"]
    assert activity["claims"][-1] == 1 and activity["redemptions"][-1] == 1 and len(activity["labels"]) == 30
    assert 'id="activity-data"' in response.content.decode()


class TestCustomers:
    def test_list_and_search(self, manager_client):
        CustomerFactory(external_id="ALICE-1", email="alice@example.com")
        CustomerFactory(external_id="BOB-1")
        html = manager_client.get(reverse("coupons:customers"), {"q": "ALI"}).content.decode()
        assert "ALICE-1" in html and "BOB-1" not in html
        html = manager_client.get(reverse("coupons:customers"), {"q": "Alice@Example.com"}).content.decode()
        assert "ALICE-1" in html

    def test_customer_page_shows_coupons_and_events_newest_first(self, manager_client):
        from coupons.services import Actor, coupon_claim, coupon_redeem

        pool = PoolFactory(name="Welcome")
        CouponFactory(pool=pool, code="WELCOME-1")
        customer = CustomerFactory()
        coupon = coupon_claim(pool=pool, customer=customer, actor=Actor.system())
        coupon_redeem(coupon=coupon, actor=Actor.system())
        response = manager_client.get(reverse("coupons:customer", args=[customer.pk]))
        assert [e.action for e in response.context["events_page"].rows] == ["coupon_redeem", "coupon_claim"]
        assert "WELCOME-1" in response.content.decode()

    def test_events_of_hidden_pools_are_hidden(self, client):
        from coupons.services import Actor, coupon_claim

        hidden_pool = PoolFactory(user_group=GroupFactory())
        CouponFactory(pool=hidden_pool, code="SECRET-1")
        customer = CustomerFactory()
        coupon_claim(pool=hidden_pool, customer=customer, actor=Actor.system())
        client.force_login(UserFactory(username="outsider"))
        html = client.get(reverse("coupons:customer", args=[customer.pk])).content.decode()
        assert "SECRET-1" not in html

    def test_assign_a_coupon_from_a_pool(self, manager_client):
        pool = PoolFactory(name="Welcome")
        coupon = CouponFactory(pool=pool)
        customer = CustomerFactory()
        response = manager_client.post(reverse("coupons:customer_assign", args=[customer.pk]), {"pool": pool.pk}, follow=True)
        assert f"Coupon {coupon.code} from “Welcome” assigned" in response.content.decode()
        assert Coupon.objects.get(pk=coupon.pk).customer == customer
        empty = manager_client.post(reverse("coupons:customer_assign", args=[customer.pk]), {"pool": pool.pk}, follow=True)
        assert "has no unassigned coupons left" in empty.content.decode()

    def test_cannot_assign_from_a_hidden_pool(self, client):
        hidden = PoolFactory(user_group=GroupFactory())
        coupon = CouponFactory(pool=hidden)
        customer = CustomerFactory()
        client.force_login(UserFactory(username="outsider"))
        client.post(reverse("coupons:customer_assign", args=[customer.pk]), {"pool": hidden.pk})
        assert Coupon.objects.get(pk=coupon.pk).customer is None


class TestPoolEditPropagation:
    def test_edit_with_update_method_and_preview(self, manager_client):
        pool = PoolFactory(value="10.00")
        claimed = CouponFactory(pool=pool, status=S.CLAIMED)
        unassigned = CouponFactory(pool=pool)
        preview = manager_client.get(reverse("pools:update_preview", args=[pool.pk]),
                                     {"update_method": UpdateMethod.UNASSIGNED}).content.decode()
        assert "changes <strong>1</strong> coupon" in preview
        data = {"name": pool.name, "source": "uploaded", "coupon_type": "amount", "value": "12.00",
                "update_method": UpdateMethod.UNASSIGNED}
        response = manager_client.post(reverse("pools:edit", args=[pool.pk]), data, follow=True)
        assert "1 coupon updated." in response.content.decode()
        values = dict(Coupon.objects.filter(pool=pool).values_list("pk", "terms__effective__value"))
        assert values[unassigned.pk] == 12 and values[claimed.pk] == 10
        assert not CustomerEvent.objects.exists()

    def test_edit_page_offers_the_update_methods(self, manager_client):
        pool = PoolFactory()
        html = manager_client.get(reverse("pools:edit", args=[pool.pk])).content.decode()
        for label in ["Do not update coupons", "Update unassigned coupons", "Update not yet redeemed coupons",
                      "Update all coupons", "Matching"]:
            assert label in html

    def test_update_methods_are_stacked_radios_and_the_source_a_button_group(self, manager_client):
        pool = PoolFactory()
        html = manager_client.get(reverse("pools:edit", args=[pool.pk])).content.decode()
        assert html.count('<div class="form-check">\n      <input type="radio" name="update_method"') == 4
        assert '<input type="radio" name="source" value="uploaded" class="btn-check"' in html
        assert 'aria-describedby="id_update_matching_helptext"' in html and 'id="id_update_matching_helptext"' in html


def test_matching_count_is_exact_without_a_planner_estimate(manager_client, monkeypatch):
    from coupons import views
    from couponsite import counting

    monkeypatch.setattr(counting, "estimate_count", lambda queryset: None)  # as on SQLite
    monkeypatch.setattr(views, "PAGE_COUNT_EXACT_LIMIT", 2)
    pool = PoolFactory()
    for _ in range(5):
        CouponFactory(pool=pool)
    response = manager_client.get(reverse("coupons:pool_coupons", args=[pool.pk]))
    assert (response.context["matching"], response.context["matching_is_estimate"]) == (5, False)


@pytest.mark.parametrize("codes, text", [(["ONE-1"], "1 coupon matches"), (["TWO-1", "TWO-2"], "2 coupons match")])
def test_the_coupons_tab_counts_the_matching_coupons_in_singular_and_plural(manager_client, codes, text):
    pool = PoolFactory()
    for code in [*codes, "OTHER-1"]:
        CouponFactory(pool=pool, code=code)
    html = manager_client.get(reverse("coupons:pool_coupons", args=[pool.pk]), {"q": codes[0].split("-")[0]}).content.decode()
    assert f'data-testid="matching">{text}</span>' in html


def test_a_pool_edit_counts_the_coupons_it_updated_in_the_plural(manager_client):
    pool = PoolFactory(value="10.00")
    CouponFactory.create_batch(2, pool=pool)
    data = {"name": pool.name, "source": "uploaded", "coupon_type": "amount", "value": "12.00",
            "update_method": UpdateMethod.UNASSIGNED}
    response = manager_client.post(reverse("pools:edit", args=[pool.pk]), data, follow=True)
    assert "2 coupons updated." in response.content.decode()
