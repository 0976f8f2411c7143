"""CSV imports into uploaded pools: the job row and the rows it did not import.

An ``ImportJob`` (a job of the shared lifecycle, ``coupons.jobs``) is created as a draft when a file is uploaded (the file is kept in the default
storage, MEDIA_ROOT unless configured otherwise, so a worker on another machine can
read it), configured by the manager, then run by a worker in two phases:

1. *reading*: the file is parsed and streamed into a staging table, in committed
   chunks (a run that dies here starts the phase again: nothing is imported yet);
2. *importing*: chunk by chunk of rows, the coupons are inserted and the counters,
   the rows not imported and the ``cursor`` (last row number done) commit together,
   so a killed worker is resumed from the last chunk to the same final result.
"""

from __future__ import annotations

from django.db import models

from coupons.jobs.base import Job, JobStatus
from pools.models import CouponPool


class ImportPhase(models.TextChoices):
    READING = "reading", "Reading the file"
    IMPORTING = "importing", "Importing coupons"


class RowOutcome(models.IntegerChoices):
    """Why a row was not imported (0, "pending", is only used in the staging table)."""

    INVALID = 1, "Invalid row"
    DUPLICATE_IN_FILE = 2, "Duplicate in the file"
    EXISTS = 3, "Code exists already"


class ImportJob(Job):
    """An uploaded file (a draft until it is configured and started) and its import.

    ``total`` is the file's data rows (no header, no blank lines), known once read;
    ``processed`` the rows done, of which ``created`` became coupons.
    """

    job_kind = "import"

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.DRAFT)
    pool = models.ForeignKey(CouponPool, on_delete=models.PROTECT, null=True, blank=True, related_name="imports")
    file = models.FileField(upload_to="imports/%Y/%m/", max_length=255)
    original_name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=True)
    # How to read the file (see imports.parsing.Options).
    delimiter = models.CharField(max_length=1, default=",")
    has_header = models.BooleanField(default=True)
    encoding = models.CharField(max_length=16, default="utf-8")
    mapping = models.JSONField(default=dict, blank=True)  # field name -> 0-based column

    phase = models.CharField(max_length=16, choices=ImportPhase.choices, default=ImportPhase.READING)
    bytes_read = models.PositiveBigIntegerField(default=0)
    staged = models.BooleanField(default=False)  # the whole file is in the staging table
    cursor = models.PositiveBigIntegerField(default=0)  # rows up to this row number are done
    created = models.PositiveBigIntegerField(default=0)
    duplicates_in_file = models.PositiveBigIntegerField(default=0)
    existing = models.PositiveBigIntegerField(default=0)
    invalid = models.PositiveBigIntegerField(default=0)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Import #{self.pk} ({self.original_name})"

    @property
    def skipped(self) -> int:
        return self.duplicates_in_file + self.existing + self.invalid

    @property
    def can_start(self) -> bool:
        """Configured and started now, or again after a failure that imported nothing."""
        return self.status == JobStatus.DRAFT or (self.status == JobStatus.FAILED and not self.cursor)

    def resumable(self) -> bool:
        # A failure before any row was imported is started again from its configuration.
        return self.status == JobStatus.INTERRUPTED or bool(self.cursor)

    @property
    def percent(self) -> int:
        """Reading counts for the first quarter of the bar, importing for the rest."""
        if self.status == JobStatus.DONE:
            return 100
        if self.phase == ImportPhase.READING:
            return int(25 * self.bytes_read / self.size) if self.size else 0
        return 25 + (int(75 * self.processed / self.total) if self.total else 0)


class ImportRejection(models.Model):
    """A row of the file that was not imported, with its row number and reason."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="rejections", db_index=False)
    row = models.PositiveBigIntegerField()
    outcome = models.PositiveSmallIntegerField(choices=RowOutcome.choices)
    reason = models.TextField()
    # As read from the file (an invalid row keeps its raw cells, cut to 1,000 characters).
    code = models.TextField(blank=True)
    customer = models.TextField(blank=True)
    expires_at = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["job", "row"], name="rejection_job_row")]
