"""What deploy.sh and patch.sh ask Temporal from this machine: the pre-deploy replay check, and versioned rollouts.

    python deploy/rollout.py gate                             replay the most recent open workflows on the task queue
                                                       against this checkout (before a build; a dry run too)
    python deploy/rollout.py set-current BUILD_ID [--ramp P]  route new workflows to that version (or P% of them)
    python deploy/rollout.py set-current --unversioned        route them to unversioned workers again
    python deploy/rollout.py versions                         the Worker Deployment's versions and their drainage
    python deploy/rollout.py drained                          the same table (on stderr), and on stdout one line
                                                       "BUILD_ID KUBERNETES_DEPLOYMENT" per version that is
                                                       drained and neither current nor ramping
    python deploy/rollout.py forget BUILD_ID                  remove a drained version from Temporal's list, once
                                                       its workers are gone
    python deploy/rollout.py rollback [--dry-run]             new workflows go back to the version that was current
                                                       before the current one (or, while a version ramps, the
                                                       ramp is removed); --dry-run only says what it would do

The connection is the pods' (TEMPORAL_NAMESPACE, TLS, API key, encryption keys) with DEPLOY_TEMPORAL_ADDRESS,
when set, as the address. The Worker Deployment is <KUBERNETES_NAMESPACE>/<APP_NAME> (WORKER_VERSIONING=true).

The gate (DEPLOY_REPLAY_HISTORIES, default 20; 0 turns it off): with versioning off, a workflow whose history
does not replay stops the deploy (exit 1) naming it, the SDK's message and the two fixes; with versioning on,
pinned workflows finish on their own version and are not replayed, and an auto-upgrade (or unversioned)
workflow that does not replay is a warning. When the look-up itself cannot run, the gate says so first, naming
what could not be used from this machine, and exits with its own status (GATE_EXIT_STATUSES: 3 Temporal,
4 Key Vault, 5 payload storage), so that deploy.sh and patch.sh lead their hint with that cause rather than
with workflows that would fail.

Rollback (./patch.sh --rollback) asks Temporal which version was current before: each version's summary in
DescribeWorkerDeployment carries last_current_time ("when this version last became current"), so the previous
version is the one, other than the current, that became current most recently. While a version ramps (a rollout
was stopped half-way), the ramp is what is undone: the ramp is removed and the current version stays. Nothing is
rebuilt or redeployed; workflows pinned to the version left behind stay on it (never moved: their histories may
not replay on the older code), and auto-upgrade workflows move back at their next workflow task. When no other
version was ever current (the first versioned deploy, or the previous one was forgotten by --clean-up), there is
nothing to go back to and it says so (exit 1).

Deletion is decided by Temporal, never by age: a version is deletable only when Temporal reports it drained
(no open workflow is pinned to it) and it is neither the current nor the ramping version.

Exit status: 0 done, 1 the gate failed or Temporal refused or could not be reached, 2 a configuration or
usage mistake; the gate's look-up that could not run: 3 Temporal, 4 Key Vault, 5 payload storage.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.enums.v1 import RoutingConfigUpdateState, VersioningBehavior, WorkerDeploymentVersionStatus
from temporalio.api.workflowservice.v1 import (
    DeleteWorkerDeploymentVersionRequest,
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

if __name__ == "__main__" and not __package__:
    # Run as a file (python deploy/rollout.py): import from the repository's root, as python -m would.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bootstrap import (
    KEY_VAULT,
    PAYLOAD_STORAGE,
    TEMPORAL,
    StartupError,
    Stop,
    StopRequested,
    credentialed_connection,
    exit_process,
    temporal_client,
)
from config import ConfigError, Settings, exit_with_config_error
from deploy.deploy_config import (
    DeploySettings,
    load_deploy_settings,
    ramp_percentage,
    version_kubernetes_deployment_name,
)
from deploy.gates import pinned_workflows
from deploy.replay import replay, task_queue_query

# How long set-current waits for a new version's workers to reach Temporal, and for the new routing to spread.
POLLERS_TIMEOUT_SECONDS = 120.0
ROUTING_TIMEOUT_SECONDS = 60.0
RETRY_INTERVAL_SECONDS = 1.0
ROLLBACK_LISTED_WORKFLOWS = 20  # the pinned workflows rollback names (one list page)
IDENTITY = f"temporal-aks rollout.py ({os.environ.get('USER') or 'unknown'}@{socket.gethostname()})"

STATUS_NAMES = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: "inactive",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: "current",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: "ramping",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: "draining",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: "drained",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED: "created",
}


# The gate's exit status when the replay look-up could not run, by what could not be used from this machine
# (1 stays "workflows would fail their next task"): scripts/deploy-steps.sh picks its hint by it.
GATE_EXIT_STATUSES = {TEMPORAL: 3, KEY_VAULT: 4, PAYLOAD_STORAGE: 5}


class RolloutError(Exception):
    """Something Temporal refused or that cannot be done, worded for the person running the script."""

    exit_status = 1


class GateCannotRun(RolloutError):
    """The replay look-up could not run: no workflow was replayed. The message leads with what failed."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.exit_status = GATE_EXIT_STATUSES[source]


def _gate_cannot_run(error: StartupError | RPCError, address: str) -> RolloutError:
    """The look-up's failure, leading with its cause (Temporal, Key Vault, payload storage), not with workflows."""
    nothing = "so no open workflow was replayed"
    if isinstance(error, RPCError):
        refused = f"{error.status.name}: {error.message}"
        return GateCannotRun(TEMPORAL, f"Temporal at {address} refused the replay look-up, {nothing}: {refused}")
    if error.source == TEMPORAL:
        return GateCannotRun(
            TEMPORAL, f"Temporal could not be reached from this machine at {address}, {nothing}. {_unreachable(error)}"
        )
    if error.source == KEY_VAULT:
        return GateCannotRun(KEY_VAULT, f"Key Vault could not be read from this machine, {nothing}: {error}")
    if error.source == PAYLOAD_STORAGE:
        return GateCannotRun(
            PAYLOAD_STORAGE, f"Payload storage could not be used from this machine, {nothing}: {error}"
        )
    return RolloutError(str(error))


@dataclass(frozen=True)
class Version:
    """One version of the Worker Deployment, as Temporal reports it."""

    build_id: str
    status: str
    """current, ramping, draining, drained, inactive (never current or ramping), created or unknown."""
    current: bool
    ramping: bool
    ramp_percentage: float = 0.0
    last_current: datetime | None = None
    """When Temporal last made it current (summary.last_current_time); None if it never was."""

    @property
    def deletable(self) -> bool:
        """Drained (no open workflow pinned to it) and receiving no new workflows: its workers may go."""
        return self.status == "drained" and not self.current and not self.ramping

    @property
    def verdict(self) -> str:
        if self.deletable:
            return "delete: drained"
        if self.current:
            return "keep: current"
        if self.ramping:
            return f"keep: ramping ({self.ramp_percentage:g}% of new workflows)"
        if self.status == "draining":
            return "keep: pinned workflows still running"
        if self.status == "inactive":
            return "keep: never current (delete its Deployment by hand if it is not wanted)"
        return f"keep: {self.status}"


# ---------------------------------------------------------------- connection


def settings_from_here(settings: DeploySettings) -> Settings:
    """The pods' Temporal settings, with the address this machine reaches Temporal at."""
    app = settings.app
    return dataclasses.replace(
        app, temporal=dataclasses.replace(app.temporal, address=settings.rollout.temporal_address)
    )


def _unreachable(error: StartupError) -> RolloutError:
    """A start-up problem, with what to set when it is the connection from this machine."""
    if not str(error).startswith("Cannot connect to Temporal"):
        return RolloutError(str(error))
    return RolloutError(
        f"{error} From this machine: set DEPLOY_TEMPORAL_ADDRESS when the pods' TEMPORAL_ADDRESS is not reachable "
        "from here (e.g. kubectl port-forward and localhost:7233)."
    )


@asynccontextmanager
async def plain_client(settings: DeploySettings, stop: Stop) -> AsyncIterator[Client]:
    """A client for the Worker Deployment APIs, which carry no payloads: no encryption key is fetched, but
    the Temporal credentials are the pods' own, read from Key Vault when they live there."""
    try:
        async with credentialed_connection(settings_from_here(settings), DataConverter.default, stop) as connection:
            yield connection.client
    except StartupError as error:
        raise _unreachable(error) from None


# ---------------------------------------------------------------- the gate


def is_pinned(description: WorkflowExecutionDescription) -> bool:
    """Whether Temporal keeps this workflow on the version it runs on (by its behavior or an override).

    Only a workflow's description holds this: the visibility list does not."""
    info = description.raw_description.workflow_execution_info.versioning_info
    override = info.versioning_override
    pinned = VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
    return info.behavior == pinned or override.HasField("pinned") or override.behavior == pinned


async def gate(settings: DeploySettings, stop: Stop) -> bool:
    """Replay the most recent open workflows against this checkout; False when the deploy must stop."""
    rollout, task_queue = settings.rollout, settings.app.task_queue
    if rollout.replay_histories == 0:
        print("  Off (DEPLOY_REPLAY_HISTORIES=0): open workflows are not replayed against this code.")
        return True
    from_here = settings_from_here(settings)
    print(
        f"  Replaying up to {rollout.replay_histories} of the most recent open workflows on task queue {task_queue} "
        f"(Temporal at {from_here.temporal.address}, namespace {from_here.temporal.namespace}) against this checkout"
    )
    try:
        async with temporal_client(from_here, stop) as client:
            query = task_queue_query(task_queue, open_only=True)
            executions = [execution async for execution in client.list_workflows(query, limit=rollout.replay_histories)]
            handles = [client.get_workflow_handle(execution.id, run_id=execution.run_id) for execution in executions]
            skip = [rollout.versioning and is_pinned(await handle.describe()) for handle in handles]
            chosen = [handle for handle, skipped in zip(handles, skip, strict=True) if not skipped]
            histories = [await handle.fetch_history() for handle in chosen]
            outcomes = await replay(histories, client.data_converter) if histories else []
    except (StartupError, RPCError) as error:
        raise _gate_cannot_run(error, from_here.temporal.address) from None
    if not executions:
        print("  No open workflows on this task queue: nothing to replay.")
        return True
    if any(skip):
        print(f"  {sum(skip)} pinned workflows finish on the version they run on: not replayed.")
    if not outcomes:
        return True
    failures = [outcome for outcome in outcomes if outcome.failure is not None]
    if not failures:
        print(f"  All {len(outcomes)} replayed: this code can take over the running workflows.")
        return True
    for failure in failures:
        print(f"  FAILED {failure.describe()}")
    if rollout.versioning:
        print(
            f"  WARNING: {len(failures)} of {len(outcomes)} auto-upgrade (or unversioned) workflows do not replay: "
            "they move to the new version at their next task and will fail there. Guard the change with "
            "workflow.patched(), or pin those workflows (WORKER_VERSIONING_BEHAVIOR=pinned)."
        )
        return True
    print(
        f"\n  {len(failures)} of {len(outcomes)} open workflows would fail their next task on this code. "
        "Turn versioning on (WORKER_VERSIONING=true: running workflows finish on the workers they started on), "
        "or guard the change with workflow.patched() so that they keep the old path (docs/deploy.md)."
    )
    return False


# ---------------------------------------------------------------- versions


async def describe(client: Client, settings: DeploySettings):
    """The Worker Deployment as Temporal describes it; RolloutError when it does not exist yet."""
    request = DescribeWorkerDeploymentRequest(
        namespace=client.namespace, deployment_name=settings.rollout.worker_deployment_name
    )
    try:
        return await client.workflow_service.describe_worker_deployment(request)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise RolloutError(
                f"Temporal has no Worker Deployment {settings.rollout.worker_deployment_name} in namespace "
                f"{client.namespace} yet: no versioned worker has polled there"
            ) from None
        raise


def versions_of(response) -> list[Version]:
    """Every version of a DescribeWorkerDeployment response, oldest first."""
    info = response.worker_deployment_info
    routing = info.routing_config
    current, ramping = routing.current_deployment_version.build_id, routing.ramping_deployment_version.build_id
    versions = []
    for summary in sorted(info.version_summaries, key=lambda summary: summary.create_time.ToDatetime()):
        build_id = summary.deployment_version.build_id
        versions.append(
            Version(
                build_id=build_id,
                status=STATUS_NAMES.get(summary.status, "unknown"),
                current=bool(current) and build_id == current,
                ramping=bool(ramping) and build_id == ramping,
                ramp_percentage=routing.ramping_version_percentage if build_id == ramping else 0.0,
                last_current=(
                    summary.last_current_time.ToDatetime(tzinfo=UTC) if summary.HasField("last_current_time") else None
                ),
            )
        )
    return versions


def print_versions(settings: DeploySettings, versions: list[Version], file=sys.stdout) -> None:
    print(f"  Worker Deployment {settings.rollout.worker_deployment_name}:", file=file)
    rows = [("BUILD ID", "STATUS", "KUBERNETES DEPLOYMENT", "")]
    for version in versions:
        name = version_kubernetes_deployment_name(settings.app_name, version.build_id)
        rows.append((version.build_id, version.status, name, version.verdict))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for *cells, verdict in rows:
        print(
            "    " + "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + verdict,
            file=file,
        )


async def list_versions(settings: DeploySettings, machine_readable: bool, stop: Stop) -> bool:
    """The versions table; `machine_readable`: the table on stderr, the deletable versions on stdout."""
    table = sys.stderr if machine_readable else sys.stdout
    if not settings.rollout.versioning:
        print("  Versioning is off (WORKER_VERSIONING=false): one Deployment, no versions to clean up.", file=table)
        return True
    async with plain_client(settings, stop) as client:
        try:
            versions = versions_of(await describe(client, settings))
        except RolloutError as nothing_yet:
            print(f"  {nothing_yet}: no versions.", file=table)
            return True
    print_versions(settings, versions, file=table)
    if machine_readable:
        for version in versions:
            if version.deletable:
                print(f"{version.build_id} {version_kubernetes_deployment_name(settings.app_name, version.build_id)}")
    return True


async def _until_pollers_arrive(call, build_id: str):
    """Call; while Temporal has not seen the new version's workers yet, wait and call again (for a while)."""
    deadline = time.monotonic() + POLLERS_TIMEOUT_SECONDS
    told = False
    while True:
        try:
            return await call()
        except RPCError as error:
            # NOT_FOUND: Temporal has not seen a worker of this version (or of the deployment) poll yet.
            if error.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise RolloutError(
                    f"Temporal refused to route workflows to build id {build_id}: {error.message}"
                ) from None
            if not told:
                print(f"  Waiting for the workers of build id {build_id} to reach Temporal ({error.message})")
                told = True
            await asyncio.sleep(RETRY_INTERVAL_SECONDS)


async def _until_routing_spread(client: Client, settings: DeploySettings) -> None:
    """Wait until Temporal has told every task queue of the new routing (so the next workflow follows it)."""
    deadline = time.monotonic() + ROUTING_TIMEOUT_SECONDS
    in_progress = RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_IN_PROGRESS
    while (await describe(client, settings)).worker_deployment_info.routing_config_update_state == in_progress:
        if time.monotonic() > deadline:
            print("  Temporal is still spreading the new routing to the task queues; it completes on its own.")
            return
        await asyncio.sleep(RETRY_INTERVAL_SECONDS / 4)


async def set_current(settings: DeploySettings, build_id: str, ramp: int | None, stop: Stop) -> bool:
    rollout = settings.rollout
    if not rollout.versioning and build_id:
        raise RolloutError("WORKER_VERSIONING is not true: there are no versions to route to")
    async with plain_client(settings, stop) as client:
        service, namespace, name = client.workflow_service, client.namespace, rollout.worker_deployment_name
        if ramp is not None:
            request = SetWorkerDeploymentRampingVersionRequest(
                namespace=namespace, deployment_name=name, build_id=build_id, percentage=ramp, identity=IDENTITY
            )
            try:
                await _until_pollers_arrive(lambda: service.set_worker_deployment_ramping_version(request), build_id)
            except RolloutError:
                if build_id in [
                    version.build_id for version in versions_of(await describe(client, settings)) if version.current
                ]:
                    print(f"  Build id {build_id} is already the current version: there is nothing to ramp.")
                    return True
                raise
        else:
            request = SetWorkerDeploymentCurrentVersionRequest(
                namespace=namespace, deployment_name=name, build_id=build_id, identity=IDENTITY
            )
            await _until_pollers_arrive(lambda: service.set_worker_deployment_current_version(request), build_id)
        await _until_routing_spread(client, settings)
        versions = versions_of(await describe(client, settings))
    current = next((version.build_id for version in versions if version.current), None)
    if ramp is not None:
        print(
            f"  Build id {build_id} gets {ramp:g}% of new workflows; current version {current or '(unversioned)'} "
            "the rest. Run ./deploy.sh again without --ramp (nothing is rebuilt) to make it current."
        )
    elif build_id:
        older = [version.build_id for version in versions if version.status in ("draining", "drained")]
        print(f"  Build id {build_id} is the current version of {name}: new workflows start on it.")
        if older:
            print(
                "  Older versions keep their pinned workflows until these end; "
                "./patch.sh --clean-up deletes drained ones."
            )
    else:
        print(f"  New workflows of {name} go to unversioned workers again.")
    return True


async def forget(settings: DeploySettings, build_id: str, stop: Stop) -> bool:
    """Delete a drained version in Temporal; when its workers were seen too recently, say so and succeed."""
    async with plain_client(settings, stop) as client:
        request = DeleteWorkerDeploymentVersionRequest(
            namespace=client.namespace,
            deployment_version=WorkerDeploymentVersion(
                deployment_name=settings.rollout.worker_deployment_name, build_id=build_id
            ),
            skip_drainage=False,
            identity=IDENTITY,
        )
        try:
            await client.workflow_service.delete_worker_deployment_version(request)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                print(f"  Temporal no longer lists build id {build_id}.")
                return True
            if error.status != RPCStatusCode.FAILED_PRECONDITION:
                raise
            print(
                f"  Temporal keeps build id {build_id} listed for now ({error.message}); it is removed by the next "
                "--clean-up once its workers have been gone for a few minutes."
            )
            return True
    print(f"  Temporal no longer lists build id {build_id}.")
    return True


# ---------------------------------------------------------------- rollback


@dataclass(frozen=True)
class RollbackPlan:
    """What rollback does, decided from the versions Temporal reports."""

    action: str
    """"remove-ramp" (a version ramps: the ramp goes, the current version stays) or "set-current"."""
    target: str
    """The build id that gets every new workflow afterwards ("" for unversioned workers)."""
    leaving: str
    """The build id that stops getting new workflows."""
    percentage: float = 0.0
    """With remove-ramp: the share the ramping version had."""


class NotVersioned(RolloutError):
    """A versions command with WORKER_VERSIONING off: a configuration mistake (exit 2)."""

    exit_status = 2


class NothingToRollBack(RolloutError):
    """No version other than the current one was ever current: there is nothing to go back to."""


def previous_current(versions: list[Version]) -> Version | None:
    """The version, other than the current one, that Temporal made current most recently (None if none was)."""
    earlier = [version for version in versions if not version.current and version.last_current is not None]
    return max(earlier, key=lambda version: version.last_current, default=None)


def rollback_plan(versions: list[Version], deployment_name: str) -> RollbackPlan:
    """Remove a ramp if there is one; else make the previous current version current again."""
    current = next((version for version in versions if version.current), None)
    ramping = next((version for version in versions if version.ramping), None)
    if ramping is not None:
        return RollbackPlan(
            "remove-ramp", current.build_id if current else "", ramping.build_id, ramping.ramp_percentage
        )
    if current is None:
        raise NothingToRollBack(
            f"No version of {deployment_name} is current (new workflows go to unversioned workers): "
            "nothing to roll back"
        )
    previous = previous_current(versions)
    if previous is None:
        raise NothingToRollBack(
            f"Build id {current.build_id} is the only version of {deployment_name} Temporal has had as current (or the "
            "earlier ones were removed by --clean-up): there is no previous version to go back to. Deploy the "
            "commit you want (git checkout, then ./patch.sh) instead."
        )
    return RollbackPlan("set-current", previous.build_id, current.build_id)


def describe_plan(plan: RollbackPlan, versions: list[Version]) -> str:
    target = plan.target or "(unversioned workers)"
    if plan.action == "remove-ramp":
        return (
            f"Build id {plan.leaving} ramps ({plan.percentage:g}% of new workflows): the ramp is removed and the "
            f"current version {target} gets every new workflow."
        )
    since = next((version.last_current for version in versions if version.build_id == plan.target), None)
    when = (
        f" (current until {plan.leaving} took over; it became current at {since:%Y-%m-%d %H:%M:%S} UTC)"
        if since
        else ""
    )
    return f"Build id {plan.target} becomes the current version again{when}; {plan.leaving} gets no new workflows."


async def rollback(settings: DeploySettings, dry_run: bool, stop: Stop) -> bool:
    """Make the previous current version current again at once (or remove a ramp); nothing is rebuilt."""
    rollout = settings.rollout
    if not rollout.versioning:
        raise NotVersioned(
            "WORKER_VERSIONING is not true: there are no versions to roll back to. Without versioning, deploy the "
            "previous commit again (git checkout, then ./patch.sh)."
        )
    async with plain_client(settings, stop) as client:
        versions = versions_of(await describe(client, settings))
        plan = rollback_plan(versions, rollout.worker_deployment_name)
        print(f"  {describe_plan(plan, versions)}")
        if dry_run:
            print("  Dry run: nothing was changed.")
            return True
        service, namespace, name = client.workflow_service, client.namespace, rollout.worker_deployment_name
        if plan.action == "remove-ramp":
            request = SetWorkerDeploymentRampingVersionRequest(
                namespace=namespace, deployment_name=name, build_id="", percentage=0, identity=IDENTITY
            )
            await service.set_worker_deployment_ramping_version(request)
        else:
            request = SetWorkerDeploymentCurrentVersionRequest(
                namespace=namespace, deployment_name=name, build_id=plan.target, identity=IDENTITY
            )
            await _until_pollers_arrive(lambda: service.set_worker_deployment_current_version(request), plan.target)
        await _until_routing_spread(client, settings)
        routing = (await describe(client, settings)).worker_deployment_info.routing_config
        pinned = await pinned_workflows(client, name, plan.leaving, ROLLBACK_LISTED_WORKFLOWS)
    now_current = routing.current_deployment_version.build_id or "(unversioned workers)"
    print(f"  Done: new workflows of {name} start on {now_current}; no version ramps.")
    if pinned:
        more = " (the first of them)" if len(pinned) == ROLLBACK_LISTED_WORKFLOWS else ""
        print(
            f"  {len(pinned)} open workflows{more} are pinned to build id {plan.leaving} and stay on it (they are not "
            "moved: their histories may not replay on the other code); its Deployment serves them until they "
            "end, then ./patch.sh --clean-up deletes it:"
        )
        for workflow_id, run_id in pinned:
            print(f"    {workflow_id} (run {run_id})")
    print(
        f"  Auto-upgrade workflows that ran on {plan.leaving} move to {now_current} at their next workflow task "
        "(./deploy.sh's replay check tells whether their histories replay there)."
    )
    return True


# ---------------------------------------------------------------- command line


def parse_arguments(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("gate", help="replay the most recent open workflows against this checkout")
    current = commands.add_parser("set-current", help="route new workflows to a version")
    target = current.add_mutually_exclusive_group(required=True)
    target.add_argument("build_id", nargs="?", help="the version (the image tag)")
    target.add_argument("--unversioned", action="store_true", help="route new workflows to unversioned workers")
    current.add_argument("--ramp", type=percentage, metavar="PERCENT", help="only this share of new workflows")
    commands.add_parser("versions", help="the versions and their drainage")
    commands.add_parser("drained", help="the versions that may be deleted")
    forget_parser = commands.add_parser("forget", help="remove a drained version from Temporal's list")
    forget_parser.add_argument("build_id")
    rollback_parser = commands.add_parser("rollback", help="make the previous current version current again")
    rollback_parser.add_argument("--dry-run", action="store_true", help="say what it would do; change nothing")
    options = parser.parse_args(arguments)
    if options.command == "set-current" and options.unversioned and options.ramp is not None:
        parser.error("--ramp needs a build id")
    return options


def percentage(text: str) -> int:
    """--ramp, parsed as deploy.sh and patch.sh parse it (deploy_config.ramp_percentage)."""
    try:
        return ramp_percentage(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error} (got {text!r})") from None


async def run(options: argparse.Namespace, settings: DeploySettings) -> bool:
    stop = Stop(asyncio.get_running_loop())  # Ctrl-C or SIGTERM ends any command at once (StopRequested)
    if options.command == "gate":
        return await gate(settings, stop)
    if options.command == "set-current":
        build_id = "" if options.unversioned else options.build_id
        return await stop.race(set_current(settings, build_id, options.ramp, stop), "routing new workflows")
    if options.command == "rollback":
        return await stop.race(rollback(settings, options.dry_run, stop), "rolling back")
    if options.command in ("versions", "drained"):
        return await stop.race(list_versions(settings, options.command == "drained", stop), "listing the versions")
    return await stop.race(forget(settings, options.build_id, stop), f"removing build id {options.build_id}")


def main(arguments: list[str]) -> None:
    options = parse_arguments(arguments)
    try:
        settings = load_deploy_settings("render")
    except ConfigError as error:
        exit_with_config_error(error)
    try:
        succeeded = asyncio.run(run(options, settings))
    except RolloutError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        exit_process(error.exit_status)
    except StartupError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        exit_process(1)
    except StopRequested as stopped:
        print(f"Stopped by {stopped.reason} while {stopped.doing}", file=sys.stderr)
        exit_process(128 + signal.Signals[stopped.reason])  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them
    except RPCError as error:
        print(f"ERROR: Temporal answered {error.status.name}: {error.message}", file=sys.stderr)
        exit_process(1)
    exit_process(0 if succeeded else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
