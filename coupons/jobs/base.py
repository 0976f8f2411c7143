"""What every background job shares: one status set and the columns of its lifecycle.

Each kind of job (a bulk action, a pool edit's propagation, a generation batch, an
import, an API bulk operation, an export) is a concrete model over ``Job`` that adds
only the columns it needs; ``coupons.jobs.engine`` runs all of them the same way.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    DRAFT = "draft", "Waiting for configuration"  # an upload not started yet (imports)
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    INTERRUPTED = "interrupted", "Interrupted"
    FAILED = "failed", "Failed"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


LIVE = (JobStatus.QUEUED, JobStatus.RUNNING)  # a worker has it, or will
RESUMABLE = (JobStatus.INTERRUPTED, JobStatus.FAILED)
CANCELLABLE = (JobStatus.DRAFT, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.INTERRUPTED, JobStatus.FAILED)
FINAL = (JobStatus.DONE, JobStatus.CANCELLED)


class Job(models.Model):
    """The lifecycle of one piece of background work (Saleor's ``core.models.Job``).

    ``runner`` is the token of the run that owns the job: a run takes a queued job by
    setting it, and every chunk it commits checks it, so a second delivery of the same
    task, or an old run that was given up for dead, can never work on it too.
    ``dispatched_at`` is when its task was sent (NULL: not sent yet, e.g. the broker was
    unreachable); the sweeper sends again what was never picked up.
    """

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    message = models.TextField(blank=True)
    total = models.PositiveBigIntegerField(default=0)
    total_is_estimate = models.BooleanField(default=False)  # until the worker has counted
    processed = models.PositiveBigIntegerField(default=0)
    runner = models.CharField(max_length=32, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0)  # runs started
    dispatches = models.PositiveIntegerField(default=0)  # tasks sent again by the sweeper
    # The submitting form's one-time key: the same submission sent twice is one job.
    submission = models.CharField(max_length=64, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # Set on the instance (never stored) when its task could not be sent at submission.
    dispatch_failed = False

    class Meta:
        abstract = True
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="%(app_label)s_%(class)s_watch"),
            models.Index(fields=["status", "dispatched_at"], name="%(app_label)s_%(class)s_sweep"),
            models.Index(fields=["-created_at"], name="%(app_label)s_%(class)s_new"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["submission"], condition=~Q(submission=""), name="%(app_label)s_%(class)s_submission"
            ),
        ]

    # The registered kind (coupons.jobs.registry); a table holding several kinds says
    # which one a row is.
    job_kind = ""

    @property
    def kind_name(self) -> str:
        return self.job_kind

    @property
    def is_live(self) -> bool:
        return self.status in LIVE

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def percent(self) -> int:
        if self.status == JobStatus.DONE:
            return 100
        return min(100, int(self.processed * 100 / self.total)) if self.total else 0

    def resumable(self) -> bool:
        """Whether this kind can go on from where this job stopped (see ``can_resume``)."""
        return True

    @property
    def can_resume(self) -> bool:
        return self.status in RESUMABLE and self.resumable()

    @property
    def can_cancel(self) -> bool:
        return self.status in CANCELLABLE
