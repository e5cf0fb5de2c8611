"""The codec server: the aiohttp app in process, and `python codec_server.py` as a real process.

The process tests get their keys from the fake Key Vault through the stub `az`, exactly as configured
by a user; the last test has the real `temporal workflow show --codec-endpoint` read through it.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from codec_server import CANNOT_DECRYPT, Limits, create_app
from crypto_converter import EncryptionCodec, KeyProvider, Plaintext, encrypted_data_converter

from helpers.fake_keyvault import (
    FakeKeyVault,
    azure_cli_environment,
    forbid_non_loopback_connections,
    keyvault_environment,
)
from helpers.processes import AppProcess, base_environment, free_port
from helpers.static_keys import StaticKeyProvider

SECRET = "temporal-encryption-key"
UI_ORIGIN = "http://localhost:8233"
TOKEN = "codec-token-for-tests"
PLAINTEXT = b'"the patient record 1234"'


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """This test process may connect to loopback addresses only."""
    with forbid_non_loopback_connections() as refused:
        yield
    assert refused == [], f"a test tried to connect to non-loopback addresses: {refused}"


# --- The application, in process ----------------------------------------------------------------


def payloads_json(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def payloads_from(body: bytes) -> list[Payload]:
    return list(json_format.Parse(body, Payloads()).payloads)


def plain_payload() -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=PLAINTEXT)


def encrypt(provider: StaticKeyProvider, payload: Payload) -> Payload:
    [encrypted] = asyncio.run(EncryptionCodec(provider).encode([payload]))
    return encrypted


@dataclass(frozen=True)
class Answer:
    """What the server answered."""

    status: int
    headers: dict[str, str]
    body: bytes


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


def many_payloads_body(count: int, payload: bytes = b"{}") -> bytes:
    return b'{"payloads":[' + b",".join([payload] * count) + b"]}"


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


# --- `python codec_server.py`, a real process ---------------------------------------------------

LISTENING = r"Codec server listening on http://127\.0\.0\.1:\d+$"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[FakeKeyVault]:
    with FakeKeyVault(tmp_path) as running:
        yield running


def codec_server_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """A user's configuration with no config.env, and only the stub `az` as Azure identity."""
    environment = base_environment(tmp_path, CODEC_SERVER_HOST="127.0.0.1", CODEC_SERVER_PORT=str(free_port()))
    return azure_cli_environment(environment) | variables


def post_decode(url: str, payload: Payload) -> list[Payload]:
    request = urllib.request.Request(
        f"{url}/default/decode",
        data=payloads_json(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return payloads_from(response.read())


def one_error_line(server: AppProcess) -> str:
    """The single line that says why the process stopped; there is no traceback."""
    assert "Traceback" not in server.output
    [error] = [line for line in server.lines if "ERROR" in line]
    return error


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_process_serves_keys_from_key_vault_until_signalled(vault, tmp_path, run_app, stop_signal) -> None:
    key = os.urandom(32)
    version = vault.add_version(SECRET, base64.b64encode(key).decode())
    environment = codec_server_environment(tmp_path, **keyvault_environment(vault, SECRET))
    server = run_app("codec_server.py", env=environment)

    [line] = server.wait_for_line(LISTENING)
    url = f"http://127.0.0.1:{environment['CODEC_SERVER_PORT']}"
    assert line.endswith(f"Codec server listening on {url}")
    encrypted = encrypt(StaticKeyProvider({version: key}), plain_payload())
    assert post_decode(url, encrypted) == [plain_payload()]

    server.signal(stop_signal)
    assert server.wait() == 0
    assert "Codec server stopped" in server.output
    assert "Traceback" not in server.output and "ERROR" not in server.output


@pytest.mark.slow
def test_process_refuses_to_start_without_encryption(tmp_path, run_app) -> None:
    server = run_app("codec_server.py", env=codec_server_environment(tmp_path))

    assert server.wait() != 0
    assert "KEYVAULT_URL and KEYVAULT_SECRET_NAME" in one_error_line(server)


@pytest.mark.slow
def test_process_exits_with_one_line_when_key_vault_fails(vault, tmp_path, run_app) -> None:
    environment = codec_server_environment(tmp_path, **keyvault_environment(vault, "no-such-secret"))
    server = run_app("codec_server.py", env=environment)

    assert server.wait() == 1
    error = one_error_line(server)
    assert "'no-such-secret'" in error and "does not exist" in error


@pytest.mark.slow
def test_process_warns_when_listening_beyond_loopback_without_a_token(vault, tmp_path, run_app) -> None:
    # The secret is missing, so the process stops before it binds anything: the warning comes first.
    environment = codec_server_environment(
        tmp_path, CODEC_SERVER_HOST="0.0.0.0", **keyvault_environment(vault, "no-such-secret")
    )
    server = run_app("codec_server.py", env=environment)

    assert server.wait() == 1
    assert [line for line in server.lines if "WARNING" in line and "without CODEC_SERVER_TOKEN" in line]


@pytest.mark.slow
def test_process_exits_with_one_line_when_the_port_is_taken(vault, tmp_path, run_app) -> None:
    vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        environment = codec_server_environment(tmp_path, CODEC_SERVER_PORT=port, **keyvault_environment(vault, SECRET))
        server = run_app("codec_server.py", env=environment)

        assert server.wait() == 1

    assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(server)


# --- The real process under abuse: floods, forged key ids, TLS ------------------------------------

MIB = 1024 * 1024
# What the process may reach at its peak (VmHWM) while it refuses floods and answers the largest allowed
# requests, four at a time. Measured on a loaded 2-core machine: about 75 MiB at start (Python, the Temporal
# and Azure SDKs) and about 165 MiB at the peak; without the caps one flood took it to 1.5-4 GB.
PEAK_RSS_BOUND_BYTES = 300 * MIB


def post(port: int, body: bytes, path: str = "/default/decode", scheme: str = "http", **options: Any) -> Answer:
    """One POST with http.client, which sends exactly the body given (and reads the answer to its end)."""
    connection_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    connection = connection_class("127.0.0.1", port, timeout=120, **options)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def timed_post(port: int, body: bytes) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = post(port, body)
    return answer, time.monotonic() - started


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM), from the kernel."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE).group(1)) * 1024


def started_codec_server(vault: FakeKeyVault, tmp_path: Path, run_app, **variables: str) -> tuple[AppProcess, int]:
    environment = codec_server_environment(tmp_path, **keyvault_environment(vault, SECRET), **variables)
    server = run_app("codec_server.py", env=environment)
    server.wait_for_line(r"Codec server listening on https?://127\.0\.0\.1:\d+$")
    return server, int(environment["CODEC_SERVER_PORT"])


@pytest.mark.slow
def test_process_refuses_floods_quickly_within_a_memory_bound_and_keeps_answering(vault, tmp_path, run_app) -> None:
    key = os.urandom(32)
    version = vault.add_version(SECRET, base64.b64encode(key).decode())
    server, port = started_codec_server(vault, tmp_path, run_app)
    provider = StaticKeyProvider({version: key})
    largest_allowed = [encrypt(provider, Payload(data=os.urandom(4_000))) for _ in range(1_000)]
    floods = {
        "a million empty payloads (3 MB)": (many_payloads_body(1_000_000), 413),
        "a million tiny payloads (16 MB)": (many_payloads_body(1_000_000, b'{"data":"eA=="}'), 413),
        "4 MiB + 1 byte decoded": (payloads_json(Payload(data=os.urandom(4 * MIB + 1))).encode(), 413),
        "the largest allowed: 1000 payloads, 4 MB": (payloads_json(*largest_allowed).encode(), 200),
    }
    small = payloads_json(encrypt(provider, plain_payload())).encode()
    at_start = peak_rss_bytes(server.process.pid)
    flooding = threading.Event()
    small_latencies: list[float] = []

    def keep_sending_small_requests() -> None:
        while flooding.is_set():
            answer, elapsed = timed_post(port, small)
            assert answer.status == 200 and payloads_from(answer.body) == [plain_payload()]
            small_latencies.append(elapsed)
            time.sleep(0.02)

    names = list(floods) * 4
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        flooding.set()
        prober = pool.submit(keep_sending_small_requests)
        outcomes = list(pool.map(lambda name: timed_post(port, floods[name][0]), names))
        flooding.clear()
        prober.result()

    peak = peak_rss_bytes(server.process.pid)
    report = [f"peak RSS at start {at_start / MIB:.0f} MiB, after the floods {peak / MIB:.0f} MiB"]
    for name, (answer, elapsed) in zip(names, outcomes, strict=True):
        report.append(f"{name}: {answer.status} in {elapsed:.2f}s")
        assert answer.status == floods[name][1], report
        if answer.status == 413:
            assert json.loads(answer.body)["error"]
        assert elapsed < 10, report  # "quickly": the unbounded server took 35-73 s
    report.append(f"{len(small_latencies)} small requests meanwhile, slowest {max(small_latencies):.3f}s")
    print("\n".join(report))
    assert len(small_latencies) >= 5, report
    assert max(small_latencies) < 1.0, report
    assert peak < PEAK_RSS_BOUND_BYTES, report


@pytest.mark.slow
def test_process_forged_key_ids_cost_at_most_one_vault_read_and_reveal_no_vault(vault, tmp_path, run_app) -> None:
    vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
    server, port = started_codec_server(vault, tmp_path, run_app)
    reads_at_start = len(vault.requests)
    unknown_version = "a" * 32
    forged = {
        key_id: encrypt(StaticKeyProvider.random(key_id), plain_payload())
        for key_id in (unknown_version, ".", "..", "%2F", "a/b", "../../secrets", "A" * 32)
    }

    answers = [post(port, payloads_json(payload).encode()) for payload in forged.values() for _ in range(3)]

    assert {answer.status for answer in answers} == {400}
    bodies = b"".join(answer.body for answer in answers).decode()
    for revealing in (vault.url.rstrip("/"), vault.url.split("//")[1].rstrip("/"), SECRET, "not found", "Key Vault"):
        assert revealing not in bodies
    read_since_start = vault.requests[reads_at_start:]
    assert [request.version for request in read_since_start] == [unknown_version]
    assert "does not exist" in server.output and "not a Key Vault secret version" in server.output
    assert post(port, payloads_json(plain_payload()).encode(), path="/default/encode").status == 403


@pytest.mark.slow
def test_process_serves_https_with_its_certificate(vault, tmp_path, run_app) -> None:
    key = os.urandom(32)
    version = vault.add_version(SECRET, base64.b64encode(key).decode())
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "codec.crt", tmp_path / "codec.key", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    authority.cert_pem.write_to_path(str(ca_file))
    server, port = started_codec_server(
        vault, tmp_path, run_app, CODEC_SERVER_TLS_CERT_FILE=str(cert_file), CODEC_SERVER_TLS_KEY_FILE=str(key_file)
    )
    assert f"Codec server listening on https://127.0.0.1:{port}" in server.output
    encrypted = encrypt(StaticKeyProvider({version: key}), plain_payload())

    answer = post(
        port, payloads_json(encrypted).encode(), scheme="https", context=ssl.create_default_context(cafile=ca_file)
    )

    assert answer.status == 200 and payloads_from(answer.body) == [plain_payload()]
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        post(port, payloads_json(encrypted).encode())  # plain HTTP to the TLS port


@pytest.mark.slow
def test_process_exits_with_one_line_when_the_tls_files_are_unusable(vault, tmp_path, run_app) -> None:
    not_a_certificate = tmp_path / "not-a-certificate.pem"
    not_a_certificate.write_text("hello\n")
    environment = codec_server_environment(
        tmp_path,
        CODEC_SERVER_TLS_CERT_FILE=str(not_a_certificate),
        CODEC_SERVER_TLS_KEY_FILE=str(not_a_certificate),
        **keyvault_environment(vault, SECRET),
    )
    server = run_app("codec_server.py", env=environment)

    assert server.wait() == 1
    assert "cannot use CODEC_SERVER_TLS_CERT_FILE" in one_error_line(server)


# --- The real CLI reads history through the codec server ----------------------------------------


@pytest.mark.slow
def test_temporal_cli_shows_plaintext_through_the_codec_server(vault, tmp_path, run_app, dev_server) -> None:
    key = os.urandom(32)
    version = vault.add_version(SECRET, base64.b64encode(key).decode())
    marker = f"plaintext-marker-{uuid.uuid4().hex}"
    workflow_id = f"codec-cli-{uuid.uuid4().hex}"

    async def start_encrypted_workflow() -> None:
        client = await Client.connect(
            dev_server.address,
            data_converter=encrypted_data_converter(StaticKeyProvider({version: key}), Plaintext.REFUSE),
        )
        await client.start_workflow("NoWorkerNeeded", marker, id=workflow_id, task_queue=f"no-worker-{workflow_id}")

    asyncio.run(start_encrypted_workflow())
    environment = codec_server_environment(tmp_path, CODEC_SERVER_TOKEN=TOKEN, **keyvault_environment(vault, SECRET))
    run_app("codec_server.py", env=environment).wait_for_line(LISTENING)
    endpoint = f"http://127.0.0.1:{environment['CODEC_SERVER_PORT']}/{{namespace}}"

    def workflow_input(*codec_flags: str) -> Payload:
        """The input payload of the workflow's first event, as `temporal workflow show` prints it."""
        shown = subprocess.run(
            ["temporal", "workflow", "show", "-w", workflow_id, "--address", dev_server.address, "-o", "json"]
            + list(codec_flags),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        started = json.loads(shown)["events"][0]["workflowExecutionStartedEventAttributes"]
        [payload] = json_format.ParseDict(started["input"], Payloads()).payloads
        return payload

    without_codec = workflow_input()
    assert without_codec.metadata["encoding"] == b"binary/encrypted"
    assert marker.encode() not in without_codec.data
    through_codec = workflow_input("--codec-endpoint", endpoint, "--codec-auth", f"Bearer {TOKEN}")
    assert through_codec.data == json.dumps(marker).encode()
