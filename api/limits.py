"""Rate limits of the API, counted in Django's cache (Redis in production, local memory
on the embedded default), every number a setting:

- ``API_RATE_PER_KEY`` and ``API_RATE_PER_IP``: requests over the whole API, in fixed
  windows (one counter per key or client address and window, one round trip a request);
- ``API_LOOKUP_FAILURES_PER_KEY`` and ``..._PER_CUSTOMER``: failed code lookups
  (validate, a coupon by code, a redeem or checkout of an unknown or unusable code), a
  much tighter budget against guessing; when one is used up, the key (or the customer)
  is locked out of code lookups for ``API_LOOKUP_LOCKOUT_SECONDS``. Lock-outs are logged
  and kept as ``LookupLockout`` rows for the administrators.

A limited request is a 429 in the error envelope, with ``Retry-After``; every answer
carries ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` of the request limits.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from couponsite.wording import counted
from pools.access import is_unrestricted, principal_groups

from .errors import ApiError
from .models import LookupLockout

log = logging.getLogger(__name__)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_now = time.time  # the windows' clock (the tests stand it still)


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int

    @classmethod
    @functools.lru_cache(maxsize=64)
    def parse(cls, text: str) -> Rate:
        """``"600/m"``, ``"60/10m"``: ``count`` requests per ``seconds``."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*", text)
        if not match:
            raise ValueError(f"A rate is written like 600/m or 60/10m, not {text!r}.")
        count, many, unit = match.groups()
        return cls(int(count), int(many or 1) * UNITS[unit])


class RateLimited(ApiError):
    def __init__(self, message: str, *, wait: float, code: str = "rate_limited"):
        super().__init__(message, code=code, type="rate_limited", status_code=429)
        self.wait = max(1, math.ceil(wait))  # DRF's handler sends it as Retry-After


def _count(keys: list[tuple[str, int]], by: list[int] | None = None) -> list[int]:
    """Add to each counter (``(key, lifetime in seconds)``) one, or ``by``; their new values."""
    by = by or [1] * len(keys)
    backend = caches["default"]  # the backend itself (``cache`` is a proxy to it)
    if isinstance(backend, RedisCache):
        client = backend._cache.get_client(write=True)
        names = [backend.make_and_validate_key(key) for key, _ in keys]
        pipe = client.pipeline(transaction=False)
        for name, step in zip(names, by, strict=True):
            pipe.incrby(name, step)
        counts = pipe.execute()
        fresh = [(name, ttl) for name, (_, ttl), value, step in zip(names, keys, counts, by, strict=True) if value == step]
        if fresh:  # the first request of a window gives its counter a lifetime
            pipe = client.pipeline(transaction=False)
            for name, ttl in fresh:
                pipe.expire(name, ttl)
            pipe.execute()
        return counts
    counts = []
    for (key, ttl), step in zip(keys, by, strict=True):
        cache.add(key, 0, ttl)
        try:
            counts.append(cache.incr(key, step))
        except ValueError:  # expired between the two calls
            cache.set(key, step, ttl)
            counts.append(step)
    return counts


class _Batches:
    """The request counters of this process, sent to the shared counter in batches.

    A limit of many requests per window (60,000 a minute) does not need every request
    to wait for Redis: each process adds up to ``limit // 200`` (at most 50) requests
    before it sends them; a window's count is then what the others sent plus what this
    process has not sent yet. Each process can be behind by one batch, so a limit may be
    passed by (processes x batch) requests at the most; limits of up to 200 requests are
    sent at every request, exactly.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._known: dict[str, tuple[int, int, float]] = {}  # key -> (sent count, not sent, end)

    def hit(self, keys: list[tuple[str, int, int]]) -> list[int]:
        """``keys``: (key, lifetime, batch); the counts, this request included."""
        now = _now()
        due, estimates = [], []
        with self._lock:
            for key, ttl, batch in keys:
                known, pending, _ = self._known.get(key, (0, 0, now + ttl))
                pending += 1
                estimates.append(known + pending)
                if pending >= batch:  # taken out of the pending count now: sent once
                    due.append((key, ttl, pending))
                    pending = 0
                self._known[key] = (known, pending, now + ttl)
            if len(self._known) > 10_000:
                self._known = {k: v for k, v in self._known.items() if v[2] > now}
        if not due:
            return estimates
        counts = dict(zip((key for key, _, _ in due), _count([(k, ttl) for k, ttl, _ in due], [p for _, _, p in due]),
                          strict=True))
        with self._lock:
            for key, count in counts.items():
                known, pending, end = self._known.get(key, (0, 0, now))
                self._known[key] = (max(known, count), pending, end)  # sends of other threads may come back later
            return [max(counts[key], self._known[key][0]) + self._known[key][1] if key in counts else estimate
                    for (key, _, _), estimate in zip(keys, estimates, strict=True)]


_batches = _Batches()


def _window(rate: Rate, now: float) -> tuple[int, float]:
    """The current window's number and the seconds until it ends."""
    number = int(now // rate.seconds)
    return number, (number + 1) * rate.seconds - now


@dataclass
class Budget:
    limit: int
    remaining: int
    reset: float  # seconds


def request_limits(*, ip: str, api_key=None) -> Budget:
    """Count this request against the address's and the key's limits; the tightest
    budget left, or ``RateLimited``."""
    now = _now()
    checks = [(Rate.parse(settings.API_RATE_PER_IP), f"ip:{ip}")]
    if api_key is not None:
        checks.append((Rate.parse(settings.API_RATE_PER_KEY), f"key:{api_key.pk}"))
    windows = [_window(rate, now) for rate, _ in checks]
    counts = _batches.hit([(f"rl:{name}:{number}", rate.seconds + 1, max(1, min(50, rate.count // 200)))
                           for (rate, name), (number, _) in zip(checks, windows, strict=True)])
    budgets = []
    for (rate, name), (_, reset), count in zip(checks, windows, counts, strict=True):
        if count > rate.count:
            who = "this API key" if name.startswith("key") else "this address"
            limited = RateLimited(f"Too many requests from {who}: at most {rate.count:,} per {_period(rate)}. "
                                  f"Try again in {math.ceil(reset)} s.", wait=reset)
            limited.budget = Budget(rate.count, 0, reset)  # the answer's X-RateLimit-* headers
            raise limited
        budgets.append(Budget(rate.count, rate.count - count, reset))
    return min(budgets, key=lambda budget: budget.remaining)


def _period(rate: Rate) -> str:
    for unit, units, seconds in (("day", "days", 86400), ("hour", "hours", 3600), ("minute", "minutes", 60)):
        if rate.seconds % seconds == 0:
            many = rate.seconds // seconds
            return unit if many == 1 else counted(many, unit, units)
    return f"{rate.seconds} s"


# --- failed code lookups ----------------------------------------------------------------


def _ident(ident) -> str:
    """A customer ID as a cache key's part: any text, so a digest of it."""
    return hashlib.sha256(str(ident).encode()).hexdigest()[:32]


def _lock_key(scope: str, ident) -> str:
    return f"lookup-lock:{scope}:{_ident(ident)}"


def _customer(api_key, customer: str) -> str:
    """A customer's budget is counted per group scope of the keys (keys of the same
    groups share it; another group's key cannot lock this group's customers out)."""
    if not hasattr(api_key, "_lookup_scope"):
        api_key._lookup_scope = "all" if is_unrestricted(api_key) else ",".join(
            sorted(str(group) for (group,) in principal_groups(api_key)))
    return f"{api_key._lookup_scope}|{customer}"


def lookup_guard(*, api_key, customer: str = "") -> None:
    """Before a code lookup: refused while the key or the customer is locked out."""
    keys = {_lock_key("key", api_key.pk): "This API key",
            **({_lock_key("customer", _customer(api_key, customer)): "This customer"} if customer else {})}
    locked = cache.get_many(list(keys))
    for key, until in locked.items():
        moment = timezone.localtime(datetime.fromtimestamp(until, tz=UTC))
        raise RateLimited(f"{keys[key]} made too many failed code lookups; code lookups are refused until "
                          f"{moment:%H:%M:%S} ({timezone.get_current_timezone_name()}).",
                          wait=until - _now(), code="lookup_locked")


def lookup_failed(*, api_key, customer: str = "", weight: int | None = 1) -> bool:
    """After a failed code lookup: counted as ``weight`` failures (``None``: as many as
    the budget holds, so that it locks at once); a used-up budget locks the key (or the
    customer) out of code lookups. Whether it is locked out now."""
    now = _now()
    # (scope, what its counter and lock are keyed by, who it is in the log and the admin, rate)
    checks = [("key", api_key.pk, api_key.prefix, Rate.parse(settings.API_LOOKUP_FAILURES_PER_KEY))]
    if customer:
        checks.append(("customer", _customer(api_key, customer), customer,
                       Rate.parse(settings.API_LOOKUP_FAILURES_PER_CUSTOMER)))
    steps = [rate.count + 1 if weight is None else weight for *_, rate in checks]
    counts = _count([(f"lookup-fail:{scope}:{_ident(ident)}:{_window(rate, now)[0]}", rate.seconds + 1)
                     for scope, ident, _, rate in checks], steps)
    for (scope, ident, shown, rate), count, step in zip(checks, counts, steps, strict=True):
        if count - step <= rate.count < count:  # the failure that goes over the budget locks, once
            _lock_out(scope, ident, shown, api_key, rate, now)
    return any(count > rate.count for (*_, rate), count in zip(checks, counts, strict=True))


def _lock_out(scope: str, ident, shown: str, api_key, rate: Rate, now: float) -> None:
    seconds = settings.API_LOOKUP_LOCKOUT_SECONDS
    cache.set(_lock_key(scope, ident), now + seconds, seconds)
    until = timezone.now() + timedelta(seconds=seconds)
    LookupLockout.objects.create(api_key=api_key, customer=shown if scope == "customer" else "",
                                 scope=scope, failures=rate.count, until=until)
    log.warning("Code lookups locked out for %s %s (API key %s): more than %s failures in %s s, until %s",
                scope, shown, api_key.prefix, rate.count, rate.seconds, until.isoformat())
