"""Progressive rollouts end to end (ROLLOUT_STEPS, deploy/progressive.py): deploy.sh ramps a new version through its
steps with a gate at every step, against the real dev server, with real worker processes standing in for each
version's pods (tests/helpers/progressive_worker.py) and stub az/docker/kubectl.

Version A is deployed first (no current version yet: made current at once). Then, with Job workflows started every
quarter second while the deploy runs:
- B passes every step (Temporal reports the ramp percentages in the steps' order) and becomes current; every
  workflow started meanwhile completes, on A or B as it was routed;
- C's Job workflows fail: the first step's failure-rate check fails, the deploy exits 1, A is current with no ramp,
  new workflows run on A, and the output names C's failed workflows;
- D's gate workflow fails (its Jobs are fine): rolled back likewise, naming the gate workflow;
- E cannot replay the histories of A's open auto-upgrade workflows: those that move to E get stuck on a failing
  workflow task, and the stuck-task part of the gate rolls E back;
- Ctrl-C during a step stops the deploy at once, saying what ramps; the next deploy resumes at that step.
The steps last 6 seconds each (ROLLOUT_STEPS=20:6s,60:6s), the gate is evaluated every second.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError

from helpers.deploy_harness import Project, Result
from helpers.processes import AppProcess, DevServer
from helpers.progressive import (
    NAMESPACE,
    RoutingRecorder,
    WorkflowLoad,
    register_gate_workflow,
    rollout_config,
    routing,
    version_worker,
)
from helpers.progressive_workflows import GATE_WORKFLOW_TYPE

RESULT_TIMEOUT_SECONDS = 60


@dataclass
class Setup:
    """One app on the dev server: its project copy, names, a client, and version A current."""

    tmp_path: Path
    server: DevServer
    project: Project
    client: Client
    app_name: str
    task_queue: str
    workers: list[AppProcess]

    @property
    def deployment_name(self) -> str:
        return f"{NAMESPACE}/{self.app_name}"

    def start_version(self, build_id: str, build: str, behavior: str = "pinned") -> None:
        self.workers.append(
            version_worker(self.tmp_path, self.server, self.task_queue, self.deployment_name, build_id, build, behavior)
        )

    async def deploy(self, tag: str, *arguments: str, **extra: str) -> Result:
        self.project.write_config(rollout_config(self.server, self.app_name, self.task_queue, tag, **extra))
        return await asyncio.to_thread(self.project.run, "deploy.sh", *arguments)


@asynccontextmanager
async def app_with_a(
    tmp_path: Path, server: DevServer, a_behavior: str = "pinned", **extra: str
) -> AsyncIterator[Setup]:
    """A fresh app whose version A (build id a1) is current, deployed by deploy.sh with ROLLOUT_STEPS set."""
    setup = Setup(
        tmp_path=tmp_path,
        server=server,
        project=Project(tmp_path / "project"),
        client=await Client.connect(server.address),
        app_name=f"p-{uuid.uuid4().hex[:8]}",
        task_queue=f"progressive-{uuid.uuid4().hex[:12]}",
        workers=[],
    )
    if "ROLLOUT_GATE_WORKFLOW" in extra:
        register_gate_workflow(setup.project.root)
    try:
        setup.start_version("a1", "A", a_behavior)
        first = await setup.deploy("a1", **extra)
        assert first.returncode == 0, first.output
        assert "has no current version yet: there is nothing to compare build id a1 with" in first.stdout
        assert (await routing(setup.client, setup.deployment_name)).current == "a1"
        yield setup
    finally:
        for worker in setup.workers:
            worker.stop()


async def outcomes(load: WorkflowLoad) -> list[str]:
    """Each started workflow's result, or "failed" for one that failed."""
    found = []
    for handle in load.handles:
        try:
            found.append(await asyncio.wait_for(handle.result(), RESULT_TIMEOUT_SECONDS))
        except WorkflowFailureError:
            found.append("failed")
    return found


def test_a_good_version_passes_every_step_and_becomes_current(tmp_path: Path, dev_server: DevServer) -> None:
    async def scenario() -> None:
        async with app_with_a(tmp_path, dev_server) as setup:
            setup.start_version("b1", "B")
            async with RoutingRecorder(setup.client, setup.deployment_name) as recorder:
                async with WorkflowLoad(setup.client, setup.task_queue) as load:
                    result = await setup.deploy("b1")
            assert result.returncode == 0, result.output
            assert recorder.ramps("b1") == [20, 60], recorder.seen
            after = await routing(setup.client, setup.deployment_name)
            assert (after.current, after.ramping) == ("b1", "")
            assert "step 1/2 20% for 6s: passed" in result.stdout
            assert "step 2/2 60% for 6s: passed" in result.stdout
            assert re.search(r"step 1/2 \(20%\): \d+s left; ", result.stdout), result.stdout
            assert "All 2 steps passed: build id b1 is the current version" in result.stdout
            assert re.search(r"\d+ Temporal API calls, one gate evaluation took \d+ ms", result.stdout)

            finished = await outcomes(load)
            assert finished and all(re.fullmatch(r"[AB] finished order-\d+", text) for text in finished), finished
            assert {text[0] for text in finished} == {"A", "B"}, "workflows ran on both versions while B ramped"
            fresh = await load.start_one()
            assert (await fresh.result()).startswith("B finished")

    asyncio.run(scenario())


def test_a_version_whose_workflows_fail_is_rolled_back_at_the_first_step(tmp_path: Path, dev_server: DevServer) -> None:
    async def scenario() -> None:
        async with app_with_a(tmp_path, dev_server) as setup:
            setup.start_version("c1", "C")
            async with WorkflowLoad(setup.client, setup.task_queue) as load:
                result = await setup.deploy("c1", ROLLOUT_STEPS="50:60s,90:60s")
            assert result.returncode == 1, result.output
            # (The ramp may last less than a second here: C's workflows fail as they start.)
            assert "step 1/2 (50%): build id c1 gets 50% of new workflows, a1 the rest" in result.stdout
            assert "step 2/2 (90%)" not in result.stdout, "never past the first step"
            after = await routing(setup.client, setup.deployment_name)
            assert (after.current, after.ramping) == ("a1", "")
            assert "step 1/2 (50%): the gate FAILED on failure rate" in result.stdout
            assert "Rolled back: the ramp is removed; build id a1 is current" in result.stdout
            assert "step 1/2 50% for 1m: failed" in result.stdout
            assert "step 2/2 90% for 1m: not run" in result.stdout
            assert 'step 10/10 "Routing new workflows" failed (exit status 1)' in result.stderr
            assert "Hint: the gate failed" in result.stderr

            finished = await outcomes(load)
            failed_ids = [handle.id for handle, text in zip(load.handles, finished, strict=True) if text == "failed"]
            assert failed_ids, finished
            listed = [workflow_id for workflow_id in failed_ids if workflow_id in result.stdout]
            assert listed, "the output names C's failed workflows"
            assert f"deployment/{setup.app_name}-c1 is kept for inspection" in result.stdout
            fresh = [await load.start_one() for _ in range(5)]
            assert [(await handle.result())[0] for handle in fresh] == ["A"] * 5, "new workflows run on A"

    asyncio.run(scenario())


def test_a_version_whose_gate_workflow_fails_is_rolled_back(tmp_path: Path, dev_server: DevServer) -> None:
    async def scenario() -> None:
        gate = {"ROLLOUT_GATE_WORKFLOW": GATE_WORKFLOW_TYPE, "ROLLOUT_GATE_INPUT": '"smoke"'}
        async with app_with_a(tmp_path, dev_server, **gate) as setup:
            setup.start_version("d1", "D")
            async with WorkflowLoad(setup.client, setup.task_queue) as load:
                result = await setup.deploy("d1", ROLLOUT_STEPS="50:60s,90:60s", LOG_FORMAT="json", **gate)
            assert result.returncode == 1, result.output
            decisions = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
            events = [decision["event"] for decision in decisions]
            # A progress line comes only from an evaluation that did not fail: when the gate workflow has failed by
            # the step's first evaluation (it often has), gate_failed is the first line with figures.
            assert events[:2] == ["restart", "step_started"], events
            assert events[-3:] == ["gate_failed", "rolled_back", "summary"], events
            assert set(events[2:-3]) <= {"progress"}, events
            [failed] = [decision for decision in decisions if decision["event"] == "gate_failed"]
            assert "gate workflow" in failed["check"], failed
            assert "the gate FAILED on gate workflow" in failed["message"]
            [rolled_back] = [decision for decision in decisions if decision["event"] == "rolled_back"]
            assert (rolled_back["current"], rolled_back["failed_build_id"]) == ("a1", "d1")
            [summary] = [decision for decision in decisions if decision["event"] == "summary"]
            assert [step["verdict"] for step in summary["steps"]] == ["failed", "not run"]
            after = await routing(setup.client, setup.deployment_name)
            assert (after.current, after.ramping) == ("a1", "")
            assert "failed" not in await outcomes(load), "D's own Jobs were fine"

    asyncio.run(scenario())


def test_ctrl_c_during_a_step_stops_at_once_and_the_next_deploy_resumes(tmp_path: Path, dev_server: DevServer) -> None:
    async def scenario() -> None:
        async with app_with_a(tmp_path, dev_server) as setup:
            setup.start_version("b1", "B")
            steps = {"ROLLOUT_STEPS": "20:5m,60:6s"}
            setup.project.write_config(rollout_config(setup.server, setup.app_name, setup.task_queue, "b1", **steps))
            deploy = AppProcess(
                [str(setup.project.root / "deploy.sh")], setup.project.environment(), setup.project.root
            )
            try:
                await asyncio.to_thread(deploy.wait_for_line, r"step 1/2 \(20%\): \d+m?\d*s? left")
                interrupted = time.monotonic()
                os.killpg(deploy.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
                status = await asyncio.to_thread(deploy.wait, 60)
            finally:
                deploy.stop()
            assert time.monotonic() - interrupted < 30, "stopped promptly, not at the end of the 5-minute step"
            assert status == 130, deploy.output
            assert "Stopped during step 1/2: build id b1 ramps at 20% of new workflows" in deploy.output
            stopped = await routing(setup.client, setup.deployment_name)
            assert (stopped.current, stopped.ramping, stopped.percentage) == ("a1", "b1", 20)

            resumed = await setup.deploy("b1", ROLLOUT_STEPS="20:6s,60:6s")
            assert resumed.returncode == 0, resumed.output
            assert "Resuming at step 1/2: build id b1 already ramps at 20%" in resumed.stdout
            assert (await routing(setup.client, setup.deployment_name)).current == "b1"

    asyncio.run(scenario())


def test_a_version_that_breaks_open_auto_upgrade_workflows_is_caught_by_the_stuck_task_check(
    tmp_path: Path, dev_server: DevServer
) -> None:
    async def scenario() -> None:
        async with app_with_a(tmp_path, dev_server, a_behavior="auto-upgrade") as setup:
            waiting = [
                await setup.client.start_workflow(
                    "Waiting", f"open-{n}", id=f"open-{uuid.uuid4().hex[:10]}", task_queue=setup.task_queue
                )
                for n in range(10)
            ]
            for handle in waiting:  # each has run its first activity on A, and waits for its signal
                await eventually(lambda handle=handle: waits_for_its_signal(handle), "A's workflows to wait")
            setup.start_version("e1", "E")
            deploy = asyncio.create_task(setup.deploy("e1", ROLLOUT_STEPS="90:2m,95:1m"))
            await eventually(lambda: ramping(setup, "e1"), "E to ramp")
            for handle in waiting:  # their next task goes to E for 90% of them: E cannot replay A's histories
                await handle.signal("release")
            result = await deploy
            assert result.returncode == 1, result.output
            assert "the gate FAILED on" in result.stdout and "stuck" in result.stdout, result.stdout
            after = await routing(setup.client, setup.deployment_name)
            assert (after.current, after.ramping) == ("a1", "")

    asyncio.run(scenario())


async def waits_for_its_signal(handle) -> bool:
    """Its first activity has completed on A, and so has the workflow task after it: it waits for `release`."""
    events = (await handle.fetch_history()).events
    return any(event.HasField("activity_task_completed_event_attributes") for event in events) and events[-1].HasField(
        "workflow_task_completed_event_attributes"
    )


async def ramping(setup: Setup, build_id: str) -> bool:
    found = await routing(setup.client, setup.deployment_name)
    return found is not None and found.ramping == build_id


async def eventually(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)
