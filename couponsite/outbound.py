"""Every outbound HTTP call of the product goes through here: the address guard, a POST
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

import contextlib
import ipaddress
import logging
import math
import socket
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from django.core.cache import cache
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
_READ_CHUNK = 8 * 1024
_MAX_ADDRESSES_TRIED = 3  # each may take the connect timeout
_USER_AGENT = "coupon-pools"

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


def _prepare(session: requests.Session, url: str, payload, *, what: str,
             headers: dict[str, str]) -> requests.PreparedRequest:
    url = (url or "").strip()
    if not url:
        raise OutboundError(f"The {what} is empty.", REFUSED_ADDRESS)
    request = requests.Request(
        "POST",
        url,
        json=payload,
        headers={
            "Accept": "application/json",
            # The size cap counts the bytes received, so compressed answers are refused.
            "Accept-Encoding": "identity",
            "User-Agent": _USER_AGENT,
            **headers,
        },
    )
    try:
        # Preparing normalises the URL (IDNA host, percent-encoding) exactly as it will
        # be sent: the guard checks that URL, not the raw text.
        return session.prepare_request(request)
    except (requests.RequestException, ValueError) as exc:
        raise OutboundError(f"The {what} is not a valid http:// or https:// URL.", REFUSED_ADDRESS) from exc


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


# --- address guard -----------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    hostname: str  # the name from the URL, for SNI and the certificate check
    host_header: str  # the URL's host[:port], as the Host header
    addresses: tuple[str, ...]  # the checked IP addresses, the connection goes to one of them


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_ALWAYS_REFUSED = "always"
_LOOPBACK = "loopback"
_PRIVATE = "private"
_PUBLIC = "public"


def check_url(url: str, *, what: str = "URL", peer: str = "remote system") -> Target:
    """The address guard alone: the URL's checked target, or OutboundError (code
    REFUSED_ADDRESS for a URL that may not be called, UNREACHABLE for a host name that
    does not resolve)."""
    with requests.Session() as session:
        session.trust_env = False
        request = _prepare(session, url, None, what=what, headers={})
    return _checked_target(request.url, what=what, peer=peer)


def _checked_target(url: str, *, what: str, peer: str) -> Target:
    """Resolve the URL's host and refuse it unless every address is acceptable."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise OutboundError(f"The {what} must start with http:// or https://.", REFUSED_ADDRESS)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a port that is not a number or out of range
        raise OutboundError(f"The {what} has an invalid port.", REFUSED_ADDRESS) from exc
    hostname = parts.hostname
    if not hostname:
        raise OutboundError(f"The {what} has no host.", REFUSED_ADDRESS)

    unresolved = OutboundError(f"The {peer} could not be reached (its host name does not resolve).", UNREACHABLE)
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise unresolved from exc
    # sockaddr[0] is the address; an IPv6 link-local one may carry a "%scope" suffix.
    addresses = list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))
    if not addresses:
        raise unresolved

    allow_private = _setting("COUPON_CALLBACK_ALLOW_PRIVATE", False)
    allow_loopback = allow_private or _setting("COUPON_CALLBACK_ALLOW_LOOPBACK", False)
    for text in addresses:
        kind = classify(ipaddress.ip_address(text))
        if kind == _PUBLIC or (kind == _LOOPBACK and allow_loopback) or (kind == _PRIVATE and allow_private):
            continue
        # The message leaves out the address (it would tell how internal names
        # resolve); the log line has it.
        logger.warning("Outbound host %s resolves to refused address %s", hostname, text)
        described = {
            _LOOPBACK: "a loopback (local machine) address",
            _PRIVATE: "a private or link-local network address",
            _ALWAYS_REFUSED: "an unspecified, multicast or reserved address",
        }[kind]
        raise OutboundError(
            f"The {what} points to {described}; the {peer} must be reachable on the public internet.",
            REFUSED_ADDRESS,
        )

    # The request URL keeps the name; only the connection uses the address.
    return Target(hostname=hostname, host_header=parts.netloc.rpartition("@")[2], addresses=tuple(addresses))


def classify(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """"public", "loopback", "private" (private, link-local, not global) or "always"
    (always refused)."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that lead to an IPv4 address are judged by that address.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return classify(embedded)
    # Order matters: Python counts ::1 as reserved too, and loopback may be allowed.
    if ip.is_unspecified:
        return _ALWAYS_REFUSED
    if ip.is_loopback:
        return _LOOPBACK
    if ip.is_multicast or ip.is_reserved:
        return _ALWAYS_REFUSED
    if (
        ip.is_private
        or ip.is_link_local
        or getattr(ip, "is_site_local", False)
        or not ip.is_global  # e.g. 100.64.0.0/10, carrier-grade NAT
    ):
        return _PRIVATE
    return _PUBLIC


class _PinnedAdapter(HTTPAdapter):
    """Connects to one fixed IP address whatever the URL's host, keeping the host name
    for TLS (SNI and certificate check). One adapter serves one request."""

    def __init__(self, address: str, hostname: str):
        self._address = address
        self._hostname = hostname
        super().__init__(max_retries=0)  # a POST that may have had an effect: never retry

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host_params["host"] = self._address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = self._hostname
        return host_params, pool_kwargs


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
            f"The {peer} is already handling {limit} requests from us, the most allowed at once; "
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
