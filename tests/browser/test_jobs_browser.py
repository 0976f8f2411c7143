"""A manager follows background work in a real browser, with a real worker: a bulk
action that refreshes the list when it ends, a large export, the Jobs page's Resume
and Cancel."""

import csv
import gzip
import io
import re

import pytest
from playwright.sync_api import expect

from coupons.generation import generation_start
from coupons.jobs import engine
from coupons.models import Coupon, CouponStatus, ExportJob, GenerationBatch, JobStatus
from tests.browser.conftest import login
from tests.coupons.test_jobs_worker import seed
from tests.factories import BulkPoolFactory, PoolFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = CouponStatus


def test_a_background_bulk_action_and_export_from_the_coupons_tab(page, celery_worker_process, monkeypatch):
    # Given a pool of 12,000 claimed coupons: more than a page request handles at once
    monkeypatch.setattr("coupons.views.STREAM_LIMIT", 5_000)
    UserFactory(username="lena")
    pool = PoolFactory(name="Autumn 5 off")
    seed(pool, 12_000, "AUT-", claimed=True)
    login(page, "lena")
    page.goto(f"/pools/{pool.pk}/coupons/")

    # When she invalidates all of them
    page.get_by_role("checkbox", name="Select all coupons on this page").check()
    page.get_by_role("button", name=re.compile("Select all 12,000 matching coupons")).click()
    page.get_by_role("button", name="Invalidate selected").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Invalidate all 12,000 matching coupons?")
    dialog.get_by_role("button", name="Invalidate").click()

    # Then the tab says it runs in the background, shows its card, and, when the worker
    # is done, the list refreshes by itself
    expect(page.get_by_role("alert")).to_contain_text("About 12,000 coupons are being invalidated in the background")
    card = page.get_by_test_id("job-card")
    expect(card).to_contain_text("Invalidate")
    expect(card).to_have_attribute("data-status", "done", timeout=60_000)
    expect(card).to_contain_text("Invalidated 12,000 coupons.")
    expect(page.get_by_role("row", name=re.compile("AUT-12000"))).to_contain_text("Invalid")
    assert Coupon.objects.filter(pool=pool, status=S.INVALID).count() == 12_000

    # When she exports the list, gzipped: too long to stream, it is written in the background
    page.get_by_role("link", name="Export CSV").click()
    expect(page).to_have_title(re.compile("Export CSV · Autumn 5 off"))
    expect(page.get_by_role("heading", level=1, name=re.compile("coupons as CSV"))).to_be_visible()
    page.get_by_label(re.compile("Compress with gzip")).check()
    page.get_by_role("button", name="Start the export").click()
    download_link = page.get_by_test_id("job-download")
    expect(download_link).to_be_visible(timeout=60_000)
    with page.expect_download() as download:
        download_link.click()
    rows = list(csv.reader(io.StringIO(gzip.decompress(download.value.path().read_bytes()).decode("utf-8-sig"))))
    assert len(rows) == 12_001 and rows[0][0] == "code" and {r[4] for r in rows[1:]} == {"invalid"}

    # And the Jobs page lists both, newest first
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page).to_have_title(re.compile("^Jobs"))
    jobs = page.get_by_test_id("job-row")
    expect(jobs).to_have_count(2)
    expect(jobs.nth(0)).to_contain_text("Export CSV (gzip)")
    expect(jobs.nth(0)).to_contain_text("12,000 coupons exported.")
    expect(jobs.nth(1)).to_contain_text("Invalidated 12,000 coupons.")


def test_resume_and_cancel_on_the_jobs_page(page, celery_worker_process):
    # Given a generation batch whose worker died, and an export waiting in the queue
    UserFactory(username="omar")
    bulk_pool = BulkPoolFactory(name="Gift codes", pattern="GC-$$$$$$$$")
    batch = generation_start(pool=bulk_pool, count=3_000, enqueue=False)
    GenerationBatch.objects.filter(pk=batch.pk).update(status=JobStatus.INTERRUPTED, message=engine.INTERRUPTED)
    export = ExportJob.objects.create(pool=PoolFactory(name="Old codes"), status=JobStatus.QUEUED, total=10)
    login(page, "omar")
    page.goto("/jobs/")
    generation_row = page.get_by_test_id("job-row").filter(has_text="Generate 3,000 coupons")
    export_row = page.get_by_test_id("job-row").filter(has_text="Export CSV")
    expect(generation_row).to_contain_text("Interrupted")

    # When he cancels the export (and confirms), then resumes the batch
    page.once("dialog", lambda dialog: dialog.accept())
    export_row.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("alert")).to_contain_text(f"Export #{export.pk} cancelled.")
    expect(export_row).to_contain_text("Cancelled by omar.")
    generation_row.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("alert")).to_contain_text(f"Generation #{batch.pk} resumed.")

    # Then the worker finishes the batch while the page follows it live
    expect(generation_row).to_have_attribute("data-status", "done", timeout=60_000)
    expect(generation_row).to_contain_text("3,000 coupons generated.")
    assert Coupon.objects.filter(pool=bulk_pool).count() == 3_000
    expect(export_row.get_by_role("button")).to_have_count(0)  # finished: nothing left to do

    # And the filters narrow the list
    page.get_by_label("Status").select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("job-row")).to_have_count(1)
    expect(page.get_by_test_id("job-row")).to_contain_text("Old codes")
