"""Progressive rollouts: ramp a new version through ROLLOUT_STEPS with a gate at every step, roll back on a failure.

    python deploy/progressive.py run BUILD_ID    ramp BUILD_ID through the steps, then make it current; or, when a
                                                 gate fails, remove the ramp and exit 1 naming the check and figures
    python deploy/progressive.py plan BUILD_ID   the steps and gates, printed; Temporal is not asked (a dry run)

deploy.sh and patch.sh run `run` in their step "Routing new workflows" when ROLLOUT_STEPS is set
(WORKER_VERSIONING=true), once the new version's pods are ready. For each step `PERCENT:DURATION`:

1. The new version becomes the ramping version with PERCENT% of new workflows (SetWorkerDeploymentRampingVersion; the
   current version keeps the rest), and the step's window starts when Temporal applied that percentage (the routing
   config's ramping_version_percentage_changed_time).
2. For DURATION, every ROLLOUT_POLL_SECONDS, the gate is evaluated and a progress line printed (percentage, time
   left, the figures). The gate passes only if all of these hold during the step (deploy/gates.py measures them):
   - the gate workflow (ROLLOUT_GATE_WORKFLOW, optional), started pinned to the new version at the step's start,
     completes successfully before the step ends;
   - the new version's failure rate over the window (its workflows that closed failed, timed out or terminated,
     among those closed) is not worse than the current version's over the same window by more than
     ROLLOUT_FAILURE_MARGIN, once ROLLOUT_MIN_WORKFLOWS of its workflows have closed (fewer is no verdict, and no
     verdict at the end of the step lets the step pass: the summary says so);
   - no open workflow is stuck on failing workflow tasks on the new version (a non-determinism error, say).
3. A failed check ends the rollout at once: the ramp is removed (the current version, which never stopped being
   current, gets every new workflow again), the command exits 1 naming the check and its figures, and lists the
   new version's failed workflows and the open workflows pinned to it, with what to do about them: they are never
   moved, since their histories may not replay on the old code. The version's Kubernetes Deployment stays, for
   inspection and for those workflows; ./patch.sh --clean-up deletes it once Temporal reports it drained.
After the last step the version becomes current (SetWorkerDeploymentCurrentVersion), and a summary lists each step's
verdict.

The state lives in Temporal, in the Worker Deployment's routing config, and nowhere else: a run that is stopped
(Ctrl-C, SIGTERM, a lost terminal) leaves the new version ramping at its step's percentage. The next run reads the
routing config: when the new version is ramping at one of the steps' percentages, it resumes at that step (the
steps before it passed), keeps the window that began when Temporal applied the percentage, and holds the step in
full again from now with a new gate workflow; otherwise (no ramp of this version, or a percentage that is no step,
such as --ramp's) it restarts at step 1. It says which, and why. A version that is already current has nothing to
ramp; with no current version at all (the first versioned deploy) there is nothing to compare against and the
version is made current at once.

SIGINT and SIGTERM stop a run within a moment (bootstrap.Stop): the Temporal call under way is cancelled, and the
state left is printed (which version ramps at which percentage, and what the next run does).

Temporal API calls are counted (CallCounter, on the client's service client): each progress line's evaluation and
each step's summary say how many calls were made and how long one gate evaluation took, so that the load on the
frontend is known (README, Performance). One evaluation makes 4 calls (a grouped count and a list for each of the
two versions, deploy/gates.py), 1 more while the gate workflow runs, and at most gates.STUCK_LIMIT describes when
workflows are stuck: whatever the number of versions, a step makes about 4-5 calls per ROLLOUT_POLL_SECONDS (on
the dev server, a 1-minute step polled every second made 228). Setting the ramp and the current version make a few
Worker Deployment calls per step, tried again while Temporal says the deployment is busy (RESOURCE_EXHAUSTED).
docs/deploy.md ("The cost of a gate") has the measured figures. With LOG_FORMAT=json every progress line and
decision is a JSON object on stdout instead of text, with the figures as fields.

Exit status: 0 the version is current, 1 a gate failed and the rollout was rolled back (or Temporal refused),
2 a configuration or usage mistake, 130/143 stopped by SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.workflowservice.v1 import (
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

if __name__ == "__main__" and not __package__:
    # Run as a file (python deploy/progressive.py): import from the repository's root, as python -m would.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bootstrap import StartupError, Stop, StopRequested, exit_process, temporal_client
from config import ConfigError, exit_with_config_error
from deploy import gates
from deploy.deploy_config import (
    DeploySettings,
    RolloutStep,
    duration_text,
    load_deploy_settings,
    version_kubernetes_deployment_name,
)
from deploy.rollout import (
    IDENTITY,
    POLLERS_TIMEOUT_SECONDS,
    RETRY_INTERVAL_SECONDS,
    RolloutError,
    _unreachable,
    _until_pollers_arrive,
    _until_routing_spread,
    describe,
    plain_client,
    settings_from_here,
)

T = TypeVar("T")

# How many of the failed version's failed workflows and pinned open workflows are listed after a rollback.
LISTED_WORKFLOWS = 20
# Temporal answers RESOURCE_EXHAUSTED when a Worker Deployment gets more requests than it takes at once (they are
# serialized by the deployment's own workflow): such a call is tried again every second, for this long.
BUSY_RETRY_SECONDS = 30.0
# A progress line is printed at every evaluation whose figures changed, and at least this often otherwise.
QUIET_PROGRESS_SECONDS = 10.0


# ---------------------------------------------------------------- counting Temporal API calls


class CallCounter:
    """Counts the Temporal API calls a client makes, whoever makes them (this module, deploy/gates.py, the SDK).

    It wraps the client's service client's `_rpc_call`, through which every WorkflowService call goes
    (temporalio.bridge.services_generated); if a later SDK moves it, `count` stays None and nothing else changes.
    """

    def __init__(self, client: Client) -> None:
        self.count: int | None = None
        service_client = client.service_client
        original = getattr(service_client, "_rpc_call", None)
        if original is None:
            return
        self.count = 0

        async def counted(*arguments: Any, **keywords: Any) -> Any:
            self.count = (self.count or 0) + 1
            return await original(*arguments, **keywords)

        service_client._rpc_call = counted  # type: ignore[method-assign]

    def since(self, start: int | None) -> int | None:
        return None if self.count is None or start is None else self.count - start


# ---------------------------------------------------------------- output


class Output:
    """Progress lines and decisions: text for people, or with LOG_FORMAT=json one JSON object per line."""

    def __init__(self, json_lines: bool) -> None:
        self.json_lines = json_lines

    def say(self, event: str, message: str, **fields: Any) -> None:
        if self.json_lines:
            record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, "message": message}
            print(json.dumps(record | fields, default=str), flush=True)
        else:
            print(message, flush=True)


# ---------------------------------------------------------------- the plan


def plan_lines(settings: DeploySettings, build_id: str) -> list[str]:
    """The steps and the gate in words: what `plan` prints, and what `run` prints first."""
    rollout = settings.rollout
    steps = rollout.steps
    lines = [f"  Progressive rollout of build id {build_id} ({len(steps)} steps), then current:"]
    for number, step in enumerate(steps, 1):
        lines.append(
            f"    step {number}/{len(steps)}: {step.percentage:g}% of new workflows for {duration_text(step.seconds)}"
        )
    lines.append("    then: current (100% of new workflows)")
    lines.append(f"  The gate at every step, evaluated every {rollout.poll_seconds:g}s:")
    if rollout.gate_workflow:
        given = f" with input {rollout.gate_input}" if rollout.gate_input is not None else ""
        lines.append(
            f"    - gate workflow {rollout.gate_workflow}{given}, started pinned to {build_id}, "
            "completes within the step"
        )
    lines.append(
        f"    - the failure rate of workflows on {build_id} (failed, timed out, terminated among those closed) at most "
        f"the current version's + {rollout.failure_margin:g}, once {rollout.min_workflows} have closed"
    )
    lines.append(f"    - no workflow stuck on failing workflow tasks on {build_id}")
    lines.append("  A failed gate removes the ramp at once: the current version gets every new workflow again.")
    return lines


# ---------------------------------------------------------------- steps


@dataclass
class StepRecord:
    """One step's outcome, for the summary."""

    step: RolloutStep
    verdict: str = "not run"
    """passed, failed, stopped or not run."""
    detail: str = ""
    calls: int | None = None
    """Temporal API calls made during the step (None when they could not be counted)."""
    evaluations: int = 0
    evaluation_seconds: list[float] = field(default_factory=list)


class GateFailed(Exception):
    """A check of the gate failed during a step."""

    def __init__(self, verdict: gates.GateVerdict) -> None:
        super().__init__(f"{verdict.check}: {verdict.figures}")
        self.verdict = verdict


@dataclass
class Rollout:
    """One run of the steps for one version."""

    settings: DeploySettings
    client: Client
    stop: Stop
    build_id: str
    output: Output
    counter: CallCounter
    current: str = ""
    """The current version's build id, which the new one is compared with and which takes over after a rollback."""
    records: list[StepRecord] = field(default_factory=list)
    step_index: int | None = None
    """The step under way (its ramp set or being set), for what a stop leaves."""
    promoting: bool = False
    """Every step passed and the version is being made current, for what a stop leaves."""

    @property
    def name(self) -> str:
        return self.settings.rollout.worker_deployment_name

    async def call(self, step: Awaitable[T], doing: str) -> T:
        """A Temporal call that a stop cancels at once."""
        return await self.stop.race(step, doing)

    async def routing_call(self, make: Callable[[], Awaitable[T]], doing: str) -> T:
        """A Worker Deployment call, tried again while Temporal says the deployment is busy; a stop cancels it."""
        return await self.call(until_not_busy(make), doing)

    # ------------------------------------------------------------ routing

    async def set_ramp(self, percentage: float) -> None:
        request = SetWorkerDeploymentRampingVersionRequest(
            namespace=self.client.namespace,
            deployment_name=self.name,
            build_id=self.build_id,
            percentage=percentage,
            identity=IDENTITY,
        )
        service = self.client.workflow_service
        await self.call(
            _until_pollers_arrive(
                lambda: until_not_busy(lambda: service.set_worker_deployment_ramping_version(request)), self.build_id
            ),
            f"ramping build id {self.build_id} to {percentage:g}%",
        )
        await self.routing_call(
            lambda: _until_routing_spread(self.client, self.settings), "waiting for the routing to spread"
        )

    async def remove_ramp(self) -> None:
        """No ramping version any more: the current version gets every new workflow."""
        request = SetWorkerDeploymentRampingVersionRequest(
            namespace=self.client.namespace, deployment_name=self.name, build_id="", percentage=0, identity=IDENTITY
        )
        # Not cancelled by a stop: a rollback that was decided is finished (it is one call, bounded by its timeout).
        await until_not_busy(lambda: self.client.workflow_service.set_worker_deployment_ramping_version(request))
        await until_not_busy(lambda: _until_routing_spread(self.client, self.settings))

    async def make_current(self) -> None:
        request = SetWorkerDeploymentCurrentVersionRequest(
            namespace=self.client.namespace, deployment_name=self.name, build_id=self.build_id, identity=IDENTITY
        )
        service = self.client.workflow_service
        await self.call(
            _until_pollers_arrive(
                lambda: until_not_busy(lambda: service.set_worker_deployment_current_version(request)), self.build_id
            ),
            f"making build id {self.build_id} current",
        )
        await self.routing_call(
            lambda: _until_routing_spread(self.client, self.settings), "waiting for the routing to spread"
        )

    async def routing(self):
        described = await self.routing_call(lambda: describe(self.client, self.settings), "reading the routing")
        return described.worker_deployment_info

    # ------------------------------------------------------------ the run

    async def run(self) -> bool:
        steps = self.settings.rollout.steps
        self.records = [StepRecord(step) for step in steps]
        for line in plan_lines(self.settings, self.build_id):
            print(line)
        info = await self.until_version_known()
        routing = info.routing_config
        self.current = routing.current_deployment_version.build_id
        if self.current == self.build_id:
            self.output.say(
                "already_current", f"  Build id {self.build_id} is already the current version: nothing to ramp."
            )
            return True
        if not self.current:
            self.output.say(
                "no_current_version",
                f"  {self.name} has no current version yet: there is nothing to compare build id {self.build_id} "
                "with, so it is made current at once, without steps.",
            )
            await self.make_current()
            self.output.say("current", f"  Build id {self.build_id} is the current version: new workflows start on it.")
            return True
        start, since = self.where_to_start(routing)
        for index in range(start, len(steps)):
            self.step_index = index
            if index != start or since is None:
                await self.set_ramp(steps[index].percentage)
                since = await self.window_start()
            assert since is not None
            try:
                await self.hold(index, since)
            except GateFailed as failed:
                await self.roll_back(index, failed.verdict, since)
                return False
            since = None
        self.step_index, self.promoting = None, True
        await self.make_current()
        self.output.say(
            "current",
            f"  All {len(steps)} steps passed: build id {self.build_id} is the current version of {self.name}; "
            f"{self.current} keeps its pinned workflows until they end "
            "(./patch.sh --clean-up deletes drained versions).",
            build_id=self.build_id,
            previous=self.current,
        )
        self.print_summary()
        return True

    async def until_version_known(self):
        """The Worker Deployment once Temporal has seen the new version's workers poll (they may be seconds late)."""
        deadline = time.monotonic() + POLLERS_TIMEOUT_SECONDS
        told = False
        while True:
            try:
                info = await self.routing()
                if any(summary.deployment_version.build_id == self.build_id for summary in info.version_summaries):
                    return info
                why = f"{self.name} has no version {self.build_id} yet"
            except RolloutError as error:
                why = str(error)
            if time.monotonic() > deadline:
                raise RolloutError(f"the workers of build id {self.build_id} never reached Temporal: {why}")
            if not told:
                print(f"  Waiting for the workers of build id {self.build_id} to reach Temporal ({why})")
                told = True
            if await self.stop.sleep(RETRY_INTERVAL_SECONDS):
                raise StopRequested(self.stop.reason or "a stop request", "waiting for the new version's workers")

    def where_to_start(self, routing) -> tuple[int, datetime | None]:
        """Resume at the step whose percentage the new version ramps at (with the window Temporal started), or
        restart at step 1; says which and why."""
        steps = self.settings.rollout.steps
        ramping = routing.ramping_deployment_version.build_id
        percentage = routing.ramping_version_percentage
        if ramping == self.build_id:
            for index, step in enumerate(steps):
                if abs(step.percentage - percentage) < 1e-6:
                    since = routing.ramping_version_percentage_changed_time.ToDatetime(tzinfo=UTC)
                    ago = duration_text((datetime.now(UTC) - since).total_seconds())
                    self.output.say(
                        "resume",
                        f"  Resuming at step {index + 1}/{len(steps)}: build id {self.build_id} already ramps at "
                        f"{percentage:g}% (set {ago} ago, by an earlier run that did not finish); steps before it "
                        f"passed. The step holds for {duration_text(step.seconds)} again from now, with a new gate "
                        "workflow; its failure rate counts from when the ramp was set.",
                        step=index + 1,
                        percentage=percentage,
                    )
                    for earlier in self.records[:index]:
                        earlier.verdict, earlier.detail = "passed", "in an earlier run"
                    return index, since
            reason = f"build id {self.build_id} ramps at {percentage:g}%, which is none of the steps' percentages"
        elif ramping:
            reason = f"build id {ramping} was ramping at {percentage:g}%; the steps replace that ramp"
        else:
            reason = f"no rollout of build id {self.build_id} is under way"
        self.output.say("restart", f"  Starting at step 1/{len(steps)}: {reason}.", reason=reason)
        return 0, None

    async def window_start(self) -> datetime:
        """When Temporal applied the current ramp percentage: the start of the step's window."""
        routing = (await self.routing()).routing_config
        return routing.ramping_version_percentage_changed_time.ToDatetime(tzinfo=UTC)

    async def hold(self, index: int, since: datetime) -> None:
        """Hold step `index` for its duration, evaluating the gate; GateFailed as soon as a check fails."""
        rollout, record = self.settings.rollout, self.records[index]
        step, total = record.step, len(rollout.steps)
        label = f"step {index + 1}/{total} ({step.percentage:g}%)"
        calls_at_start = self.counter.count
        self.output.say(
            "step_started",
            f"  {label}: build id {self.build_id} gets {step.percentage:g}% of new workflows, {self.current} the rest; "
            f"holding for {duration_text(step.seconds)}",
            step=index + 1,
            percentage=step.percentage,
            seconds=step.seconds,
            since=since.isoformat(),
        )
        handle = None
        if rollout.gate_workflow:
            handle = await self.call(
                gates.start_gate_workflow(
                    self.client, self.settings, self.build_id, rollout.gate_workflow, rollout.gate_input
                ),
                f"starting gate workflow {rollout.gate_workflow}",
            )
        gate_verdict: gates.GateVerdict | None = None
        end = time.monotonic() + step.seconds
        last_line, last_printed = "", 0.0
        rate: gates.GateVerdict | None = None
        try:
            while True:
                started, calls_before = time.monotonic(), self.counter.count
                if handle is not None and (gate_verdict is None or gate_verdict.passed is None):
                    gate_verdict = await self.call(gates.gate_workflow_verdict(handle), "checking the gate workflow")
                new = await self.call(
                    gates.version_figures(
                        self.client, self.name, self.build_id, since, task_queue=self.settings.app.task_queue
                    ),
                    "counting workflows",
                )
                current = await self.call(
                    gates.version_figures(self.client, self.name, self.current, since), "counting workflows"
                )
                rate = gates.compare_failure_rates(new, current, rollout.failure_margin, rollout.min_workflows)
                record.evaluations += 1
                record.evaluation_seconds.append(time.monotonic() - started)
                calls = self.counter.since(calls_before)
                if gate_verdict is not None and gate_verdict.passed is False:
                    raise GateFailed(gate_verdict)
                if rate.passed is False:
                    raise GateFailed(rate)
                left = max(0.0, end - time.monotonic())
                gate_text = ""
                if handle is not None:
                    gate_text = f"; gate workflow: {self.gate_state(gate_verdict)}"
                line = f"{rate.figures}{gate_text}"
                now = time.monotonic()
                if line != last_line or now - last_printed >= QUIET_PROGRESS_SECONDS or left <= 0:
                    self.output.say(
                        "progress",
                        f"  {label}: {duration_text(left)} left; {line}",
                        step=index + 1,
                        percentage=step.percentage,
                        seconds_left=round(left),
                        failure_rate=rate.figures,
                        failure_rate_verdict=rate.passed,
                        gate_workflow=None if handle is None else self.gate_state(gate_verdict),
                        api_calls=calls,
                        evaluation_seconds=round(record.evaluation_seconds[-1], 3),
                    )
                    last_line, last_printed = line, now
                if left <= 0:
                    break
                if await self.stop.sleep(min(rollout.poll_seconds, left)):
                    raise StopRequested(self.stop.reason or "a stop request", f"holding {label}")
            if handle is not None and (gate_verdict is None or gate_verdict.passed is not True):
                raise GateFailed(
                    gates.GateVerdict(
                        passed=False,
                        check=f"gate workflow {rollout.gate_workflow}",
                        figures=f"it did not complete within the step ({duration_text(step.seconds)})",
                    )
                )
        finally:
            record.calls = self.counter.since(calls_at_start)
        assert rate is not None
        record.verdict = "passed"
        record.detail = rate.figures if rate.passed else f"no verdict on the failure rate: {rate.figures}"
        if handle is not None:
            record.detail += f"; gate workflow {rollout.gate_workflow} completed"
        self.output.say(
            "step_passed",
            f"  {label}: passed ({record.detail}). {self.benchmark(record)}",
            step=index + 1,
            percentage=step.percentage,
            figures=record.detail,
            api_calls=record.calls,
            evaluations=record.evaluations,
        )

    @staticmethod
    def gate_state(verdict: gates.GateVerdict | None) -> str:
        if verdict is None or verdict.passed is None:
            return "running"
        return "completed" if verdict.passed else f"failed ({verdict.figures})"

    @staticmethod
    def benchmark(record: StepRecord) -> str:
        """The step's load on Temporal: API calls made, and how long one gate evaluation took."""
        calls = "an unknown number of" if record.calls is None else str(record.calls)
        timing = ""
        if record.evaluation_seconds:
            mean = sum(record.evaluation_seconds) / len(record.evaluation_seconds)
            timing = f", one gate evaluation took {mean * 1000:.0f} ms on average ({record.evaluations} evaluations)"
        return f"{calls} Temporal API calls{timing}."

    # ------------------------------------------------------------ rollback

    async def roll_back(self, index: int, verdict: gates.GateVerdict, since: datetime) -> None:
        record = self.records[index]
        record.verdict, record.detail = "failed", f"{verdict.check}: {verdict.figures}"
        label = f"step {index + 1}/{len(self.records)} ({record.step.percentage:g}%)"
        self.output.say(
            "gate_failed",
            f"  {label}: the gate FAILED on {verdict.check}: {verdict.figures}",
            step=index + 1,
            check=verdict.check,
            figures=verdict.figures,
        )
        await self.remove_ramp()
        self.output.say(
            "rolled_back",
            f"  Rolled back: the ramp is removed; build id {self.current} is current and gets every new workflow "
            "again.",
            current=self.current,
            failed_build_id=self.build_id,
        )
        failed = await failed_workflows(self.client, self.name, self.build_id, since, LISTED_WORKFLOWS)
        if failed:
            print(f"  Workflows that failed on build id {self.build_id} during the step (at most {LISTED_WORKFLOWS}):")
            for workflow_id, run_id, status in failed:
                print(f"    {workflow_id} (run {run_id}): {status}")
        pinned = await gates.pinned_workflows(self.client, self.name, self.build_id, LISTED_WORKFLOWS)
        deployment = version_kubernetes_deployment_name(self.settings.app_name, self.build_id)
        if pinned:
            print(
                f"  Open workflows pinned to build id {self.build_id} (at most {LISTED_WORKFLOWS}): they stay on its "
                f"workers (deployment/{deployment} is kept) and are not moved, since their histories may not replay "
                f"on {self.current}'s code:"
            )
            for workflow_id, run_id in pinned:
                print(f"    {workflow_id} (run {run_id})")
            print(
                "  For each: let it finish on the failed version; or cancel or terminate it "
                "(temporal workflow cancel|terminate --workflow-id ID); or, if its history replays on "
                f"{self.current}, move it there (temporal workflow update-options --workflow-id ID "
                f"--versioning-override-behavior pinned --versioning-override-deployment-name {self.name} "
                f"--versioning-override-build-id {self.current})."
            )
        else:
            print(f"  No open workflow is pinned to build id {self.build_id}.")
        print(
            f"  deployment/{deployment} is kept for inspection (kubectl logs deployment/{deployment}); "
            "./patch.sh --clean-up deletes it once Temporal reports the version drained."
        )
        self.print_summary()

    def print_summary(self) -> None:
        print("  Summary:")
        for number, record in enumerate(self.records, 1):
            detail = f": {record.detail}" if record.detail else ""
            print(f"    step {number}/{len(self.records)} {record.step.describe()}: {record.verdict}{detail}")
        if self.output.json_lines:
            steps = [
                {
                    "percentage": record.step.percentage,
                    "seconds": record.step.seconds,
                    "verdict": record.verdict,
                    "detail": record.detail,
                    "api_calls": record.calls,
                }
                for record in self.records
            ]
            self.output.say("summary", "steps and verdicts", steps=steps)

    def explain_stop(self) -> None:
        """What a stop left, and what the next run does."""
        if self.promoting:
            last = self.settings.rollout.steps[-1]
            print(
                f"  Stopped after every step passed, while build id {self.build_id} was being made current: it is "
                f"current now, or still ramps at {last.percentage:g}%. Running ./deploy.sh again (nothing is rebuilt) "
                "says it is current, or resumes at the last step and then makes it current.",
                file=sys.stderr,
            )
            return
        if self.step_index is None:
            print(
                f"  Nothing was changed by this run in Temporal beyond what it printed; ./deploy.sh again (nothing is "
                f"rebuilt) runs the steps of build id {self.build_id}.",
                file=sys.stderr,
            )
            return
        step = self.settings.rollout.steps[self.step_index]
        print(
            f"  Stopped during step {self.step_index + 1}/{len(self.records)}: build id {self.build_id} ramps at "
            f"{step.percentage:g}% of new workflows (or still at the step before, if the stop came while the ramp was "
            f"being set), {self.current} is current and gets the rest. Running ./deploy.sh again (nothing is rebuilt) "
            "reads that from Temporal and resumes at the ramping step; ./patch.sh --rollback removes the ramp.",
            file=sys.stderr,
        )


async def until_not_busy(make: Callable[[], Awaitable[T]]) -> T:
    """make(), again every second while Temporal answers RESOURCE_EXHAUSTED, for up to BUSY_RETRY_SECONDS."""
    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    while True:
        try:
            return await make()
        except RPCError as error:
            if error.status != RPCStatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                raise
        await asyncio.sleep(RETRY_INTERVAL_SECONDS)


async def failed_workflows(
    client: Client, deployment_name: str, build_id: str, since: datetime, limit: int
) -> list[tuple[str, str, str]]:
    """(workflow id, run id, status) of workflows of the version that closed failed, timed out or terminated since
    `since`, newest first, at most `limit` (one ListWorkflowExecutions page)."""
    query = (
        f"TemporalWorkerDeploymentVersion = '{deployment_name}:{build_id}' "
        "AND ExecutionStatus IN ('Failed', 'TimedOut', 'Terminated') "
        f"AND CloseTime >= '{since.isoformat().replace('+00:00', 'Z')}'"
    )
    found = []
    async for execution in client.list_workflows(query, limit=limit, page_size=limit):
        status = execution.status.name.lower().replace("_", " ") if execution.status else "closed"
        found.append((execution.id, execution.run_id or "", status))
    return found


# ---------------------------------------------------------------- command line


@asynccontextmanager
async def rollout_client(settings: DeploySettings, stop: Stop) -> AsyncIterator[Client]:
    """With a gate workflow, a client with the pods' data converter (its input is a payload, encrypted as theirs);
    without, a plain one (the Worker Deployment and visibility APIs carry no payloads)."""
    if not settings.rollout.gate_workflow:
        async with plain_client(settings, stop) as client:
            yield client
        return
    try:
        async with temporal_client(settings_from_here(settings), stop) as client:
            yield client
    except StartupError as error:
        raise _unreachable(error) from None


async def run(settings: DeploySettings, build_id: str, stop: Stop) -> bool:
    if not settings.rollout.versioning or not settings.rollout.steps:
        raise RolloutError("progressive rollouts need WORKER_VERSIONING=true and ROLLOUT_STEPS")
    output = Output(settings.app.log_format == "json")
    async with rollout_client(settings, stop) as client:
        rollout = Rollout(settings, client, stop, build_id, output, CallCounter(client))
        try:
            return await rollout.run()
        except StopRequested:
            rollout.explain_stop()
            raise


def parse_arguments(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deploy/progressive.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="ramp a version through ROLLOUT_STEPS, then make it current").add_argument(
        "build_id"
    )
    commands.add_parser("plan", help="print the steps and gates (no Temporal call)").add_argument("build_id")
    return parser.parse_args(arguments)


def main(arguments: list[str]) -> None:
    options = parse_arguments(arguments)
    try:
        settings = load_deploy_settings("render")
        if not settings.rollout.steps:
            raise ConfigError(["ROLLOUT_STEPS: not set; progressive.py ramps through its steps (such as 10:5m,50:10m)"])
    except ConfigError as error:
        exit_with_config_error(error)
    if options.command == "plan":
        print("\n".join(plan_lines(settings, options.build_id)))
        exit_process(0)
    try:
        succeeded = asyncio.run(_main(settings, options.build_id))
    except RolloutError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        exit_process(error.exit_status)
    except StartupError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        exit_process(1)
    except StopRequested as stopped:
        print(f"Stopped by {stopped.reason} while {stopped.doing}", file=sys.stderr)
        exit_process(128 + signal.Signals[stopped.reason])
    except RPCError as error:
        print(f"ERROR: Temporal answered {error.status.name}: {error.message}", file=sys.stderr)
        exit_process(1)
    exit_process(0 if succeeded else 1)


async def _main(settings: DeploySettings, build_id: str) -> bool:
    stop = Stop(asyncio.get_running_loop())  # Ctrl-C or SIGTERM ends the run at once (StopRequested)
    return await run(settings, build_id, stop)


if __name__ == "__main__":
    main(sys.argv[1:])
