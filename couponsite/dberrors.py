"""Telling a deadlock from other database errors."""

from __future__ import annotations

import psycopg
from django.db import OperationalError


def is_deadlock(exc: BaseException) -> bool:
    """A deadlock PostgreSQL broke by failing this statement, in either shape it arrives:
    psycopg's own error (a raw cursor's COPY) or Django's ``OperationalError`` around it."""
    if isinstance(exc, OperationalError):
        exc = exc.__cause__
    return isinstance(exc, psycopg.errors.DeadlockDetected)


# Errors worth trying again (a deadlock, a lost connection, a lock timeout): Django's
# wrapper, and psycopg's own from a raw cursor's COPY, which Django does not wrap.
RETRYABLE = (OperationalError, psycopg.OperationalError)
