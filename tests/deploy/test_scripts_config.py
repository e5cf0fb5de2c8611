"""source_config.sh and the checks behind it (deploy/plan.py and deploy/deploy_config.py with the catalog):
config.env read as data, the environment winning, defaults and derived values, and checks that report every
problem (exit status 2) before anything is rendered."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

import config
from deploy import deploy_config

from helpers.deploy_harness import (
    ACR_PASSWORD_CANARY,
    API_KEY_CANARY,
    FULL_CONFIG,
    MINIMAL_CONFIG,
    REPO,
    Project,
    contains_canary,
    shown,
)

DEPLOY_VARIABLES = [
    "AZURE_SUBSCRIPTION_ID", "RESOURCE_GROUP", "ACR_NAME", "ACR_USERNAME", "ACR_PASSWORD", "ACR_EMAIL",
    "AKS_CLUSTER_NAME", "KUBE_CONTEXT", "KUBERNETES_NAMESPACE", "APP_NAME", "IMAGE_TAG", "APP_IMAGE",
    "REPLICAS", "CPU_REQUEST", "MEMORY_REQUEST", "CPU_LIMIT", "MEMORY_LIMIT", "AZURE_CLIENT_ID",
    "USE_NODE_IDENTITY", "NETWORK_POLICY", "NETWORK_POLICY_EGRESS_CIDRS", "NETWORK_POLICY_METRICS_FROM",
    "BUILD_MODE", "BUILD_PLATFORMS", "METRICS_SCRAPE",
    "KEDA_ENABLED", "KEDA_MIN_REPLICAS", "KEDA_MAX_REPLICAS", "KEDA_TARGET_QUEUE_SIZE",
    "ROLLOUT_TIMEOUT", "WORKER_VERSIONING", "DEPLOY_REPLAY_HISTORIES", "DEPLOY_TEMPORAL_ADDRESS",
    "ROLLOUT_STEPS", "ROLLOUT_GATE_WORKFLOW", "ROLLOUT_GATE_INPUT", "ROLLOUT_FAILURE_MARGIN", "ROLLOUT_MIN_WORKFLOWS",
    "ROLLOUT_POLL_SECONDS", "PAYLOAD_STORAGE_RETENTION_DAYS",
    "CODEC_SERVER_DEPLOY", "CODEC_SERVER_REPLICAS", "CODEC_SERVER_CPU_REQUEST", "CODEC_SERVER_MEMORY_REQUEST",
    "CODEC_SERVER_CPU_LIMIT", "CODEC_SERVER_MEMORY_LIMIT", "CODEC_SERVER_AZURE_CLIENT_ID", "CODEC_SERVER_INGRESS_HOST",
    "CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI", "CODEC_SERVER_ALLOW_UNAUTHENTICATED",
]  # fmt: skip
AWKWARD_VALUE = 'it\'s "quoted" # not a comment $(touch pwned) ${HOME} `id` \\ back\nsecond line\tü 😀'


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def sourced(project: Project, script: str, **environment: str):
    """Run `script` in bash after `source ./source_config.sh` (with set -u, as deploy.sh has)."""
    return project.run("bash", "-c", f"set -u; source ./source_config.sh && {script}", **environment)


def test_list_variables_names_every_app_and_deploy_variable_once(project: Project) -> None:
    result = project.run("bash", "source_config.sh", "--list-variables")
    assert result.returncode == 0, result.output
    names = result.stdout.split()
    assert names == list(config.DEFAULTS) + DEPLOY_VARIABLES == [variable.name for variable in deploy_config.VARIABLES]
    assert [variable.name for variable in deploy_config.DEPLOY_VARIABLES] == DEPLOY_VARIABLES, (
        "declared on the deploy side"
    )


def test_config_env_example_lists_every_deploy_variable_with_its_default(project: Project) -> None:
    defaults = shown(project)
    example = dotenv_values(REPO / "config.env.example", interpolate=False)
    deploy_section = {name: value for name, value in example.items() if name in DEPLOY_VARIABLES}
    assert list(deploy_section) == DEPLOY_VARIABLES
    for name, value in deploy_section.items():
        if value:
            assert defaults[name] == value, name


def test_config_env_values_arrive_byte_exact_and_are_never_executed(project: Project) -> None:
    project.write_config({"TEMPORAL_TASK_QUEUE": AWKWARD_VALUE, "APP_NAME": "from-file"})
    result = sourced(project, 'printf "%s" "$TEMPORAL_TASK_QUEUE"; printf "|%s" "$APP_NAME"')
    assert result.returncode == 0, result.output
    assert result.stdout == AWKWARD_VALUE + "|from-file"
    assert not (project.root / "pwned").exists()


def test_the_environment_wins_over_config_env_which_wins_over_defaults(project: Project) -> None:
    project.write_config({"APP_NAME": "from-file", "REPLICAS": "5", "LOG_LEVEL": "DEBUG"})
    values = shown(project, APP_NAME="from-env", LOG_LEVEL="")
    assert values["APP_NAME"] == "from-env"
    assert values["REPLICAS"] == "5"
    assert values["LOG_LEVEL"] == "DEBUG", "an empty environment variable counts as unset, as in config.py"
    assert values["CPU_REQUEST"] == "200m" and values["KUBERNETES_NAMESPACE"] == "temporal-workers"


def test_config_env_file_variable_points_at_another_file(project: Project, tmp_path: Path) -> None:
    other = tmp_path / "other.env"
    other.write_text("APP_NAME=elsewhere\n")
    assert shown(project, CONFIG_ENV_FILE=str(other))["APP_NAME"] == "elsewhere"


def test_sourcing_again_picks_up_an_edited_config_env(project: Project) -> None:
    project.write_config({"APP_NAME": "first"})
    edit = 'printf "APP_NAME=second\\n" > config.env'
    result = sourced(project, f'echo "$APP_NAME"; {edit}; source ./source_config.sh; echo "$APP_NAME"')
    assert result.stdout.split() == ["first", "second"], result.output


def test_sourcing_leaves_the_callers_shell_options_and_environment_alone(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "TEMPORAL_API_KEY": API_KEY_CANARY})
    result = project.run(
        "bash", "-c", 'before=$(set +o); source ./source_config.sh; [ "$before" = "$(set +o)" ] && echo same; export -p'
    )
    assert result.returncode == 0, result.output
    assert result.stdout.startswith("same\n")
    assert "TEMPORAL_API_KEY" not in result.stdout and API_KEY_CANARY not in result.output, "secrets are not exported"


def test_derived_values_name_the_image_and_the_kubectl_context(project: Project) -> None:
    project.write_config({"ACR_NAME": "MyRegistry", "IMAGE_TAG": "v1.2.3", "AKS_CLUSTER_NAME": "aks-prod"})
    values = shown(project)
    assert values["APP_IMAGE"] == "myregistry.azurecr.io/temporal-worker:v1.2.3"
    assert values["KUBE_CONTEXT"] == "aks-prod"
    assert values["BUILD_PLATFORMS"] == "linux/amd64,linux/arm64"
    assert shown(project, BUILD_MODE="acr")["BUILD_PLATFORMS"] == "linux/amd64"


def test_an_explicit_app_image_gives_the_tag(project: Project) -> None:
    project.write_config({"APP_IMAGE": "other.azurecr.io/team/worker:build-7"})
    assert shown(project)["IMAGE_TAG"] == "build-7"
    project.write_config({"APP_IMAGE": "registry.example:5000/worker"})
    assert shown(project)["IMAGE_TAG"] == "", "a registry port is not a tag"
    result = project.run("bash", "source_config.sh", "--check", "render")
    assert "APP_IMAGE='registry.example:5000/worker': must be REGISTRY/REPOSITORY:TAG" in result.stderr


def test_an_app_image_pinned_by_digest_is_accepted(project: Project) -> None:
    digest = "sha256:" + "0a" * 32
    deploy = {
        "AZURE_SUBSCRIPTION_ID": MINIMAL_CONFIG["AZURE_SUBSCRIPTION_ID"],
        "AKS_CLUSTER_NAME": "aks",
        "ACR_NAME": "testregistry",
    }
    for image, tag in (
        (f"testregistry.azurecr.io/team/worker:build-7@{digest}", "build-7"),
        (f"testregistry.azurecr.io/team/worker@{digest}", "sha256-0a0a0a0a0a0a"),
        (f"testregistry.azurecr.io/team/worker:latest@{digest}", "latest"),  # the digest fixes what 'latest' was
    ):
        project.write_config({**deploy, "APP_IMAGE": image})
        assert shown(project)["IMAGE_TAG"] == tag, image
        result = project.run("bash", "source_config.sh", "--check", "deploy")
        assert result.returncode == 0, result.output
    project.write_config({**deploy, "APP_IMAGE": "testregistry.azurecr.io/team/worker:1@sha256:abc"})
    result = project.run("bash", "source_config.sh", "--check", "render")
    assert result.returncode == 2 and "optionally pinned by digest" in result.stderr


def git(project: Project, *arguments: str) -> str:
    """git in the project copy, untouched by the developer's git configuration (signing, hooks)."""
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(project.home), "GIT_CONFIG_NOSYSTEM": "1"}
    completed = subprocess.run(
        ["git", "-C", str(project.root), "-c", "user.name=t", "-c", "user.email=t@example.com", *arguments],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return completed.stdout.strip()


def test_the_image_tag_is_the_git_commit_with_a_suffix_for_uncommitted_changes(project: Project) -> None:
    shutil.copy2(REPO / ".gitignore", project.root / ".gitignore")
    project.write_config({"ACR_NAME": "testregistry"})
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "initial")
    commit = git(project, "rev-parse", "--short=12", "HEAD")
    assert shown(project)["IMAGE_TAG"] == commit, "config.env is gitignored and does not make the tree dirty"

    (project.root / "worker.py").write_text("print('changed')\n")
    dirty = shown(project)["IMAGE_TAG"]
    assert dirty.startswith(f"{commit}-dirty-") and len(dirty) == len(commit) + 17
    (project.root / "worker.py").write_text("print('changed again')\n")
    assert shown(project)["IMAGE_TAG"] not in (dirty, commit), "a different change gives a different tag"
    assert shown(project, IMAGE_TAG="pinned")["APP_IMAGE"].endswith(":pinned")


def test_show_hides_secrets(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    result = project.run("bash", "source_config.sh", "--show")
    assert result.returncode == 0
    assert "TEMPORAL_API_KEY=<set, hidden>" in result.stdout
    assert "ACR_PASSWORD=<set, hidden>" in result.stdout
    assert contains_canary(result.output) == []


def test_a_complete_configuration_passes_every_check(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    result = project.run("bash", "source_config.sh", "--check", "deploy")
    assert result.returncode == 0, result.output
    assert "Configuration OK for deploy" in result.stdout


def test_every_problem_is_reported_at_once_without_revealing_secrets(project: Project) -> None:
    project.write_config(
        {
            **MINIMAL_CONFIG,
            "APP_NAME": "Temporal_Worker",
            "CPU_REQUEST": "two",
            "KEDA_ENABLED": "yes",
            "METRICS_PORT": "70000",
            "ACR_PASSWORD": API_KEY_CANARY,
            "AZURE_SUBSCRIPTION_ID": "",
        }
    )
    result = project.run("bash", "source_config.sh", "--check", "deploy")
    assert result.returncode == 2
    for name in ("APP_NAME", "CPU_REQUEST", "KEDA_ENABLED", "METRICS_PORT", "ACR_PASSWORD", "AZURE_SUBSCRIPTION_ID"):
        assert name in result.stderr
    assert contains_canary(result.output) == []


# Each case: variable, bad value, a phrase of the message. Rendering must stop before writing anything.
INVALID_FOR_RENDERING = [
    ("APP_NAME", "Temporal_Worker", "RFC 1123"),
    ("APP_NAME", "a" * 64, "at most 63 characters"),
    ("KUBERNETES_NAMESPACE", "-workers", "RFC 1123"),
    ("REPLICAS", "0", "at least 1"),
    ("REPLICAS", "two", "whole number"),
    ("REPLICAS", "08", "whole number"),
    ("CPU_REQUEST", "two", "CPU quantity"),
    ("CPU_LIMIT", "100m", "must not exceed its limit"),
    ("MEMORY_LIMIT", "512m", "did you mean 512Mi"),
    ("MEMORY_REQUEST", "1Gb", "memory quantity"),
    ("KEDA_ENABLED", "yes", "true or false"),
    ("KEDA_MAX_REPLICAS", "0", "at least 1"),
    ("METRICS_PORT", "70000", "port must be a whole number"),
    ("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "soon", "number of seconds"),
    ("IMAGE_TAG", "latest", "mutable"),
    ("IMAGE_TAG", "v1/beta", "letters, digits"),
    ("APP_IMAGE", "Registry/Worker:1", "REGISTRY/REPOSITORY:TAG"),
    ("APP_IMAGE", f"testregistry.azurecr.io/worker@sha256:{'A' * 64}", "REGISTRY/REPOSITORY:TAG"),
    ("METRICS_BIND_ADDRESS", "localhost", "must be an IP address"),
    ("USE_NODE_IDENTITY", "maybe", "true or false"),
    ("NETWORK_POLICY", "on", "true or false"),
    ("NETWORK_POLICY_EGRESS_CIDRS", "10.1.2.3/16", "did you mean 10.1.0.0/16"),
    ("NETWORK_POLICY_EGRESS_CIDRS", "10.1.0.0/16,internal", "'internal' is not an address range"),
    ("NETWORK_POLICY_METRICS_FROM", "namespace:Monitoring", "'namespace:Monitoring' is not a source of metrics"),
    ("NETWORK_POLICY_EGRESS_CIDRS", "168.63.129.16/32", "instance metadata service or Azure's host endpoint"),
    ("AZURE_CLIENT_ID", "not-a-guid", "GUID"),
    ("ACR_NAME", "my-registry", "5 to 50 letters and digits"),
    ("HEALTH_PORT", "0", "the Kubernetes probes"),
    ("METRICS_SCRAPE", "servicemonitor", "must be none, annotations, podmonitor or prometheus-operator"),
    ("ACR_USERNAME", "someone", "go together"),
]


@pytest.mark.parametrize(("name", "value", "message"), INVALID_FOR_RENDERING, ids=lambda case: str(case)[:30])
def test_an_invalid_setting_stops_rendering_with_a_clear_error(
    project: Project, name: str, value: str, message: str
) -> None:
    overrides = {name: value, "KEDA_ENABLED": "true"} if name.startswith("KEDA_M") else {name: value}
    project.write_config({**MINIMAL_CONFIG, **overrides})
    before = project.files()
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2
    problem_lines = [line for line in result.stderr.splitlines() if name in line]
    assert problem_lines and any(message in line for line in problem_lines), result.stderr
    assert "nothing was rendered" in result.stderr
    assert project.files() == before


INVALID_FOR_DEPLOYING = [
    ("AZURE_SUBSCRIPTION_ID", "", "not set"),
    ("AZURE_SUBSCRIPTION_ID", "my-subscription", "GUID"),
    ("AKS_CLUSTER_NAME", "", "KUBE_CONTEXT"),
    ("BUILD_MODE", "podman", "buildx"),
    ("BUILD_PLATFORMS", "amd64", "comma-separated platforms"),
    ("ROLLOUT_TIMEOUT", "300", "with a unit"),
    ("APP_IMAGE", "elsewhere.azurecr.io/temporal-worker:1", "not in the registry"),
]


@pytest.mark.parametrize(("name", "value", "message"), INVALID_FOR_DEPLOYING, ids=lambda case: str(case)[:30])
def test_deploying_checks_the_azure_settings_too(project: Project, name: str, value: str, message: str) -> None:
    config_values = {**MINIMAL_CONFIG, name: value}
    if name == "APP_IMAGE":
        del config_values["IMAGE_TAG"]
    project.write_config(config_values)
    assert project.run("bash", "source_config.sh", "--check", "render").returncode == 0
    result = project.run("bash", "source_config.sh", "--check", "deploy")
    assert result.returncode == 2
    assert any(name in line and message in line for line in result.stderr.splitlines()), result.stderr


def test_az_acr_build_takes_one_platform(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "BUILD_MODE": "acr", "BUILD_PLATFORMS": "linux/amd64,linux/arm64"})
    result = project.run("bash", "source_config.sh", "--check", "deploy")
    assert result.returncode == 2
    assert "one platform per call" in result.stderr


def test_keda_without_a_way_to_use_tls_is_refused(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "KEDA_ENABLED": "true", "TEMPORAL_TLS": "true"})
    result = project.run("bash", "source_config.sh", "--check", "render")
    assert result.returncode == 2
    assert "KEDA's temporal scaler would connect without TLS" in result.stderr


def test_test_only_keyvault_settings_are_announced_not_deployed(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false"})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    assert "KEYVAULT_VERIFY_CHALLENGE_RESOURCE=false is a test-only setting and is not deployed" in result.stderr
    assert "KEYVAULT_VERIFY_CHALLENGE_RESOURCE" not in (project.root / "config-map.yaml").read_text()


def test_a_localhost_temporal_address_is_warned_about(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "TEMPORAL_ADDRESS": "localhost:7233"})
    result = project.run("bash", "source_config.sh", "--check", "render")
    assert result.returncode == 0
    assert "points at the pod itself" in result.stderr


def test_an_unknown_variable_in_config_env_is_warned_about(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "ACR_NAEM": "typo"})
    result = project.run("bash", "source_config.sh", "--show")
    assert result.returncode == 0
    assert "unknown variable 'ACR_NAEM' is ignored" in result.stderr


def test_a_nul_byte_in_config_env_is_refused(project: Project) -> None:
    (project.root / "config.env").write_bytes(b"APP_NAME=a\x00TEMPORAL_API_KEY=injected\n")
    result = project.run("bash", "source_config.sh", "--show")
    assert result.returncode != 0
    assert "contains a NUL byte" in result.stderr


@pytest.mark.parametrize("character", ["\x85", "\x9b", "\u2028", "\ufffe", "\uffff"])
def test_control_characters_and_line_break_look_alikes_reach_the_config_map_byte_exact(
    project: Project, character: str
) -> None:
    """Every value is written as an escaped YAML string, so kubectl reads back exactly what config.env held."""
    project.write_config({**MINIMAL_CONFIG, "TEMPORAL_TASK_QUEUE": f"queue{character}end"})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    [config_map] = project.manifest("config-map.yaml")
    assert config_map["data"]["TEMPORAL_TASK_QUEUE"] == f"queue{character}end"


def test_secrets_may_hold_any_character(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "TEMPORAL_API_KEY": "key\x85\x7f"})
    assert project.run("generate-k8s-manifests.sh").returncode == 0


def test_sourcing_with_check_loads_nothing_when_the_configuration_has_a_problem(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "APP_NAME": "Bad_Name"})
    script = 'source ./source_config.sh --check render; echo "status=$? app=${APP_NAME-unset}"'
    result = project.run("bash", "-c", script)
    assert "status=2 app=unset" in result.stdout, result.output
    assert "APP_NAME='Bad_Name'" in result.stderr


def test_sourcing_loads_no_secret_into_the_shell(project: Project) -> None:
    project.write_config({**FULL_CONFIG})
    result = project.run("bash", "-c", "source ./source_config.sh; set")
    assert result.returncode == 0, result.output
    assert API_KEY_CANARY not in result.output and ACR_PASSWORD_CANARY not in result.output
    assert "APP_IMAGE=testregistry.azurecr.io/temporal-worker:0123abcd" in result.stdout


def test_an_exported_empty_variable_does_not_keep_a_derived_value_for_the_next_load(project: Project) -> None:
    """IMAGE_TAG exported empty means unset: the derived tag is set in the shell, but not exported."""
    project.write_config({"ACR_NAME": "testregistry", "IMAGE_TAG": "from-file"})
    script = 'source ./source_config.sh; echo "$IMAGE_TAG"; sh -c \'echo "child=${IMAGE_TAG:-empty}"\''
    result = project.run("bash", "-c", f"export IMAGE_TAG=; {script}")
    assert result.stdout.split() == ["from-file", "child=empty"], result.output


def test_sourcing_from_a_shell_other_than_bash_explains_itself(project: Project) -> None:
    shell = shutil.which("sh", path="/usr/bin:/bin")
    probe = subprocess.run([shell, "-c", 'echo "${BASH_VERSION:-}"'], capture_output=True, text=True)
    if probe.stdout.strip():
        pytest.skip("sh is bash here")
    result = project.run("sh", "-c", ". ./source_config.sh; echo after")
    assert "needs bash" in result.stderr
