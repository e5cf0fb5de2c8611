"""Large payloads end to end: the real worker and client processes, a real dev server, real Azurite.

Without payload storage Temporal refuses a 3 MiB argument; with it, 5 MiB arguments and activity results
pass and the history holds only small references. With encryption on the blobs are ciphertext, and a
blob written under a key that was rotated since still reads. A tampered blob fails its task naming it;
Azurite going away mid-run costs retries, not workflows. The identity path signs in to Azurite over
HTTPS with a token from the stub `az`, as a laptop does with `az login`. And the issue's "done when": a
32 MiB document through a workflow and its activities, encrypted at rest, read back decrypted through the
codec server the way the Web UI asks for it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.service import RPCError

from workflows import YourWorkflow

from helpers.azurite import AZURITE_BLOB, AZURITE_MISSING, Azurite, storage_token
from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment, keyvault_environment
from helpers.payloads import ENCRYPTED, metadata, payloads_in
from helpers.processes import base_environment, free_port, workflow_history

pytestmark = pytest.mark.skipif(AZURITE_BLOB is None, reason=AZURITE_MISSING)

MIB = 1024 * 1024
SECRET = "temporal-encryption-key"
WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"
CODEC_SERVER_LISTENING = r"Codec server listening on http://127\.0\.0\.1:\d+"
REFERENCE_TYPE = "temporal.api.sdk.v1.ExternalStorageReference"
# What client.py --payload-size makes of workflow number 1: it starts with the guide's argument.
MARKER = b"ClientTriggeredPayload-1 0000000 0000001"


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    with Azurite(tmp_path) as running:
        yield running


def storage_environment(tmp_path, dev_server, task_queue, azurite: Azurite, **overrides: str) -> dict[str, str]:
    return base_environment(
        tmp_path,
        TEMPORAL_ADDRESS=dev_server.address,
        TEMPORAL_TASK_QUEUE=task_queue,
        PAYLOAD_STORAGE_CONNECTION_STRING=azurite.connection_string,
        **overrides,
    )


def workflow_ids(client_output: str) -> list[str]:
    return re.findall(r"^OK ([^\s:]+)", client_output, re.MULTILINE)


def started_workflow_id(client) -> str:
    """The id of the workflow a client.py logged as started."""
    line = client.wait_for_line(r"Workflow (\S+) started\. Run ID")[0]
    return re.search(r"Workflow (\S+) started", line).group(1)


def history_payloads(address: str, workflow_id: str) -> list[dict]:
    return [payload for event in workflow_history(address, workflow_id) for payload in payloads_in(event)]


def stored_payloads(azurite: Azurite) -> dict[str, Payload]:
    return {name: Payload.FromString(azurite.read(name)) for name in azurite.blob_names()}


def test_without_payload_storage_temporal_refuses_a_3_mib_argument(dev_server, task_queue):
    async def start() -> None:
        client = await Client.connect(dev_server.address)
        await client.start_workflow(YourWorkflow.run, "x" * (3 * MIB), id=f"big-{task_queue}", task_queue=task_queue)

    with pytest.raises(RPCError, match="Blob data size exceeds limit"):
        asyncio.run(start())


def test_5_mib_argument_and_activity_results_pass_and_the_history_holds_only_references(
    tmp_path, dev_server, task_queue, azurite, run_app
):
    env = storage_environment(tmp_path, dev_server, task_queue, azurite)
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    client = run_app("client.py", "--count", "1", "--payload-size", str(5 * MIB), env=env)
    assert client.wait(timeout=180) == 0, client.output
    final = len("Final result: Processed: Hello, !") + 5 * MIB
    assert re.search(rf"^OK \S+: {final} characters$", client.output, re.MULTILINE), client.output
    for program in (worker, client):
        assert "Payload storage: on (Azure Blob Storage account devstoreaccount1, container temporal-payloads" in (
            program.output
        )

    (workflow_id,) = workflow_ids(client.output)
    payloads = history_payloads(dev_server.address, workflow_id)
    assert len(payloads) >= 8
    assert all(len(json.dumps(payload)) < 2048 for payload in payloads), "only references, no 5 MiB payload"
    references = [p for p in payloads if metadata(p, "encoding") == "json/protobuf"]
    assert len(references) == 8, "the input, the three activities' inputs and results, the result: references"
    assert all(metadata(p, "messageType") == REFERENCE_TYPE for p in references)
    blobs = stored_payloads(azurite)
    assert len(blobs) >= 4 and all(payload.ByteSize() > 5 * MIB for payload in blobs.values())
    assert any(MARKER in payload.data for payload in blobs.values()), "without encryption the blobs hold JSON"


def test_encrypted_blobs_are_ciphertext_and_a_blob_written_under_a_rotated_key_still_reads(
    tmp_path, dev_server, task_queue, azurite, run_app
):
    with FakeKeyVault(tmp_path) as vault:
        old_version = vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
        env = azure_cli_environment(storage_environment(tmp_path, dev_server, task_queue, azurite))
        env |= keyvault_environment(vault, SECRET)
        client = run_app("client.py", "--count", "1", "--payload-size", str(5 * MIB), env=env)
        workflow_id = started_workflow_id(client)  # its input is in a blob, encrypted with the old key
        (input_blob,) = azurite.blob_names()

        new_version = vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
        worker = run_app("worker.py", env=env)  # knows only the new key: fetches the old one for the input
        worker.wait_for_line(WORKER_READY)
        assert client.wait(timeout=180) == 0, client.output
        assert f"Encrypting payloads with key id {new_version}" in worker.output

    blobs = stored_payloads(azurite)
    assert len(blobs) >= 5
    for name, stored in blobs.items():
        assert stored.metadata["encoding"] == ENCRYPTED.encode(), name
        assert MARKER not in stored.data and b"Hello" not in stored.data and b"0000001 0000002" not in stored.data
    key_ids = {name: stored.metadata["encryption-key-id"].decode() for name, stored in blobs.items()}
    assert key_ids.pop(input_blob) == old_version
    assert set(key_ids.values()) == {new_version}
    references = [p for p in history_payloads(dev_server.address, workflow_id) if metadata(p, "encoding") != ENCRYPTED]
    assert references and all(metadata(p, "messageType") == REFERENCE_TYPE for p in references)


def test_a_tampered_blob_fails_the_task_naming_it_and_the_workflow_completes_once_it_is_restored(
    tmp_path, dev_server, task_queue, azurite, run_app
):
    env = storage_environment(tmp_path, dev_server, task_queue, azurite)
    client = run_app("client.py", "--count", "1", "--payload-size", str(MIB), env=env)
    started_workflow_id(client)
    (name,) = azurite.blob_names()
    original = azurite.read(name)
    azurite.write(name, original.replace(b"0000001", b"6666666"))

    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    failure = worker.wait_for_line(r"failed its integrity check", timeout=120)[0]
    assert name in failure and "temporal-payloads" in failure and "devstoreaccount1" in failure
    assert client.process.poll() is None, "the workflow waits; nothing is lost"
    assert "Running your_first_activity" not in worker.output, "nothing ran on the altered input"

    azurite.write(name, original)
    assert client.wait(timeout=180) == 0, client.output
    assert "1 of 1 workflows succeeded" in client.output


def test_azurite_stopped_mid_run_costs_retries_not_workflows(tmp_path, dev_server, task_queue, azurite, run_app):
    env = storage_environment(tmp_path, dev_server, task_queue, azurite, ACTIVITY_SIMULATED_WORK_SECONDS="2")
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    client = run_app("client.py", "--count", "3", "--payload-size", str(MIB), env=env)
    worker.wait_for_line(r"Running your_first_activity", count=3, timeout=120)

    azurite.stop()  # while the activities run: their 1 MiB results have nowhere to go
    worker.wait_for_line(r"the storage account could not be reached", timeout=120)
    assert client.process.poll() is None
    azurite.start()

    assert client.wait(timeout=240) == 0, client.output
    assert "3 of 3 workflows succeeded" in client.output
    final = len("Final result: Processed: Hello, !") + MIB
    assert len(re.findall(rf"^OK \S+: {final} characters$", client.output, re.MULTILINE)) == 3


def test_the_azure_identity_path_end_to_end_with_encryption(tmp_path, dev_server, task_queue, run_app):
    """PAYLOAD_STORAGE_ACCOUNT_URL over HTTPS, a token from `az` (no key anywhere), and the Key Vault key."""
    with Azurite(tmp_path, oauth=True) as azurite, FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
        env = base_environment(
            tmp_path,
            TEMPORAL_ADDRESS=dev_server.address,
            TEMPORAL_TASK_QUEUE=task_queue,
            PAYLOAD_STORAGE_ACCOUNT_URL=azurite.account_url,
            PAYLOAD_STORAGE_CA_FILE=str(azurite.ca_file),
        )
        env = azure_cli_environment(env) | keyvault_environment(vault, SECRET)
        env["STUB_AZ_STORAGE_ACCESS_TOKEN"] = storage_token()
        worker = run_app("worker.py", env=env)
        worker.wait_for_line(WORKER_READY)
        assert "signed in with the Azure identity" in worker.output
        client = run_app("client.py", "--count", "1", "--payload-size", str(2 * MIB), env=env)
        assert client.wait(timeout=180) == 0, client.output
        blobs = stored_payloads(azurite)
        assert blobs and all(stored.metadata["encoding"] == ENCRYPTED.encode() for stored in blobs.values())

        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
        without_key_vault = {name: value for name, value in env.items() if not name.startswith("KEYVAULT_")}
        refused = run_app("worker.py", env=without_key_vault | {"STUB_AZ_LOGGED_OUT": "1"})
        assert refused.wait() == 1
        (error,) = [line for line in refused.lines if line.startswith("ERROR: ")]
        assert "container 'temporal-payloads' of storage account 'devstoreaccount1'" in error
        assert "no Azure identity could get a token" in error and "az login" in error


def decoded_by_codec_server(port: int, payload: dict) -> dict:
    """What the codec server answers the Web UI for one payload of a history."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/default/decode",
        data=json.dumps({"payloads": [payload]}).encode(),
        headers={"Content-Type": "application/json", "Origin": "http://localhost:8233"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        (decoded,) = json.load(response)["payloads"]
    return decoded


def test_a_32_mib_document_moves_end_to_end_encrypted_at_rest_and_reads_decrypted_through_the_codec_server(
    tmp_path, dev_server, task_queue, azurite, run_app
):
    size = 32 * MIB
    with FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
        env = azure_cli_environment(storage_environment(tmp_path, dev_server, task_queue, azurite))
        env |= keyvault_environment(vault, SECRET)
        worker = run_app("worker.py", env=env)
        worker.wait_for_line(WORKER_READY)
        client = run_app("client.py", "--count", "1", "--payload-size", str(size), env=env)
        assert client.wait(timeout=600) == 0, client.output
        assert "1 of 1 workflows succeeded" in client.output

        blobs = stored_payloads(azurite)
        assert len(blobs) >= 4 and all(stored.ByteSize() > size for stored in blobs.values())
        for name, stored in blobs.items():
            assert stored.metadata["encoding"] == ENCRYPTED.encode(), name
            assert MARKER not in stored.data and b"0000001 0000002" not in stored.data, name

        (workflow_id,) = workflow_ids(client.output)
        events = workflow_history(dev_server.address, workflow_id)
        (argument,) = payloads_in(events[0]["workflowExecutionStartedEventAttributes"]["input"])
        (result,) = payloads_in(events[-1]["workflowExecutionCompletedEventAttributes"]["result"])
        for reference in (argument, result):
            assert metadata(reference, "messageType") == REFERENCE_TYPE and len(json.dumps(reference)) < 2048

        port = free_port()
        codec_server = run_app("codec_server.py", env=env | {"CODEC_SERVER_PORT": str(port)})
        codec_server.wait_for_line(CODEC_SERVER_LISTENING)
        document, final = (
            json.loads(base64.b64decode(decoded_by_codec_server(port, reference)["data"]))
            for reference in (argument, result)
        )
    assert len(document) == size and document.startswith(MARKER.decode())
    assert final == f"Final result: Processed: Hello, {document}!"
