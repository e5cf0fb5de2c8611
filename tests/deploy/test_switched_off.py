"""A feature switched off takes its objects out of the cluster: the next ./deploy.sh or ./patch.sh --config-only
deletes them (by the app's labels, so only what this deploy made), after applying what is still on; kinds a CRD
defines only where the cluster has them; never what older versions still use; and a dry run shows the deletes
and runs nothing. Against the recording stubs (tests/helpers/stubs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.deploy_harness import CONTEXT, FULL_CONFIG, IMAGE_TAG, MINIMAL_CONFIG, Project

NS = "temporal-workers"
KUBE = ["kubectl", "--context", CONTEXT, "--namespace", NS]
OURS = "app.kubernetes.io/instance=temporal-worker,app.kubernetes.io/managed-by=generate-k8s-manifests.sh"
# The worker's objects: the codec server's (CODEC_SERVER_DEPLOY) go by their own selector.
WORKER = f"{OURS},app.kubernetes.io/component!=codec-server"
CODEC_SERVER = f"{OURS},app.kubernetes.io/component=codec-server"
API_RESOURCES = ["kubectl", "--context", CONTEXT, "api-resources", "--output", "name"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def deletes(project: Project) -> list[list[str]]:
    return [command for command in project.commands() if command[: len(KUBE) + 1] == [*KUBE, "delete"]]


def deleted_resources(project: Project) -> list[str]:
    return [resource for command in deletes(project) for resource in command[len(KUBE) + 1].split(",")]


def test_turning_keda_off_deletes_its_scaled_object_and_trigger_authentication(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    assert project.run("deploy.sh").returncode == 0
    assert not {"scaledobjects.keda.sh", "triggerauthentications.keda.sh"} & set(deleted_resources(project))

    project.write_config({**FULL_CONFIG, "KEDA_ENABLED": "false"})
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    commands = project.commands()
    scaled_object = [*KUBE, "delete", "scaledobjects.keda.sh", "--selector", f"{WORKER},!temporal.io/build-id"]
    assert scaled_object + ["--ignore-not-found"] in commands, "KEDA no longer scales the Deployment"
    [authentication] = [command for command in deletes(project) if "triggerauthentications.keda.sh" in command[6]]
    assert authentication[-3:] == ["--selector", WORKER, "--ignore-not-found"]
    assert commands.index(scaled_object + ["--ignore-not-found"]) < commands.index(authentication)
    applied_deployment = max(i for i, command in enumerate(commands) if command[-1].endswith("/deployment.yaml"))
    assert applied_deployment < commands.index(authentication), "the Deployment (with replicas) is applied first"
    assert commands.index(API_RESOURCES) < commands.index(authentication), "asked whether the cluster has KEDA"


def test_turning_other_features_off_deletes_theirs_and_only_objects_with_the_apps_labels(project: Project) -> None:
    """No identity, no pull secret, no NetworkPolicy, no PodMonitor: each of their objects goes."""
    project.write_config({**FULL_CONFIG, "METRICS_SCRAPE": "podmonitor"})
    assert project.run("deploy.sh").returncode == 0
    assert "podmonitors.azmonitoring.coreos.com" not in deleted_resources(project)

    project.write_config({**MINIMAL_CONFIG, "NETWORK_POLICY": "false", "METRICS_SCRAPE": "annotations"})
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    assert set(deleted_resources(project)) >= {
        "serviceaccounts",
        "networkpolicies.networking.k8s.io",
        "podmonitors.azmonitoring.coreos.com",
        "secrets",
    }
    for command in deletes(project):
        selector = command[command.index("--selector") + 1]
        assert selector.startswith(OURS), "only objects this deploy made"
        assert "--ignore-not-found" in command
    [secrets] = [command for command in deletes(project) if command[len(KUBE) + 1] == "secrets"]
    assert secrets[secrets.index("--selector") + 1] == WORKER
    kept = secrets[secrets.index("--field-selector") + 1]
    assert kept == "metadata.name!=temporal-worker-secrets,metadata.name!=temporal-worker-temporal-tls", (
        "the pull secret (ACR_USERNAME unset) and older Secrets such as <APP>-temporal-api-key go; the rendered stay"
    )


def test_a_kind_the_cluster_does_not_have_is_not_deleted(project: Project) -> None:
    project.write_config(MINIMAL_CONFIG)
    result = project.run("deploy.sh", STUB_API_RESOURCES="secrets\nserviceaccounts\nscaledobjects.keda.sh")
    assert result.returncode == 0, result.output
    resources = deleted_resources(project)
    assert "scaledobjects.keda.sh" in resources
    assert not [resource for resource in resources if "coreos.com" in resource or "triggerauth" in resource]


def test_patch_config_only_deletes_them_too(project: Project) -> None:
    project.write_config({**FULL_CONFIG, "KEDA_ENABLED": "false"})
    result = project.run("patch.sh", "--config-only")
    assert result.returncode == 0, result.output
    assert {"scaledobjects.keda.sh", "triggerauthentications.keda.sh"} <= set(deleted_resources(project))


@pytest.mark.parametrize("script", [("deploy.sh", "--dry-run"), ("patch.sh", "--config-only", "--dry-run")])
def test_a_dry_run_shows_the_deletes_and_runs_nothing(project: Project, script: tuple[str, ...]) -> None:
    project.write_config({**FULL_CONFIG, "KEDA_ENABLED": "false"})
    result = project.run(*script)
    assert result.returncode == 0, result.output
    assert project.commands() == [], "nothing reached the cluster, not even the read-only api-resources"
    assert f"$ kubectl --context {CONTEXT} api-resources --output name" in result.stdout
    shown = f"delete scaledobjects.keda.sh --selector '{WORKER},!temporal.io/build-id' --ignore-not-found"
    assert f"$ kubectl --context {CONTEXT} --namespace {NS} {shown}" in result.stdout
    assert "delete triggerauthentications.keda.sh" in result.stdout


def test_with_versioning_only_this_versions_scaled_object_goes(project: Project) -> None:
    """Older versions' pods use the ServiceAccount and the Secrets, their ScaledObjects the TriggerAuthentication:
    those stay; this version's ScaledObject goes when KEDA is off."""
    project.write_config({**FULL_CONFIG, "WORKER_VERSIONING": "true", "KEDA_ENABLED": "false"})
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    deleting = [line for line in result.stdout.splitlines() if " delete " in line and CODEC_SERVER not in line]
    this_version = f"scaledobjects.keda.sh --selector '{WORKER},temporal.io/build-id={IMAGE_TAG}' --ignore-not-found"
    assert any(line.endswith(this_version) for line in deleting)
    for shared in ("serviceaccounts", "secrets", "triggerauthentications"):
        assert not [line for line in deleting if f" {shared}" in line or f",{shared}" in line], shared
