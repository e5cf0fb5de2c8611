"""`python codec_server.py` as a real process: it serves keys from the fake Key Vault until signalled, stops
with one line when it cannot start, withstands floods, forged key ids and plain HTTP to its TLS port; and the
real `temporal workflow show --codec-endpoint` reads a workflow's history through it.

The process gets its keys from the fake Key Vault through the stub `az`, exactly as configured by a user. The
application in process is tests/app/test_codec_server.py.
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

import pytest
import trustme
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from helpers.codec_requests import Answer, encrypt, many_payloads_body, payloads_from, payloads_json, plain_payload
from helpers.fake_keyvault import (
    FakeKeyVault,
    azure_cli_environment,
    forbid_non_loopback_connections,
    keyvault_environment,
)
from helpers.payloads import start_encrypted_workflow
from helpers.processes import AppProcess, base_environment, free_port
from helpers.static_keys import StaticKeyProvider

SECRET = "temporal-encryption-key"
TOKEN = "codec-token-for-tests"


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """This test process may connect to loopback addresses only."""
    with forbid_non_loopback_connections() as refused:
        yield
    assert refused == [], f"a test tried to connect to non-loopback addresses: {refused}"


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

    start_encrypted_workflow(dev_server.address, version, key, marker, workflow_id)
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
