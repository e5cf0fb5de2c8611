"""Worker Deployment Versioning from the worker's side: TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID
(together or not at all) make the real worker.py register as that version, with the configured default
behavior, and say so at start."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client
from temporalio.common import VersioningBehavior
from temporalio.service import RPCError

import config
import worker

from helpers.processes import base_environment

WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"


def settings(**values: str) -> config.Settings:
    return config.load_settings({"CONFIG_ENV_FILE": "/nonexistent/config.env", **values})


def test_both_names_make_a_versioned_worker_pinned_by_default() -> None:
    loaded = settings(TEMPORAL_DEPLOYMENT_NAME="team/orders", TEMPORAL_WORKER_BUILD_ID="1a2b3c4d5e6f")
    assert loaded.versioning == config.VersioningSettings("team/orders", "1a2b3c4d5e6f", "pinned")
    deployment = worker.deployment_config(loaded)
    assert deployment is not None and deployment.use_worker_versioning
    assert (deployment.version.deployment_name, deployment.version.build_id) == ("team/orders", "1a2b3c4d5e6f")
    assert deployment.default_versioning_behavior == VersioningBehavior.PINNED


def test_auto_upgrade_is_the_other_default_and_without_names_the_worker_is_unversioned() -> None:
    loaded = settings(
        TEMPORAL_DEPLOYMENT_NAME="orders", TEMPORAL_WORKER_BUILD_ID="v2", WORKER_VERSIONING_BEHAVIOR="auto-upgrade"
    )
    assert worker.deployment_config(loaded).default_versioning_behavior == VersioningBehavior.AUTO_UPGRADE
    assert settings().versioning is None and worker.deployment_config(settings()) is None
    assert settings(WORKER_VERSIONING_BEHAVIOR="auto-upgrade").versioning is None


@pytest.mark.parametrize("given", ["TEMPORAL_DEPLOYMENT_NAME", "TEMPORAL_WORKER_BUILD_ID"])
def test_one_name_without_the_other_is_a_configuration_error_naming_both(given: str, tmp_path, run_app) -> None:
    with pytest.raises(config.ConfigError) as refused:
        settings(**{given: "orders"})
    [problem] = refused.value.problems
    assert "TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID go together" in problem

    program = run_app("worker.py", env=base_environment(tmp_path, **{given: "orders"}))
    assert program.wait() == 2
    assert "TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID go together" in program.output
    assert "Initializing worker" not in program.output


async def registered_versions(address: str, deployment_name: str) -> set[str]:
    client = await Client.connect(address)
    request = DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment_name)
    response = await client.workflow_service.describe_worker_deployment(request)
    return {summary.deployment_version.build_id for summary in response.worker_deployment_info.version_summaries}


def test_the_worker_registers_as_its_version_and_logs_both_names(tmp_path, dev_server, task_queue, run_app) -> None:
    deployment_name = f"tests/versioned-{uuid.uuid4().hex[:8]}"
    env = base_environment(
        tmp_path,
        TEMPORAL_ADDRESS=dev_server.address,
        TEMPORAL_TASK_QUEUE=task_queue,
        TEMPORAL_DEPLOYMENT_NAME=deployment_name,
        TEMPORAL_WORKER_BUILD_ID="build-7",
    )
    program = run_app("worker.py", env=env)
    program.wait_for_line(WORKER_READY)
    assert f"Worker Versioning: deployment {deployment_name}, build id build-7, workflows pinned by default" in (
        program.output
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if asyncio.run(registered_versions(dev_server.address, deployment_name)) == {"build-7"}:
                break
        except RPCError:  # the deployment appears once the first poll reached the server
            pass
        assert time.monotonic() < deadline, "Temporal never saw the worker's version"
        time.sleep(0.2)


def test_an_unversioned_worker_says_so(tmp_path, dev_server, task_queue, run_app) -> None:
    env = base_environment(tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    program = run_app("worker.py", env=env)
    program.wait_for_line(WORKER_READY)
    assert "Worker Versioning: off" in program.output
