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

import logging
import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from couponsite.dberrors import RETRYABLE

from .base import CANCELLABLE, Job, JobStatus
from .registry import JobKind, job_models, kind_named, kind_of, kinds

log = logging.getLogger(__name__)

RUN_TASK = "coupons.jobs.run"
STALE_AFTER = timedelta(seconds=settings.JOB_STALE_SECONDS)
HEARTBEAT_EVERY = settings.JOB_HEARTBEAT_SECONDS
RESEND_AFTER = timedelta(seconds=settings.JOB_RESEND_SECONDS)
QUEUE_UNREACHABLE = "Queued: it starts as soon as the task queue is reachable."
INTERRUPTED = "The worker stopped while working on this job; resume it to finish."
S = JobStatus


class JobRefused(Exception):
    """A start, resume or cancel that is not allowed now; the message says why."""


class JobStopped(Exception):
    """This run no longer owns its job (cancelled, or resumed by another run): it stops."""


class JobFailed(Exception):
    """Raised by a kind's work: the job cannot be done; the message says why."""


# --- submitting --------------------------------------------------------------------


def job_submitted(model: type[Job], submission: str) -> Job | None:
    """The job an earlier send of the same form created, if any."""
    if not submission:
        return None
    return model.objects.filter(submission=submission).first()


def job_create(model: type[Job], *, user=None, submission: str = "", enqueue: bool = True, **fields) -> Job:
    """Create a queued job in the caller's transaction; its task is sent on commit.

    The same ``submission`` (a form's one-time key) twice returns the first job, also
    when both arrive at once: a user's retry never makes a second job.
    """
    existing = job_submitted(model, submission)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            job = model.objects.create(
                status=S.QUEUED, dispatched_at=timezone.now(), created_by=_user(user),
                submission=submission[:64], **fields,
            )
    except IntegrityError:
        existing = job_submitted(model, submission)
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


def _user(user):
    return user if user is not None and getattr(user, "is_authenticated", False) else None


# --- running -------------------------------------------------------------------------


class Run:
    """One run of a job, handed to the kind's work function."""

    def __init__(self, kind: JobKind, job: Job, token: str, progress=None):
        self.kind, self.job_id, self.token = kind, job.pk, token
        self._progress = progress
        self._heartbeat: _Heartbeat | None = None

    @property
    def model(self) -> type[Job]:
        return self.kind.model

    def lock(self, queryset=None) -> Job:
        """Inside a chunk's transaction: the job row, locked and fresh.

        Raises ``JobStopped`` when this run no longer owns the job, so a chunk is never
        committed by a run that was cancelled or replaced.
        """
        rows = queryset if queryset is not None else self.model.objects
        job = rows.select_for_update(of=("self",)).get(pk=self.job_id)
        if job.runner != self.token or job.status != S.RUNNING:
            raise JobStopped
        return job

    def save(self, job: Job, *fields: str) -> None:
        """Save a chunk's counters (in the chunk's transaction) with a heartbeat."""
        job.heartbeat_at = timezone.now()
        job.save(update_fields=[*fields, "heartbeat_at"])
        self.report(job)

    def progress(self, **fields) -> None:
        """Counters shown while work goes on outside the job row's transaction (an
        export's COPY, which holds its connection): written by the heartbeat thread.
        Without one (inside a caller's transaction) only the kind's final save counts."""
        if self._heartbeat is not None:
            self._heartbeat.add(fields)

    @property
    def stopped(self) -> bool:
        """Seen by the heartbeat: the job was cancelled or taken over."""
        return self._heartbeat is not None and self._heartbeat.lost

    def check(self) -> None:
        if self.stopped:
            raise JobStopped

    def report(self, job: Job) -> None:
        if self._progress is not None:
            self._progress(job)

    @contextmanager
    def heartbeat(self):
        # Only on a connection of its own: SQLite has one writer, and a caller's open
        # transaction (a test) holds a row the thread could not see.
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            yield
            return
        self._heartbeat = _Heartbeat(self.model, self.job_id, self.token)
        self._heartbeat.start()
        try:
            yield
        finally:
            self._heartbeat.stop()


class _Heartbeat:
    """A thread that keeps ``heartbeat_at`` fresh while the run works, on its own connection."""

    TICK = 1.0  # progress is written this often; the heartbeat every HEARTBEAT_EVERY

    def __init__(self, model, pk: int, token: str):
        self.model, self.pk, self.token = model, pk, token
        self.lost = False
        self._pending: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{model._meta.model_name}-{pk}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, fields: dict) -> None:
        with self._lock:
            self._pending.update(fields)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        import time

        try:
            while not self._stop.wait(min(self.TICK, HEARTBEAT_EVERY)):
                if self._pending or time.monotonic() - self._last >= HEARTBEAT_EVERY:
                    self._beat()
                    self._last = time.monotonic()
            if self._pending:
                self._beat()
        finally:
            connection.close()

    def _beat(self) -> None:
        with self._lock:
            fields, self._pending = self._pending, {}
        try:
            changed = self.model.objects.filter(pk=self.pk, runner=self.token, status=S.RUNNING).update(
                heartbeat_at=timezone.now(), **fields
            )
        except Exception:
            log.warning("Heartbeat of %s #%s failed", self.model.__name__, self.pk, exc_info=True)
            with self._lock:
                self._pending = {**fields, **self._pending}
            return
        if not changed:
            self.lost = True


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
            _end(job_kind, job_id, token, S.FAILED,
                 f"Stopped by a database error after {_attempts(job_kind, job_id)} attempts: {exc}. Resume to go on.")
        else:
            _requeue(job_kind, job_id, token, retry_in, exc)
            raise
    except JobFailed as exc:
        _end(job_kind, job_id, token, S.FAILED, str(exc))
    except job_kind.failures as exc:
        _end(job_kind, job_id, token, S.FAILED, str(exc))
    except KeyboardInterrupt:
        _end(job_kind, job_id, token, S.INTERRUPTED, "Stopped from the command line; resume it to finish.")
        raise
    except Exception as exc:
        log.exception("%s #%s failed", job_kind.label, job_id)
        _end(job_kind, job_id, token, S.FAILED, f"Stopped by an unexpected error: {exc}. Resume to try again.")
    else:
        _end(job_kind, job_id, token, S.DONE, message)
    return job_kind.model.objects.get(pk=job_id)


def job_count_exactly(run: Run, rows) -> None:
    """Replace the estimate a job was submitted with by the exact count of ``rows``
    (once: a resumed job keeps the count it started with)."""
    with transaction.atomic():
        job = run.lock()
        if job.total_is_estimate:
            job.total, job.total_is_estimate = rows.order_by().count(), False
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


def _attempts(kind: JobKind, job_id: int) -> int:
    return kind.model.objects.filter(pk=job_id).values_list("attempts", flat=True).first() or 1


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
        job = kind.model.objects.select_for_update().get(pk=job.pk)
        if not (job.can_resume or _is_stale(job)):
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


def _is_stale(job: Job) -> bool:
    beat = job.heartbeat_at or job.started_at
    return job.status == S.RUNNING and (beat is None or beat < timezone.now() - STALE_AFTER)


def job_cancel(*, job: Job, user=None) -> Job:
    """Stop a job for good. A running job stops at its next chunk; what it did stays."""
    kind = kind_of(job)
    with transaction.atomic():
        job = kind.model.objects.select_for_update().get(pk=job.pk)
        if job.status not in CANCELLABLE:
            raise JobRefused(f"{kind.label} #{job.pk} is {job.get_status_display().lower()}; it cannot be cancelled.")
        was_running = job.status == S.RUNNING and not _is_stale(job)
        who = _user(user)
        job.status, job.finished_at = S.CANCELLED, timezone.now()
        job.message = f"Cancelled by {who.get_username() if who else 'the system'}" + (
            f" after {job.processed:,} of {job.total:,}; what was done stays done." if job.processed else "."
        )
        job.save(update_fields=["status", "finished_at", "message"])
    if not was_running:
        kind.cleanup(job)  # no run will notice: free what it holds now
    return job


# --- the sweeper (beat) ----------------------------------------------------------------


def jobs_mark_interrupted(*, now=None) -> int:
    """Running jobs whose worker stopped sending heartbeats (killed, machine gone)."""
    cutoff = (now or timezone.now()) - STALE_AFTER
    marked = 0
    for model in job_models():
        marked += model.objects.filter(status=S.RUNNING).filter(
            Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        ).update(status=S.INTERRUPTED, message=INTERRUPTED)
    return marked


def jobs_dispatch_pending(*, now=None, limit: int = 200) -> int:
    """Send the task of queued jobs that never got one (the broker was down), or whose
    task never started (lost with a broker restart, or the sender died before sending).

    A job waiting behind a long queue is sent again too, less often each time (after 2,
    4, 8... minutes): the extra deliveries find it taken and do nothing.
    """
    now = now or timezone.now()
    sent = 0
    for model in job_models():
        pending = model.objects.filter(status=S.QUEUED).filter(
            Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - RESEND_AFTER)
        ).order_by("id")[:limit]
        for job in pending:
            if job.dispatched_at is not None and job.dispatched_at > now - RESEND_AFTER * 2 ** min(job.dispatches, 5):
                continue
            # Taken by this sweep only (two sweeps at once send it once).
            taken = model.objects.filter(pk=job.pk, status=S.QUEUED, dispatched_at=job.dispatched_at).update(
                dispatched_at=now
            )
            if taken and _dispatch(job):
                model.objects.filter(pk=job.pk).update(dispatches=F("dispatches") + 1)
                model.objects.filter(pk=job.pk, message=QUEUE_UNREACHABLE).update(message="")
                sent += 1
    return sent


def jobs_purge() -> int:
    """Each kind's housekeeping: expired export files, abandoned drafts..."""
    return sum(kind.purge() for kind in kinds())
