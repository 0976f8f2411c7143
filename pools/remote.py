"""Ask a remote pool's callback URL for a coupon code (SPEC section 2, ``remote`` pools).

``fetch_remote_code(pool, customer_external_id)`` POSTs

    {"api_key": ..., "customer": ..., "type": ..., "value": "20.00" | null,
     "coupon_percentage": "20.00" | null}

to ``pool.callback_url`` and returns the trimmed ``code`` of the answer ``{"code": "..."}``.
Every failure raises ``RemoteCodeError`` (a message for a manager or an API client, and
a short machine ``code``) and is logged at warning level, without the API key. Nothing is
created here and duplicates are not checked: the caller does both in the database.

The call itself -- the address guard against server-side request forgery, time-outs, the
size cap, at most ``COUPON_CALLBACK_MAX_CONCURRENT`` calls to one pool at once and the
circuit breaker after repeated failures -- is ``couponsite.outbound``'s, like every
outbound call of the product; ``CouponPool.clean`` applies the same guard to a URL being
saved.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from decimal import Decimal

from couponsite import outbound

from .models import CALLBACK_PEER as _PEER
from .models import CALLBACK_WHAT as _WHAT
from .models import CouponType
from .patterns import MAX_CODE_LENGTH

logger = logging.getLogger(__name__)

# Error codes (RemoteCodeError.code): the outbound call's, and the answer's.
TIMEOUT = outbound.TIMEOUT
STATUS = outbound.STATUS
NOT_JSON = outbound.NOT_JSON
TOO_LARGE = outbound.TOO_LARGE
REFUSED_ADDRESS = outbound.REFUSED_ADDRESS
UNREACHABLE = outbound.UNREACHABLE
BUSY = outbound.BUSY
PAUSED = outbound.PAUSED
BAD_CODE = "remote_bad_code"


class RemoteCodeError(Exception):
    """The remote system did not give a usable code. ``str()`` says why, for a manager or
    an API client; ``code`` is one of the ``remote_*`` constants of this module;
    ``retry_after`` (seconds) is set when the pool is busy or paused."""

    def __init__(self, message: str, code: str, retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


def breaker_key(pool) -> str:
    return f"pool-{pool.pk}"


def fetch_remote_code(pool, customer_external_id: str) -> str:
    """Ask ``pool``'s callback URL for a code for the customer; return it, trimmed.

    Raises RemoteCodeError on any failure (see the module docstring).
    """
    key = breaker_key(pool)
    try:
        try:
            body = outbound.post_json(pool.callback_url, _payload(pool, customer_external_id),
                                      peer=_PEER, what=_WHAT, key=key)
        except outbound.OutboundError as error:
            raise RemoteCodeError(str(error), error.code, error.retry_after) from error
        try:
            code = _code_from_body(body)
        except RemoteCodeError:
            outbound.record_failure(key)
            raise
    except RemoteCodeError as error:
        # Never log the payload: it holds the API key.
        logger.warning(
            "Remote pool %s (%s): %s: %s",
            pool.pk,
            outbound.host_for_log(pool.callback_url),
            error.code,
            error,
        )
        raise
    outbound.record_success(key)
    return code


def _payload(pool, customer_external_id: str) -> dict:
    value = None if pool.value is None else f"{Decimal(pool.value):.2f}"
    coupon_type = str(pool.coupon_type)
    return {
        "api_key": pool.callback_api_key,
        "customer": customer_external_id,
        "type": coupon_type,
        "value": value,
        "coupon_percentage": value if coupon_type == CouponType.PERCENTAGE else None,
    }


# C0 and C1 controls (as in imports), plus invisible format characters, lone surrogates
# (cannot be stored) and line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _code_from_body(body: bytes) -> str:
    try:
        # json.loads on bytes detects UTF-8/16/32.
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RemoteCodeError("The remote coupon system's answer is not valid JSON.", NOT_JSON) from exc
    if not isinstance(data, dict):
        raise RemoteCodeError(
            'The remote coupon system\'s answer is not a JSON object like {"code": "..."}.',
            NOT_JSON,
        )
    if "code" not in data:
        raise RemoteCodeError('The remote coupon system\'s answer has no "code".', BAD_CODE)
    code = data["code"]
    if not isinstance(code, str):
        raise RemoteCodeError(
            f'The remote coupon system\'s "code" is not a string (got {_json_type(code)}).',
            BAD_CODE,
        )
    code = code.strip()
    if not code:
        raise RemoteCodeError('The remote coupon system\'s "code" is empty.', BAD_CODE)
    if len(code) > MAX_CODE_LENGTH:
        raise RemoteCodeError(
            f'The remote coupon system\'s "code" is {len(code)} characters long; '
            f"codes can be at most {MAX_CODE_LENGTH}.",
            BAD_CODE,
        )
    bad = next((c for c in code if unicodedata.category(c) in _FORBIDDEN_CATEGORIES), None)
    if bad is not None:
        raise RemoteCodeError(
            f'The remote coupon system\'s "code" contains a control or invisible character '
            f"(U+{ord(bad):04X}).",
            BAD_CODE,
        )
    return code


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    return "an object"
