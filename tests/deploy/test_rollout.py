"""deploy/rollout.py's pure parts, in process: the versions read from a DescribeWorkerDeployment response (order,
status, current and ramping), each Version's verdict and whether it may be deleted, the versions table, which
workflows the gate leaves alone as pinned, and the command line's subcommands (--ramp aside).

The inputs are the protobuf messages Temporal answers with (temporalio.api), built here, and a workflow's
description made from one by the SDK's own conversion; print_versions gets the only two settings it reads.
What rollout.py does against a real Temporal is in tests/deploy/test_versioned_deploy.py and
tests/e2e/test_versioned_rollout.py.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.deployment.v1 import RoutingConfig, WorkerDeploymentInfo, WorkerDeploymentVersion
from temporalio.api.enums.v1 import VersioningBehavior, WorkerDeploymentVersionStatus
from temporalio.api.workflow.v1 import VersioningOverride, WorkflowExecutionInfo, WorkflowExecutionVersioningInfo
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentResponse, DescribeWorkflowExecutionResponse
from temporalio.client import WorkflowExecutionDescription
from temporalio.converter import DataConverter

from deploy.deploy_config import DeploySettings, load_deploy_settings
from deploy.rollout import (
    NothingToRollBack,
    RollbackPlan,
    Version,
    describe_plan,
    is_pinned,
    parse_arguments,
    print_versions,
    rollback_plan,
    versions_of,
)

DEPLOYMENT = "workers/worker"
Status = WorkerDeploymentVersionStatus
Summary = WorkerDeploymentInfo.WorkerDeploymentVersionSummary


def version(build_id: str) -> WorkerDeploymentVersion:
    return WorkerDeploymentVersion(deployment_name=DEPLOYMENT, build_id=build_id)


def summary(build_id: str, status: int, created: int) -> Summary:
    """One version as Temporal lists it, created `created` seconds after the epoch."""
    return Summary(deployment_version=version(build_id), status=status, create_time=Timestamp(seconds=created))


def response(*summaries: Summary, routing: RoutingConfig | None = None) -> DescribeWorkerDeploymentResponse:
    info = WorkerDeploymentInfo(name=DEPLOYMENT, version_summaries=summaries, routing_config=routing)
    return DescribeWorkerDeploymentResponse(worker_deployment_info=info)


# ---------------------------------------------------------------- versions_of


def test_versions_are_oldest_first_whatever_order_temporal_lists_them_in() -> None:
    listed = response(
        summary("cccc3333", Status.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE, created=3_000),
        summary("aaaa1111", Status.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED, created=1_000),
        summary("bbbb2222", Status.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING, created=2_000),
    )

    assert [found.build_id for found in versions_of(listed)] == ["aaaa1111", "bbbb2222", "cccc3333"]


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (Status.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE, "inactive"),
        (Status.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT, "current"),
        (Status.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING, "ramping"),
        (Status.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING, "draining"),
        (Status.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED, "drained"),
        (Status.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED, "created"),
        (Status.WORKER_DEPLOYMENT_VERSION_STATUS_UNSPECIFIED, "unknown"),
        (99, "unknown"),  # a status a newer Temporal may add
    ],
)
def test_each_status_temporal_reports_has_its_name_and_any_other_is_unknown(status: int, name: str) -> None:
    [found] = versions_of(response(summary("aaaa1111", status, created=1_000)))

    assert found.status == name


def test_the_routing_decides_which_version_is_current_and_which_ramps_by_how_much() -> None:
    routing = RoutingConfig(
        current_deployment_version=version("aaaa1111"),
        ramping_deployment_version=version("bbbb2222"),
        ramping_version_percentage=25.0,
    )
    listed = response(
        summary("aaaa1111", Status.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT, created=1_000),
        summary("bbbb2222", Status.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING, created=2_000),
        summary("cccc3333", Status.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE, created=3_000),
        routing=routing,
    )

    assert versions_of(listed) == [
        Version("aaaa1111", "current", current=True, ramping=False, ramp_percentage=0.0),
        Version("bbbb2222", "ramping", current=False, ramping=True, ramp_percentage=25.0),
        Version("cccc3333", "inactive", current=False, ramping=False, ramp_percentage=0.0),
    ]


def test_ramping_to_unversioned_workers_makes_no_listed_version_ramping() -> None:
    # Routing to unversioned workers is an empty version: here all new workflows, or 40% of them.
    listed = response(
        summary("aaaa1111", Status.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING, created=1_000),
        summary("bbbb2222", Status.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED, created=2_000),
        routing=RoutingConfig(ramping_version_percentage=40.0),
    )

    found = versions_of(listed)

    assert [(each.current, each.ramping, each.ramp_percentage) for each in found] == [(False, False, 0.0)] * 2
    assert versions_of(response()) == []


# ---------------------------------------------------------------- Version


@pytest.mark.parametrize(
    ("found", "verdict", "deletable"),
    [
        (Version("a", "drained", current=False, ramping=False), "delete: drained", True),
        (Version("a", "drained", current=True, ramping=False), "keep: current", False),
        (Version("a", "drained", current=False, ramping=True, ramp_percentage=10), "keep: ramping (10% of", False),
        (Version("a", "current", current=True, ramping=False), "keep: current", False),
        (Version("a", "ramping", current=False, ramping=True, ramp_percentage=12.5), "keep: ramping (12.5% of", False),
        (Version("a", "draining", current=False, ramping=False), "keep: pinned workflows still running", False),
        (Version("a", "inactive", current=False, ramping=False), "keep: never current (delete its Deployment", False),
        (Version("a", "created", current=False, ramping=False), "keep: created", False),
        (Version("a", "unknown", current=False, ramping=False), "keep: unknown", False),
    ],
    ids=[
        "drained",
        "drained-but-current",
        "drained-but-ramping",
        "current",
        "ramping",
        "draining",
        "inactive",
        "created",
        "unknown",
    ],
)
def test_only_a_drained_version_that_gets_no_new_workflows_may_be_deleted(
    found: Version, verdict: str, deletable: bool
) -> None:
    assert found.verdict.startswith(verdict)
    assert found.deletable is deletable


def test_a_ramping_verdict_says_the_share_of_new_workflows_it_gets() -> None:
    ramping = Version("a", "ramping", current=False, ramping=True, ramp_percentage=5.0)

    assert ramping.verdict == "keep: ramping (5% of new workflows)"


# ---------------------------------------------------------------- print_versions


def deploy_settings(app_name: str, worker_deployment_name: str) -> DeploySettings:
    """The deploy settings of a versioned worker named `app_name` in the Worker Deployment's namespace."""
    namespace, _, name = worker_deployment_name.partition("/")
    assert name == app_name, "the Worker Deployment is <KUBERNETES_NAMESPACE>/<APP_NAME>"
    environ = {"ACR_NAME": "myregistry", "IMAGE_TAG": "1a2b3c4d", "TEMPORAL_ADDRESS": "temporal.example:7233",
               "KUBERNETES_NAMESPACE": namespace, "APP_NAME": app_name, "WORKER_VERSIONING": "true"}  # fmt: skip
    return load_deploy_settings("render", environ=environ, env_file=Path("/nonexistent/config.env"))


def test_the_versions_table_names_each_versions_kubernetes_deployment_and_verdict_in_aligned_columns() -> None:
    versions = [
        Version("aaaa1111", "drained", current=False, ramping=False),
        Version("bbbb2222", "current", current=True, ramping=False),
        Version("v3", "draining", current=False, ramping=False),
    ]
    table = io.StringIO()

    print_versions(deploy_settings("worker", DEPLOYMENT), versions, file=table)

    assert [line.rstrip() for line in table.getvalue().splitlines()] == [
        "  Worker Deployment workers/worker:",
        "    BUILD ID  STATUS    KUBERNETES DEPLOYMENT",
        "    aaaa1111  drained   worker-aaaa1111      delete: drained",
        "    bbbb2222  current   worker-bbbb2222      keep: current",
        "    v3        draining  worker-v3            keep: pinned workflows still running",
    ]


def test_a_build_id_that_is_no_kubernetes_name_shows_the_name_its_deployment_got() -> None:
    table = io.StringIO()

    print_versions(deploy_settings("worker", DEPLOYMENT), [Version("Build_7", "drained", False, False)], file=table)

    *_, row = table.getvalue().splitlines()
    assert row.split()[:2] == ["Build_7", "drained"]
    assert " worker-build-7-eda27f2057" in row and row.endswith("delete: drained")


# ---------------------------------------------------------------- is_pinned


def description(info: WorkflowExecutionVersioningInfo) -> WorkflowExecutionDescription:
    """What `handle.describe()` returns for a workflow with this versioning info (the SDK's own conversion)."""
    raw = DescribeWorkflowExecutionResponse(workflow_execution_info=WorkflowExecutionInfo(versioning_info=info))
    return asyncio.run(WorkflowExecutionDescription._from_raw_description(raw, "default", DataConverter.default))


PINNED = VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
AUTO_UPGRADE = VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE


@pytest.mark.parametrize(
    ("info", "pinned"),
    [
        (WorkflowExecutionVersioningInfo(behavior=PINNED), True),
        (WorkflowExecutionVersioningInfo(behavior=AUTO_UPGRADE), False),
        (WorkflowExecutionVersioningInfo(), False),
        (
            WorkflowExecutionVersioningInfo(
                behavior=AUTO_UPGRADE,
                versioning_override=VersioningOverride(pinned=VersioningOverride.PinnedOverride(version=version("a"))),
            ),
            True,
        ),
        (WorkflowExecutionVersioningInfo(versioning_override=VersioningOverride(behavior=PINNED)), True),
        (
            WorkflowExecutionVersioningInfo(behavior=PINNED, versioning_override=VersioningOverride(auto_upgrade=True)),
            True,
        ),
        (WorkflowExecutionVersioningInfo(versioning_override=VersioningOverride(auto_upgrade=True)), False),
    ],
    ids=[
        "pinned",
        "auto-upgrade",
        "unversioned",
        "auto-upgrade-with-a-pinned-override",
        "override-with-the-older-behavior-field",
        "pinned-with-an-auto-upgrade-override",
        "auto-upgrade-override-only",
    ],
)
def test_a_workflow_is_pinned_by_its_behavior_or_by_an_override(
    info: WorkflowExecutionVersioningInfo, pinned: bool
) -> None:
    assert is_pinned(description(info)) is pinned


# ---------------------------------------------------------------- the command line (--ramp aside)


@pytest.mark.parametrize("command", ["gate", "versions", "drained", "rollback"])
def test_the_commands_without_arguments(command: str) -> None:
    assert parse_arguments([command]).command == command


def test_set_current_takes_a_build_id_or_unversioned() -> None:
    to_version = parse_arguments(["set-current", "aaaa1111"])
    assert (to_version.command, to_version.build_id, to_version.unversioned) == ("set-current", "aaaa1111", False)

    unversioned = parse_arguments(["set-current", "--unversioned"])
    assert (unversioned.command, unversioned.build_id, unversioned.unversioned) == ("set-current", None, True)


def test_forget_takes_the_build_id() -> None:
    options = parse_arguments(["forget", "aaaa1111"])

    assert (options.command, options.build_id) == ("forget", "aaaa1111")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "the following arguments are required: command"),
        (["promote"], "invalid choice: 'promote'"),
        (["set-current"], "one of the arguments build_id --unversioned is required"),
        (["set-current", "aaaa1111", "--unversioned"], "argument --unversioned: not allowed with argument build_id"),
        (["forget"], "the following arguments are required: build_id"),
        (["versions", "aaaa1111"], "unrecognized arguments: aaaa1111"),
    ],
    ids=["no-command", "unknown-command", "set-current-without-target", "both-targets", "forget-without", "extra"],
)
def test_usage_mistakes_exit_2_saying_what_is_wrong(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments(arguments)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_rollback_takes_dry_run() -> None:
    assert parse_arguments(["rollback"]).dry_run is False
    assert parse_arguments(["rollback", "--dry-run"]).dry_run is True


# ---------------------------------------------------------------- rollback


def test_each_versions_last_current_time_is_read_and_a_version_never_current_has_none() -> None:
    listed = response(
        Summary(
            deployment_version=version("aaaa1111"),
            status=Status.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING,
            create_time=Timestamp(seconds=1_000),
            last_current_time=Timestamp(seconds=1_500),
        ),
        summary("bbbb2222", Status.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE, created=2_000),
    )

    found = versions_of(listed)

    assert [each.last_current for each in found] == [datetime.fromtimestamp(1_500, UTC), None]


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_rollback_goes_to_the_version_that_became_current_most_recently_before_the_current_one() -> None:
    versions = [
        Version("a", "drained", current=False, ramping=False, last_current=at(1_000)),
        Version("b", "draining", current=False, ramping=False, last_current=at(3_000)),
        Version("c", "inactive", current=False, ramping=False),  # never current: not a candidate
        Version("d", "current", current=True, ramping=False, last_current=at(4_000)),
    ]

    plan = rollback_plan(versions, DEPLOYMENT)

    assert plan == RollbackPlan("set-current", target="b", leaving="d")
    assert describe_plan(plan, versions).startswith("Build id b becomes the current version again")


def test_a_version_that_became_current_again_after_a_rollback_is_not_the_previous_one() -> None:
    # a was current, then b, then a rollback made a current again: going back means b
    versions = [
        Version("a", "current", current=True, ramping=False, last_current=at(5_000)),
        Version("b", "draining", current=False, ramping=False, last_current=at(3_000)),
    ]

    assert rollback_plan(versions, DEPLOYMENT).target == "b"


def test_while_a_version_ramps_rollback_removes_the_ramp_and_keeps_the_current_version() -> None:
    versions = [
        Version("a", "draining", current=False, ramping=False, last_current=at(1_000)),
        Version("b", "current", current=True, ramping=False, last_current=at(2_000)),
        Version("c", "ramping", current=False, ramping=True, ramp_percentage=25),
    ]

    plan = rollback_plan(versions, DEPLOYMENT)

    assert plan == RollbackPlan("remove-ramp", target="b", leaving="c", percentage=25)
    assert describe_plan(plan, versions) == (
        "Build id c ramps (25% of new workflows): the ramp is removed and the current version b gets every "
        "new workflow."
    )


@pytest.mark.parametrize(
    ("versions", "message"),
    [
        ([Version("a", "current", current=True, ramping=False, last_current=at(1_000))], "is the only version"),
        (
            [
                Version("a", "current", current=True, ramping=False, last_current=at(1_000)),
                Version("b", "inactive", current=False, ramping=False),
            ],
            "is the only version",
        ),
        ([Version("a", "drained", current=False, ramping=False, last_current=at(1_000))], "No version of"),
    ],
    ids=["one-version", "others-never-current", "no-current"],
)
def test_with_nothing_to_go_back_to_rollback_says_so(versions: list[Version], message: str) -> None:
    with pytest.raises(NothingToRollBack, match=message):
        rollback_plan(versions, DEPLOYMENT)
