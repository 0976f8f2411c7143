"""CSV exports: the streamed list and the background file write the same bytes; large
lists become jobs whose file only the pool's users may download, for a week."""

import csv
import gzip
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from coupons import exports
from coupons.exports import coupons_to_export, csv_lines, export_submit
from coupons.jobs.engine import job_execute, jobs_purge
from coupons.models import Coupon, CouponStatus, ExportJob, JobStatus
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory, GroupFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


def tricky_pool():
    """Codes and customers a spreadsheet or a CSV parser could trip over."""
    pool = GiftCardPoolFactory(value="50.00")
    CouponFactory(pool=pool, code="=HYPERLINK(1)")
    CouponFactory(pool=pool, code="-1+1", status=S.CLAIMED, customer=CustomerFactory(external_id='@ann,"the" boss'))
    CouponFactory(pool=pool, code="PLAIN-1", status=S.PARTIALLY_REDEEMED, balance=Decimal("12.50"),
                  expires_at=timezone.now() + timedelta(days=3))
    CouponFactory(pool=pool, code="TAB\tINSIDE", status=S.REDEEMED, balance=Decimal("0.00"))
    CouponFactory(pool=pool, code="+SUM", status=S.EXPIRED)
    CouponFactory(pool=pool, code="QUOTE\"D", status=S.INVALID)
    CouponFactory(pool=pool, code="CR-1", status=S.CLAIMED, customer=CustomerFactory(external_id="carriage\rreturn"))
    CouponFactory(pool=pool, code="LF-1", status=S.CLAIMED, customer=CustomerFactory(external_id="line\nfeed"))
    return pool


def read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


def test_copy_writes_exactly_what_the_streamed_export_writes():
    pool = tricky_pool()
    coupons = coupons_to_export(pool, {})
    streamed = "".join(csv_lines(coupons))
    out = io.BytesIO()
    rows = exports.copy_csv(coupons, out)
    assert rows == 8
    assert exports.header_line() + out.getvalue().decode() == streamed
    table = read(streamed)
    assert table[0] == exports.HEADER
    assert [r[0] for r in table[1:]] == [
        "LF-1", "CR-1", "QUOTE\"D", "'+SUM", "TAB\tINSIDE", "PLAIN-1", "'-1+1", "'=HYPERLINK(1)"]
    assert (table[1][1], table[2][1]) == ("line\nfeed", "carriage\rreturn")  # quoted, one row each
    assert table[7][1] == "'@ann,\"the\" boss" and table[7][4] == "claimed"
    assert table[6][7] == "12.50" and table[6][3].endswith("+00:00") and table[3][4] == "invalid"


def test_filters_apply_to_both_and_bad_filters_select_nothing():
    pool = tricky_pool()
    claimed = coupons_to_export(pool, {"status": "claimed"})
    assert len(read("".join(csv_lines(claimed)))) == 4
    out = io.BytesIO()
    assert exports.copy_csv(claimed, out) == 3
    assert coupons_to_export(pool, {"claimed_from": "not a date"}).count() == 0


@pytest.mark.parametrize("compress", [False, True], ids=["csv", "gzip"])
def test_an_export_job_writes_the_file_with_every_matching_row(compress, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    pool = tricky_pool()
    CouponFactory.create_batch(20, pool=pool, status=S.CLAIMED)
    job = export_submit(pool=pool, filters={"status": "claimed"}, compress=compress, user=None, total=1_000)
    job = job_execute(kind="export", job_id=job.pk)
    assert job.status == JobStatus.DONE, job.message
    assert (job.total, job.processed, job.total_is_estimate) == (23, 23, False)
    assert job.message == "23 coupons exported." and job.expires_at > timezone.now() + timedelta(days=6)
    raw = (tmp_path / job.file.name).read_bytes()
    assert job.size == len(raw) and job.filename.endswith(".csv.gz" if compress else ".csv")
    text = (gzip.decompress(raw) if compress else raw).decode()
    table = read(text)
    assert table[0] == exports.HEADER and len(table) == 24 and {r[4] for r in table[1:]} == {"claimed"}
    assert text == "".join(csv_lines(coupons_to_export(pool, {"status": "claimed"})))


@pytest.mark.django_db(transaction=True)
def test_a_short_export_run_as_a_worker_runs_it_counts_every_row(settings, tmp_path):
    """Outside a test's transaction the heartbeat thread writes progress: its last
    write (processed 0, queued at the start) must not undo the final counters."""
    settings.MEDIA_ROOT = str(tmp_path)
    pool = tricky_pool()
    job = export_submit(pool=pool, filters={}, compress=False, user=None, total=1_000)
    job = job_execute(kind="export", job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and (job.total, job.processed) == (8, 8), (job.total, job.processed)


class TestPages:
    def test_a_small_list_streams_at_once(self, manager_client):
        pool = tricky_pool()
        response = manager_client.get(reverse("coupons:pool_coupons_export", args=[pool.pk]), {"status": "redeemed"})
        assert response.streaming
        assert len(read(b"".join(response.streaming_content).decode())) == 2

    def test_a_large_list_is_offered_as_a_background_export(self, manager_client, monkeypatch):
        monkeypatch.setattr("coupons.views.STREAM_LIMIT", 5)
        pool = tricky_pool()
        url = reverse("coupons:pool_coupons_export", args=[pool.pk])
        assert manager_client.get(url, {"q": "", "status": "expired", "match": "prefix"}).streaming  # 1 coupon
        page = manager_client.get(url)  # 8 coupons: over the limit
        assert page.templates[0].name == "coupons/export_confirm.html"
        html = page.content.decode()
        assert "coupons as CSV</h1>" in html and 'name="compress"' in html
        response = manager_client.post(url, {"status": "claimed", "compress": "1", "submission": "x1"})
        job = ExportJob.objects.get()
        assert (job.filters, job.compress, job.created_by.username) == ({"status": "claimed"}, True, "manager")
        assert response["Location"] == reverse("coupons:pool_coupons", args=[pool.pk]) + f"?status=claimed&job=export%3A{job.pk}"
        tab = manager_client.get(response["Location"]).content.decode()
        assert f'id="job-export-{job.pk}"' in tab and "Export CSV (gzip), filtered" in tab
        manager_client.post(url, {"status": "claimed", "compress": "1", "submission": "x1"})  # sent twice
        assert ExportJob.objects.count() == 1

    def test_only_the_pools_users_download_and_only_until_it_expires(self, client, settings, tmp_path):
        settings.MEDIA_ROOT = str(tmp_path)
        team = GroupFactory()
        pool = PoolFactory(user_group=team)
        CouponFactory.create_batch(3, pool=pool)
        job = job_execute(kind="export", job_id=export_submit(pool=pool, filters={}, compress=False, user=None, total=3).pk)
        url = reverse("coupons:export_download", args=[job.pk])
        client.force_login(UserFactory(username="outsider"))
        assert client.get(url).status_code == 404
        assert client.get(reverse("coupons:jobs")).context["page"].rows == []
        client.force_login(UserFactory(username="insider", groups=[team], manager=False))  # a read-only user
        response = client.get(url)
        assert response.status_code == 200 and response["Content-Disposition"].startswith('attachment; filename="coupons-pool-')
        assert len(read(b"".join(response.streaming_content).decode())) == 4
        ExportJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        assert jobs_purge() >= 1
        assert not (tmp_path / job.file.name).exists()
        assert client.get(url).status_code == 404
        assert ExportJob.objects.get(pk=job.pk).file == ""

    def test_an_unfinished_export_has_no_download(self, manager_client):
        job = ExportJob.objects.create(pool=PoolFactory(), status=JobStatus.RUNNING)
        assert manager_client.get(reverse("coupons:export_download", args=[job.pk])).status_code == 404


def test_a_cancelled_export_leaves_no_file(settings, tmp_path, monkeypatch):
    from coupons.jobs.engine import job_cancel

    settings.MEDIA_ROOT = str(tmp_path)
    pool = PoolFactory()
    CouponFactory.create_batch(3, pool=pool)
    job = export_submit(pool=pool, filters={}, compress=False, user=None, total=3)
    real = exports._write_rows

    def cancelled_while_writing(coupons, out, run):
        rows = real(coupons, out, run)
        job_cancel(job=ExportJob.objects.get(pk=job.pk))
        return rows

    monkeypatch.setattr(exports, "_write_rows", cancelled_while_writing)
    job = job_execute(kind="export", job_id=job.pk)
    assert job.status == JobStatus.CANCELLED and job.file == ""
    assert not list(tmp_path.rglob("*.csv"))
    assert Coupon.objects.filter(pool=pool).count() == 3


def test_files_no_export_refers_to_are_removed_once_a_day_old(settings, tmp_path):
    import os

    settings.MEDIA_ROOT = str(tmp_path)
    pool = PoolFactory()
    CouponFactory(pool=pool)
    kept = job_execute(kind="export", job_id=export_submit(pool=pool, filters={}, compress=False, user=None, total=1).pk)
    folder = tmp_path / "exports" / "2026" / "11"
    folder.mkdir(parents=True)
    orphan, fresh = folder / "orphan.csv", folder / "being-written.csv"
    orphan.write_text("code\n")
    fresh.write_text("code\n")
    two_days_ago = (timezone.now() - timedelta(days=2)).timestamp()
    os.utime(orphan, (two_days_ago, two_days_ago))
    os.utime(tmp_path / kept.file.name, (two_days_ago, two_days_ago))
    assert jobs_purge() == 1
    assert not orphan.exists() and fresh.exists() and (tmp_path / kept.file.name).exists()
