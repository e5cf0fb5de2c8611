"""The pre-deploy replay check: deploy.sh and patch.sh replay the open workflows on the task queue against the
code about to ship, before anything is built, against the real dev server (DEPLOY_TEMPORAL_ADDRESS).

The open workflow is a real YourWorkflow that has scheduled its first activity and waits for a worker; the
change under test is the one the issue names: an extra activity before the first one.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from worker import WORKFLOWS
from workflows import YourWorkflow

from helpers.deploy_harness import MINIMAL_CONFIG, Project
from helpers.processes import DevServer, free_port

FIRST_STEP = "        greeting = await self._execute(YourActivities.your_first_activity, name)\n"
EXTRA_STEP_FIRST = "        await self._execute(YourActivities.your_second_activity, name)\n" + FIRST_STEP


async def start_open_workflow(dev_server: DevServer, task_queue: str) -> str:
    """A YourWorkflow whose first task ran (its first activity is scheduled) and that stays open: no activity
    worker polls. Its id."""
    client = await Client.connect(dev_server.address)
    workflow_id = f"open-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS):  # workflows only, no activities
        handle = await client.start_workflow(YourWorkflow.run, "Alice", id=workflow_id, task_queue=task_queue)
        while True:
            events = (await handle.fetch_history()).events
            if any(event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for event in events):
                return workflow_id
            await asyncio.sleep(0.1)


@pytest.fixture
def open_workflow(dev_server: DevServer, task_queue: str) -> str:
    return asyncio.run(start_open_workflow(dev_server, task_queue))


def gated_project(tmp_path: Path, dev_server: DevServer, task_queue: str, **settings: str) -> Project:
    project = Project(tmp_path / "project")
    project.write_config(
        {
            **MINIMAL_CONFIG,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "DEPLOY_TEMPORAL_ADDRESS": dev_server.address,
            "DEPLOY_REPLAY_HISTORIES": "20",
            **settings,
        }
    )
    return project


def change_workflow(project: Project) -> None:
    """The incompatible change: an extra activity before the first one, in the copy about to be deployed."""
    path = project.root / "workflows.py"
    text = path.read_text()
    assert FIRST_STEP in text, "workflows.py still runs your_first_activity first"
    path.write_text(text.replace(FIRST_STEP, EXTRA_STEP_FIRST))


BUILDS_AND_CHANGES = (
    ["az", "acr", "login"],
    ["docker", "login"],
    ["docker", "buildx", "build"],
    ["az", "acr", "build"],
)


def built_or_changed_anything(project: Project) -> list[list[str]]:
    """The recorded calls that log in, build, push or change the cluster (preflight's look-ups are not)."""
    return [
        command
        for command in project.commands()
        if any(command[: len(prefix)] == prefix for prefix in BUILDS_AND_CHANGES) or {"apply", "set"} & set(command)
    ]


@pytest.mark.parametrize(
    ("script", "arguments", "step"),
    [
        ("deploy.sh", (), '3/10 "Replaying open workflows"'),
        ("deploy.sh", ("--dry-run",), '3/10 "Replaying open workflows"'),
        ("patch.sh", (), '3/9 "Replaying open workflows"'),
    ],
    ids=["deploy", "deploy-dry-run", "patch"],
)
def test_with_versioning_off_an_incompatible_change_stops_the_deploy_before_any_build(
    tmp_path: Path, dev_server: DevServer, task_queue: str, open_workflow: str, script: str, arguments: tuple, step: str
) -> None:
    project = gated_project(tmp_path, dev_server, task_queue)
    change_workflow(project)
    result = project.run(script, *arguments)
    assert result.returncode == 1, result.output
    assert f"{script}: step {step} failed (exit status 1)." in result.stderr
    [failed] = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert f"workflow {open_workflow}" in failed and "[TMPRL1100] Nondeterminism error" in failed, failed
    assert "WORKER_VERSIONING=true" in result.output and "workflow.patched()" in result.output
    assert built_or_changed_anything(project) == [], "nothing was built, pushed or applied"
    assert "Building and pushing image" not in result.stdout


def test_the_unchanged_code_passes_the_check_and_the_deploy_goes_on(
    tmp_path: Path, dev_server: DevServer, task_queue: str, open_workflow: str
) -> None:
    project = gated_project(tmp_path, dev_server, task_queue)
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    assert "All 1 replayed: this code can take over the running workflows." in result.stdout
    assert any(command[:3] == ["docker", "buildx", "build"] for command in project.commands())


def test_with_versioning_on_an_unversioned_workflow_that_does_not_replay_is_a_warning(
    tmp_path: Path, dev_server: DevServer, task_queue: str, open_workflow: str
) -> None:
    """Unversioned (and auto-upgrade) workflows move to the new version at their next task: worth a warning,
    not a stop, since the user chose versioning. (A dry run: routing needs the new version's pods.)"""
    project = gated_project(tmp_path, dev_server, task_queue, WORKER_VERSIONING="true")
    change_workflow(project)
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert f"FAILED workflow {open_workflow}" in result.stdout
    assert "WARNING: 1 of 1 auto-upgrade (or unversioned) workflows do not replay" in result.stdout
    assert "deploy/rollout.py set-current 0123abcd" in result.stdout


def test_an_unreachable_temporal_stops_the_check_with_what_to_set(tmp_path: Path, task_queue: str) -> None:
    project = Project(tmp_path / "project")
    nothing_listens = f"127.0.0.1:{free_port()}"
    project.write_config({**MINIMAL_CONFIG, "DEPLOY_TEMPORAL_ADDRESS": nothing_listens, "DEPLOY_REPLAY_HISTORIES": "5"})
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 1, result.output
    assert f"Cannot connect to Temporal at {nothing_listens}" in result.stderr
    assert "set DEPLOY_TEMPORAL_ADDRESS" in result.stderr
    assert "DEPLOY_REPLAY_HISTORIES=0 skips this check" in result.stderr
    assert "Traceback" not in result.output


def test_zero_histories_turns_the_check_off_without_contacting_temporal(tmp_path: Path) -> None:
    project = Project(tmp_path / "project")
    project.write_config({**MINIMAL_CONFIG, "DEPLOY_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert "Off (DEPLOY_REPLAY_HISTORIES=0)" in result.stdout


# --- The cause comes first: what stopped the check is said before anything else, and the hint follows it ----------


def closed_loopback_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused at once."""
    return free_port()


def failed_step_hint(result) -> str:
    """The `Hint:` line the script printed after the failed step."""
    [hint] = [line for line in result.stderr.splitlines() if line.startswith("Hint: ")]
    return hint


def test_an_unreachable_key_vault_is_named_as_the_cause_not_failing_workflows(
    tmp_path: Path, dev_server: DevServer, task_queue: str, open_workflow: str
) -> None:
    """The issue's report: the dry run stopped saying the open workflows named above would fail their next task,
    when Key Vault could not be reached and no workflow was named."""
    vault = f"https://127.0.0.1:{closed_loopback_port()}/"
    project = gated_project(
        tmp_path,
        dev_server,
        task_queue,
        KEYVAULT_URL=vault,
        KEYVAULT_SECRET_NAME="temporal-encryption-key",
        KEYVAULT_STARTUP_TIMEOUT_SECONDS="5",
        AZURE_CLIENT_ID="99999999-8888-7777-6666-555555555555",
    )
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 1, result.output
    assert '3/10 "Replaying open workflows" failed' in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert error.startswith("ERROR: Key Vault could not be read from this machine, so no open workflow"), error
    assert "cannot reach the vault" in error
    hint = failed_step_hint(result)
    assert hint.startswith("Hint: Key Vault could not be read from this machine"), hint
    assert "would fail their next task" not in result.output
    assert "FAILED" not in result.stdout
    assert "DEPLOY_REPLAY_HISTORIES=0" in hint
    assert "Traceback" not in result.output


def test_an_unreachable_temporal_is_named_as_the_cause_in_the_hint(tmp_path: Path) -> None:
    project = Project(tmp_path / "project")
    nothing_listens = f"127.0.0.1:{closed_loopback_port()}"
    project.write_config({**MINIMAL_CONFIG, "DEPLOY_TEMPORAL_ADDRESS": nothing_listens, "DEPLOY_REPLAY_HISTORIES": "5"})
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 1, result.output
    [error] = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert error.startswith(f"ERROR: Temporal could not be reached from this machine at {nothing_listens}"), error
    hint = failed_step_hint(result)
    assert hint.startswith("Hint: Temporal could not be reached from this machine"), hint
    assert "set DEPLOY_TEMPORAL_ADDRESS" in hint
    assert "would fail their next task" not in result.output


def test_an_unreachable_payload_storage_is_named_as_the_cause(
    tmp_path: Path, dev_server: DevServer, task_queue: str, open_workflow: str
) -> None:
    port = closed_loopback_port()
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    project = gated_project(tmp_path, dev_server, task_queue, PAYLOAD_STORAGE_CONNECTION_STRING=connection_string)
    result = project.run("patch.sh", "--dry-run")
    assert result.returncode == 1, result.output
    assert '3/9 "Replaying open workflows" failed' in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert error.startswith("ERROR: Payload storage could not be used from this machine, so no open workflow"), error
    assert "the storage account could not be reached" in error
    hint = failed_step_hint(result)
    assert hint.startswith("Hint: Payload storage could not be used from this machine"), hint
    assert "would fail their next task" not in result.output


def test_workflows_that_would_fail_are_the_cause_only_when_they_are(
    tmp_path: Path, dev_server: DevServer, task_queue: str, open_workflow: str
) -> None:
    project = gated_project(tmp_path, dev_server, task_queue)
    change_workflow(project)
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 1, result.output
    hint = failed_step_hint(result)
    assert hint.startswith("Hint: the open workflows named above would fail their next task"), hint
    assert "could not be reached" not in hint
