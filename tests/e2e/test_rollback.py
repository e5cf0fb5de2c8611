"""./patch.sh --rollback on a real dev server, with real worker.py processes standing in for each version's pods
(stub az/docker/kubectl; the real deploy/rollout.py): after a completed rollout A -> B the previous version A is
current again at once and new workflows run on it; a ramp left by a stopped rollout is removed; --dry-run
changes nothing; with only one version ever current there is nothing to go back to.

The choice of the previous version from version summaries' last_current_time, in process:
tests/deploy/test_rollout.py.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client

from helpers.deploy_harness import MINIMAL_CONFIG, Project
from helpers.processes import DevServer, base_environment

NS = "temporal-workers"  # KUBERNETES_NAMESPACE's default: the Worker Deployment is <namespace>/<APP_NAME>
VERSIONED = {**MINIMAL_CONFIG, "WORKER_VERSIONING": "true"}
WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


class Rollouts:
    """deploy.sh / patch.sh of one app against the dev server, and its versions as worker.py processes."""

    def __init__(self, project: Project, dev_server: DevServer, task_queue: str, run_app, tmp_path: Path) -> None:
        self.project, self.dev_server, self.task_queue = project, dev_server, task_queue
        self.run_app, self.tmp_path = run_app, tmp_path
        self.app_name = f"rb-{uuid.uuid4().hex[:8]}"
        self.deployment_name = f"{NS}/{self.app_name}"
        self.values = {
            **VERSIONED,
            "APP_NAME": self.app_name,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "DEPLOY_TEMPORAL_ADDRESS": dev_server.address,
        }

    def start_version(self, build_id: str) -> None:
        """worker.py registered as `build_id` of the Worker Deployment, as the version's pods run it."""
        environment = base_environment(
            self.tmp_path,
            TEMPORAL_ADDRESS=self.dev_server.address,
            TEMPORAL_TASK_QUEUE=self.task_queue,
            TEMPORAL_DEPLOYMENT_NAME=self.deployment_name,
            TEMPORAL_WORKER_BUILD_ID=build_id,
        )
        self.run_app("worker.py", env=environment).wait_for_line(WORKER_READY)

    def script(self, name: str, tag: str, *arguments: str):
        self.project.write_config({**self.values, "IMAGE_TAG": tag})
        return self.project.run(name, *arguments)

    def routing(self):
        async def described():
            client = await Client.connect(self.dev_server.address)
            request = DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=self.deployment_name)
            return (await client.workflow_service.describe_worker_deployment(request)).worker_deployment_info

        routing = asyncio.run(described()).routing_config
        ramping = routing.ramping_deployment_version.build_id
        return routing.current_deployment_version.build_id, ramping, routing.ramping_version_percentage

    def version_of_a_new_workflow(self) -> str:
        """Run the worker's YourWorkflow to the end; the version it ran on."""

        async def run() -> str:
            client = await Client.connect(self.dev_server.address)
            handle = await client.start_workflow(
                "YourWorkflow", "rollback", id=f"after-rollback-{uuid.uuid4().hex[:8]}", task_queue=self.task_queue
            )
            await asyncio.wait_for(handle.result(), timeout=60)
            info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
            return info.deployment_version.build_id

        return asyncio.run(run())


@pytest.fixture
def rollouts(project: Project, dev_server: DevServer, task_queue: str, run_app, tmp_path: Path) -> Rollouts:
    return Rollouts(project, dev_server, task_queue, run_app, tmp_path)


def test_rollback_after_a_completed_rollout_makes_the_previous_version_current_again(rollouts: Rollouts) -> None:
    rollouts.start_version("old1")
    rollouts.start_version("new2")
    for tag in ("old1", "new2"):
        deployed = rollouts.script("deploy.sh", tag)
        assert deployed.returncode == 0, deployed.output
    assert rollouts.routing() == ("new2", "", 0)

    dry = rollouts.script("patch.sh", "new2", "--rollback", "--dry-run")
    assert dry.returncode == 0, dry.output
    assert "[2/2] Rolling back ..." in dry.stdout
    assert "Build id old1 becomes the current version again" in dry.stdout
    assert "Dry run: nothing was changed." in dry.stdout
    commands = [line[4:] for line in dry.stdout.splitlines() if line.startswith("  $ ")]
    assert commands[-2].endswith("deploy/rollout.py rollback --dry-run"), dry.stdout  # read-only: it ran
    assert commands[-1].endswith("deploy/rollout.py rollback"), dry.stdout  # what a real run runs: only printed
    assert rollouts.routing() == ("new2", "", 0)

    rolled_back = rollouts.script("patch.sh", "new2", "--rollback")
    assert rolled_back.returncode == 0, rolled_back.output
    assert f"Done: new workflows of {rollouts.deployment_name} start on old1; no version ramps." in rolled_back.stdout
    assert rollouts.project.commands() == [], "a rollback builds, applies and deletes nothing"
    assert rollouts.routing() == ("old1", "", 0)
    assert rollouts.version_of_a_new_workflow() == "old1"

    # Rolling back again goes back to the version that was current before that: new2.
    again = rollouts.script("patch.sh", "new2", "--rollback")
    assert again.returncode == 0, again.output
    assert rollouts.routing() == ("new2", "", 0)


def test_rollback_while_a_version_ramps_removes_the_ramp_and_keeps_the_current_version(rollouts: Rollouts) -> None:
    rollouts.start_version("old1")
    rollouts.start_version("new2")
    assert rollouts.script("deploy.sh", "old1").returncode == 0
    ramped = rollouts.script("deploy.sh", "new2", "--ramp", "30")
    assert ramped.returncode == 0, ramped.output
    assert rollouts.routing() == ("old1", "new2", 30)

    rolled_back = rollouts.script("patch.sh", "new2", "--rollback")

    assert rolled_back.returncode == 0, rolled_back.output
    assert "Build id new2 ramps (30% of new workflows): the ramp is removed" in rolled_back.stdout
    assert rollouts.routing() == ("old1", "", 0)


def test_with_only_one_version_ever_current_there_is_nothing_to_roll_back_to(rollouts: Rollouts) -> None:
    rollouts.start_version("only1")
    assert rollouts.script("deploy.sh", "only1").returncode == 0

    refused = rollouts.script("patch.sh", "only1", "--rollback")

    assert refused.returncode == 1, refused.output
    assert "Build id only1 is the only version" in refused.stderr
    assert "there is no previous version to go back to" in refused.stderr
    assert rollouts.routing() == ("only1", "", 0)
