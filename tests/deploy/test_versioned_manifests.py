"""Manifests with WORKER_VERSIONING=true: one Deployment per image tag that runs as that version of the Worker
Deployment, selectors that never reach another version's pods, KEDA per version, and names Kubernetes takes.
(The hardening checks and strict Kubernetes validation of the versioned manifests are in test_manifests.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

import config
from deploy.deploy_config import MAX_VERSION_KUBERNETES_DEPLOYMENT_NAME, version_kubernetes_deployment_name

from helpers.deploy_harness import FULL_CONFIG, IMAGE_TAG, MINIMAL_CONFIG, Project
from helpers.manifest_checks import check_temporal_trigger, keda_schema

VERSIONED = {**MINIMAL_CONFIG, "WORKER_VERSIONING": "true"}
RFC_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def render(project: Project, values: dict[str, str]) -> dict[str, dict]:
    project.write_config(values)
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    return {
        document["kind"]: document
        for name in ("deployment.yaml", "config-map.yaml", "pod-disruption-budget.yaml")
        for document in project.manifest(name)
    }


def test_the_deployment_is_the_tags_own_and_its_pods_run_as_that_version(project: Project) -> None:
    documents = render(project, VERSIONED)
    deployment = documents["Deployment"]
    assert deployment["metadata"]["name"] == f"temporal-worker-{IMAGE_TAG}"
    assert deployment["metadata"]["labels"]["temporal.io/build-id"] == IMAGE_TAG
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector["temporal.io/build-id"] == IMAGE_TAG
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pod = deployment["spec"]["template"]["spec"]
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == selector, "spread among this version's pods"
    [container] = pod["containers"]
    assert container["env"] == [
        {"name": "TEMPORAL_DEPLOYMENT_NAME", "value": "temporal-workers/temporal-worker"},
        {"name": "TEMPORAL_WORKER_BUILD_ID", "value": IMAGE_TAG},
    ]
    config_map = documents["ConfigMap"]["data"]
    assert "TEMPORAL_DEPLOYMENT_NAME" not in config_map and "TEMPORAL_WORKER_BUILD_ID" not in config_map
    # What the worker in that pod reads: the shared ConfigMap, then its own env on top.
    pod_environment = {**config_map, **{item["name"]: item["value"] for item in container["env"]}}
    settings = config.load_settings({**pod_environment, "CONFIG_ENV_FILE": "/nonexistent/config.env"})
    assert settings.versioning == config.VersioningSettings("temporal-workers/temporal-worker", IMAGE_TAG, "pinned")
    # One budget for every version's pods: evictions stay one at a time across them all.
    assert documents["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "temporal-worker",
        "app.kubernetes.io/instance": "temporal-worker",
    }


def test_two_versions_never_select_each_others_pods(project: Project, tmp_path: Path) -> None:
    first = render(project, VERSIONED)["Deployment"]
    second = render(project, {**VERSIONED, "IMAGE_TAG": "4567cdef"})["Deployment"]
    assert first["metadata"]["name"] != second["metadata"]["name"]
    for one, other in ((first, second), (second, first)):
        selector = one["spec"]["selector"]["matchLabels"]
        assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()


def test_versioning_off_keeps_the_single_deployment_and_its_rolling_update(project: Project) -> None:
    deployment = render(project, MINIMAL_CONFIG)["Deployment"]
    assert deployment["metadata"]["name"] == "temporal-worker"
    assert "temporal.io/build-id" not in deployment["spec"]["selector"]["matchLabels"]
    assert "env" not in deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_keda_scales_each_version_on_its_own_backlog(project: Project) -> None:
    project.write_config({**FULL_CONFIG, "WORKER_VERSIONING": "true"})
    assert project.run("generate-k8s-manifests.sh").returncode == 0
    documents = {document["kind"]: document for document in project.manifest("keda-scaledobject.yaml")}
    for kind, document in documents.items():
        jsonschema.validate(document, keda_schema(kind))
    scaled_object = documents["ScaledObject"]
    name = f"temporal-worker-{IMAGE_TAG}"
    assert scaled_object["metadata"]["name"] == name
    assert scaled_object["metadata"]["labels"]["temporal.io/build-id"] == IMAGE_TAG
    assert scaled_object["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    [trigger] = scaled_object["spec"]["triggers"]
    check_temporal_trigger(trigger)
    assert trigger["metadata"]["workerDeploymentName"] == "temporal-workers/temporal-worker"
    assert trigger["metadata"]["workerDeploymentBuildId"] == IMAGE_TAG
    assert documents["TriggerAuthentication"]["metadata"]["name"] == "temporal-worker-temporal", "shared by versions"


@pytest.mark.parametrize(
    "build_id",
    ["0123abcd4567", "0123abcd4567-dirty-89abcdef01", "Release_2.0", "v" * 63, "a.b", "UPPER-case"],
)
def test_a_versions_deployment_name_is_a_kubernetes_name_of_at_most_47_characters(build_id: str) -> None:
    app_name = "temporal-worker-with-a-long-name"
    name = version_kubernetes_deployment_name(app_name, build_id)
    assert RFC_1123_LABEL.fullmatch(name) and len(name) <= MAX_VERSION_KUBERNETES_DEPLOYMENT_NAME, name
    assert name.startswith(app_name[:20])
    others = {version_kubernetes_deployment_name(app_name, other) for other in ("a.b", "a_b", "a-b", "A-B")}
    assert len(others) == 4, "tags that clean up alike still get their own Deployment"


def test_a_git_commit_tag_keeps_the_readable_name() -> None:
    assert version_kubernetes_deployment_name("temporal-worker", "0123abcd4567") == "temporal-worker-0123abcd4567"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"TEMPORAL_DEPLOYMENT_NAME": "temporal-workers/temporal-worker"}, "TEMPORAL_DEPLOYMENT_NAME="),
        ({"TEMPORAL_WORKER_BUILD_ID": "0123abcd"}, "TEMPORAL_WORKER_BUILD_ID="),
        ({"KUBERNETES_NAMESPACE": "n" * 40, "APP_NAME": "a" * 30}, "shorten KUBERNETES_NAMESPACE or APP_NAME"),
        ({"WORKER_VERSIONING": "yes"}, "WORKER_VERSIONING='yes': must be true or false"),
    ],
    ids=["deployment-name-in-config", "build-id-in-config", "name-too-long", "not-a-boolean"],
)
def test_the_scripts_refuse_what_would_break_versioned_deployments(
    project: Project, values: dict[str, str], message: str
) -> None:
    project.write_config({**VERSIONED, **values})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2
    assert message in result.stderr
    assert not (project.root / "deployment.yaml").exists()
