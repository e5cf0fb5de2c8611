"""Encryption end to end: the real worker and client processes, a real dev server, the fake Key Vault."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from crypto_converter import EncryptionCodec, Plaintext

from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment, keyvault_environment
from helpers.payloads import ENCRYPTED, metadata, payloads_in
from helpers.processes import TEMPORAL_CLI, base_environment, workflow_history
from helpers.static_keys import StaticKeyProvider

SECRET = "temporal-encryption-key"
WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"


def new_key_value() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[FakeKeyVault]:
    with FakeKeyVault(tmp_path) as running:
        yield running


def encrypted_environment(tmp_path, dev_server, task_queue, vault, **overrides) -> dict[str, str]:
    base = base_environment(tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    return azure_cli_environment(base) | keyvault_environment(vault, SECRET) | overrides


def workflow_ids(client_output: str) -> list[str]:
    return re.findall(r"^OK ([^\s:]+)", client_output, re.MULTILINE)


def input_key_id(dev_server, workflow_id: str) -> str:
    started = workflow_history(dev_server.address, workflow_id)[0]
    (payload,) = payloads_in(started["workflowExecutionStartedEventAttributes"]["input"])
    return metadata(payload, "encryption-key-id")


def test_history_holds_only_ciphertext(tmp_path, dev_server, task_queue, vault, run_app):
    version = vault.add_version(SECRET, new_key_value())
    env = encrypted_environment(tmp_path, dev_server, task_queue, vault)
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    client = run_app("client.py", "--count", "2", env=env)
    assert client.wait() == 0, client.output
    for program in (worker, client):
        assert "Payload encryption: on" in program.output

    for workflow_id in workflow_ids(client.output):
        payloads = [
            payload for event in workflow_history(dev_server.address, workflow_id) for payload in payloads_in(event)
        ]
        assert len(payloads) >= 7  # input, three activity inputs and results, workflow result
        for payload in payloads:
            assert metadata(payload, "encoding") == ENCRYPTED
            assert metadata(payload, "encryption-key-id") == version
            plaintext_candidates = base64.b64decode(payload["data"])
            assert b"ClientTriggeredPayload" not in plaintext_candidates
            assert b"Hello" not in plaintext_candidates


def test_without_key_vault_settings_encryption_is_off_and_says_so(tmp_path, dev_server, task_queue, run_app):
    env = base_environment(tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    client = run_app("client.py", "--count", "1", env=env)
    assert client.wait() == 0
    for program in (worker, client):
        assert "Payload encryption: off" in program.output
    (workflow_id,) = workflow_ids(client.output)
    encodings = {
        metadata(p, "encoding") for e in workflow_history(dev_server.address, workflow_id) for p in payloads_in(e)
    }
    assert encodings == {"json/plain"}


def test_encryption_required_refuses_to_start_without_key_vault(tmp_path, dev_server, task_queue, run_app):
    env = base_environment(tmp_path, TEMPORAL_ADDRESS=dev_server.address, ENCRYPTION_REQUIRED="true")
    for script in ("worker.py", "client.py"):
        program = run_app(script, env=env)
        assert program.wait() == 2
        assert "ENCRYPTION_REQUIRED=true but KEYVAULT_URL and KEYVAULT_SECRET_NAME are not set" in program.output


def test_rotation_needs_no_restart_and_loses_no_workflow(tmp_path, dev_server, task_queue, vault, run_app):
    old_version = vault.add_version(SECRET, new_key_value())
    env = encrypted_environment(
        tmp_path, dev_server, task_queue, vault, KEYVAULT_REFRESH_SECONDS="1", ACTIVITY_SIMULATED_WORK_SECONDS="2"
    )
    first_worker = run_app("worker.py", env=env)
    first_worker.wait_for_line(WORKER_READY)
    old_workflows = run_app("client.py", "--count", "3", env=env)
    first_worker.wait_for_line(r"Running your_first_activity", count=3)

    new_version = vault.add_version(SECRET, new_key_value())
    first_worker.wait_for_line(rf"encrypting new payloads with key id {new_version} \(was {old_version}\)")
    # A worker that starts after the rotation knows only the new key: it must fetch the old one on demand.
    first_worker.signal(signal.SIGTERM)
    assert first_worker.wait() == 0
    second_worker = run_app("worker.py", env=env)
    second_worker.wait_for_line(WORKER_READY)

    assert old_workflows.wait(timeout=120) == 0, old_workflows.output
    assert "3 of 3 workflows succeeded" in old_workflows.output
    new_workflows = run_app("client.py", "--count", "2", env=env)
    assert new_workflows.wait(timeout=120) == 0, new_workflows.output

    assert {input_key_id(dev_server, w) for w in workflow_ids(old_workflows.output)} == {old_version}
    assert {input_key_id(dev_server, w) for w in workflow_ids(new_workflows.output)} == {new_version}
    versions_fetched_by_id = [request.version for request in vault.requests if request.version is not None]
    assert versions_fetched_by_id == [old_version], "one on-demand fetch of the old key, all else current reads"
    assert vault.fetches(None) >= 4  # each process's start, and the refreshes


def test_wrong_key_fails_the_task_clearly_and_the_right_key_completes_the_workflow(
    tmp_path, dev_server, task_queue, run_app
):
    shared_version = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
    (tmp_path / "right").mkdir()
    (tmp_path / "wrong").mkdir()
    with FakeKeyVault(tmp_path / "right") as right_vault, FakeKeyVault(tmp_path / "wrong") as wrong_vault:
        right_vault.add_version(SECRET, new_key_value(), version=shared_version)
        wrong_vault.add_version(SECRET, new_key_value(), version=shared_version)
        wrong_worker = run_app("worker.py", env=encrypted_environment(tmp_path, dev_server, task_queue, wrong_vault))
        wrong_worker.wait_for_line(WORKER_READY)
        client = run_app(
            "client.py", "--count", "1", env=encrypted_environment(tmp_path, dev_server, task_queue, right_vault)
        )
        wrong_worker.wait_for_line(
            rf"Encrypted payload with key id '{shared_version}' failed authentication", count=2
        )  # the task is retried, failing the same clear way each time
        assert client.process.poll() is None, "the workflow waits; nothing is lost"

        wrong_worker.signal(signal.SIGTERM)
        assert wrong_worker.wait() == 0
        right_worker = run_app("worker.py", env=encrypted_environment(tmp_path, dev_server, task_queue, right_vault))
        right_worker.wait_for_line(WORKER_READY)
        assert client.wait(timeout=120) == 0, client.output
        assert "1 of 1 workflows succeeded" in client.output


def test_unreachable_vault_stops_worker_and_client_with_one_line(tmp_path, dev_server, task_queue, run_app):
    with FakeKeyVault(tmp_path) as vault:
        env = encrypted_environment(tmp_path, dev_server, task_queue, vault, KEYVAULT_STARTUP_TIMEOUT_SECONDS="5")
    for script in ("worker.py", "client.py"):
        program = run_app(script, env=env)
        assert program.wait() == 1
        errors = [line for line in program.lines if line.startswith("ERROR: ")]
        assert len(errors) == 1 and f"Key Vault secret '{SECRET}'" in errors[0], program.output
        assert "Traceback" not in program.output


# --- Encryption required: unencrypted payloads are refused, not run ----------------------------------


def start_with_plaintext_input(address: str, task_queue: str, workflow_id: str, argument: str) -> None:
    """What anyone who may start workflows can do without the key: the `temporal` CLI, no codec."""
    subprocess.run(
        [TEMPORAL_CLI, "workflow", "start", "--address", address, "--type", "YourWorkflow"]
        + ["--task-queue", task_queue, "--workflow-id", workflow_id, "--input", json.dumps(argument)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def event_types(address: str, workflow_id: str) -> list[str]:
    return [event["eventType"] for event in workflow_history(address, workflow_id)]


def decrypted_task_failure(address: str, workflow_id: str, provider: StaticKeyProvider) -> str:
    """The message of the workflow's first failed task: the worker encrypted it, so only the key reads it."""
    failed = next(
        event
        for event in workflow_history(address, workflow_id)
        if event["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_FAILED"
    )
    encoded = json_format.ParseDict(
        failed["workflowTaskFailedEventAttributes"]["failure"]["encodedAttributes"], Payload()
    )
    assert encoded.metadata["encoding"] == ENCRYPTED.encode()
    [decrypted] = asyncio.run(EncryptionCodec(provider, Plaintext.REFUSE).decode([encoded]))
    return json.loads(decrypted.data)["message"]


def wait_until_completed(address: str, workflow_id: str) -> None:
    for _ in range(240):
        if "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED" in event_types(address, workflow_id):
            return
        time.sleep(0.5)
    raise AssertionError(f"workflow {workflow_id} did not complete: {event_types(address, workflow_id)}")


def test_forged_plaintext_input_fails_the_workflow_task_and_never_reaches_an_activity(
    tmp_path, dev_server, task_queue, vault, run_app
):
    key = os.urandom(32)
    version = vault.add_version(SECRET, base64.b64encode(key).decode())
    env = encrypted_environment(tmp_path, dev_server, task_queue, vault, ENCRYPTION_REQUIRED="true")
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    assert "unencrypted payloads: refused (ENCRYPTION_REQUIRED=true)" in worker.output
    encrypted_workflows = run_app("client.py", "--count", "1", env=env)
    assert encrypted_workflows.wait(timeout=120) == 0, encrypted_workflows.output  # no false refusal

    forged_id = f"forged-{uuid.uuid4().hex}"
    start_with_plaintext_input(dev_server.address, task_queue, forged_id, "attacker-chosen input")

    worker.wait_for_line(rf"Refused an unencrypted payload \(encoding 'json/plain'\) for workflow '{forged_id}'")
    events = event_types(dev_server.address, forged_id)
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" in events
    assert not [event for event in events if event.startswith("EVENT_TYPE_ACTIVITY_")], events
    assert len(re.findall(r"Running your_first_activity", worker.output)) == 1  # the encrypted workflow's only
    message = decrypted_task_failure(dev_server.address, forged_id, StaticKeyProvider({version: key}))
    assert f"Refused an unencrypted payload (encoding 'json/plain') for workflow '{forged_id}'" in message
    assert "ENCRYPTION_ALLOW_PLAINTEXT=true" in message and "attacker-chosen" not in message

    # The migration opt-in lets the same workflow through on its next attempt, with a warning.
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    migrating = run_app("worker.py", env=env | {"ENCRYPTION_ALLOW_PLAINTEXT": "true"})
    migrating.wait_for_line(rf"Accepted an unencrypted payload for workflow '{forged_id}'", timeout=120)
    wait_until_completed(dev_server.address, forged_id)
    assert "Running your_first_activity" in migrating.output
    completed = workflow_history(dev_server.address, forged_id)[-1]
    (result,) = payloads_in(completed["workflowExecutionCompletedEventAttributes"]["result"])
    assert metadata(result, "encoding") == ENCRYPTED  # what the worker writes is encrypted all the same
