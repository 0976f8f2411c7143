"""The import service end to end on PostgreSQL: upload, configure, run, report."""

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection, connections
from django.utils import timezone

from coupons.jobs.engine import JobRefused, jobs_mark_interrupted
from coupons.models import Coupon, CouponStatus, CustomerEvent
from imports import services
from imports.models import ImportJob, ImportPhase, ImportRejection, JobStatus, RowOutcome
from imports.parsing import FileProblem, Options
from imports.services import ImportRefused, import_resume, import_run, import_start, import_upload, job_options, runner, staging
from pools.models import PoolSource
from tests.factories import BulkPoolFactory, CustomerFactory, GiftCardPoolFactory, PoolFactory

pytestmark = pytest.mark.django_db


def upload(content: bytes, name="coupons.csv", pool=None) -> ImportJob:
    return import_upload(file=ContentFile(content, name=name), name=name, pool=pool)


def run_import(pool, content: bytes, **options) -> ImportJob:
    job = upload(content, pool=pool)
    guessed = job_options(job)
    chosen = Options(
        delimiter=options.get("delimiter", guessed.delimiter),
        has_header=options.get("has_header", guessed.has_header),
        encoding=options.get("encoding", guessed.encoding),
        mapping=options.get("mapping"),
    )
    job = import_start(job=job, pool=pool, options=chosen, enqueue=False)
    return import_run(job_id=job.pk)


def counts(job: ImportJob) -> dict:
    return {
        "read": job.total, "created": job.created, "in_file": job.duplicates_in_file,
        "existing": job.existing, "invalid": job.invalid,
    }


def reasons(job: ImportJob) -> list[tuple[int, str]]:
    return list(ImportRejection.objects.filter(job=job).order_by("row").values_list("row", "reason"))


def codes(pool) -> list[str]:
    return sorted(Coupon.objects.filter(pool=pool).values_list("code", flat=True))


# --- the table of nasty files --------------------------------------------------------

NASTY = [
    # (name, bytes, options, expected counts, expected codes, expected reasons by row)
    ("BOM", b"\xef\xbb\xbfcode\nBOM-1\nBOM-2\n", {}, dict(read=2, created=2), ["BOM-1", "BOM-2"], {}),
    ("CRLF", b"code\r\nCR-1\r\nCR-2\r\n", {}, dict(read=2, created=2), ["CR-1", "CR-2"], {}),
    (
        "quoted fields with embedded delimiters",
        b'code,customer\n"Q,1",\n"Q;2",\n"Q""3",\n', {}, dict(read=3, created=3), ['Q"3', "Q,1", "Q;2"], {},
    ),
    ("blank lines", b"code\n\nBL-1\n\n  \n,\nBL-2\n\n", {}, dict(read=2, created=2), ["BL-1", "BL-2"], {}),
    ("whitespace around codes", b"code\n  WS-1  \n\tWS-2\t\n", {}, dict(read=2, created=2), ["WS-1", "WS-2"], {}),
    (
        "duplicates in the file", b"code\nD-1\nD-2\nD-1\nD-1\n", {}, dict(read=4, created=2, in_file=2),
        ["D-1", "D-2"], {4: "earlier in the file, in row 2", 5: "in row 2"},
    ),
    (
        "Windows-1252 text", "code\nCAFÉ-1\n€-2\n".encode("cp1252"), {"encoding": "windows-1252"},
        dict(read=2, created=2), ["CAFÉ-1", "€-2"], {},
    ),
    (
        "over-long code", b"code\nOK-1\n" + b"L" * 65 + b"\n", {}, dict(read=2, created=1, invalid=1),
        ["OK-1"], {3: "65 characters long; codes can be at most 64"},
    ),
    (
        "control character", b"code\nOK-2\nBAD\x07CODE\n", {}, dict(read=2, created=1, invalid=1),
        ["OK-2"], {3: "control character (U+0007)"},
    ),
    ("no header, semicolons", b"NH-1;x\nNH-2;y\n", {"has_header": False, "delimiter": ";"}, dict(read=2, created=2),
     ["NH-1", "NH-2"], {}),
    (
        "a backslash and quotes in codes", b'code\nA\\B\n"C""D"\n', {}, dict(read=2, created=2), ["A\\B", 'C"D'], {},
    ),
]


@pytest.mark.parametrize(
    "content,options,expected,expected_codes,expected_reasons",
    [case[1:] for case in NASTY], ids=[case[0] for case in NASTY],
)
def test_nasty_files(content, options, expected, expected_codes, expected_reasons):
    pool = PoolFactory()
    job = run_import(pool, content, **options)
    assert job.status == JobStatus.DONE, job.message
    assert counts(job) == {"read": 0, "created": 0, "in_file": 0, "existing": 0, "invalid": 0, **expected}
    assert codes(pool) == expected_codes
    found = dict(reasons(job))
    assert sorted(found) == sorted(expected_reasons)
    for row, text in expected_reasons.items():
        assert text in found[row]
    # The counts add up, and every new coupon is "Not claimed yet".
    assert job.total == job.created + job.skipped
    assert set(Coupon.objects.filter(pool=pool).values_list("status", flat=True)) <= {CouponStatus.UNASSIGNED}


def test_codes_that_exist_in_another_pool_or_this_one_are_skipped_with_the_reason():
    pool, other = PoolFactory(), PoolFactory()
    run_import(other, b"code\nEX-OTHER\n")
    run_import(pool, b"code\nEX-MINE\n")
    job = run_import(pool, b"code\nEX-OTHER\nEX-MINE\nEX-NEW\n")
    assert counts(job) == dict(read=3, created=1, in_file=0, existing=2, invalid=0)
    assert reasons(job) == [
        (2, "The code exists already in another pool."), (3, "The code exists already in this pool."),
    ]
    assert codes(other) == ["EX-OTHER"]
    assert codes(pool) == ["EX-MINE", "EX-NEW"]


def test_a_generic_code_of_a_generated_pool_counts_as_existing():
    generated = PoolFactory(source=PoolSource.GENERATED, pattern="WELCOME10")
    Coupon.objects.create(pool=generated, terms=generated.current_terms, code="WELCOME10", shared_code=True)
    job = run_import(PoolFactory(), b"code\nWELCOME10\nFRESH-1\n")
    assert (job.created, job.existing) == (1, 1)


def test_rows_with_a_customer_are_claimed_with_events_and_unknown_customers_are_invalid_rows():
    pool = PoolFactory(expiration_period_count=30, expiration_period_unit="day")
    anna, ben = CustomerFactory(external_id="anna"), CustomerFactory(external_id="ben")
    content = (
        b"code,customer,expires_at\n"
        b"CU-1,anna,\n"              # claimed, expiry from the pool's period
        b"CU-2,ben,2099-01-31\n"     # claimed, the file's expiry (end of that day)
        b"CU-3,,\n"                  # not claimed
        b"CU-4,nobody,\n"            # unknown customer: invalid row
        b"CU-5,,2099-01-31\n"        # an expiry without a customer: invalid row
        b"CU-6,anna,31/01/2027\n"    # not a date: invalid row
    )
    before = timezone.now()
    job = run_import(pool, content)
    assert counts(job) == dict(read=6, created=3, in_file=0, existing=0, invalid=3)
    found = dict(reasons(job))
    assert 'No customer has the ID "nobody"' in found[5]
    assert "needs a customer" in found[6]
    assert '"31/01/2027" is not a date' in found[7]
    by_code = {c.code: c for c in Coupon.objects.filter(pool=pool)}
    assert (by_code["CU-1"].status, by_code["CU-1"].customer, by_code["CU-1"].claims) == (CouponStatus.CLAIMED, anna, 1)
    assert before + timedelta(days=29) < by_code["CU-1"].expires_at < timezone.now() + timedelta(days=31)
    assert by_code["CU-2"].customer == ben
    assert by_code["CU-2"].expires_at == datetime(2099, 1, 31, 23, 59, 59, tzinfo=UTC)
    assert (by_code["CU-3"].status, by_code["CU-3"].customer, by_code["CU-3"].claimed_at) == (CouponStatus.UNASSIGNED, None, None)
    events = CustomerEvent.objects.filter(pool=pool).order_by("customer__external_id")
    assert [(e.customer.external_id, e.action, e.coupon.code, e.data["import"]) for e in events] == [
        ("anna", "coupon_claim", "CU-1", job.pk), ("ben", "coupon_claim", "CU-2", job.pk),
    ]
    assert {e.actor_label for e in events} == {f"import #{job.pk}"}


def test_gift_cards_are_not_imported_for_a_customer_with_another_currency():
    pool = GiftCardPoolFactory(currency="EUR")
    CustomerFactory(external_id="eu", currency="EUR")
    CustomerFactory(external_id="us", currency="USD")
    job = run_import(pool, b"code,customer\nGC-1,eu\nGC-2,us\n")
    assert (job.created, job.invalid) == (1, 1)
    assert "These gift cards are in EUR; customer \"us\" has USD" in reasons(job)[0][1]


# --- files that cannot be imported at all: one clear message, nothing imported -------


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "The file is empty."),
        (b"\n \r\n", "The file is empty."),
        (b"PK\x03\x04\x00\x00\x08\x00binary", "binary data"),
    ],
    ids=["empty", "only blank lines", "binary"],
)
def test_files_refused_at_upload_store_nothing(content, message):
    with pytest.raises(FileProblem, match=re.escape(message)):
        upload(content)
    assert ImportJob.objects.count() == 0


def test_a_file_over_the_size_limit_is_refused_at_upload(settings):
    settings.COUPON_IMPORT_MAX_FILE_SIZE = 100
    with pytest.raises(FileProblem, match="files can be at most 100"):
        upload(b"code\n" + b"SIZE-1234\n" * 20)
    assert ImportJob.objects.count() == 0


@pytest.mark.parametrize(
    "content,options,message",
    [
        (b"code\n", {}, "header row but no coupons"),
        (b"name,email\nx,y\n", {}, 'no code column: its header has "name", "email"'),
        (b"code\nA1\n\xff\xfeB2\n", {"encoding": "utf-8"}, "not valid UTF-8 (with or without BOM): byte 0xff"),
    ],
    ids=["header only", "missing code column", "invalid UTF-8"],
)
def test_files_refused_when_the_import_is_started(content, options, message):
    pool = PoolFactory()
    job = upload(content)
    guessed = job_options(job)
    chosen = Options(delimiter=guessed.delimiter, has_header=guessed.has_header, encoding=options.get("encoding", guessed.encoding))
    with pytest.raises(FileProblem, match=re.escape(message)):
        import_start(job=job, pool=pool, options=chosen, enqueue=False)
    job.refresh_from_db()
    assert job.status == JobStatus.DRAFT
    assert Coupon.objects.count() == 0


def test_an_undecodable_byte_deep_in_the_file_fails_the_import_and_imports_nothing(monkeypatch):
    monkeypatch.setattr(runner, "CHUNK", 100)  # the good first rows are staged and committed first
    pool = PoolFactory()
    content = b"code\n" + b"".join(b"DEEP-%d\n" % n for n in range(1_000)) + b"BAD-\xff\n"
    job = upload(content)
    job = import_start(job=job, pool=pool, options=Options(encoding="utf-8"), enqueue=False)
    job = import_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED and "not valid UTF-8" in job.message
    assert not job.can_resume and job.can_start  # nothing imported: configured and started again
    assert Coupon.objects.filter(pool=pool).count() == 0
    assert staging.stage_name(job) not in connection.introspection.table_names()


def test_only_uploaded_pools_take_imports():
    job = upload(b"code\nX1\n")
    with pytest.raises(ImportRefused, match="does not take uploaded coupons"):
        import_start(job=job, pool=BulkPoolFactory(), options=job_options(job), enqueue=False)


# --- the same file twice, resuming, parallel runs --------------------------------------


def test_the_same_file_twice_creates_nothing_the_second_time_and_says_so():
    pool = PoolFactory()
    content = b"code\nTW-1\nTW-2\nTW-2\n"
    first = run_import(pool, content)
    second = run_import(pool, content)
    assert (first.created, first.duplicates_in_file) == (2, 1)
    assert counts(second) == dict(read=3, created=0, in_file=1, existing=2, invalid=0)
    assert second.message == (
        "Nothing was created: 2 codes exist already, 1 row repeats an earlier row. This file was imported before."
    )
    assert services.earlier_import_of_same_file(second) == first
    assert codes(pool) == ["TW-1", "TW-2"]


def test_a_run_stopped_mid_import_resumes_to_the_same_result_as_an_uninterrupted_one(monkeypatch):
    monkeypatch.setattr(runner, "CHUNK", 50)

    def content(prefix):
        rows = [f"{prefix}-{n % 230}" for n in range(300)] + ["", "bad\x01code"]
        return ("code\n" + "\n".join(rows) + "\n").encode()

    reference = run_import(PoolFactory(), content("REF"))

    pool = PoolFactory()
    job = upload(content("RS"))
    job = import_start(job=job, pool=pool, options=job_options(job), enqueue=False)

    class Killed(BaseException):  # like a SIGKILL: nothing of the run gets to clean up
        pass

    def die_in_the_importing_phase(progress_job):
        if progress_job.phase == ImportPhase.IMPORTING and progress_job.cursor >= 100:
            raise Killed

    with pytest.raises(Killed):
        import_run(job_id=job.pk, progress=die_in_the_importing_phase)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and 0 < job.cursor < 302
    assert Coupon.objects.filter(pool=pool).count() == job.created  # the committed chunks, no more
    assert jobs_mark_interrupted(now=timezone.now() + timedelta(minutes=5)) == 1
    job = import_resume(job=ImportJob.objects.get(pk=job.pk), enqueue=False)
    job = import_run(job_id=job.pk)
    assert job.status == JobStatus.DONE
    assert counts(job) == counts(reference) == dict(read=301, created=230, in_file=70, existing=0, invalid=1)
    assert ImportRejection.objects.filter(job=job).count() == 71
    assert len(set(codes(pool))) == 230


def test_a_lost_staging_table_is_read_again_and_the_result_is_the_same(monkeypatch):
    """A database crash empties an unlogged table; the next run reads the file again."""
    monkeypatch.setattr(runner, "CHUNK", 40)
    pool = PoolFactory()
    content = ("code\n" + "\n".join(f"LS-{n % 90}" for n in range(120)) + "\n").encode()
    job = upload(content)
    job = import_start(job=job, pool=pool, options=job_options(job), enqueue=False)

    class Killed(BaseException):  # like a SIGKILL: nothing of the run gets to clean up
        pass

    def die(progress_job):
        if progress_job.phase == ImportPhase.IMPORTING and progress_job.cursor >= 40:
            raise Killed

    with pytest.raises(Killed):
        import_run(job_id=job.pk, progress=die)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {staging.stage_name(job)}")
    ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.INTERRUPTED)
    import_resume(job=job, enqueue=False)
    job = import_run(job_id=job.pk)
    assert counts(job) == dict(read=120, created=90, in_file=30, existing=0, invalid=0)
    assert ImportRejection.objects.filter(job=job, outcome=RowOutcome.DUPLICATE_IN_FILE).count() == 30


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_overlapping_files_at_once_never_create_a_code_twice(monkeypatch):
    monkeypatch.setattr(runner, "CHUNK", 500)
    first, second = PoolFactory(), PoolFactory()
    shared = [f"OV-{n}" for n in range(3_000)]
    jobs = []
    for pool, extra in ((first, "A"), (second, "B")):
        content = ("code\n" + "\n".join(shared + [f"OV-{extra}-{n}" for n in range(500)]) + "\n").encode()
        job = upload(content, pool=pool)
        jobs.append(import_start(job=job, pool=pool, options=job_options(job), enqueue=False))
    barrier = threading.Barrier(2)

    def work(job):
        barrier.wait()
        import_run(job_id=job.pk)
        connections.close_all()

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    done = [ImportJob.objects.get(pk=job.pk) for job in jobs]
    assert [job.status for job in done] == [JobStatus.DONE, JobStatus.DONE]
    assert sum(job.created for job in done) == 4_000
    assert sum(job.existing for job in done) == 3_000
    assert Coupon.objects.count() == Coupon.objects.values("code").distinct().count() == 4_000


@pytest.mark.django_db(transaction=True)
def test_the_same_import_run_twice_at_once_gives_one_result(monkeypatch):
    monkeypatch.setattr(runner, "CHUNK", 200)
    pool = PoolFactory()
    job = upload(("code\n" + "\n".join(f"TT-{n}" for n in range(2_000)) + "\n").encode())
    job = import_start(job=job, pool=pool, options=job_options(job), enqueue=False)
    barrier = threading.Barrier(2)

    def work():
        barrier.wait()
        import_run(job_id=job.pk)  # e.g. a redelivered task while a resume runs
        connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    job.refresh_from_db()
    # The run that was taken over stopped at its next chunk; the other one finished.
    assert job.status == JobStatus.DONE
    assert counts(job) == dict(read=2_000, created=2_000, in_file=0, existing=0, invalid=0)
    assert Coupon.objects.filter(pool=pool).count() == 2_000


def test_the_file_is_kept_in_the_storage(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    job = upload(b"code\nKEEP-1\n", name="../../etc/Spring sale.csv")
    assert job.file.name.startswith("imports/") and job.file.name.endswith("Spring_sale.csv")
    assert (tmp_path / job.file.name).read_bytes() == b"code\nKEEP-1\n"
    assert job.original_name == "../../etc/Spring sale.csv"


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker_env(COUPON_IMPORT_CHUNK="2000")
def test_a_killed_worker_leaves_an_import_that_resumes_to_the_same_result(celery_worker_process):
    import time

    from tests.conftest import start_worker

    pool, other = PoolFactory(), PoolFactory()
    Coupon.objects.create(pool=other, terms=other.current_terms, code="KW-00000077")
    rows = [f"KW-{n:08d}" for n in range(240_000)] + ["KW-00000005", "BAD\x02"]
    job = upload(("code\n" + "\n".join(rows) + "\n").encode())
    # Given an import running in a real worker, in chunks of 2,000 rows
    import_start(job=job, pool=pool, options=job_options(job))
    celery_worker_process.wait_for(
        lambda: ImportJob.objects.get(pk=job.pk), lambda j: j.phase == ImportPhase.IMPORTING and j.cursor >= 6_000
    )
    # When the worker is killed mid-import
    celery_worker_process.process.kill()
    celery_worker_process.process.wait(timeout=10)
    job.refresh_from_db()
    # Then what was committed matches the counters exactly, and the job is not reported done
    assert job.status == JobStatus.RUNNING and 6_000 <= job.cursor < 240_003
    assert Coupon.objects.filter(pool=pool).count() == job.created
    assert ImportRejection.objects.filter(job=job).count() == job.skipped
    # And the watchdog marks it interrupted; a new worker resumes it to the full result
    assert jobs_mark_interrupted(now=timezone.now() + timedelta(minutes=5)) == 1
    second = start_worker(celery_worker_process.queue, COUPON_IMPORT_CHUNK="20000")
    try:
        import_resume(job=ImportJob.objects.get(pk=job.pk))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.status != JobStatus.DONE:
            time.sleep(0.3)
            job.refresh_from_db()
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert counts(job) == dict(read=240_002, created=239_999, in_file=1, existing=1, invalid=1)
    assert Coupon.objects.filter(pool=pool).count() == 239_999
    assert sorted(ImportRejection.objects.filter(job=job).values_list("row", flat=True)) == [79, 240_002, 240_003]


# --- found in review -----------------------------------------------------------------


def test_a_row_invalid_for_its_customer_does_not_hide_a_later_valid_row_with_the_code():
    pool = PoolFactory()
    job = run_import(pool, b"code,customer\nX-1,NOPE\nX-1,\n")
    assert counts(job) == dict(read=2, created=1, in_file=0, existing=0, invalid=1)
    assert codes(pool) == ["X-1"] and reasons(job)[0][0] == 2


def test_an_aggregated_pool_gives_one_coupon_per_customer_in_an_import():
    pool = PoolFactory(aggregated=True)
    CustomerFactory(external_id="anna"), CustomerFactory(external_id="ben")
    run_import(pool, b"code,customer\nAG-0,ben\n")
    job = run_import(pool, b"code,customer\nAG-1,anna\nAG-2,anna\nAG-3,ben\nAG-4,\n")
    assert counts(job) == dict(read=4, created=2, in_file=0, existing=0, invalid=2)
    found = dict(reasons(job))
    assert 'gets a coupon in row 2 already' in found[3] and "holds a coupon of this pool already" in found[4]


def test_only_a_capped_number_of_rows_of_each_kind_is_kept_but_the_counts_are_exact(monkeypatch):
    monkeypatch.setattr(staging, "REJECTIONS_KEPT", 3)
    monkeypatch.setattr(runner, "CHUNK", 4)
    pool = PoolFactory()
    content = ("code\n" + "\n".join(["CAP-1"] * 8 + [f"BAD\x01{n}" for n in range(5)]) + "\n").encode()
    job = run_import(pool, content)
    assert counts(job) == dict(read=13, created=1, in_file=7, existing=0, invalid=5)
    kept = list(ImportRejection.objects.filter(job=job).values_list("outcome", flat=True))
    assert kept.count(RowOutcome.DUPLICATE_IN_FILE) == 3 and kept.count(RowOutcome.INVALID) == 3
    assert job.message == "1 coupon created from 13 rows."


def test_nothing_created_says_what_was_skipped():
    pool = PoolFactory()
    run_import(PoolFactory(), b"code\nSK-1\n")
    job = run_import(pool, b"code\nSK-1\nBAD\x01\nBAD\x02\n")
    assert job.message == "Nothing was created: 1 code exists already, 2 rows are invalid."


@pytest.mark.parametrize("content, message", [
    (b"code\nONE-1\n", "1 coupon created from 1 row."),
    (b"code\nTWO-1\nTWO-2\n", "2 coupons created from 2 rows."),
    (b"code\nREP-1\nREP-1\nBAD\x01\n", "1 coupon created from 3 rows."),
])
def test_the_summary_counts_in_singular_and_plural(content, message):
    assert run_import(PoolFactory(), content).message == message


def test_nothing_created_says_each_count_in_singular_and_plural():
    run_import(PoolFactory(), b"code\nSG-1\nSG-2\n")
    single = run_import(PoolFactory(), b"code\nSG-1\nSG-1\nBAD\x01\n")
    assert single.message == "Nothing was created: 1 code exists already, 1 row repeats an earlier row, 1 row is invalid."
    several = run_import(PoolFactory(), b"code\nSG-1\nSG-2\nSG-2\nSG-2\nBAD\x01\nBAD\x02\n")
    assert several.message == "Nothing was created: 2 codes exist already, 2 rows repeat an earlier row, 2 rows are invalid."


def test_a_failure_after_coupons_were_created_interrupts_rather_than_fails(monkeypatch):
    monkeypatch.setattr(runner, "CHUNK", 2)
    pool = PoolFactory()
    job = upload(b"code\nFI-1\nFI-2\nFI-3\nFI-4\n")
    job = import_start(job=job, pool=pool, options=job_options(job), enqueue=False)

    def stop(progress_job):
        if progress_job.phase == ImportPhase.IMPORTING and progress_job.cursor >= 3:
            raise RuntimeError("stop")

    job = import_run(job_id=job.pk, progress=stop)
    assert job.status == JobStatus.FAILED and job.message.startswith("Stopped by an unexpected error: stop.")
    assert job.can_resume and not job.can_start and 0 < job.created < 4
    job = import_run(job_id=import_resume(job=job, enqueue=False).pk)
    assert (job.status, job.created) == (JobStatus.DONE, 4)


def test_a_running_import_whose_worker_stopped_can_be_resumed_without_waiting_for_the_watchdog():
    pool = PoolFactory()
    job = upload(b"code\nST-9\n")
    job = import_start(job=job, pool=pool, options=job_options(job), enqueue=False)
    ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    with pytest.raises(JobRefused):
        import_resume(job=job, enqueue=False)  # still alive
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    job = import_run(job_id=import_resume(job=job, enqueue=False).pk)
    assert job.status == JobStatus.DONE and job.created == 1


def test_drafts_are_cancelled_at_once_or_removed_with_their_file_after_a_day(settings, tmp_path,
                                                                             django_capture_on_commit_callbacks):
    from coupons.jobs.engine import job_cancel, jobs_purge

    settings.MEDIA_ROOT = str(tmp_path)
    pool = PoolFactory()
    abandoned, discarded, started = upload(b"code\nAB-1\n"), upload(b"code\nDI-1\n"), upload(b"code\nST-1\n")
    job_cancel(job=discarded)  # "Discard" on the configure page: its file goes at once
    discarded.refresh_from_db()
    assert discarded.status == JobStatus.CANCELLED and not discarded.file
    started = import_run(job_id=import_start(job=started, pool=pool, options=job_options(started), enqueue=False).pk)
    day_old = timezone.now() - timedelta(hours=25)
    ImportJob.objects.update(created_at=day_old)
    abandoned_file = tmp_path / abandoned.file.name
    assert abandoned_file.exists()
    with django_capture_on_commit_callbacks(execute=True):  # the file goes once the row is gone for good
        jobs_purge()
    assert list(ImportJob.objects.values_list("pk", flat=True)) == [started.pk]  # the import that ran stays
    assert not abandoned_file.exists() and (tmp_path / started.file.name).exists()


def test_staging_tables_of_imports_that_will_not_run_again_are_dropped():
    from coupons.jobs.engine import jobs_purge

    pool = PoolFactory()
    job = import_start(job=upload(b"code\nSG-1\n"), pool=pool, options=Options(), enqueue=False)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {staging.stage_name(job)} (row bigint)")  # left by a run that died
    jobs_purge()
    assert staging.stage_name(job) in connection.introspection.table_names()  # queued: it will use it
    ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    jobs_purge()
    assert staging.stage_name(job) not in connection.introspection.table_names()


def test_the_purge_keeps_an_api_operations_import_and_goes_on(settings, tmp_path):
    from api.models import BulkOperation
    from api.services import api_key_create
    from coupons.jobs.engine import job_cancel, jobs_purge

    settings.MEDIA_ROOT = str(tmp_path)
    pool = PoolFactory()
    kept, removed = upload(b"code\nKP-1\n"), upload(b"code\nRM-1\n")
    key, _ = api_key_create(name="Shop")
    BulkOperation.objects.create(pool=pool, api_key=key, action="add", items=[], import_job=kept)
    for job in (kept, removed):
        job_cancel(job=job)
    ImportJob.objects.update(created_at=timezone.now() - timedelta(days=2))
    jobs_purge()  # the protected one does not stop the purge of the others
    assert list(ImportJob.objects.values_list("pk", flat=True)) == [kept.pk]


def test_uploaded_files_no_import_refers_to_are_removed_once_a_day_old(settings, tmp_path):
    import os

    from coupons.jobs.engine import jobs_purge

    settings.MEDIA_ROOT = str(tmp_path)
    job = upload(b"code\nUF-1\n")
    orphan = tmp_path / "imports" / "2026" / "01" / "left-by-a-rollback.csv"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("code\n")
    old = (timezone.now() - timedelta(days=2)).timestamp()
    os.utime(orphan, (old, old))
    os.utime(tmp_path / job.file.name, (old, old))
    jobs_purge()
    assert not orphan.exists() and (tmp_path / job.file.name).exists()
