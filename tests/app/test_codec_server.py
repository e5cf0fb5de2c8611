"""The codec server's aiohttp app in process (codec_server.create_app): decoding and encoding, CORS, the tokens,
headers and paths an attacker chooses, and what one request may cost.

`python codec_server.py` as a real process, and the real Temporal CLI reading through it, are
tests/e2e/test_codec_server_process.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from temporalio.api.common.v1 import Payload

import codec_server
from codec_server import CANNOT_DECRYPT, Limits, create_app
from crypto_converter import EncryptionCodec, KeyProvider, Plaintext

from helpers.codec_requests import (
    PLAINTEXT,
    Answer,
    encrypt,
    many_payloads_body,
    payloads_from,
    payloads_json,
    plain_payload,
)
from helpers.fake_keyvault import forbid_non_loopback_connections
from helpers.static_keys import StaticKeyProvider

UI_ORIGIN = "http://localhost:8233"
MIB = 1024 * 1024
TOKEN = "codec-token-for-tests"


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """This test process may connect to loopback addresses only."""
    with forbid_non_loopback_connections() as refused:
        yield
    assert refused == [], f"a test tried to connect to non-loopback addresses: {refused}"


# --- The application, in process ----------------------------------------------------------------


def codec_server_app(provider: KeyProvider | None = None, token: str | None = None, **options: Any) -> web.Application:
    """The application as codec_server.py builds it: unencrypted payloads pass through /decode."""
    codec = EncryptionCodec(provider or StaticKeyProvider.random(), Plaintext.ACCEPT)
    return create_app(codec, [UI_ORIGIN], token, **options)


def call(
    method: str,
    path: str,
    provider: KeyProvider | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    **options: Any,
) -> Answer:
    """One request to a fresh app on a free loopback port."""
    app = codec_server_app(provider, token, **options)

    async def request() -> Answer:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            response = await client.request(method, path, headers=headers, data=body)
            return Answer(response.status, dict(response.headers), await response.read())

    return asyncio.run(request())


def test_encode_then_decode_round_trip() -> None:
    provider = StaticKeyProvider.random("v1")

    encoded = call("POST", "/encode", provider, body=payloads_json(plain_payload()), encode=True)
    [encrypted] = payloads_from(encoded.body)
    decoded = call("POST", "/decode", provider, body=payloads_json(encrypted))

    assert encoded.status == 200 and decoded.status == 200
    assert encrypted.metadata["encoding"] == b"binary/encrypted" and PLAINTEXT not in encrypted.data
    assert payloads_from(decoded.body) == [plain_payload()]
    assert decoded.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("path", ["/default/decode", "/my-namespace.a1b2c/decode"])
def test_decode_under_a_namespace_prefix(path: str) -> None:
    provider = StaticKeyProvider.random()
    encrypted = encrypt(provider, plain_payload())

    answer = call("POST", path, provider, body=payloads_json(encrypted, plain_payload()))

    assert answer.status == 200
    assert payloads_from(answer.body) == [plain_payload(), plain_payload()]


def test_cors_preflight_from_the_allowed_origin() -> None:
    answer = call(
        "OPTIONS",
        "/default/decode",
        token=TOKEN,  # a preflight never carries the token, and must not need it
        headers={
            "Origin": UI_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        },
    )

    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    allowed_headers = {name.strip() for name in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-namespace", "authorization"} <= allowed_headers


@pytest.mark.parametrize("method", ["OPTIONS", "POST"])
def test_other_origins_are_refused_without_cors_headers(method: str) -> None:
    provider = StaticKeyProvider.random()

    answer = call(
        method,
        "/decode",
        provider,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        body=payloads_json(encrypt(provider, plain_payload())),
    )

    assert answer.status == 403
    assert not [name for name in answer.headers if name.lower().startswith("access-control-")]
    assert PLAINTEXT not in answer.body


def test_allowed_origin_can_read_the_answer() -> None:
    provider = StaticKeyProvider.random()

    answer = call(
        "POST",
        "/decode",
        provider,
        headers={"Origin": UI_ORIGIN},
        body=payloads_json(encrypt(provider, plain_payload())),
    )

    assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == UI_ORIGIN


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", TOKEN, f"Basic {TOKEN}"])
def test_decoding_needs_the_bearer_token_when_one_is_set(authorization: str | None) -> None:
    provider = StaticKeyProvider.random()
    headers = {"Authorization": authorization} if authorization else {}

    answer = call(
        "POST",
        "/decode",
        provider,
        token=TOKEN,
        headers=headers,
        body=payloads_json(encrypt(provider, plain_payload())),
    )

    assert answer.status == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
    assert PLAINTEXT not in answer.body and TOKEN.encode() not in answer.body


def test_decoding_with_the_bearer_token() -> None:
    provider = StaticKeyProvider.random()

    answer = call(
        "POST",
        "/decode",
        provider,
        token=TOKEN,
        headers={"Authorization": f"Bearer {TOKEN}"},
        body=payloads_json(encrypt(provider, plain_payload())),
    )

    assert answer.status == 200 and payloads_from(answer.body) == [plain_payload()]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"payloads": "not a list"}',
        b'{"payloads": [{"metadata": {"encoding": 5}}]}',
        b"\xff\xfe",
        b"",
        b'{"payloads":' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ],
    ids=["not-json", "wrong-shape", "wrong-type", "not-utf8", "empty", "deeply-nested"],
)
def test_malformed_body_is_400(body: bytes) -> None:
    answer = call("POST", "/decode", body=body)

    assert answer.status == 400
    assert "payloads" in json.loads(answer.body)["error"]


def test_undecryptable_payload_is_a_generic_400_and_the_log_says_why(caplog: pytest.LogCaptureFixture) -> None:
    foreign = encrypt(StaticKeyProvider.random("someone-elses-key"), plain_payload())

    answer = call("POST", "/decode", StaticKeyProvider.random("our-key"), body=payloads_json(foreign))

    assert answer.status == 400
    assert json.loads(answer.body) == {"error": CANNOT_DECRYPT}
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "someone-elses-key" in logged and base64.b64encode(foreign.data).decode() not in logged


def test_payload_contents_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    provider = StaticKeyProvider.random()

    call("POST", "/encode", provider, body=payloads_json(plain_payload()), encode=True)
    call("POST", "/decode", provider, body=payloads_json(encrypt(provider, plain_payload())))

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert PLAINTEXT.decode() not in logged and base64.b64encode(PLAINTEXT).decode() not in logged


# --- /encode: off unless switched on, with its own token, every encode logged ---------------------

ENCODE_TOKEN = "encode-token-for-tests"


def test_encode_is_refused_unless_switched_on() -> None:
    answer = call("POST", "/encode", body=payloads_json(plain_payload()))

    assert answer.status == 403
    assert "CODEC_SERVER_ENCODE" in json.loads(answer.body)["error"]


@pytest.mark.parametrize(
    ("path", "authorization", "status"),
    [
        ("/encode", TOKEN, 401),
        ("/encode", None, 401),
        ("/encode", ENCODE_TOKEN, 200),
        ("/default/encode", ENCODE_TOKEN, 200),
        ("/decode", ENCODE_TOKEN, 401),
        ("/decode", TOKEN, 200),
    ],
    ids=[
        "encode-with-decode-token",
        "encode-without-token",
        "encode",
        "namespace-encode",
        "decode-with-encode-token",
        "decode",
    ],
)
def test_encode_needs_its_own_token_when_one_is_set(path: str, authorization: str | None, status: int) -> None:
    headers = {"Authorization": f"Bearer {authorization}"} if authorization else {}

    answer = call(
        "POST",
        path,
        token=TOKEN,
        headers=headers,
        body=payloads_json(plain_payload()),
        encode=True,
        encode_token=ENCODE_TOKEN,
    )

    assert answer.status == status


def test_encode_without_its_own_token_needs_the_server_token() -> None:
    body = payloads_json(plain_payload())

    refused = call("POST", "/encode", token=TOKEN, body=body, encode=True)
    allowed = call("POST", "/encode", token=TOKEN, headers={"Authorization": f"Bearer {TOKEN}"}, body=body, encode=True)

    assert (refused.status, allowed.status) == (401, 200)


def test_every_encode_is_logged_with_its_key_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="codec_server")

    answer = call(
        "POST",
        "/my-namespace/encode",
        StaticKeyProvider.random("v7"),
        body=payloads_json(plain_payload(), plain_payload()),
        encode=True,
    )

    assert answer.status == 200
    [logged] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Encoded")]
    assert "Encoded 2 payload(s) with key id v7 for 127.0.0.1" in logged and "'/my-namespace/encode'" in logged


# --- Headers and paths an attacker chooses ----------------------------------------------------------


def raw_exchange(request: bytes, **options: Any) -> bytes:
    """Send bytes no HTTP client library would send; return everything the server answered."""
    app = codec_server_app(**options)

    async def exchange() -> bytes:
        async with TestServer(app, host="127.0.0.1") as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request)
            await writer.drain()
            answer = await reader.read()
            writer.close()
            return answer

    return asyncio.run(exchange())


def raw_post(path: bytes, *headers: bytes) -> bytes:
    body = b'{"payloads": []}'
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]
    return b"\r\n".join([*lines, b"Content-Length: " + str(len(body)).encode(), b"", body])


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    answer = call("POST", "/decode", token=TOKEN, headers={"Authorization": f"{scheme} {TOKEN}"}, body=payloads_json())

    assert answer.status == 200


def test_an_authorization_header_that_is_not_utf8_is_refused_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    answer = raw_exchange(raw_post(b"/decode", b"Authorization: Bearer \xff\xfe" + TOKEN.encode()), token=TOKEN)

    assert status_of(answer) == 401
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def test_an_origin_that_is_not_utf8_is_refused_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    answer = raw_exchange(raw_post(b"/decode", b"Origin: http://\xff.example"))

    assert status_of(answer) == 403
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def test_a_path_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    forged = b"/x%0A2026-01-01 00:00:00,000 INFO codec_server: forged/decode".replace(b" ", b"%20")

    answer = raw_exchange(raw_post(forged), token=TOKEN)

    assert status_of(answer) == 401
    [logged] = [record.getMessage() for record in caplog.records if "bearer token" in record.getMessage()]
    assert "\n" not in logged and "\\n2026-01-01" in logged


# --- Limits: what one request may cost ------------------------------------------------------------

SMALL_LIMITS = Limits(max_request_bytes=20_000, max_payloads=10, max_decoded_bytes=2_000)


@pytest.mark.parametrize(
    "body",
    [
        many_payloads_body(11, b'{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"eA=="}'),
        many_payloads_body(11, b'{"data":"eA=="}'),
        many_payloads_body(2_000),
        b'{"payloads":[{"metadata":{' + b",".join(b'"k%d":""' % number for number in range(500)) + b"}}]}",
    ],
    ids=["one-too-many", "without-metadata", "many-empty", "one-payload-with-many-metadata-entries"],
)
def test_too_many_payloads_is_413_naming_the_cap(body: bytes) -> None:
    answer = call("POST", "/decode", body=body, limits=SMALL_LIMITS)

    assert answer.status == 413
    assert "more than 10 payloads" in json.loads(answer.body)["error"]


def test_payloads_at_the_cap_are_decoded() -> None:
    provider = StaticKeyProvider.random()
    ten = [encrypt(provider, Payload(metadata={"encoding": b"json/plain"}, data=b"1")) for _ in range(10)]

    answer = call("POST", "/decode", provider, body=payloads_json(*ten), limits=SMALL_LIMITS)

    assert answer.status == 200 and len(payloads_from(answer.body)) == 10


def test_decoded_bytes_over_the_cap_is_413_naming_the_cap() -> None:
    answer = call("POST", "/decode", body=payloads_json(Payload(data=b"x" * 2_001)), limits=SMALL_LIMITS)

    assert answer.status == 413
    error = json.loads(answer.body)["error"]
    assert "after base64 decoding" in error and "over the 2000" in error


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_cap_is_413(chunked: bool) -> None:
    body = payloads_json(Payload(data=b"x" * 30_000)).encode()

    async def chunks():
        yield body

    answer = call("POST", "/decode", body=chunks() if chunked else body, limits=SMALL_LIMITS)

    assert answer.status == 413
    assert "request body over 20000 bytes" in json.loads(answer.body)["error"]


def test_answers_are_compact_json() -> None:
    provider = StaticKeyProvider.random()
    encrypted = [encrypt(provider, plain_payload()) for _ in range(3)]

    answer = call("POST", "/decode", provider, body=payloads_json(*encrypted))

    assert answer.status == 200 and payloads_from(answer.body) == [plain_payload()] * 3
    assert not set(answer.body.decode()) & {" ", "\n"}


class NeverAnsweringKeys(StaticKeyProvider):
    """A key provider whose keys never arrive, like a Key Vault that accepts connections and never answers."""

    async def key_for(self, key_id: str) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_a_request_that_takes_too_long_is_503() -> None:
    encrypted = encrypt(StaticKeyProvider.random(), plain_payload())

    answer = call(
        "POST",
        "/decode",
        NeverAnsweringKeys.random(),
        body=payloads_json(encrypted),
        limits=Limits(request_timeout_seconds=0.5),
    )

    assert answer.status == 503
    assert "within 0.5s" in json.loads(answer.body)["error"]


@pytest.mark.parametrize(("max_requests", "order"), [(1, ["stuck", "small"]), (2, ["small", "stuck"])])
def test_requests_beyond_the_bound_wait_for_a_turn(max_requests: int, order: list[str]) -> None:
    """A request stuck on its key holds its turn until its timeout: with one turn, the next one waits for it."""
    limits = Limits(max_requests=max_requests, request_timeout_seconds=1)
    app = codec_server_app(NeverAnsweringKeys.random(), limits=limits)
    stuck = payloads_json(encrypt(StaticKeyProvider.random(), plain_payload()))
    answered: list[str] = []

    async def post(client: TestClient, name: str, body: str) -> int:
        response = await client.post("/decode", data=body)
        answered.append(name)
        return response.status

    async def stuck_then_small() -> list[int]:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            first = asyncio.create_task(post(client, "stuck", stuck))
            await asyncio.sleep(0.2)
            second = asyncio.create_task(post(client, "small", payloads_json(plain_payload())))
            return list(await asyncio.gather(first, second))

    assert asyncio.run(stuck_then_small()) == [503, 200]
    assert answered == order


# --- Answers written in chunks ----------------------------------------------------------------------


def chunked_answer_cases() -> list[list[Payload]]:
    provider = StaticKeyProvider.random("v3")
    external = [Payload.ExternalPayloadDetails(size_bytes=123)]
    return [
        [],
        [Payload()],
        [Payload(data=b"x")],
        [Payload(metadata={"encoding": b"binary/null"})],
        [plain_payload(), encrypt(provider, plain_payload()), Payload(), Payload(external_payloads=external)],
        [Payload(metadata={"a": b"1", "b": b"\xff" * 5}, data=bytes(range(256)) * 9000, external_payloads=external)],
        [Payload(data=b"y" * (codec_server.ANSWER_CHUNK_BYTES * 2 + size)) for size in (0, 1, 2)],
    ]


@pytest.mark.parametrize("payloads", chunked_answer_cases(), ids=lambda payloads: f"{len(payloads)}-payloads")
def test_a_chunked_answer_is_the_compact_json_with_its_exact_length(payloads: list[Payload]) -> None:
    answer = codec_server._JsonAnswer(payloads)
    chunks = list(answer.chunks())
    expected = codec_server._to_json(payloads).encode()

    # The same JSON, and the same bytes but for the order of metadata keys: a protobuf map's iteration order
    # is not fixed (a copied map may list its keys in another order), and JSON does not give it a meaning.
    assert json.loads(b"".join(chunks)) == json.loads(expected)
    assert sorted(b"".join(chunks)) == sorted(expected)
    assert answer.length == sum(len(chunk) for chunk in chunks)
    assert max(len(chunk) for chunk in chunks) <= codec_server.ANSWER_CHUNK_BYTES * 4 // 3 + 200


def test_a_large_answer_is_written_in_chunks_and_read_whole() -> None:
    provider = StaticKeyProvider.random()
    data = b"z" * (3 * MIB)
    encrypted = encrypt(provider, Payload(metadata={"encoding": b"json/plain"}, data=data))

    answer = call(
        "POST", "/decode", provider, headers={"Origin": UI_ORIGIN}, body=payloads_json(encrypted, plain_payload())
    )

    assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    assert payloads_from(answer.body) == [Payload(metadata={"encoding": b"json/plain"}, data=data), plain_payload()]


def test_an_answer_that_is_not_read_is_dropped_at_the_deadline_and_frees_its_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One turn: a client that never reads its 21 MiB answer (more than the kernel's socket buffers take)
    holds the turn until the deadline, then loses the connection, and the waiting request gets the turn."""
    provider = StaticKeyProvider.random()
    big = payloads_json(encrypt(provider, Payload(data=b"q" * (16 * MIB)))).encode()
    limits = Limits(max_requests=1, request_timeout_seconds=2, max_request_bytes=24 * MIB, max_decoded_bytes=20 * MIB)
    app = codec_server_app(provider, limits=limits)

    async def unread_then_small() -> tuple[bytes, int, bytes]:
        async with TestServer(app, host="127.0.0.1") as server:
            unread = socket.socket()
            unread.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            unread.connect(("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=unread)
            writer.transport.pause_reading()  # takes nothing: the server's writes stall
            writer.write(b"POST /decode HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
            await writer.drain()
            await asyncio.sleep(1)
            async with TestClient(server) as client:
                small = await client.post("/decode", data=payloads_json(plain_payload()))
                small_body = await small.read()
            writer.transport.resume_reading()
            received = b""
            while chunk := await asyncio.wait_for(reader.read(1024 * 1024), timeout=10):
                received += chunk
            writer.close()
            return received, small.status, small_body

    received, small_status, small_body = asyncio.run(unread_then_small())

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and 0 < len(body) < content_length(head)
    assert small_status == 200 and payloads_from(small_body) == [plain_payload()]
    assert [record for record in caplog.records if "Dropped the answer to a decode request" in record.getMessage()]
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def content_length(head: bytes) -> int:
    [length] = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return int(length)
