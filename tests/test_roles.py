"""Every role gets pages that fit it: a read-only user sees pools, coupons, customers
and jobs without a link, menu or button to a change it may not make; a manager gets
them all. (tests/browser/test_roles_browser.py walks the same in a browser.)"""

import re

import pytest
from django.urls import reverse

from coupons.models import Coupon, CouponJob, CouponStatus, GenerationBatch, JobStatus
from couponsite.permissions import manager_group_ensure
from imports.models import ImportJob
from tests.factories import BulkPoolFactory, CouponFactory, CustomerFactory, PoolFactory, UserFactory, ViewerFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


@pytest.fixture
def shop():
    pool = PoolFactory(name="Spring")
    customer = CustomerFactory(external_id="ANNA-1")
    claimed = CouponFactory(pool=pool, code="SPRING-1", status=S.CLAIMED, customer=customer)
    CouponFactory(pool=pool, code="SPRING-2")
    bulk = BulkPoolFactory(name="Summer")
    GenerationBatch.objects.create(pool=bulk, total=5, processed=5, status=JobStatus.DONE)
    CouponJob.objects.create(kind=CouponJob.Kind.BULK_ACTION, pool=pool, params={"action": "invalidate"},
                             status=JobStatus.INTERRUPTED, total=100, processed=40)
    draft = ImportJob.objects.create(pool=pool, original_name="codes.csv", sha256="x")
    return {"pool": pool, "bulk": bulk, "customer": customer, "claimed": claimed, "draft": draft}


def pages(client, shop):
    pool, bulk = shop["pool"], shop["bulk"]
    return {
        "pools": client.get(reverse("pools:list")).content.decode(),
        "coupons": client.get(reverse("coupons:pool_coupons", args=[pool.pk])).content.decode(),
        "bulk": client.get(reverse("coupons:pool_coupons", args=[bulk.pk])).content.decode(),
        "statistics": client.get(reverse("coupons:pool_statistics", args=[pool.pk])).content.decode(),
        "customer": client.get(reverse("coupons:customer", args=[shop["customer"].pk])).content.decode(),
        "jobs": client.get(reverse("coupons:jobs")).content.decode(),
        "imports": client.get(reverse("imports:list")).content.decode(),
    }


def test_a_viewer_reads_everything_and_is_offered_no_change(client, shop):
    client.force_login(ViewerFactory())
    pool = shop["pool"]
    html = pages(client, shop)

    # The menu and the pool list: no create, no module settings, no API keys
    for page in html.values():
        assert "Create coupon pool" not in page
        assert f'href="{reverse("pools:settings")}"' not in page and f'href="{reverse("api_keys")}"' not in page
        assert 'aria-label="Main"' in page
    # Each pool's name opens a page the viewer may see (its overview), not the form
    assert f'<a href="{reverse("pools:overview", args=[pool.pk])}">Spring</a>' in html["pools"]
    assert f'href="{reverse("pools:edit", args=[pool.pk])}"' not in html["pools"]
    assert "No coupon pools match." not in html["pools"]
    # The pool's tabs: Coupons and Statistics, no Settings
    for page in (html["coupons"], html["statistics"]):
        assert f'href="{reverse("pools:edit", args=[pool.pk])}"' not in page
        assert f'href="{reverse("coupons:pool_statistics", args=[pool.pk])}"' in page
    # The Coupons tab: the codes, no ticks, row menus, bulk buttons, upload or generation
    assert "SPRING-1" in html["coupons"] and "SPRING-2" in html["coupons"]
    for marker in ("data-row-action", "Actions for", "row-check", "select-page", "bulk-button", "selected</button>"):
        assert marker not in html["coupons"], marker
    assert f'href="{reverse("imports:new")}?pool={pool.pk}"' not in html["coupons"]
    assert f'href="{reverse("coupons:pool_generation", args=[shop["bulk"].pk])}"' not in html["bulk"]
    assert "Export CSV" in html["coupons"]  # reading out is looking
    # The customer, without "Assign a coupon from pool"; the jobs, without Resume or Cancel
    assert "ANNA-1" in html["customer"] and "Assign a coupon" not in html["customer"]
    assert reverse("coupons:customer_assign", args=[shop["customer"].pk]) not in html["customer"]
    assert 'data-testid="job-row"' in html["jobs"]
    assert "job-resume" not in html["jobs"] and "job-cancel" not in html["jobs"]
    # An upload waiting for its settings is listed, not linked to the step it cannot take
    assert f"#{shop['draft'].pk}" in html["imports"]
    assert reverse("imports:configure", args=[shop["draft"].pk]) not in html["imports"]


def test_a_manager_of_one_group_is_offered_every_change(client, shop):
    user = UserFactory(username="nina", manager=False, groups=[manager_group_ensure()])
    client.force_login(user)
    pool = shop["pool"]
    html = pages(client, shop)

    assert "Create coupon pool" in html["pools"] and f'href="{reverse("pools:settings")}"' in html["pools"]
    assert f'href="{reverse("api_keys")}"' not in html["pools"]  # API keys are the administrators'
    assert f'href="{reverse("pools:edit", args=[pool.pk])}"' in html["coupons"]  # the Settings tab
    assert {"redeem", "transfer", "invalidate"} <= set(re.findall(r'data-row-action="(\w+)"', html["coupons"]))
    assert html["coupons"].count("bulk-button") == 4 and "row-check" in html["coupons"]
    assert f'href="{reverse("imports:new")}?pool={pool.pk}"' in html["coupons"]
    assert f'href="{reverse("coupons:pool_generation", args=[shop["bulk"].pk])}"' in html["bulk"]
    assert reverse("coupons:customer_assign", args=[shop["customer"].pk]) in html["customer"]
    assert "job-resume" in html["jobs"] and "job-cancel" in html["jobs"]
    assert reverse("imports:configure", args=[shop["draft"].pk]) in html["imports"]


def test_a_viewer_who_posts_anyway_changes_nothing(client, shop):
    client.force_login(ViewerFactory())
    coupon, pool = shop["claimed"], shop["pool"]

    assert client.post(reverse("coupons:coupon_action", args=[coupon.pk, "invalidate"])).status_code == 403
    assert client.post(reverse("coupons:pool_coupons_bulk", args=[pool.pk]),
                       {"action": "invalidate", "select_all": "1"}).status_code == 403
    assert client.post(reverse("coupons:customer_assign", args=[shop["customer"].pk]),
                       {"pool": pool.pk}).status_code == 403
    job = CouponJob.objects.get()
    assert client.post(reverse("coupons:job_action", args=["bulk_action", job.pk, "cancel"])).status_code == 403
    assert set(Coupon.objects.filter(pool=pool).values_list("status", flat=True)) == {S.CLAIMED, S.UNASSIGNED}
    job.refresh_from_db()
    assert job.status == JobStatus.INTERRUPTED


def test_a_user_without_add_permission_is_not_told_to_create_a_pool(client):
    client.force_login(ViewerFactory())
    html = client.get(reverse("pools:list")).content.decode()
    assert "No coupon pools match." in html and "Create coupon pool" not in html
