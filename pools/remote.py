"""Ask a remote pool's callback URL for a coupon code (SPEC section 2, ``remote`` pools).

``fetch_remote_code(pool, customer_external_id)`` POSTs

    {"api_key": ..., "customer": ..., "type": ..., "value": "20.00" | null,
     "coupon_percentage": "20.00" | null}

to ``pool.callback_url`` and returns the trimmed ``code`` of the answer ``{"code": "..."}``.
Every failure raises ``RemoteCodeError`` (a message for a manager or an API client, and
a short machine ``code``) and is logged at warning level, without the API key. Nothing is
created here and duplicates are not checked: the caller does both in the database.

Limits, all from Django settings:

- ``COUPON_CALLBACK_CONNECT_TIMEOUT`` (default 2.0 s) and ``COUPON_CALLBACK_READ_TIMEOUT``
  (default 5.0 s). The read timeout bounds each wait for data; on top of that the whole
  body must arrive within connect + read timeout, so a server that trickles one byte at a
  time cannot hold a worker for long.
- No redirects are followed (a 3xx answer is an error), no retries, no proxies or
  ``.netrc`` from the environment, and at most ``MAX_RESPONSE_BYTES`` of body are read.

Server-side request forgery guard. A manager chooses the callback URL, so it must not be
a way to reach the installation's own network (databases, cloud metadata at
169.254.169.254, admin ports on localhost). Before connecting, the URL's host is resolved
and the request is refused if ANY of its addresses is unspecified, loopback, multicast,
reserved, private, link-local or otherwise not public (IPv4 addresses embedded in IPv6 ones
-- IPv4-mapped, NAT64, 6to4 -- are judged as the IPv4 address they lead to).
``COUPON_CALLBACK_ALLOW_LOOPBACK`` (default False) lets loopback through, for local
development and tests; ``COUPON_CALLBACK_ALLOW_PRIVATE`` (default False) lets private,
link-local and loopback addresses through, for a remote system on the same private
network. Unspecified, multicast and reserved addresses are always refused.

DNS rebinding: checking a name and then letting the HTTP library resolve it again would
let a hostile DNS server answer "public" to the check and "127.0.0.1" to the connection.
So the connection goes to an address that was checked: ``_PinnedAdapter`` (a requests
``HTTPAdapter``) hands urllib3 the checked IP address as the host to connect to,
while the request keeps the real name where it matters -- the ``Host`` header, and for
https the TLS ``server_hostname``, which urllib3 uses both for SNI and for checking the
certificate. Certificate verification therefore works exactly as with the name, and no
second DNS lookup happens. When an address cannot be connected to (refused, no route,
connect timeout), the next checked one is tried, up to three, as clients usually do.

Residual risks: ``socket.getaddrinfo`` has no timeout of its own (the system resolver's
applies); a server that trickles its status line and headers one byte at a time is only
bounded by the per-read timeout.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from requests.adapters import HTTPAdapter

from .models import CouponType
from .patterns import MAX_CODE_LENGTH

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
_READ_CHUNK = 8 * 1024
_MAX_ADDRESSES_TRIED = 3  # each may take the connect timeout
_USER_AGENT = "coupon-pools remote-pool client"

# Error codes (RemoteCodeError.code).
TIMEOUT = "remote_timeout"
STATUS = "remote_status"
NOT_JSON = "remote_not_json"
TOO_LARGE = "remote_too_large"
BAD_CODE = "remote_bad_code"
REFUSED_ADDRESS = "remote_refused_address"
UNREACHABLE = "remote_unreachable"


class RemoteCodeError(Exception):
    """The remote system did not give a usable code. ``str()`` says why, for a manager or
    an API client; ``code`` is one of the ``remote_*`` constants of this module."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def fetch_remote_code(pool, customer_external_id: str) -> str:
    """Ask ``pool``'s callback URL for a code for the customer; return it, trimmed.

    Raises RemoteCodeError on any failure (see the module docstring).
    """
    try:
        return _fetch(pool, customer_external_id)
    except RemoteCodeError as error:
        # Never log the payload: it holds the API key.
        logger.warning(
            "Remote pool %s (%s): %s: %s",
            pool.pk,
            _host_for_log(pool.callback_url),
            error.code,
            error,
        )
        raise


def _fetch(pool, customer_external_id: str) -> str:
    connect_timeout = float(getattr(settings, "COUPON_CALLBACK_CONNECT_TIMEOUT", 2.0))
    read_timeout = float(getattr(settings, "COUPON_CALLBACK_READ_TIMEOUT", 5.0))

    with requests.Session() as session:
        # Environment proxies would send the request somewhere else than the checked
        # address, and .netrc credentials have no business here.
        session.trust_env = False
        request = _prepare(session, pool, customer_external_id)
        target = _checked_target(request.url)
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
                raise _request_error(exc, connect_timeout, read_timeout) from exc

        with response:
            _check_status(response)
            deadline = started + connect_timeout + read_timeout
            body = _read_body(response, deadline, read_timeout)
    return _code_from_body(body)


def _never_connected(exc: requests.RequestException) -> bool:
    """True when the TCP connection itself failed (refused, unreachable, timed out)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # urllib3's NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError.
    return isinstance(reason, urllib3.exceptions.ConnectTimeoutError)


def _request_error(exc: requests.RequestException, connect_timeout: float, read_timeout: float) -> RemoteCodeError:
    if isinstance(exc, requests.ConnectTimeout):
        # ConnectTimeout is also a ConnectionError: test for timeouts first.
        return RemoteCodeError(
            f"The remote coupon system did not accept a connection within {connect_timeout:g} s.",
            TIMEOUT,
        )
    if isinstance(exc, requests.Timeout):
        return RemoteCodeError(
            f"The remote coupon system did not answer within {read_timeout:g} s.", TIMEOUT
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return RemoteCodeError(
            "The secure connection to the remote coupon system failed (TLS error, "
            "e.g. an invalid certificate).",
            UNREACHABLE,
        )
    return RemoteCodeError(
        "The remote coupon system could not be reached (connection failed).", UNREACHABLE
    )


def _prepare(session: requests.Session, pool, customer_external_id: str) -> requests.PreparedRequest:
    url = (pool.callback_url or "").strip()
    if not url:
        raise RemoteCodeError("The pool has no callback URL.", REFUSED_ADDRESS)
    request = requests.Request(
        "POST",
        url,
        json=_payload(pool, customer_external_id),
        headers={
            "Accept": "application/json",
            # The size cap counts the bytes received, so compressed answers are refused.
            "Accept-Encoding": "identity",
            "User-Agent": _USER_AGENT,
        },
    )
    try:
        # Preparing normalises the URL (IDNA host, percent-encoding) exactly as it will
        # be sent: the guard below checks that URL, not the raw text.
        return session.prepare_request(request)
    except (requests.RequestException, ValueError) as exc:
        raise RemoteCodeError(
            "The pool's callback URL is not a valid http:// or https:// URL.", REFUSED_ADDRESS
        ) from exc


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


# --- address guard -----------------------------------------------------------------

@dataclass(frozen=True)
class _Target:
    hostname: str  # the name from the URL, for SNI and the certificate check
    host_header: str  # the URL's host[:port], as the Host header
    addresses: tuple[str, ...]  # the checked IP addresses, the connection goes to one of them


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_ALWAYS_REFUSED = "always"
_LOOPBACK = "loopback"
_PRIVATE = "private"
_PUBLIC = "public"


def _checked_target(url: str) -> _Target:
    """Resolve the URL's host and refuse it unless every address is acceptable."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RemoteCodeError(
            "The pool's callback URL must start with http:// or https://.", REFUSED_ADDRESS
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a port that is not a number or out of range
        raise RemoteCodeError("The pool's callback URL has an invalid port.", REFUSED_ADDRESS) from exc
    hostname = parts.hostname
    if not hostname:
        raise RemoteCodeError("The pool's callback URL has no host.", REFUSED_ADDRESS)

    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise RemoteCodeError(
            "The remote coupon system could not be reached (its host name does not resolve).",
            UNREACHABLE,
        ) from exc
    # sockaddr[0] is the address; an IPv6 link-local one may carry a "%scope" suffix.
    addresses = list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))
    if not addresses:
        raise RemoteCodeError(
            "The remote coupon system could not be reached (its host name does not resolve).",
            UNREACHABLE,
        )

    allow_private = bool(getattr(settings, "COUPON_CALLBACK_ALLOW_PRIVATE", False))
    allow_loopback = allow_private or bool(getattr(settings, "COUPON_CALLBACK_ALLOW_LOOPBACK", False))
    for text in addresses:
        kind = _classify(ipaddress.ip_address(text))
        if kind == _PUBLIC or (kind == _LOOPBACK and allow_loopback) or (
            kind == _PRIVATE and allow_private
        ):
            continue
        # The message leaves out the address (it would tell how internal names
        # resolve); the log line has it.
        logger.warning("Remote pool callback host %s resolves to refused address %s", hostname, text)
        described = {
            _LOOPBACK: "a loopback (local machine) address",
            _PRIVATE: "a private or link-local network address",
            _ALWAYS_REFUSED: "an unspecified, multicast or reserved address",
        }[kind]
        raise RemoteCodeError(
            f"The pool's callback URL points to {described}; remote coupon systems "
            "must be reachable on the public internet.",
            REFUSED_ADDRESS,
        )

    # The request URL keeps the name; only the connection uses the address.
    return _Target(
        hostname=hostname,
        host_header=parts.netloc.rpartition("@")[2],
        addresses=tuple(addresses),
    )


def _classify(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """_PUBLIC, _LOOPBACK, _PRIVATE (private, link-local, not global) or _ALWAYS_REFUSED."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that lead to an IPv4 address are judged by that address.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _classify(embedded)
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
        super().__init__(max_retries=0)  # a POST that may have issued a code: never retry

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host_params["host"] = self._address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = self._hostname
        return host_params, pool_kwargs


# --- answer ------------------------------------------------------------------------

def _check_status(response: requests.Response) -> None:
    status = response.status_code
    if 300 <= status < 400:
        raise RemoteCodeError(
            f"The remote coupon system answered with a redirect (HTTP {status}); "
            "redirects are not followed, so the callback URL must be the final address.",
            STATUS,
        )
    if not 200 <= status < 300:
        reason = f" {response.reason}" if response.reason else ""
        raise RemoteCodeError(
            f"The remote coupon system answered with an error (HTTP {status}{reason}).", STATUS
        )


def _read_body(response: requests.Response, deadline: float, read_timeout: float) -> bytes:
    """At most MAX_RESPONSE_BYTES of body, all of it before ``deadline``."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RemoteCodeError(
            f"The remote coupon system answered with a compressed body ({encoding}), "
            "which was not asked for.",
            NOT_JSON,
        )
    too_large = RemoteCodeError(
        f"The remote coupon system's answer is larger than {MAX_RESPONSE_BYTES // 1024} KiB.",
        TOO_LARGE,
    )
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise too_large

    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise RemoteCodeError(
                    f"The remote coupon system did not send its whole answer in time "
                    f"(read timeout {read_timeout:g} s).",
                    TIMEOUT,
                )
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
        raise RemoteCodeError(
            f"The remote coupon system did not send its whole answer in time "
            f"(read timeout {read_timeout:g} s).",
            TIMEOUT,
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise RemoteCodeError(
            "The connection to the remote coupon system broke while reading its answer.",
            UNREACHABLE,
        ) from exc
    return b"".join(chunks)


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


def _host_for_log(url: str | None) -> str:
    """scheme://host[:port] of the URL, without credentials, path or query."""
    try:
        parts = urlsplit(url or "")
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else "-"
    except ValueError:
        return "(invalid URL)"
