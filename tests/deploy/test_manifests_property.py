"""Property: whatever printable or unicode text config.env holds, it reaches the ConfigMap, the
Secrets and KEDA's trigger byte-exact, as kubectl itself parses them, and never adds a key or field."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config

from helpers.deploy_harness import MINIMAL_CONFIG, Project, parse_with_kubectl, parse_with_pyyaml, secret_values

# Any character a text file can hold but NUL (and surrogates, which are not characters): C1 controls, DEL,
# U+2028, U+FFFE and the rest reach the manifests byte-exact too, escaped by the one YAML writer.
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=30)
SECRET_TEXT = ANY_TEXT
# What config.py accepts as a Temporal name: no control characters, no surrounding whitespace.
NAME_TEXT = ANY_TEXT.filter(lambda text: text == text.strip() and not any(ord(c) < 32 or ord(c) == 127 for c in text))
SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIXED = {
    **MINIMAL_CONFIG,
    "KEDA_ENABLED": "true",
    "KEYVAULT_URL": "https://vault.vault.azure.net/",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",  # Key Vault in the cluster needs the pod's identity
}
TRIGGER_KEYS = {"endpoint", "namespace", "taskQueue", "queueTypes", "targetQueueSize", "activationTargetQueueSize"}


def expected_config_map(file_values: dict[str, str]) -> dict[str, str]:
    """config.py's view of the settings the pod uses, minus secrets and empty ones; and what the cluster sets:
    JSON logs (unless LOG_FORMAT says otherwise), metrics and probes on every interface (the values here leave
    METRICS_BIND_ADDRESS at its loopback default), and the one Azure credential, the workload identity."""
    catalog = {
        variable.name: file_values.get(variable.name) or variable.default
        for variable in config.VARIABLES
        if variable.scope is config.Scope.POD
        and not variable.secret
        and (file_values.get(variable.name) or variable.default)
    }
    cluster = {"METRICS_BIND_ADDRESS": "0.0.0.0", "AZURE_TOKEN_CREDENTIALS": "WorkloadIdentityCredential"}
    return {"LOG_FORMAT": "json"} | catalog | cluster


@SETTINGS
@given(
    task_queue=NAME_TEXT,
    namespace=NAME_TEXT,
    server_name=ANY_TEXT,
    secret_name=st.from_regex(r"[0-9A-Za-z-]{1,127}", fullmatch=True),  # a name Azure allows for a secret
    codec_host=ANY_TEXT.filter(str.strip),
    api_key=SECRET_TEXT,
    acr_password=SECRET_TEXT,
)
def test_values_arrive_byte_exact_and_add_nothing(
    task_queue: str,
    namespace: str,
    server_name: str,
    secret_name: str,
    codec_host: str,
    api_key: str,
    acr_password: str,
) -> None:
    values = {
        **FIXED,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "TEMPORAL_NAMESPACE": namespace,
        "TEMPORAL_TLS_SERVER_NAME": server_name,
        "KEYVAULT_SECRET_NAME": secret_name,
        "CODEC_SERVER_HOST": codec_host,
        "TEMPORAL_API_KEY": api_key,
        "ACR_USERNAME": "testregistry",
        "ACR_PASSWORD": acr_password,
    }
    with tempfile.TemporaryDirectory() as directory:
        project = Project(Path(directory) / "project")
        project.write_config(values)
        file_values = dotenv_values(project.root / "config.env", interpolate=False)
        assert file_values == values, "the test wrote config.env as python-dotenv reads it"

        result = project.run("generate-k8s-manifests.sh")
        assert result.returncode == 0, result.output

        for name in ("config-map.yaml", "app-secret.yaml", "acr-secret.yaml", "keda-scaledobject.yaml"):
            assert parse_with_kubectl(project.root / name) == parse_with_pyyaml(project.root / name), name

        [config_map] = project.manifest("config-map.yaml")
        assert config_map["data"] == expected_config_map(file_values)
        assert set(config_map) == {"apiVersion", "kind", "metadata", "data"}

        [api_key_secret] = project.manifest("app-secret.yaml")
        assert secret_values(api_key_secret) == {"TEMPORAL_API_KEY": api_key}

        [pull_secret] = project.manifest("acr-secret.yaml")
        docker_config = json.loads(base64.b64decode(pull_secret["data"][".dockerconfigjson"]))
        assert set(pull_secret["data"]) == {".dockerconfigjson"}
        assert docker_config["auths"]["testregistry.azurecr.io"]["password"] == acr_password

        scaled_object = project.manifest("keda-scaledobject.yaml")[-1]
        [trigger] = scaled_object["spec"]["triggers"]
        assert trigger["metadata"] == {
            "endpoint": FIXED["TEMPORAL_ADDRESS"],
            "namespace": namespace,
            "taskQueue": task_queue,
            "queueTypes": "workflow,activity",
            "targetQueueSize": "5",
            "activationTargetQueueSize": "0",
            "tlsServerName": server_name,
        }
        assert set(trigger["metadata"]) == TRIGGER_KEYS | {"tlsServerName"}
