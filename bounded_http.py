"""Bounded HTTP: a small server for ports every pod in the cluster can reach (the worker's health and metrics),
and one bounded HTTPS request for the Azure endpoints the worker reads without the Azure SDK.

Public API:
    Limits, DEFAULT_LIMITS                   # the bounds below, one frozen dataclass; its defaults
    Response(status, body, content_type)     # what a handler answers
    Handler                                  # async (method, path) -> Response
    BoundedHttpServer(address, port, handler, name, limits)   # await start() (OSError: port taken), await stop()
    HttpRelay(port, path, limits)            # a Handler that passes GET `path` on to 127.0.0.1:port, bounded
    fetch(url, max_bytes=, timeout_seconds=, ...) -> Reply(status, headers, body)   # blocking; FetchError
    await fetch_in_thread(url, max_bytes=, timeout_seconds=, ...) -> Reply        # the same, in a daemon thread

Why not aiohttp or the SDK's exporter: neither bounds what a client may hold. 300 connections that sent half a
request header stayed open for 100 s (0 closed) on the health port, and with a soft limit of 256 file
descriptors the worker could no longer open a socket to Temporal and logged 10,479 `accept() out of system
resource` tracebacks in 8 s. Here every connection is bounded before any work is done (defaults of `Limits`):

    max_connections          32    open connections at once; one more makes room at once by closing the
                                   oldest that has not sent its whole request yet (so a probe that sends its
                                   request at once is answered however many stall), or, when none is
                                   waiting for a request, is itself closed at once
    header_timeout_seconds   5     the request line and headers must have arrived this long after accept (the
                                   idle timeout too: one request per connection, answered with
                                   `Connection: close`, so no connection ever waits for a second one)
    max_header_bytes         8192  request line and headers; beyond, 431 and the connection closed
    answer_timeout_seconds   10    the handler's answer (e.g. a metrics scrape relayed), else 503
    write_timeout_seconds    10    the answer written to the client, else the connection is dropped
    max_relayed_bytes        16 MiB  what HttpRelay reads from upstream (a scrape is ~100 kB), else 502
    max_relays               2     HttpRelay's scrapes at once; one more is answered 503 at once

When the process runs out of file descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM), accepting pauses for
ACCEPT_PAUSE_SECONDS and one WARNING line says so, at most once every EXHAUSTION_LOG_INTERVAL_SECONDS, never a
traceback. Only GET and HEAD are answered (405 otherwise); a request body is never read.

The client side (`fetch`, used by azure_identity.py and keyvault.py to read Key Vault under workload identity)
is bounded the same way before it uses an answer: https only, no redirects followed, the body capped by the
caller's `max_bytes`, time by `timeout_seconds`, one connection per call. It is the standard library's urllib
in a thread: ~1 MiB, where the Azure SDK's async stack (azure-core, azure-identity with msal and requests,
aiohttp) is ~23 MiB, a third of a bare worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import urllib.request

MIB = 1024 * 1024
ACCEPT_PAUSE_SECONDS = 0.5
EXHAUSTION_LOG_INTERVAL_SECONDS = 60.0
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

logger = logging.getLogger("bounded_http")


@dataclass(frozen=True)
class Limits:
    """What one port may cost; the module's docstring says why each exists."""

    max_connections: int = 32
    header_timeout_seconds: float = 5.0
    max_header_bytes: int = 8192
    answer_timeout_seconds: float = 10.0
    write_timeout_seconds: float = 10.0
    max_relayed_bytes: int = 16 * MIB
    max_relays: int = 2


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


DEFAULT_LIMITS = Limits()

Handler = Callable[[str, str], Awaitable[Response]]


class BoundedHttpServer:
    """`handler` on `address`:`port`, within `limits`; `name` ("health", "metrics") is for the log."""

    def __init__(self, address: str, port: int, handler: Handler, name: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.address = address
        self.port = port
        self.name = name
        self.limits = limits
        self._handler = handler
        self._socket: socket.socket | None = None
        self._accepting: asyncio.Task | None = None
        self._connections: dict[asyncio.Task, bool] = {}  # in order of arrival: still reading the request?
        self._last_exhaustion_log: float | None = None

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        """Listen and start accepting; OSError when the address cannot be bound. Port 0 picks a free port."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        listener = socket.create_server((self.address, self.port), family=family, backlog=self.limits.max_connections)
        listener.setblocking(False)
        self._socket = listener
        self.port = listener.getsockname()[1]
        self._accepting = asyncio.create_task(self._accept_loop())

    async def stop(self) -> None:
        """Stop accepting and drop every open connection."""
        tasks = [task for task in (self._accepting, *self._connections) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._socket is not None:
            self._socket.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._socket is not None
        while True:
            try:
                connection, _ = await loop.sock_accept(self._socket)
            except OSError as error:
                self._report_accept_error(error)
                await asyncio.sleep(ACCEPT_PAUSE_SECONDS)
                continue
            if len(self._connections) >= self.limits.max_connections and not self._evict_oldest_reading():
                connection.close()  # over the cap, every connection busy answering: closed at once
                continue
            task = asyncio.create_task(self._serve(connection))
            self._connections[task] = True
            task.add_done_callback(lambda done: self._connections.pop(done, None))
            task.add_done_callback(lambda _, accepted=connection: accepted.close())  # cancelled before it ran too

    def _evict_oldest_reading(self) -> bool:
        """Close the oldest connection still waiting for its request; whether there was one."""
        for task, reading in self._connections.items():
            if reading:
                self._connections.pop(task)
                task.cancel()
                return True
        return False

    def _report_accept_error(self, error: OSError) -> None:
        now = time.monotonic()
        last = self._last_exhaustion_log
        if last is not None and now - last < EXHAUSTION_LOG_INTERVAL_SECONDS:
            return
        self._last_exhaustion_log = now
        what = "out of file descriptors or memory" if error.errno in RESOURCE_ERRNOS else "accept failed"
        logger.warning(
            "%s port %s: %s (%s); pausing accepts %gs at a time (logged at most once every %gs)",
            self.name,
            self.port,
            what,
            error.strerror or error,
            ACCEPT_PAUSE_SECONDS,
            EXHAUSTION_LOG_INTERVAL_SECONDS,
        )

    async def _serve(self, connection: socket.socket) -> None:
        limits = self.limits
        connection.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=connection, limit=limits.max_header_bytes)
        try:
            response, head_only = await self._answer(reader)
            if response is None:
                return
            writer.transport.set_write_buffer_limits(high=0)  # drain() returns once all is written
            writer.write(_encoded(response, head_only))
            await asyncio.wait_for(writer.drain(), limits.write_timeout_seconds)
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()  # never wait on a client to close

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[Response | None, bool]:
        """The response to the one request on this connection, or None to close without answering."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.limits.header_timeout_seconds)
        except asyncio.LimitOverrunError:
            return _text(431, f"request headers over {self.limits.max_header_bytes} bytes"), False
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None, False
        current = asyncio.current_task()
        if current in self._connections:
            self._connections[current] = False  # answering now: not evicted to make room
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _text(400, "bad request line"), False
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return _text(405, "only GET and HEAD"), False
        path = target.split("?", 1)[0]
        try:
            response = await asyncio.wait_for(self._handler(method, path), self.limits.answer_timeout_seconds)
        except TimeoutError:
            response = _text(503, f"no answer within {self.limits.answer_timeout_seconds:g}s")
        return response, method == "HEAD"


def _text(status: int, text: str) -> Response:
    return Response(status, f"{text}\n".encode())


def _encoded(response: Response, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + response.body


class HttpRelay:
    """A Handler that answers GET `path` with what 127.0.0.1:`port` answers there (the SDK's Prometheus
    exporter, which has no limits of its own, bound to loopback): at most `limits.max_relays` at once and
    `limits.max_relayed_bytes` read; other paths 404."""

    def __init__(self, port: int, path: str = "/metrics", limits: Limits = DEFAULT_LIMITS) -> None:
        self.port = port
        self.path = path
        self.limits = limits
        self._relaying = 0

    async def __call__(self, method: str, path: str) -> Response:
        if path != self.path:
            return _text(404, f"not found; try {self.path}")
        if self._relaying >= self.limits.max_relays:
            return _text(503, f"busy: {self.limits.max_relays} scrapes already in progress")
        self._relaying += 1
        try:
            return await self._fetch()
        except (OSError, ValueError, asyncio.IncompleteReadError) as error:
            return _text(502, f"the metrics exporter did not answer: {error}")
        finally:
            self._relaying -= 1

    async def _fetch(self) -> Response:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(f"GET {self.path} HTTP/1.0\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
            await writer.drain()
            answer = await reader.read(self.limits.max_relayed_bytes + 1)
            while answer and len(answer) <= self.limits.max_relayed_bytes:
                more = await reader.read(self.limits.max_relayed_bytes + 1 - len(answer))
                if not more:
                    break
                answer += more
        finally:
            writer.transport.abort()
        if len(answer) > self.limits.max_relayed_bytes:
            return _text(502, f"the metrics page is over {self.limits.max_relayed_bytes} bytes")
        head, separator, body = answer.partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("no complete answer")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {
            name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
        }
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = _unchunked(body)
        content_type = headers.get("content-type", "text/plain; version=0.0.4")
        return Response(status, body, content_type)


def _unchunked(body: bytes) -> bytes:
    """A chunked body, decoded (an exporter may answer an HTTP/1.0 request chunked)."""
    decoded = bytearray()
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(decoded)
        decoded += body[:size]
        body = body[size + 2 :]


# ---------------------------------------------------------------- client side: one bounded HTTPS request


class FetchError(Exception):
    """No usable answer: the address could not be reached, TLS failed, the answer redirected, was too big or too
    slow. One line that says which; never the request's headers or body."""


@dataclass(frozen=True)
class Reply:
    """An answer of any status (redirects included: they are answers, never followed)."""

    status: int
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes


def fetch(
    url: str,
    *,
    max_bytes: int,
    timeout_seconds: float,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    ca_file: str | None = None,
) -> Reply:
    """One HTTPS request with the standard library, blocking (from a coroutine: `fetch_in_thread`).

    Bounded before any work is done with the answer: `https://` only (the request may carry a bearer token or
    an identity's assertion); redirects are never followed (their answer is returned, so a token never goes to
    another address); the body is read up to `max_bytes` (more, or a larger Content-Length, is a FetchError);
    `timeout_seconds` after the name was resolved the connection is shut down whatever it is doing (connecting,
    the TLS handshake, a proxy's CONNECT, headers or body arriving a byte at a time), so the call returns then
    at the latest; resolving the name is the system resolver's, with its own timeouts. One connection per call,
    closed before it returns. Any malformed answer is a FetchError too. Proxies come from the environment
    (HTTPS_PROXY, NO_PROXY) as the Azure SDK takes them; `ca_file` replaces the system's trusted CAs (tests).
    A header sent more than once (WWW-Authenticate) has its values joined by newlines."""
    import http.client
    import urllib.error  # the standard library's client costs ~1 MiB: only what reads Azure needs it
    import urllib.request

    if not url.startswith("https://"):
        raise FetchError(f"{url} is not an https:// address")
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    sockets: list[socket.socket] = []
    timed_out = threading.Event()

    def shut_down() -> None:
        timed_out.set()
        for opened in sockets:
            with contextlib.suppress(OSError):
                opened.shutdown(socket.SHUT_RDWR)

    deadline = threading.Timer(timeout_seconds, shut_down)
    deadline.daemon = True
    deadline.start()
    late = FetchError(f"{_origin(url)} did not answer within {timeout_seconds:g}s")
    try:
        reply = _fetch(url, request, sockets, max_bytes, timeout_seconds, ca_file)
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError, TLS, timeouts, bad framing
        if timed_out.is_set():
            raise late from None
        reason = getattr(error, "reason", error)
        shown = " ".join(str(reason).split()) or type(reason).__name__
        raise FetchError(f"no usable answer from {_origin(url)}: {shown}"[:400]) from None
    finally:
        deadline.cancel()
        deadline.join()  # shut_down has finished with the handles, if it ran
        for handle in sockets:
            handle.close()
    if timed_out.is_set():  # a shut-down connection reads as the end of the answer: it may be cut short
        raise late
    return reply


def _fetch(
    url: str,
    request: urllib.request.Request,
    sockets: list[socket.socket],
    max_bytes: int,
    timeout_seconds: float,
    ca_file: str | None,
) -> Reply:
    import urllib.error

    try:
        answer = _opener(ca_file, sockets).open(request, timeout=timeout_seconds)
    except urllib.error.HTTPError as error:  # any status but 2xx, redirects included: an answer all the same
        answer = error
    with answer:
        reply_headers: dict[str, str] = {}
        for name, value in answer.headers.items():
            name = name.lower()
            reply_headers[name] = f"{reply_headers[name]}\n{value}" if name in reply_headers else value
        declared = reply_headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"{_origin(url)} answered {declared} bytes, over the limit of {max_bytes}")
        data = bytearray()
        while chunk := answer.read1(min(65536, max_bytes + 1 - len(data))):  # what has arrived
            data += chunk
            if len(data) > max_bytes:
                raise FetchError(f"{_origin(url)} answered over the limit of {max_bytes} bytes")
        return Reply(answer.status, reply_headers, bytes(data))


# Fetch threads alive at once in this process. A caller that gives up (a timeout, a stop) does not end its thread,
# which ends at its own deadline: this keeps a silent or dripping endpoint from piling threads up meanwhile.
MAX_FETCH_THREADS = 8
_fetch_threads = threading.BoundedSemaphore(MAX_FETCH_THREADS)


async def fetch_in_thread(url: str, **options: Any) -> Reply:
    """`fetch(url, **options)` from a coroutine, in a daemon thread of its own; at most MAX_FETCH_THREADS at once
    (one more is a FetchError at once).

    Not `asyncio.to_thread`: its executor's threads are joined when the loop closes and when the interpreter
    exits, so a read stuck on a silent address would hold a stopping worker until its deadline. Here a caller
    that gives up leaves the thread to finish on its own bounds, and the process exits without waiting for it."""
    if not _fetch_threads.acquire(blocking=False):
        raise FetchError(f"{MAX_FETCH_THREADS} requests to Azure are still running; not starting another yet")
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Reply] = loop.create_future()

    def settle(result: Reply | None, error: BaseException | None) -> None:
        if answer.done():  # the caller gave up
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = fetch(url, **options), None
        except BaseException as raised:  # handed to the awaiting coroutine, whatever it is
            result, error = None, raised
        finally:
            _fetch_threads.release()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    try:
        threading.Thread(target=run, name="bounded-fetch", daemon=True).start()
    except RuntimeError as error:  # "can't start new thread": out of threads or memory
        _fetch_threads.release()
        raise FetchError(f"cannot start a thread for {_origin(url)}: {error}") from None
    return await answer


def _origin(url: str) -> str:
    """scheme://host:port of a URL: what messages name (never a path with a secret's name or a query)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _opener(ca_file: str | None, sockets: list[socket.socket]) -> urllib.request.OpenerDirector:
    """An opener that trusts `ca_file` (else the system's CAs), takes proxies from the environment, never follows
    a redirect, and adds each socket it connects to `sockets` (so the deadline can shut it down). Made for each
    request and dropped after it: the system's CAs take ~1 MiB in OpenSSL and a few milliseconds to load, and a
    worker reads Key Vault once every KEYVAULT_REFRESH_SECONDS."""
    import http.client
    import ssl
    import urllib.request

    class RefuseRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None  # urllib then raises the 3xx as an HTTPError, which fetch returns as an answer

    class WatchedConnection(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = self._watched

        @staticmethod
        def _watched(*args: Any, **kwargs: Any) -> socket.socket:
            opened = socket.create_connection(*args, **kwargs)
            # A second handle on the same connection: TLS takes the first one over (detaching it), and holding
            # this one keeps the descriptor from being reused until fetch closes it.
            sockets.append(opened.dup())
            return opened

    class WatchedHandler(urllib.request.HTTPSHandler):
        def https_open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(WatchedConnection, request, context=context)

    context = ssl.create_default_context(cafile=ca_file)
    return urllib.request.build_opener(WatchedHandler(context=context), RefuseRedirects())
