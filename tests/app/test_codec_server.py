"""The codec server: the aiohttp app in process, and `python codec_server.py` as a real process.

The process tests get their keys from the fake Key Vault through the stub `az`, exactly as configured
by a user; the last test has the real `temporal workflow show --codec-endpoint` read through it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from codec_server import create_app
from crypto_converter import EncryptionCodec, encrypted_data_converter

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


def call(
    method: str,
    path: str,
    provider: StaticKeyProvider | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    body: str | bytes | None = None,
) -> Answer:
    """One request to a fresh app on a free loopback port."""
    app = create_app(EncryptionCodec(provider or StaticKeyProvider.random()), [UI_ORIGIN], token)

    async def request() -> Answer:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            response = await client.request(method, path, headers=headers, data=body)
            return Answer(response.status, dict(response.headers), await response.read())

    return asyncio.run(request())


def test_encode_then_decode_round_trip() -> None:
    provider = StaticKeyProvider.random("v1")

    encoded = call("POST", "/encode", provider, body=payloads_json(plain_payload()))
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
    [b"{not json", b'{"payloads": "not a list"}', b'{"payloads": [{"metadata": {"encoding": 5}}]}', b"\xff\xfe", b""],
    ids=["not-json", "wrong-shape", "wrong-type", "not-utf8", "empty"],
)
def test_malformed_body_is_400(body: bytes) -> None:
    answer = call("POST", "/decode", body=body)

    assert answer.status == 400
    assert "payloads" in json.loads(answer.body)["error"]


def test_undecryptable_payload_is_400_naming_only_the_key_id(caplog: pytest.LogCaptureFixture) -> None:
    foreign = encrypt(StaticKeyProvider.random("someone-elses-key"), plain_payload())

    answer = call("POST", "/decode", StaticKeyProvider.random("our-key"), body=payloads_json(foreign))

    assert answer.status == 400
    assert "someone-elses-key" in json.loads(answer.body)["error"]
    assert foreign.data not in answer.body and base64.b64encode(foreign.data) not in answer.body
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "someone-elses-key" in logged and base64.b64encode(foreign.data).decode() not in logged


def test_payload_contents_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    provider = StaticKeyProvider.random()

    call("POST", "/encode", provider, body=payloads_json(plain_payload()))
    call("POST", "/decode", provider, body=payloads_json(encrypt(provider, plain_payload())))

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert PLAINTEXT.decode() not in logged and base64.b64encode(PLAINTEXT).decode() not in logged


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


# --- The real CLI reads history through the codec server ----------------------------------------


@pytest.mark.slow
def test_temporal_cli_shows_plaintext_through_the_codec_server(vault, tmp_path, run_app, dev_server) -> None:
    key = os.urandom(32)
    version = vault.add_version(SECRET, base64.b64encode(key).decode())
    marker = f"plaintext-marker-{uuid.uuid4().hex}"
    workflow_id = f"codec-cli-{uuid.uuid4().hex}"

    async def start_encrypted_workflow() -> None:
        client = await Client.connect(
            dev_server.address, data_converter=encrypted_data_converter(StaticKeyProvider({version: key}))
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
