"""The remote pool client against a real local HTTP(S) server standing in for the remote system.

No database: the pools are unsaved ``CouponPool`` objects. The server listens on
127.0.0.1, so every test that really connects allows loopback first (the address guard
refuses it by default, which is tested too).
"""

import gzip
import http.server
import ipaddress
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from decimal import Decimal

import pytest
import requests

from couponsite import outbound
from pools.models import CouponPool, CouponType, PoolSource
from pools.remote import RemoteCodeError, fetch_remote_code

API_KEY = "s3cret-api-key-do-not-log"
LONG_CODE = "X" * 65
MAX_CODE = "M" * 64


class RemoteSystem(http.server.BaseHTTPRequestHandler):
    """One path per behaviour of the remote system; every request is recorded."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep the test output quiet
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.received.append({"path": self.path, "headers": self.headers, "body": body})
        route = self.path.split("?")[0].strip("/")
        getattr(self, f"answer_{route.replace('-', '_')}", self.answer_not_found)()

    def send_json(self, data, status=200):
        self.send_bytes(json.dumps(data).encode(), status)

    def send_bytes(self, body, status=200, content_type="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def answer_not_found(self):
        self.send_json({"error": "no such endpoint"}, status=404)

    def answer_good(self):
        self.send_json({"code": "  GOOD-123\n"})

    def answer_max(self):
        self.send_json({"code": MAX_CODE})

    def answer_slow(self):
        time.sleep(1.5)  # past the read timeout the tests set
        self.send_json({"code": "TOO-LATE"})

    def answer_drip(self):
        # Each byte comes before the read timeout, the whole body long after it.
        body = json.dumps({"code": "DRIP"}).encode().ljust(40)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.1)

    def answer_error(self):
        self.send_json({"error": "boom"}, status=500)

    def answer_garbage(self):
        self.send_bytes(b"<html>Bad gateway</html>", content_type="text/html")

    def answer_list(self):
        self.send_json(["CODE-1"])

    def answer_no_code(self):
        self.send_json({"coupon": "CODE-1"})

    def answer_number(self):
        self.send_json({"code": 12345})

    def answer_blank(self):
        self.send_json({"code": "   "})

    def answer_long(self):
        self.send_json({"code": LONG_CODE})

    def answer_control(self):
        self.send_json({"code": "AB\u0007CD"})

    def answer_zero_width(self):
        self.send_json({"code": "AB\u200bCD"})

    def answer_redirect(self):
        self.send_bytes(b"", status=302, extra=[("Location", "/good")])

    def answer_gzip(self):
        self.send_bytes(
            gzip.compress(json.dumps({"code": "ZIPPED"}).encode()),
            extra=[("Content-Encoding", "gzip")],
        )

    def answer_huge_declared(self):
        # Announces 50 MiB but sends a short valid answer and hangs up: a client that
        # trusted the body instead of refusing the length would see a broken connection.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(50 * 1024 * 1024))
        self.end_headers()
        self.wfile.write(json.dumps({"code": "HUGE"}).encode())
        self.close_connection = True

    def answer_huge(self):
        # No Content-Length: the body ends when the connection closes, i.e. never
        # before the client gives up. Starts as a valid-looking answer.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b'{"code": "HUGE", "padding": "')
        self.stream_forever()

    def stream_forever(self):
        chunk = b"a" * 65536
        self.server.huge_bytes_sent = 0
        for _ in range(50 * 16):  # 50 MiB at most
            try:
                self.wfile.write(chunk)
            except OSError:
                return
            self.server.huge_bytes_sent += len(chunk)
        self.close_connection = True


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass  # the client hanging up on the slow endpoints is expected


def start_server(context=None):
    server = QuietServer(("127.0.0.1", 0), RemoteSystem)
    server.received = []
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def http_server():
    server = start_server()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(http_server):
    http_server.received.clear()
    return http_server


@pytest.fixture
def base_url(server):
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(autouse=True)
def callback_settings(settings):
    """Low timeouts so the slow tests stay fast; the guard at its defaults."""
    settings.COUPON_CALLBACK_CONNECT_TIMEOUT = 0.5
    settings.COUPON_CALLBACK_READ_TIMEOUT = 0.5
    settings.COUPON_CALLBACK_ALLOW_LOOPBACK = False
    settings.COUPON_CALLBACK_ALLOW_PRIVATE = False
    return settings


@pytest.fixture
def loopback_allowed(callback_settings):
    callback_settings.COUPON_CALLBACK_ALLOW_LOOPBACK = True
    return callback_settings


def make_pool(url, coupon_type=CouponType.AMOUNT, value=Decimal("5.00"), **extra):
    return CouponPool(
        name="Remote spring",
        source=PoolSource.REMOTE,
        callback_url=url,
        callback_api_key=API_KEY,
        coupon_type=coupon_type,
        value=value,
        **extra,
    )


def fetch_error(url, customer="CUST-000001", **pool_fields) -> RemoteCodeError:
    with pytest.raises(RemoteCodeError) as caught:
        fetch_remote_code(make_pool(url, **pool_fields), customer)
    return caught.value


# --- a good answer -----------------------------------------------------------------

class TestGoodAnswer:
    @pytest.mark.parametrize(
        "coupon_type, value, expected_value, expected_percentage",
        [
            (CouponType.PERCENTAGE, Decimal("20"), "20.00", "20.00"),
            (CouponType.AMOUNT, Decimal("5.5"), "5.50", None),
            (CouponType.GIFT_CARD, Decimal("50.00"), "50.00", None),
            (CouponType.FREE_SHIPPING, None, None, None),
        ],
    )
    def test_posts_the_spec_payload_and_returns_the_trimmed_code(
        self, loopback_allowed, server, base_url, coupon_type, value, expected_value, expected_percentage
    ):
        pool = make_pool(f"{base_url}/good?pool=spring", coupon_type=coupon_type, value=value)

        assert fetch_remote_code(pool, "CUST-000042") == "GOOD-123"

        [received] = server.received
        assert received["path"] == "/good?pool=spring"
        assert received["headers"]["Content-Type"] == "application/json"
        assert received["headers"]["Host"] == f"127.0.0.1:{server.server_address[1]}"
        assert json.loads(received["body"]) == {
            "api_key": API_KEY,
            "customer": "CUST-000042",
            "type": coupon_type.value,
            "value": expected_value,
            "coupon_percentage": expected_percentage,
        }

    def test_a_code_of_the_maximum_length_is_accepted(self, loopback_allowed, base_url):
        assert fetch_remote_code(make_pool(f"{base_url}/max"), "CUST-000001") == MAX_CODE

    def test_failures_are_logged_without_the_api_key(self, loopback_allowed, base_url, caplog):
        with caplog.at_level(logging.WARNING, logger="pools.remote"):
            error = fetch_error(f"{base_url}/error")
        assert error.code == "remote_status"
        assert caplog.records and all(r.levelno == logging.WARNING for r in caplog.records)
        assert "remote_status" in caplog.text
        assert API_KEY not in caplog.text


# --- bad answers ---------------------------------------------------------------------

class TestBadAnswers:
    @pytest.mark.parametrize(
        "path, code, message",
        [
            ("error", "remote_status", "HTTP 500"),
            ("missing", "remote_status", "HTTP 404"),
            ("garbage", "remote_not_json", "not valid JSON"),
            ("list", "remote_not_json", "not a JSON object"),
            ("gzip", "remote_not_json", "compressed"),
            ("no-code", "remote_bad_code", 'has no "code"'),
            ("number", "remote_bad_code", "not a string (got a number)"),
            ("blank", "remote_bad_code", "is empty"),
            ("long", "remote_bad_code", "65 characters long; codes can be at most 64"),
            ("control", "remote_bad_code", "control or invisible character (U+0007)"),
            ("zero-width", "remote_bad_code", "(U+200B)"),
        ],
    )
    def test_is_a_clear_error(self, loopback_allowed, server, base_url, path, code, message):
        error = fetch_error(f"{base_url}/{path}")
        assert error.code == code
        assert message in str(error)
        assert len(server.received) == 1  # asked once, never retried

    def test_a_redirect_is_not_followed(self, loopback_allowed, server, base_url):
        error = fetch_error(f"{base_url}/redirect")
        assert error.code == "remote_status"
        assert "redirect (HTTP 302)" in str(error)
        assert [r["path"] for r in server.received] == ["/redirect"]

    def test_a_slow_answer_times_out(self, loopback_allowed, base_url):
        started = time.monotonic()
        error = fetch_error(f"{base_url}/slow")
        assert error.code == "remote_timeout"
        assert "did not answer within 0.5 s" in str(error)
        assert time.monotonic() - started < 1.4  # gave up before the answer came

    def test_a_body_trickling_in_stops_at_the_deadline(self, loopback_allowed, base_url):
        # Every byte arrives within the read timeout; the 40-byte body would take 4 s.
        started = time.monotonic()
        error = fetch_error(f"{base_url}/drip")
        assert error.code == "remote_timeout"
        assert "whole answer in time" in str(error)
        assert time.monotonic() - started < 2.5

    def test_a_huge_body_is_cut_off(self, loopback_allowed, server, base_url):
        error = fetch_error(f"{base_url}/huge")
        assert error.code == "remote_too_large"
        assert "larger than 64 KiB" in str(error)
        # The client hung up long before the 50 MiB the server would have sent.
        time.sleep(0.2)
        assert server.huge_bytes_sent < 10 * 1024 * 1024

    def test_a_huge_declared_length_is_refused_before_reading(self, loopback_allowed, base_url):
        error = fetch_error(f"{base_url}/huge-declared")
        assert error.code == "remote_too_large"

    def test_nothing_is_taken_from_the_environment(self, loopback_allowed, server, base_url, monkeypatch, tmp_path):
        # A proxy that does not exist, and .netrc credentials for the remote host.
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, "http://127.0.0.1:9")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login someone password secret\n")
        monkeypatch.setenv("NETRC", str(netrc))

        assert fetch_remote_code(make_pool(f"{base_url}/good"), "CUST-000001") == "GOOD-123"
        assert "Authorization" not in server.received[0]["headers"]

    def test_a_closed_port_is_unreachable(self, loopback_allowed):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        error = fetch_error(f"http://127.0.0.1:{port}/good")
        assert error.code == "remote_unreachable"
        assert "could not be reached" in str(error)

    def test_a_name_that_does_not_resolve_is_unreachable(self, fake_dns):
        fake_dns.answers["nowhere.example"] = []
        error = fetch_error("https://nowhere.example/code")
        assert error.code == "remote_unreachable"
        assert "does not resolve" in str(error)

    def test_a_pool_without_callback_url(self):
        assert fetch_error("").code == "remote_refused_address"


# --- address guard -------------------------------------------------------------------

class TestAddressGuard:
    def test_loopback_is_refused_by_default(self, server, base_url):
        error = fetch_error(f"{base_url}/good")
        assert error.code == "remote_refused_address"
        assert "loopback" in str(error)
        assert server.received == []  # refused before connecting

    def test_loopback_is_allowed_by_its_setting(self, loopback_allowed, base_url):
        assert fetch_remote_code(make_pool(f"{base_url}/good"), "CUST-000001") == "GOOD-123"

    def test_allow_private_includes_loopback(self, callback_settings, base_url):
        callback_settings.COUPON_CALLBACK_ALLOW_PRIVATE = True
        assert fetch_remote_code(make_pool(f"{base_url}/good"), "CUST-000001") == "GOOD-123"

    @pytest.mark.parametrize(
        "url, kind",
        [
            ("http://10.0.0.1/code", "private"),
            ("http://169.254.169.254/latest/meta-data/", "private or link-local"),
            ("http://192.168.1.1:8080/code", "private"),
            ("http://172.16.5.4/code", "private"),
            ("http://100.64.0.1/code", "private"),  # carrier-grade NAT: not public
            ("http://[fd00::1]/code", "private"),
            ("http://[fe80::1]/code", "link-local"),
            ("http://[::ffff:169.254.169.254]/code", "private or link-local"),
            ("http://0.0.0.0:8000/code", "unspecified"),
            ("http://[::]/code", "unspecified"),
            ("http://224.0.0.1/code", "multicast"),
            ("http://240.0.0.1/code", "reserved"),
        ],
    )
    def test_internal_addresses_are_refused_even_with_loopback_allowed(self, loopback_allowed, url, kind):
        error = fetch_error(url)
        assert error.code == "remote_refused_address"
        assert kind in str(error)

    @pytest.mark.parametrize(
        "url",
        [
            "http://localhost:{port}/good",
            "http://127.0.0.2:{port}/good",
            "http://2130706433:{port}/good",  # 127.0.0.1 written as one number
            "http://[::1]:{port}/good",
            "http://[::ffff:127.0.0.1]:{port}/good",  # IPv4-mapped IPv6
        ],
    )
    def test_loopback_in_any_spelling_is_refused(self, server, url):
        error = fetch_error(url.format(port=server.server_address[1]))
        assert error.code == "remote_refused_address"
        assert "loopback" in str(error)
        assert server.received == []

    def test_localhost_is_allowed_with_loopback_and_keeps_its_name(self, loopback_allowed, server):
        port = server.server_address[1]
        assert fetch_remote_code(make_pool(f"http://localhost:{port}/good"), "CUST-000001") == "GOOD-123"
        assert server.received[0]["headers"]["Host"] == f"localhost:{port}"

    def test_unspecified_multicast_and_reserved_stay_refused_with_private_allowed(self, callback_settings):
        callback_settings.COUPON_CALLBACK_ALLOW_PRIVATE = True
        for url in ("http://0.0.0.0/", "http://224.0.0.1/", "http://240.0.0.1/"):
            assert fetch_error(url).code == "remote_refused_address", url

    def test_allow_private_lets_a_private_address_through(self, callback_settings):
        callback_settings.COUPON_CALLBACK_ALLOW_PRIVATE = True
        callback_settings.COUPON_CALLBACK_CONNECT_TIMEOUT = 0.1
        # What 10.255.255.1 does depends on the network (nothing, a refusal, an answer),
        # but the guard must let it through.
        try:
            fetch_remote_code(make_pool("http://10.255.255.1/code"), "CUST-000001")
        except RemoteCodeError as error:
            assert error.code != "remote_refused_address"

    def test_a_name_with_any_internal_address_is_refused(self, loopback_allowed, fake_dns):
        fake_dns.answers["mixed.example"] = [["93.184.215.14", "10.1.2.3"]]
        error = fetch_error("https://mixed.example/code")
        assert error.code == "remote_refused_address"

    def test_dns_rebinding_cannot_redirect_the_connection(self, loopback_allowed, fake_dns, server):
        # First lookup (the check): loopback, allowed here. Any later lookup fails, so the
        # request only succeeds if it connects to the checked address without resolving again.
        port = server.server_address[1]
        fake_dns.answers["rebind.example"] = [["127.0.0.1"]]
        assert fetch_remote_code(make_pool(f"http://rebind.example:{port}/good"), "C-1") == "GOOD-123"
        assert fake_dns.lookups == ["rebind.example"]
        assert server.received[0]["headers"]["Host"] == f"rebind.example:{port}"

    def test_the_next_address_is_tried_when_one_refuses_connections(self, loopback_allowed, fake_dns, server):
        port = server.server_address[1]
        fake_dns.answers["dual.example"] = [["127.0.0.3", "127.0.0.1"]]  # nothing on 127.0.0.3
        assert fetch_remote_code(make_pool(f"http://dual.example:{port}/good"), "C-1") == "GOOD-123"
        assert len(server.received) == 1

    @pytest.mark.parametrize(
        "url", ["ftp://example.com/code", "file:///etc/passwd", "gopher://example.com/", "example.com/code"]
    )
    def test_only_http_and_https(self, url):
        error = fetch_error(url)
        assert error.code == "remote_refused_address"
        assert "http://" in str(error)

    @pytest.mark.parametrize(
        "address, kind",
        [
            ("8.8.8.8", "public"),
            ("2606:4700:4700::1111", "public"),
            ("::ffff:8.8.8.8", "public"),
            ("64:ff9b::808:808", "public"),  # NAT64 of 8.8.8.8
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("10.0.0.1", "private"),
            ("fec0::1", "private"),  # deprecated site-local
            ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
            ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
            ("255.255.255.255", "always"),
            ("ff02::1", "always"),
        ],
    )
    def test_address_classes(self, address, kind):
        assert outbound.classify(ipaddress.ip_address(address)) == kind


# --- https: the pinned address keeps the name for TLS --------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate: apt-get install openssl (.ci/run does)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=remote.example",
         "-addext", "subjectAltName=DNS:remote.example"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def https_server(certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = start_server(context)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def trusts_test_certificate(monkeypatch, certificate):
    # requests verifies against this bundle when verify=True.
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(certificate[0]))


class TestHttps:
    def test_certificate_is_checked_against_the_name_not_the_address(
        self, loopback_allowed, fake_dns, https_server, trusts_test_certificate
    ):
        # The certificate names remote.example only: connecting to 127.0.0.1 works only
        # if SNI and the hostname check use the name.
        https_server.received.clear()
        port = https_server.server_address[1]
        fake_dns.answers["remote.example"] = [["127.0.0.1"]]
        pool = make_pool(f"https://remote.example:{port}/good")
        assert fetch_remote_code(pool, "CUST-000001") == "GOOD-123"
        assert fake_dns.lookups == ["remote.example"]
        assert https_server.received[0]["headers"]["Host"] == f"remote.example:{port}"

    def test_a_certificate_for_another_name_is_refused(
        self, loopback_allowed, fake_dns, https_server, trusts_test_certificate
    ):
        port = https_server.server_address[1]
        fake_dns.answers["other.example"] = [["127.0.0.1"]]
        error = fetch_error(f"https://other.example:{port}/good")
        assert error.code == "remote_unreachable"
        assert "TLS" in str(error)

    def test_an_untrusted_certificate_is_refused(self, loopback_allowed, fake_dns, https_server):
        port = https_server.server_address[1]
        fake_dns.answers["remote.example"] = [["127.0.0.1"]]
        error = fetch_error(f"https://remote.example:{port}/good")
        assert error.code == "remote_unreachable"
        assert "TLS" in str(error)
