"""When a pool's source and pattern may still change: the one rule ``CouponPool.clean``
applies on every save (the pool form, the API's update, the admin) and the pool form
explains next to the fields.

- The source is locked once the pool holds any coupon (or bulk generation started): an
  uploaded pool switched to Generated would strand its unassigned codes.
- A bulk pool's pattern and excluded characters are locked with it: they decide which
  codes exist and the pool's capacity.
- A generated pool's pattern may change after claims while the codes stay unique (no
  code already issued fits the new pattern, so old and new codes cannot be confused)
  and the 1% rule holds for the new pattern with the coupons already issued.

The pool's coupons are counted through ``couponsite.counting`` (the planner's estimate
past 100,000) and reached by the reverse relation ``pool.coupons``: ``pools`` imports
nothing from ``coupons``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import ngettext

from couponsite.counting import count_with_accuracy, estimate_count

from .. import patterns


@dataclass(frozen=True)
class PoolLock:
    coupons: int  # coupons the pool holds
    estimated: bool  # ``coupons`` is the planner's estimate
    generation_started: bool

    @property
    def source_locked(self) -> bool:
        return self.generation_started or self.coupons > 0

    def held(self) -> str:
        """"31 coupons", "about 2,000,000 coupons"."""
        text = ngettext("%(count)s coupon", "%(count)s coupons", self.coupons) % {"count": f"{self.coupons:,}"}
        return f"about {text}" if self.estimated else text

    def source_reason(self) -> str:
        if self.coupons:
            return f"This pool holds {self.held()}; its source can no longer change."
        return "Bulk generation has started for this pool; its source can no longer change."

    def bulk_pattern_reason(self) -> str:
        if self.generation_started:
            return "Locked: bulk generation has started for this pool."
        return f"Locked: this pool holds {self.held()}."


def pool_lock(pool) -> PoolLock:
    """The pool's lock as stored now (a pool not saved yet holds nothing)."""
    if pool.pk is None:
        return PoolLock(coupons=0, estimated=False, generation_started=False)
    count, estimated = count_with_accuracy(pool.coupons.all())
    return PoolLock(coupons=count, estimated=estimated, generation_started=pool.generation_started_at is not None)


@dataclass(frozen=True)
class PatternChange:
    """A generated pool's new pattern, after claims: what changes for the manager."""

    lock: PoolLock
    pattern: patterns.Pattern
    example: str

    def warning(self) -> str:
        return (f"New claims will get codes like {self.example}; the {self.lock.held()} this pool "
                f"issued already keep their codes.")


def pattern_change_refusal(pool, new: patterns.Pattern, lock: PoolLock) -> str | None:
    """Why a generated pool holding coupons cannot take the pattern ``new``, or None."""
    coupons = pool.coupons.all()
    if not new.is_generic:
        limit = new.max_coupons
        if _holds_at_least(coupons, limit) if lock.estimated else lock.coupons >= limit:
            return (f"This pool holds {lock.held()}; the new pattern allows at most {limit:,} "
                    "(1% of its combinations, against guessing). Add placeholders.")
    clash = coupons.filter(code__regex=new.regex()).values_list("code", flat=True).first()
    if clash is not None:
        return (f"Codes of the new pattern could be the same as codes this pool issued already "
                f"(such as {clash}). Change its fixed characters or its length so that they cannot.")
    return None


def _holds_at_least(coupons, limit: int) -> bool:
    """True if ``coupons`` holds ``limit`` or more: the estimate while far below (as the
    claims' own check), else a count bounded by ``limit``."""
    estimate = estimate_count(coupons)
    if estimate is not None and estimate < limit // 2:
        return False
    return coupons.order_by()[:limit].count() >= limit


def pattern_change(new: patterns.Pattern, lock: PoolLock) -> PatternChange:
    example = new.text if new.is_generic else new.generate(1)[0]
    return PatternChange(lock=lock, pattern=new, example=example)
