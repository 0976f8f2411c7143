"""The concurrency cap and circuit breaker per target, shared through Django's cache (see the
package docstring)."""
from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid

from django.core.cache import cache

from couponsite.wording import counted

logger = logging.getLogger(__name__)

from .errors import _MAX_ADDRESSES_TRIED, BUSY, PAUSED, OutboundError, _setting, _timeouts


def _longest_call() -> int:
    """Seconds one call may take at most: a slot outlives it by a margin."""
    connect_timeout, read_timeout = _timeouts()
    return math.ceil(_MAX_ADDRESSES_TRIED * connect_timeout + connect_timeout + read_timeout) + 5


@contextlib.contextmanager
def _slot(key: str, peer: str):
    limit = max(1, _setting("COUPON_CALLBACK_MAX_CONCURRENT", 4))
    token = uuid.uuid4().hex
    for index in range(limit):
        name = f"outbound:slot:{key}:{index}"
        if cache.add(name, token, timeout=_longest_call()):
            break
    else:
        logger.warning("Outbound %s: all %s slots busy", key, limit)
        raise OutboundError(
            f"The {peer} is already handling {counted(limit, 'request', 'requests')} from us, the most allowed at once; "
            "try again in a moment.",
            BUSY,
            retry_after=1,
        )
    try:
        yield
    finally:
        if cache.get(name) == token:  # not expired and taken by another call meanwhile
            cache.delete(name)


def _check_breaker(key: str, peer: str) -> None:
    opened_until = cache.get(f"outbound:open:{key}")
    if opened_until is not None:
        wait = max(1, math.ceil(opened_until - time.time()))
        raise OutboundError(
            f"The {peer} failed several times in a row; calls to it are paused for {wait} s more.",
            PAUSED,
            retry_after=wait,
        )


def record_failure(key: str) -> None:
    """Count one failure of the target; open its circuit when there are enough in a row,
    or at once when it failed again just after a pause."""
    threshold = max(1, _setting("COUPON_CALLBACK_BREAKER_FAILURES", 5))
    pause = max(1, _setting("COUPON_CALLBACK_BREAKER_SECONDS", 30))
    failures = f"outbound:failures:{key}"
    cache.add(failures, 0, timeout=10 * pause)
    try:
        count = cache.incr(failures)
    except ValueError:  # expired between add and incr
        cache.add(failures, 1, timeout=10 * pause)
        count = 1
    if count >= threshold or cache.get(f"outbound:tripped:{key}") is not None:
        cache.set(f"outbound:open:{key}", time.time() + pause, timeout=pause)
        # Remembered a while after the pause: the first call after it that fails again
        # reopens the circuit at once.
        cache.set(f"outbound:tripped:{key}", True, timeout=10 * pause)
        cache.delete(failures)
        logger.warning("Outbound %s: circuit open for %s s after repeated failures", key, pause)


def record_success(key: str) -> None:
    """The target answered usably: forget its failures."""
    cache.delete_many([f"outbound:failures:{key}", f"outbound:tripped:{key}"])


def breaker_state(key: str) -> dict:
    """For pages and alerts: {"paused_for": seconds or 0, "failures": failures in a row}."""
    opened_until = cache.get(f"outbound:open:{key}")
    return {
        "paused_for": max(0, math.ceil(opened_until - time.time())) if opened_until else 0,
        "failures": cache.get(f"outbound:failures:{key}") or 0,
    }
