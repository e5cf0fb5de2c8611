"""What one progressive-rollout gate evaluation costs, measured: `./.venv-test/bin/python tests/bench_rollout_gate.py`.

    python tests/bench_rollout_gate.py            the full run (about a minute on 2 cores)
    python tests/bench_rollout_gate.py --quick    tiny counts: proves the measurement still runs, measures nothing

Against a Temporal dev server on this machine, with two versions of a Worker Deployment served by real SDK
workers in this process (the current one and a new one, each with closed workflows, a few of them failed, and
a few open), it measures one gate evaluation as deploy/progressive.py makes it at every poll: the gate
workflow's verdict (deploy/gates.py gate_workflow_verdict) and both versions' figures (version_figures), with
the Temporal API calls they make counted by name at the client's one RPC entry point. Then the same with
workflows stuck on failing workflow tasks on the task queue, not pinned (each adds one DescribeWorkflowExecution
to each version's figures, at most gates.STUCK_LIMIT; a pinned one adds none). The calls do not depend on how many
versions the Worker Deployment has: the queries name the new and the current version only.

Kept apart from tests/bench.py (whose measures are the worker's and the codec's) so that either can change
alone; `measure_rollout_gate(quick)` returns the table rows for whoever wants them in one table.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import PinnedVersioningOverride, VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker, WorkerDeploymentConfig

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO_DIR))  # the app's and deploy/'s modules, as pytest.ini puts them on the tests' path

from deploy import gates  # noqa: E402

from helpers.gate_workflows import BUILD_A, gate_step  # noqa: E402
from helpers.processes import DevServer  # noqa: E402

# Flag stuck workflows after two failed workflow tasks (Temporal's default is 5: the same rows, a minute later).
DEV_SERVER_ARGUMENTS = (
    "--headless",
    "--dynamic-config-value",
    "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute=2",
)
POLL_SECONDS = (1, 5)  # the poll intervals the per-step row is worked out for
STEP_SECONDS = 300  # ... and the step duration
DEPLOYMENT = "bench/rollout-gate"


class CallCounter:
    """Every Temporal API call the client makes, by name (it wraps the service client's one RPC entry point)."""

    def __init__(self, client: Client) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        service_client = client.service_client
        original = service_client._rpc_call

        async def counted(rpc: str, *arguments: Any, **keywords: Any) -> Any:
            self.calls[rpc] += 1
            return await original(rpc, *arguments, **keywords)

        service_client._rpc_call = counted  # type: ignore[method-assign]


async def make_current(client: Client, build_id: str) -> None:
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=client.namespace, deployment_name=DEPLOYMENT, build_id=build_id
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(request)
            return
        except RPCError as error:  # NOT_FOUND until the version's worker has polled
            if error.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def run_closed(client: Client, task_queue: str, build_id: str, count: int, failing_every: int) -> None:
    """`count` workflows pinned to `build_id` run to the end, every `failing_every`-th one failing."""
    pinned = PinnedVersioningOverride(WorkerDeploymentVersion(deployment_name=DEPLOYMENT, build_id=build_id))

    async def one(number: int) -> None:
        failing = number % failing_every == 0
        handle = await client.start_workflow(
            "GateFails" if failing else "GateOk",
            "bench",
            id=f"bench-{build_id}-{number}-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
            versioning_override=pinned,
        )
        try:
            await handle.result()
        except WorkflowFailureError:
            pass

    for start in range(0, count, 50):
        await asyncio.gather(*(one(number) for number in range(start, min(count, start + 50))))


async def evaluate(client: Client, gate, new: str, current: str, since: datetime, task_queue: str) -> None:
    """One gate evaluation, as deploy/progressive.py makes it at every poll."""
    await gates.gate_workflow_verdict(gate)
    await gates.version_figures(client, DEPLOYMENT, new, since, task_queue)
    await gates.version_figures(client, DEPLOYMENT, current, since, task_queue)


async def timed_evaluations(
    client: Client, counter: CallCounter, gate, since: datetime, task_queue: str, count: int
) -> tuple[list[float], collections.Counter[str]]:
    seconds = []
    before = collections.Counter(counter.calls)
    for _ in range(count):
        started = time.perf_counter()
        await evaluate(client, gate, "new2", "old1", since, task_queue)
        seconds.append(time.perf_counter() - started)
    made = counter.calls - before
    return seconds, collections.Counter({name: total // count for name, total in made.items()})


def calls_text(calls: collections.Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(calls.items()))


def timing_text(seconds: list[float]) -> str:
    median = statistics.median(seconds) * 1000
    worst = max(seconds) * 1000
    return f"{median:.1f} ms median (slowest {worst:.1f} ms)"


async def measure(address: str, quick: bool) -> list[str]:
    closed, evaluations, open_count = (6, 3, 1) if quick else (400, 60, 5)
    task_queue = f"bench-gate-{uuid.uuid4().hex[:8]}"
    client = await Client.connect(address)
    counter = CallCounter(client)
    async with AsyncExitStack() as stack:
        for build_id in ("old1", "new2"):
            config = WorkerDeploymentConfig(
                version=WorkerDeploymentVersion(deployment_name=DEPLOYMENT, build_id=build_id),
                use_worker_versioning=True,
                default_versioning_behavior=VersioningBehavior.PINNED,
            )
            worker = Worker(
                client,
                task_queue=task_queue,
                workflows=BUILD_A,
                activities=[gate_step],
                deployment_config=config,
                max_concurrent_workflow_tasks=50,
            )
            await stack.enter_async_context(worker)
        await make_current(client, "old1")
        since = datetime.now(UTC)
        for build_id in ("old1", "new2"):
            await run_closed(client, task_queue, build_id, closed, failing_every=20)
            pinned = PinnedVersioningOverride(WorkerDeploymentVersion(deployment_name=DEPLOYMENT, build_id=build_id))
            for number in range(open_count):
                await client.start_workflow(
                    "GateHeld", "open", id=f"open-{build_id}-{number}-{uuid.uuid4().hex[:6]}",
                    task_queue=task_queue, versioning_override=pinned,
                )  # fmt: skip
        gate = await client.start_workflow(
            "GateHeld",
            "gate",
            id=f"gate-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            versioning_override=PinnedVersioningOverride(WorkerDeploymentVersion(DEPLOYMENT, "new2")),
        )
        await evaluate(client, gate, "new2", "old1", since, task_queue)  # warm the connection and visibility
        seconds, calls = await timed_evaluations(client, counter, gate, since, task_queue, evaluations)

        stuck_count = 2
        for number in range(stuck_count):  # not pinned, failing their first task: no version recorded yet
            await client.start_workflow(
                "GateCrashes", "stuck", id=f"stuck-{number}-{uuid.uuid4().hex[:6]}", task_queue=task_queue
            )
        deadline = time.monotonic() + 90
        while (await gates.version_figures(client, DEPLOYMENT, "old1", since, task_queue)).stuck < stuck_count:
            if time.monotonic() > deadline:
                raise TimeoutError("the stuck workflows were never flagged (TemporalReportedProblems)")
            await asyncio.sleep(0.5)
        stuck_seconds, stuck_calls = await timed_evaluations(
            client, counter, gate, since, task_queue, max(1, evaluations // 3)
        )
    per_evaluation = sum(calls.values())
    rows = [
        f"| rollout gate: one evaluation | {timing_text(seconds)} | gate workflow's verdict + the new and the current "
        f"version's figures; {len(seconds)} evaluations; {closed} closed ({closed // 20} failed) and {open_count} "
        "open workflows per version |",
        f"| rollout gate: Temporal API calls per evaluation | {per_evaluation} | {calls_text(calls)}; the same with "
        "any number of versions (the queries name two) |",
        f"| rollout gate: with {stuck_count} stuck workflows | {timing_text(stuck_seconds)}, "
        f"{sum(stuck_calls.values())} calls | {calls_text(stuck_calls)}: a stuck workflow that is not pinned costs one "
        f"describe in each version's figures (at most {gates.STUCK_LIMIT} each); a pinned one none |",
    ]
    for poll in POLL_SECONDS:
        evaluations_per_step = STEP_SECONDS // poll
        rows.append(
            f"| rollout step of {STEP_SECONDS // 60} min at a {poll} s poll | {evaluations_per_step * per_evaluation} "
            f"calls ({per_evaluation / poll:.1f}/s) | {evaluations_per_step} evaluations; plus the step's own "
            "routing calls (deploy/progressive.py) |"
        )
    return rows


def measure_rollout_gate(quick: bool) -> list[str]:
    """The table rows, against a dev server of its own."""
    server = DevServer().start(DEV_SERVER_ARGUMENTS)
    try:
        return asyncio.run(measure(server.address, quick))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run, not a measurement")
    quick = parser.parse_args().quick
    rows = measure_rollout_gate(quick)
    print(f"Command: python tests/bench_rollout_gate.py{' --quick' if quick else ''}\n")
    print("| measure | result | note |\n| --- | --- | --- |")
    print("\n".join(rows))
    sys.stdout.flush()
    os._exit(0)  # the SDK's threads can abort interpreter teardown (sdk-python issue 300)


if __name__ == "__main__":
    main()
