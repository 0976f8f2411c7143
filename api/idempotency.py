"""``Idempotency-Key``: a POST or PUT sent again with the same key is answered with the
first answer, and its work is not done twice.

The request runs in one transaction with its record (``IdempotencyRecord``): the record
is inserted first (``INSERT ... ON CONFLICT``), the work is done, the answer is stored on
the record, and all commit together. A second request with the same key meanwhile waits
on the unique index for the first to commit (PostgreSQL), at most
``API_IDEMPOTENCY_WAIT_SECONDS`` (then 409 ``idempotency_in_progress``), and replays
its answer. A request that fails (5xx) or rolls back leaves no record with its work
undone: a retry runs afresh, and nothing half done is ever replayed.

Stored: 2xx and 4xx answers (a refusal is an answer: sent again, it is the same
refusal). Never 5xx. A key is the API key's own, kept ``API_IDEMPOTENCY_HOURS``;
the same key with another method, path or body is a 422 ``idempotency_mismatch``.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter

from .errors import ApiError
from .models import IdempotencyRecord

HEADER = "Idempotency-Key"
META = "HTTP_IDEMPOTENCY_KEY"
REPLAYED = "Idempotent-Replayed"
METHODS = ("POST", "PUT")
PURGE_CHUNK = 10_000

PARAMETER = OpenApiParameter(
    HEADER, str, OpenApiParameter.HEADER, required=False,
    description="1 to 255 printable ASCII characters, e.g. a UUID. Sent again with the same method, path and "
    "body within 24 hours, the request is not done again: the first answer (2xx or 4xx) is replayed, "
    f"with the header `{REPLAYED}: true`. Keys are per API key.",
)


# The answers an idempotent request adds to an operation's schema (``KeyedSchema``).
RESPONSES = {
    "409": "Refused, or `idempotency_in_progress`: a request with this Idempotency-Key is still running; "
           "send it again later.",
    "422": "`idempotency_mismatch`: this Idempotency-Key was used with another method, path or body.",
}


class Replay(Exception):
    """The stored answer to send (``KeyedView.handle_exception``)."""

    def __init__(self, response: HttpResponse):
        super().__init__("replay")
        self.response = response


_TABLE = IdempotencyRecord._meta.db_table
_CLAIM = (
    f"INSERT INTO {_TABLE} (api_key_id, key, fingerprint, status_code, content_type, body, created_at) "
    "VALUES (%s, %s, %s, NULL, '', NULL, %s) "
    # A record past its 24 hours that the purge has not deleted yet counts as none.
    f"ON CONFLICT (api_key_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, status_code = NULL, "
    f"content_type = '', body = NULL, created_at = excluded.created_at WHERE {_TABLE}.created_at < %s "
    "RETURNING id"
)
_FOUND = f"SELECT fingerprint, status_code, content_type, body FROM {_TABLE} WHERE api_key_id = %s AND key = %s"
_STORE = f"UPDATE {_TABLE} SET status_code = %s, content_type = %s, body = %s WHERE id = %s"


def wanted(request) -> bool:
    return request.method in METHODS and META in request.META


def _fingerprint(request) -> str:
    digest = hashlib.sha256(f"{request.method} {request.get_full_path()}\n".encode())
    digest.update(request.body)
    return digest.hexdigest()


def begin(request, api_key) -> int:
    """Inside the request's transaction: the record's id, now this request's to answer.
    Raises ``Replay`` with the stored answer, or an ``ApiError`` (400 for a key that is
    not valid, 422 for a mismatch, 409 while another request with the key runs)."""
    key = request.META[META]
    if not (1 <= len(key) <= 255 and key.isascii() and key.isprintable()):
        raise ApiError(f"The {HEADER} header must be 1 to 255 printable ASCII characters.",
                       code="idempotency_key_invalid", type="validation_error")
    fingerprint = _fingerprint(request)
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    postgresql = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        try:
            params = [api_key.pk, key, fingerprint, adapt(now), adapt(now - timedelta(hours=settings.API_IDEMPOTENCY_HOURS))]
            if postgresql:
                # A request with the same key that runs: wait for it, but not for ever. One
                # round trip (a client-side bound query may hold several statements).
                wait = max(1, int(settings.API_IDEMPOTENCY_WAIT_SECONDS * 1000))
                cursor.execute(f"SET LOCAL lock_timeout = {wait}; {_CLAIM}; SET LOCAL lock_timeout = DEFAULT", params)
                while cursor.description is None and cursor.nextset():
                    pass
            else:
                cursor.execute(_CLAIM, params)
            row = cursor.fetchone()
        except OperationalError as exc:
            if getattr(getattr(exc, "__cause__", None), "sqlstate", None) != "55P03":  # lock_not_available
                raise
            transaction.set_rollback(True)
            raise ApiError(f"A request with this {HEADER} is still running; send it again later.",
                           code="idempotency_in_progress", type="refused", status_code=409) from None
        if row is not None:
            return row[0]
        cursor.execute(_FOUND, [api_key.pk, key])
        stored_fingerprint, status_code, content_type, body = cursor.fetchone()
    if stored_fingerprint != fingerprint:
        raise ApiError(f"This {HEADER} was used with another method, path or body; use a new key for a new request.",
                       code="idempotency_mismatch", type="validation_error", status_code=422)
    if status_code is None:  # pragma: no cover - an unstored record is never seen outside its transaction
        raise ApiError(f"A request with this {HEADER} is still running; send it again later.",
                       code="idempotency_in_progress", type="refused", status_code=409)
    response = HttpResponse(bytes(body or b""), status=status_code, content_type=content_type or None)
    response[REPLAYED] = "true"
    raise Replay(response)


def finish(record_id: int | None, response) -> None:
    """Store the answer on the record (2xx and 4xx), or roll the request back (5xx,
    or no record: a replay or a refusal of the key)."""
    if record_id is None or response.status_code >= 500:
        transaction.set_rollback(True)
        return
    if hasattr(response, "render"):
        response.render()
    # A failure here (the work's transaction broken) is raised: nothing commits, and the
    # client gets a 500, never an answer whose work was rolled back.
    with connection.cursor() as cursor:
        cursor.execute(_STORE, [response.status_code, response.get("Content-Type", ""), response.content, record_id])


def purge_expired(*, chunk: int = PURGE_CHUNK) -> int:
    """Delete the records past their hours, ``chunk`` at a time (one commit each)."""
    cutoff = timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
    deleted = 0
    while True:
        ids = list(IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:chunk])
        if not ids:
            return deleted
        deleted += IdempotencyRecord.objects.filter(id__in=ids).delete()[0]
