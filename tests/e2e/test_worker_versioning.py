"""Worker Deployment Versioning from the worker's side: TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID
(together or not at all) make the real worker.py register as that version with a real dev server, and say so
at start.

The settings and the SDK's deployment config they make, in process: tests/app/test_worker_versioning_settings.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client
from temporalio.service import RPCError

import config

from helpers.processes import base_environment

WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"


def settings(**values: str) -> config.Settings:
    return config.load_settings({"CONFIG_ENV_FILE": "/nonexistent/config.env", **values})


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
