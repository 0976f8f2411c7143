"""Bulk actions on many coupons: set-based, chunked, counted.

The actions offered in bulk are those of the registry (``coupons.actions``) marked
so; ``BULK_ACTIONS`` adds each one's set-based UPDATE. ``bulk_apply`` walks the coupons
the view's own queryset selects (never ids trusted from a form) in id-ordered chunks: it
locks a chunk in primary-key order, splits it by status into allowed and skipped,
changes the allowed rows with one UPDATE and writes their events with one INSERT ...
SELECT.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Greatest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import ngettext

from couponsite.counting import EXACT_COUNT_LIMIT, estimate_counts
from couponsite.wording import counted
from pools.models import CouponTerms, CouponType

from . import rows as row_sql
from .actions import CouponAction, bulk_actions
from .filters import CouponFilter
from .jobs.base import LIVE
from .jobs.engine import Run, job_count_exactly, job_create
from .jobs.registry import JobKind, register
from .models import Coupon, CouponJob, CouponStatus, CustomerEvent
from .services import Actor, CouponActionError

S = CouponStatus
CHUNK = settings.COUPON_BULK_CHUNK
ASYNC_THRESHOLD = 10_000


@dataclass
class BulkResult:
    applied: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count

    def add(self, applied: int, skipped: Counter) -> None:
        self.applied += applied
        self.skipped.update(skipped)

    def message(self, action: BulkAction) -> str:
        text = f"{action.past.capitalize()} {counted(self.applied, 'coupon', 'coupons')}."
        if self.skipped:
            reasons = "; ".join(f"{count:,} {reason}" for reason, count in self.skipped.most_common())
            text += f" Skipped {sum(self.skipped.values()):,}: {reasons}."
        return text


@dataclass
class BulkPreview:
    """What a bulk action would do to a selection, counted before the confirmation."""

    applied: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    estimated: bool = False  # some counts are the planner's estimates

    @property
    def total(self) -> int:
        return self.applied + sum(self.skipped.values())

    @property
    def background(self) -> bool:
        return runs_in_background(self.total)

    def _count(self, count: int) -> str:
        return f"about {count:,}" if self.estimated else f"{count:,}"

    def sentences(self, action: BulkAction) -> list[str]:
        """"1,204 coupons will be invalidated." "37 are skipped: already redeemed." """
        skipped = sum(self.skipped.values())
        if self.applied:
            text = ngettext("%(count)s coupon will be %(past)s.", "%(count)s coupons will be %(past)s.", self.applied)
            lines = [text % {"count": self._count(self.applied), "past": action.past}]
        else:
            lines = [f"No selected coupon can be {action.past}."]
        if skipped:
            reasons = ", ".join(f"{self._count(count)} {reason}" for reason, count in self.skipped.most_common())
            if len(self.skipped) == 1:
                reasons = next(iter(self.skipped))  # "37 are skipped: already redeemed."
            text = ngettext("%(count)s is skipped: %(reasons)s.", "%(count)s are skipped: %(reasons)s.", skipped)
            lines.append(text % {"count": self._count(skipped), "reasons": reasons})
        elif self.applied:
            lines.append("None is skipped.")
        if self.background and self.applied:
            lines.append("They are changed in the background; the list refreshes when they are done.")
        return [line[0].upper() + line[1:] for line in lines]


def runs_in_background(total: int) -> bool:
    """Whether a bulk action on ``total`` coupons runs as a job: the dialog's preview and
    the submit decide with this, on the same count (``bulk_preview``)."""
    return total > ASYNC_THRESHOLD


PREVIEW_LIMIT = EXACT_COUNT_LIMIT  # rows of a selection read at most, to count it exactly
_PREVIEW_SQL = ("SELECT sel.status, sel.terms_id, count(*) FROM ({selection}{limit}) AS sel "
                "GROUP BY sel.status, sel.terms_id")


def bulk_preview(*, action: BulkAction, queryset: QuerySet, pool_id: int) -> BulkPreview:
    """How many coupons of ``queryset`` the action's rule allows, and how many it skips
    and why (gift cards by their own rule, ``BulkAction.applies``, as in ``execute_chunk``).

    One ``GROUP BY status`` over at most ``PREVIEW_LIMIT + 1`` rows of the selection:
    the LIMIT bounds the rows counted, not the rows a filter the indexes do not serve may
    have to scan to find them (a rare selection in a huge pool still reads its index
    range). Only a selection past the limit gets the planner's estimates (one EXPLAIN,
    no row read); where there is no planner (SQLite, the embedded default) it is counted.
    """
    gift_terms = gift_card_terms_ids(pool_id)
    counts = _bounded_counts(queryset, gift_terms, PREVIEW_LIMIT)
    estimated = sum(counts.values()) > PREVIEW_LIMIT
    if estimated and connection.vendor != "postgresql":
        counts, estimated = _bounded_counts(queryset, gift_terms, limit=None), False
    elif estimated:
        counts = _estimated_counts(queryset, gift_terms, pool_id, counts)
    preview = BulkPreview(estimated=estimated)
    for (status, is_gift), count in counts.items():
        if action.applies(status, is_gift):
            preview.applied += count
        else:
            preview.skipped[_skip_reason(status)] += count
    return preview


def _bounded_counts(queryset: QuerySet, gift_terms: set[int], limit: int | None) -> Counter:
    """``(status, is_gift) -> count`` over the first ``limit + 1`` rows met (all: None)."""
    try:
        sql, params = queryset.order_by().values_list("status", "terms_id").query.sql_with_params()
    except EmptyResultSet:
        return Counter()
    counts = Counter()
    bound = [] if limit is None else [limit + 1]
    with connection.cursor() as cursor:
        cursor.execute(_PREVIEW_SQL.format(selection=sql, limit="" if limit is None else " LIMIT %s"), [*params, *bound])
        for status, terms_id, count in cursor.fetchall():
            counts[status, terms_id in gift_terms] += count
    return counts


def _estimated_counts(queryset: QuerySet, gift_terms: set[int], pool_id: int, bounded: Counter) -> Counter:
    """The planner's estimate of each (status, gift card or not), never below what the
    bounded read met; a pair the read did not meet counts only when the planner expects
    more than 0.1% of the selection (its estimate of a missing value is a guess, not 0)."""
    if not gift_terms:
        parts = [(queryset, False)]
    elif not CouponTerms.objects.filter(pool_id=pool_id).exclude(pk__in=gift_terms).exists():
        parts = [(queryset, True)]
    else:
        parts = [(queryset.exclude(terms_id__in=gift_terms), False), (queryset.filter(terms_id__in=gift_terms), True)]
    keys = [(int(status), gift) for _, gift in parts for status in CouponStatus]
    estimates = estimate_counts([coupons.filter(status=status) for coupons, _ in parts for status in CouponStatus])
    floor = sum(e or 0 for e in estimates) // 1000
    counts = Counter()
    for key, estimate in zip(keys, estimates, strict=True):
        if bounded[key] or (estimate or 0) > floor:
            counts[key] = max(estimate or 0, bounded[key])
    return counts


def _skip_reason(status: int) -> str:
    return f"already {S(status).label.lower()}" if status != S.UNASSIGNED else "not claimed yet"


class BulkAction:
    """A registry action (``coupons.actions``) applied to many coupons: its allowed rows
    changed by one set-based UPDATE (``update``), gift cards one by one through the
    action's own service."""

    def __init__(self, action: CouponAction, update: Callable[[QuerySet], int]):
        self.action, self.update = action, update

    name = property(lambda self: self.action.name)
    label = property(lambda self: self.action.bulk_label)  # the button: "Invalidate selected"
    past = property(lambda self: self.action.past)
    event = property(lambda self: self.action.event)

    def allowed_statuses(self, gift_card: bool) -> frozenset[int]:
        return self.action.rule_for(gift_card).allowed

    def applies(self, status: int, gift_card: bool) -> bool:
        """Whether the action changes a coupon of ``status`` (a gift card's own rule):
        the preview counts and ``execute_chunk`` splits by this."""
        return status in self.allowed_statuses(gift_card)

    def execute_chunk(self, ids: list[int], *, actor: Actor, gift_terms: set[int]) -> tuple[int, Counter]:
        now = timezone.now()
        rows = list(
            Coupon.objects.filter(id__in=ids).order_by("id").select_for_update().values_list("id", "status", "terms_id")
        )
        allowed, gift, skipped = [], [], Counter()
        for coupon_id, status, terms_id in rows:
            is_gift = terms_id in gift_terms
            if self.applies(status, is_gift):
                (gift if is_gift and self.action.gift_card_rule else allowed).append(coupon_id)
            else:
                skipped[_skip_reason(status)] += 1
        applied = 0
        if allowed:
            if self.event:
                events_for_coupons(allowed, action=self.event, actor=actor, now=now)
            applied += self.update(Coupon.objects.filter(id__in=allowed))
        for coupon_id in gift:  # a gift card's amounts: its whole balance, its newest redemption
            try:
                self.action.service(coupon=Coupon(pk=coupon_id), actor=actor)
                applied += 1
            except CouponActionError as exc:
                skipped[str(exc).rstrip(".")] += 1
        return applied, skipped


# Each bulk action's set-based change of the rows its rule allows.
_UPDATES: dict[str, Callable[[QuerySet], int]] = {
    "invalidate": lambda coupons: coupons.update(status=S.INVALID),
    "unassign": lambda coupons: coupons.update(
        status=S.UNASSIGNED, customer=None, claimed_at=None, expires_at=None, claims=0),
    "redeem": lambda coupons: coupons.update(status=S.REDEEMED, usages=F("usages") + 1),
    "unredeem": lambda coupons: coupons.update(status=S.CLAIMED, usages=Greatest(F("usages") - 1, Value(0))),
}
BULK_ACTIONS: dict[str, BulkAction] = {action.name: BulkAction(action, _UPDATES[action.name]) for action in bulk_actions()}


def gift_card_terms_ids(pool_id: int) -> set[int]:
    return set(
        CouponTerms.objects.filter(pool_id=pool_id, effective__coupon_type=CouponType.GIFT_CARD).values_list("pk", flat=True)
    )


def bulk_apply(*, action: BulkAction, queryset: QuerySet, pool_id: int, actor: Actor, run: Run | None = None) -> BulkResult:
    """Apply ``action`` to every coupon of ``queryset``, newest first, chunk by chunk.

    As a job's ``run``, each chunk commits with the job's cursor and counters, so a
    resumed job goes on after the last committed chunk: no coupon is done twice.
    """
    result = BulkResult()
    gift_terms = gift_card_terms_ids(pool_id)
    cursor = None
    ordered = queryset.order_by("-id")
    while True:
        with transaction.atomic():
            if run is not None:
                job = run.lock()
                cursor = job.cursor
            page = ordered.filter(id__lt=cursor) if cursor is not None else ordered
            ids = list(page.values_list("id", flat=True)[:CHUNK])
            if not ids:
                return result
            applied, skipped = action.execute_chunk(ids, actor=actor, gift_terms=gift_terms)
            cursor = ids[-1]
            if run is not None:
                job.processed += len(ids)
                job.applied += applied
                job.cursor = cursor
                for reason, count in skipped.items():
                    job.skipped[reason] = job.skipped.get(reason, 0) + count
                run.save(job, "processed", "applied", "cursor", "skipped")
        result.add(applied, skipped)


def bulk_submit(*, pool, action: BulkAction, filters: dict, ids: list[int] | None, user, total: int,
                submission: str = "") -> CouponJob:
    """Queue a bulk action for a worker; the same action on the same selection while one
    is still queued or running is that job, not a second one."""
    params = {"action": action.name, "filters": filters, "ids": ids, "user_id": getattr(user, "pk", None)}
    running = CouponJob.objects.filter(kind=CouponJob.Kind.BULK_ACTION, pool=pool, status__in=LIVE, params=params).first()
    if running is not None:
        return running
    return job_create(
        CouponJob, kind=CouponJob.Kind.BULK_ACTION, pool=pool, params=params, total=total, total_is_estimate=True,
        user=user, submission=submission,
    )


def job_selection(job: CouponJob) -> QuerySet:
    """The coupons a bulk action job works on, selected again from its saved filters."""
    params = job.params
    queryset = CouponFilter(params.get("filters", {}), queryset=Coupon.objects.filter(pool=job.pool)).qs
    if params.get("ids"):
        queryset = queryset.filter(id__in=params["ids"])
    return queryset


def bulk_run_job(job: CouponJob, run: Run) -> str:
    """Run a bulk action job; the queryset is rebuilt from the saved filters."""
    action = BULK_ACTIONS[job.params["action"]]
    user = get_user_model().objects.filter(pk=job.params.get("user_id")).first()
    actor = Actor.of_user(user) if user else Actor.system()
    queryset = job_selection(job)
    job_count_exactly(run, queryset)
    bulk_apply(action=action, queryset=queryset, pool_id=job.pool_id, actor=actor, run=run)
    job.refresh_from_db()
    return BulkResult(applied=job.applied, skipped=Counter(job.skipped)).message(action)


def _describe(job: CouponJob) -> str:
    action = BULK_ACTIONS.get(job.params.get("action", ""))
    verb = action.label.replace(" selected", "") if action else "Bulk action"
    return f"{verb} {'about ' if job.total_is_estimate else ''}{counted(job.total, 'coupon', 'coupons')}"


register(JobKind(
    name=CouponJob.Kind.BULK_ACTION, label="Bulk action", model=CouponJob, run=bulk_run_job,
    rows={"kind": CouponJob.Kind.BULK_ACTION}, describe=_describe,
    result_url=lambda job: reverse("coupons:pool_coupons", args=[job.pool_id]),
))


def events_for_coupons(ids: list[int], *, action: str, actor: Actor, now) -> None:
    """One event per coupon of ``ids`` that has a customer, written set-based."""
    fields = actor.event_fields()
    user_id = fields["actor_user"].pk if fields["actor_user"] is not None else None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"{row_sql.EVENT_INSERT}SELECT customer_id, %s, id, pool_id, %s, %s, %s, jsonb_build_object('code', code), %s "
                f"FROM {row_sql.COUPON_TABLE} WHERE id = ANY(%s) AND customer_id IS NOT NULL",
                [action, fields["actor_kind"], user_id, fields["actor_label"], now, ids],
            )
        return
    rows = Coupon.objects.filter(id__in=ids, customer__isnull=False).values_list("id", "customer_id", "pool_id", "code")
    CustomerEvent.objects.bulk_create(
        CustomerEvent(
            customer_id=customer_id, action=action, coupon_id=coupon_id, pool_id=pool_id,
            actor_kind=fields["actor_kind"], actor_user_id=user_id, actor_label=fields["actor_label"],
            data={"code": code}, created_at=now,
        )
        for coupon_id, customer_id, pool_id, code in rows
    )
