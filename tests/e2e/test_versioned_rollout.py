"""A versioned rollout end to end on a real dev server: an incompatible change ships without breaking a workflow.

Build A's workers run 5 workflows that wait for a signal, pinned to A. Build B's workflow code cannot replay
A's histories. deploy.sh (stub az/docker/kubectl, the real rollout.py against the dev server) makes B the
current version; the 5 released workflows finish on A without a non-determinism error while new ones run
on B; A drains, and `patch.sh --clean-up` selects A's Deployment for deletion, never B's (current) nor that
of a version that still has a pinned workflow running.

The workers are real SDK workers in this process, registered as versions exactly as worker.py registers
(worker.deployment_config from the same variables). The dev server runs with Temporal's drainage checks
every second instead of every few minutes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

import config
import worker
from deploy.replay import replay

from helpers.deploy_harness import CONTEXT, MINIMAL_CONFIG, Project
from helpers.processes import DevServer
from helpers.rollout_workflows import WORKFLOW_TYPE, HeldBuildA, HeldBuildB, held_step

NAMESPACE = "temporal-workers"  # KUBERNETES_NAMESPACE's default: the Worker Deployment is <namespace>/<APP_NAME>
FAST_DRAINAGE = (
    "--dynamic-config-value",
    'matching.wv.VersionDrainageStatusRefreshInterval="1s"',
    "--dynamic-config-value",
    'matching.wv.VersionDrainageStatusVisibilityGracePeriod="1s"',
    "--dynamic-config-value",
    'matching.PollerHistoryTTL="1s"',
)
PINNED = VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
WAIT_SECONDS = 90


@pytest.fixture(scope="module")
def versioning_server() -> Iterator[DevServer]:
    server = DevServer().start(("--headless", *FAST_DRAINAGE))
    yield server
    server.stop()


@asynccontextmanager
async def versioned_worker(
    client: Client, task_queue: str, deployment_name: str, build_id: str, workflow_class: type
) -> AsyncIterator[Worker]:
    """A worker registered as `build_id` of the Worker Deployment, from the variables a versioned pod gets."""
    settings = config.load_settings(
        {
            "CONFIG_ENV_FILE": "/nonexistent/config.env",
            "TEMPORAL_DEPLOYMENT_NAME": deployment_name,
            "TEMPORAL_WORKER_BUILD_ID": build_id,
        }
    )
    deployment_config = worker.deployment_config(settings)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[workflow_class],
        activities=[held_step],
        deployment_config=deployment_config,
    ) as running:
        yield running


async def eventually(check, what: str, timeout: float = WAIT_SECONDS):
    """Poll an async check until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


async def pinned_build_id(handle: WorkflowHandle) -> str:
    """The version a workflow is pinned to, once its first task has run ("" before that)."""
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id if info.behavior == PINNED else ""


async def version_statuses(client: Client, deployment_name: str) -> dict[str, str]:
    from deploy.rollout import STATUS_NAMES

    response = await client.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment_name)
    )
    return {
        summary.deployment_version.build_id: STATUS_NAMES.get(summary.status, "unknown")
        for summary in response.worker_deployment_info.version_summaries
    }


def write_config(project: Project, server: DevServer, app_name: str, task_queue: str, tag: str) -> None:
    project.write_config(
        {
            **MINIMAL_CONFIG,
            "APP_NAME": app_name,
            "IMAGE_TAG": tag,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "WORKER_VERSIONING": "true",
            "DEPLOY_TEMPORAL_ADDRESS": server.address,  # the pods' TEMPORAL_ADDRESS stays the in-cluster one
            "DEPLOY_REPLAY_HISTORIES": "20",
        }
    )


def make_current(project: Project, server: DevServer, app_name: str, task_queue: str, tag: str) -> None:
    """What deploy.sh's last step runs (rollout.py set-current), for the versions before the one under test."""
    write_config(project, server, app_name, task_queue, tag)
    result = project.run(".venv/bin/python", "deploy/rollout.py", "set-current", tag)
    assert result.returncode == 0, result.output


def deletions(project: Project) -> list[list[str]]:
    return [command for command in project.commands() if command[0] == "kubectl" and "delete" in command]


def test_an_incompatible_change_rolls_out_as_a_new_version_and_the_old_one_is_cleaned_up_once_drained(
    tmp_path: Path, versioning_server: DevServer
) -> None:
    server = versioning_server
    app_name = f"w-{uuid.uuid4().hex[:8]}"
    deployment_name = f"{NAMESPACE}/{app_name}"
    task_queue = f"rollout-{uuid.uuid4().hex[:12]}"
    project = Project(tmp_path / "project")
    kube = ["kubectl", "--context", CONTEXT, "--namespace", NAMESPACE]

    async def scenario() -> None:
        client = await Client.connect(server.address)

        # An older build X keeps one pinned workflow open throughout: its version must never be deleted.
        async with versioned_worker(client, task_queue, deployment_name, "x1", HeldBuildA):
            await asyncio.to_thread(make_current, project, server, app_name, task_queue, "x1")
            long_runner = await client.start_workflow(
                WORKFLOW_TYPE, "long", id=f"long-{uuid.uuid4().hex[:8]}", task_queue=task_queue
            )
            assert await eventually(lambda: pinned_build_id(long_runner), "the long runner to pin") == "x1"

        async with versioned_worker(client, task_queue, deployment_name, "a1", HeldBuildA):
            await asyncio.to_thread(make_current, project, server, app_name, task_queue, "a1")
            held = [
                await client.start_workflow(
                    WORKFLOW_TYPE, f"order-{n}", id=f"held-{uuid.uuid4().hex[:8]}", task_queue=task_queue
                )
                for n in range(5)
            ]
            for handle in held:
                assert await eventually(lambda handle=handle: pinned_build_id(handle), "A's workflows to pin") == "a1"

            async with versioned_worker(client, task_queue, deployment_name, "b1", HeldBuildB):
                write_config(project, server, app_name, task_queue, "b1")
                deployed = await asyncio.to_thread(project.run, "deploy.sh")
                assert deployed.returncode == 0, deployed.output
                assert "6 pinned workflows finish on the version they run on: not replayed." in deployed.stdout
                assert f"Build id b1 is the current version of {deployment_name}" in deployed.stdout
                assert [
                    *kube,
                    "rollout",
                    "status",
                    f"deployment/{app_name}-b1",
                    "--timeout",
                    "5m",
                ] in project.commands()

                for handle in held:
                    await handle.signal(HeldBuildA.release)
                results = [await handle.result() for handle in held]
                assert results == [f"A finished order-{n}" for n in range(5)], "A's code finished A's workflows"
                for handle in held:
                    events = (await handle.fetch_history()).events
                    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
                    completed = [
                        e.workflow_task_completed_event_attributes.deployment_version.build_id
                        for e in events
                        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                    ]
                    assert set(completed) == {"a1"}, "every task of these workflows ran on A"
                # ... and B could not have run them: its code does not replay their histories.
                histories = [await handle.fetch_history() for handle in held]
                assert all(outcome.nondeterministic for outcome in await replay(histories, workflows=[HeldBuildB]))

                fresh = await client.start_workflow(
                    WORKFLOW_TYPE, "new", id=f"new-{uuid.uuid4().hex[:8]}", task_queue=task_queue
                )
                assert await eventually(lambda: pinned_build_id(fresh), "the new workflow to pin") == "b1"
                await fresh.signal(HeldBuildB.release)
                assert await fresh.result() == "B finished new"

                statuses = await eventually(
                    lambda: _when(version_statuses(client, deployment_name), lambda s: s.get("a1") == "drained"),
                    "A to drain",
                )
                assert statuses["b1"] == "current" and statuses["x1"] == "draining", statuses

                write_config(project, server, app_name, task_queue, "b1")
                cleaned = await asyncio.to_thread(project.run, "patch.sh", "--clean-up")
                assert cleaned.returncode == 0, cleaned.output
                assert deletions(project) == [[*kube, "delete", "deployment", f"{app_name}-a1", "--ignore-not-found"]]
                for build_id, verdict in (("a1", "delete: drained"), ("b1", "keep: current"), ("x1", "keep: pinned")):
                    assert any(build_id in line and verdict in line for line in cleaned.stderr.splitlines()), (
                        cleaned.output
                    )

            dry = await asyncio.to_thread(project.run, "patch.sh", "--clean-up", "--dry-run")
            assert dry.returncode == 0, dry.output
            assert project.commands() == [], "a dry run deletes nothing"
            await long_runner.terminate("test over")

    asyncio.run(scenario())


async def _when(value_coroutine, condition):
    value = await value_coroutine
    return value if condition(value) else None
