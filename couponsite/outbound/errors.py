"""What every part of the outbound guard shares: the error, its codes, the settings."""
from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger(__name__)


# Error codes (OutboundError.code).
TIMEOUT = "remote_timeout"


STATUS = "remote_status"


TOO_LARGE = "remote_too_large"


NOT_JSON = "remote_not_json"


REFUSED_ADDRESS = "remote_refused_address"


UNREACHABLE = "remote_unreachable"


BUSY = "remote_busy"


PAUSED = "remote_paused"


class OutboundError(Exception):
    """An outbound call that failed or was not made. ``str()`` says why; ``code`` is one
    of the ``remote_*`` constants; ``retry_after`` (seconds) is set for BUSY and PAUSED."""

    def __init__(self, message: str, code: str, retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


def _setting(name: str, default):
    return type(default)(getattr(settings, name, default))


def _timeouts() -> tuple[float, float]:
    return _setting("COUPON_CALLBACK_CONNECT_TIMEOUT", 2.0), _setting("COUPON_CALLBACK_READ_TIMEOUT", 5.0)


_MAX_ADDRESSES_TRIED = 3  # each may take the connect timeout
