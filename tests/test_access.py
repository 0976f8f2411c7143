"""One access policy (pools.access, coupons.access) for the pages, the API and the admin:
group A's principals never see, change or pick group B's pools, coupons, customers,
events, jobs or terms."""

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from api.models import ApiKey, BulkOperation, BulkOperationError
from api.services import api_key_create, customer_put, pool_for_key
from coupons.access import customer_visible
from coupons.jobs.engine import job_create
from coupons.models import (
    Coupon,
    CouponJob,
    CouponStatus,
    Customer,
    CustomerEvent,
    ExportJob,
    GenerationBatch,
    GiftCardRedemption,
)
from coupons.services import Actor, coupon_claim
from couponsite.permissions import manager_group_ensure
from imports.models import ImportJob, ImportRejection
from pools.access import pool_sql, pools_visible
from pools.models import CouponPool, CouponTerms
from tests.factories import BulkPoolFactory, CouponFactory, CustomerFactory, GroupFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


@pytest.fixture
def world():
    """Group A and group B, each with a pool, a customer holding one of its coupons, and
    a job of every kind; one pool of no group; one customer nobody has served yet."""
    a, b = GroupFactory(name="Brand A"), GroupFactory(name="Brand B")
    pools = {"a": PoolFactory(name="A pool", user_group=a), "b": PoolFactory(name="B pool", user_group=b),
             "open": PoolFactory(name="Open pool")}
    customers = {}
    for name in ("a", "b", "open"):
        customer = CustomerFactory(external_id=f"cust-{name}", email=f"{name}@example.com")
        CouponFactory(pool=pools[name], code=f"CODE-{name}")
        coupon_claim(pool=pools[name], customer=customer, actor=Actor.system())
        customers[name] = customer
    customers["new"] = CustomerFactory(external_id="cust-new")
    key, _ = api_key_create(name="B shop", groups=[b])
    for name in ("a", "b"):
        pool = pools[name]
        job_create(CouponJob, kind="bulk_action", pool=pool, params={}, enqueue=False)
        GenerationBatch.objects.create(pool=BulkPoolFactory(user_group=pool.user_group), total=1)
        ExportJob.objects.create(pool=pool)
        imported = ImportJob.objects.create(pool=pool, original_name=f"{name}.csv", sha256=name)
        ImportRejection.objects.create(job=imported, row=2, outcome=1, reason="bad")
        operation = BulkOperation.objects.create(pool=pool, api_key=key, action="add", items=[])
        BulkOperationError.objects.create(operation=operation, index=0, error_code="x", message="x")
    return {"groups": {"a": a, "b": b}, "pools": pools, "customers": customers}


def api_for(*groups) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_create(name='Shop', groups=groups)[1]}")
    return client


class TestApiCustomers:
    def test_a_key_of_group_a_cannot_read_or_change_group_bs_customer(self, world):
        api = api_for(world["groups"]["a"])
        response = api.put("/api/v1/customers/cust-b", {}, format="json")
        assert response.status_code == 404 and "b@example.com" not in response.content.decode()
        response = api.put("/api/v1/customers/cust-b", {"email": "evil@example.com", "currency": "USD"}, format="json")
        assert response.status_code == 404
        b = Customer.objects.get(external_id="cust-b")
        assert (b.email, b.currency) == ("b@example.com", "EUR")

    def test_it_reads_and_updates_its_own_and_creates_new_ones(self, world):
        api = api_for(world["groups"]["a"])
        assert api.put("/api/v1/customers/cust-a", {"email": "new-a@example.com"}, format="json").json()["email"] == "new-a@example.com"
        assert api.put("/api/v1/customers/brand-new", {"email": "n@example.com"}, format="json").status_code == 201
        # Not served yet by anyone: the shop (or another key of its group) may send its
        # update again before the first claim; another group's key may not read it.
        assert api.put("/api/v1/customers/brand-new", {"currency": "EUR"}, format="json").status_code == 200
        assert api_for(world["groups"]["a"]).put("/api/v1/customers/brand-new", {}, format="json").status_code == 200
        other = api_for(world["groups"]["b"]).put("/api/v1/customers/brand-new", {}, format="json")
        assert other.status_code == 404 and "n@example.com" not in other.content.decode()

    def test_a_customer_of_no_group_is_seen_by_no_limited_key(self, world):
        """A customer without coupons created by no limited principal (``cust-new``) is
        like a pool of no group: keys limited to groups do not see it."""
        response = api_for(world["groups"]["a"]).put("/api/v1/customers/cust-new", {}, format="json")
        assert response.status_code == 404 and "@example.com" not in response.content.decode()
        assert api_for().put("/api/v1/customers/cust-new", {}, format="json").status_code == 200

    def test_an_unrestricted_key_sees_everyone(self, world):
        assert api_for().put("/api/v1/customers/cust-b", {}, format="json").json()["email"] == "b@example.com"

    def test_a_customer_who_held_a_coupon_stays_visible(self, world):
        """Held: the history counts, not only the coupons held now."""
        from coupons.services import coupon_unassign

        a_coupon = Coupon.objects.get(code="CODE-a")
        coupon_unassign(coupon=a_coupon, actor=Actor.system())
        key = ApiKey.objects.create(name="A", prefix="pa", key_hash="x")
        key.groups.set([world["groups"]["a"]])
        assert customer_visible(key, world["customers"]["a"])
        assert not customer_visible(key, world["customers"]["b"])
        customer, created = customer_put(api_key=key, external_id="cust-a", email="still@example.com", currency=None)
        assert not created and customer.email == "still@example.com"


class TestPages:
    def test_the_customers_page_shows_only_the_customers_the_manager_may_see(self, world, client):
        user = UserFactory(groups=[world["groups"]["a"]])
        client.force_login(user)
        listed = {c.external_id for c in client.get(reverse("coupons:customers")).context["table"].data}
        assert listed == {"cust-a", "cust-open", "cust-new"}  # cust-new: of no group, like the open pool
        assert list(client.get(reverse("coupons:customers"), {"q": "b@example.com"}).context["table"].data) == []
        b = world["customers"]["b"]
        assert client.get(reverse("coupons:customer", args=[b.pk])).status_code == 404
        assert client.post(reverse("coupons:customer_assign", args=[b.pk]), {"pool": world["pools"]["a"].pk}).status_code == 404

    def test_a_transfer_tells_nothing_of_another_groups_customer(self, world, client):
        user = UserFactory(groups=[world["groups"]["a"], manager_group_ensure()])
        client.force_login(user)
        coupon = CouponFactory(pool=world["pools"]["a"], code="MOVE-A", status=S.CLAIMED, customer=world["customers"]["a"])
        url = reverse("coupons:coupon_action", args=[coupon.pk, "transfer"])
        def said(data):
            return [str(m) for m in client.post(url, data, follow=True).context["messages"]]

        wrong = said({"customer_id": "cust-b", "email": "guess@example.com"})
        right = said({"customer_id": "cust-b", "email": "b@example.com"})
        assert "cannot be checked" in wrong[0] and [m.replace("guess@", "b@") for m in wrong] == right
        assert "No customer has the email b@example.com" in said({"email": "b@example.com"})[0]
        coupon.refresh_from_db()
        assert coupon.customer == world["customers"]["a"]  # nothing moved

    def test_another_groups_customer_id_is_refused_alike_by_the_form_and_the_api(self, world, client):
        # Given a manager of Brand A and a key of Brand A
        client.force_login(UserFactory(groups=[world["groups"]["a"], manager_group_ensure()]))
        api = api_for(world["groups"]["a"])
        said = "The customer ID cust-b cannot be used; choose another."
        typed = {"email": "mine@example.com", "currency": "USD"}
        # When both try the ID of Brand B's customer
        page = client.post(reverse("coupons:customer_create"), {"external_id": "cust-b", **typed})
        put = api.put("/api/v1/customers/cust-b", typed, format="json")
        # Then both refuse it in the same words, which neither confirm nor show that customer
        assert page.status_code == 200 and page.context["form"].errors["external_id"] == [said]
        html = page.content.decode()
        b = world["customers"]["b"]
        assert "exists already" not in html and 'data-testid="existing-customer"' not in html
        assert "b@example.com" not in html and f'href="{reverse("coupons:customer", args=[b.pk])}"' not in html
        assert 'value="mine@example.com"' in html  # what was typed stays
        assert put.status_code == 404 and put.json()["error"]["code"] == "customer_id_unavailable"
        assert put.json()["error"]["message"] == said and "b@example.com" not in put.content.decode()
        # And nothing of that customer changed, nor was another made
        b.refresh_from_db()
        assert (b.email, b.currency) == ("b@example.com", "EUR") and Customer.objects.count() == 4
        # While an ID the manager may see "exists already", with a link to its customer
        own = client.post(reverse("coupons:customer_create"), {"external_id": "cust-a"})
        assert own.context["form"].errors["external_id"] == ["A customer with the ID cust-a exists already."]
        assert f'href="{reverse("coupons:customer", args=[world["customers"]["a"].pk])}"' in own.content.decode()

    def test_a_superuser_sees_everyone(self, world, client):
        client.force_login(UserFactory(username="root", is_superuser=True, is_staff=True))
        listed = {c.external_id for c in client.get(reverse("coupons:customers")).context["table"].data}
        assert listed == {"cust-a", "cust-b", "cust-open", "cust-new"}


ADMIN_MODELS = [
    (CouponPool, "name", "B pool"), (CouponTerms, "pool__name", "B pool"), (Coupon, "code", "CODE-b"),
    (Customer, "external_id", "cust-b"), (CustomerEvent, "customer__external_id", "cust-b"),
    (GiftCardRedemption, None, None), (CouponJob, "pool__name", "B pool"), (ExportJob, "pool__name", "B pool"),
    (GenerationBatch, "pool__user_group__name", "Brand B"), (ImportJob, "original_name", "b.csv"),
    (ImportRejection, "job__original_name", "b.csv"), (BulkOperation, "pool__name", "B pool"),
    (BulkOperationError, "operation__pool__name", "B pool"),
]


class TestAdmin:
    @pytest.fixture
    def staff(self, world, client):
        user = UserFactory(username="staff-a", is_staff=True, groups=[world["groups"]["a"]])
        user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"),
                                  *Permission.objects.filter(codename="change_customer"))
        client.force_login(user)
        return client

    @pytest.mark.parametrize("model, field, value", ADMIN_MODELS, ids=[m[0].__name__ for m in ADMIN_MODELS])
    def test_staff_of_group_a_see_none_of_group_bs_rows(self, staff, world, model, field, value):
        if model is GiftCardRedemption:
            return self.gift_cards(staff, world)
        meta = model._meta
        changelist = staff.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert changelist.status_code == 200
        shown = list(changelist.context["cl"].queryset)
        hidden = model.objects.filter(**{field: value})
        assert hidden.exists() and not set(shown) & set(hidden)
        page = staff.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[hidden.first().pk]))
        assert page.status_code in (302, 404)  # as if it did not exist
        if page.status_code == 302:
            assert page["Location"] == reverse("admin:index")

    def gift_cards(self, staff, world):
        from coupons.services import coupon_redeem
        from tests.factories import GiftCardPoolFactory

        mine = GiftCardPoolFactory(user_group=world["groups"]["a"])
        theirs = GiftCardPoolFactory(user_group=world["groups"]["b"])
        for pool in (mine, theirs):
            card = CouponFactory(pool=pool, status=S.CLAIMED)
            coupon_redeem(coupon=card, actor=Actor.system(), amount="5.00")
        shown = staff.get(reverse("admin:coupons_giftcardredemption_changelist")).context["cl"].queryset
        assert {r.coupon.pool_id for r in shown} == {mine.pk}

    def test_staff_cannot_edit_another_groups_customer(self, staff, world):
        b = world["customers"]["b"]
        response = staff.post(reverse("admin:coupons_customer_change", args=[b.pk]),
                              {"external_id": "cust-b", "email": "evil@example.com", "currency": "EUR"})
        assert response.status_code in (302, 404)
        assert Customer.objects.get(pk=b.pk).email == "b@example.com"


PRINCIPALS = ["superuser", "user of A", "user of no group", "key of nobody", "key of A", "key of A and B", "key of A, groups unknown"]


@pytest.mark.parametrize("who", PRINCIPALS)
def test_the_claims_raw_pool_condition_agrees_with_the_policy(world, who):
    """``pool_sql`` (the claim path's raw query) and ``visible_pools`` (everything else)."""
    a, b = world["groups"]["a"], world["groups"]["b"]
    principal = {
        "superuser": lambda: UserFactory(username="su", is_superuser=True),
        "user of A": lambda: UserFactory(username="ua", groups=[a]),
        "user of no group": lambda: UserFactory(username="un"),
        "key of nobody": lambda: api_key_create(name="k0")[0],
        "key of A": lambda: api_key_create(name="k1", groups=[a])[0],
        "key of A and B": lambda: api_key_create(name="k2", groups=[a, b])[0],
        "key of A, groups unknown": lambda: api_key_create(name="k3", groups=[a])[0],
    }[who]()
    if who.startswith("key") and who != "key of A, groups unknown":
        principal.has_groups = principal.groups.exists()  # as the authentication query says
    condition, params = pool_sql(principal)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM pools_couponpool{' WHERE ' + condition if condition else ''}", params)
        raw = {row[0] for row in cursor.fetchall()}
    assert raw == set(pools_visible(principal).values_list("pk", flat=True))
    if who.startswith("key"):
        assert {p.pk for p in CouponPool.objects.all() if pool_for_key(principal, str(p.pk))} == raw
