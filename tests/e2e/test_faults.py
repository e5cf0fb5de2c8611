"""Fault scenarios: what Temporal promises when a worker or the server goes away, shown with our processes."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import time

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from crypto_converter import EncryptionCodec

from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment, keyvault_environment
from helpers.processes import AppProcess, DevServer, base_environment, temporal_cli_json
from helpers.static_keys import StaticKeyProvider

WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"
WORKFLOWS_IN_FLIGHT = 20
SECRET = "temporal-encryption-key"


def expected_results(output: str) -> dict[str, str]:
    """workflow id -> result, from the smoke-test client's OK lines."""
    return dict(re.findall(r"^OK (\S+): (.*)$", output, re.MULTILINE))


def completed_after_last_failed_start(client: AppProcess) -> list[int]:
    """Numbers of the workflows that completed and were started after the last failed start."""
    last_failed = max(int(n) for n in re.findall(r"Failed to start workflow number (\d+):", client.output))
    completed = (
        int(n) for n in re.findall(r"Workflow your-workflow-(\d+)-\S+ completed$", client.output, re.MULTILINE)
    )
    return [number for number in completed if number > last_failed]


def wait_for_completions_after_restart(client: AppProcess, count: int, timeout: float = 120) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(numbers := completed_after_last_failed_start(client)) < count:
        assert time.monotonic() < deadline, f"no {count} workflows completed after the restart:\n{client.output}"
        time.sleep(0.2)
    return numbers


def test_kill_9_worker_mid_activity_and_a_new_worker_completes_every_workflow_once(
    tmp_path, dev_server, task_queue, run_app
):
    env = base_environment(
        tmp_path,
        TEMPORAL_ADDRESS=dev_server.address,
        TEMPORAL_TASK_QUEUE=task_queue,
        ACTIVITY_SIMULATED_WORK_SECONDS="3",
    )
    doomed = run_app("worker.py", env=env)
    doomed.wait_for_line(WORKER_READY)
    client = run_app("client.py", "--count", str(WORKFLOWS_IN_FLIGHT), env=env)
    doomed.wait_for_line(r"Running your_first_activity", count=WORKFLOWS_IN_FLIGHT)
    doomed.signal(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL

    successor = run_app("worker.py", env=env)
    successor.wait_for_line(WORKER_READY)
    assert client.wait(timeout=180) == 0, client.output

    results = expected_results(client.output)
    assert len(results) == WORKFLOWS_IN_FLIGHT
    for workflow_id, result in results.items():
        number = re.match(r"your-workflow-(\d+)-", workflow_id).group(1)
        assert result == f"Final result: Processed: Hello, ClientTriggeredPayload-{number}!"


def test_server_restart_while_the_client_loop_runs(tmp_path, task_queue, run_app):
    server = DevServer(db_file=tmp_path / "history.db").start(("--headless",))
    try:
        env = base_environment(
            tmp_path, TEMPORAL_ADDRESS=server.address, TEMPORAL_TASK_QUEUE=task_queue, CLIENT_INTERVAL_SECONDS="0.3"
        )
        worker = run_app("worker.py", env=env)
        worker.wait_for_line(WORKER_READY)
        client = run_app("client.py", env=env)
        client.wait_for_line(r"Workflow \S+ completed$")

        server.stop()
        client.wait_for_line(r"Failed to start workflow number \d+:", count=2)
        server.start(("--headless",))

        wait_for_completions_after_restart(client, count=3)
        assert client.process.poll() is None and worker.process.poll() is None
        client.signal(signal.SIGTERM)
        worker.signal(signal.SIGTERM)
        assert client.wait() == 0
        assert worker.wait() == 0, worker.output
    finally:
        server.stop()


# --- Encryption on, Key Vault gone after start-up ---------------------------------------------------


def encrypted_input(key_id: str, key: bytes, argument: str) -> Payload:
    """The payload a client holding key `key_id` would send for `argument`, made with our own codec."""
    plain = DataConverter.default.payload_converter.to_payloads([argument])
    return asyncio.run(EncryptionCodec(StaticKeyProvider({key_id: key})).encode(plain))[0]


def start_workflow_with_payload(address: str, task_queue: str, workflow_id: str, payload: Payload) -> None:
    """Start YourWorkflow with a ready-made payload through the `temporal` CLI (no SDK client in this process)."""
    metadata = [f"{name}={value.decode()}" for name, value in payload.metadata.items()]
    subprocess.run(
        ["temporal", "workflow", "start", "--address", address, "--type", "YourWorkflow"]
        + ["--task-queue", task_queue, "--workflow-id", workflow_id]
        + ["--input-base64", "--input", base64.b64encode(payload.data).decode()]
        + [argument for entry in metadata for argument in ("--input-meta", entry)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def workflow_status(address: str, workflow_id: str) -> str:
    described = temporal_cli_json(address, "workflow", "describe", "--workflow-id", workflow_id)
    return described["workflowExecutionInfo"]["status"]


def wait_for_status(address: str, workflow_id: str, status: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (current := workflow_status(address, workflow_id)) != status:
        assert time.monotonic() < deadline, f"workflow {workflow_id} is {current}, not {status}"
        time.sleep(0.5)


def test_key_vault_outage_keeps_cached_keys_working_and_an_unfetched_version_waits_for_the_vault(
    tmp_path, dev_server, task_queue, run_app
):
    old_key, new_key = os.urandom(32), os.urandom(32)
    with FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET, base64.b64encode(old_key).decode())
        env = azure_cli_environment(
            base_environment(
                tmp_path,
                TEMPORAL_ADDRESS=dev_server.address,
                TEMPORAL_TASK_QUEUE=task_queue,
                CLIENT_INTERVAL_SECONDS="0.3",
                KEYVAULT_STARTUP_TIMEOUT_SECONDS="5",
            )
        ) | keyvault_environment(vault, SECRET)
        worker = run_app("worker.py", env=env)
        worker.wait_for_line(WORKER_READY)
        client = run_app("client.py", env=env)
        client.wait_for_line(r"Workflow \S+ completed$")

        new_version = vault.add_version(SECRET, base64.b64encode(new_key).decode())  # not yet refreshed
        vault.unavailable = True
        completed_before = len(client.wait_for_line(r"Workflow \S+ completed$"))
        client.wait_for_line(r"Workflow \S+ completed$", count=completed_before + 3)  # cached key at work

        workflow_id = f"needs-new-key-{task_queue}"
        start_workflow_with_payload(
            dev_server.address, task_queue, workflow_id, encrypted_input(new_version, new_key, "after-rotation")
        )
        worker.wait_for_line(rf"No key for encrypted payload with key id '{new_version}': Cannot read version")
        assert workflow_status(dev_server.address, workflow_id) == "WORKFLOW_EXECUTION_STATUS_RUNNING"

        vault.unavailable = False
        wait_for_status(dev_server.address, workflow_id, "WORKFLOW_EXECUTION_STATUS_COMPLETED")
        assert vault.fetches(new_version) == 1
