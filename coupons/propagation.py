"""A pool edit's update method, applied to the pool's existing coupons.

- update_none: nothing; only coupons added from now on get the new terms version.
- update_all: every older terms version of the pool (with matching: those whose
  effective value equals the value before the edit) is redirected to the new one.
  That touches a handful of terms rows, not the coupons: instant on 100M coupons.
- update_unassigned / update_not_redeemed: the coupons in those statuses (and, with
  matching, on a matching terms version) are moved to the new version by a set-based
  UPDATE, in chunks; more than ``ASYNC_THRESHOLD`` coupons run in a worker.

When the expiration period changed, claimed coupons that now follow the new terms get
their expiry date recomputed from their claim date.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import QuerySet
from django.urls import reverse

from couponsite.counting import count_or_estimate
from couponsite.wording import counted
from pools.models import CouponPool, CouponTerms
from pools.services import pool_change

from . import rows as row_sql
from .jobs.engine import QUEUE_UNREACHABLE, Run, job_count_exactly, job_create
from .jobs.registry import JobKind, register
from .models import Coupon, CouponJob, CouponStatus

S = CouponStatus
ASYNC_THRESHOLD = 10_000
CHUNK = settings.COUPON_PROPAGATION_CHUNK



class UpdateMethod(models.TextChoices):
    NONE = "update_none", "Do not update coupons: only coupons added from now on get the new properties"
    UNASSIGNED = "update_unassigned", "Update unassigned coupons"
    NOT_REDEEMED = "update_not_redeemed", "Update not yet redeemed coupons (unassigned and claimed)"
    ALL = "update_all", "Update all coupons"


METHOD_STATUSES = {
    UpdateMethod.UNASSIGNED: [S.UNASSIGNED],
    UpdateMethod.NOT_REDEEMED: [S.UNASSIGNED, S.CLAIMED],
}


@dataclass
class Propagation:
    method: str
    changed: int = 0  # coupons moved (or, for update_all, now following the new terms)
    job: CouponJob | None = None

    def message(self) -> str:
        if self.method == UpdateMethod.NONE:
            return "Existing coupons keep their properties; new coupons get the new ones."
        if self.job is not None:
            text = f"Updating about {counted(self.changed, 'coupon', 'coupons')} in the background."
            return f"{text} {QUEUE_UNREACHABLE}" if self.job.dispatch_failed else text
        return f"{counted(self.changed, 'coupon', 'coupons')} updated."


def matching_terms(*, pool: CouponPool, old_terms: CouponTerms, exclude: CouponTerms | None, matching: bool) -> QuerySet:
    """The pool's terms versions whose coupons the edit may change.

    With ``exclude`` (the edit's own new version) only the versions older than it: a
    job that runs late must not move coupons a newer edit has already moved on.
    """
    terms = CouponTerms.objects.filter(pool=pool)
    if exclude is not None:
        terms = terms.filter(version__lt=exclude.version)
    if matching:
        if old_terms.value is None:
            terms = terms.filter(effective__value__isnull=True)
        else:
            terms = terms.filter(effective__value=old_terms.value)
    return terms


def affected_coupons(*, pool: CouponPool, old_terms: CouponTerms, method: str, matching: bool,
                     exclude: CouponTerms | None = None) -> QuerySet:
    """The coupons an edit with this method would change (for the preview and the job)."""
    if method == UpdateMethod.NONE:
        return Coupon.objects.none()
    coupons = Coupon.objects.filter(pool=pool)
    if method in METHOD_STATUSES:
        coupons = coupons.filter(status__in=METHOD_STATUSES[method])
    if matching or exclude is not None:
        ids = list(matching_terms(pool=pool, old_terms=old_terms, exclude=exclude, matching=matching).values_list("pk", flat=True))
        coupons = coupons.filter(terms_id__in=ids)
    return coupons


def pool_update(*, pool: CouponPool, actor, update_method: str = UpdateMethod.NONE, matching: bool = False,
                **fields) -> tuple[CouponPool, Propagation | None]:
    """Edit a pool (``pools.services.pool_change``) and apply the update method to its
    existing coupons, in one transaction. Returns ``(pool, propagation)``: what the
    method did, or None when no coupon property changed."""
    with transaction.atomic():
        pool, old_terms, new_terms = pool_change(pool=pool, **fields)
        if new_terms is None or old_terms is None:
            return pool, None
        propagation = terms_propagate(pool=pool, old_terms=old_terms, new_terms=new_terms,
                                      method=update_method, matching=matching, actor=actor)
    return pool, propagation


def terms_propagate(*, pool, old_terms, new_terms, method, matching, actor) -> Propagation:
    result = Propagation(method=method)
    if method == UpdateMethod.NONE:
        return result
    expiry_changed = (old_terms.expiration_period_count, old_terms.expiration_period_unit) != (
        new_terms.expiration_period_count, new_terms.expiration_period_unit)
    coupons = affected_coupons(pool=pool, old_terms=old_terms, method=method, matching=matching, exclude=new_terms)
    result.changed = count_or_estimate(coupons)
    params = {
        "method": method, "matching": matching, "old_terms": old_terms.pk, "new_terms": new_terms.pk,
        "expiry_changed": expiry_changed,
    }
    if method == UpdateMethod.ALL:
        redirected = matching_terms(pool=pool, old_terms=old_terms, exclude=new_terms, matching=matching)
        params["terms_ids"] = list(redirected.values_list("pk", flat=True))
        redirected.update(effective=new_terms)
        if not expiry_changed:
            return result
    if result.changed > ASYNC_THRESHOLD:
        result.job = job_create(
            CouponJob, kind=CouponJob.Kind.PROPAGATION, pool=pool, params=params, total=result.changed,
            total_is_estimate=True, user=getattr(actor, "user", actor),
        )
        return result
    result.changed = run_propagation(pool=pool, params=params)
    return result


def _coupons_to_change(pool: CouponPool, params: dict, old_terms: CouponTerms, new_terms: CouponTerms) -> QuerySet:
    if params["method"] == UpdateMethod.ALL:
        # The versions are redirected already; what is left is the expiry dates.
        return Coupon.objects.filter(pool=pool, terms_id__in=params["terms_ids"])
    return affected_coupons(pool=pool, old_terms=old_terms, method=params["method"],
                            matching=params["matching"], exclude=new_terms)


def run_propagation(*, pool: CouponPool, params: dict, run: Run | None = None) -> int:
    """Move the affected coupons to the new terms in id-ordered chunks (resumable).

    Returns how many coupons changed (moved, or got a new expiry date).
    """
    old_terms = CouponTerms.objects.get(pk=params["old_terms"])
    new_terms = CouponTerms.objects.get(pk=params["new_terms"])
    method = params["method"]
    coupons = _coupons_to_change(pool, params, old_terms, new_terms)
    cursor, changed = None, 0
    while True:
        with transaction.atomic():
            if run is not None:
                job = run.lock()
                cursor = job.cursor
            chunk = coupons.order_by("id")
            if cursor is not None:
                chunk = chunk.filter(id__gt=cursor)
            ids = list(chunk.values_list("id", flat=True)[:CHUNK])
            if not ids:
                return changed
            rows = Coupon.objects.filter(id__in=ids).order_by("id").select_for_update()
            moved = 0
            if method != UpdateMethod.ALL:
                moved = rows.filter(status__in=METHOD_STATUSES[method]).update(terms=new_terms)
            if params["expiry_changed"]:
                # From the terms in force now: a newer "update all" may have moved them on.
                effective = CouponTerms.objects.select_related("effective").get(pk=new_terms.pk).effective
                dated = _recompute_expiry(ids, effective)
                moved = max(moved, dated)
            changed += moved
            cursor = ids[-1]
            if run is not None:
                job.processed += len(ids)
                job.applied += moved
                job.cursor = cursor
                run.save(job, "processed", "applied", "cursor")


def _recompute_expiry(ids: list[int], terms: CouponTerms) -> int:
    live = Coupon.objects.filter(id__in=ids, status__in=[S.CLAIMED, S.PARTIALLY_REDEEMED], claimed_at__isnull=False)
    count, unit = terms.expiration_period_count, terms.expiration_period_unit
    if not count or not unit:
        return live.update(expires_at=None)
    if connection.vendor == "postgresql":
        months = {"month": count, "year": count * 12}.get(unit, 0)
        days = {"day": count, "week": count * 7}.get(unit, 0)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {row_sql.COUPON_TABLE} SET expires_at = claimed_at + make_interval(months => %s, days => %s) "
                "WHERE id = ANY(%s) AND status IN (%s, %s) AND claimed_at IS NOT NULL",
                [months, days, ids, int(S.CLAIMED), int(S.PARTIALLY_REDEEMED)],
            )
            return cursor.rowcount
    coupons = list(live.only("id", "claimed_at"))
    for coupon in coupons:
        Coupon.objects.filter(pk=coupon.pk).update(expires_at=terms.expires_at(coupon.claimed_at))
    return len(coupons)


def propagation_run_job(job: CouponJob, run: Run) -> str:
    params = job.params
    terms = CouponTerms.objects.in_bulk([params["old_terms"], params["new_terms"]])
    job_count_exactly(run, _coupons_to_change(job.pool, params, terms[params["old_terms"]], terms[params["new_terms"]]))
    run_propagation(pool=job.pool, params=job.params, run=run)
    job.refresh_from_db()
    return f"{counted(job.applied, 'coupon', 'coupons')} updated."


register(JobKind(
    name=CouponJob.Kind.PROPAGATION, label="Pool update", model=CouponJob, run=propagation_run_job,
    rows={"kind": CouponJob.Kind.PROPAGATION}, describe=lambda job: "Apply the new properties to existing coupons",
    permission="pools.change_couponpool",
    result_url=lambda job: reverse("pools:overview", args=[job.pool_id]),
))
