"""The one lifecycle of every background job: queue, run, heartbeat, finish, resume, cancel.

- **Submitting** writes the job row (queued, with the time its task is sent) in the
  caller's transaction; the task is sent once that commits. If the broker cannot be
  reached, the row says so and the sweeper sends it later: a job is never lost and a
  submission never fails because of the queue.
- **Running**: a run takes a queued job by writing its own ``runner`` token in one
  conditional UPDATE, so of two deliveries of the same task only one works. Work is
  done in chunks that lock the job row and check the token (``Run.lock``); a cancelled
  job, or one resumed elsewhere, stops at its next chunk. A thread sends heartbeats.
- **The sweeper** (beat): running jobs without a heartbeat for ``STALE_AFTER`` are
  interrupted; queued jobs whose task was never sent, or never started, are sent again.
- **Resume** queues an interrupted or failed job again; it goes on from its last
  committed chunk. **Cancel** stops a job for good; what it did stays done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from contextlib import contextmanager
from datetime import timedelta

import psycopg
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from couponsite.dberrors import RETRYABLE
from couponsite.wording import counted

from .base import CANCELLABLE, Job, JobStatus
from .registry import JobKind, job_models, kind_named, kind_of, kinds
from .run import JobStopped, Run

log = logging.getLogger(__name__)

RUN_TASK = "coupons.jobs.run"
STALE_AFTER = timedelta(seconds=settings.JOB_STALE_SECONDS)
RESEND_AFTER = timedelta(seconds=settings.JOB_RESEND_SECONDS)
QUEUE_UNREACHABLE = "Queued: it starts as soon as the task queue is reachable."
INTERRUPTED = "The worker stopped while working on this job; Resume goes on from there."
S = JobStatus


class JobRefused(Exception):
    """A start, resume or cancel that is not allowed now; the message says why."""


class JobFailed(Exception):
    """Raised by a kind's work: the job cannot be done; the message says why."""


# --- submitting --------------------------------------------------------------------


def _submission_key(submission: str, fields: dict) -> str:
    """The form's one-time key together with what it asks for: the same form sent again
    is the same job, but the same page sent back with another choice is a new one. An
    estimated total is not part of it (the estimate moves between two sends)."""
    if not submission:
        return ""
    if fields.get("total_is_estimate"):
        fields = {name: value for name, value in fields.items() if name not in ("total", "total_is_estimate")}
    shape = json.dumps({name: getattr(value, "pk", value) for name, value in fields.items()}, sort_keys=True, default=str)
    return hashlib.sha256(f"{submission}\n{shape}".encode()).hexdigest()


def job_submitted(model: type[Job], submission: str, **fields) -> Job | None:
    """The job an earlier send of the same form (asking for ``fields``) created, if any."""
    key = _submission_key(submission, fields)
    return model.objects.filter(submission=key).first() if key else None


def job_create(model: type[Job], *, user=None, submission: str = "", enqueue: bool = True, **fields) -> Job:
    """Create a queued job in the caller's transaction; its task is sent on commit.

    The same ``submission`` (a form's one-time key) with the same ``fields`` twice returns
    the first job, also when both arrive at once: a user's retry never makes a second job.
    """
    key = _submission_key(submission, fields)
    existing = model.objects.filter(submission=key).first() if key else None
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            job = model.objects.create(
                status=S.QUEUED, dispatched_at=timezone.now(), created_by=acting_user(user), submission=key, **fields,
            )
    except IntegrityError:
        existing = model.objects.filter(submission=key).first() if key else None
        if existing is None:
            raise
        return existing
    if enqueue:
        job_enqueue(job)
    return job


def job_queue(job: Job, *, enqueue: bool = True) -> None:
    """Mark a locked job row as queued (a draft started, a job resumed); the caller saves."""
    job.status, job.message, job.runner = S.QUEUED, "", ""
    job.finished_at = None
    job.dispatched_at = timezone.now()
    if enqueue:
        job_enqueue(job)


def job_enqueue(job: Job) -> None:
    """Send the job's task once the current transaction commits."""
    transaction.on_commit(lambda: _dispatch(job))


def _dispatch(job: Job, *, countdown: float | None = None) -> bool:
    """Send the task; if the broker is unreachable, say so on the row (never raise)."""
    try:
        current_app.send_task(RUN_TASK, args=[job.kind_name, job.pk], countdown=countdown)
    except Exception:  # kombu's OperationalError, a socket error...: the sweeper sends it later
        log.warning("Could not send the task of %s #%s; the sweeper will send it.", job.kind_name, job.pk, exc_info=True)
        job.dispatch_failed = True
        type(job).objects.filter(pk=job.pk, status=S.QUEUED).update(dispatched_at=None, message=QUEUE_UNREACHABLE)
        return False
    return True


def acting_user(user):
    """The user to record as a job's author: None for the anonymous and the system."""
    return user if user is not None and getattr(user, "is_authenticated", False) else None


# --- running -------------------------------------------------------------------------


def job_execute(*, kind: str, job_id: int, runner: str | None = None, retry_in: float | None = None,
                progress=None) -> Job | None:
    """Run a queued job here, to its end; None if it is not queued (another delivery has it).

    ``runner``: a retry of a run passes its token, so it may take back a job it left
    running when the database went away. ``retry_in``: seconds until the task retries
    after a database error (the job waits queued), or None on the last attempt (the
    job fails, resumable).
    """
    job_kind = kind_named(kind)
    token = runner or uuid.uuid4().hex
    job = _claim(job_kind, job_id, token)
    if job is None:
        return None
    run = Run(job_kind, job, token, progress)
    try:
        with run.heartbeat():
            message = job_kind.run(job, run)
    except JobStopped:
        _after_stop(job_kind, job_id)
    except RETRYABLE as exc:
        if retry_in is None:
            _fail_for_good(job_kind, job_id, token, exc)
        else:
            _requeue(job_kind, job_id, token, retry_in, exc)
            raise
    except JobFailed as exc:
        _end(job_kind, job_id, token, S.FAILED, str(exc))
    except job_kind.failures as exc:
        _end(job_kind, job_id, token, S.FAILED, str(exc))
    except KeyboardInterrupt:
        _end(job_kind, job_id, token, S.INTERRUPTED, "Stopped from the command line; Resume goes on from there.")
        raise
    except Exception as exc:
        log.exception("%s #%s failed", job_kind.label, job_id)
        resumable = job_kind.model.objects.get(pk=job_id).resumable()
        _end(job_kind, job_id, token, S.FAILED,
             f"Stopped by an unexpected error: {exc}." + (" Resume to try again." if resumable else " Start it again."))
    else:
        _end(job_kind, job_id, token, S.DONE, message)
    return job_kind.model.objects.get(pk=job_id)


def job_count_exactly(run: Run, rows) -> None:
    """Replace the estimate a job was submitted with by the exact count of ``rows``
    (once: a resumed job keeps the count it started with)."""
    if not run.model.objects.filter(pk=run.job_id, total_is_estimate=True).exists():
        return
    total = rows.order_by().count()  # not under the row lock: on 100 million coupons it takes a while
    with transaction.atomic():
        job = run.lock()
        if job.total_is_estimate:
            job.total, job.total_is_estimate = total, False
            run.save(job, "total", "total_is_estimate")


def job_run_here(job: Job, *, progress=None) -> Job:
    """Run a job in this process (a management command); the job as it ended."""
    done = job_execute(kind=job.kind_name, job_id=job.pk, progress=progress)
    if done is None:
        raise JobRefused(f"{kind_of(job).label} #{job.pk} is not queued: it is {type(job).objects.get(pk=job.pk).get_status_display().lower()}.")
    return done


def _claim(kind: JobKind, job_id: int, token: str) -> Job | None:
    now = timezone.now()
    taken = kind.model.objects.filter(pk=job_id).filter(Q(status=S.QUEUED) | Q(status=S.RUNNING, runner=token)).update(
        status=S.RUNNING, runner=token, message="", started_at=Coalesce(F("started_at"), now),
        heartbeat_at=now, attempts=F("attempts") + 1,
    )
    if not taken:
        return None
    return kind.model.objects.get(pk=job_id)


def _end(kind: JobKind, job_id: int, token: str, status: str, message: str) -> None:
    now = timezone.now()
    fields = {"status": status, "message": message[:4000], "heartbeat_at": now}
    if status != S.INTERRUPTED:
        fields["finished_at"] = now
    if status == S.DONE:
        fields["total_is_estimate"] = False
    kind.model.objects.filter(pk=job_id, runner=token, status=S.RUNNING).update(**fields)


def _requeue(kind: JobKind, job_id: int, token: str, retry_in: float, exc: Exception) -> None:
    try:
        kind.model.objects.filter(pk=job_id, runner=token, status=S.RUNNING).update(
            status=S.QUEUED, message=f"Retrying after a database error: {exc}"[:4000],
            dispatched_at=timezone.now() + timedelta(seconds=retry_in),
        )
    except RETRYABLE:
        pass  # the database is gone: the retry takes the job back with the same token


def _fail_for_good(kind: JobKind, job_id: int, token: str, exc: Exception) -> None:
    """The last attempt met a database error too: failed, saying how to go on."""
    job = kind.model.objects.get(pk=job_id)
    attempts = counted(job.attempts, "attempt", "attempts")
    hint = " Resume to go on." if job.resumable() else " Start it again."
    _end(kind, job_id, token, S.FAILED, f"Stopped by a database error after {attempts}: {exc}.{hint}")


def _after_stop(kind: JobKind, job_id: int) -> None:
    job = kind.model.objects.get(pk=job_id)
    if job.status == S.CANCELLED:
        kind.cleanup(job)


def retry_delay(retries: int) -> float:
    """Seconds before the next attempt after a database error: 5, 10, 20, 40, 80..."""
    return min(300.0, settings.JOB_RETRY_DELAY_SECONDS * 2**retries)


# --- resume and cancel ---------------------------------------------------------------


def job_resume(*, job: Job, user=None, enqueue: bool = True) -> Job:
    """Queue an interrupted or failed job again (or a running one whose worker is gone)."""
    kind = kind_of(job)
    with transaction.atomic():
        job = _locked(kind, job.pk)
        if not (job.can_resume or job_is_stale(job)):
            raise JobRefused(_cannot_resume(job))
        kind.before_resume(job)
        job_queue(job, enqueue=enqueue)
        job.resumed_at = timezone.now()
        job.save(update_fields=["status", "message", "runner", "finished_at", "dispatched_at", "resumed_at"])
    return job


def _cannot_resume(job: Job) -> str:
    if job.status in (S.INTERRUPTED, S.FAILED):
        return f"{kind_of(job).label} #{job.pk} cannot go on from where it stopped."
    return f"Only an interrupted or failed job can be resumed; {kind_of(job).label.lower()} #{job.pk} is {job.get_status_display().lower()}."


def job_is_stale(job: Job) -> bool:
    """Running, with a heartbeat too old for a live worker."""
    beat = job.heartbeat_at or job.started_at
    return job.status == S.RUNNING and (beat is None or beat < timezone.now() - STALE_AFTER)


def job_cancel(*, job: Job, user=None) -> Job:
    """Stop a job for good. A running job stops at its next chunk; what it did stays."""
    kind = kind_of(job)
    with transaction.atomic():
        job = _locked(kind, job.pk)
        if job.status not in CANCELLABLE:
            raise JobRefused(f"{kind.label} #{job.pk} is {job.get_status_display().lower()}; it cannot be cancelled.")
        was_running = job.status == S.RUNNING and not job_is_stale(job)
        who = acting_user(user)
        job.status, job.finished_at = S.CANCELLED, timezone.now()
        job.message = f"Cancelled by {who.get_username() if who else 'the system'}" + (
            f" after {job.processed:,} of {job.total:,}; what was done stays done." if job.processed else "."
        )
        job.save(update_fields=["status", "finished_at", "message"])
    if not was_running:
        kind.cleanup(job)  # no run will notice: free what it holds now
    kind.on_cancel(job, who)
    return job


ROW_LOCK_WAIT = "5s"  # a chunk holds its job's row this long at the most, in practice


def _locked(kind: JobKind, pk: int) -> Job:
    """The job row, locked, for a page's Resume or Cancel: waiting for the chunk under
    way, but not for ever (a worker machine gone mid-chunk keeps its lock for a while)."""
    try:
        with lock_timeout(ROW_LOCK_WAIT):
            return kind.model.objects.select_for_update().get(pk=pk)
    except OperationalError as exc:
        if is_lock_timeout(exc):
            raise JobRefused(f"{kind.label} #{pk} is busy with a chunk of its work; try again in a moment.") from exc
        raise


@contextmanager
def lock_timeout(wait: str):
    """Inside a transaction on PostgreSQL: row and table locks are waited for ``wait`` at
    the most (LockNotAvailable after that); the caller's own setting comes back after."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)", [wait])
        before = cursor.fetchone()[0]
    yield
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [before])


def is_lock_timeout(exc: BaseException) -> bool:
    """A lock waited for too long: PostgreSQL's lock_timeout, or SQLite's busy timeout."""
    cause = exc.__cause__ if isinstance(exc, OperationalError) else exc
    return isinstance(cause, psycopg.errors.LockNotAvailable) or "database is locked" in str(exc)


# --- the sweeper (beat) ----------------------------------------------------------------


def jobs_mark_interrupted(*, now=None) -> int:
    """Running jobs whose worker stopped sending heartbeats (killed, machine gone)."""
    cutoff = (now or timezone.now()) - STALE_AFTER
    marked = 0
    for model in job_models():
        with transaction.atomic():
            # A row locked by a chunk under way has a live worker (or one the database
            # has not given up yet): skipped, so the sweep never waits for it.
            stale = model.objects.select_for_update(skip_locked=True).filter(status=S.RUNNING).filter(
                Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
            ).values_list("pk", flat=True)[:1000]
            marked += model.objects.filter(pk__in=list(stale)).update(status=S.INTERRUPTED, message=INTERRUPTED)
    return marked


def jobs_dispatch_pending(*, now=None, limit: int = 200) -> int:
    """Send the task of queued jobs that never got one (the broker was down), or whose
    task never started (lost with a broker restart, or the sender died before sending).

    A job waiting behind a long queue is sent again too, less often each time (after 2,
    4, 8... minutes: ``dispatched_at`` is moved on accordingly, so the rule stays one
    comparison); the extra deliveries find it taken and do nothing. Never-sent jobs go first.
    """
    now = now or timezone.now()
    sent = 0
    for model in job_models():
        pending = model.objects.filter(status=S.QUEUED).filter(
            Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - RESEND_AFTER)
        ).order_by(F("dispatched_at").asc(nulls_first=True), "id")[:limit]
        for job in pending:
            wait = RESEND_AFTER * (2 ** min(job.dispatches + 1, 5) - 1)  # due again after RESEND_AFTER * 2**n
            # Taken by this sweep only (two sweeps at once send it once).
            taken = model.objects.filter(pk=job.pk, status=S.QUEUED, dispatched_at=job.dispatched_at).update(
                dispatched_at=now + wait
            )
            if taken and _dispatch(job):
                model.objects.filter(pk=job.pk).update(dispatches=F("dispatches") + 1)
                model.objects.filter(pk=job.pk, message=QUEUE_UNREACHABLE).update(message="")
                sent += 1
    return sent


def jobs_purge() -> int:
    """Each kind's housekeeping: expired export files, abandoned drafts..."""
    return sum(kind.purge() for kind in kinds())
