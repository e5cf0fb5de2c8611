"""Payload storage in the cluster: the variables in the pod, the lifecycle-management policy that deletes old
blobs, and deploy.sh's hints (the role the worker's identity needs, the command that applies the policy)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from helpers.deploy_harness import CLIENT_ID, FULL_CONFIG, MINIMAL_CONFIG, SUBSCRIPTION, Project, secret_values

ACCOUNT_URL = "https://mypayloads.blob.core.windows.net/"
ACCOUNT_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-storage/providers/Microsoft.Storage/storageAccounts/mypayloads"
)
STORAGE = {"PAYLOAD_STORAGE_ACCOUNT_URL": ACCOUNT_URL, "PAYLOAD_STORAGE_RETENTION_DAYS": "120"}
POLICY = "payload-storage-lifecycle.json"
ROLE = "Storage Blob Data Contributor"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def render(project: Project, values: dict[str, str]):
    project.write_config(values)
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    return result


def test_the_pod_gets_the_storage_settings_and_the_policy_deletes_blobs_after_the_days_given(project) -> None:
    render(project, {**FULL_CONFIG, **STORAGE, "PAYLOAD_STORAGE_CONTAINER": "documents"})
    [config_map] = project.manifest("config-map.yaml")
    assert config_map["data"]["PAYLOAD_STORAGE_ACCOUNT_URL"] == ACCOUNT_URL
    assert config_map["data"]["PAYLOAD_STORAGE_CONTAINER"] == "documents"
    assert config_map["data"]["PAYLOAD_STORAGE_THRESHOLD_BYTES"] == "262144"
    assert "PAYLOAD_STORAGE_RETENTION_DAYS" not in config_map["data"], "a deploy-side setting"
    policy_file = project.root / POLICY
    assert stat.S_IMODE(policy_file.stat().st_mode) == 0o644
    assert json.loads(policy_file.read_text()) == {
        "rules": [
            {
                "enabled": True,
                "name": "temporal-worker-payloads-expire",
                "type": "Lifecycle",
                "definition": {
                    "actions": {"baseBlob": {"delete": {"daysAfterCreationGreaterThan": 120}}},
                    "filters": {"blobTypes": ["blockBlob"], "prefixMatch": ["documents/v0/"]},
                },
            }
        ]
    }
    render(project, {**FULL_CONFIG, "PAYLOAD_STORAGE_ACCOUNT_URL": ACCOUNT_URL})
    assert not policy_file.exists(), "no days, no policy: an old one is removed"


def test_a_connection_string_goes_to_the_app_secret_only_and_is_warned_about(project) -> None:
    connection_string = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=canary-storage-key==;"
    result = render(project, {**MINIMAL_CONFIG, "PAYLOAD_STORAGE_CONNECTION_STRING": connection_string})
    [secret] = project.manifest("app-secret.yaml")
    assert secret_values(secret) == {"PAYLOAD_STORAGE_CONNECTION_STRING": connection_string}
    for name, content in project.files().items():
        if name not in ("config.env", "app-secret.yaml"):
            assert b"canary-storage-key" not in content, name
    assert "canary-storage-key" not in result.output
    assert "PAYLOAD_STORAGE_CONNECTION_STRING puts an account key or SAS into the pod's Secret" in result.stderr


def test_storage_without_an_identity_or_retention_is_warned_about(project) -> None:
    result = render(project, {**MINIMAL_CONFIG, "PAYLOAD_STORAGE_ACCOUNT_URL": ACCOUNT_URL})
    assert "PAYLOAD_STORAGE_ACCOUNT_URL is set but AZURE_CLIENT_ID is not" in result.stderr
    assert "PAYLOAD_STORAGE_RETENTION_DAYS is not set: payload blobs are never deleted" in result.stderr


def test_a_memory_limit_without_room_for_a_tasks_payloads_is_refused_naming_both(project) -> None:
    project.write_config({**MINIMAL_CONFIG, **STORAGE, "MEMORY_LIMIT": "256Mi"})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2
    assert (
        "MEMORY_LIMIT=256Mi leaves too little room for PAYLOAD_STORAGE_MAX_TASK_BYTES=67108864" in result.stderr
        and "set MEMORY_LIMIT to at least 384Mi or lower PAYLOAD_STORAGE_MAX_TASK_BYTES" in result.stderr
    ), result.stderr
    render(
        project,
        {**MINIMAL_CONFIG, **STORAGE, "MEMORY_LIMIT": "384Mi"},  # exactly 4 x 64Mi + 128Mi
    )
    render(project, {**MINIMAL_CONFIG, "MEMORY_LIMIT": "256Mi"})  # payload storage off: no such need


def test_a_bad_retention_is_refused_before_anything_renders(project) -> None:
    project.write_config({**MINIMAL_CONFIG, **STORAGE, "PAYLOAD_STORAGE_RETENTION_DAYS": "0"})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2
    assert "PAYLOAD_STORAGE_RETENTION_DAYS='0': must be a whole number, at least 1" in result.stderr


def test_deploy_prints_the_role_assignment_and_the_policy_command_and_runs_neither(project) -> None:
    project.write_config({**FULL_CONFIG, **STORAGE})
    result = project.run("deploy.sh", STUB_STORAGE_ACCOUNT=f"{ACCOUNT_ID}\trg-storage")
    assert result.returncode == 0, result.output
    lookup = ["az", "storage", "account", "show", "--name", "mypayloads", "--subscription", SUBSCRIPTION]
    lookup += ["--query", "[id, resourceGroup]", "--output", "tsv"]
    assert project.commands()[-1] == lookup, "one read-only lookup, after the rollout"
    assert not [command for command in project.commands() if command[:3] == ["az", "role", "assignment"]]
    assert not [command for command in project.commands() if "management-policy" in command]
    scope = f"{ACCOUNT_ID}/blobServices/default/containers/temporal-payloads"
    assert f"  $ az role assignment create --role '{ROLE}' --assignee {CLIENT_ID} --scope {scope}\n" in result.stdout
    assert (
        "  $ az storage account management-policy create --account-name mypayloads --resource-group rg-storage "
        f"--subscription {SUBSCRIPTION} --policy @{project.root}/{POLICY}\n"
    ) in result.stdout
    assert "120 days after they were written" in result.stdout


def test_a_dry_run_prints_the_hints_with_placeholders(project) -> None:
    project.write_config({**FULL_CONFIG, **STORAGE})
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert project.commands() == []
    assert "$ az storage account show --name mypayloads" in result.stdout
    assert (
        f"$ az role assignment create --role '{ROLE}' --assignee {CLIENT_ID} "
        "--scope '<id of storage account mypayloads>/blobServices/default/containers/temporal-payloads'"
    ) in result.stdout
    assert "--resource-group '<resource group of storage account mypayloads>'" in result.stdout


def test_without_payload_storage_deploy_prints_no_storage_hint(project) -> None:
    project.write_config(FULL_CONFIG)
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    assert "Payload storage" not in result.stdout and ROLE not in result.stdout
