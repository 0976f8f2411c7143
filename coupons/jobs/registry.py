"""The kinds of background job, registered by the modules that do their work.

The engine, the sweeper, the watchdog and the Jobs page know a kind only through its
``JobKind``: its model, how to run it, which errors fail it, and the few hooks where a
kind differs (resuming a failed generation takes its capacity again, cancelling an
import drops its staging table...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .base import Job


def _nothing(job) -> None:
    return None


@dataclass(frozen=True)
class JobKind:
    name: str  # stored in task messages and the Jobs page's filter: never rename
    label: str  # "Bulk action"
    model: type[Job]
    # Does the work as the run ``run`` (engine.Run); returns the message of a done job.
    run: Callable[[Job, object], str]
    # "Bulk action: invalidate" - what the Jobs page calls one job of this kind.
    describe: Callable[[Job], str] = lambda job: ""
    # Errors that mean the job cannot be done as asked: failed, with the error's text.
    failures: tuple[type[Exception], ...] = ()
    # Rows of ``model`` that are of this kind, when one table holds several kinds.
    rows: dict = field(default_factory=dict)
    # Under the job's row lock, before it is queued again; raises JobRefused to refuse.
    before_resume: Callable[[Job], None] = _nothing
    # Frees what a cancelled job holds (files, staging tables), once no run works on it;
    # may run more than once.
    cleanup: Callable[[Job], None] = _nothing
    # After every cancel, the run still working or not, with who cancelled (an API bulk
    # add cancels its import).
    on_cancel: Callable[[Job, object], None] = lambda job, user: None
    # Related rows the Jobs page shows (besides the pool and the author).
    related: tuple[str, ...] = ()
    # Where the job's result is shown, or None.
    result_url: Callable[[Job], str | None] = _nothing
    # The permission to resume and cancel jobs of this kind ("": whoever may see the job).
    permission: str = "coupons.change_coupon"
    # What ``total`` and ``processed`` count: the noun for one and for several ("1 row",
    # "2 rows"; couponsite.wording.counted, the job_unit filter).
    unit: tuple[str, str] = ("coupon", "coupons")
    # Periodic housekeeping of this kind (expired files, abandoned drafts); returns a count.
    purge: Callable[[], int] = lambda: 0


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    existing = _KINDS.get(kind.name)
    if existing is not None and existing.model is not kind.model:
        raise ValueError(f"Two job kinds are named {kind.name!r}.")
    _KINDS[kind.name] = kind
    return kind


def kind_named(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise LookupError(f"No job kind is named {name!r}.") from None


def kind_of(job: Job) -> JobKind:
    return kind_named(job.kind_name)


def kinds() -> list[JobKind]:
    return list(_KINDS.values())


def job_models() -> list[type[Job]]:
    """Every table that holds jobs, once each."""
    return list(dict.fromkeys(kind.model for kind in _KINDS.values()))
