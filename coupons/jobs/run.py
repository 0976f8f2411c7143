"""One run of a job (``Run``), handed to its kind's work function: the chunk lock that
checks the run still owns the job, counters saved with a heartbeat, and the heartbeat
thread itself (``_Heartbeat``), on its own connection."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .base import Job, JobStatus
from .registry import JobKind

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = settings.JOB_HEARTBEAT_SECONDS
STUCK_AFTER = settings.JOB_STUCK_SECONDS
CHUNK_LOCK_WAIT = f"{int(settings.JOB_LOCK_WAIT_SECONDS * 1000)}ms"
S = JobStatus


HEARTBEAT_EVERY = settings.JOB_HEARTBEAT_SECONDS


STUCK_AFTER = settings.JOB_STUCK_SECONDS


CHUNK_LOCK_WAIT = f"{int(settings.JOB_LOCK_WAIT_SECONDS * 1000)}ms"


class JobStopped(Exception):
    """This run no longer owns its job (cancelled, or resumed by another run): it stops."""


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
        committed by a run that was cancelled or replaced. The chunk waits for the locks
        it needs (coupons held by a long transaction elsewhere) ``CHUNK_LOCK_WAIT`` at the
        most, then fails with a database error that the task retries: a chunk that waited
        for ever would hold the job's row, out of the watchdog's reach.
        """
        rows = queryset if queryset is not None else self.model.objects
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [CHUNK_LOCK_WAIT])
        if self._heartbeat is not None and (pending := self._heartbeat.drain()):
            # Progress the heartbeat has not written yet goes in before this chunk's own
            # counters: written later, it would undo them (a short export ended at 0).
            self.model.objects.filter(pk=self.job_id, runner=self.token).update(**pending)
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

    def touch(self) -> None:
        """The work moves on (the heartbeat keeps beating only while it does)."""
        if self._heartbeat is not None:
            self._heartbeat.touched = time.monotonic()

    @property
    def stopped(self) -> bool:
        """Seen by the heartbeat: the job was cancelled or taken over."""
        return self._heartbeat is not None and self._heartbeat.lost

    def check(self) -> None:
        self.touch()
        if self.stopped:
            raise JobStopped

    def report(self, job: Job) -> None:
        self.touch()
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
        self._beating = threading.Lock()  # held while a beat writes
        self._stop = threading.Event()
        self._last = 0.0
        self.touched = time.monotonic()  # the last sign that the work moves on
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{model._meta.model_name}-{pk}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, fields: dict) -> None:
        self.touched = time.monotonic()
        with self._lock:
            self._pending.update(fields)

    def drain(self) -> dict:
        """The progress not written yet, taken from the thread (after a write under way;
        one that waits for this very transaction's row lock is left to write)."""
        if not self._beating.acquire(timeout=2):
            return {}
        try:
            with self._lock:
                fields, self._pending = self._pending, {}
            return fields
        finally:
            self._beating.release()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
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
        with self._beating:
            self._beat_once()

    def _beat_once(self) -> None:
        if time.monotonic() - self.touched > STUCK_AFTER:
            # Alive but stuck (a lock that never comes, a storage that never answers):
            # stop vouching for it, so that the watchdog interrupts it and it can be resumed.
            log.warning("%s #%s has made no progress for %.0f s", self.model.__name__, self.pk, STUCK_AFTER)
            return
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
