"""generate-k8s-manifests.sh with the real kubectl: every manifest valid for a current Kubernetes,
KEDA's and Prometheus' objects valid for their schemas, a hardened Deployment probed over HTTP, Secrets
only in 0600 gitignored files, and no secret anywhere else."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

import config
from deploy import manifests

from helpers.deploy_harness import (
    API_KEY_CANARY,
    CLIENT_ID,
    CODEC_SERVER_FILES,
    FULL_CONFIG,
    MINIMAL_CONFIG,
    REPO,
    Project,
    contains_canary,
    parse_with_kubectl,
    parse_with_pyyaml,
    secret_values,
)
from helpers.manifest_checks import KEDA, KUBERNETES_VERSION, check_temporal_trigger, crd_schema, keda_schema

SECRET_FILES = {"acr-secret.yaml", "app-secret.yaml", "temporal-tls-secret.yaml", "codec-server-secret.yaml"}
ALWAYS = {
    "namespace.yaml",
    "app-secret.yaml",
    "temporal-tls-secret.yaml",
    "config-map.yaml",
    "network-policy.yaml",
    "deployment.yaml",
    "pod-disruption-budget.yaml",
}
ALL_FILES = ALWAYS | {"acr-secret.yaml", "service-account.yaml", "keda-scaledobject.yaml"}
CRD_FILES = {"keda-scaledobject.yaml", "pod-monitor.yaml", "prometheus-rules.yaml"}
RENDERABLE_FILES = ALL_FILES | CRD_FILES | CODEC_SERVER_FILES
SCRAPE_ANNOTATIONS = {"prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"}


def render(project: Project, values: dict[str, str], *arguments: str) -> None:
    project.write_config(values)
    result = project.run("generate-k8s-manifests.sh", *arguments)
    assert result.returncode == 0, result.output
    assert contains_canary(result.output) == []


def rendered_files(directory: Path) -> set[str]:
    return {path.name for path in directory.glob("*.yaml")}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """mTLS settings pointing at (fake) PEM files."""
    paths = {}
    for name, variable in [
        ("client.pem", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        ("client.key", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        ("ca.pem", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
    ]:
        path = tmp_path / name
        path.write_text(f"-----BEGIN {name}-----\n")
        paths[variable] = str(path)
    return paths


def test_a_minimal_configuration_renders_the_core_manifests(project: Project) -> None:
    render(project, MINIMAL_CONFIG)
    assert rendered_files(project.root) == ALWAYS
    deployment = project.manifest("deployment.yaml")[0]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert "imagePullSecrets" not in pod, "without ACR credentials the cluster pulls through --attach-acr"
    assert "serviceAccountName" not in pod
    assert "azure.workload.identity/use" not in deployment["spec"]["template"]["metadata"]["labels"]
    assert [secret_values(document) for document in project.manifest("app-secret.yaml")] == [{}]
    [namespace] = project.manifest("namespace.yaml")
    assert namespace["metadata"] == {
        "name": "temporal-workers",
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
    }


def test_every_feature_renders_its_manifest(project: Project, tls_files: dict[str, str]) -> None:
    render(project, {**FULL_CONFIG, **tls_files})
    assert rendered_files(project.root) == ALL_FILES


VARIANTS = {
    "minimal": MINIMAL_CONFIG,
    "full": {**FULL_CONFIG, "NETWORK_POLICY_EGRESS_CIDRS": "10.20.0.0/16,0.0.0.0/0"},
    "versioned": {**FULL_CONFIG, "WORKER_VERSIONING": "true"},
    "no-network-policy": {**MINIMAL_CONFIG, "NETWORK_POLICY": "false"},
    "metrics-from-namespaces": {
        **MINIMAL_CONFIG,
        "NETWORK_POLICY_METRICS_FROM": "ama-metrics,namespace:monitoring",
    },
    "metrics-from-none": {**MINIMAL_CONFIG, "NETWORK_POLICY_METRICS_FROM": "none"},
    "node-identity": {
        **MINIMAL_CONFIG,
        "KEYVAULT_URL": "https://my-vault.vault.azure.net:8443/",
        "KEYVAULT_SECRET_NAME": "key",
        "USE_NODE_IDENTITY": "true",
    },
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_is_valid_for_kubernetes(project: Project, tls_files: dict[str, str], variant: str) -> None:
    render(project, {**VARIANTS[variant], **(tls_files if variant in ("full", "versioned") else {})})
    assert ("network-policy.yaml" in rendered_files(project.root)) == (variant != "no-network-policy")
    for name in sorted(rendered_files(project.root) - {"keda-scaledobject.yaml"}):
        for document in parse_with_pyyaml(project.root / name):
            # Raises ValidationError (naming the field) unless the document is valid; strict: no unknown fields.
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_keda_objects_match_kedas_schema_and_temporal_scaler(project: Project, tls_files: dict[str, str]) -> None:
    render(project, {**FULL_CONFIG, **tls_files, "TEMPORAL_TLS_SERVER_NAME": "ns.acct.tmprl.cloud"})
    documents = {document["kind"]: document for document in project.manifest("keda-scaledobject.yaml")}
    assert set(documents) == {"TriggerAuthentication", "ScaledObject"}
    for kind, document in documents.items():
        jsonschema.validate(document, keda_schema(kind))

    scaled_object = documents["ScaledObject"]["spec"]
    assert scaled_object["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "temporal-worker"}
    assert (scaled_object["minReplicaCount"], scaled_object["maxReplicaCount"]) == (1, 10)
    [trigger] = scaled_object["triggers"]
    check_temporal_trigger(trigger)
    assert trigger["metadata"] == {
        "endpoint": "ns.acct.tmprl.cloud:7233",
        "namespace": "ns.acct",
        "taskQueue": config.DEFAULTS["TEMPORAL_TASK_QUEUE"],
        "queueTypes": "workflow,activity",
        "targetQueueSize": "5",
        "activationTargetQueueSize": "0",
        "tlsServerName": "ns.acct.tmprl.cloud",
    }
    assert trigger["authenticationRef"] == {"name": documents["TriggerAuthentication"]["metadata"]["name"]}


def test_keda_authenticates_with_keys_that_exist_in_the_rendered_secrets(
    project: Project, tls_files: dict[str, str]
) -> None:
    render(project, {**FULL_CONFIG, **tls_files})
    spec = json.loads((KEDA / "temporal-trigger.json").read_text())
    secrets = {
        document["metadata"]["name"]: document
        for name in ("app-secret.yaml", "temporal-tls-secret.yaml")
        for document in project.manifest(name)
    }
    [authentication] = [d for d in project.manifest("keda-scaledobject.yaml") if d["kind"] == "TriggerAuthentication"]
    references = authentication["spec"]["secretTargetRef"]
    assert {reference["parameter"] for reference in references} == {"apiKey", "cert", "key", "ca"}
    assert {reference["parameter"] for reference in references} <= set(spec["authentication_parameters"])
    for reference in references:
        assert reference["key"] in secrets[reference["name"]]["data"]


def test_keda_without_credentials_needs_no_trigger_authentication(project: Project) -> None:
    render(project, {**MINIMAL_CONFIG, "KEDA_ENABLED": "true", "KEDA_MIN_REPLICAS": "0"})
    [scaled_object] = project.manifest("keda-scaledobject.yaml")
    jsonschema.validate(scaled_object, keda_schema("ScaledObject"))
    assert "authenticationRef" not in scaled_object["spec"]["triggers"][0]
    assert scaled_object["spec"]["minReplicaCount"] == 0
    assert "replicas" not in project.manifest("deployment.yaml")[0]["spec"], "KEDA owns the replica count"


@pytest.mark.parametrize("versioning", ["false", "true"], ids=["unversioned", "versioned"])
def test_the_deployment_is_hardened_and_probed(project: Project, versioning: str) -> None:
    settings = {"WORKER_SHUTDOWN_TIMEOUT_SECONDS": "42.5", "METRICS_PORT": "9100", "WORKER_VERSIONING": versioning}
    render(project, {**FULL_CONFIG, **settings})
    deployment = project.manifest("deployment.yaml")[0]
    template = deployment["spec"]["template"]
    pod = template["spec"]
    [container] = pod["containers"]

    for labels in (deployment["metadata"]["labels"], template["metadata"]["labels"]):
        assert labels["app.kubernetes.io/name"] == "temporal-worker"
        assert labels["app.kubernetes.io/version"] == FULL_CONFIG["IMAGE_TAG"]
        assert {"app.kubernetes.io/instance", "app.kubernetes.io/component", "app.kubernetes.io/part-of"} <= set(labels)
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]

    probes = {probe: container[probe]["httpGet"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {
        "startupProbe": {"path": "/livez", "port": "health"},
        "readinessProbe": {"path": "/readyz", "port": "health"},
        "livenessProbe": {"path": "/livez", "port": "health"},
    }, "ready means polling; live means answering, so a Temporal outage never restarts the pod"
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60, "a minute without an answer, not less"
    assert container["workingDir"] == "/app"
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 120
    assert container["ports"] == [
        {"name": "health", "containerPort": 9001, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"},
    ]
    assert pod["terminationGracePeriodSeconds"] == 43 + 15

    assert container["resources"] == {
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert {constraint["topologyKey"] for constraint in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert container["image"] == f"testregistry.azurecr.io/temporal-worker:{FULL_CONFIG['IMAGE_TAG']}"
    assert container["imagePullPolicy"] == "Always", "a tag can be pushed again: a node's copy may be stale"
    assert pod["automountServiceAccountToken"] is False


def test_metrics_port_zero_leaves_the_port_and_the_scrape_annotations_out(project: Project) -> None:
    render(project, {**MINIMAL_CONFIG, "METRICS_PORT": "0", "HEALTH_PORT": "8088"})
    template = project.manifest("deployment.yaml")[0]["spec"]["template"]
    [container] = template["spec"]["containers"]
    assert container["ports"] == [{"name": "health", "containerPort": 8088, "protocol": "TCP"}]
    assert not SCRAPE_ANNOTATIONS & set(template["metadata"]["annotations"])


@pytest.mark.parametrize("scrape", ["none", "annotations", "podmonitor", "prometheus-operator"])
def test_each_way_of_scraping_renders_valid_objects(project: Project, scrape: str) -> None:
    render(project, {**MINIMAL_CONFIG, "METRICS_SCRAPE": scrape, "METRICS_PORT": "9100"})
    for name in sorted(rendered_files(project.root) - CRD_FILES):
        for document in parse_with_pyyaml(project.root / name):
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    for name in sorted(rendered_files(project.root) & CRD_FILES):
        for document in parse_with_pyyaml(project.root / name):
            jsonschema.validate(document, crd_schema(document["apiVersion"], document["kind"]))
        assert parse_with_kubectl(project.root / name) == parse_with_pyyaml(project.root / name)

    deployment = project.manifest("deployment.yaml")[0]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    monitors = project.manifest("pod-monitor.yaml") if (project.root / "pod-monitor.yaml").exists() else []
    if scrape == "annotations":
        assert {key: annotations[key] for key in SCRAPE_ANNOTATIONS} == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9100",
            "prometheus.io/path": "/metrics",
        }
    else:
        assert not SCRAPE_ANNOTATIONS & set(annotations)
    if scrape in ("podmonitor", "prometheus-operator"):
        [monitor] = monitors
        group = "azmonitoring.coreos.com" if scrape == "podmonitor" else "monitoring.coreos.com"
        assert monitor["apiVersion"] == f"{group}/v1"
        assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), "it selects the worker pods"
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert {"name": endpoint["port"], "containerPort": 9100, "protocol": "TCP"} in container["ports"]
        assert endpoint["path"] == "/metrics"
    else:
        assert monitors == []
    rules = project.root / "prometheus-rules.yaml"
    assert rules.exists() == (scrape == "prometheus-operator"), "the operator evaluates PrometheusRules; Azure does not"


def test_the_prometheus_rule_holds_the_alert_rules_file(project: Project) -> None:
    render(project, {**MINIMAL_CONFIG, "METRICS_SCRAPE": "prometheus-operator"})
    [rule] = project.manifest("prometheus-rules.yaml")
    rules_file = yaml.safe_load((REPO / "monitoring" / "temporal-worker-alerts.yaml").read_text())
    assert rule["spec"] == rules_file
    assert rule["metadata"]["labels"]["app.kubernetes.io/name"] == "temporal-worker"


def test_log_format_is_json_in_the_cluster_unless_set(project: Project) -> None:
    render(project, MINIMAL_CONFIG)
    assert project.manifest("config-map.yaml")[0]["data"]["LOG_FORMAT"] == "json"
    render(project, {**MINIMAL_CONFIG, "LOG_FORMAT": "text"})
    assert project.manifest("config-map.yaml")[0]["data"]["LOG_FORMAT"] == "text"


def test_the_pod_gets_its_settings_and_identity(project: Project) -> None:
    render(project, FULL_CONFIG)
    deployment = project.manifest("deployment.yaml")[0]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["envFrom"] == [
        {"configMapRef": {"name": "temporal-worker-config"}},
        {"secretRef": {"name": "temporal-worker-secrets"}},
    ]
    assert pod["imagePullSecrets"] == [{"name": "temporal-worker-acr-pull"}]
    assert pod["serviceAccountName"] == "temporal-worker"
    assert deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    [service_account] = project.manifest("service-account.yaml")
    assert service_account["metadata"]["name"] == "temporal-worker"
    assert service_account["metadata"]["annotations"] == {"azure.workload.identity/client-id": CLIENT_ID}


def test_the_config_map_holds_every_non_secret_app_setting_and_nothing_else(project: Project) -> None:
    render(project, {**FULL_CONFIG, "KEYVAULT_CA_FILE": str(REPO / "config.py")})
    [config_map] = project.manifest("config-map.yaml")
    expected = {
        variable.name: variable.default
        for variable in config.VARIABLES
        if variable.default and variable.scope is config.Scope.POD and not variable.secret
    }
    assert "KEYVAULT_VERIFY_CHALLENGE_RESOURCE" not in expected and "APP_NAME" not in expected
    expected.update(
        TEMPORAL_ADDRESS=FULL_CONFIG["TEMPORAL_ADDRESS"],
        TEMPORAL_NAMESPACE=FULL_CONFIG["TEMPORAL_NAMESPACE"],
        METRICS_BIND_ADDRESS="0.0.0.0",  # the pod's: Prometheus scrapes it (loopback is the laptop's default)
        AZURE_TOKEN_CREDENTIALS="WorkloadIdentityCredential",  # with AZURE_CLIENT_ID: that identity, nothing else
    )
    expected["LOG_FORMAT"] = "json"  # the cluster's default (manifests.CLUSTER_LOG_FORMAT)
    assert config_map["data"] == expected
    assert [secret_values(d) for d in project.manifest("app-secret.yaml")] == [{"TEMPORAL_API_KEY": API_KEY_CANARY}]


def test_the_pull_secret_is_a_docker_config_for_the_registry(project: Project) -> None:
    render(project, {**FULL_CONFIG, "ACR_EMAIL": "ops@example.com"})
    [secret] = project.manifest("acr-secret.yaml")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    docker_config = json.loads(secret_values(secret)[".dockerconfigjson"])
    entry = docker_config["auths"]["testregistry.azurecr.io"]
    assert entry["username"] == "testregistry" and entry["password"] == FULL_CONFIG["ACR_PASSWORD"]
    assert entry["email"] == "ops@example.com"


def test_mtls_files_are_mounted_from_a_secret_and_the_config_map_points_there(
    project: Project, tls_files: dict[str, str]
) -> None:
    render(project, {**MINIMAL_CONFIG, **tls_files})
    [secret] = project.manifest("temporal-tls-secret.yaml")
    assert secret_values(secret) == {
        "client.crt": "-----BEGIN client.pem-----\n",
        "client.key": "-----BEGIN client.key-----\n",
        "server-ca.crt": "-----BEGIN ca.pem-----\n",
    }
    data = project.manifest("config-map.yaml")[0]["data"]
    assert data["TEMPORAL_TLS_CLIENT_CERT_PATH"] == "/etc/temporal-tls/client.crt"
    assert data["TEMPORAL_TLS_CLIENT_KEY_PATH"] == "/etc/temporal-tls/client.key"
    assert data["TEMPORAL_TLS_SERVER_CA_CERT_PATH"] == "/etc/temporal-tls/server-ca.crt"
    pod = project.manifest("deployment.yaml")[0]["spec"]["template"]["spec"]
    assert {"name": "temporal-tls", "mountPath": "/etc/temporal-tls", "readOnly": True} in pod["containers"][0][
        "volumeMounts"
    ]
    [volume] = [volume for volume in pod["volumes"] if volume["name"] == "temporal-tls"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert pod["securityContext"]["fsGroup"] == 10001, "the group may read the mounted key"


def test_secret_files_are_private_and_gitignored_and_secrets_appear_nowhere_else(
    project: Project, tls_files: dict[str, str]
) -> None:
    render(project, {**FULL_CONFIG, **tls_files})
    for name in rendered_files(project.root):
        mode = stat.S_IMODE((project.root / name).stat().st_mode)
        if name in SECRET_FILES:
            assert mode == 0o600, name
        else:
            assert mode == 0o644, name
            assert contains_canary((project.root / name).read_text(encoding="utf-8")) == [], name
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", *sorted(RENDERABLE_FILES)],
        capture_output=True,
        text=True,
    )
    assert RENDERABLE_FILES == set(manifests.FILES), "every file manifests.py can write is gitignored"
    assert set(ignored.stdout.split()) == RENDERABLE_FILES
    argv = [call["argv"] for call in project.calls()]
    assert contains_canary(json.dumps(argv, ensure_ascii=False)) == []


def test_turning_a_feature_off_removes_its_stale_manifest_and_empties_its_secret(project: Project) -> None:
    render(project, FULL_CONFIG)
    assert {"acr-secret.yaml", "keda-scaledobject.yaml"} <= rendered_files(project.root)
    render(project, MINIMAL_CONFIG)
    assert rendered_files(project.root) == ALWAYS
    assert [secret_values(document) for document in project.manifest("app-secret.yaml")] == [{}]


def test_output_dir_leaves_the_script_directory_alone(project: Project, tmp_path: Path) -> None:
    target = tmp_path / "rendered"
    render(project, MINIMAL_CONFIG, "--output-dir", str(target))
    assert rendered_files(target) == ALWAYS
    assert rendered_files(project.root) == set()


def test_a_config_change_changes_the_pod_template_so_pods_roll(project: Project) -> None:
    def checksum() -> str:
        annotations = project.manifest("deployment.yaml")[0]["spec"]["template"]["metadata"]["annotations"]
        return annotations["temporal-aks/config-checksum"]

    render(project, FULL_CONFIG)
    first = checksum()
    render(project, FULL_CONFIG)
    assert checksum() == first, "rendering is deterministic"
    render(project, {**FULL_CONFIG, "LOG_LEVEL": "DEBUG"})
    assert checksum() != first
    render(project, {**FULL_CONFIG, "TEMPORAL_API_KEY": "rotated"})
    assert checksum() != first


def test_metrics_listen_on_every_interface_in_the_pod_unless_told_another_address(project: Project) -> None:
    assert config.DEFAULTS["METRICS_BIND_ADDRESS"] == "127.0.0.1", "on a laptop, loopback only"
    render(project, MINIMAL_CONFIG)
    assert project.manifest("config-map.yaml")[0]["data"]["METRICS_BIND_ADDRESS"] == "0.0.0.0"
    render(project, {**MINIMAL_CONFIG, "METRICS_BIND_ADDRESS": "::"})
    assert project.manifest("config-map.yaml")[0]["data"]["METRICS_BIND_ADDRESS"] == "::"


def test_key_vault_without_a_workload_identity_is_a_render_error_naming_both_variables(project: Project) -> None:
    """Without AZURE_CLIENT_ID the pod's DefaultAzureCredential would fall back to the node's managed identity."""
    vault = {"KEYVAULT_URL": "https://my-vault.vault.azure.net/", "KEYVAULT_SECRET_NAME": "key"}
    project.write_config({**MINIMAL_CONFIG, **vault})
    before = project.files()
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2
    [problem] = [line for line in result.stderr.splitlines() if "KEYVAULT_URL" in line]
    assert "AZURE_CLIENT_ID" in problem and "USE_NODE_IDENTITY=true" in problem
    assert project.files() == before, "nothing was rendered"
    local = project.run("bash", "source_config.sh", "--check", "local")
    assert local.returncode == 0, "on a laptop the identity is az login's: only the cluster needs AZURE_CLIENT_ID"

    render(project, {**MINIMAL_CONFIG, **vault, "AZURE_CLIENT_ID": CLIENT_ID})
    assert project.manifest("config-map.yaml")[0]["data"]["AZURE_TOKEN_CREDENTIALS"] == "WorkloadIdentityCredential"
    [policy] = project.manifest("network-policy.yaml")
    assert "169.254.169.254/32" not in json.dumps(allowed_blocks(policy)), "the metadata address stays closed"


def test_the_node_identity_is_an_explicit_opt_out(project: Project) -> None:
    vault = {"KEYVAULT_URL": "https://my-vault.vault.azure.net/", "KEYVAULT_SECRET_NAME": "key"}
    render(project, {**MINIMAL_CONFIG, **vault, "USE_NODE_IDENTITY": "true"})
    assert project.manifest("config-map.yaml")[0]["data"]["AZURE_TOKEN_CREDENTIALS"] == "ManagedIdentityCredential"
    assert "service-account.yaml" not in rendered_files(project.root)
    [policy] = project.manifest("network-policy.yaml")
    assert {"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}], "ports": [{"protocol": "TCP", "port": 80}]} in (
        policy["spec"]["egress"]
    ), "the node's identity is reached through the instance metadata service"

    project.write_config({**MINIMAL_CONFIG, **vault, "USE_NODE_IDENTITY": "true", "AZURE_CLIENT_ID": CLIENT_ID})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2
    assert "AZURE_CLIENT_ID and USE_NODE_IDENTITY=true both choose" in result.stderr


def allowed_blocks(policy: dict) -> list[dict]:
    """Every ipBlock the policy allows, with the ports of its rule (None: every port)."""
    return [
        {**peer["ipBlock"], "ports": rule.get("ports")}
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]


def test_the_network_policy_allows_dns_temporal_and_https_and_never_the_metadata_address(project: Project) -> None:
    render(project, {**FULL_CONFIG, "TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7234"})
    [policy] = project.manifest("network-policy.yaml")
    spec = policy["spec"]
    [deployment] = project.manifest("deployment.yaml")
    assert spec["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    dns, temporal, https = spec["egress"]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert temporal["ports"] == [{"protocol": "TCP", "port": 7234}]
    assert {"namespaceSelector": {}} in temporal["to"], "a Temporal server in the cluster is reachable"
    assert https["ports"] == [{"protocol": "TCP", "port": 443}]
    for rule in (temporal, https):
        [block] = [peer["ipBlock"] for peer in rule["to"] if "ipBlock" in peer]
        assert block["cidr"] == "0.0.0.0/0"
        assert {"169.254.0.0/16", "168.63.129.16/32"} <= set(block["except"]), "metadata and WireServer excepted"
    [https_block] = [peer["ipBlock"] for peer in https["to"]]
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(https_block["except"]), "HTTPS: public only"


def test_extra_egress_ranges_are_allowed_on_every_port_but_never_open_the_metadata_address(project: Project) -> None:
    render(project, {**MINIMAL_CONFIG, "NETWORK_POLICY_EGRESS_CIDRS": " 10.20.0.0/16, 0.0.0.0/0 ,169.254.20.10/32"})
    [policy] = project.manifest("network-policy.yaml")
    extra = [block for block in allowed_blocks(policy) if block["ports"] is None]
    assert extra == [
        {"cidr": "10.20.0.0/16", "ports": None},
        {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32", "168.63.129.16/32"], "ports": None},
        {"cidr": "169.254.20.10/32", "ports": None},
    ]
    project.write_config({**MINIMAL_CONFIG, "NETWORK_POLICY_EGRESS_CIDRS": "169.254.169.254/32"})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2 and "instance metadata service" in result.stderr


def test_a_private_key_vault_endpoint_is_warned_about(project: Project) -> None:
    vault = {"KEYVAULT_URL": "https://my-vault.privatelink.vaultcore.azure.net/", "KEYVAULT_SECRET_NAME": "key"}
    project.write_config({**MINIMAL_CONFIG, **vault, "AZURE_CLIENT_ID": CLIENT_ID})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    assert "looks like a private endpoint" in result.stderr and "NETWORK_POLICY_EGRESS_CIDRS" in result.stderr


def test_an_image_pinned_by_digest_is_pulled_only_when_missing(project: Project) -> None:
    image = f"testregistry.azurecr.io/temporal-worker:{FULL_CONFIG['IMAGE_TAG']}@sha256:{'ab' * 32}"
    render(project, {**MINIMAL_CONFIG, "IMAGE_TAG": "", "APP_IMAGE": image})
    [deployment] = project.manifest("deployment.yaml")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["imagePullPolicy"]) == (image, "IfNotPresent")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == FULL_CONFIG["IMAGE_TAG"]


def test_parsers_agree_on_every_manifest(project: Project, tls_files: dict[str, str]) -> None:
    render(project, {**FULL_CONFIG, **tls_files})
    for name in rendered_files(project.root):
        assert parse_with_kubectl(project.root / name) == parse_with_pyyaml(project.root / name), name


KUBE_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
AMA_METRICS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"rsName": "ama-metrics"}},
}


def test_dns_goes_only_to_the_clusters_dns(project: Project) -> None:
    """Port 53 is no path out: only kube-dns in kube-system and the node-local DNS addresses AKS points pods at."""
    render(project, FULL_CONFIG)
    [policy] = project.manifest("network-policy.yaml")
    dns_rules = [
        rule for rule in policy["spec"]["egress"] if any(port.get("port") == 53 for port in rule.get("ports", []))
    ]
    assert dns_rules, "DNS is allowed"
    for rule in policy["spec"]["egress"]:
        assert rule.get("to"), f"a rule without `to` opens its ports to every address: {rule}"
    [dns] = dns_rules
    assert dns["to"] == [
        KUBE_DNS,
        {"ipBlock": {"cidr": "169.254.10.10/32"}},
        {"ipBlock": {"cidr": "169.254.10.11/32"}},
        {"ipBlock": {"cidr": "169.254.20.10/32"}},
    ]


def test_ingress_admits_only_the_metrics_scraper_to_the_metrics_port(project: Project) -> None:
    render(project, FULL_CONFIG)
    [policy] = project.manifest("network-policy.yaml")
    assert "Ingress" in policy["spec"]["policyTypes"], "ingress is restricted"
    assert policy["spec"]["ingress"] == [{"from": [AMA_METRICS], "ports": [{"protocol": "TCP", "port": 9000}]}]

    render(project, {**FULL_CONFIG, "NETWORK_POLICY_METRICS_FROM": "ama-metrics, namespace:monitoring"})
    [policy] = project.manifest("network-policy.yaml")
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert policy["spec"]["ingress"] == [
        {"from": [AMA_METRICS, monitoring], "ports": [{"protocol": "TCP", "port": 9000}]}
    ]

    for values in ({"NETWORK_POLICY_METRICS_FROM": "none"}, {"METRICS_PORT": "0", "METRICS_SCRAPE": "none"}):
        render(project, {**FULL_CONFIG, **values})
        [policy] = project.manifest("network-policy.yaml")
        assert "Ingress" in policy["spec"]["policyTypes"] and policy["spec"]["ingress"] == [], values


@pytest.mark.parametrize("value", ["everyone", "namespace:", "namespace:Bad_Name", "none,ama-metrics", "0.0.0.0/0"])
def test_a_bad_metrics_source_is_a_configuration_error_naming_the_variable(project: Project, value: str) -> None:
    project.write_config({**MINIMAL_CONFIG, "NETWORK_POLICY_METRICS_FROM": value})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2
    assert "NETWORK_POLICY_METRICS_FROM" in result.stderr and "namespace:NAME" in result.stderr


def test_prometheus_operator_behind_the_default_scraper_is_warned_about(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "METRICS_SCRAPE": "prometheus-operator"})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    assert "add your Prometheus' namespace to NETWORK_POLICY_METRICS_FROM" in result.stderr
    values = {"METRICS_SCRAPE": "prometheus-operator", "NETWORK_POLICY_METRICS_FROM": "namespace:monitoring"}
    project.write_config({**MINIMAL_CONFIG, **values})
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0 and "NETWORK_POLICY_METRICS_FROM" not in result.stderr, result.output
