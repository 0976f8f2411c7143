"""Every outbound HTTP call of the product goes through here (``errors``, ``addresses``:
the address guard, ``breaker``: cap and circuit breaker; the call itself below): the address guard, a POST
with hard limits, a concurrency cap and a circuit breaker per target.

``post_json(url, payload, peer=..., key=...)`` POSTs a JSON body and returns the answer's
body (bytes) for a 2xx answer; every failure raises ``OutboundError`` (a message fit for a
manager or an API client, naming the ``peer`` -- "remote coupon system", ... -- and a
short machine ``code``). ``check_url(url, what=...)`` is the address guard alone, for
validating a URL when it is saved.

Limits, all from Django settings:

- ``COUPON_CALLBACK_CONNECT_TIMEOUT`` (default 2.0 s) and ``COUPON_CALLBACK_READ_TIMEOUT``
  (default 5.0 s). The read timeout bounds each wait for data; on top of that the whole
  body must arrive within connect + read timeout, so a server that trickles one byte at a
  time cannot hold a thread for long.
- No redirects are followed (a 3xx answer is an error), no retries, no proxies or
  ``.netrc`` from the environment, and at most ``MAX_RESPONSE_BYTES`` of body are read.
- ``COUPON_CALLBACK_MAX_CONCURRENT`` (default 4): at most that many calls to one target
  (``key``, e.g. one remote pool) run at once across every web and worker process (slots
  in Django's cache, Redis in production); one more is refused at once with ``BUSY``
  instead of taking another web thread. A slot of a process killed mid-call frees itself
  after the longest a call may take.
- ``COUPON_CALLBACK_BREAKER_FAILURES`` (default 5) failures in a row open the target's
  circuit for ``COUPON_CALLBACK_BREAKER_SECONDS`` (default 30 s): calls are refused at once
  with ``PAUSED``. Then one call is let through; if it fails too the circuit opens again at
  once, if it succeeds everything is forgotten. Only the target's own faults count
  (time-outs, unreachable, error statuses, unusable answers, reported by the caller through
  ``record_failure``); a refused address or a full target does not.

Server-side request forgery guard. A manager chooses the URL, so it must not be a way to
reach the installation's own network (databases, cloud metadata at 169.254.169.254, admin
ports on localhost). Before connecting, the URL's host is resolved and the request is
refused if ANY of its addresses is unspecified, loopback, multicast, reserved, private,
link-local or otherwise not public (IPv4 addresses embedded in IPv6 ones -- IPv4-mapped,
NAT64, 6to4 -- are judged as the IPv4 address they lead to).
``COUPON_CALLBACK_ALLOW_LOOPBACK`` (default False) lets loopback through, for local
development and tests; ``COUPON_CALLBACK_ALLOW_PRIVATE`` (default False) lets private,
link-local and loopback addresses through, for a system on the same private network.
Unspecified, multicast and reserved addresses are always refused.

DNS rebinding: checking a name and then letting the HTTP library resolve it again would
let a hostile DNS server answer "public" to the check and "127.0.0.1" to the connection.
So the connection goes to an address that was checked: ``_PinnedAdapter`` (a requests
``HTTPAdapter``) hands urllib3 the checked IP address as the host to connect to, while the
request keeps the real name where it matters -- the ``Host`` header, and for https the TLS
``server_hostname``, which urllib3 uses both for SNI and for checking the certificate.
Certificate verification therefore works exactly as with the name, and no second DNS
lookup happens. When an address cannot be connected to (refused, no route, connect
timeout), the next checked one is tried, up to three, as clients usually do.

Residual risks: ``socket.getaddrinfo`` has no timeout of its own (the system resolver's
applies); a server that trickles its status line and headers one byte at a time is only
bounded by the per-read timeout.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import requests
import urllib3

from .addresses import Target, _checked_target, _PinnedAdapter, _prepare, check_url, classify
from .breaker import _check_breaker, _slot, breaker_state, record_failure, record_success
from .errors import (
    _MAX_ADDRESSES_TRIED,
    BUSY,
    NOT_JSON,
    PAUSED,
    REFUSED_ADDRESS,
    STATUS,
    TIMEOUT,
    TOO_LARGE,
    UNREACHABLE,
    OutboundError,
    _timeouts,
)

__all__ = [
    "BUSY", "NOT_JSON", "PAUSED", "REFUSED_ADDRESS", "STATUS", "TIMEOUT", "TOO_LARGE", "UNREACHABLE", "OutboundError",
    "Target", "breaker_state", "check_url", "classify", "host_for_log", "post_json", "record_failure", "record_success",
]

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
_READ_CHUNK = 8 * 1024


# --- the call ----------------------------------------------------------------------

def post_json(url: str, payload, *, peer: str, key: str, what: str = "URL",
              headers: dict[str, str] | None = None) -> bytes:
    """POST ``payload`` as JSON to ``url``; the body of the 2xx answer.

    ``peer`` names the other side in messages ("remote coupon system"), ``what`` the URL
    ("callback URL"), ``key`` the target for the concurrency cap and the breaker
    ("pool-12"). The caller reports an unusable answer with ``record_failure(key)``.
    """
    _check_breaker(key, peer)
    with _slot(key, peer):
        try:
            body = _post(url, payload, peer=peer, what=what, headers=headers or {})
        except OutboundError as error:
            if error.code != REFUSED_ADDRESS:
                record_failure(key)
            raise
    return body


def _post(url: str, payload, *, peer: str, what: str, headers: dict[str, str]) -> bytes:
    connect_timeout, read_timeout = _timeouts()
    with requests.Session() as session:
        # Environment proxies would send the request somewhere else than the checked
        # address, and .netrc credentials have no business here.
        session.trust_env = False
        request = _prepare(session, url, payload, what=what, headers=headers)
        target = _checked_target(request.url, what=what, peer=peer)
        request.headers["Host"] = target.host_header

        # Like any client, try the host's next address when one cannot be connected
        # to (e.g. an IPv6 address without an IPv6 route) -- only then, as nothing
        # has been sent yet; a POST that reached the server is never repeated.
        addresses = target.addresses[:_MAX_ADDRESSES_TRIED]
        for index, address in enumerate(addresses):
            adapter = _PinnedAdapter(address, target.hostname)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            started = time.monotonic()
            try:
                response = session.send(
                    request,
                    timeout=(connect_timeout, read_timeout),
                    allow_redirects=False,
                    stream=True,
                    proxies={},
                )
                break
            except requests.RequestException as exc:
                adapter.close()
                if index + 1 < len(addresses) and _never_connected(exc):
                    continue
                raise _request_error(exc, peer, connect_timeout, read_timeout) from exc

        with response:
            _check_status(response, peer, what)
            deadline = started + connect_timeout + read_timeout
            return _read_body(response, peer, deadline, read_timeout)


def _never_connected(exc: requests.RequestException) -> bool:
    """True when the TCP connection itself failed (refused, unreachable, timed out)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # urllib3's NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError.
    return isinstance(reason, urllib3.exceptions.ConnectTimeoutError)


def _request_error(exc: requests.RequestException, peer: str, connect_timeout: float,
                   read_timeout: float) -> OutboundError:
    if isinstance(exc, requests.ConnectTimeout):
        # ConnectTimeout is also a ConnectionError: test for timeouts first.
        return OutboundError(f"The {peer} did not accept a connection within {connect_timeout:g} s.", TIMEOUT)
    if isinstance(exc, requests.Timeout):
        return OutboundError(f"The {peer} did not answer within {read_timeout:g} s.", TIMEOUT)
    if isinstance(exc, requests.exceptions.SSLError):
        return OutboundError(
            f"The secure connection to the {peer} failed (TLS error, e.g. an invalid certificate).",
            UNREACHABLE,
        )
    return OutboundError(f"The {peer} could not be reached (connection failed).", UNREACHABLE)




# --- answer ------------------------------------------------------------------------

def _check_status(response: requests.Response, peer: str, what: str) -> None:
    status = response.status_code
    if 300 <= status < 400:
        raise OutboundError(
            f"The {peer} answered with a redirect (HTTP {status}); redirects are not "
            f"followed, so the {what} must be the final address.",
            STATUS,
        )
    if not 200 <= status < 300:
        reason = f" {response.reason}" if response.reason else ""
        raise OutboundError(f"The {peer} answered with an error (HTTP {status}{reason}).", STATUS)


def _read_body(response: requests.Response, peer: str, deadline: float, read_timeout: float) -> bytes:
    """At most MAX_RESPONSE_BYTES of body, all of it before ``deadline``."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise OutboundError(
            f"The {peer} answered with a compressed body ({encoding}), which was not asked for.", NOT_JSON
        )
    too_large = OutboundError(f"The {peer}'s answer is larger than {MAX_RESPONSE_BYTES // 1024} KiB.", TOO_LARGE)
    late = OutboundError(f"The {peer} did not send its whole answer in time (read timeout {read_timeout:g} s).",
                         TIMEOUT)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise too_large

    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise late
            # read1 returns whatever one socket read gives, so each call waits at most
            # the read timeout and the deadline is checked in between (read() would
            # block until the whole chunk arrived).
            chunk = response.raw.read1(_READ_CHUNK, decode_content=False)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise too_large
            chunks.append(chunk)
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise late from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise OutboundError(f"The connection to the {peer} broke while reading its answer.", UNREACHABLE) from exc
    return b"".join(chunks)


def host_for_log(url: str | None) -> str:
    """scheme://host[:port] of the URL, without credentials, path or query."""
    try:
        parts = urlsplit(url or "")
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else "-"
    except ValueError:
        return "(invalid URL)"


# --- concurrency cap and circuit breaker (shared through Django's cache) -------------


