"""The address guard (server-side request forgery): see the package docstring."""
from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

from .errors import REFUSED_ADDRESS, UNREACHABLE, OutboundError, _setting


@dataclass(frozen=True)
class Target:
    hostname: str  # the name from the URL, for SNI and the certificate check
    host_header: str  # the URL's host[:port], as the Host header
    addresses: tuple[str, ...]  # the checked IP addresses, the connection goes to one of them


_USER_AGENT = "coupon-pools"


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
