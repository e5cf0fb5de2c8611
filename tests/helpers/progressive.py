"""What the progressive-rollout tests share: a version's pod as a real worker process, a project copy configured for
ROLLOUT_STEPS against the dev server, workflows started while a deploy runs, and the routing as Temporal reports it.

    version_worker(server, task_queue, deployment_name, build_id, build, behavior) -> AppProcess
    rollout_config(server, app_name, task_queue, tag, **extra) -> dict       config.env for deploy.sh
    register_gate_workflow(project_root)                                    the copy's worker.py registers RolloutGate
    WorkflowLoad(client, task_queue)                                        starts Job workflows until stopped
    RoutingRecorder(client, deployment_name)                                every distinct routing Temporal reported
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from helpers.deploy_harness import MINIMAL_CONFIG
from helpers.processes import PYTHON, REPO_DIR, AppProcess, DevServer, base_environment
from helpers.progressive_workflows import GATE_WORKFLOW_TYPE

NAMESPACE = "temporal-workers"  # KUBERNETES_NAMESPACE's default: the Worker Deployment is <namespace>/<APP_NAME>
WORKER_SCRIPT = REPO_DIR / "tests" / "helpers" / "progressive_worker.py"


def version_worker(
    tmp_path: Path,
    server: DevServer,
    task_queue: str,
    deployment_name: str,
    build_id: str,
    build: str,
    behavior: str = "pinned",
) -> AppProcess:
    """A worker process registered as `build_id`, running `build`'s workflows; returns once it polls. Stop it."""
    process = AppProcess(
        [PYTHON, str(WORKER_SCRIPT), server.address, task_queue, deployment_name, build_id, build, behavior],
        base_environment(tmp_path),
    )
    try:
        process.wait_for_line(r"^polling$")
    except BaseException:
        process.stop()
        raise
    return process


def rollout_config(server: DevServer, app_name: str, task_queue: str, tag: str, **extra: str) -> dict[str, str]:
    """config.env for a versioned deploy of `tag` with steps short enough for a test, gate evaluated every second."""
    return {
        **MINIMAL_CONFIG,
        "APP_NAME": app_name,
        "IMAGE_TAG": tag,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "WORKER_VERSIONING": "true",
        "DEPLOY_TEMPORAL_ADDRESS": server.address,  # the pods' TEMPORAL_ADDRESS stays the in-cluster one
        "ROLLOUT_STEPS": "20:6s,60:6s",
        "ROLLOUT_POLL_SECONDS": "1",
        "ROLLOUT_MIN_WORKFLOWS": "3",
        **extra,
    }


def register_gate_workflow(project_root: Path) -> None:
    """Make the copy's worker.py register a RolloutGate workflow, as a user's would: a class in workflows.py listed
    in WORKFLOWS. (The copy's worker.py never runs: the version workers stand in for its pods.)"""
    workflows, worker = project_root / "workflows.py", project_root / "worker.py"
    workflows.write_text(
        workflows.read_text()
        + f'''

@workflow.defn(name="{GATE_WORKFLOW_TYPE}")
class RolloutGate:
    @workflow.run
    async def run(self, check: str) -> str:
        return check
'''
    )
    text = worker.read_text()
    assert "from workflows import YourWorkflow\n" in text and "WORKFLOWS = [YourWorkflow]\n" in text
    text = text.replace("from workflows import YourWorkflow\n", "from workflows import RolloutGate, YourWorkflow\n")
    worker.write_text(text.replace("WORKFLOWS = [YourWorkflow]\n", "WORKFLOWS = [YourWorkflow, RolloutGate]\n"))


@dataclass
class Routing:
    current: str
    ramping: str
    percentage: float


async def routing(client: Client, deployment_name: str) -> Routing | None:
    try:
        response = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment_name)
        )
    except RPCError:
        return None
    config = response.worker_deployment_info.routing_config
    return Routing(
        config.current_deployment_version.build_id,
        config.ramping_deployment_version.build_id,
        config.ramping_version_percentage,
    )


class RoutingRecorder:
    """Polls the Worker Deployment's routing every 0.5 s while running; `seen` is every distinct routing, in order."""

    def __init__(self, client: Client, deployment_name: str) -> None:
        self.client, self.deployment_name = client, deployment_name
        self.seen: list[Routing] = []
        self._task: asyncio.Task | None = None

    async def _poll(self) -> None:
        while True:
            found = await routing(self.client, self.deployment_name)
            if found is not None and (not self.seen or self.seen[-1] != found):
                self.seen.append(found)
            await asyncio.sleep(0.5)

    async def __aenter__(self) -> RoutingRecorder:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def ramps(self, build_id: str) -> list[float]:
        """The percentages `build_id` ramped at, in the order Temporal reported them."""
        percentages: list[float] = []
        for seen in self.seen:
            if seen.ramping == build_id and (not percentages or percentages[-1] != seen.percentage):
                percentages.append(seen.percentage)
        return percentages


class WorkflowLoad:
    """Starts a Job workflow every `interval` seconds while running, as the app's users would; `handles` are all."""

    def __init__(self, client: Client, task_queue: str, interval: float = 0.25) -> None:
        self.client, self.task_queue, self.interval = client, task_queue, interval
        self.handles: list[WorkflowHandle] = []
        self._task: asyncio.Task | None = None

    async def start_one(self) -> WorkflowHandle:
        handle = await self.client.start_workflow(
            "Job", f"order-{len(self.handles)}", id=f"job-{uuid.uuid4().hex[:10]}", task_queue=self.task_queue
        )
        self.handles.append(handle)
        return handle

    async def _run(self) -> None:
        while True:
            await self.start_one()
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> WorkflowLoad:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
