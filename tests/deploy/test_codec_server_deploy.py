"""The codec server deployed for the team (CODEC_SERVER_DEPLOY=true): nothing of it when it is off; when on, its own
objects, valid for Kubernetes (strict), hardened and probed, reachable only through the application routing add-on;
its variables in its own ConfigMap and Secret and never in the worker's; a configuration that would deploy it open,
useless or unreachable refused with exit 2; and the scripts (apply, roll out, patch, dry run, switching it off)
cover it like the worker. Against generate-k8s-manifests.sh, deploy.sh and patch.sh with the recording stubs."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

import codec_server
import config
from deploy import deploy_config, manifests

from helpers.deploy_harness import (
    CODEC_SERVER_FILES,
    CODEC_TOKEN_CANARY,
    CONTEXT,
    FULL_CONFIG,
    MINIMAL_CONFIG,
    Project,
    contains_canary,
    parse_with_pyyaml,
    secret_values,
)
from helpers.manifest_checks import KUBERNETES_VERSION

NS = "temporal-workers"
KUBE = ["kubectl", "--context", CONTEXT, "--namespace", NS]
NAME = "temporal-worker-codec-server"
CODEC_CLIENT_ID = "12345678-8888-7777-6666-555555555555"
CERTIFICATE = "https://my-vault.vault.azure.net/certificates/codec-tls"
HOST = "codec.example.com"
OURS = "app.kubernetes.io/instance=temporal-worker,app.kubernetes.io/managed-by=generate-k8s-manifests.sh"
CODEC_SERVER_SELECTOR = f"{OURS},app.kubernetes.io/component=codec-server"
# The worker of FULL_CONFIG with encryption, and the codec server deployed behind an Ingress.
ENCRYPTED = {**FULL_CONFIG, "KEYVAULT_URL": "https://my-vault.vault.azure.net/", "KEYVAULT_SECRET_NAME": "key"}
CODEC = {
    **ENCRYPTED,
    "CODEC_SERVER_DEPLOY": "true",
    "CODEC_SERVER_AZURE_CLIENT_ID": CODEC_CLIENT_ID,
    "CODEC_SERVER_INGRESS_HOST": HOST,
    "CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI": CERTIFICATE,
    "CODEC_SERVER_CORS_ORIGINS": "https://cloud.temporal.io",
}
# A codec server for payload storage alone, with no Ingress and no identity but the node's.
STORAGE_ONLY = {
    **MINIMAL_CONFIG,
    "PAYLOAD_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net/",
    "USE_NODE_IDENTITY": "true",
    "CODEC_SERVER_DEPLOY": "true",
    "CODEC_SERVER_TOKEN": CODEC_TOKEN_CANARY,
}
# Signed-in users (Entra ID, app roles) instead of a token: what a team deploys.
SIGNED_IN = {
    **CODEC,
    "CODEC_SERVER_TOKEN": "",
    "CODEC_SERVER_OIDC_ISSUER": "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0",
    "CODEC_SERVER_OIDC_AUDIENCE": "api://temporal-codec",
    "CODEC_SERVER_OIDC_CLAIM_FORMAT": "mapped",
    "CODEC_SERVER_OIDC_CLAIM": "roles",
    "CODEC_SERVER_OIDC_ROLE_MAP": "Codec.Reader=*:read,Orders.Writer=orders:write",
}
# The variables only the codec server reads: none may reach the worker's objects.
CODEC_SERVER_ONLY = {variable.name for variable in config.VARIABLES if variable.scope is config.Scope.CODEC_SERVER}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def render(project: Project, values: dict[str, str]) -> str:
    project.write_config(values)
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    assert contains_canary(result.output) == []
    return result.output


def rendered(project: Project) -> set[str]:
    return {path.name for path in project.root.glob("*.yaml")}


def one(project: Project, name: str) -> dict:
    [document] = project.manifest(name)
    return document


def deletes(project: Project) -> list[list[str]]:
    return [command for command in project.commands() if command[: len(KUBE) + 1] == [*KUBE, "delete"]]


# ---------------------------------------------------------------- rendering


def test_off_by_default_nothing_of_it_is_rendered_and_the_worker_never_holds_its_variables(project: Project) -> None:
    everything = {
        **ENCRYPTED,
        "CODEC_SERVER_ENCODE": "true",
        "CODEC_SERVER_ENCODE_TOKEN": "other-" + CODEC_TOKEN_CANARY,
    }
    for values in (everything, {**everything, **CODEC}):
        render(project, values)
        worker_config = one(project, "config-map.yaml")["data"]
        assert not CODEC_SERVER_ONLY & set(worker_config), "the worker's ConfigMap holds no codec server variable"
        assert secret_values(one(project, "app-secret.yaml")) == {"TEMPORAL_API_KEY": FULL_CONFIG["TEMPORAL_API_KEY"]}
    render(project, everything)
    assert not {name for name in rendered(project) if name.startswith("codec-server")}, "off: nothing of it"


@pytest.mark.parametrize(
    "values",
    [
        CODEC,
        STORAGE_ONLY,
        {**CODEC, "NETWORK_POLICY": "false", "CODEC_SERVER_REPLICAS": "3", "WORKER_VERSIONING": "true"},
        {**CODEC, "CODEC_SERVER_PORT": "9443", "NETWORK_POLICY_EGRESS_CIDRS": "10.20.0.0/16"},
        SIGNED_IN,
    ],
    ids=["ingress", "storage-only", "no-network-policy", "other-port", "signed-in"],
)
def test_every_codec_server_object_is_valid_for_kubernetes(project: Project, values: dict[str, str]) -> None:
    render(project, values)
    expected = set(CODEC_SERVER_FILES)
    if not values.get("CODEC_SERVER_INGRESS_HOST"):
        expected.remove("codec-server-ingress.yaml")
    if values.get("NETWORK_POLICY") == "false":
        expected.remove("codec-server-network-policy.yaml")
    assert {name for name in rendered(project) if name.startswith("codec-server")} == expected
    for name in sorted(expected):
        for document in parse_with_pyyaml(project.root / name):
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_deployment_runs_the_images_codec_server_hardened_with_probes_on_its_port(project: Project) -> None:
    render(project, {**CODEC, "CODEC_SERVER_PORT": "9443", "KEYVAULT_STARTUP_TIMEOUT_SECONDS": "90"})
    deployment = one(project, "codec-server-deployment.yaml")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["./start.sh", "codec-server"]
    assert container["workingDir"] == "/app"
    assert container["image"] == one(project, "deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert deployment["spec"]["replicas"] == 2
    assert container["ports"] == [{"name": "http", "containerPort": 9443, "protocol": "TCP"}]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": manifests.RUN_AS,
        "runAsGroup": manifests.RUN_AS,
        "fsGroup": manifests.RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": codec_server.HEALTH_PATH, "port": "http"}, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 90, "it listens only once the key is read"
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "768Mi"},
    }
    assert container["envFrom"] == [
        {"configMapRef": {"name": f"{NAME}-config"}},
        {"secretRef": {"name": f"{NAME}-secrets"}},
    ]
    assert pod["serviceAccountName"] == NAME and pod["automountServiceAccountToken"] is False
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["imagePullSecrets"] == [{"name": "temporal-worker-acr-pull"}]
    service_account = one(project, "codec-server-service-account.yaml")
    assert service_account["metadata"]["annotations"] == {"azure.workload.identity/client-id": CODEC_CLIENT_ID}
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "codec-server"
    assert labels["app.kubernetes.io/instance"] == "temporal-worker"
    assert {"app.kubernetes.io/name", "app.kubernetes.io/version", "app.kubernetes.io/part-of"} <= set(labels)


def test_the_workers_selectors_and_the_codec_servers_never_pick_each_others_pods(project: Project) -> None:
    render(project, {**CODEC, "METRICS_SCRAPE": "podmonitor"})
    worker_pods = one(project, "deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    codec_pods = one(project, "codec-server-deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    worker_selectors = [
        one(project, "deployment.yaml")["spec"]["selector"]["matchLabels"],
        one(project, "pod-disruption-budget.yaml")["spec"]["selector"]["matchLabels"],
        one(project, "network-policy.yaml")["spec"]["podSelector"]["matchLabels"],
        one(project, "pod-monitor.yaml")["spec"]["selector"]["matchLabels"],
    ]
    codec_selectors = [
        one(project, "codec-server-deployment.yaml")["spec"]["selector"]["matchLabels"],
        one(project, "codec-server-pod-disruption-budget.yaml")["spec"]["selector"]["matchLabels"],
        one(project, "codec-server-network-policy.yaml")["spec"]["podSelector"]["matchLabels"],
        one(project, "codec-server-service.yaml")["spec"]["selector"],
    ]
    for selector in worker_selectors:
        assert selector.items() <= worker_pods.items() and not selector.items() <= codec_pods.items()
    for selector in codec_selectors:
        assert selector.items() <= codec_pods.items() and not selector.items() <= worker_pods.items()


def test_its_variables_go_to_its_own_config_map_and_secret_and_secrets_never_to_a_config_map(project: Project) -> None:
    values = {
        **CODEC,
        "CODEC_SERVER_ENCODE": "true",
        "CODEC_SERVER_ENCODE_TOKEN": "encode-" + CODEC_TOKEN_CANARY,
        "PAYLOAD_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
        "EndpointSuffix=core.windows.net",
        "LOG_LEVEL": "DEBUG",
    }
    render(project, values)
    data = one(project, "codec-server-config-map.yaml")["data"]
    assert data["CODEC_SERVER_HOST"] == "0.0.0.0", "it listens on the pod's address, where the Service reaches it"
    assert data["CODEC_SERVER_CORS_ORIGINS"] == "https://cloud.temporal.io"
    assert data["CODEC_SERVER_ENCODE"] == "true"
    assert data["KEYVAULT_URL"] == values["KEYVAULT_URL"] and data["KEYVAULT_SECRET_NAME"] == "key"
    assert data["LOG_LEVEL"] == "DEBUG" and data["LOG_FORMAT"] == "json"
    assert data["AZURE_TOKEN_CREDENTIALS"] == "WorkloadIdentityCredential"
    assert not {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "METRICS_PORT", "WORKER_TUNER"} & set(data), "worker only"
    secret_names = {variable.name for variable in deploy_config.VARIABLES if variable.secret}
    assert not secret_names & set(data)
    assert secret_values(one(project, "codec-server-secret.yaml")) == {
        "CODEC_SERVER_TOKEN": CODEC_TOKEN_CANARY,
        "CODEC_SERVER_ENCODE_TOKEN": values["CODEC_SERVER_ENCODE_TOKEN"],
        "PAYLOAD_STORAGE_CONNECTION_STRING": values["PAYLOAD_STORAGE_CONNECTION_STRING"],
    }
    assert "CODEC_SERVER_TOKEN" not in secret_values(one(project, "app-secret.yaml"))
    for name in rendered(project) - manifests.SECRET_FILES:
        assert contains_canary((project.root / name).read_text(encoding="utf-8")) == [], name
    assert (project.root / "codec-server-secret.yaml").stat().st_mode & 0o777 == 0o600


def test_signed_in_users_need_no_token_and_their_settings_reach_only_the_codec_server(project: Project) -> None:
    render(project, SIGNED_IN)
    data = one(project, "codec-server-config-map.yaml")["data"]
    oidc = {name: value for name, value in SIGNED_IN.items() if name.startswith("CODEC_SERVER_OIDC_")}
    assert oidc.items() <= data.items()
    assert not {name for name in one(project, "config-map.yaml")["data"] if name.startswith("CODEC_SERVER")}
    assert secret_values(one(project, "codec-server-secret.yaml")) == {}, "no static token: everyone signs in"


def test_the_issuers_port_is_open_for_its_keys(project: Project) -> None:
    issuer = "https://login.example.com:8443/tenant/v2.0"
    render(project, {**SIGNED_IN, "CODEC_SERVER_OIDC_ISSUER": issuer})
    spec = one(project, "codec-server-network-policy.yaml")["spec"]
    assert {port["port"] for rule in spec["egress"] for port in rule.get("ports", [])} == {53, 443, 8443}


def test_a_config_change_rolls_the_codec_server_and_not_the_workers(project: Project) -> None:
    def checksums() -> tuple[str, str]:
        return tuple(
            one(project, name)["spec"]["template"]["metadata"]["annotations"]["temporal-aks/config-checksum"]
            for name in ("deployment.yaml", "codec-server-deployment.yaml")
        )

    render(project, CODEC)
    before = checksums()
    render(project, {**CODEC, "CODEC_SERVER_CORS_ORIGINS": "https://temporal.example.com"})
    after = checksums()
    assert after[0] == before[0] and after[1] != before[1]


def test_the_network_policy_admits_only_the_ingress_controller_to_its_port(project: Project) -> None:
    render(project, {**CODEC, "CODEC_SERVER_PORT": "9443"})
    spec = one(project, "codec-server-network-policy.yaml")["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "app-routing-system"}}}],
            "ports": [{"protocol": "TCP", "port": 9443}],
        }
    ]
    egress_ports = {port["port"] for rule in spec["egress"] for port in rule.get("ports", [])}
    assert egress_ports == {53, 443}, "DNS and HTTPS (Key Vault, Blob Storage, the issuer's keys); never Temporal"
    blocks = [peer["ipBlock"] for rule in spec["egress"] for peer in rule["to"] if "ipBlock" in peer]
    for block in blocks:
        if block["cidr"] == "0.0.0.0/0":
            assert {"169.254.0.0/16", "168.63.129.16/32", "10.0.0.0/8"} <= set(block["except"])


def test_the_service_and_the_https_ingress_reach_the_containers_port(project: Project) -> None:
    render(project, CODEC)
    container = one(project, "codec-server-deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    service = one(project, "codec-server-service.yaml")
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in {entry["name"] for entry in container["ports"]}
    ingress = one(project, "codec-server-ingress.yaml")
    assert ingress["spec"]["ingressClassName"] == "webapprouting.kubernetes.azure.com"
    assert ingress["metadata"]["annotations"]["kubernetes.azure.com/tls-cert-keyvault-uri"] == CERTIFICATE
    body_size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(body_size.removesuffix("m")) * 1024 * 1024 == codec_server.Limits().max_request_bytes
    assert ingress["spec"]["tls"] == [{"hosts": [HOST], "secretName": f"keyvault-{NAME}"}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == HOST
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": port["name"]}}
    budget = one(project, "codec-server-pod-disruption-budget.yaml")["spec"]
    assert budget["maxUnavailable"] == 1


def test_the_deploy_sides_copies_of_the_codec_servers_limits_agree_with_it() -> None:
    limits = codec_server.Limits()
    assert deploy_config.CODEC_SERVER_FETCHING_REQUESTS == limits.max_fetching_requests
    assert deploy_config.CODEC_SERVER_MIN_FETCHED_BYTES == limits.max_fetched_bytes
    assert manifests.CODEC_SERVER_MAX_REQUEST_BYTES == limits.max_request_bytes
    assert manifests.CODEC_SERVER_HEALTH_PATH == codec_server.HEALTH_PATH


# ---------------------------------------------------------------- configuration checks


BAD = {
    "nothing-to-decode": (
        {**FULL_CONFIG, "CODEC_SERVER_DEPLOY": "true"},
        ["CODEC_SERVER_DEPLOY=true", "KEYVAULT_URL", "CODEC_SERVER_DEPLOY=false"],
    ),
    "no-sign-in": (
        {**CODEC, "CODEC_SERVER_TOKEN": ""},
        ["CODEC_SERVER_OIDC_ISSUER", "CODEC_SERVER_OIDC_AUDIENCE", "CODEC_SERVER_ALLOW_UNAUTHENTICATED=true"],
    ),
    "issuer-without-audience": (
        {**SIGNED_IN, "CODEC_SERVER_OIDC_AUDIENCE": ""},
        ["CODEC_SERVER_OIDC_ISSUER is set without CODEC_SERVER_OIDC_AUDIENCE"],
    ),
    "host-without-certificate": (
        {**CODEC, "CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI": ""},
        ["CODEC_SERVER_INGRESS_HOST=codec.example.com", "CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI"],
    ),
    "certificate-without-host": (
        {**CODEC, "CODEC_SERVER_INGRESS_HOST": ""},
        ["CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI is set but CODEC_SERVER_INGRESS_HOST"],
    ),
    "no-identity": (
        {**CODEC, "CODEC_SERVER_AZURE_CLIENT_ID": ""},
        ["KEYVAULT_URL but CODEC_SERVER_AZURE_CLIENT_ID is not set", "docs/deploy.md#codec-server"],
    ),
    "not-a-service-name": ({**CODEC, "APP_NAME": "9-lives"}, ["APP_NAME", "starts with a letter"]),
    "too-little-memory": (
        {**STORAGE_ONLY, "CODEC_SERVER_MEMORY_LIMIT": "512Mi"},
        ["CODEC_SERVER_MEMORY_LIMIT=512Mi", "at least 704Mi"],
    ),
    "request-over-limit": (
        {**CODEC, "CODEC_SERVER_CPU_REQUEST": "2"},
        ["CODEC_SERVER_CPU_REQUEST=2 is more than CODEC_SERVER_CPU_LIMIT=1"],
    ),
    "bad-certificate-uri": (
        {**CODEC, "CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI": "https://my-vault.vault.azure.net/secrets/codec-tls"},
        ["CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI=", "certificate's URI"],
    ),
    "bad-host": ({**CODEC, "CODEC_SERVER_INGRESS_HOST": "*.example.com"}, ["CODEC_SERVER_INGRESS_HOST="]),
    "bad-replicas": ({**CODEC, "CODEC_SERVER_REPLICAS": "0"}, ["CODEC_SERVER_REPLICAS="]),
}


@pytest.mark.parametrize("case", BAD)
def test_a_configuration_that_would_deploy_it_badly_exits_2_naming_the_variable_and_the_fix(
    project: Project, case: str
) -> None:
    values, expected = BAD[case]
    project.write_config(values)
    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 2, result.output
    for text in expected:
        assert text in result.stderr, f"{text!r} not in {result.stderr}"
    assert not rendered(project), "nothing is rendered"
    assert contains_canary(result.output) == []


def test_deploying_it_open_is_an_explicit_choice_and_warned_about(project: Project) -> None:
    output = render(project, {**CODEC, "CODEC_SERVER_TOKEN": "", "CODEC_SERVER_ALLOW_UNAUTHENTICATED": "true"})
    assert "CODEC_SERVER_ALLOW_UNAUTHENTICATED=true" in output and "for anyone" in output
    assert secret_values(one(project, "codec-server-secret.yaml")) == {}


def test_an_ingress_with_the_local_dev_uis_origin_is_warned_about(project: Project) -> None:
    output = render(project, {**CODEC, "CODEC_SERVER_CORS_ORIGINS": ""})
    assert "CODEC_SERVER_CORS_ORIGINS" in output and "https://cloud.temporal.io" in output


# ---------------------------------------------------------------- the scripts


def test_deploy_applies_it_waits_for_it_and_prints_its_roles(project: Project) -> None:
    project.write_config({**CODEC, "PAYLOAD_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net/"})
    result = project.run("deploy.sh", STUB_STORAGE_ACCOUNT="/subscriptions/s/acct\trg-storage")
    assert result.returncode == 0, result.output
    commands = project.commands()
    applied = [command[-1].rpartition("/")[2] for command in commands if "apply" in command and "--filename" in command]
    assert CODEC_SERVER_FILES <= set(applied)
    assert applied.index("codec-server-config-map.yaml") < applied.index("codec-server-deployment.yaml")
    assert [*KUBE, "rollout", "status", f"deployment/{NAME}", "--timeout", "5m"] in commands
    assert not [command for command in deletes(project) if CODEC_SERVER_SELECTOR in command], "on: nothing deleted"
    assert f"https://{HOST}" in result.stdout
    assert f"system:serviceaccount:{NS}:{NAME}" in result.stdout
    assert f'--role "Key Vault Secrets User" --assignee {CODEC_CLIENT_ID}' in result.stdout.replace("'", '"')
    reader = "--role 'Storage Blob Data Reader' --assignee " + CODEC_CLIENT_ID
    assert f"{reader} --scope /subscriptions/s/acct/blobServices/default/containers/temporal-payloads" in result.stdout


def test_switching_it_off_deletes_every_object_of_it_and_nothing_of_the_worker(project: Project) -> None:
    project.write_config(CODEC)
    assert project.run("deploy.sh").returncode == 0
    project.write_config(ENCRYPTED)
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    [delete] = [command for command in deletes(project) if CODEC_SERVER_SELECTOR in command]
    resources = delete[len(KUBE) + 1].split(",")
    assert resources[0] == "deployments.apps", "its pods go first"
    assert set(resources) == {
        "deployments.apps",
        "ingresses.networking.k8s.io",
        "services",
        "poddisruptionbudgets.policy",
        "networkpolicies.networking.k8s.io",
        "configmaps",
        "secrets",
        "serviceaccounts",
    }
    assert delete[-3:] == ["--selector", CODEC_SERVER_SELECTOR, "--ignore-not-found"]
    worker = [command for command in deletes(project) if CODEC_SERVER_SELECTOR not in command]
    assert worker, "the worker's switched-off features are deleted as before"
    for command in worker:
        assert "app.kubernetes.io/component!=codec-server" in command[command.index("--selector") + 1]


def test_without_a_host_its_old_ingress_goes(project: Project) -> None:
    project.write_config({**CODEC, "CODEC_SERVER_INGRESS_HOST": "", "CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI": ""})
    result = project.run("patch.sh", "--config-only")
    assert result.returncode == 0, result.output
    [delete] = [command for command in deletes(project) if CODEC_SERVER_SELECTOR in command]
    assert delete[len(KUBE) + 1] == "ingresses.networking.k8s.io"


def test_patch_updates_its_image_and_config_only_restarts_it(project: Project) -> None:
    project.write_config(CODEC)
    result = project.run("patch.sh")
    assert result.returncode == 0, result.output
    commands = project.commands()
    [worker] = [command for command in commands if command[len(KUBE) : len(KUBE) + 2] == ["set", "image"]][:1]
    image = worker[-1].partition("=")[2]
    assert [*KUBE, "set", "image", f"deployment/{NAME}", f"codec-server={image}"] in commands
    assert [*KUBE, "rollout", "status", f"deployment/{NAME}", "--timeout", "5m"] in commands

    result = project.run("patch.sh", "--config-only")
    assert result.returncode == 0, result.output
    commands = project.commands()
    applied = {command[-1].rpartition("/")[2] for command in commands if "apply" in command}
    assert {"codec-server-config-map.yaml", "codec-server-secret.yaml"} <= applied
    assert "codec-server-deployment.yaml" not in applied
    assert [*KUBE, "rollout", "restart", f"deployment/{NAME}"] in commands


def test_a_dry_run_shows_every_codec_server_command_and_runs_none(project: Project) -> None:
    project.write_config(CODEC)
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert project.commands() == []
    for name in sorted(CODEC_SERVER_FILES):
        assert f"/{name}" in result.stdout, name
    assert f"rollout status deployment/{NAME} --timeout 5m" in result.stdout
    project.write_config(ENCRYPTED)
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert project.commands() == []
    assert f"--selector {CODEC_SERVER_SELECTOR} --ignore-not-found" in result.stdout.replace("'", "")
    assert f"deployment/{NAME}" not in result.stdout
