"""The import pages: upload, configure with preview, progress and result, the list."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape

from coupons.models import Coupon
from imports.models import ImportJob, JobStatus
from imports.services import import_run
from tests.factories import BulkPoolFactory, GroupFactory, PoolFactory, UserFactory

pytestmark = pytest.mark.django_db


def post_file(client, content: bytes, name="codes.csv", pool=None):
    url = reverse("imports:new") + (f"?pool={pool.pk}" if pool else "")
    return client.post(url, {"file": SimpleUploadedFile(name, content, content_type="text/csv")})


def uploaded_job(client, content: bytes, pool=None) -> ImportJob:
    response = post_file(client, content, pool=pool)
    assert response.status_code == 302, response.content.decode()
    job = ImportJob.objects.latest("id")
    assert response["Location"] == reverse("imports:configure", args=[job.pk])
    return job


def configure(client, job, pool, **overrides):
    data = {
        "pool": pool.pk, "delimiter": ",", "has_header": "on", "encoding": "utf-8", "code_column": "0",
        "customer_column": "", "expires_at_column": "",
        "read_delimiter": ",", "read_has_header": "1", "read_encoding": "utf-8", **overrides,
    }
    return client.post(reverse("imports:configure", args=[job.pk]), {k: v for k, v in data.items() if v is not None})


class TestCouponsTab:
    def test_an_uploaded_pool_offers_upload_and_says_when_it_is_empty(self, manager_client):
        pool = PoolFactory()
        html = manager_client.get(reverse("coupons:pool_coupons", args=[pool.pk])).content.decode()
        upload_url = reverse("imports:new") + f"?pool={pool.pk}"
        assert f'href="{upload_url}"' in html and "This pool has no coupons yet." in html
        bulk = BulkPoolFactory()
        assert reverse("imports:new") + "?pool" not in manager_client.get(
            reverse("coupons:pool_coupons", args=[bulk.pk])).content.decode()

    def test_read_only_users_get_no_upload_button_and_no_upload_page(self, client):
        client.force_login(UserFactory(manager=False))
        pool = PoolFactory()
        html = client.get(reverse("coupons:pool_coupons", args=[pool.pk])).content.decode()
        assert reverse("imports:new") not in html
        assert client.get(reverse("imports:new")).status_code == 403


class TestUpload:
    def test_the_page_lists_the_fields(self, manager_client):
        html = manager_client.get(reverse("imports:new")).content.decode()
        for name in ("code", "customer", "expires_at"):
            assert f"<code>{name}</code>" in html
        assert "Required" in html and "Description" in html

    @pytest.mark.parametrize(
        "content,message",
        [(b"", "The file is empty."), (b"\x00\x01\x02binary", "binary data")],
        ids=["empty", "binary"],
    )
    def test_unreadable_files_are_refused_with_one_message(self, manager_client, content, message):
        response = post_file(manager_client, content)
        assert response.status_code == 400
        assert message in response.content.decode()
        assert ImportJob.objects.count() == 0

    def test_a_file_over_the_limit_is_stopped_while_it_arrives(self, manager_client, settings):
        settings.COUPON_IMPORT_MAX_FILE_SIZE = 1024
        response = post_file(manager_client, b"code\n" + b"X" * 5000 + b"\n")
        assert response.status_code == 400
        assert "larger than 1.0\xa0KB, the most an import takes" in response.content.decode()
        assert ImportJob.objects.count() == 0


class TestConfigure:
    def test_detects_the_delimiter_and_header_and_previews_the_rows(self, manager_client):
        pool = PoolFactory(name="Spring uploads")
        job = uploaded_job(manager_client, b"customer;code\n;  PV-1 \n;PV-2\n;" + b"L" * 70 + b"\n", pool=pool)
        response = manager_client.get(reverse("imports:configure", args=[job.pk]))
        form = response.context["form"]
        assert form.initial["delimiter"] == ";" and form.initial["has_header"] is True
        assert form.initial["code_column"] == "1" and form.initial["pool"] == pool.pk
        rows = response.context["preview"].rows
        assert [row.code for row in rows[:2]] == ["PV-1", "PV-2"]
        assert "70 characters long" in rows[2].reason
        html = response.content.decode()
        assert "2: code" in html and "<code>PV-1</code>" in html

    def test_only_uploaded_pools_the_user_may_see_are_offered(self, client):
        team, other = GroupFactory(), GroupFactory()
        user = UserFactory(groups=[team])
        client.force_login(user)
        mine, hidden, bulk = PoolFactory(user_group=team), PoolFactory(user_group=other), BulkPoolFactory()
        job = uploaded_job(client, b"code\nA1\n")
        offered = list(client.get(reverse("imports:configure", args=[job.pk])).context["form"].fields["pool"].queryset)
        assert mine in offered and hidden not in offered and bulk not in offered
        response = configure(client, job, hidden)
        assert response.status_code == 400
        job.refresh_from_db()
        assert job.status == JobStatus.DRAFT

    def test_changing_the_delimiter_maps_the_columns_again_live(self, manager_client):
        job = uploaded_job(manager_client, b"code;customer\nLV-1;\n")
        response = manager_client.get(
            reverse("imports:configure", args=[job.pk]),
            {"delimiter": ",", "has_header": "on", "encoding": "utf-8", "code_column": "1",
             "read_delimiter": ";", "read_has_header": "1", "read_encoding": "utf-8"},
            headers={"HX-Request": "true"},
        )
        assert response.templates[0].name == "imports/_configure_dynamic.html"
        # Read with commas, the file has one column, "code;customer": no code column.
        assert "no code column" in response.context["preview"].problem
        assert response.context["form"]["code_column"].value() == ""

    def test_start_queues_the_import_and_shows_its_progress(self, manager_client, django_capture_on_commit_callbacks):
        pool = PoolFactory()
        job = uploaded_job(manager_client, b"code\nST-1\nST-2\n", pool=pool)
        with django_capture_on_commit_callbacks() as callbacks:
            response = configure(manager_client, job, pool)
        assert response.status_code == 302 and response["Location"] == reverse("imports:detail", args=[job.pk])
        assert len(callbacks) == 1  # the Celery task, sent once the transaction commits
        job.refresh_from_db()
        assert (job.status, job.pool, job.mapping) == (JobStatus.QUEUED, pool, {"code": 0})
        html = manager_client.get(reverse("imports:detail", args=[job.pk])).content.decode()
        assert f'hx-get="{reverse("imports:progress", args=[job.pk])}"' in html and "Waiting for a worker" in html
        # Configuring again is over: the page goes to the progress.
        assert manager_client.get(reverse("imports:configure", args=[job.pk])).status_code == 302

    def test_a_file_without_a_code_column_cannot_start(self, manager_client):
        pool = PoolFactory()
        job = uploaded_job(manager_client, b"name,email\nx,y\n")
        response = configure(manager_client, job, pool, code_column="")
        assert response.status_code == 400
        assert "Choose which column holds the code." in response.content.decode()
        job.refresh_from_db()
        assert job.status == JobStatus.DRAFT and Coupon.objects.count() == 0

    def test_the_same_file_again_is_announced(self, manager_client):
        pool = PoolFactory()
        first = uploaded_job(manager_client, b"code\nSF-1\n", pool=pool)
        configure(manager_client, first, pool)
        import_run(job_id=first.pk)
        second = uploaded_job(manager_client, b"code\nSF-1\n", pool=pool)
        html = manager_client.get(reverse("imports:configure", args=[second.pk])).content.decode()
        assert "This file was imported before" in html and f"#{first.pk}" in html


class TestResult:
    def finished(self, client, content: bytes) -> ImportJob:
        pool = PoolFactory()
        job = uploaded_job(client, content, pool=pool)
        configure(client, job, pool)
        return import_run(job_id=job.pk)

    def test_the_result_counts_and_the_rows_not_imported(self, manager_client):
        job = self.finished(manager_client, b"code\nRR-1\nRR-2\nRR-1\n=cmd|x\nBAD\x01\n")
        html = manager_client.get(reverse("imports:detail", args=[job.pk])).content.decode()
        assert 'data-testid="created">3<' in html and 'data-testid="duplicates-in-file">1<' in html
        assert 'data-testid="invalid">1<' in html and "hx-get" not in html
        assert "The code appears earlier in the file, in row 2." in html
        response = manager_client.get(reverse("imports:rejections", args=[job.pk]))
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
        assert rows[0] == ["row", "problem", "reason", "code", "customer", "expires_at"]
        assert rows[1][:2] == ["4", "Duplicate in the file"]
        assert rows[2][:2] == ["6", "Invalid row"] and "control character" in rows[2][2]

    def test_spreadsheet_formulas_are_neutralised_in_the_rejected_rows(self, manager_client):
        job = self.finished(manager_client, b"code\n=HYPERLINK(1)\n=HYPERLINK(1)\n")
        response = manager_client.get(reverse("imports:rejections", args=[job.pk]))
        body = b"".join(response.streaming_content).decode("utf-8-sig")
        assert "'=HYPERLINK(1)" in body

    def test_a_failed_import_says_nothing_was_imported_and_can_be_configured_again(self, manager_client):
        job = uploaded_job(manager_client, b"code\nFA-1\n")
        ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, message="The file is not valid UTF-8.")
        html = manager_client.get(reverse("imports:detail", args=[job.pk])).content.decode()
        assert "The file is not valid UTF-8." in html and "Nothing was imported." in html
        assert manager_client.get(reverse("imports:configure", args=[job.pk])).status_code == 200

    def test_an_interrupted_import_can_be_resumed(self, manager_client, django_capture_on_commit_callbacks):
        pool = PoolFactory()
        job = uploaded_job(manager_client, b"code\nIR-1\n", pool=pool)
        configure(manager_client, job, pool)
        ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.INTERRUPTED, message="The worker stopped.")
        assert "Resume" in manager_client.get(reverse("imports:detail", args=[job.pk])).content.decode()
        with django_capture_on_commit_callbacks() as callbacks:
            manager_client.post(reverse("coupons:job_action", args=["import", job.pk, "resume"]),
                                {"next": reverse("imports:detail", args=[job.pk])})
        job.refresh_from_db()
        assert job.status == JobStatus.QUEUED and len(callbacks) == 1


class TestList:
    def test_lists_the_imports_of_visible_pools_only(self, client):
        team, other = GroupFactory(), GroupFactory()
        user = UserFactory(groups=[team])
        client.force_login(user)
        mine, hidden = PoolFactory(user_group=team), PoolFactory(user_group=other)
        ImportJob.objects.create(pool=mine, original_name="mine.csv", sha256="a", status=JobStatus.DONE, total=5, created=4, invalid=1)
        ImportJob.objects.create(pool=hidden, original_name="hidden.csv", sha256="b", status=JobStatus.DONE)
        html = client.get(reverse("imports:list")).content.decode()
        assert "mine.csv" in html and "hidden.csv" not in html
        hidden_job = ImportJob.objects.get(original_name="hidden.csv")
        assert client.get(reverse("imports:detail", args=[hidden_job.pk])).status_code == 404


def test_the_same_file_warning_does_not_name_a_pool_the_user_may_not_see(client, admin_client_):
    secret_team = GroupFactory(name="VIP team")
    secret = PoolFactory(name="Secret VIP pool", user_group=secret_team)
    first = uploaded_job(admin_client_, b"code\nVIP-1\n", pool=secret)
    configure(admin_client_, first, secret)
    import_run(job_id=first.pk)
    client.force_login(UserFactory())
    second = uploaded_job(client, b"code\nVIP-1\n")
    html = client.get(reverse("imports:configure", args=[second.pk])).content.decode()
    assert "Secret VIP pool" not in html and "imported before" not in html


def test_a_file_problem_at_start_is_shown_once(manager_client):
    # Given a Windows-1252 file configured to be read as UTF-8
    pool = PoolFactory()
    job = uploaded_job(manager_client, "code\nCAF\u00c9-1\nCAF\u00c9-2\n".encode("windows-1252"), pool=pool)
    # When the import is started like that
    response = configure(manager_client, job, pool, encoding="utf-8", read_encoding="utf-8")
    # Then it is refused, and the problem the preview shows is not repeated above the form
    assert response.status_code == 400
    html = response.content.decode()
    problem = response.context["preview"].problem
    assert problem and html.count(escape(problem)) == 1
    assert 'data-testid="start-error"' not in html


@pytest.mark.parametrize("total, text", [(1, "0 of 1 row done."), (2, "0 of 2 rows done.")])
def test_a_jobs_progress_counts_its_unit_in_singular_and_plural(total, text):
    job = ImportJob(status=JobStatus.RUNNING, total=total, processed=0)
    assert render_to_string("jobs/_progress_text.html", {"job": job}).strip() == text


@pytest.mark.parametrize("invalid, kept, text", [
    (1, 1, "Download the 1 row not imported (CSV)"), (2, 2, "Download the 2 rows not imported (CSV)"),
    (3, 1, "Download the 1 listed row not imported (CSV)"), (5, 2, "Download the 2 listed rows not imported (CSV)"),
])
def test_the_download_of_rows_not_imported_counts_them_in_singular_and_plural(invalid, kept, text):
    job = ImportJob(pk=7, status=JobStatus.DONE, total=10, created=10 - invalid, invalid=invalid)
    html = render_to_string("imports/_status.html", {
        "job": job, "rejections": [], "rejections_kept": kept, "rejections_shown": kept, "rejections_limit": 1,
    })
    assert text in " ".join(html.split())


@pytest.mark.parametrize("created, text", [
    (1, "The 1 coupon created stays in the pool."), (2, "The 2 coupons created stay in the pool."),
])
def test_a_cancelled_import_counts_the_coupons_it_leaves_in_singular_and_plural(created, text):
    job = ImportJob(pk=7, status=JobStatus.CANCELLED, total=10, processed=5, created=created, message="Cancelled.")
    html = render_to_string("imports/_status.html", {"job": job, "rejections": [], "rejections_kept": 0,
                                                     "rejections_shown": 0, "rejections_limit": 1})
    assert f"Cancelled. {text}" in " ".join(html.split())
