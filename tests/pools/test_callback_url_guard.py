"""A remote pool's callback URL passes the outbound address guard when it is saved, in
the Management UI, the admin and the API alike."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from api.services import api_key_create
from pools.models import CouponPool, PoolSource
from tests.factories import PoolFactory

pytestmark = pytest.mark.django_db

REFUSED = [
    ("http://10.0.0.5/x", "private or link-local"),
    ("http://169.254.169.254/latest/meta-data", "private or link-local"),
    ("http://127.0.0.1:8000/x", "loopback"),
    ("http://[::ffff:192.168.1.1]/x", "private or link-local"),
    ("http://0.0.0.0/x", "unspecified, multicast or reserved"),
    ("http://internal.example/x", "private or link-local"),  # a name resolving to 10.1.2.3
]

FORM = {"name": "Partner", "source": "remote", "callback_api_key": "secret", "coupon_type": "amount", "value": "5"}


@pytest.fixture
def internal_name(fake_dns):
    fake_dns.answers["internal.example"] = [["10.1.2.3"]] * 3
    fake_dns.answers["partner.example"] = [["93.184.215.14"]] * 3
    return fake_dns


@pytest.mark.parametrize("url, words", REFUSED)
def test_the_management_ui_refuses_an_internal_callback_url(manager_client, internal_name, url, words):
    response = manager_client.post(reverse("pools:create"), {**FORM, "callback_url": url})
    assert response.status_code == 200
    errors = response.context["form"].errors["callback_url"]
    assert any(words in error for error in errors), errors
    assert not CouponPool.objects.exists()


@pytest.mark.parametrize("url, words", REFUSED)
def test_the_api_refuses_an_internal_callback_url(internal_name, url, words):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_create(name='Shop')[1]}")
    response = client.post("/api/v1/coupon-pools", {
        "name": "Partner", "source": "remote", "callback_url": url, "callback_api_key": "secret",
        "type": "amount", "value": "5",
    }, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["type"] == "validation_error" and words in error["details"]["callback_url"][0]
    assert not CouponPool.objects.exists()


def test_the_admin_refuses_an_internal_callback_url(admin_client_, internal_name):
    response = admin_client_.post(reverse("admin:pools_couponpool_add"), {**FORM, "callback_url": "http://10.0.0.5/x"})
    assert response.status_code == 200
    assert "private or link-local" in response.content.decode()
    assert not CouponPool.objects.exists()


def test_editing_a_pool_to_an_internal_url_is_refused_and_changes_nothing(manager_client, internal_name):
    pool = PoolFactory(source=PoolSource.REMOTE, callback_url="https://partner.example/c", callback_api_key="secret")
    response = manager_client.post(reverse("pools:edit", args=[pool.pk]),
                                   {**FORM, "name": "Renamed", "callback_url": "http://169.254.169.254/"})
    assert response.status_code == 200 and "private or link-local" in response.content.decode()
    pool.refresh_from_db()
    assert (pool.name, pool.callback_url) == (pool.name, "https://partner.example/c") and pool.name != "Renamed"


def test_a_new_host_name_must_resolve_but_a_stored_one_may_fail_for_a_while(manager_client, fake_dns):
    fake_dns.answers["nowhere.example"] = []  # NXDOMAIN
    response = manager_client.post(reverse("pools:create"), {**FORM, "callback_url": "https://nowhere.example/c"})
    assert response.status_code == 200
    assert "does not resolve" in response.context["form"].errors["callback_url"][0]

    fake_dns.answers["partner.example"] = [["93.184.215.14"]]  # then it stops resolving
    pool = PoolFactory(source=PoolSource.REMOTE, callback_url="https://partner.example/c", callback_api_key="secret")
    response = manager_client.post(reverse("pools:edit", args=[pool.pk]),
                                   {**FORM, "name": "Renamed", "callback_url": "https://partner.example/c"})
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.name == "Renamed"


def test_loopback_is_accepted_when_the_setting_allows_it(manager_client, settings):
    settings.COUPON_CALLBACK_ALLOW_LOOPBACK = True
    response = manager_client.post(reverse("pools:create"), {**FORM, "callback_url": "http://127.0.0.1:9/x"})
    assert response.status_code == 302
    assert CouponPool.objects.get().callback_url == "http://127.0.0.1:9/x"


def test_an_invalid_url_gets_one_error(manager_client):
    response = manager_client.post(reverse("pools:create"), {**FORM, "callback_url": "ftp://files.example/x"})
    errors = response.context["form"].errors["callback_url"]
    assert len(errors) == 1 and "Enter a valid" in errors[0]
