"""A manager uploads a CSV file into a pool in a real browser, with a real worker."""

import re

import pytest
from playwright.sync_api import expect

from coupons.models import Coupon, CouponStatus
from imports.models import ImportJob, JobStatus
from tests.browser.conftest import ARTIFACTS, login
from tests.factories import BulkPoolFactory, CustomerFactory, PoolFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.worker_env(COUPON_IMPORT_CHUNK="3000")
def test_upload_configure_progress_and_result(page, celery_worker_process, tmp_path):
    # Given an uploaded pool, a code another pool holds, and a customer
    UserFactory(username="uma")
    pool = PoolFactory(name="Partner codes")
    BulkPoolFactory(name="Not for uploads")
    other = PoolFactory(name="Older partner codes")
    Coupon.objects.create(pool=other, terms=other.current_terms, code="PC-00007")
    CustomerFactory(external_id="MEMBER-1")
    rows = ["customer;code"] + [f";PC-{n:05d}" for n in range(30_000)]
    rows += [";PC-00003", "MEMBER-1;PC-VIP", "GHOST-9;PC-GHOST", ";" + "X" * 70]
    path = tmp_path / "partner codes.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    login(page, "uma")

    # When she opens the pool's Coupons tab, which is empty and offers the upload
    page.goto(f"/pools/{pool.pk}/coupons/")
    expect(page.get_by_role("status").filter(has_text="This pool has no coupons yet.")).to_be_visible()
    page.get_by_role("link", name="Upload", exact=True).click()
    expect(page.get_by_role("heading", name="Upload coupons into “Partner codes”")).to_be_visible()
    expect(page.get_by_role("cell", name="expires_at")).to_be_visible()
    page.get_by_label("CSV file").set_input_files(str(path))
    page.get_by_role("button", name="Upload").click()

    # Then the configure step has detected the semicolon, the header and the code column
    expect(page.get_by_role("heading", name="Configure the import")).to_be_visible()
    expect(page.get_by_label("Delimiter")).to_have_value(";")
    expect(page.get_by_label("The first row is a header row")).to_be_checked()
    expect(page.get_by_label("Code column")).to_have_value("1")
    expect(page.get_by_label("Coupon pool")).to_have_value(str(pool.pk))
    assert "Not for uploads" not in page.get_by_label("Coupon pool").inner_text()
    preview = page.get_by_test_id("preview")
    expect(preview).to_contain_text("PC-00000")

    # And turning the header off reads the header row as a code (of column 1), live;
    # turning it on again maps the columns back from the header
    page.get_by_label("The first row is a header row").uncheck()
    expect(page.get_by_label("Code column")).to_have_value("0")
    expect(preview.get_by_role("row").nth(1)).to_have_text(re.compile(r"^\s*1\s+customer\s"))
    page.get_by_label("The first row is a header row").check()
    expect(page.get_by_label("Code column")).to_have_value("1")
    expect(preview.get_by_role("row").nth(1)).to_contain_text("PC-00000")
    page.get_by_label("Customer column").select_option(label="1: customer")
    page.screenshot(path=ARTIFACTS / "import-configure.png", full_page=True)

    # When she starts the import
    page.get_by_role("button", name="Start import").click()
    expect(page.get_by_role("alert")).to_contain_text("has started")
    expect(page.get_by_role("progressbar", name="Import progress")).to_be_visible()

    # Then the page follows the worker to the result
    status = page.get_by_test_id("import-status")
    expect(status).to_have_attribute("data-status", "done", timeout=60_000)
    expect(page.get_by_test_id("rows-read")).to_have_text("30,004")
    expect(page.get_by_test_id("created")).to_have_text("30,000")
    expect(page.get_by_test_id("duplicates-in-file")).to_have_text("1")
    expect(page.get_by_test_id("existing")).to_have_text("1")
    expect(page.get_by_test_id("invalid")).to_have_text("2")
    rejections = page.get_by_test_id("rejections")
    expect(rejections).to_contain_text("The code appears earlier in the file, in row 5.")
    expect(rejections).to_contain_text("The code exists already in another pool.")
    expect(rejections).to_contain_text('No customer has the ID "GHOST-9"')
    expect(rejections).to_contain_text("70 characters long")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download the 4 rows not imported")).click()
    assert download.value.suggested_filename.endswith("rejected-rows.csv")
    assert "GHOST-9" in open(download.value.path(), encoding="utf-8-sig").read()
    page.screenshot(path=ARTIFACTS / "import-result.png", full_page=True)

    # And the coupons are in the pool, the VIP one claimed by the member
    job = ImportJob.objects.get()
    assert job.status == JobStatus.DONE and job.created == 30_000
    assert Coupon.objects.filter(pool=pool, status=CouponStatus.UNASSIGNED).count() == 29_999
    assert Coupon.objects.get(code="PC-VIP").customer.external_id == "MEMBER-1"

    # And the Imports list shows it with its outcome
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Imports").click()
    row = page.get_by_test_id("import-row").first
    expect(row).to_contain_text("partner codes.csv")
    expect(row).to_contain_text("Done")
    expect(row).to_contain_text("30,000")
