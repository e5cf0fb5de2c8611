"""bounded_http.fetch, the one HTTPS request the worker makes to Azure without the SDK: each bound is met against a
small HTTPS server on a loopback port (trustme CA) that answers the way a test asks; and fetch_in_thread, which
never holds up a stopping process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from bounded_http import MAX_FETCH_THREADS, FetchError, fetch, fetch_in_thread

from helpers.processes import REPO_DIR

HANG_BOUND = 10.0  # catches a hang only


class _Handler(BaseHTTPRequestHandler):
    """GET /ok, /redirect (to /secret-target), /big (declares its size), /chunked-big (does not), /drip (slow)."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/ok":
            self._send(200, b'{"ok": true}')
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/secret-target")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/big":
            self._send(200, b"x" * 5000)
        elif self.path == "/chunked-big":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "300")  # 30 s in all, one byte every 0.1 s
            self.end_headers()
            for _ in range(300):
                try:
                    self.wfile.write(b"z")
                    self.wfile.flush()
                except OSError:  # the client gave up, as it should
                    return
                time.sleep(0.1)
        elif self.path == "/drip-headers":  # a header line every 0.3 s, 20 s in all: each read well within timeout
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for n in range(60):
                try:
                    self.wfile.write(f"X-Line-{n}: x\r\n".encode())
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.3)
        elif self.path == "/garbage":
            self.wfile.write(b"GARBAGE\r\n\r\n")
        elif self.path == "/bad-chunks":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        elif self.path == "/two-challenges":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer resource="https://vault.azure.net"')
            self.send_header("WWW-Authenticate", 'PoP nonce="n"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append(self.rfile.read(length))  # type: ignore[attr-defined]
        self._send(200, b"posted")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, ThreadingHTTPServer]]:
    """(base URL, CA file, server) of an HTTPS server on a free loopback port."""
    ca = trustme.CA()
    ca_file = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.paths, httpd.bodies = [], []  # type: ignore[attr-defined]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", ca_file, httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_answer_is_its_status_headers_and_body(server) -> None:
    base, ca_file, _ = server
    reply = fetch(f"{base}/ok", max_bytes=100, timeout_seconds=HANG_BOUND, ca_file=ca_file)
    assert (reply.status, reply.body, reply.headers["content-length"]) == (200, b'{"ok": true}', "12")


def test_a_post_sends_its_body(server) -> None:
    base, ca_file, httpd = server
    reply = fetch(
        f"{base}/token", method="POST", body=b"a=1", max_bytes=100, timeout_seconds=HANG_BOUND, ca_file=ca_file
    )
    assert reply.body == b"posted" and httpd.bodies == [b"a=1"]


def test_only_https_is_spoken(server) -> None:
    base, ca_file, httpd = server
    with pytest.raises(FetchError, match="not an https:// address"):
        fetch(base.replace("https://", "http://") + "/ok", max_bytes=100, timeout_seconds=HANG_BOUND)
    assert httpd.paths == []


def test_a_redirect_is_an_answer_never_followed(server) -> None:
    base, ca_file, httpd = server
    reply = fetch(
        f"{base}/redirect",
        headers={"Authorization": "Bearer t"},
        max_bytes=100,
        timeout_seconds=HANG_BOUND,
        ca_file=ca_file,
    )
    assert reply.status == 302 and reply.headers["location"] == "/secret-target"
    assert httpd.paths == ["/redirect"]  # the token never went to the redirect's target


@pytest.mark.parametrize("path", ["/big", "/chunked-big"], ids=["declared", "chunked"])
def test_an_answer_over_max_bytes_is_refused(server, path: str) -> None:
    base, ca_file, _ = server
    with pytest.raises(FetchError, match="over the limit of 1000"):
        fetch(f"{base}{path}", max_bytes=1000, timeout_seconds=HANG_BOUND, ca_file=ca_file)


def test_an_answer_that_drips_stops_at_the_timeout(server) -> None:
    base, ca_file, _ = server
    started = time.monotonic()
    with pytest.raises(FetchError, match="within 0.5s"):
        fetch(f"{base}/drip", max_bytes=1000, timeout_seconds=0.5, ca_file=ca_file)
    assert time.monotonic() - started < HANG_BOUND  # not the 30 s the whole answer takes


def test_an_untrusted_certificate_is_refused(server, tmp_path: Path) -> None:
    base, _, httpd = server
    other_ca = str(tmp_path / "other.pem")
    trustme.CA().cert_pem.write_to_path(other_ca)
    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(f"{base}/ok", max_bytes=100, timeout_seconds=HANG_BOUND, ca_file=other_ca)


def test_a_closed_port_names_the_address_but_not_the_path(server) -> None:
    base, ca_file, httpd = server
    httpd.shutdown()
    httpd.server_close()
    with pytest.raises(FetchError) as raised:
        fetch(f"{base}/secrets/name-of-a-secret/", max_bytes=100, timeout_seconds=HANG_BOUND, ca_file=ca_file)
    assert base in str(raised.value) and "name-of-a-secret" not in str(raised.value)


def test_from_a_coroutine_the_answer_or_the_error_arrives_as_from_fetch(server) -> None:
    base, ca_file, _ = server

    async def both() -> tuple[int, str]:
        reply = await fetch_in_thread(f"{base}/ok", max_bytes=100, timeout_seconds=HANG_BOUND, ca_file=ca_file)
        with pytest.raises(FetchError) as raised:
            await fetch_in_thread(f"{base}/big", max_bytes=100, timeout_seconds=HANG_BOUND, ca_file=ca_file)
        return reply.status, str(raised.value)

    status, error = asyncio.run(both())
    assert status == 200 and "over the limit of 100" in error


GIVING_UP = """
import asyncio, socket
import bounded_http

silent = socket.socket()  # accepts connections, never answers the TLS handshake
silent.bind(("127.0.0.1", 0))
silent.listen()

async def main():
    url = f"https://127.0.0.1:{silent.getsockname()[1]}/"
    try:
        await asyncio.wait_for(bounded_http.fetch_in_thread(url, max_bytes=100, timeout_seconds=60), 0.2)
    except TimeoutError:
        print("gave up", flush=True)

asyncio.run(main())
"""


def test_a_process_whose_caller_gave_up_exits_without_waiting_for_the_stuck_read() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", GIVING_UP], cwd=REPO_DIR, capture_output=True, text=True, timeout=3 * HANG_BOUND
    )
    assert result.stdout.strip() == "gave up", result.stderr
    assert time.monotonic() - started < HANG_BOUND  # the stuck read itself would have waited 60 s


def test_headers_that_drip_stop_at_the_deadline(server) -> None:
    base, ca_file, _ = server
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not answer within 1s"):
        fetch(f"{base}/drip-headers", max_bytes=1000, timeout_seconds=1, ca_file=ca_file)
    assert time.monotonic() - started < HANG_BOUND  # not the 20 s the headers take


@pytest.mark.parametrize("path", ["/garbage", "/bad-chunks"])
def test_a_malformed_answer_is_a_fetch_error(server, path: str) -> None:
    base, ca_file, _ = server
    with pytest.raises(FetchError, match="no usable answer from"):
        fetch(f"{base}{path}", max_bytes=1000, timeout_seconds=HANG_BOUND, ca_file=ca_file)


def test_a_header_sent_twice_keeps_both_values(server) -> None:
    base, ca_file, _ = server
    reply = fetch(f"{base}/two-challenges", max_bytes=1000, timeout_seconds=HANG_BOUND, ca_file=ca_file)
    assert reply.headers["www-authenticate"].split("\n") == [
        'Bearer resource="https://vault.azure.net"',
        'PoP nonce="n"',
    ]


def test_threads_left_behind_by_callers_that_gave_up_are_capped() -> None:
    with socket.socket() as silent:  # accepts connections, never answers the TLS handshake
        silent.bind(("127.0.0.1", 0))
        silent.listen(32)
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/"

        async def scenario() -> tuple[str, str]:
            for _ in range(MAX_FETCH_THREADS):  # each caller gives up at once; its thread waits out its 2 s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fetch_in_thread(url, max_bytes=10, timeout_seconds=2), 0.01)
            with pytest.raises(FetchError) as refused:
                await fetch_in_thread(url, max_bytes=10, timeout_seconds=2)
            await asyncio.sleep(3)  # the threads reached their deadline
            with pytest.raises(FetchError) as later:
                await fetch_in_thread(url, max_bytes=10, timeout_seconds=0.2)
            return str(refused.value), str(later.value)

        refused, later = asyncio.run(asyncio.wait_for(scenario(), 3 * HANG_BOUND))
    assert "still running" in refused and "did not answer within 0.2s" in later
