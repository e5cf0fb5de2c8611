"""deploy/deploy_config.py in-process: the deploy side of the one catalog, the values it derives (image tag,
image reference, names), the parsers that live only here (image references, --ramp) and the checks per task.
(The same checks seen from the scripts are in test_scripts_config.py and test_bad_input_corpus.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import config
from config import ConfigError, Scope
from deploy import deploy_config
from deploy.deploy_config import (
    acr_image_name,
    derived,
    git_image_tag,
    image_registry,
    load_deploy_settings,
    ramp_percentage,
    retention_warning,
    split_image,
    storage_account_name,
)

DIGEST = "sha256:" + "ab" * 32
MINIMAL = {"ACR_NAME": "myregistry", "IMAGE_TAG": "1a2b3c4d", "TEMPORAL_ADDRESS": "temporal.example:7233"}


def settings_for(task: str, tmp_path: Path, **values: str):
    """load_deploy_settings with only `values` (no config.env, no environment of the developer's)."""
    return load_deploy_settings(task, environ=values, env_file=tmp_path / "no-config.env")


def problems_for(task: str, tmp_path: Path, **values: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        settings_for(task, tmp_path, **values)
    return raised.value.problems


def test_the_deploy_side_extends_the_apps_catalog_with_its_own_variables() -> None:
    assert deploy_config.VARIABLES == config.VARIABLES + deploy_config.DEPLOY_VARIABLES
    names = [variable.name for variable in deploy_config.VARIABLES]
    assert len(names) == len(set(names)) == len(deploy_config.CATALOG)
    assert {variable.scope for variable in deploy_config.DEPLOY_VARIABLES} == {Scope.DEPLOY}
    assert deploy_config.SECRET_VARIABLES == config.SECRET_VARIABLES | {"ACR_PASSWORD"}
    for variable in deploy_config.DEPLOY_VARIABLES:
        if variable.default:
            variable.parse(variable.default)  # every default passes its own check


def test_values_nobody_gave_are_derived_once() -> None:
    values = derived(config.read_variables({"AKS_CLUSTER_NAME": "aks-1", "BUILD_MODE": "acr", **MINIMAL},
                                           "/nonexistent", deploy_config.CATALOG))  # fmt: skip
    assert values["KUBE_CONTEXT"] == "aks-1"
    assert values["BUILD_PLATFORMS"] == "linux/amd64", "az acr build builds one platform"
    assert values["APP_IMAGE"] == "myregistry.azurecr.io/temporal-worker:1a2b3c4d"
    given = {"APP_IMAGE": f"other.azurecr.io/team/worker:v7@{DIGEST}"}
    assert derived(config.read_variables(given, "/nonexistent", deploy_config.CATALOG))["IMAGE_TAG"] == "v7"
    by_digest = {"APP_IMAGE": f"other.azurecr.io/worker@{DIGEST}"}
    assert derived(config.read_variables(by_digest, "/nonexistent", deploy_config.CATALOG))["IMAGE_TAG"] == (
        "sha256-abababababab"
    )


@pytest.mark.parametrize(
    ("reference", "parts", "acr_name"),
    [
        ("r.azurecr.io/worker:1", ("r.azurecr.io/worker", "1", None), "worker:1"),
        (f"r.azurecr.io/team/worker:1@{DIGEST}", ("r.azurecr.io/team/worker", "1", DIGEST), f"team/worker@{DIGEST}"),
        (f"r.azurecr.io/worker@{DIGEST}", ("r.azurecr.io/worker", None, DIGEST), f"worker@{DIGEST}"),
        ("localhost:5000/worker:2", ("localhost:5000/worker", "2", None), "worker:2"),
    ],
)
def test_image_references_are_parsed_here_for_the_scripts_too(reference: str, parts: tuple, acr_name: str) -> None:
    assert split_image(reference) == parts
    assert acr_image_name(reference) == acr_name
    assert image_registry(reference) == reference.partition("/")[0]


@pytest.mark.parametrize("text", ["1", "10", "99", "100"])
def test_ramp_takes_a_whole_percentage(text: str) -> None:
    assert ramp_percentage(text) == int(text)


@pytest.mark.parametrize("text", ["0", "101", "5.5", "half", "", " 5", "010"])
def test_ramp_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="--ramp needs a whole percentage from 1 to 100"):
        ramp_percentage(text)


def test_each_task_checks_what_it_needs_and_reports_every_problem_at_once(tmp_path: Path) -> None:
    settings_for("local", tmp_path)  # the app's settings alone: no registry needed
    assert problems_for("render", tmp_path, TEMPORAL_ADDRESS="t:7233", IMAGE_TAG="x") == [
        "ACR_NAME: not set; it names the image (or set APP_IMAGE)"
    ]
    problems = problems_for("deploy", tmp_path, **MINIMAL, CPU_REQUEST="2", CPU_LIMIT="500m", REPLICAS="many")
    assert "REPLICAS='many': must be a whole number, at least 1" in problems
    assert "CPU_REQUEST=2 is more than CPU_LIMIT=500m; a request must not exceed its limit" in problems
    assert any(problem.startswith("AZURE_SUBSCRIPTION_ID: not set") for problem in problems)
    assert any(problem.startswith("KUBE_CONTEXT: not set") for problem in problems)


def test_a_wrong_value_reads_as_the_catalogs_default_until_a_task_checks_it(tmp_path: Path) -> None:
    settings = settings_for("local", tmp_path, **MINIMAL, METRICS_SCRAPE="sometimes", DEPLOY_REPLAY_HISTORIES="x")
    assert settings.metrics_scrape == "annotations" and settings.rollout.replay_histories == 20
    problems = problems_for("render", tmp_path, **MINIMAL, METRICS_SCRAPE="sometimes")
    assert problems == ["METRICS_SCRAPE='sometimes': must be none, annotations, podmonitor or prometheus-operator"]


def test_the_two_deployments_have_a_name_each(tmp_path: Path) -> None:
    plain = settings_for("render", tmp_path, **MINIMAL, APP_NAME="orders")
    assert plain.kubernetes_deployment_name == "orders"
    versioned = settings_for("render", tmp_path, **MINIMAL, APP_NAME="orders", WORKER_VERSIONING="true")
    assert versioned.kubernetes_deployment_name == "orders-1a2b3c4d"
    assert versioned.rollout.worker_deployment_name == "temporal-workers/orders"


def test_a_worker_deployment_name_over_temporals_limit_is_refused(tmp_path: Path) -> None:
    namespace = "n" * 40
    problems = problems_for("render", tmp_path, **MINIMAL, KUBERNETES_NAMESPACE=namespace, APP_NAME="a" * 30,
                            WORKER_VERSIONING="true")  # fmt: skip
    assert problems == [
        f"WORKER_VERSIONING=true names the Worker Deployment KUBERNETES_NAMESPACE/APP_NAME = '{namespace}/{'a' * 30}', "
        f"71 characters: at most {config.MAX_WORKER_DEPLOYMENT_NAME}; shorten KUBERNETES_NAMESPACE or APP_NAME"
    ]


def test_a_local_temporal_address_is_a_warning_for_the_cluster(tmp_path: Path) -> None:
    settings = settings_for("render", tmp_path, **{**MINIMAL, "TEMPORAL_ADDRESS": "127.0.0.1:7233"})
    assert any("points at the pod itself in the cluster" in warning for warning in settings.warnings)
    assert not settings_for("render", tmp_path, **MINIMAL).warnings


def test_payload_storage_without_retention_says_blobs_are_never_deleted() -> None:
    values = {key: "" for key in ("PAYLOAD_STORAGE_ACCOUNT_URL", "PAYLOAD_STORAGE_CONNECTION_STRING")}
    assert retention_warning({**values, "PAYLOAD_STORAGE_RETENTION_DAYS": ""}) == ""
    url = {**values, "PAYLOAD_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net/"}
    assert retention_warning({**url, "PAYLOAD_STORAGE_RETENTION_DAYS": ""}).startswith(
        "PAYLOAD_STORAGE_RETENTION_DAYS is not set: payload blobs are never deleted"
    )
    assert retention_warning({**url, "PAYLOAD_STORAGE_RETENTION_DAYS": "30"}) == ""
    assert storage_account_name("https://acct.blob.core.windows.net/") == "acct"
    assert storage_account_name("https://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"


def test_the_image_tag_is_the_commit_with_a_hash_of_any_change(tmp_path: Path) -> None:
    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *arguments], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    assert git_image_tag(tmp_path) == "", "not a checkout"
    git("init", "-q")
    (tmp_path / "workflows.py").write_text("one\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    commit = git("rev-parse", "--short=12", "HEAD")
    assert git_image_tag(tmp_path) == commit
    (tmp_path / "workflows.py").write_text("two\n")
    changed = git_image_tag(tmp_path)
    assert changed.startswith(f"{commit}-dirty-") and len(changed) == len(commit) + len("-dirty-") + 10
    (tmp_path / "activities.py").write_text("new\n")
    assert git_image_tag(tmp_path) not in (commit, changed), "an untracked file is a change too"
