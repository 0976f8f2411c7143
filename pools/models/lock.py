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

Nothing here scans a pool (pools hold up to 100 million coupons):

- The lock itself is an ``exists()``; the count ("holds 31 coupons") only for a message
  that is shown, once (``PoolLock.held``).
- Uniqueness is decided from the patterns first. A generated pool's coupons come only
  from its claims, each made from the pattern of its day (imports and API bulk adds take
  uploaded pools only, bulk generation bulk pools, and the source cannot change once
  the pool holds a coupon). The pool keeps the patterns it issued codes with
  (``CouponPool.former_patterns``), so a new pattern that no earlier one can overlap
  (another length, or disjoint characters at some position) needs no query. Where they
  can overlap, the codes both could make are probed within a range of the unique code
  index, when the planner expects that range small; else the change is refused rather
  than scanned. A pool whose history is not known (``former_patterns`` NULL: it held
  coupons before the history was kept) is probed within the new pattern's own range.
- The 1% rule trusts the planner's estimate while it is far below the new limit, counts
  exactly (bounded) only a limit small enough to count, and refuses a large limit the
  estimate comes close to.

The pool's coupons are reached by the reverse relation ``pool.coupons``: ``pools``
imports nothing from ``coupons``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from django.db.models import Q
from django.utils.translation import ngettext

from couponsite.counting import EXACT_COUNT_LIMIT, count_with_accuracy, estimate_count

from .. import patterns

# Index entries a uniqueness probe may read (the planner's estimate of the code range).
PROBE_LIMIT = EXACT_COUNT_LIMIT


def coupons_text(count: int, estimated: bool = False) -> str:
    """"31 coupons", "about 2,000,000 coupons"."""
    text = ngettext("%(count)s coupon", "%(count)s coupons", count) % {"count": f"{count:,}"}
    return f"about {text}" if estimated else text


class PoolLock:
    """Whether the pool's source may change; its coupon count only when asked (lazily,
    once: ``counter`` runs at most one time)."""

    def __init__(self, *, holds_coupons: bool, generation_started: bool,
                 counter: Callable[[], tuple[int, bool]] | None = None):
        self.holds_coupons = holds_coupons
        self.generation_started = generation_started
        self._counter = counter

    @classmethod
    def from_count(cls, count: int, estimated: bool, *, generation_started: bool) -> PoolLock:
        """A lock from a count the caller has already (the overview's stock)."""
        return cls(holds_coupons=count > 0, generation_started=generation_started,
                   counter=lambda: (count, estimated))

    @property
    def source_locked(self) -> bool:
        return self.generation_started or self.holds_coupons

    @cached_property
    def _count(self) -> tuple[int, bool]:
        if not self.holds_coupons or self._counter is None:
            return 0, False
        return self._counter()

    @property
    def coupons(self) -> int:
        """Coupons the pool holds (counted on first use)."""
        return self._count[0]

    @property
    def estimated(self) -> bool:
        return self._count[1]

    def held(self) -> str:
        """"31 coupons", "about 2,000,000 coupons"."""
        return coupons_text(*self._count)

    def source_reason(self) -> str:
        if self.holds_coupons:
            return f"This pool holds {self.held()}; its source can no longer change."
        return "Bulk generation has started for this pool; its source can no longer change."

    def short_reason(self) -> str:
        """Why, in a few words (the overview's "locked: ..."); "" when not locked."""
        if self.holds_coupons:
            return f"it holds {self.held()}"
        return "bulk generation started" if self.generation_started else ""

    def bulk_pattern_reason(self) -> str:
        if self.generation_started:
            return "Locked: bulk generation has started for this pool."
        return f"Locked: this pool holds {self.held()}."


def pool_lock(pool) -> PoolLock:
    """The pool's lock as stored now (a pool not saved yet holds nothing): one
    ``exists()`` on the pool's coupon index; the count waits for a message."""
    started = pool.generation_started_at is not None
    if pool.pk is None:
        return PoolLock(holds_coupons=False, generation_started=started)
    coupons = pool.coupons.all()
    return PoolLock(holds_coupons=coupons.exists(), generation_started=started,
                    counter=lambda: count_with_accuracy(coupons))


@dataclass(frozen=True)
class PatternChange:
    """A generated pool's new pattern, after claims: what changes for the manager."""

    lock: PoolLock
    pattern: patterns.Pattern
    example: str

    def warning(self) -> str:
        return (f"New claims will get codes like {self.example}; the {self.lock.held()} this pool "
                f"issued already keep their codes.")


def overlap(a: patterns.Pattern, b: patterns.Pattern) -> patterns.Pattern | None:
    """The codes both patterns can make (before excluded phrases), as a pattern of the
    characters both allow at each position; None when no code fits both."""
    if a.length != b.length:
        return None
    positions = []
    for left, right in zip(a.positions, b.positions, strict=True):
        both = "".join(c for c in left.alphabet if c in right.alphabet)
        if not both:
            return None
        positions.append(patterns.Position(both if len(both) == 1 else "*", both))
    return patterns.Pattern("".join(p.token for p in positions), tuple(positions))


def code_range(region: patterns.Pattern) -> Q:
    """Every code of ``region`` lies between its smallest and its largest code (same
    length, byte order): a range of the unique code index (``COLLATE "C"``), written
    for both partial indexes (generic codes repeat outside the unique one)."""
    low = "".join(min(p.alphabet) for p in region.positions)
    high = "".join(max(p.alphabet) for p in region.positions)
    within = Q(code__gte=low, code__lte=high)
    return (Q(shared_code=False) & within) | (Q(shared_code=True) & within)


def pattern_change_refusal(pool, new: patterns.Pattern, *, old: str | None,
                           former: list[str] | None) -> str | None:
    """Why a generated pool holding coupons cannot take the pattern ``new``, or None.

    ``old`` is its stored pattern, ``former`` the patterns it issued codes with before
    (None: not known)."""
    coupons = pool.coupons.all()
    if not new.is_generic:
        refusal = _guessing_refusal(coupons, new.max_coupons)
        if refusal:
            return refusal
    if former is None:
        regions = [(new, None)]  # any code may be there: probe the new pattern's own range
    else:
        regions = []
        for text in dict.fromkeys([old, *former]):
            if not text:
                continue
            try:
                earlier = patterns.parse_pattern(text)
            except patterns.PatternError:
                regions = [(new, None)]  # an earlier pattern no longer parses: probe as unknown
                break
            both = overlap(new, earlier)
            if both is not None:
                regions.append((both, text))
    for region, earlier in regions:
        refusal = _probe(pool, coupons, region, earlier)
        if refusal:
            return refusal
    return None


def _probe(pool, coupons, region: patterns.Pattern, earlier: str | None) -> str | None:
    within = code_range(region)
    in_range = estimate_count(pool.coupons.model.objects.filter(within))
    if in_range is not None and in_range > PROBE_LIMIT:
        source = f"its earlier pattern {earlier}" if earlier else "this pool"
        return (f"Codes of the new pattern could be the same as codes {source} issued, and about "
                f"{in_range:,} codes lie in their range: too many to check. Change its fixed "
                "characters or its length so that they cannot.")
    # No ORDER BY: with "ORDER BY id LIMIT 1" the planner may walk the primary key instead.
    found = coupons.filter(within, code__regex=region.regex()).order_by().values_list("code", flat=True)[:1]
    clash = next(iter(found), None)
    if clash is not None:
        # The example is seen by who may change the pool: the same principals may see its
        # coupons (coupons.access.visible_coupons is the pool's own rule).
        return (f"Codes of the new pattern could be the same as codes this pool issued already "
                f"(such as {clash}). Change its fixed characters or its length so that they cannot.")
    return None


def _guessing_refusal(coupons, limit: int) -> str | None:
    """The 1% rule for a new pattern allowing at most ``limit``, as the claims' own check:
    a limit small enough to count is counted (bounded by it); a larger one trusts the
    planner's estimate while far below, and is refused when the estimate comes near."""
    estimate = None if limit <= EXACT_COUNT_LIMIT else estimate_count(coupons)
    if estimate is not None and estimate < limit // 2:
        return None
    if estimate is None:
        held = coupons.order_by()[:limit].count()
        if held < limit:
            return None
        return (f"This pool holds {coupons_text(held)}; the new pattern allows at most {limit:,} "
                "(1% of its combinations, against guessing). Add placeholders.")
    return (f"This pool holds {coupons_text(estimate, True)}; the new pattern allows at most {limit:,} "
            "(1% of its combinations, against guessing), too close to that. Add placeholders.")


def with_former(former: list[str] | None, pattern: str | None) -> list[str] | None:
    """The patterns a pool issued codes with, once ``pattern`` is replaced (None stays
    None: a history not known does not become known)."""
    if former is None:
        return None
    return list(dict.fromkeys([*former, *([pattern] if pattern else [])]))


def pattern_change(new: patterns.Pattern, lock: PoolLock) -> PatternChange:
    example = new.text if new.is_generic else new.generate(1)[0]
    return PatternChange(lock=lock, pattern=new, example=example)
