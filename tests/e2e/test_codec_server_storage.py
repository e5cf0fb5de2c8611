"""The codec server resolves payload storage references: in process against real Azurite, and the real CLI.

The Web UI and `temporal workflow show --codec-endpoint` send the payloads of a history to /decode; for
a payload stored in Azure Blob Storage that is a small reference. The codec server fetches the blob (from
its own container only, within a per-request budget) and decrypts it, so they show the real value.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.converter import DataConverter, StorageDriverStoreContext, StorageDriverWorkflowInfo

import config
from codec_server import Limits, create_app
from crypto_converter import EncryptionCodec, Plaintext, encrypted_data_converter
from payload_storage import PayloadStorage, reference_claim

from helpers.azurite import AZURITE_BLOB, AZURITE_MISSING, Azurite
from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment, keyvault_environment
from helpers.processes import TEMPORAL_CLI, base_environment, free_port
from helpers.static_keys import StaticKeyProvider
from helpers.stopping import stop_and_time

pytestmark = pytest.mark.skipif(AZURITE_BLOB is None, reason=AZURITE_MISSING)

MIB = 1024 * 1024
SECRET = "temporal-encryption-key"
NAMESPACED = "v0/ns/default/d/sha256/"  # a blob name under the namespace the requests name
LISTENING = r"Codec server listening on http://127\.0\.0\.1:\d+"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite")) as running:
        yield running


def storage_settings(azurite: Azurite) -> config.PayloadStorageSettings:
    return config.PayloadStorageSettings(account_url=None, connection_string=azurite.connection_string)


def reference_payload(container: str, blob: str, driver: str = "azure.blobdriver") -> Payload:
    data = json.dumps({"driverName": driver, "claimData": {"container": container, "blob": blob}})
    return Payload(
        metadata={"encoding": b"json/protobuf", "messageType": b"temporal.api.sdk.v1.ExternalStorageReference"},
        data=data.encode(),
    )


async def decode_through_server(
    storage: PayloadStorage,
    provider: StaticKeyProvider,
    payloads: list[Payload],
    limits: Limits | None = None,
    path: str = "/default/decode",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    app = create_app(
        EncryptionCodec(provider, Plaintext.ACCEPT),
        ["http://localhost:8233"],
        None,
        limits=limits or Limits(),
        storage=storage.driver,
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        body = json_format.MessageToJson(Payloads(payloads=payloads))
        response = await client.post(path, data=body, headers=headers or {})
        return response.status, await response.read()


def run_with_storage(azurite: Azurite, step):
    async def run():
        storage = PayloadStorage(storage_settings(azurite), "default")  # stores without a target under it
        try:
            return await step(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


def test_a_reference_to_an_encrypted_5_mib_payload_decodes_to_its_plaintext(azurite):
    provider = StaticKeyProvider.random()
    value = "decode-me " + "y" * (5 * MIB)

    async def step(storage: PayloadStorage):
        converter = dataclasses.replace(
            encrypted_data_converter(provider, Plaintext.REFUSE), external_storage=storage.external_storage()
        )
        (reference,) = await converter.encode([value])
        small = (await converter.encode(["small value"]))[0]
        assert reference_claim(reference) is not None and reference.ByteSize() < 2048
        return await decode_through_server(storage, provider, [reference, small])

    status, body = run_with_storage(azurite, step)
    assert status == 200, body[:500]
    decoded = list(json_format.Parse(body, Payloads()).payloads)
    assert [payload.metadata["encoding"] for payload in decoded] == [b"json/plain", b"json/plain"]
    assert decoded[0].data == json.dumps(value).encode() and decoded[1].data == b'"small value"'


def test_a_reference_outside_the_container_is_refused_before_anything_is_fetched(azurite):
    other = azurite.admin().get_container_client("elsewhere")
    if not other.exists():
        other.create_container()
    blob = "v0/d/sha256/" + "1" * 64
    other.upload_blob(blob, Payload(data=b"secret").SerializeToString(), overwrite=True)

    status, body = run_with_storage(
        azurite,
        lambda storage: decode_through_server(
            storage, StaticKeyProvider.random(), [reference_payload("elsewhere", blob)]
        ),
    )

    assert status == 400
    answer = json.loads(body)["error"]
    assert answer.startswith("refused a payload storage reference: the reference names container 'elsewhere'")
    assert b"secret" not in body and "devstoreaccount1" not in answer


@pytest.mark.parametrize(
    ("payload", "status", "expected"),
    [
        (reference_payload("temporal-payloads", "../../etc/passwd"), 400, "not a name this driver writes"),
        (reference_payload("temporal-payloads", NAMESPACED + "0" * 64, "aws.s3driver"), 400, "storage driver"),
        (reference_payload("temporal-payloads", NAMESPACED + "2" * 64), 502, "the blob does not exist"),
    ],
    ids=["not-our-name", "other-driver", "missing-blob"],
)
def test_references_it_cannot_follow_are_a_clear_error_for_that_request(azurite, payload, status, expected):
    answer_status, body = run_with_storage(
        azurite, lambda storage: decode_through_server(storage, StaticKeyProvider.random(), [payload])
    )
    assert answer_status == status
    message = json.loads(body)["error"]
    assert expected in message and "devstoreaccount1" not in message and "127.0.0.1" not in message


def team_reference(azurite: Azurite, namespace: str) -> Payload:
    """A reference to a real stored payload of a workflow in `namespace`."""
    store = StorageDriverStoreContext(target=StorageDriverWorkflowInfo(namespace=namespace, id="w", run_id="r"))

    async def step(storage: PayloadStorage) -> Payload:
        (claim,) = await storage.driver.store(store, [Payload(metadata={"encoding": b"json/plain"}, data=b'"team"')])
        return reference_payload(claim.claim_data["container"], claim.claim_data["blob"])

    return run_with_storage(azurite, step)


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/team-a/decode", {}), ("/decode", {"X-Namespace": "team-a"}), ("/team-a/decode", {"X-Namespace": "team-a"})],
    ids=["path", "header", "both"],
)
def test_a_reference_of_another_namespace_is_refused(azurite, path, headers):
    team_b = team_reference(azurite, "team-b")
    status, body = run_with_storage(
        azurite,
        lambda storage: decode_through_server(storage, StaticKeyProvider.random(), [team_b], None, path, headers),
    )
    assert status == 400
    assert "not under namespace 'team-a'" in json.loads(body)["error"] and b'team"' not in body
    team_a = team_reference(azurite, "team-a")
    status, body = run_with_storage(
        azurite,
        lambda storage: decode_through_server(storage, StaticKeyProvider.random(), [team_a], None, path, headers),
    )
    assert status == 200


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/decode", {}, "names no namespace"),
        ("/team-a/decode", {"X-Namespace": "team-b"}, "different namespaces"),
    ],
    ids=["neither", "disagreeing"],
)
def test_references_in_a_request_without_one_namespace_are_refused(azurite, path, headers, expected):
    team_a = team_reference(azurite, "team-a")
    status, body = run_with_storage(
        azurite,
        lambda storage: decode_through_server(storage, StaticKeyProvider.random(), [team_a], None, path, headers),
    )
    assert status == 400 and expected in json.loads(body)["error"]


def test_a_reference_without_a_namespace_is_refused(azurite):
    no_namespace = reference_payload("temporal-payloads", "v0/d/sha256/" + "3" * 64)
    status, body = run_with_storage(
        azurite, lambda storage: decode_through_server(storage, StaticKeyProvider.random(), [no_namespace])
    )
    assert status == 400 and "not under namespace 'default'" in json.loads(body)["error"]


def test_what_one_request_fetches_is_bounded(azurite):
    provider = StaticKeyProvider.random()

    async def step(storage: PayloadStorage):
        converter = dataclasses.replace(DataConverter.default, external_storage=storage.external_storage())
        references = [(await converter.encode([f"{n} " + "z" * (2 * MIB)]))[0] for n in range(3)]
        within = await decode_through_server(storage, provider, references[:1], Limits(max_fetched_bytes=5 * MIB))
        over = await decode_through_server(storage, provider, references, Limits(max_fetched_bytes=5 * MIB))
        return within, over

    (within_status, _), (over_status, body) = run_with_storage(azurite, step)
    assert within_status == 200
    assert over_status == 413 and "too large to show here" in json.loads(body)["error"]


def start_codec_server_with_storage(run_app, tmp_path, vault, azurite: Azurite):
    """`python codec_server.py` on a free port, its key in `vault` and payload storage on Azurite; listening."""
    port = free_port()
    environment = azure_cli_environment(base_environment(tmp_path, CODEC_SERVER_PORT=str(port)))
    environment |= keyvault_environment(vault, SECRET)
    environment["PAYLOAD_STORAGE_CONNECTION_STRING"] = azurite.connection_string
    server = run_app("codec_server.py", env=environment)
    server.wait_for_line(LISTENING)
    return port, server


def test_the_cli_shows_a_decrypted_5_mib_value_through_the_codec_server_process(azurite, tmp_path, run_app, dev_server):
    value = f"cli-marker-{uuid.uuid4().hex} " + "w" * (5 * MIB)
    workflow_id = f"codec-storage-cli-{uuid.uuid4().hex}"
    with FakeKeyVault(tmp_path) as vault:
        key = os.urandom(32)
        version = vault.add_version(SECRET, base64.b64encode(key).decode())

        async def start_workflow() -> None:
            storage = PayloadStorage(storage_settings(azurite))
            converter = dataclasses.replace(
                encrypted_data_converter(StaticKeyProvider({version: key}), Plaintext.REFUSE),
                external_storage=storage.external_storage(),
            )
            client = await Client.connect(dev_server.address, data_converter=converter)
            await client.start_workflow("NoWorkerNeeded", value, id=workflow_id, task_queue=f"none-{workflow_id}")
            await storage.close()

        asyncio.run(start_workflow())
        port, server = start_codec_server_with_storage(run_app, tmp_path, vault, azurite)
        assert "Payload storage: on" in server.output

        def workflow_input(*codec_flags: str) -> Payload:
            shown = subprocess.run(
                [TEMPORAL_CLI, "workflow", "show", "-w", workflow_id, "--address", dev_server.address, "-o", "json"]
                + list(codec_flags),
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
            started = json.loads(shown)["events"][0]["workflowExecutionStartedEventAttributes"]
            [payload] = json_format.ParseDict(started["input"], Payloads()).payloads
            return payload

        assert reference_claim(workflow_input()) is not None, "the history holds the reference"
        through_codec = workflow_input("--codec-endpoint", f"http://127.0.0.1:{port}/{{namespace}}")
        assert through_codec.data == json.dumps(value).encode()


def test_a_codec_server_with_storage_only_starts_and_passes_payloads_through(azurite, tmp_path, run_app):
    port = free_port()
    environment = base_environment(
        tmp_path, CODEC_SERVER_PORT=str(port), PAYLOAD_STORAGE_CONNECTION_STRING=azurite.connection_string
    )
    server = run_app("codec_server.py", env=environment)
    server.wait_for_line(LISTENING)
    assert "Payload encryption: off" not in server.output  # the codec server has no converter to describe
    assert "Payload storage: on" in server.output

    store = StorageDriverStoreContext(target=StorageDriverWorkflowInfo(namespace="default", id="w", run_id="r"))

    async def stored_reference(storage: PayloadStorage) -> Payload:
        original = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"s" * 300_000 + b'"')
        (claim,) = await storage.driver.store(store, [original])
        return reference_payload(claim.claim_data["container"], claim.claim_data["blob"])

    reference = run_with_storage(azurite, stored_reference)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/decode",
        data=json_format.MessageToJson(Payloads(payloads=[reference])).encode(),
        headers={"X-Namespace": "default"},  # as the Web UI names the namespace
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        (decoded,) = json_format.Parse(answer.read(), Payloads()).payloads
    assert decoded.data == b'"' + b"s" * 300_000 + b'"'
    no_storage = run_app("codec_server.py", env=base_environment(tmp_path, CODEC_SERVER_PORT=str(free_port())))
    assert no_storage.wait() == 1
    assert "neither payload encryption nor payload storage is configured" in no_storage.output


# --- Answers that are never read ------------------------------------------------------------------

STORED_VALUE_BYTES = 48 * MIB  # encrypted, its blob is just under PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES (50 MiB)
UNREAD_REQUESTS = 8
# What 8 unread answers to a ~50 MiB blob may add to the process's RSS, at any moment: two requests fetch and
# decrypt at once (Limits.max_fetching_requests), each holding its payload a few times over while it works and
# once while its answer is written; the others wait for a turn. Measured: about 240 MiB at the peak and 40 MiB
# kept after; before the fix the unread answers added 1.16 GB and kept 1.05 GB.
UNREAD_PEAK_GROWTH_BOUND = 500 * MIB
# What may stay after the unread answers were dropped: memory returns after the request.
UNREAD_AFTER_GROWTH_BOUND = 100 * MIB


def resident_bytes(pid: int) -> int:
    """The process's resident set size now (VmRSS), from the kernel."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def unread_decode_requests(port: int, body: bytes, count: int) -> list[socket.socket]:
    """`count` connections that each send one /decode request and never read the answer."""
    request = (
        b"POST /default/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    connections = []
    for _ in range(count):
        connection = socket.socket()
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a reader that takes nothing
        connection.connect(("127.0.0.1", port))
        connection.sendall(request)
        connections.append(connection)
    return connections


def test_unread_answers_keep_memory_bounded_and_sigterm_still_stops_the_server(azurite, tmp_path, run_app):
    value = "unread " + "u" * STORED_VALUE_BYTES
    with FakeKeyVault(tmp_path) as vault:
        key = os.urandom(32)
        version = vault.add_version(SECRET, base64.b64encode(key).decode())

        async def stored_reference(storage: PayloadStorage) -> Payload:
            converter = dataclasses.replace(
                encrypted_data_converter(StaticKeyProvider({version: key}), Plaintext.REFUSE),
                external_storage=storage.external_storage(),
            )
            (reference,) = await converter.encode([value])
            return reference

        reference = run_with_storage(azurite, stored_reference)
        assert reference_claim(reference) is not None
        body = json_format.MessageToJson(Payloads(payloads=[reference])).encode()
        assert len(body) < 1024
        port, server = start_codec_server_with_storage(run_app, tmp_path, vault, azurite)
        pid = server.process.pid

        # A client that reads gets the whole value (the answer is written in chunks).
        read = urllib.request.Request(f"http://127.0.0.1:{port}/default/decode", data=body, method="POST")
        with urllib.request.urlopen(read, timeout=60) as answer:
            length = int(answer.headers["Content-Length"])
            (decoded,) = json_format.Parse(answer.read(), Payloads()).payloads
        assert decoded.data == json.dumps(value).encode() and length > STORED_VALUE_BYTES
        del decoded
        time.sleep(1)
        at_start = resident_bytes(pid)

        # 8 clients that never read their answers: each is answered within the request's time or dropped.
        connections = unread_decode_requests(port, body, UNREAD_REQUESTS)
        peak = at_start
        deadline = time.monotonic() + 45
        ended = r"Dropped the answer to a decode request|Gave up on a decode request"
        try:
            while time.monotonic() < deadline:
                peak = max(peak, resident_bytes(pid))
                if len([line for line in server.lines if re.search(ended, line)]) >= UNREAD_REQUESTS:
                    break
                time.sleep(0.1)
            time.sleep(1)
            after = resident_bytes(pid)
            peak = max(peak, after)
            report = (
                f"RSS {at_start / MIB:.0f} MiB before {UNREAD_REQUESTS} unread answers, peak "
                f"{peak / MIB:.0f} MiB, {after / MIB:.0f} MiB after"
            )
            print(report)
            assert peak - at_start < UNREAD_PEAK_GROWTH_BOUND, report
            assert after - at_start < UNREAD_AFTER_GROWTH_BOUND, report
        finally:
            for connection in connections:
                connection.close()

        # SIGTERM while 8 more answers are being held up by clients that do not read: the server still stops.
        connections = unread_decode_requests(port, body, UNREAD_REQUESTS)
        try:
            time.sleep(3)
            code, elapsed = stop_and_time(server, signal.SIGTERM, timeout=60)
        finally:
            for connection in connections:
                connection.close()
        print(f"SIGTERM with {UNREAD_REQUESTS} answers unread: exit {code} after {elapsed:.1f}s")
        assert (code, elapsed < 10) == (0, True), f"exit {code} after {elapsed:.1f}s\n{server.output[-3000:]}"
        assert "Codec server stopped" in server.output and "Traceback" not in server.output
