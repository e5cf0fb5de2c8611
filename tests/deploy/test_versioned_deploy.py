"""deploy.sh and patch.sh with WORKER_VERSIONING=true, against stub az/docker/kubectl (and, where Temporal is
asked, the real dev server): the new version's own Deployment is applied and waited for, then made current
or ramped through rollout.py; configuration changes restart every version; the options are checked."""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client
from temporalio.worker import Worker

import config
import worker

from helpers.auth_proxy import AuthProxy
from helpers.deploy_harness import CONTEXT, IMAGE_TAG, MINIMAL_CONFIG, Project
from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment
from helpers.processes import DevServer, free_port
from helpers.rollout_workflows import HeldBuildA, held_step

NS = "temporal-workers"
KUBE = ["kubectl", "--context", CONTEXT, "--namespace", NS]
VERSIONED = {**MINIMAL_CONFIG, "WORKER_VERSIONING": "true"}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def printed(output: str) -> list[str]:
    return [line[4:] for line in output.splitlines() if line.startswith("  $ ")]


def test_a_versioned_dry_run_waits_for_the_new_versions_deployment_then_routes_to_it(project: Project) -> None:
    project.write_config(VERSIONED)
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert project.commands() == []
    lines = printed(result.stdout)
    wait = f"rollout status deployment/temporal-worker-{IMAGE_TAG} --timeout 5m"
    assert f"kubectl --context {CONTEXT} --namespace {NS} {wait}" in lines
    assert lines[-2] == f"{project.root}/.venv/bin/python {project.root}/deploy/rollout.py set-current {IMAGE_TAG}"
    assert "[10/10] Routing new workflows ..." in result.stdout
    assert f"Versioning:    deployment/temporal-worker-{IMAGE_TAG} runs build id {IMAGE_TAG}" in result.stdout


def test_with_versioning_off_the_last_step_only_says_the_rolling_update_did_it(project: Project) -> None:
    project.write_config(MINIMAL_CONFIG)
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    assert "Versioning is off (WORKER_VERSIONING=false): the rolling update moved every worker" in result.stdout
    assert [*KUBE, "rollout", "status", "deployment/temporal-worker", "--timeout", "5m"] in project.commands()


def test_patch_starts_the_new_versions_deployment_instead_of_replacing_the_image(project: Project) -> None:
    project.write_config(VERSIONED)
    result = project.run("patch.sh", "--dry-run")
    assert result.returncode == 0, result.output
    lines = printed(result.stdout)
    assert "[7/9] Starting the new version ..." in result.stdout
    assert not [line for line in lines if " set image " in line]
    assert [line for line in lines if " apply " in line][-1].endswith("/deployment.yaml")
    assert lines[-2].endswith(f"deploy/rollout.py set-current {IMAGE_TAG}")


def test_a_configuration_change_restarts_and_waits_for_every_versions_deployment(project: Project) -> None:
    project.write_config(VERSIONED)
    listed = "deployment.apps/temporal-worker-aaaa1111\ndeployment.apps/temporal-worker-bbbb2222"
    result = project.run("patch.sh", "--config-only", STUB_DEPLOYMENTS=listed)
    assert result.returncode == 0, result.output
    selector = "app.kubernetes.io/instance=temporal-worker"
    assert project.commands()[-5:] == [
        [*KUBE, "rollout", "restart", "deployment", "--selector", selector],
        [*KUBE, "get", "deployment", "--selector", selector, "--output", "name"],
        [*KUBE, "rollout", "status", "deployment.apps/temporal-worker-aaaa1111", "--timeout", "5m"],
        [*KUBE, "rollout", "status", "deployment.apps/temporal-worker-bbbb2222", "--timeout", "5m"],
        [*KUBE, "get", "pods", "--selector", selector, "--output", "wide"],
    ]


@pytest.mark.parametrize(
    ("script", "arguments", "config_values", "message"),
    [
        ("deploy.sh", ("--ramp", "10"), MINIMAL_CONFIG, "--ramp routes a share of new workflows to a new version"),
        ("deploy.sh", ("--ramp", "0"), VERSIONED, "--ramp needs a whole percentage from 1 to 100"),
        ("deploy.sh", ("--ramp=101",), VERSIONED, "--ramp needs a whole percentage from 1 to 100"),
        ("deploy.sh", ("--ramp", "half"), VERSIONED, "--ramp needs a whole percentage from 1 to 100"),
        ("patch.sh", ("--config-only", "--clean-up"), VERSIONED, "--config-only and --clean-up are two different runs"),
        ("patch.sh", ("--clean-up", "--ramp", "5"), VERSIONED, "--ramp goes with a code change"),
        ("patch.sh", ("--rollback", "--ramp", "5"), VERSIONED, "--ramp goes with a code change"),
        ("patch.sh", ("--rollback", "--clean-up"), VERSIONED, "--rollback is a run of its own"),
        ("patch.sh", ("--rollback",), MINIMAL_CONFIG, "--rollback needs WORKER_VERSIONING=true"),
        ("deploy.sh", ("--clean-up",), VERSIONED, "unknown argument '--clean-up'"),
    ],
    ids=["ramp-without-versioning", "ramp-0", "ramp-101", "ramp-word", "two-modes", "ramp-clean-up", "ramp-rollback",
         "rollback-clean-up", "rollback-without-versioning", "deploy-clean-up"],
)  # fmt: skip
def test_options_that_make_no_sense_stop_before_anything_runs(
    project: Project, script: str, arguments: tuple, config_values: dict[str, str], message: str
) -> None:
    project.write_config(config_values)
    result = project.run(script, *arguments)
    assert result.returncode == 2, result.output
    assert message in result.stderr
    assert [command for command in project.commands() if command[0] != "kubectl" or "get-contexts" not in command] == []


def test_patch_help_describes_rollback(project: Project) -> None:
    result = project.run("patch.sh", "--help")
    assert result.returncode == 0, result.output
    assert "--rollback         make the previous current version current again" in result.stdout
    assert "[2/2] Rolling back               deploy/rollout.py rollback" in result.stdout
    assert project.commands() == []


def test_clean_up_without_versioning_has_nothing_to_do_and_asks_temporal_nothing(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "DEPLOY_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    result = project.run("patch.sh", "--clean-up")
    assert result.returncode == 0, result.output
    assert "Versioning is off (WORKER_VERSIONING=false): one Deployment, no versions to clean up." in result.stderr
    assert not [command for command in project.commands() if "delete" in command]


async def describe_routing(dev_server: DevServer, deployment_name: str):
    client = await Client.connect(dev_server.address)
    response = await client.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment_name)
    )
    return response.worker_deployment_info.routing_config


def test_ramp_first_then_the_same_deploy_again_makes_the_version_current(
    project: Project, dev_server: DevServer, task_queue: str
) -> None:
    app_name = f"ramp-{uuid.uuid4().hex[:8]}"
    deployment_name = f"{NS}/{app_name}"
    values = {
        **VERSIONED,
        "APP_NAME": app_name,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "DEPLOY_TEMPORAL_ADDRESS": dev_server.address,
    }

    def deploy(tag: str, *arguments: str):
        project.write_config({**values, "IMAGE_TAG": tag})
        return project.run("deploy.sh", *arguments)

    async def scenario() -> None:
        client = await Client.connect(dev_server.address)
        workers = []
        for build_id in ("old1", "new2"):
            settings = config.load_settings(
                {
                    "CONFIG_ENV_FILE": "/nonexistent/config.env",
                    "TEMPORAL_DEPLOYMENT_NAME": deployment_name,
                    "TEMPORAL_WORKER_BUILD_ID": build_id,
                }
            )
            workers.append(
                Worker(
                    client,
                    task_queue=task_queue,
                    workflows=[HeldBuildA],
                    activities=[held_step],
                    deployment_config=worker.deployment_config(settings),
                )
            )
        async with workers[0], workers[1]:
            first = await asyncio.to_thread(deploy, "old1")
            assert first.returncode == 0, first.output
            ramped = await asyncio.to_thread(deploy, "new2", "--ramp", "30")
            assert ramped.returncode == 0, ramped.output
            assert "Build id new2 gets 30% of new workflows; current version old1 the rest." in ramped.stdout
            routing = await describe_routing(dev_server, deployment_name)
            assert routing.current_deployment_version.build_id == "old1"
            assert (routing.ramping_deployment_version.build_id, routing.ramping_version_percentage) == ("new2", 30)

            promoted = await asyncio.to_thread(deploy, "new2")
            assert promoted.returncode == 0, promoted.output
            routing = await describe_routing(dev_server, deployment_name)
            assert routing.current_deployment_version.build_id == "new2"
            assert not routing.ramping_deployment_version.build_id

            again = await asyncio.to_thread(deploy, "new2", "--ramp", "50")
            assert again.returncode == 0, again.output
            assert "Build id new2 is already the current version: there is nothing to ramp." in again.stdout

    asyncio.run(scenario())


def test_rollout_connects_with_the_api_key_from_key_vault_as_the_pods_do(
    project: Project, dev_server: DevServer, tmp_path: Path
) -> None:
    """set-current, versions and --clean-up ask Temporal with the credentials the pods use, wherever they live."""
    api_key = secrets.token_urlsafe(24)
    with FakeKeyVault(tmp_path) as vault, AuthProxy(dev_server.address, tmp_path, api_keys={api_key}) as proxy:
        vault.add_version("temporal-api-key", api_key)
        project.write_config(
            {
                **VERSIONED,
                "APP_NAME": f"creds-{uuid.uuid4().hex[:8]}",
                "DEPLOY_TEMPORAL_ADDRESS": proxy.address,
                "TEMPORAL_TLS_SERVER_CA_CERT_PATH": proxy.ca_file,
                "KEYVAULT_URL": vault.url,
                "TEMPORAL_API_KEY_KEYVAULT_SECRET": "temporal-api-key",
                "AZURE_CLIENT_ID": str(uuid.uuid4()),  # the pods' workload identity; here `az` signs in
            }
        )
        # `az login` as the other Key Vault tests do it: the sign-in stub first on the harness's PATH
        environment = azure_cli_environment(project.environment()) | {
            "KEYVAULT_CA_FILE": vault.ca_file,
            "KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false",
        }
        result = project.run(".venv/bin/python", "deploy/rollout.py", "versions", **environment)

    assert result.returncode == 0, result.output
    assert "no versions" in result.stdout, result.output
    assert api_key not in result.output


def test_ctrl_c_while_set_current_waits_for_the_new_versions_workers_ends_it_at_once(
    project: Project, dev_server: DevServer
) -> None:
    project.write_config(
        {**VERSIONED, "APP_NAME": f"wait-{uuid.uuid4().hex[:8]}", "DEPLOY_TEMPORAL_ADDRESS": dev_server.address}
    )
    rollout = subprocess.Popen(
        [str(project.root / ".venv/bin/python"), "deploy/rollout.py", "set-current", "nobody1"],
        cwd=project.root,
        env=project.environment(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert rollout.stdout is not None
        first_line = rollout.stdout.readline()  # no worker of build id nobody1 will ever poll
        assert first_line.startswith("  Waiting for the workers of build id nobody1 to reach Temporal"), first_line
        rollout.send_signal(signal.SIGINT)
        _, errors = rollout.communicate(timeout=60)  # it would wait two minutes for the workers otherwise
    finally:
        rollout.kill()
    assert rollout.returncode == 130, errors
    assert errors.strip().splitlines()[-1] == "Stopped by SIGINT while routing new workflows"
    assert "Traceback" not in errors
