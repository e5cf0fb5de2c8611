"""deploy/gates.py against a real dev server with real versioned SDK workers (one per version, in this process):
the figures of a version whose workflows fail and of one whose workflows succeed, in the window only; the
minimum sample on real figures; workflows stuck on failing workflow tasks (a non-determinism error of an
auto-upgrade workflow moving onto the new version, and a new workflow whose first task fails) counted for the
version they fail on; the gate workflow started pinned to the new version and its verdicts (running, passed,
failed with its message, timed out); pinned_workflows listing exactly the open pinned ones.

The comparison's arithmetic and the queries' text, in process: tests/deploy/test_gates.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import RoutingConfigUpdateState
from temporalio.api.enums.v1 import VersioningBehavior as VersioningBehaviorProto
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest, SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import PinnedVersioningOverride, VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker, WorkerDeploymentConfig

from deploy import gates
from deploy.deploy_config import DeploySettings, load_deploy_settings

from helpers.gate_workflows import BUILD_A, BUILD_E, gate_step
from helpers.processes import DevServer

NS = "temporal-workers"
WAIT_SECONDS = 60
# Temporal sets TemporalReportedProblems after this many consecutive workflow task failures (5 by default, which
# takes about a minute of retries): the stuck test's own server flags it after two (about 10 s).
FAST_PROBLEMS = ("--dynamic-config-value", "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute=2")


@pytest.fixture(scope="module")
def problems_server() -> Iterator[DevServer]:
    server = DevServer().start(("--headless", *FAST_PROBLEMS))
    yield server
    server.stop()


def deploy_settings(app_name: str, task_queue: str) -> DeploySettings:
    environ = {"ACR_NAME": "myregistry", "IMAGE_TAG": "1a2b3c4d", "TEMPORAL_ADDRESS": "temporal.example:7233",
               "KUBERNETES_NAMESPACE": NS, "APP_NAME": app_name, "WORKER_VERSIONING": "true",
               "TEMPORAL_TASK_QUEUE": task_queue}  # fmt: skip
    return load_deploy_settings("render", environ=environ, env_file=Path("/nonexistent/config.env"))


class Versions:
    """A Worker Deployment on the dev server whose versions are SDK workers started here."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue
        self.app_name = f"gates-{uuid.uuid4().hex[:8]}"
        self.name = f"{NS}/{self.app_name}"
        self.stack = AsyncExitStack()

    async def start(self, build_id: str, workflows: list, behavior: VersioningBehavior) -> None:
        config = WorkerDeploymentConfig(
            version=WorkerDeploymentVersion(deployment_name=self.name, build_id=build_id),
            use_worker_versioning=True,
            default_versioning_behavior=behavior,
        )
        worker = Worker(
            self.client,
            task_queue=self.task_queue,
            workflows=workflows,
            activities=[gate_step],
            deployment_config=config,
        )
        await self.stack.enter_async_context(worker)

    async def make_current(self, build_id: str) -> None:
        request = SetWorkerDeploymentCurrentVersionRequest(
            namespace=self.client.namespace, deployment_name=self.name, build_id=build_id
        )
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                await self.client.workflow_service.set_worker_deployment_current_version(request)
                break
            except RPCError as error:  # NOT_FOUND until the version's worker has polled
                if error.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        # Temporal tells the task queues of the new routing on its own; until it has, a task may still go to the
        # version that was current before (a signal sent at once reached a1, not e2, on a quiet machine).
        describe = DescribeWorkerDeploymentRequest(namespace=self.client.namespace, deployment_name=self.name)
        in_progress = RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_IN_PROGRESS
        while (
            await self.client.workflow_service.describe_worker_deployment(describe)
        ).worker_deployment_info.routing_config_update_state == in_progress:
            assert time.monotonic() < deadline, f"the routing to {build_id} never reached the task queues"
            await asyncio.sleep(0.2)

    def pinned(self, build_id: str) -> PinnedVersioningOverride:
        return PinnedVersioningOverride(WorkerDeploymentVersion(deployment_name=self.name, build_id=build_id))

    async def start_workflow(self, workflow_type: str, argument: str, build_id: str | None = None):
        return await self.client.start_workflow(
            workflow_type,
            argument,
            id=f"{workflow_type}-{uuid.uuid4().hex[:8]}",
            task_queue=self.task_queue,
            versioning_override=self.pinned(build_id) if build_id else None,
        )

    async def run_workflow(self, workflow_type: str, argument: str, build_id: str | None = None) -> None:
        handle = await self.start_workflow(workflow_type, argument, build_id)
        try:
            await asyncio.wait_for(handle.result(), timeout=WAIT_SECONDS)
        except WorkflowFailureError:
            pass


@asynccontextmanager
async def versions_on(address: str, task_queue: str) -> AsyncIterator[Versions]:
    versions = Versions(await Client.connect(address), task_queue)
    async with versions.stack:
        yield versions


async def eventually(check, what: str):
    """Visibility is eventually consistent: ask until `check()` returns a true value."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: never seen"
        await asyncio.sleep(0.3)


# ---------------------------------------------------------------- figures


def test_figures_count_each_versions_closed_workflows_in_the_window_by_status_and_its_running_ones(
    dev_server: DevServer, task_queue: str
) -> None:
    async def scenario() -> None:
        async with versions_on(dev_server.address, task_queue) as versions:
            await versions.start("good1", BUILD_A, VersioningBehavior.PINNED)
            await versions.start("bad2", BUILD_A, VersioningBehavior.PINNED)
            await versions.make_current("good1")
            await versions.run_workflow("GateFails", "before the window")  # closes before `since`: not counted
            await asyncio.sleep(1.1)
            since = datetime.now(UTC)
            for _ in range(3):
                await versions.run_workflow("GateOk", "fine")  # current: good1
            await versions.run_workflow("GateOk", "fine", build_id="bad2")
            for _ in range(2):
                await versions.run_workflow("GateFails", "broken", build_id="bad2")
            terminated = await versions.start_workflow("GateHeld", "terminated", build_id="bad2")
            running = await versions.start_workflow("GateHeld", "still running", build_id="bad2")

            async def bad_figures():
                await terminated.terminate("the test ends it")
                figures = await gates.version_figures(versions.client, versions.name, "bad2", since, task_queue)
                return figures if figures.terminated == 1 and figures.running == 1 else None

            bad = await eventually(bad_figures, "bad2's terminated and running workflows")
            good = await gates.version_figures(versions.client, versions.name, "good1", since, task_queue)

            assert (good.completed, good.failed, good.closed, good.running, good.stuck) == (3, 0, 3, 0, 0)
            assert (bad.completed, bad.failed, bad.terminated, bad.running, bad.stuck) == (1, 2, 1, 1, 0)
            assert bad.closed == 4 and bad.failure_rate == pytest.approx(3 / 4)
            assert bad.stuck_measured

            failing = gates.compare_failure_rates(bad, good, margin=0.05, min_workflows=3)
            assert (failing.passed, failing.check) == (False, "failure rate")
            assert "new bad2 4 closed, 3 failures (75.0%: 2 failed, 0 timed out, 1 terminated)" in failing.figures
            # the same figures with a minimum sample of 20: no verdict yet
            assert gates.compare_failure_rates(bad, good, margin=0.05, min_workflows=20).passed is None
            assert gates.compare_failure_rates(good, bad, margin=0.05, min_workflows=3).passed is True
            await running.terminate("the test ends it")

    asyncio.run(scenario())


def test_workflows_stuck_on_failing_workflow_tasks_count_for_the_version_they_fail_on(
    problems_server: DevServer, task_queue: str
) -> None:
    async def scenario() -> None:
        async with versions_on(problems_server.address, task_queue) as versions:
            await versions.start("a1", BUILD_A, VersioningBehavior.AUTO_UPGRADE)
            await versions.make_current("a1")
            since = datetime.now(UTC)
            held = await versions.start_workflow("GateHeld", "moves to e2")

            async def activity_done():
                history = await held.fetch_history()
                return any(event.HasField("activity_task_completed_event_attributes") for event in history.events)

            await eventually(activity_done, "A's activity")
            await versions.start("e2", BUILD_E, VersioningBehavior.AUTO_UPGRADE)
            await versions.make_current("e2")
            await held.signal("release")  # its next task goes to e2, which cannot replay it
            crashing = await versions.start_workflow("GateCrashes", "a bug in e2's workflow code")

            async def two_stuck():
                figures = await gates.version_figures(versions.client, versions.name, "e2", since, task_queue)
                return figures if figures.stuck == 2 else None

            e2 = await eventually(two_stuck, "two workflows stuck on e2")
            assert sorted(e2.stuck_workflows) == sorted([held.id, crashing.id])
            description = await held.describe()
            info = description.raw_description.workflow_execution_info.versioning_info
            assert info.behavior == VersioningBehaviorProto.VERSIONING_BEHAVIOR_AUTO_UPGRADE
            assert info.version_transition.deployment_version.build_id == "e2"  # on its way, not arrived

            a1 = await gates.version_figures(versions.client, versions.name, "a1", since, task_queue)
            assert (a1.stuck, a1.running) == (0, 1)  # still a1's by its search attribute, but failing on e2

            # Without the task queue, only workflows with deployment attributes are seen: not the new one that
            # never completed a task.
            by_deployment = await gates.version_figures(versions.client, versions.name, "e2", since)
            assert by_deployment.stuck_workflows == [held.id]

            verdict = gates.compare_failure_rates(e2, a1, margin=0.05, min_workflows=20)
            assert (verdict.passed, verdict.check) == (False, "stuck workflow tasks")
            assert "2 stuck" in verdict.figures
            for handle in (held, crashing):
                await handle.terminate("the test ends it")

    asyncio.run(scenario())


# ---------------------------------------------------------------- the gate workflow


def test_the_gate_workflow_runs_pinned_to_the_new_version_and_its_verdict_follows_it(
    dev_server: DevServer, task_queue: str
) -> None:
    async def scenario() -> None:
        async with versions_on(dev_server.address, task_queue) as versions:
            settings = deploy_settings(versions.app_name, task_queue)
            assert settings.rollout.worker_deployment_name == versions.name
            await versions.start("old1", BUILD_A, VersioningBehavior.AUTO_UPGRADE)
            await versions.start("new2", BUILD_A, VersioningBehavior.AUTO_UPGRADE)
            await versions.make_current("old1")  # the gate still goes to new2: it is pinned there

            held = await gates.start_gate_workflow(versions.client, settings, "new2", "GateHeld", '"canary"')
            first = await gates.gate_workflow_verdict(held)
            assert (first.passed, first.check) == (None, "gate workflow GateHeld")
            await held.signal("release")

            async def settled():
                verdict = await gates.gate_workflow_verdict(held)
                return verdict if verdict.passed is not None else None

            passed = await eventually(settled, "the gate workflow's end")
            assert passed.passed is True and passed.figures == f"{held.id} completed"
            info = (await held.describe()).raw_description.workflow_execution_info.versioning_info
            assert info.deployment_version.build_id == "new2"
            assert info.versioning_override.pinned.version.build_id == "new2"

            failing = await gates.start_gate_workflow(
                versions.client, settings, "new2", "GateFails", '"the canary found a broken payment"'
            )
            failed = await eventually(lambda: settled_verdict(failing), "the failing gate workflow's end")
            assert failed.passed is False
            assert failed.figures == f"{failing.id} failed: the canary found a broken payment"

            slow = await gates.start_gate_workflow(
                versions.client, settings, "new2", "GateHeld", '"never released"',
                execution_timeout=timedelta(seconds=1),
            )  # fmt: skip
            timed_out = await eventually(lambda: settled_verdict(slow), "the gate workflow's timeout")
            assert timed_out.passed is False and f"{slow.id} timed out" in timed_out.figures

            with_object = await gates.start_gate_workflow(
                versions.client, settings, "new2", "GateOk", '{"orders": 3}', workflow_id=f"gate-{uuid.uuid4().hex}"
            )
            assert await with_object.result() == "ok {'orders': 3}"  # the JSON input is the one argument

    asyncio.run(scenario())


async def settled_verdict(handle) -> gates.GateVerdict | None:
    verdict = await gates.gate_workflow_verdict(handle)
    return verdict if verdict.passed is not None else None


# ---------------------------------------------------------------- pinned workflows


def test_pinned_workflows_lists_exactly_the_open_workflows_pinned_to_the_version(
    dev_server: DevServer, task_queue: str
) -> None:
    async def scenario() -> None:
        async with versions_on(dev_server.address, task_queue) as versions:
            await versions.start("old1", BUILD_A, VersioningBehavior.AUTO_UPGRADE)
            await versions.start("new2", BUILD_A, VersioningBehavior.PINNED)
            await versions.make_current("old1")
            auto_upgrade = await versions.start_workflow("GateHeld", "auto-upgrade on old1")
            pinned = [await versions.start_workflow("GateHeld", f"pinned {n}", build_id="new2") for n in range(2)]
            await versions.run_workflow("GateOk", "closed", build_id="new2")  # pinned, but closed

            async def both_listed():
                found = await gates.pinned_workflows(versions.client, versions.name, "new2", limit=10)
                return found if len(found) == 2 else None

            found = await eventually(both_listed, "the two pinned workflows")
            assert sorted(found) == sorted((handle.id, handle.result_run_id) for handle in pinned)
            assert await gates.pinned_workflows(versions.client, versions.name, "old1", limit=10) == []
            assert len(await gates.pinned_workflows(versions.client, versions.name, "new2", limit=1)) == 1
            for handle in (auto_upgrade, *pinned):
                await handle.terminate("the test ends it")

    asyncio.run(scenario())
