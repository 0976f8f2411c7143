"""An administrator creates an API key in a real browser, copies it, a shop claims with
it over real HTTP, and the administrator revokes it."""

import pytest
import requests
from playwright.sync_api import expect

from api.models import ApiKey
from tests.browser.conftest import login
from tests.factories import CouponFactory, PoolFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_copy_use_and_revoke_a_key(page, live_server):
    UserFactory(username="ada", is_staff=True, is_superuser=True)
    pool = PoolFactory(name="Welcome", external_id="WELCOME")
    CouponFactory(pool=pool, code="WELCOME-0001")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    login(page, "ada")

    # Given the API keys page, when the administrator creates a key
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("Web shop")
    page.get_by_role("button", name="Create key").click()

    # Then it is shown once, and the Copy button puts it on the clipboard
    shown = page.get_by_label("The new API key").input_value()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == shown
    api_key = ApiKey.objects.get(name="Web shop")
    assert shown.startswith(api_key.prefix + ".") and shown not in api_key.key_hash

    # And a shop claims with it over HTTP; the page shows when it was last used
    headers = {"Authorization": f"Api-Key {shown}"}
    claim = requests.post(f"{live_server.url}/api/v1/coupon-pools/WELCOME/claim", json={"customer": "m-1"}, headers=headers, timeout=10)
    assert claim.status_code == 201 and claim.json()["code"] == "WELCOME-0001"
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_label("The new API key")).to_have_count(0)  # never shown again
    row = page.get_by_test_id("key-row").filter(has_text="Web shop")
    expect(row).not_to_contain_text("never")

    # When it is revoked (after the confirmation), the shop is refused
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("Revoked")
    refused = requests.get(f"{live_server.url}/api/v1/coupon-pools", headers=headers, timeout=10)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
