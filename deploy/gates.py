"""The measurements a progressive rollout's gate decides on (deploy/progressive.py holds the steps).

    version_figures(client, deployment_name, build_id, since, task_queue=None) -> VersionFigures
        one version's workflows: closed since `since` by status, running now, stuck on failing workflow tasks
    compare_failure_rates(new, current, margin, min_workflows) -> GateVerdict
        the failure-rate check: passed, failed, or None (not enough closed workflows yet)
    start_gate_workflow(client, settings, build_id, workflow_type, input_json) -> WorkflowHandle
        the gate workflow, started pinned to the new version
    gate_workflow_verdict(handle) -> GateVerdict
        its verdict without waiting: running None, completed True, failed/timed out/terminated/canceled False
    pinned_workflows(client, deployment_name, build_id, limit) -> [(workflow id, run id)]
        open workflows pinned to a version, at most `limit`

What is counted, and from which Temporal API (docs/deploy.md, "Progressive rollouts", says the same):

- A version's workflows are those whose search attribute TemporalWorkerDeploymentVersion is
  "<deployment>:<build id>": Temporal sets it to the version whose worker completed the workflow's last workflow
  task (for a pinned workflow, the version it is pinned to). A workflow that moved (auto-upgrade) from the old
  version to the new one and then closed counts for the new one.
- Closed in the window: CloseTime >= since, by ExecutionStatus (Completed, Failed, TimedOut, Terminated,
  Canceled, ContinuedAsNew); running: ExecutionStatus = 'Running' whenever it started. Both come from ONE
  CountWorkflowExecutions call with GROUP BY ExecutionStatus (the only attribute Temporal groups by).
  Failures are Failed + TimedOut + Terminated; the failure rate is failures / closed. Canceled and
  continued-as-new runs count as closed, not as failures.
- Stuck: running workflows with TemporalReportedProblems set, which Temporal sets after a number of consecutive
  workflow task failures or timeouts (a non-determinism error, an exception in workflow code) and clears at the
  next successful task. The threshold is the dynamic config
  system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute: 5 by default on the Temporal 1.32 dev
  server and on Temporal Cloud; self-hosted Temporal needs server 1.30 or later (older servers have no such
  attribute: the figures then say "stuck: not measured"), and 0 turns it off. A workflow stuck on its very first
  task has no deployment attributes yet, and one that auto-upgrades onto the new version and fails there still
  shows the old version in TemporalWorkerDeploymentVersion (the version changes only when a task completes), so
  stuck workflows are found by task queue: ONE ListWorkflowExecutions call (at most STUCK_LIMIT workflows);
  a pinned one counts for the version in its attributes, and for each other one, one DescribeWorkflowExecution
  call says which version it is on or moving to (versioning_info.version_transition, a pinned override, or
  the version it is on).

Temporal API calls per version_figures call: 2 (a count and a list) while no workflow on the task queue is
stuck, plus at most STUCK_LIMIT describes when some that are not pinned are; without `task_queue`, 2 as well,
but stuck workflows that never completed a task are not seen. A gate evaluation that measures the new and the
current version makes 4, plus 1 DescribeWorkflowExecution for the gate workflow while it runs (1 more, a
GetWorkflowExecutionHistory, once it has failed). tests/bench_rollout_gate.py measures it.

Visibility is eventually consistent (Elasticsearch in production lags about a second): the counts are
"approximately now", which a gate held for minutes tolerates.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import PinnedVersioningOverride, WorkerDeploymentVersion
from temporalio.exceptions import FailureError
from temporalio.service import RPCError, RPCStatusCode

from deploy.deploy_config import DeploySettings

# At most this many stuck workflows are looked at (and described) per version_figures call; `stuck` is then
# "at least STUCK_LIMIT". Bounds the calls an evaluation makes when many workflows are stuck.
STUCK_LIMIT = 10
# A failure message in a verdict is cut to this many characters (it goes on one progress line).
MESSAGE_LIMIT = 300

FAILURE_STATUSES = ("Failed", "TimedOut", "Terminated")
_FIELDS = {
    "Completed": "completed",
    "Failed": "failed",
    "TimedOut": "timed_out",
    "Terminated": "terminated",
    "Canceled": "canceled",
    "ContinuedAsNew": "continued_as_new",
    "Running": "running",
}


@dataclass
class VersionFigures:
    """One version's workflows over a window, from Temporal's visibility store (see the module docstring)."""

    build_id: str = ""
    """The version these figures are of."""
    completed: int = 0
    """Closed in the window: completed."""
    failed: int = 0
    """Closed in the window: failed (the workflow raised, or a failure it did not handle)."""
    timed_out: int = 0
    """Closed in the window: timed out (execution or run timeout)."""
    terminated: int = 0
    """Closed in the window: terminated (by a person, a reset, or Temporal)."""
    canceled: int = 0
    """Closed in the window: canceled on request (closed, not a failure)."""
    continued_as_new: int = 0
    """Closed in the window: continued as new (closed, not a failure)."""
    running: int = 0
    """Open now, whenever they started."""
    stuck: int = 0
    """Open now and failing their workflow tasks (TemporalReportedProblems) on this version or moving onto it."""
    stuck_measured: bool = True
    """False when this Temporal has no TemporalReportedProblems attribute (server before 1.30): stuck is 0 unseen."""
    stuck_workflows: list[str] = field(default_factory=list)
    """The stuck workflows' ids (at most STUCK_LIMIT)."""

    @property
    def closed(self) -> int:
        return self.completed + self.failed + self.timed_out + self.terminated + self.canceled + self.continued_as_new

    @property
    def failures(self) -> int:
        return self.failed + self.timed_out + self.terminated

    @property
    def failure_rate(self) -> float:
        """Failures among the closed workflows, 0 to 1; 0 when none closed (stuck ones are a check of their own)."""
        return self.failures / self.closed if self.closed else 0.0

    def summary(self) -> str:
        """One line: "12 closed, 3 failures (25.0%: 2 failed, 1 timed out, 0 terminated), 4 running, 0 stuck"."""
        stuck = (
            f"{self.stuck}{'+' if self.stuck >= STUCK_LIMIT else ''} stuck"
            if self.stuck_measured
            else ("stuck: not measured")
        )
        return (
            f"{self.closed} closed, {self.failures} failures ({self.failure_rate:.1%}: {self.failed} failed, "
            f"{self.timed_out} timed out, {self.terminated} terminated), {self.running} running, {stuck}"
        )


@dataclass(frozen=True)
class GateVerdict:
    """One check's outcome."""

    passed: bool | None
    """True passed, False failed, None no verdict yet (not enough data, or the gate workflow still runs)."""
    check: str
    """Which check: "failure rate", "stuck workflow tasks", "gate workflow <type>"."""
    figures: str
    """One line with the numbers behind the verdict."""


# ---------------------------------------------------------------- queries


def _literal(text: str) -> str:
    """A visibility-query string literal; the names and build ids here never need escaping, so refuse quotes."""
    if any(character in text for character in "'\"\\\n"):
        raise ValueError(f"{text!r} cannot go in a Temporal visibility query (quotes or backslashes)")
    return f"'{text}'"


def _time(moment: datetime) -> str:
    """RFC 3339 in UTC, as visibility queries take times."""
    if moment.tzinfo is None:
        raise ValueError("a window start needs a time zone (datetime.now(UTC))")
    return _literal(moment.astimezone(UTC).isoformat().replace("+00:00", "Z"))


def version_value(deployment_name: str, build_id: str) -> str:
    """The value of TemporalWorkerDeploymentVersion for a version: "<deployment>:<build id>"."""
    return f"{deployment_name}:{build_id}"


def figures_query(deployment_name: str, build_id: str, since: datetime) -> str:
    """The count query: the version's workflows closed since `since` or running, grouped by status."""
    version = _literal(version_value(deployment_name, build_id))
    return (
        f"TemporalWorkerDeploymentVersion = {version} AND (CloseTime >= {_time(since)} OR ExecutionStatus = 'Running')"
        " GROUP BY ExecutionStatus"
    )


def stuck_query(deployment_name: str, task_queue: str | None) -> str:
    """Open workflows with failing workflow tasks: on the task queue, or (without one) in the Worker Deployment."""
    where = (
        f"TaskQueue = {_literal(task_queue)}"
        if task_queue
        else f"TemporalWorkerDeployment = {_literal(deployment_name)}"
    )
    return f"{where} AND ExecutionStatus = 'Running' AND TemporalReportedProblems IS NOT NULL"


async def version_figures(
    client: Client, deployment_name: str, build_id: str, since: datetime, task_queue: str | None = None
) -> VersionFigures:
    """The version's figures over the window from `since` (timezone-aware) to now; see the module docstring.

    Pass the workers' `task_queue` so that workflows stuck before their first task completes are seen."""
    figures = VersionFigures(build_id=build_id)
    counted = await client.count_workflows(figures_query(deployment_name, build_id, since))
    for group in counted.groups:
        name = _FIELDS.get(str(group.group_values[0])) if group.group_values else None
        if name is not None:
            setattr(figures, name, getattr(figures, name) + group.count)
    try:
        stuck = [
            execution
            async for execution in client.list_workflows(
                stuck_query(deployment_name, task_queue), limit=STUCK_LIMIT, page_size=STUCK_LIMIT
            )
        ]
    except RPCError as error:
        if error.status != RPCStatusCode.INVALID_ARGUMENT or "TemporalReportedProblems" not in error.message:
            raise
        figures.stuck_measured = False  # a server before 1.30: no such attribute
        return figures
    target = version_value(deployment_name, build_id)
    for execution in stuck:
        attributes = execution.search_attributes
        on = (attributes.get("TemporalWorkerDeploymentVersion") or [""])[0]
        behavior = (attributes.get("TemporalWorkflowVersioningBehavior") or [""])[0]
        if on and behavior == "Pinned":
            stuck_here = on == target  # pinned: it neither moves nor came from elsewhere, no describe needed
        else:
            stuck_here = await _on_or_moving_to(client, execution.id, execution.run_id, deployment_name, build_id)
        if stuck_here:
            figures.stuck += 1
            figures.stuck_workflows.append(execution.id)
    return figures


async def _on_or_moving_to(
    client: Client, workflow_id: str, run_id: str | None, deployment_name: str, build_id: str
) -> bool:
    """Whether the workflow's failing task runs on the version: it moves there, or is there and moves nowhere."""
    try:
        description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False  # closed and gone since it was listed
        raise
    info = description.raw_description.workflow_execution_info.versioning_info
    moving = info.version_transition.deployment_version
    if moving.build_id or moving.deployment_name:
        return (moving.deployment_name, moving.build_id) == (deployment_name, build_id)
    pinned = info.versioning_override.pinned.version  # pinned by an override: its tasks go there, even the first
    if pinned.build_id or pinned.deployment_name:
        return (pinned.deployment_name, pinned.build_id) == (deployment_name, build_id)
    on = info.deployment_version
    return (on.deployment_name, on.build_id) == (deployment_name, build_id)


# ---------------------------------------------------------------- the failure-rate check


def compare_failure_rates(
    new: VersionFigures, current: VersionFigures, margin: float, min_workflows: int
) -> GateVerdict:
    """The new version's failure rate against the current version's over the same window.

    - any stuck workflow on the new version fails the gate at once, whatever the sample;
    - fewer than `min_workflows` closed on the new version: no verdict (one failure among three is no rate);
    - the baseline is the current version's rate when it has `min_workflows` closed too, else 0 (too few to
      trust: the new version is then held to "no more than `margin`");
    - fails when new rate > baseline + margin (margin an absolute rate, 0.05 = 5 percentage points)."""
    baseline = current.failure_rate if current.closed >= min_workflows else 0.0
    baseline_text = (
        f"current {current.build_id or 'version'} {current.failures}/{current.closed} ({current.failure_rate:.1%})"
        if current.closed >= min_workflows
        else f"current {current.build_id or 'version'} {current.failures}/{current.closed} closed, too few for a "
        "baseline: 0%"
    )
    figures = f"new {new.build_id or 'version'} {new.summary()}; {baseline_text}; allowed up to {baseline + margin:.1%}"
    if new.stuck:
        listed = ", ".join(new.stuck_workflows[:3]) + (" ..." if len(new.stuck_workflows) > 3 else "")
        return GateVerdict(False, "stuck workflow tasks", f"{figures}; stuck: {listed}")
    if new.closed < min_workflows:
        return GateVerdict(None, "failure rate", f"{figures}; no verdict below {min_workflows} closed")
    return GateVerdict(new.failure_rate <= baseline + margin, "failure rate", figures)


# ---------------------------------------------------------------- the gate workflow


async def start_gate_workflow(
    client: Client,
    settings: DeploySettings,
    build_id: str,
    workflow_type: str,
    input_json: str | None,
    *,
    workflow_id: str | None = None,
    execution_timeout: timedelta | None = None,
) -> WorkflowHandle:
    """Start `workflow_type` on the workers' task queue, pinned to the new version (a versioning override), with
    `input_json` (JSON text) as its one argument, or none. The client's data converter encodes the input: use
    the pods' converter (bootstrap.temporal_client) when payloads are encrypted, so the worker can read it.

    `workflow_id` defaults to rollout-gate-<build id>-<random>; `execution_timeout` bounds it in Temporal too."""
    version = WorkerDeploymentVersion(deployment_name=settings.rollout.worker_deployment_name, build_id=build_id)
    return await client.start_workflow(
        workflow_type,
        args=[] if input_json is None else [json.loads(input_json)],
        id=workflow_id or f"rollout-gate-{build_id}-{uuid.uuid4().hex[:8]}",
        task_queue=settings.app.task_queue,
        versioning_override=PinnedVersioningOverride(version),
        execution_timeout=execution_timeout,
    )


async def gate_workflow_verdict(handle: WorkflowHandle) -> GateVerdict:
    """The gate workflow's verdict now (one DescribeWorkflowExecution; never waits for it to finish)."""
    check = "gate workflow"
    description = await handle.describe()
    check = f"gate workflow {description.workflow_type}"
    status = description.status
    if status == WorkflowExecutionStatus.RUNNING:
        return GateVerdict(None, check, f"{handle.id} running")
    if status == WorkflowExecutionStatus.COMPLETED:
        return GateVerdict(True, check, f"{handle.id} completed")
    name = status.name.lower().replace("_", " ") if status else "closed"
    return GateVerdict(False, check, f"{handle.id} {name}: {await _failure_message(handle)}")


async def _failure_message(handle: WorkflowHandle) -> str:
    """Why the closed gate workflow did not complete, from its result (one history call; it has closed)."""
    try:
        await handle.result(follow_runs=False)
    except WorkflowFailureError as error:
        cause = error.cause
        messages = []
        while cause is not None and len(messages) < 3:
            if isinstance(cause, FailureError) and cause.message:
                messages.append(cause.message)
            cause = cause.__cause__
        text = ": ".join(messages) or str(error)
        return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."
    except Exception as error:  # noqa: BLE001 - the verdict is already False; the message is a courtesy
        return f"(its result could not be read: {error})"[:MESSAGE_LIMIT]
    return "closed without a failure"


# ---------------------------------------------------------------- pinned workflows


async def pinned_workflows(client: Client, deployment_name: str, build_id: str, limit: int) -> list[tuple[str, str]]:
    """(workflow id, run id) of open workflows pinned to the version, at most `limit` (one list page)."""
    query = (
        f"TemporalWorkerDeploymentVersion = {_literal(version_value(deployment_name, build_id))} "
        "AND TemporalWorkflowVersioningBehavior = 'Pinned' AND ExecutionStatus = 'Running'"
    )
    return [
        (execution.id, execution.run_id or "")
        async for execution in client.list_workflows(query, limit=limit, page_size=max(limit, 1))
    ]
