"""bounded_http's limits, each against the server in process on a loopback port (small limits, so each is met fast)."""

from __future__ import annotations

import asyncio
import errno
import logging

import bounded_http
from bounded_http import BoundedHttpServer, HttpRelay, Limits, Response

SMALL = Limits(
    max_connections=4,
    header_timeout_seconds=0.5,
    max_header_bytes=256,
    answer_timeout_seconds=0.5,
    write_timeout_seconds=0.5,
    max_relayed_bytes=1000,
    max_relays=1,
)
HANG_BOUND = 5.0  # catches a hang only


async def ok(_method: str, path: str) -> Response:
    if path == "/slow":
        await asyncio.sleep(60)
    if path == "/big":
        return Response(200, b"x" * 50_000_000)
    return Response(200, f"ok {path}\n".encode())


async def request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), HANG_BOUND)
    finally:
        writer.close()


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), HANG_BOUND) == b""
    except ConnectionError:
        return True


def serving(handler=ok, limits: Limits = SMALL):
    """Run `body(server)` against a started server, stopped afterwards."""

    def run(body):
        async def main():
            server = BoundedHttpServer("127.0.0.1", 0, handler, "test", limits)
            await server.start()
            try:
                return await body(server)
            finally:
                await server.stop()

        return asyncio.run(main())

    return run


def test_answers_get_and_head_and_refuses_other_methods() -> None:
    async def body(server):
        get = await request(server.port, b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await request(server.port, b"HEAD /x HTTP/1.1\r\n\r\n")
        post = await request(server.port, b"POST /x HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n")
        return get, head, post

    get, head, post = serving()(body)
    assert get.startswith(b"HTTP/1.1 200 OK\r\n") and get.endswith(b"\r\n\r\nok /x\n") and b"Connection: close" in get
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert post.startswith(b"HTTP/1.1 405 ")


def test_a_stalled_header_is_closed_after_the_header_timeout() -> None:
    async def body(server):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finished
        started = asyncio.get_running_loop().time()
        assert await closed(reader)
        return asyncio.get_running_loop().time() - started

    assert serving()(body) < HANG_BOUND


def test_a_header_over_the_cap_is_refused_with_431() -> None:
    async def body(server):
        return await request(server.port, b"GET / HTTP/1.1\r\nX: " + b"a" * 1000 + b"\r\n\r\n")

    assert serving()(body).startswith(b"HTTP/1.1 431 ")


def test_a_slow_answer_is_a_503_and_an_unread_answer_is_dropped() -> None:
    async def body(server):
        slow = await request(server.port, b"GET /slow HTTP/1.1\r\n\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.transport.pause_reading()
        writer.write(b"GET /big HTTP/1.1\r\n\r\n")
        await asyncio.sleep(SMALL.write_timeout_seconds + 1)
        open_after_the_write_timeout = server.open_connections
        writer.close()
        return slow, open_after_the_write_timeout

    slow, open_connections = serving()(body)
    assert slow.startswith(b"HTTP/1.1 503 ")
    assert open_connections == 0


def test_over_the_cap_the_oldest_stalled_connection_makes_room_and_a_fresh_request_is_answered() -> None:
    async def body(server):
        stalled = []
        for _ in range(SMALL.max_connections * 3):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\n")
            stalled.append((reader, writer))
        await asyncio.sleep(0.1)
        held = server.open_connections
        fresh = await request(server.port, b"GET /fresh HTTP/1.1\r\n\r\n")
        oldest_closed = await closed(stalled[0][0])
        for _, writer in stalled:
            writer.close()
        return held, fresh, oldest_closed

    held, fresh, oldest_closed = serving()(body)
    assert held <= SMALL.max_connections
    assert fresh.endswith(b"ok /fresh\n")
    assert oldest_closed


def test_out_of_file_descriptors_is_logged_once_a_minute_without_a_traceback(caplog, monkeypatch) -> None:
    async def body(server):
        for _ in range(50):
            server._report_accept_error(OSError(errno.EMFILE, "Too many open files"))

    with caplog.at_level(logging.WARNING, logger="bounded_http"):
        serving()(body)
    assert len(caplog.records) == 1
    assert "out of file descriptors" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is None
    assert bounded_http.EXHAUSTION_LOG_INTERVAL_SECONDS == 60.0


def test_the_relay_passes_the_page_on_within_its_byte_cap_and_concurrency() -> None:
    async def body(upstream):
        relay = HttpRelay(upstream.port, "/small", SMALL)
        small = await relay("GET", "/small")
        other = await relay("GET", "/elsewhere")
        big = await HttpRelay(upstream.port, "/big", SMALL)("GET", "/big")
        slow = HttpRelay(upstream.port, "/slow", SMALL)
        first = asyncio.create_task(slow("GET", "/slow"))
        await asyncio.sleep(0.1)
        second = await slow("GET", "/slow")
        first.cancel()
        return small, other, big, second

    small, other, big, second = serving(limits=Limits(answer_timeout_seconds=60))(body)
    assert (small.status, small.body) == (200, b"ok /small\n")
    assert other.status == 404
    assert big.status == 502 and b"over 1000 bytes" in big.body
    assert second.status == 503 and b"busy" in second.body
