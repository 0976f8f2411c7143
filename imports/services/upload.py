"""An import's first steps: the upload (kept in the storage, its reading guessed), the
preview of its first rows as configured, and the start (checked, then queued for a
worker); a resume goes back to the queue through the job engine."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice

from django.conf import settings
from django.core.files.base import File
from django.db import transaction
from django.template.defaultfilters import filesizeformat

from coupons.jobs.engine import acting_user, job_queue, job_resume
from pools.models import CouponPool, PoolSource

from ..models import ImportJob, ImportPhase, JobStatus
from ..parsing import (
    ENCODINGS,
    SNIFF_BYTES,
    FileProblem,
    InvalidRow,
    Options,
    Record,
    check_head,
    head_rows,
    header_mapping,
    read_records,
    sniff,
)

IMPORT = "import"  # the import's kind of job
DRAFTS_KEPT = timedelta(hours=24)  # an upload never started is removed with its file after this


class ImportRefused(Exception):
    """A request the service cannot accept; the message says why."""


def max_file_size() -> int:
    return settings.COUPON_IMPORT_MAX_FILE_SIZE


def import_upload(*, file, name: str, user=None, pool: CouponPool | None = None) -> ImportJob:
    """Keep an uploaded file in the storage and guess how to read it.

    Refuses (``FileProblem``) a file over the size limit, an empty or binary file,
    before anything is stored.
    """
    size = file.size
    if size > max_file_size():
        raise FileProblem(
            f"The file is {filesizeformat(size)}; files can be at most {filesizeformat(max_file_size())}. "
            "Split it into smaller files."
        )
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    check_head(head)
    options = _guess_options(head)
    file.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: file.read(1024 * 1024), b""):
        digest.update(block)
    file.seek(0)
    job = ImportJob(
        pool=pool, original_name=name[:255], size=size, sha256=digest.hexdigest(),
        delimiter=options.delimiter, has_header=options.has_header, encoding=options.encoding,
        created_by=acting_user(user),
    )
    job.file.save(_storage_name(name), file, save=False)
    job.save()
    return job


def _storage_name(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.rsplit("/", 1)[-1])[:80] or "upload.csv"
    return f"{uuid.uuid4().hex[:12]}-{stem}"


def _guess_options(head: bytes) -> Options:
    """The delimiter and header from the file's start, in the first encoding that reads it."""
    problem = None
    for encoding in ENCODINGS:
        try:
            return sniff(head, encoding)
        except FileProblem as exc:
            problem = problem or exc
    raise problem


def job_options(job: ImportJob) -> Options:
    return Options(
        delimiter=job.delimiter, has_header=job.has_header, encoding=job.encoding,
        mapping={name: int(column) for name, column in job.mapping.items()} or None,
    )


@dataclass
class Preview:
    columns: list[str]  # a label per column: "1: code" (with a header) or "Column 1"
    header_mapping: dict[str, int]  # what the header names (empty without a header)
    rows: list[Record | InvalidRow]
    problem: str = ""


PREVIEW_ROWS = 8


def import_preview(job: ImportJob, options: Options) -> Preview:
    """The first rows as they will be read with ``options``, or the file's problem."""
    with job.file.open("rb") as raw:
        try:
            first = head_rows(raw, options, limit=1)
        except FileProblem as exc:
            return Preview(columns=[], header_mapping={}, rows=[], problem=str(exc))
        width = len(first[0]) if first else 1
        if options.has_header and first:
            columns = [f"{index + 1}: {cell.strip() or '(no name)'}" for index, cell in enumerate(first[0])]
            named = header_mapping(first[0])
        else:
            columns = [f"Column {index + 1}" for index in range(width)]
            named = {}
        raw.seek(0)  # the same open file, read again from the start
        try:
            rows = list(islice(read_records(raw, options), PREVIEW_ROWS))
        except FileProblem as exc:
            return Preview(columns=columns, header_mapping=named, rows=[], problem=str(exc))
    return Preview(columns=columns, header_mapping=named, rows=rows)


def earlier_import_of_same_file(job: ImportJob, among=None) -> ImportJob | None:
    """A finished import of the same content (``among``: the imports the user may see)."""
    among = ImportJob.objects.all() if among is None else among
    return (
        among.filter(sha256=job.sha256, status=JobStatus.DONE)
        .exclude(pk=job.pk).select_related("pool").order_by("-id").first()
    )


def import_start(*, job: ImportJob, pool: CouponPool, options: Options, user=None, enqueue: bool = True) -> ImportJob:
    """Check the configuration against the file's first rows and queue the import."""
    if pool.source != PoolSource.UPLOADED:
        raise ImportRefused(f"\u201c{pool.name}\u201d does not take uploaded coupons: its source is {pool.get_source_display().lower()}.")
    with job.file.open("rb") as raw:
        next(read_records(raw, options))  # FileProblem for a file that cannot be read like this
    mapping = options.mapping
    if mapping is None:  # from the header's names, else the code is the first column
        with job.file.open("rb") as raw:
            first = head_rows(raw, options, limit=1)
        mapping = header_mapping(first[0]) if options.has_header else {"code": 0}
        options = Options(delimiter=options.delimiter, has_header=options.has_header, encoding=options.encoding, mapping=mapping)
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if not job.can_start:
            raise ImportRefused(f"Import #{job.pk} has started already.")
        job.pool = pool
        job.delimiter, job.has_header, job.encoding = options.delimiter, options.has_header, options.encoding
        job.mapping = dict(options.mapping)
        job.phase = ImportPhase.READING
        job.bytes_read = job.total = job.processed = 0
        job.staged = False
        job.created_by = job.created_by or acting_user(user)
        job_queue(job, enqueue=enqueue)
        job.save()
    return job


def import_resume(*, job: ImportJob, user=None, enqueue: bool = True) -> ImportJob:
    return job_resume(job=job, user=user, enqueue=enqueue)


def local_file(path) -> File:
    """A file on this machine, for ``import_coupons``."""
    handle = open(path, "rb")  # noqa: SIM115 - closed by the caller through File
    return File(handle, name=str(path))
