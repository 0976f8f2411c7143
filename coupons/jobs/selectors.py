"""Who sees which job, and the Jobs page's list: every kind, newest first, in keyset pages.

Who may see a job is ``coupons.access.visible_jobs`` (the pools' rule; an upload not
given a pool yet, to the user who uploaded it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Q, QuerySet, Value
from django.db.models.fields import CharField
from django.http import Http404

from ..access import visible_jobs
from .base import LIVE, Job
from .registry import JobKind, kind_named, kinds


def jobs_visible(model: type[Job], *, user) -> QuerySet:
    return model.objects.filter(visible_jobs(model, user))


def job_get_visible(*, kind: str, pk: int, user) -> Job:
    """The job, or 404 for an unknown kind or id, or a job the user may not see."""
    try:
        job_kind = kind_named(kind)
    except LookupError:
        raise Http404("No such kind of job.") from None
    job = jobs_visible(job_kind.model, user=user).filter(pk=pk, **job_kind.rows).select_related("pool", "created_by").first()
    if job is None:
        raise Http404("No such job.")
    return job


@dataclass(frozen=True)
class JobFilters:
    kind: str = ""
    status: str = ""
    pool: int | None = None
    pool_text: str = ""  # part of the pool's name, or its external ID


@dataclass
class JobsPage:
    rows: list[tuple[JobKind, Job]]
    next_after: str | None  # the keyset marker of the next (older) page


def _marker(created_at: datetime, kind: str, pk: int) -> str:
    return f"{created_at.isoformat()}|{kind}|{pk}"


def _parse_marker(text: str | None):
    try:
        moment, kind, pk = (text or "").split("|")
        return datetime.fromisoformat(moment), kind, int(pk)
    except ValueError:
        return None


def jobs_page(*, user, filters: JobFilters, after: str | None = None, size: int = 50) -> JobsPage:
    """One page of every job the user may see, newest first (created time, kind, id).

    One UNION ALL of the kinds' tables, each part filtered and (on PostgreSQL) cut to
    the page size by its own index on the creation time, then the page's rows loaded
    per kind.
    """
    marker = _parse_marker(after)
    parts = []
    for kind in kinds():
        if filters.kind and kind.name != filters.kind:
            continue
        rows = jobs_visible(kind.model, user=user).filter(**kind.rows)
        if filters.status:
            rows = rows.filter(status=filters.status)
        if filters.pool:
            rows = rows.filter(pool_id=filters.pool)
        if filters.pool_text:
            rows = rows.filter(Q(pool__name__icontains=filters.pool_text) | Q(pool__external_id=filters.pool_text))
        if marker is not None:
            rows = rows.filter(_older_than(marker, kind.name))
        rows = rows.order_by("-created_at", "-pk").values_list("pk", "created_at").annotate(
            job_kind=Value(kind.name, output_field=CharField())
        )
        parts.append(rows)
    if len(parts) <= 1:
        found = list(parts[0][: size + 1]) if parts else []
    else:
        if connection.features.supports_slicing_ordering_in_compound:
            parts = [part[: size + 1] for part in parts]
        else:  # SQLite: no ORDER BY inside a compound statement
            parts = [part.order_by() for part in parts]
        union = parts[0].union(*parts[1:], all=True)
        found = list(union.order_by("-created_at", "job_kind", "-pk")[: size + 1])
    more = len(found) > size
    found = found[:size]
    loaded = {}
    for kind in kinds():
        pks = [pk for pk, _, name in found if name == kind.name]
        if pks:
            loaded[kind.name] = kind.model.objects.select_related("pool", "created_by", *kind.related).in_bulk(pks)
    # A row removed between the two reads (an upload purged) is left out.
    rows = [(kind_named(name), loaded[name][pk]) for pk, _, name in found if pk in loaded.get(name, {})]
    last = found[-1] if found else None
    return JobsPage(rows=rows, next_after=_marker(last[1], last[2], last[0]) if more and last else None)


def _older_than(marker, kind: str) -> Q:
    """Rows of ``kind`` after the marker in (created_at desc, kind asc, pk desc) order."""
    moment, marker_kind, pk = marker
    if kind > marker_kind:
        return Q(created_at__lte=moment)
    if kind == marker_kind:
        return Q(created_at__lt=moment) | Q(created_at=moment, pk__lt=pk)
    return Q(created_at__lt=moment)


def live_jobs(*, user, pool=None) -> list[tuple[JobKind, Job]]:
    """The user's visible jobs a worker has or will have (queued, running), newest first."""
    found = []
    for kind in kinds():
        rows = jobs_visible(kind.model, user=user).filter(status__in=LIVE, **kind.rows)
        if pool is not None:
            rows = rows.filter(pool=pool)
        found += [(kind, job) for job in rows.select_related("pool", "created_by").order_by("-created_at")[:20]]
    return sorted(found, key=lambda row: row[1].created_at, reverse=True)
