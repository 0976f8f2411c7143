"""Customers made and edited on purpose (``coupons.services.customers``, the API's PUT and
the Management UI's pages), found by part of an ID or email, and shown with their
history in words."""

import importlib
import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse

from coupons import services
from coupons.models import Coupon, CouponStatus, Customer, CustomerEvent
from coupons.selectors import customers_search
from coupons.services import Actor, CouponActionError
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory, GroupFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


def form_errors(response, field):
    return response.context["form"].errors.get(field, [])


# --- the service ------------------------------------------------------------------------------


class TestCustomerService:
    def test_create_trims_the_id_and_capitalises_the_currency(self):
        customer = services.customer_create(principal=UserFactory(), external_id="  M-1 ", email=" m1@example.com",
                                            currency="eur")
        customer.refresh_from_db()
        assert (customer.external_id, customer.email, customer.currency) == ("M-1", "m1@example.com", "EUR")
        assert list(customer.created_for.all()) == []  # a user of no group: like a pool of no group

    def test_a_limited_manager_s_customer_belongs_to_their_groups(self):
        team = GroupFactory(name="Brand A")
        customer = services.customer_create(principal=UserFactory(groups=[team]), external_id="A-1")
        assert list(customer.created_for.all()) == [team]

    def test_an_id_taken_is_refused_and_the_existing_customer_stays(self):
        CustomerFactory(external_id="TAKEN", email="first@example.com", currency="EUR")
        with pytest.raises(CouponActionError) as error:
            services.customer_create(principal=UserFactory(), external_id="TAKEN", email="second@example.com",
                                     currency="USD")
        assert error.value.code == "customer_exists"
        assert str(error.value) == "A customer with the ID TAKEN exists already."
        assert Customer.objects.values_list("email", "currency").get(external_id="TAKEN") == ("first@example.com", "EUR")

    def test_an_id_another_group_s_customer_holds_is_refused_without_a_word_of_them(self):
        a, b = GroupFactory(name="Brand A"), GroupFactory(name="Brand B")
        theirs = CouponFactory(pool=PoolFactory(user_group=b), status=S.CLAIMED).customer
        for attempt in (services.customer_create, services.customer_put):  # the form's and the API's
            with pytest.raises(CouponActionError) as error:
                attempt(principal=UserFactory(groups=[a]), external_id=theirs.external_id, email="x@example.com")
            assert error.value.code == "customer_id_unavailable", attempt
            assert str(error.value) == f"The customer ID {theirs.external_id} cannot be used; choose another."
        theirs.refresh_from_db()
        assert theirs.email != "x@example.com" and list(theirs.created_for.all()) == []

    @pytest.mark.parametrize("fields, field, message", [
        ({"external_id": "  "}, "external_id", "A customer ID has 1 to 128 characters."),
        ({"external_id": "x" * 129}, "external_id", "A customer ID has 1 to 128 characters."),
        ({"email": "not-an-email"}, "email", "Enter a valid email address."),
        ({"email": "a" * 250 + "@example.com"}, "email", "An email has at most 254 characters."),
        ({"currency": "EU1"}, "currency", "Enter a currency as three capital letters, such as EUR or USD."),
        ({"currency": "xxq"}, "currency", "XXQ is not an ISO 4217 currency code."),
    ])
    def test_bad_fields_are_named(self, fields, field, message):
        with pytest.raises(ValidationError) as error:
            services.customer_clean(**fields)
        assert error.value.message_dict == {field: [message]}

    def test_update_changes_only_what_is_given(self):
        customer = CustomerFactory(external_id="U-1", email="old@example.com", currency="EUR")
        services.customer_update(principal=UserFactory(), customer=customer, email="new@example.com")
        customer.refresh_from_db()
        assert (customer.email, customer.currency) == ("new@example.com", "EUR")
        services.customer_update(principal=UserFactory(), customer=customer, currency="usd", email="")
        customer.refresh_from_db()
        assert (customer.email, customer.currency) == ("", "USD")

    def test_a_holder_of_gift_cards_in_a_currency_keeps_it(self):
        customer = CustomerFactory(external_id="GC-1", currency="EUR")
        card = CouponFactory(pool=GiftCardPoolFactory(currency="EUR"), status=S.PARTIALLY_REDEEMED, customer=customer,
                             balance=Decimal("40.00"))
        CouponFactory(pool=PoolFactory(), status=S.CLAIMED, customer=customer)  # a plain coupon binds nothing
        with pytest.raises(CouponActionError) as error:
            services.customer_update(principal=UserFactory(), customer=customer, currency="USD")
        assert error.value.code == "currency_held"
        assert str(error.value) == (
            "Customer GC-1 holds gift cards in EUR, so their currency stays EUR while they do "
            "(redeem, invalidate or transfer those cards first).")
        customer.refresh_from_db()
        assert customer.currency == "EUR"
        # Once the card is used up it no longer holds the currency
        services.coupon_redeem(coupon=card, actor=Actor.system())
        services.customer_update(principal=UserFactory(), customer=customer, currency="USD")
        customer.refresh_from_db()
        assert customer.currency == "USD"

    def test_another_group_s_customer_is_not_found(self):
        a, b = GroupFactory(name="Brand A"), GroupFactory(name="Brand B")
        theirs = CouponFactory(pool=PoolFactory(user_group=b), status=S.CLAIMED).customer
        with pytest.raises(CouponActionError) as error:
            services.customer_update(principal=UserFactory(groups=[a]), customer=theirs, email="x@example.com")
        assert error.value.code == "customer_not_found"
        theirs.refresh_from_db()
        assert theirs.email != "x@example.com"


# --- search --------------------------------------------------------------------------------------


class TestSearch:
    @pytest.fixture
    def people(self):
        return {
            "anna": CustomerFactory(external_id="MEMBER-1207", email="Anna.Smith@shop.example"),
            "bob": CustomerFactory(external_id="MEMBER-3300", email="bob@other.example"),
            "ann": CustomerFactory(external_id="AN-9", email="zed@shop.example"),
        }

    @pytest.mark.parametrize("text, expected", [
        ("smith", {"anna"}),  # part of an email, any case
        ("SHOP.EXAMPLE", {"anna", "ann"}),
        ("ber-12", {"anna"}),  # part of an ID
        ("member", {"anna", "bob"}),
        ("bob@other.example", {"bob"}),
        ("AN", {"ann"}),  # under 3 characters: the start of an ID only
        ("9", set()),
        ("100%", set()),  # LIKE's wildcards are plain characters
        ("", {"anna", "bob", "ann"}),
    ])
    def test_by_part_of_an_id_or_email(self, people, text, expected):
        found = {c.pk for c in customers_search(text=text, user=UserFactory())}
        assert found == {people[name].pk for name in expected}

    def test_the_customers_page_searches_the_same_way(self, people, manager_client):
        response = manager_client.get(reverse("coupons:customers"), {"q": "smith"})
        assert [c.external_id for c in response.context["table"].data] == ["MEMBER-1207"]
        assert "Any part of an ID or email, from 3 characters" in response.content.decode()

    def test_postgresql_answers_it_from_the_trigram_indexes(self, people):
        assert connection.vendor == "postgresql"
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # a few rows: the planner would just read them
        plan = customers_search(text="smith", user=UserFactory(is_superuser=True)).order_by().explain()
        assert "customer_email_trgm" in plan and "customer_external_id_trgm" in plan, plan

    def test_the_migration_makes_nothing_on_sqlite(self):
        migration = importlib.import_module("coupons.migrations.0007_customer_search_trigram")

        class SQLiteEditor:
            connection = type("Connection", (), {"vendor": "sqlite"})()
            executed = []

            def execute(self, sql):
                self.executed.append(sql)

        editor = SQLiteEditor()
        migration.create_indexes(None, editor)
        migration.drop_indexes(None, editor)
        assert editor.executed == []


# --- the pages ------------------------------------------------------------------------------------


class TestCreatePage:
    def test_creates_the_customer_and_lands_on_their_page(self, manager_client):
        response = manager_client.post(reverse("coupons:customer_create"),
                                       {"external_id": " NEW-1 ", "email": "new1@example.com", "currency": "eur"})
        customer = Customer.objects.get(external_id="NEW-1")
        assert (customer.email, customer.currency) == ("new1@example.com", "EUR")
        assert response.status_code == 302 and response.url == reverse("coupons:customer", args=[customer.pk])
        page = manager_client.get(response.url).content.decode()
        assert "Customer NEW-1 created." in page and "Assign a coupon from pool" in page

    def test_a_customer_just_created_gets_a_coupon_from_a_pool(self, client):
        # Given a manager of Brand A (whose customers are theirs alone) and a pool of Brand A
        team = GroupFactory(name="Brand A")
        client.force_login(UserFactory(username="ann", groups=[team]))
        pool = PoolFactory(name="Spring", user_group=team)
        CouponFactory(pool=pool, code="SPRING-1")
        # When she creates a customer and assigns a coupon from the page she lands on
        created = client.post(reverse("coupons:customer_create"), {"external_id": "FRESH-1", "email": "", "currency": ""})
        assigned = client.post(created.url.rstrip("/") + "/assign/", {"pool": pool.pk}, follow=True)
        # Then the customer holds the coupon, with its claim event, and the page says so
        coupon = Coupon.objects.get(code="SPRING-1")
        assert coupon.status == S.CLAIMED and coupon.customer.external_id == "FRESH-1"
        assert CustomerEvent.objects.get(customer=coupon.customer).action == "coupon_claim"
        assert "Coupon SPRING-1 from “Spring” assigned to FRESH-1." in assigned.content.decode()
        assert [c.code for c in assigned.context["table"].data] == ["SPRING-1"]

    def test_an_id_taken_is_a_form_error_that_keeps_what_was_typed(self, manager_client):
        existing = CustomerFactory(external_id="DUP-1", email="first@example.com", currency="EUR")
        response = manager_client.post(reverse("coupons:customer_create"),
                                       {"external_id": "DUP-1", "email": "typed@example.com", "currency": "USD"})
        assert response.status_code == 200
        assert form_errors(response, "external_id") == ["A customer with the ID DUP-1 exists already."]
        html = response.content.decode()
        assert 'value="typed@example.com"' in html and 'value="USD"' in html and 'value="DUP-1"' in html
        assert re.search(r'<input[^>]*name="external_id"[^>]*class="[^"]*is-invalid', html) or \
            re.search(r'<input[^>]*class="[^"]*is-invalid[^"]*"[^>]*name="external_id"', html)
        assert f'href="{reverse("coupons:customer", args=[existing.pk])}"' in html  # "Open customer DUP-1"
        existing.refresh_from_db()
        assert (existing.email, existing.currency) == ("first@example.com", "EUR")

    def test_bad_fields_are_shown_on_their_fields(self, manager_client):
        response = manager_client.post(reverse("coupons:customer_create"),
                                       {"external_id": "OK-1", "email": "nope", "currency": "EU1"})
        assert response.status_code == 200 and not Customer.objects.exists()
        assert form_errors(response, "email") == ["Enter a valid email address."]
        assert form_errors(response, "currency") == ["Enter a currency as three capital letters, such as EUR or USD."]
        html = response.content.decode()
        assert html.count('aria-invalid="true"') == 2 and 'value="nope"' in html
        assert manager_client.post(reverse("coupons:customer_create"), {"external_id": ""}).context["form"].errors[
            "external_id"] == ["This field is required."]

    def test_a_viewer_gets_403_and_no_create_or_edit_links(self, client):
        viewer = UserFactory(username="viewer", manager=False)
        client.force_login(viewer)
        customer = CustomerFactory(external_id="SEEN-1")
        assert client.get(reverse("coupons:customer_create")).status_code == 403
        assert client.post(reverse("coupons:customer_create"), {"external_id": "X-1"}).status_code == 403
        assert client.get(reverse("coupons:customer_edit", args=[customer.pk])).status_code == 403
        assert client.post(reverse("coupons:customer_edit", args=[customer.pk]), {"email": "x@example.com"}).status_code == 403
        assert not Customer.objects.filter(external_id="X-1").exists()
        listing = client.get(reverse("coupons:customers")).content.decode()
        assert "SEEN-1" in listing and reverse("coupons:customer_create") not in listing
        detail = client.get(reverse("coupons:customer", args=[customer.pk])).content.decode()
        assert reverse("coupons:customer_edit", args=[customer.pk]) not in detail
        assert reverse("coupons:customer_assign", args=[customer.pk]) not in detail

    def test_a_manager_sees_the_links(self, manager_client):
        customer = CustomerFactory(external_id="SEEN-2")
        assert reverse("coupons:customer_create") in manager_client.get(reverse("coupons:customers")).content.decode()
        detail = manager_client.get(reverse("coupons:customer", args=[customer.pk])).content.decode()
        assert reverse("coupons:customer_edit", args=[customer.pk]) in detail


class TestEditPage:
    def test_shows_and_saves_email_and_currency_not_the_id(self, manager_client):
        customer = CustomerFactory(external_id="ED-1", email="old@example.com", currency="EUR")
        url = reverse("coupons:customer_edit", args=[customer.pk])
        form = manager_client.get(url).context["form"]
        assert set(form.fields) == {"email", "currency"} and form.initial == {"email": "old@example.com", "currency": "EUR"}
        response = manager_client.post(url, {"email": "new@example.com", "currency": "usd", "external_id": "HACK"})
        assert response.status_code == 302 and response.url == reverse("coupons:customer", args=[customer.pk])
        customer.refresh_from_db()
        assert (customer.external_id, customer.email, customer.currency) == ("ED-1", "new@example.com", "USD")

    def test_the_currency_rule_is_shown_on_the_currency_field(self, manager_client):
        customer = CustomerFactory(external_id="ED-2", email="keep@example.com", currency="EUR")
        CouponFactory(pool=GiftCardPoolFactory(currency="EUR"), status=S.CLAIMED, customer=customer)
        response = manager_client.post(reverse("coupons:customer_edit", args=[customer.pk]),
                                       {"email": "changed@example.com", "currency": "USD"})
        assert response.status_code == 200
        assert form_errors(response, "currency") == [
            "Customer ED-2 holds gift cards in EUR, so their currency stays EUR while they do "
            "(redeem, invalidate or transfer those cards first)."]
        assert 'value="changed@example.com"' in response.content.decode()  # nothing typed is lost
        customer.refresh_from_db()
        assert (customer.email, customer.currency) == ("keep@example.com", "EUR")

    def test_another_group_s_customer_is_404(self, client):
        a, b = GroupFactory(name="Brand A"), GroupFactory(name="Brand B")
        theirs = CouponFactory(pool=PoolFactory(user_group=b), status=S.CLAIMED).customer
        client.force_login(UserFactory(groups=[a]))
        assert client.get(reverse("coupons:customer_edit", args=[theirs.pk])).status_code == 404
        assert client.post(reverse("coupons:customer_edit", args=[theirs.pk]), {"email": "x@example.com"}).status_code == 404


class TestHistoryOnThePage:
    def test_details_in_words_and_codes_linked_to_their_coupon(self, manager_client, django_assert_max_num_queries):
        # Given Anna: a gift card part spent, another passed on to Bob, and two claims of an aggregated pool
        anna, bob = CustomerFactory(external_id="ANNA-1"), CustomerFactory(external_id="BOB-2")
        gifts = GiftCardPoolFactory(name="Gifts", currency="EUR")
        spent, given = CouponFactory(pool=gifts, code="GIFT/1 A"), CouponFactory(pool=gifts, code="GIFT-2")
        weekly = PoolFactory(name="Weekly", aggregated=True)
        CouponFactory(pool=weekly, code="WEEKLY-1")
        actor = Actor.system("till")
        services.coupon_assign(coupon=spent, customer=anna, actor=actor)
        services.coupon_redeem(coupon=spent, actor=actor, amount=Decimal("30"))
        services.coupon_assign(coupon=given, customer=anna, actor=actor)
        services.coupon_transfer(coupon=given, actor=actor, customer_id="BOB-2")
        services.coupon_claim(pool=weekly, customer=anna, actor=actor)
        services.coupon_claim(pool=weekly, customer=anna, actor=actor)
        # When her page is shown (a fixed number of queries, not one per event)
        with django_assert_max_num_queries(15):
            response = manager_client.get(reverse("coupons:customer", args=[anna.pk]))
        html = response.content.decode()
        # Then each event reads as words
        assert re.findall(r'data-testid="event-details">([^<]*)<', html) == [
            "Claimed again: this pool gives a customer the coupon they hold.", "—", "To customer BOB-2.", "—",
            "30.00 EUR used, 70.00 EUR left.", "—",
        ]
        assert "again: True" not in html and "Redeemed" in html and "Transferred away" in html
        assert "Received by transfer" in manager_client.get(reverse("coupons:customer", args=[bob.pk])).content.decode()
        # And the codes link to their coupon, in the history and in the coupons table
        card = Coupon.objects.get(code="GIFT/1 A")
        link = reverse("coupons:coupon_detail", args=[card.pk])
        assert html.count(f'href="{link}"') == 3  # the table's row, the claim and the redemption
        assert "GIFT/1 A" in manager_client.get(link).content.decode()
