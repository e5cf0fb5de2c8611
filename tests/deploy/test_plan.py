"""deploy/plan.py, the deploy side's command line: the variables as NUL-separated data for the shell, the plan
derived once (object names, the image as ACR names it, the files to apply), rendering in the same call, and
--ramp checked with the configuration. (The scripts that read it are tested in test_deploy.py and
test_scripts_config.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from deploy import deploy_config, plan
from deploy.manifests import CONFIGURATION_FILES, FILES, SECRET_FILES

from helpers.processes import PYTHON, REPO_DIR, base_environment


def shell_values(tmp_path: Path, config_text: str = "", *arguments: str, **environ: str) -> subprocess.CompletedProcess:
    """`python deploy/plan.py values`, the one interface the scripts read configuration through."""
    (tmp_path / "config.env").write_text(config_text)
    return subprocess.run(
        [PYTHON, str(REPO_DIR / "deploy" / "plan.py"), "values", *arguments],
        env=base_environment(tmp_path, CONFIG_ENV_FILE=str(tmp_path / "config.env"), **environ),
        capture_output=True,
        timeout=60,
    )


def test_shell_values_are_nul_separated_data_for_every_variable_but_the_secrets(tmp_path):
    result = shell_values(
        tmp_path,
        "TEMPORAL_TASK_QUEUE='quoted # not a comment'\nLOG_LEVEL=$HOME\nTEMPORAL_API_KEY=canary-secret\n",
        TEMPORAL_NAMESPACE="line one\nline two",
    )
    assert result.returncode == 0, result.stderr
    pairs = dict(pair.split("=", 1) for pair in result.stdout.decode().split("\0") if pair)
    assert pairs["TEMPORAL_TASK_QUEUE"] == "quoted # not a comment"
    assert pairs["LOG_LEVEL"] == "$HOME", "config.env is data: nothing is expanded"
    assert pairs["TEMPORAL_NAMESPACE"] == "line one\nline two", "the environment wins, byte-exact"
    assert set(pairs) == {variable.name for variable in deploy_config.VARIABLES if not variable.secret}
    assert b"canary-secret" not in result.stdout + result.stderr


def test_shell_values_give_booleans_as_true_or_false_whatever_word_config_env_used(tmp_path):
    result = shell_values(tmp_path, "KEDA_ENABLED=1\nENCRYPTION_REQUIRED= FALSE \n")
    pairs = dict(pair.split("=", 1) for pair in result.stdout.decode().split("\0") if pair)
    assert (pairs["KEDA_ENABLED"], pairs["ENCRYPTION_REQUIRED"]) == ("true", "false")


def pairs_of(result: subprocess.CompletedProcess) -> dict[str, str]:
    assert result.returncode == 0, result.stderr.decode()
    return dict(pair.split("=", 1) for pair in result.stdout.decode().split("\0") if pair)


PLANNED = "ACR_NAME=myregistry\nIMAGE_TAG=1a2b3c4d\nTEMPORAL_ADDRESS=temporal.example:7233\nAPP_NAME=orders\n"
# base_environment turns the worker's ports off for the tests' processes; a pod needs its health port.
POD_PORTS = {"HEALTH_PORT": "9001", "METRICS_PORT": "9000"}


def planned(tmp_path: Path, config_text: str, *arguments: str, **environ: str) -> subprocess.CompletedProcess:
    """`plan.py values` for a deployable configuration."""
    return shell_values(tmp_path, config_text, *arguments, **POD_PORTS, **environ)


def test_the_plan_names_what_the_scripts_need_and_renders_in_the_same_call(tmp_path: Path) -> None:
    rendered = tmp_path / "manifests"
    rendered.mkdir()
    pairs = pairs_of(planned(tmp_path, PLANNED + "WORKER_VERSIONING=1\n", "render", "--ramp", "25",
                                  "--render", str(rendered)))  # fmt: skip
    assert set(plan.PLAN_VARIABLES) <= set(pairs)
    assert pairs["PLAN_KUBERNETES_DEPLOYMENT"] == "orders-1a2b3c4d"
    assert pairs["PLAN_WORKER_DEPLOYMENT"] == "temporal-workers/orders"
    assert pairs["PLAN_POD_SELECTOR"] == "app.kubernetes.io/instance=orders"
    assert (pairs["PLAN_IMAGE_REGISTRY"], pairs["PLAN_ACR_IMAGE"]) == ("myregistry.azurecr.io", "orders:1a2b3c4d")
    assert (pairs["PLAN_IMAGE_PINNED"], pairs["PLAN_RAMP"], pairs["WORKER_VERSIONING"]) == ("false", "25", "true")
    files = pairs["PLAN_FILES"].splitlines()
    assert files == [name for name in FILES if (rendered / name).is_file()] and "deployment.yaml" in files
    assert pairs["PLAN_SECRET_FILES"].splitlines() == [name for name in files if name in SECRET_FILES]
    assert pairs["PLAN_CONFIGURATION_FILES"].splitlines() == [name for name in files if name in CONFIGURATION_FILES]
    assert pairs["PLAN_RENDERED"].startswith("Rendered manifests for myregistry.azurecr.io/orders:1a2b3c4d")
    assert f"  {rendered / 'deployment.yaml'}" in pairs["PLAN_RENDERED"].splitlines()


def test_the_plan_without_render_writes_nothing_and_names_no_file(tmp_path: Path) -> None:
    pairs = pairs_of(planned(tmp_path, PLANNED, "config", AKS_CLUSTER_NAME="aks"))
    assert (pairs["PLAN_FILES"], pairs["PLAN_RENDERED"], pairs["PLAN_RAMP"]) == ("", "", "")
    assert pairs["PLAN_KUBERNETES_DEPLOYMENT"] == "orders"
    assert not list(tmp_path.glob("*.yaml"))


def test_an_image_pinned_by_digest_is_named_by_its_digest(tmp_path: Path) -> None:
    digest = "sha256:" + "cd" * 32
    pairs = pairs_of(planned(tmp_path, f"ACR_NAME=myregistry\nAPP_IMAGE=myregistry.azurecr.io/w@{digest}\n",
                                  "render"))  # fmt: skip
    assert (pairs["PLAN_IMAGE_PINNED"], pairs["PLAN_ACR_IMAGE"]) == ("true", f"w@{digest}")


def test_payload_storage_gives_the_account_and_what_happens_to_old_blobs(tmp_path: Path) -> None:
    storage = PLANNED + "PAYLOAD_STORAGE_ACCOUNT_URL=https://payloads.blob.core.windows.net/\n"
    never = pairs_of(planned(tmp_path, storage, "render"))
    assert never["PLAN_PAYLOAD_STORAGE_ACCOUNT"] == "payloads"
    assert never["PLAN_PAYLOAD_RETENTION"].startswith("PAYLOAD_STORAGE_RETENTION_DAYS is not set")
    rendered = tmp_path / "manifests"
    rendered.mkdir()
    kept = pairs_of(planned(tmp_path, storage + "PAYLOAD_STORAGE_RETENTION_DAYS=30\n", "render", "--render",
                                 str(rendered)))  # fmt: skip
    assert kept["PLAN_PAYLOAD_RETENTION"] == str(rendered / "payload-storage-lifecycle.json")


def test_ramp_is_checked_with_the_configuration_and_every_problem_is_listed(tmp_path: Path) -> None:
    result = planned(tmp_path, PLANNED + "REPLICAS=many\n", "render", "--ramp", "0")
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "REPLICAS='many'" in stderr and "--ramp needs a whole percentage from 1 to 100 (got '0')" in stderr
    assert result.stdout == b"", "nothing for the shell to load"
    unversioned = planned(tmp_path, PLANNED, "render", "--ramp", "10")
    assert unversioned.returncode == 2
    assert "--ramp routes a share of new workflows to a new version: it needs WORKER_VERSIONING=true" in (
        unversioned.stderr.decode()
    )


def test_a_local_temporal_address_is_said_once_for_start_sh(tmp_path: Path) -> None:
    assert (
        pairs_of(planned(tmp_path, "TEMPORAL_ADDRESS=localhost:7233\n", "local"))["PLAN_TEMPORAL_ADDRESS_LOCAL"]
        == "true"
    )
    assert (
        pairs_of(planned(tmp_path, "TEMPORAL_ADDRESS=ns.tmprl.cloud:7233\n", "local"))["PLAN_TEMPORAL_ADDRESS_LOCAL"]
        == "false"
    )
