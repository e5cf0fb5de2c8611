"""replay.py as a user runs it: `capture` writes what `temporal workflow show --output json` prints, encrypted
unless --decrypt says otherwise (and says so); `check` replays a directory against the code next to it and
names every workflow that no longer replays."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities import YourActivities
from worker import WORKFLOWS
from workflows import YourWorkflow

from helpers.deploy_harness import Project
from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment, keyvault_environment
from helpers.payloads import ENCRYPTED, metadata, payloads_in
from helpers.processes import DevServer, base_environment, temporal_cli_json

SECRET = "temporal-encryption-key"
WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"
FIRST_STEP = "        greeting = await self._execute(YourActivities.your_first_activity, name)\n"


async def run_workflows(dev_server: DevServer, task_queue: str, names: list[str]) -> list[str]:
    client = await Client.connect(dev_server.address)
    ids = []
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=YourActivities().all()):
        for name in names:
            workflow_id = f"replayed-{uuid.uuid4().hex[:8]}"
            await client.execute_workflow(YourWorkflow.run, name, id=workflow_id, task_queue=task_queue)
            ids.append(workflow_id)
    return ids


def captured(directory: Path) -> dict[str, dict]:
    """The files capture wrote, by workflow id (from the history's first event)."""
    files = {}
    for path in sorted(directory.glob("*.json")):
        history = json.loads(path.read_text())
        files[history["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]] = history
    return files


def test_capture_writes_what_the_temporal_cli_shows_and_check_replays_it(
    tmp_path: Path, dev_server: DevServer, task_queue: str, run_app
) -> None:
    ids = asyncio.run(run_workflows(dev_server, task_queue, ["Alice", "Bob"]))
    output = tmp_path / "histories"
    env = base_environment(tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    capture = run_app("deploy/replay.py", "capture", "--limit", "5", "--output", str(output), env=env)
    assert capture.wait() == 0, capture.output
    assert f'Wrote 2 histories (TaskQueue = "{task_queue}") to {output}.' in capture.output
    assert "Payload encryption is off" in capture.output
    files = captured(output)
    assert set(files) == set(ids)
    for workflow_id, history in files.items():
        shown = temporal_cli_json(dev_server.address, "workflow", "show", "--workflow-id", workflow_id)
        assert history == shown, "the same JSON as temporal workflow show --output json"

    check = run_app("deploy/replay.py", "check", str(output), env=env)
    assert check.wait() == 0, check.output
    assert f"All 2 histories in {output} replay against this code." in check.output


def test_check_names_every_workflow_a_changed_workflows_py_cannot_replay(tmp_path: Path) -> None:
    from deploy.replay import HISTORIES_DIR, load_histories

    project = Project(tmp_path / "project")
    workflows = project.root / "workflows.py"
    workflows.write_text(
        workflows.read_text().replace(
            FIRST_STEP, "        await self._execute(YourActivities.your_third_activity, name)\n" + FIRST_STEP
        )
    )
    result = project.run(".venv/bin/python", "deploy/replay.py", "check", str(HISTORIES_DIR))
    assert result.returncode == 1, result.output
    recorded = load_histories(HISTORIES_DIR)
    assert f"{len(recorded)} of {len(recorded)} histories in {HISTORIES_DIR} do not replay" in result.stdout
    for history in recorded:
        [line] = [line for line in result.stdout.splitlines() if line.startswith(f"  workflow {history.workflow_id}")]
        assert "[TMPRL1100] Nondeterminism error: Activity type of scheduled event" in line
    assert "workflow.patched()" in result.stdout and "WORKER_VERSIONING=true" in result.stdout
    assert "Traceback" not in result.output


def test_check_without_histories_or_directory_says_what_is_missing(tmp_path: Path, run_app) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = base_environment(tmp_path)
    nothing = run_app("deploy/replay.py", "check", str(empty), env=env)
    assert nothing.wait() == 1
    assert f"No histories (*.json) in {empty}: capture some with python deploy/replay.py capture" in nothing.output
    missing = run_app("deploy/replay.py", "check", str(tmp_path / "missing"), env=env)
    assert missing.wait() == 2
    assert "is not a directory of histories" in missing.output


# --- encrypted histories ------------------------------------------------------------------------


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[FakeKeyVault]:
    with FakeKeyVault(tmp_path) as running:
        running.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
        yield running


def all_payloads(files: dict[str, dict]) -> list[dict]:
    return [payload for history in files.values() for event in history["events"] for payload in payloads_in(event)]


def test_encrypted_histories_stay_encrypted_unless_the_user_asks_and_replay_with_the_key(
    tmp_path: Path, dev_server: DevServer, task_queue: str, vault: FakeKeyVault, run_app
) -> None:
    base = base_environment(tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    encrypted = azure_cli_environment(base) | keyvault_environment(vault, SECRET)
    worker = run_app("worker.py", env=encrypted)
    worker.wait_for_line(WORKER_READY)
    client = run_app("client.py", "--count", "1", env=encrypted)
    assert client.wait() == 0, client.output

    stored = tmp_path / "stored"
    capture = run_app("deploy/replay.py", "capture", "--output", str(stored), env=encrypted)
    assert capture.wait() == 0, capture.output
    assert "The payloads stay encrypted, as Temporal stores them" in capture.output
    payloads = all_payloads(captured(stored))
    assert payloads and {metadata(payload, "encoding") for payload in payloads} == {ENCRYPTED}
    assert b"ClientTriggeredPayload" not in b"".join(base64.b64decode(payload["data"]) for payload in payloads)

    with_key = run_app("deploy/replay.py", "check", str(stored), env=encrypted)
    assert with_key.wait() == 0, with_key.output
    without_key = run_app("deploy/replay.py", "check", str(stored), env=base)
    assert without_key.wait() == 1
    assert "holds encrypted payloads: set KEYVAULT_URL and KEYVAULT_SECRET_NAME" in without_key.output

    decrypted = tmp_path / "decrypted"
    capture = run_app("deploy/replay.py", "capture", "--decrypt", "--output", str(decrypted), env=encrypted)
    assert capture.wait() == 0, capture.output
    assert "WARNING: --decrypt: these files hold your workflows' inputs and results DECRYPTED" in capture.output
    payloads = all_payloads(captured(decrypted))
    assert ENCRYPTED not in {metadata(payload, "encoding") for payload in payloads}
    assert b"ClientTriggeredPayload-1" in b"".join(base64.b64decode(payload["data"]) for payload in payloads)
    plain_check = run_app("deploy/replay.py", "check", str(decrypted), env=base)
    assert plain_check.wait() == 0, plain_check.output
