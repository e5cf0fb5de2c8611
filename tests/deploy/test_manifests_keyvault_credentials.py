"""Temporal credentials in Key Vault, in the cluster: no Kubernetes Secret holds the API key or the mTLS key,
the pods read them with the workload identity, and KEDA's TriggerAuthentication reads them from the vault too.

Checked on the rendered YAML (read by the real kubectl), against Kubernetes' schema (kubernetes-validate,
strict) and KEDA's TriggerAuthentication schema, through generate-k8s-manifests.sh and deploy.sh --dry-run.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from helpers.deploy_harness import (
    API_KEY_CANARY,
    CLIENT_ID,
    FULL_CONFIG,
    Project,
    contains_canary,
    parse_with_kubectl,
    secret_values,
)
from helpers.manifest_checks import KEDA, KUBERNETES_VERSION, check_temporal_trigger, keda_schema

VAULT = "https://my-vault.vault.azure.net/"
API_KEY_SECRET = "temporal-api-key"
CERTIFICATE = "temporal-client-certificate"
# FULL_CONFIG with the credentials in Key Vault: no TEMPORAL_API_KEY, no client certificate files.
KEYVAULT_CONFIG = {
    **{name: value for name, value in FULL_CONFIG.items() if name != "TEMPORAL_API_KEY"},
    "KEYVAULT_URL": VAULT,
    "TEMPORAL_API_KEY_KEYVAULT_SECRET": API_KEY_SECRET,
    "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE": CERTIFICATE,
}
API_KEY_LINE = (
    f"Temporal API key: Key Vault secret {API_KEY_SECRET} in {VAULT}, read by the pods and KEDA with the workload "
    "identity; no Kubernetes Secret holds it"
)
CERTIFICATE_LINE = (
    f"Temporal client certificate: Key Vault certificate {CERTIFICATE} in {VAULT}, read by the pods and KEDA with "
    "the workload identity; no Kubernetes Secret holds its key"
)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


@pytest.fixture
def server_ca(tmp_path: Path) -> str:
    path = tmp_path / "server-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nserver CA\n-----END CERTIFICATE-----\n")
    return str(path)


def documents_in(directory: Path) -> list[dict]:
    """Every document of every rendered file, as kubectl reads it."""
    return [document for path in sorted(directory.glob("*.yaml")) for document in parse_with_kubectl(path)]


def test_no_secret_holds_the_credentials_and_every_manifest_is_valid(project: Project, server_ca: str) -> None:
    project.write_config({**KEYVAULT_CONFIG, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": server_ca})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    assert API_KEY_LINE in result.stdout and CERTIFICATE_LINE in result.stdout

    documents = documents_in(project.root)
    secrets = {
        document["metadata"]["name"]: secret_values(document) for document in documents if document["kind"] == "Secret"
    }
    assert secrets["temporal-worker-secrets"] == {}, "the app Secret holds no API key"
    assert set(secrets["temporal-worker-temporal-tls"]) == {"server-ca.crt"}, "the mTLS Secret holds no key"
    for values in secrets.values():
        assert not any("PRIVATE KEY" in value or "TEMPORAL_API_KEY" in key for key, value in values.items())
    [config_map] = [document for document in documents if document["kind"] == "ConfigMap"]
    data = config_map["data"]
    assert (data["TEMPORAL_API_KEY_KEYVAULT_SECRET"], data["TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE"]) == (
        API_KEY_SECRET,
        CERTIFICATE,
    )
    assert data["KEYVAULT_URL"] == VAULT and "TEMPORAL_API_KEY" not in data
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH" not in data and "TEMPORAL_TLS_CLIENT_KEY_PATH" not in data
    [deployment] = [document for document in documents if document["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "temporal-worker", "the pod reads the vault with the workload identity"
    assert deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert "env" not in pod["containers"][0], "nothing but the ConfigMap and the (empty) app Secret"

    for document in documents:
        if document["apiVersion"].startswith("keda.sh/"):
            jsonschema.validate(document, keda_schema(document["kind"]))
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_keda_reads_the_credentials_from_the_vault_with_the_workload_identity(project: Project, server_ca: str) -> None:
    project.write_config({**KEYVAULT_CONFIG, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": server_ca})
    assert project.run("generate-k8s-manifests.sh").returncode == 0
    documents = {document["kind"]: document for document in project.manifest("keda-scaledobject.yaml")}
    authentication = documents["TriggerAuthentication"]
    jsonschema.validate(authentication, keda_schema("TriggerAuthentication"))

    assert authentication["spec"] == {
        "secretTargetRef": [{"parameter": "ca", "name": "temporal-worker-temporal-tls", "key": "server-ca.crt"}],
        "azureKeyVault": {
            "vaultUri": VAULT,
            "podIdentity": {"provider": "azure-workload", "identityId": CLIENT_ID},
            "secrets": [
                {"parameter": "apiKey", "name": API_KEY_SECRET},
                {"parameter": "cert", "name": CERTIFICATE},
                {"parameter": "key", "name": CERTIFICATE},
            ],
        },
    }
    parameters = json.loads((KEDA / "temporal-trigger.json").read_text())["authentication_parameters"]
    assert {secret["parameter"] for secret in authentication["spec"]["azureKeyVault"]["secrets"]} <= set(parameters)
    [trigger] = documents["ScaledObject"]["spec"]["triggers"]
    check_temporal_trigger(trigger)
    assert trigger["authenticationRef"] == {"name": authentication["metadata"]["name"]}


def test_keda_reads_only_the_api_key_from_the_vault_when_only_it_is_there(project: Project) -> None:
    project.write_config({name: value for name, value in KEYVAULT_CONFIG.items() if "CERTIFICATE" not in name})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    assert API_KEY_LINE in result.stdout and "Temporal client certificate" not in result.stdout
    [authentication] = [d for d in project.manifest("keda-scaledobject.yaml") if d["kind"] == "TriggerAuthentication"]
    jsonschema.validate(authentication, keda_schema("TriggerAuthentication"))
    assert authentication["spec"] == {
        "azureKeyVault": {
            "vaultUri": VAULT,
            "podIdentity": {"provider": "azure-workload", "identityId": CLIENT_ID},
            "secrets": [{"parameter": "apiKey", "name": API_KEY_SECRET}],
        }
    }


def test_a_deploy_dry_run_shows_where_the_credentials_come_from(project: Project, tmp_path: Path) -> None:
    project.write_config(KEYVAULT_CONFIG)
    kept = tmp_path / "kept"
    result = project.run("deploy.sh", "--dry-run", "--output-dir", str(kept))
    assert result.returncode == 0, result.output
    assert API_KEY_LINE in result.stdout and CERTIFICATE_LINE in result.stdout
    assert secret_values(parse_with_kubectl(kept / "app-secret.yaml")[0]) == {}


def test_the_secret_route_still_says_where_the_key_is(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0
    assert "Temporal API key: in the Secret temporal-worker-secrets (a new key: ./patch.sh --config-only)" in (
        result.stdout
    )
    assert contains_canary(result.output) == []
    assert secret_values(project.manifest("app-secret.yaml")[0]) == {"TEMPORAL_API_KEY": API_KEY_CANARY}


@pytest.mark.parametrize("variable", ["TEMPORAL_API_KEY_KEYVAULT_SECRET", "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE"])
def test_credentials_in_key_vault_need_the_workload_identity_to_deploy(project: Project, variable: str) -> None:
    other = ({"TEMPORAL_API_KEY_KEYVAULT_SECRET", "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE"} - {variable}).pop()
    project.write_config(
        {name: value for name, value in KEYVAULT_CONFIG.items() if name not in ("AZURE_CLIENT_ID", other)}
    )
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2
    assert f"{variable} is set but AZURE_CLIENT_ID is not: in the cluster the pods and KEDA read Key Vault" in (
        result.stderr
    )
    assert "nothing was rendered" in result.stderr
