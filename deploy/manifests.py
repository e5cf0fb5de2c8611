"""The worker's Kubernetes manifests, rendered from the configuration (deploy/plan.py renders them for the scripts).

Public API:
    render(settings) -> dict[file name, list of documents]   # from deploy_config.DeploySettings
    write(manifests, directory) -> list[Path]                  # files of features that are off are removed
    render_into(settings, directory) -> list[str]              # render, write, and the lines that say what
    FILES, CONFIGURATION_FILES, SECRET_FILES                   # the files, in the order to apply them
    lifecycle_policy(settings) -> dict | None                  # payload-storage-lifecycle.json (not for kubectl)
    switched_off(settings, manifests) -> list[Prune]           # what kubectl deletes: objects of features now off
    CUSTOM_RESOURCES                                           # the resources among those that CRDs define

Every manifest is built as data and written by `deploy.yaml_text.to_yaml`, the only place a value becomes
YAML, so no value can change a document's structure, whatever it holds.

Where each variable goes follows from its declaration in the catalog (`deploy_config.VARIABLES`): a POD
variable goes into the ConfigMap, or into the app Secret when it is secret, and the container gets both with `envFrom`;
LOCAL, TEST and DEPLOY variables stay out of the cluster. CODEC_SERVER variables go only into the deployed codec
server's own ConfigMap and Secret (with CODEC_SERVER_DEPLOY=true), with the POD variables it reads too
(`Variable.codec_server`).

With CODEC_SERVER_DEPLOY=true it also renders the team's codec server, `codec-server-*.yaml`: its own
ServiceAccount (and workload identity), Secret, ConfigMap, NetworkPolicy (ingress only from the application routing
add-on's namespace), a Deployment of the same image running `./start.sh codec-server` probed on /healthz, a
PodDisruptionBudget, a Service and, with CODEC_SERVER_INGRESS_HOST, an HTTPS Ingress whose certificate the add-on
reads from Key Vault. Its objects carry `app.kubernetes.io/component=codec-server`, so switched_off deletes them
apart from the worker's. `codec_server_deployment_name(settings)` names its Deployment for the scripts.

Secrets are read here, from config.env and the environment, and written only into Secret files (mode 0600,
gitignored); never onto a command line.
Temporal credentials kept in Key Vault (TEMPORAL_API_KEY_KEYVAULT_SECRET, ..._KEYVAULT_CERTIFICATE) are in
no Secret: the pod reads them with its workload identity, and KEDA's TriggerAuthentication with `azureKeyVault`.

With WORKER_VERSIONING=true, `deployment.yaml` holds this image tag's own Deployment, `<APP_NAME>-<tag>`,
whose pods run as that version of the Temporal Worker Deployment (TEMPORAL_DEPLOYMENT_NAME and
TEMPORAL_WORKER_BUILD_ID in the container's env, the labels the temporal-worker-controller uses), and
KEDA's ScaledObject scales that version alone. Applying it leaves the Deployments of older versions running
for their pinned workflows; the ConfigMap, the Secrets and the PodDisruptionBudget are shared by all.

With payload storage (PAYLOAD_STORAGE_ACCOUNT_URL) and PAYLOAD_STORAGE_RETENTION_DAYS, it also writes
`payload-storage-lifecycle.json`: an Azure Storage lifecycle-management policy (for `az storage account
management-policy create --policy @payload-storage-lifecycle.json`, which deploy.sh prints) that deletes the
payload blobs that many days after they were written. Blobs outlive the histories that reference them, and
the storage account cannot know the namespace's retention: the days are the user's to choose.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deploy.alerts import RULE_GROUPS
from deploy.deploy_config import (
    METADATA_ADDRESS,
    METRICS_FROM_AMA,
    NEVER_ALLOWED,
    WIRESERVER_ADDRESS,
    DeploySettings,
)
from deploy.yaml_text import to_yaml

# Every file, in the order to apply them: identity and configuration before the Deployment that uses them,
# the Deployment before what targets it. The namespace is applied by its own step.
FILES = (
    "namespace.yaml",
    "service-account.yaml",
    "acr-secret.yaml",
    "app-secret.yaml",
    "temporal-tls-secret.yaml",
    "config-map.yaml",
    "network-policy.yaml",
    "deployment.yaml",
    "pod-disruption-budget.yaml",
    "keda-scaledobject.yaml",
    "pod-monitor.yaml",
    "prometheus-rules.yaml",
    # The codec server (CODEC_SERVER_DEPLOY=true), after the worker: its identity and configuration first.
    "codec-server-service-account.yaml",
    "codec-server-secret.yaml",
    "codec-server-config-map.yaml",
    "codec-server-network-policy.yaml",
    "codec-server-deployment.yaml",
    "codec-server-pod-disruption-budget.yaml",
    "codec-server-service.yaml",
    "codec-server-ingress.yaml",
)
SECRET_FILES = frozenset({"acr-secret.yaml", "app-secret.yaml", "temporal-tls-secret.yaml", "codec-server-secret.yaml"})
CONFIGURATION_FILES = (
    "acr-secret.yaml",
    "app-secret.yaml",
    "temporal-tls-secret.yaml",
    "config-map.yaml",
    "codec-server-secret.yaml",
    "codec-server-config-map.yaml",
)
# The worker's own configuration: what its pods' checksum covers (a codec server change never rolls the workers).
WORKER_CONFIGURATION_FILES = ("acr-secret.yaml", "app-secret.yaml", "temporal-tls-secret.yaml", "config-map.yaml")
LIFECYCLE_POLICY_FILE = "payload-storage-lifecycle.json"
HEADER = "# Rendered by generate-k8s-manifests.sh from config.env and the environment: change those, not this file.\n"

CONTAINER_NAME = "worker"
RUN_AS = 10001  # the Dockerfile's numeric user and group
TLS_MOUNT_DIR = "/etc/temporal-tls"
TLS_FILES = {
    "TEMPORAL_TLS_CLIENT_CERT_PATH": "client.crt",
    "TEMPORAL_TLS_CLIENT_KEY_PATH": "client.key",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "server-ca.crt",
}
GRACE_MARGIN_SECONDS = 15
# What the pod pins azure-identity's DefaultAzureCredential to (AZURE_TOKEN_CREDENTIALS), by how it gets its identity.
WORKLOAD_IDENTITY_CREDENTIAL = "WorkloadIdentityCredential"
NODE_IDENTITY_CREDENTIAL = "ManagedIdentityCredential"
# Where Prometheus reaches the metrics in the pod: every interface (METRICS_BIND_ADDRESS on a laptop is loopback).
POD_METRICS_BIND_ADDRESS = "0.0.0.0"
# The NetworkPolicy's address ranges (IPv4). The instance metadata service (169.254.169.254, with the node's
# identity behind it) is link-local; 168.63.129.16 is Azure's host endpoint (WireServer), which pods never need.
NEVER_REACHED = ("169.254.0.0/16", WIRESERVER_ADDRESS)
PRIVATE_RANGES = ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16")
ANYWHERE = "0.0.0.0/0"
# The cluster's DNS, the only place the pods may send DNS queries to (port 53): CoreDNS, whose pods in kube-system
# carry k8s-app=kube-dns on AKS as upstream, and the node-local DNS proxies pods are pointed at instead when the
# node pool runs one: AKS LocalDNS listens on 169.254.10.10 (VnetDNS) and 169.254.10.11 (KubeDNS)
# (learn.microsoft.com/azure/aks/localdns-custom), NodeLocal DNSCache on 169.254.20.10
# (kubernetes.io/docs/tasks/administer-cluster/nodelocaldns). Each is a single address, so no other
# link-local address (the metadata service) opens with them.
DNS_PORT = 53
KUBE_DNS_LABELS = {"k8s-app": "kube-dns"}
CLUSTER_DNS_ADDRESSES = ("169.254.10.10", "169.254.10.11", "169.254.20.10")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
# Azure Monitor managed Prometheus: the add-on's ReplicaSet pods (ama-metrics, in kube-system) run the custom
# scrape jobs (PodMonitor, pod annotations); its per-node DaemonSet scrapes only the default targets.
AMA_METRICS_LABELS = {"rsName": "ama-metrics"}
HTTPS_PORT = 443
CHECKSUM_ANNOTATION = "temporal-aks/config-checksum"
# In the cluster the logs go to Container Insights, which stores a JSON line's fields as columns.
CLUSTER_LOG_FORMAT = "json"
# METRICS_SCRAPE -> the PodMonitor's API group: Azure Monitor managed Prometheus reads its own copy of the CRD.
POD_MONITOR_API_VERSIONS = {
    "podmonitor": "azmonitoring.coreos.com/v1",
    "prometheus-operator": "monitoring.coreos.com/v1",
}
SCRAPE_INTERVAL = "30s"

# The label every object of the app carries: APP_NAME.
INSTANCE_LABEL = "app.kubernetes.io/instance"
# Which part of the app an object belongs to: worker or codec-server.
COMPONENT_LABEL = "app.kubernetes.io/component"
# Worker Versioning: the temporal-worker-controller's label for a version's Deployment and pods.
BUILD_ID_LABEL = "temporal.io/build-id"

Document = dict[str, Any]

# Every object rendered here carries this label (with INSTANCE_LABEL): deletions select by both, so that only
# objects this deploy made (generate-k8s-manifests.sh, then and now) are ever deleted.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "generate-k8s-manifests.sh"


# ---------------------------------------------------------------- manifests


class _Names:
    """The objects' names, all derived from APP_NAME."""

    def __init__(self, app_name: str) -> None:
        self.app = app_name
        self.config_map = f"{app_name}-config"
        self.app_secret = f"{app_name}-secrets"
        self.tls_secret = f"{app_name}-temporal-tls"
        self.pull_secret = f"{app_name}-acr-pull"
        self.trigger_authentication = f"{app_name}-temporal"


def render(settings: DeploySettings) -> dict[str, list[Document]]:
    """Every manifest the configuration asks for, by file name, in the order of FILES."""
    names = _Names(settings.app_name)
    labels = _labels(settings)
    rendered: dict[str, list[Document]] = {"namespace.yaml": [_namespace(settings)]}
    if settings.azure_client_id:
        rendered["service-account.yaml"] = [_service_account(settings, names, labels)]
    if settings.acr_username:
        rendered["acr-secret.yaml"] = [_pull_secret(settings, names, labels)]
    rendered["app-secret.yaml"] = [_app_secret(settings, names, labels)]
    rendered["temporal-tls-secret.yaml"] = [_tls_secret(settings, names, labels)]
    rendered["config-map.yaml"] = [_config_map(settings, names, labels)]
    if settings.network_policy.enabled:
        rendered["network-policy.yaml"] = [_network_policy(settings, names, labels)]
    checksum = _checksum({name: rendered[name] for name in WORKER_CONFIGURATION_FILES if name in rendered})
    rendered["deployment.yaml"] = [_deployment(settings, names, labels, checksum)]
    rendered["pod-disruption-budget.yaml"] = [_pod_disruption_budget(settings, names, labels)]
    if settings.keda.enabled:
        rendered["keda-scaledobject.yaml"] = _keda(settings, names, labels)
    if settings.metrics_scrape in POD_MONITOR_API_VERSIONS and settings.app.metrics_port:
        rendered["pod-monitor.yaml"] = [_pod_monitor(settings, names, labels)]
    if settings.metrics_scrape == "prometheus-operator":
        rendered["prometheus-rules.yaml"] = [_prometheus_rule(settings, names, labels)]
    if settings.codec_server.enabled:
        rendered |= _codec_server(settings)
    return {name: rendered[name] for name in FILES if name in rendered}


def _labels(settings: DeploySettings) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": settings.app_name,
        INSTANCE_LABEL: settings.app_name,
        "app.kubernetes.io/version": settings.image_tag,
        COMPONENT_LABEL: "worker",
        "app.kubernetes.io/part-of": "temporal-aks",
        MANAGED_BY_LABEL: MANAGED_BY,
    }


def _selector(settings: DeploySettings) -> dict[str, str]:
    return {"app.kubernetes.io/name": settings.app_name, INSTANCE_LABEL: settings.app_name}


def pod_selector(settings: DeploySettings) -> str:
    """The label selector of every pod and Deployment of the app, every version's (kubectl --selector)."""
    return f"{INSTANCE_LABEL}={settings.app_name}"


def _version_labels(settings: DeploySettings) -> dict[str, str]:
    """With versioning, the label that tells one version's Deployment, pods and ScaledObject from the others'."""
    return {BUILD_ID_LABEL: settings.rollout.build_id} if settings.rollout.versioning else {}


def _version_env(settings: DeploySettings) -> list[Document]:
    """The variables that make the worker a version of the Worker Deployment (worker.py reads them)."""
    rollout = settings.rollout
    if not rollout.versioning:
        return []
    return [
        {"name": "TEMPORAL_DEPLOYMENT_NAME", "value": rollout.worker_deployment_name},
        {"name": "TEMPORAL_WORKER_BUILD_ID", "value": rollout.build_id},
    ]


def _metadata(settings: DeploySettings, name: str, labels: dict[str, str]) -> Document:
    return {"name": name, "namespace": settings.namespace, "labels": labels}


def _namespace(settings: DeploySettings) -> Document:
    """Applied idempotently; enforces the Pod Security Standards "restricted" profile."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }


def _service_account(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> Document:
    metadata = _metadata(settings, names.app, labels)
    metadata["annotations"] = {"azure.workload.identity/client-id": settings.azure_client_id}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata, "automountServiceAccountToken": False}


def _secret(settings: DeploySettings, name: str, labels: dict[str, str], data: Mapping[str, bytes]) -> Document:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(settings, name, labels),
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode("ascii") for key, value in data.items()},
    }


def _app_secret(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> Document:
    """Every secret POD variable with a value; the container gets them all as environment variables."""
    data = {name: value.encode() for name, value in settings.pod_variables(secret=True).items()}
    return _secret(settings, names.app_secret, labels, data)


def _tls_secret(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> Document:
    """The mTLS files, mounted read-only at TLS_MOUNT_DIR (empty when no TLS file is configured)."""
    data = {}
    for variable, file_name in TLS_FILES.items():
        if settings.values[variable]:
            data[file_name] = Path(settings.values[variable]).read_bytes()
    return _secret(settings, names.tls_secret, labels, data)


def _pull_secret(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> Document:
    values = settings.values
    username, password = values["ACR_USERNAME"], values["ACR_PASSWORD"]
    entry = {
        "username": username,
        "password": password,
        "auth": base64.b64encode(f"{username}:{password}".encode()).decode(),
    }
    if values["ACR_EMAIL"]:
        entry["email"] = values["ACR_EMAIL"]
    docker_config = json.dumps({"auths": {settings.image.split("/", 1)[0]: entry}}, ensure_ascii=False)
    secret = _secret(settings, names.pull_secret, labels, {".dockerconfigjson": docker_config.encode()})
    secret["type"] = "kubernetes.io/dockerconfigjson"
    return secret


def _config_map(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> Document:
    """Every non-secret POD variable with a value; TLS files are where the pod has them mounted, and the
    logs are JSON unless LOG_FORMAT says otherwise."""
    data = settings.pod_variables(secret=False)
    data.setdefault("LOG_FORMAT", CLUSTER_LOG_FORMAT)
    for variable, file_name in TLS_FILES.items():
        if variable in data:
            data[variable] = f"{TLS_MOUNT_DIR}/{file_name}"
    if ipaddress.ip_address(settings.app.metrics_bind_address).is_loopback:
        data["METRICS_BIND_ADDRESS"] = POD_METRICS_BIND_ADDRESS
    # The one credential DefaultAzureCredential may use in the pod: never a fallback to another identity.
    if settings.azure_client_id:
        data["AZURE_TOKEN_CREDENTIALS"] = WORKLOAD_IDENTITY_CREDENTIAL
    elif settings.use_node_identity:
        data["AZURE_TOKEN_CREDENTIALS"] = NODE_IDENTITY_CREDENTIAL
    metadata = _metadata(settings, names.config_map, labels)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _network_policy(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> Document:
    """Egress for the worker's pods: the cluster's DNS, Temporal, HTTPS to public addresses (Key Vault, Entra ID),
    and the ranges in NETWORK_POLICY_EGRESS_CIDRS; never the instance metadata address unless USE_NODE_IDENTITY=true.
    Ingress: only the metrics scraper (NETWORK_POLICY_METRICS_FROM) to the metrics port.

    A NetworkPolicy cannot name hosts, so destinations are ports and address ranges: DNS (53) only to the
    cluster's DNS (kube-dns pods, and the node-local DNS addresses of AKS's LocalDNS and of NodeLocal DNSCache:
    CLUSTER_DNS_ADDRESSES), Temporal's port to any address but link-local ones (and to pods in any namespace,
    for a Temporal running in the cluster), and HTTPS to any address but private and link-local ones.
    The kubelet's probes come from the pod's own node, which a NetworkPolicy never blocks, so the health port
    needs no rule. A cluster without a network policy engine ignores the object.
    """
    temporal_port = int(settings.app.temporal.address.rpartition(":")[2])
    temporal = {
        "to": [{"namespaceSelector": {}}, _ip_block(ANYWHERE, NEVER_REACHED)],
        "ports": [{"protocol": "TCP", "port": temporal_port}],
    }
    ingress: list[Document] = []
    scrapers = [_metrics_source(source) for source in settings.network_policy.metrics_from]
    if settings.app.metrics_port and scrapers:
        ingress.append({"from": scrapers, "ports": [{"protocol": "TCP", "port": settings.app.metrics_port}]})
    return _policy(
        _metadata(settings, names.app, labels),
        _selector(settings),
        ingress,
        _egress(settings, [settings.app.encryption.keyvault_url], [temporal], settings.use_node_identity),
    )


def _egress(
    settings: DeploySettings, https_urls: Iterable[str | None], more: list[Document], node_identity: bool
) -> list[Document]:
    """What every pod of ours may reach: the cluster's DNS, then `more`, then HTTPS (443 and the ports of
    `https_urls`) to public addresses, the ranges in NETWORK_POLICY_EGRESS_CIDRS (any port; a range that holds
    the metadata or WireServer address still leaves it out), and the metadata address when `node_identity`."""
    https_ports = {HTTPS_PORT} | {urlsplit(url).port or HTTPS_PORT for url in https_urls if url}
    egress: list[Document] = [
        {
            "to": [_in_kube_system(KUBE_DNS_LABELS)]
            + [_ip_block(f"{address}/32", ()) for address in CLUSTER_DNS_ADDRESSES],
            "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
        },
        *more,
        {
            "to": [_ip_block(ANYWHERE, PRIVATE_RANGES + NEVER_REACHED)],
            "ports": [{"protocol": "TCP", "port": port} for port in sorted(https_ports)],
        },
    ]
    extra = settings.network_policy.egress_cidrs
    if extra:
        egress.append({"to": [_ip_block(cidr, _within(cidr, NEVER_ALLOWED)) for cidr in extra]})
    if node_identity:  # the node's managed identity is reached through the metadata service
        egress.append({"to": [_ip_block(METADATA_ADDRESS, ())], "ports": [{"protocol": "TCP", "port": 80}]})
    return egress


def _policy(metadata: Document, selector: dict[str, str], ingress: list[Document], egress: list[Document]) -> Document:
    """A NetworkPolicy that governs both directions of the selected pods' traffic."""
    spec = {
        "podSelector": {"matchLabels": selector},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": ingress,
        "egress": egress,
    }
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata, "spec": spec}


def _in_namespace(namespace: str) -> Document:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}


def _in_kube_system(pod_labels: Mapping[str, str]) -> Document:
    """The pods with these labels in kube-system (both selectors in one peer: they must match together)."""
    return _in_namespace("kube-system") | {"podSelector": {"matchLabels": dict(pod_labels)}}


def _metrics_source(source: str) -> Document:
    """A NETWORK_POLICY_METRICS_FROM entry as a NetworkPolicy peer: ama-metrics, or namespace:NAME."""
    if source == METRICS_FROM_AMA:
        return _in_kube_system(AMA_METRICS_LABELS)
    return _in_namespace(source.partition(":")[2])


def _ip_block(cidr: str, excepted: Iterable[str]) -> Document:
    block: Document = {"cidr": cidr}
    excepted = list(excepted)
    if excepted:
        block["except"] = excepted
    return {"ipBlock": block}


def _within(cidr: str, ranges: Iterable[str]) -> list[str]:
    """The ranges that lie inside cidr (an ipBlock's `except` must), of the same IP version."""
    network = ipaddress.ip_network(cidr)
    inside = []
    for text in ranges:
        candidate = ipaddress.ip_network(text)
        if candidate.version == network.version and candidate.subnet_of(network) and candidate != network:
            inside.append(text)
    return inside


def _checksum(manifests: Mapping[str, list[Document]]) -> str:
    """Changes whenever a ConfigMap or Secret changes, so that applying them rolls the pods."""
    digest = hashlib.sha256()
    for name, documents in manifests.items():
        digest.update(name.encode() + b"\0" + "---\n".join(map(to_yaml, documents)).encode() + b"\0")
    return digest.hexdigest()


def _restricted_container() -> Document:
    """The container securityContext Pod Security's `restricted` level asks for, with a read-only root: the
    worker's and the codec server's (a new dict each time, so that no manifest shares it with another)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _probe(path: str, period_seconds: int, failures: int) -> Document:
    """An HTTP probe of the worker's own health server (health.py says what /livez and /readyz mean)."""
    return {
        "httpGet": {"path": path, "port": "health"},
        "periodSeconds": period_seconds,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _deployment(settings: DeploySettings, names: _Names, labels: dict[str, str], checksum: str) -> Document:
    app = settings.app
    labels = labels | _version_labels(settings)
    selector = _selector(settings) | _version_labels(settings)
    pod_labels = dict(labels)
    if settings.azure_client_id:
        pod_labels["azure.workload.identity/use"] = "true"
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": topology_key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
        for topology_key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
    container: Document = {
        "name": CONTAINER_NAME,
        "image": settings.image,
        # By digest the image cannot change under its name, so a node's copy is the image; by tag, always ask.
        "imagePullPolicy": "IfNotPresent" if settings.image_digest else "Always",
        "workingDir": "/app",
        "envFrom": [{"configMapRef": {"name": names.config_map}}, {"secretRef": {"name": names.app_secret}}],
    }
    if settings.rollout.versioning:
        container["env"] = _version_env(settings)
    container["ports"] = [{"name": "health", "containerPort": app.health_port, "protocol": "TCP"}]
    if app.metrics_port:
        container["ports"].append({"name": "metrics", "containerPort": app.metrics_port, "protocol": "TCP"})
    container |= {
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
        },
        "securityContext": _restricted_container(),
        # Live: the process answers (up to 2 minutes to start it); ready: polling with a recent round trip
        # to Temporal; restarted only when it stops answering for a minute, never for a Temporal outage.
        "startupProbe": _probe("/livez", 2, 60),
        "readinessProbe": _probe("/readyz", 5, 3),
        "livenessProbe": _probe("/livez", 15, 4),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "temporal-tls", "mountPath": TLS_MOUNT_DIR, "readOnly": True},
        ],
    }
    pod: Document = {}
    if settings.azure_client_id:
        pod["serviceAccountName"] = names.app
    pod |= {
        "automountServiceAccountToken": False,
        # Longer than WORKER_SHUTDOWN_TIMEOUT_SECONDS, so in-flight activities can finish after SIGTERM.
        "terminationGracePeriodSeconds": math.ceil(app.worker_shutdown_timeout_seconds) + GRACE_MARGIN_SECONDS,
    }
    if settings.acr_username:
        pod["imagePullSecrets"] = [{"name": names.pull_secret}]
    pod |= {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "topologySpreadConstraints": spread,
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            # 0440: the mTLS files are readable by the worker's group (fsGroup) only.
            {"name": "temporal-tls", "secret": {"secretName": names.tls_secret, "defaultMode": 0o440}},
        ],
    }
    spec: Document = {}
    if not settings.keda.enabled:  # with KEDA, KEDA owns the replica count: applying this never resets it
        spec["replicas"] = settings.replicas
    annotations = {CHECKSUM_ANNOTATION: checksum}
    if settings.metrics_scrape == "annotations" and app.metrics_port:
        # The convention Prometheus' kubernetes-pods job and Azure Monitor's pod-annotation scraping read.
        annotations |= {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(app.metrics_port),
            "prometheus.io/path": "/metrics",
        }
    spec |= {
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": pod},
    }
    metadata = _metadata(settings, settings.kubernetes_deployment_name, labels)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def _pod_disruption_budget(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> Document:
    """One worker at a time may be evicted (node drains, upgrades); Temporal holds the tasks meanwhile."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(settings, names.app, labels),
        "spec": {
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": _selector(settings)},
        },
    }


def _keda(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> list[Document]:
    """A ScaledObject on the task queue's backlog (KEDA's temporal scaler, KEDA 2.17+), with its credentials:
    from the Secrets, or, for the credentials in Key Vault, from the vault with the workload identity."""
    values, temporal = settings.values, settings.app.temporal
    secret_targets = []
    if temporal.api_key:
        secret_targets.append({"parameter": "apiKey", "name": names.app_secret, "key": "TEMPORAL_API_KEY"})
    vault_secrets = []
    if temporal.api_key_keyvault_secret:
        vault_secrets.append({"parameter": "apiKey", "name": temporal.api_key_keyvault_secret})
    if temporal.tls_client_keyvault_certificate:
        # One PEM holds both: Go's tls.X509KeyPair, which KEDA uses, takes each block it needs from it.
        for parameter in ("cert", "key"):
            vault_secrets.append({"parameter": parameter, "name": temporal.tls_client_keyvault_certificate})
    for parameter, variable in (
        ("cert", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        ("key", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        ("ca", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
    ):
        if values[variable]:
            secret_targets.append({"parameter": parameter, "name": names.tls_secret, "key": TLS_FILES[variable]})
    metadata = {
        "endpoint": temporal.address,
        "namespace": temporal.namespace,
        "taskQueue": settings.app.task_queue,
        "queueTypes": "workflow,activity",
        "targetQueueSize": str(settings.keda.target_queue_size),
        "activationTargetQueueSize": "0",
    }
    if temporal.tls_server_name:
        metadata["tlsServerName"] = temporal.tls_server_name
    if settings.rollout.versioning:  # this version's backlog only (KEDA 2.21+)
        metadata["workerDeploymentName"] = settings.rollout.worker_deployment_name
        metadata["workerDeploymentBuildId"] = settings.rollout.build_id
    trigger: Document = {"type": "temporal", "metadata": metadata}
    documents = []
    needs_credentials = bool(temporal.api_key or temporal.tls_client_cert_path or vault_secrets)
    if needs_credentials:
        trigger["authenticationRef"] = {"name": names.trigger_authentication}
        authentication: Document = {}
        if secret_targets:
            authentication["secretTargetRef"] = secret_targets
        if vault_secrets:
            authentication["azureKeyVault"] = {
                "vaultUri": settings.app.keyvault.url,
                "podIdentity": {"provider": "azure-workload", "identityId": settings.azure_client_id},
                "secrets": vault_secrets,
            }
        documents.append(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "TriggerAuthentication",
                "metadata": _metadata(settings, names.trigger_authentication, labels),
                "spec": authentication,
            }
        )
    documents.append(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": _metadata(settings, settings.kubernetes_deployment_name, labels | _version_labels(settings)),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": settings.kubernetes_deployment_name,
                },
                "minReplicaCount": settings.keda.min_replicas,
                "maxReplicaCount": settings.keda.max_replicas,
                "triggers": [trigger],
            },
        }
    )
    return documents


def _pod_monitor(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> Document:
    """Scrape the worker pods' `metrics` port: for Azure Monitor managed Prometheus (azmonitoring.coreos.com,
    which its ama-metrics add-on watches) or for prometheus-operator (monitoring.coreos.com)."""
    return {
        "apiVersion": POD_MONITOR_API_VERSIONS[settings.metrics_scrape],
        "kind": "PodMonitor",
        "metadata": _metadata(settings, names.app, labels),
        "spec": {
            "selector": {"matchLabels": _selector(settings)},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": SCRAPE_INTERVAL}],
        },
    }


def _prometheus_rule(settings: DeploySettings, names: _Names, labels: dict[str, str]) -> Document:
    """The alert rules of alerts.py for prometheus-operator (whose Prometheus must select this object)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _metadata(settings, names.app, labels),
        "spec": {"groups": RULE_GROUPS},
    }


# ---------------------------------------------------------------- the codec server (CODEC_SERVER_DEPLOY=true)

CODEC_SERVER_COMPONENT = "codec-server"
CODEC_SERVER_FILE_PREFIX = "codec-server-"
CODEC_SERVER_CONTAINER = "codec-server"
# The image's codec server, as start.sh runs it in a container (exec, so Python is PID 1 and gets SIGTERM).
CODEC_SERVER_COMMAND = ["./start.sh", "codec-server"]
# Where the codec server listens in the pod: every interface, so that the Service reaches it.
CODEC_SERVER_POD_HOST = "0.0.0.0"
# Its health route (codec_server.py): answered once the keys are read and the server listens; never guarded.
CODEC_SERVER_HEALTH_PATH = "/healthz"
CODEC_SERVER_SERVICE_PORT = 80
# It stops within about 2 x 1.5 s (codec_server.SHUTDOWN_TIMEOUT_SECONDS); the rest is margin.
CODEC_SERVER_GRACE_SECONDS = 10
# The AKS application routing add-on: its IngressClass, and the namespace its nginx controller pods run in.
APP_ROUTING_INGRESS_CLASS = "webapprouting.kubernetes.azure.com"
APP_ROUTING_NAMESPACE = "app-routing-system"
# The add-on reads the certificate from Key Vault (its Key Vault integration) into the Secret `keyvault-<Ingress>`.
KEYVAULT_CERTIFICATE_ANNOTATION = "kubernetes.azure.com/tls-cert-keyvault-uri"
# The largest body the codec server reads (codec_server.Limits.max_request_bytes, 6 MiB; tests/deploy checks they
# agree): nginx's default of 1 MiB would refuse larger ones before the codec server could say which cap it is.
CODEC_SERVER_MAX_REQUEST_BYTES = 6 * 1024 * 1024
PROXY_BODY_SIZE_ANNOTATION = "nginx.ingress.kubernetes.io/proxy-body-size"


class _CodecServerNames:
    """The codec server's objects' names, all `<APP_NAME>-codec-server...`."""

    def __init__(self, app_name: str) -> None:
        self.app = f"{app_name}-codec-server"
        self.config_map = f"{self.app}-config"
        self.secret = f"{self.app}-secrets"
        self.pull_secret = _Names(app_name).pull_secret


def codec_server_deployment_name(settings: DeploySettings) -> str:
    """The codec server's Deployment ("" when it is not deployed): what the scripts wait for and update."""
    return _CodecServerNames(settings.app_name).app if settings.codec_server.enabled else ""


def _codec_server_selector(settings: DeploySettings) -> dict[str, str]:
    return {"app.kubernetes.io/name": _CodecServerNames(settings.app_name).app, INSTANCE_LABEL: settings.app_name}


def _codec_server_labels(settings: DeploySettings) -> dict[str, str]:
    """The worker's labels with its own name and component: the worker's selectors never match its pods."""
    return _labels(settings) | _codec_server_selector(settings) | {COMPONENT_LABEL: CODEC_SERVER_COMPONENT}


def _codec_server(settings: DeploySettings) -> dict[str, list[Document]]:
    """Every object of the deployed codec server, by file name: its ServiceAccount, Secret, ConfigMap,
    NetworkPolicy (with NETWORK_POLICY), Deployment, PodDisruptionBudget, Service and Ingress (with a host)."""
    names, labels = _CodecServerNames(settings.app_name), _codec_server_labels(settings)
    rendered = {
        "codec-server-service-account.yaml": [_codec_server_service_account(settings, names, labels)],
        "codec-server-secret.yaml": [_codec_server_secret(settings, names, labels)],
        "codec-server-config-map.yaml": [_codec_server_config_map(settings, names, labels)],
    }
    if settings.network_policy.enabled:
        rendered["codec-server-network-policy.yaml"] = [_codec_server_network_policy(settings, names, labels)]
    checksum = _checksum(
        {
            name: documents
            for name, documents in ({"acr-secret.yaml": _pull_secret_or_none(settings)} | rendered).items()
            if name in CONFIGURATION_FILES and documents
        }
    )
    rendered["codec-server-deployment.yaml"] = [_codec_server_deployment(settings, names, labels, checksum)]
    rendered["codec-server-pod-disruption-budget.yaml"] = [_codec_server_pod_disruption_budget(settings, names, labels)]
    rendered["codec-server-service.yaml"] = [_codec_server_service(settings, names, labels)]
    if settings.codec_server.ingress_host:
        rendered["codec-server-ingress.yaml"] = [_codec_server_ingress(settings, names, labels)]
    return rendered


def _pull_secret_or_none(settings: DeploySettings) -> list[Document]:
    """The pull Secret the codec server's pods use too (part of their checksum), when there is one."""
    if not settings.acr_username:
        return []
    return [_pull_secret(settings, _Names(settings.app_name), _labels(settings))]


def _codec_server_service_account(
    settings: DeploySettings, names: _CodecServerNames, labels: dict[str, str]
) -> Document:
    """Its own ServiceAccount, never the namespace's default; with CODEC_SERVER_AZURE_CLIENT_ID its own workload
    identity, which needs only read roles (docs/deploy.md#codec-server)."""
    metadata = _metadata(settings, names.app, labels)
    if settings.codec_server.azure_client_id:
        metadata["annotations"] = {"azure.workload.identity/client-id": settings.codec_server.azure_client_id}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata, "automountServiceAccountToken": False}


def _codec_server_secret(settings: DeploySettings, names: _CodecServerNames, labels: dict[str, str]) -> Document:
    """Every secret variable the codec server reads, with a value (its tokens, a storage connection string)."""
    data = {name: value.encode() for name, value in settings.codec_server_variables(secret=True).items()}
    return _secret(settings, names.secret, labels, data)


def _codec_server_config_map(settings: DeploySettings, names: _CodecServerNames, labels: dict[str, str]) -> Document:
    """Every non-secret variable the codec server reads, with a value; set for the pod: it listens on every
    interface, logs JSON unless LOG_FORMAT says otherwise, and uses its one Azure credential."""
    data = settings.codec_server_variables(secret=False)
    data.setdefault("LOG_FORMAT", CLUSTER_LOG_FORMAT)
    data["CODEC_SERVER_HOST"] = CODEC_SERVER_POD_HOST
    data["CODEC_SERVER_PORT"] = str(settings.app.codec_server.port)
    if settings.codec_server.azure_client_id:
        data["AZURE_TOKEN_CREDENTIALS"] = WORKLOAD_IDENTITY_CREDENTIAL
    elif settings.use_node_identity:
        data["AZURE_TOKEN_CREDENTIALS"] = NODE_IDENTITY_CREDENTIAL
    metadata = _metadata(settings, names.config_map, labels)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _codec_server_network_policy(
    settings: DeploySettings, names: _CodecServerNames, labels: dict[str, str]
) -> Document:
    """Ingress: only the application routing add-on's controller pods (namespace app-routing-system) to the codec
    server's port; the kubelet's probes come from the node, which a NetworkPolicy never blocks. Egress: the
    cluster's DNS, HTTPS (443, and the ports of KEYVAULT_URL and CODEC_SERVER_OIDC_ISSUER) to public addresses (Key
    Vault, Blob Storage, the OIDC issuer's keys) and the ranges in
    NETWORK_POLICY_EGRESS_CIDRS; never the metadata address unless it uses the node's identity. No Temporal: it
    never calls it."""
    ingress = [
        {
            "from": [_in_namespace(APP_ROUTING_NAMESPACE)],
            "ports": [{"protocol": "TCP", "port": settings.app.codec_server.port}],
        }
    ]
    https_urls = [settings.app.encryption.keyvault_url, settings.values["CODEC_SERVER_OIDC_ISSUER"]]
    node_identity = settings.use_node_identity and not settings.codec_server.azure_client_id
    return _policy(
        _metadata(settings, names.app, labels),
        _codec_server_selector(settings),
        ingress,
        _egress(settings, https_urls, [], node_identity),
    )


def _codec_server_probe(period_seconds: int, failures: int) -> Document:
    return {
        "httpGet": {"path": CODEC_SERVER_HEALTH_PATH, "port": "http"},
        "periodSeconds": period_seconds,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _codec_server_deployment(
    settings: DeploySettings, names: _CodecServerNames, labels: dict[str, str], checksum: str
) -> Document:
    """The image's codec server (`./start.sh codec-server`), CODEC_SERVER_REPLICAS pods spread over zones and
    nodes, as hardened as the worker's (Pod Security restricted, read-only root, its numeric user)."""
    deployed, app = settings.codec_server, settings.app
    selector = _codec_server_selector(settings)
    pod_labels = dict(labels)
    if deployed.azure_client_id:
        pod_labels["azure.workload.identity/use"] = "true"
    # It listens only once the key is read from Key Vault (KEYVAULT_STARTUP_TIMEOUT_SECONDS at most), so the
    # startup probe waits that long and a minute more.
    startup_seconds = (app.encryption.startup_timeout_seconds or 0) + 60
    container: Document = {
        "name": CODEC_SERVER_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent" if settings.image_digest else "Always",
        "workingDir": "/app",
        "command": list(CODEC_SERVER_COMMAND),
        "envFrom": [{"configMapRef": {"name": names.config_map}}, {"secretRef": {"name": names.secret}}],
        "ports": [{"name": "http", "containerPort": app.codec_server.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": deployed.cpu_request, "memory": deployed.memory_request},
            "limits": {"cpu": deployed.cpu_limit, "memory": deployed.memory_limit},
        },
        "securityContext": _restricted_container(),
        # Started: listening, which it does only with its keys; ready and live: it still answers.
        "startupProbe": _codec_server_probe(2, math.ceil(startup_seconds / 2)),
        "readinessProbe": _codec_server_probe(5, 2),
        "livenessProbe": _codec_server_probe(15, 4),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod: Document = {
        "serviceAccountName": names.app,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": CODEC_SERVER_GRACE_SECONDS,
    }
    if settings.acr_username:
        pod["imagePullSecrets"] = [{"name": names.pull_secret}]
    pod |= {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": topology_key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector},
            }
            for topology_key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
        ],
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
    }
    spec = {
        "replicas": deployed.replicas,
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": pod_labels, "annotations": {CHECKSUM_ANNOTATION: checksum}}, "spec": pod},
    }
    metadata = _metadata(settings, names.app, labels)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def _codec_server_pod_disruption_budget(
    settings: DeploySettings, names: _CodecServerNames, labels: dict[str, str]
) -> Document:
    """One codec server at a time may be evicted: with two, the Web UI keeps one through a node drain."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(settings, names.app, labels),
        "spec": {
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": _codec_server_selector(settings)},
        },
    }


def _codec_server_service(settings: DeploySettings, names: _CodecServerNames, labels: dict[str, str]) -> Document:
    """A ClusterIP Service on port 80 (plain HTTP inside the cluster; TLS ends at the Ingress)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(settings, names.app, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": _codec_server_selector(settings),
            "ports": [{"name": "http", "port": CODEC_SERVER_SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _codec_server_ingress(settings: DeploySettings, names: _CodecServerNames, labels: dict[str, str]) -> Document:
    """HTTPS on CODEC_SERVER_INGRESS_HOST through the AKS application routing add-on, with the certificate its Key
    Vault integration reads from CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI into the Secret `keyvault-<name>`."""
    host = settings.codec_server.ingress_host
    metadata = _metadata(settings, names.app, labels)
    metadata["annotations"] = {
        KEYVAULT_CERTIFICATE_ANNOTATION: settings.codec_server.tls_certificate_uri,
        PROXY_BODY_SIZE_ANNOTATION: f"{CODEC_SERVER_MAX_REQUEST_BYTES // (1024 * 1024)}m",
    }
    backend = {"service": {"name": names.app, "port": {"name": "http"}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": {
            "ingressClassName": APP_ROUTING_INGRESS_CLASS,
            "tls": [{"hosts": [host], "secretName": f"keyvault-{names.app}"}],
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}],
        },
    }


# The codec server's kinds, in the order kubectl deletes them when it is switched off: the pods first.
CODEC_SERVER_RESOURCES = (
    ("Deployment", "apps", "deployments.apps"),
    ("Ingress", "networking.k8s.io", "ingresses.networking.k8s.io"),
    ("Service", "", "services"),
    ("PodDisruptionBudget", "policy", "poddisruptionbudgets.policy"),
    ("NetworkPolicy", "networking.k8s.io", "networkpolicies.networking.k8s.io"),
    ("ConfigMap", "", "configmaps"),
    ("Secret", "", "secrets"),
    ("ServiceAccount", "", "serviceaccounts"),
)


def _codec_server_switched_off(
    settings: DeploySettings, manifests: Mapping[str, list[Document]], ours: str
) -> list[Prune]:
    """The codec server's objects this configuration does not render: every kind when CODEC_SERVER_DEPLOY is off,
    else the Ingress without CODEC_SERVER_INGRESS_HOST and the NetworkPolicy with NETWORK_POLICY=false."""
    rendered = {
        (document["kind"], document["apiVersion"].rpartition("/")[0])
        for name, documents in manifests.items()
        if name.startswith(CODEC_SERVER_FILE_PREFIX)
        for document in documents
    }
    gone = tuple(resource for kind, group, resource in CODEC_SERVER_RESOURCES if (kind, group) not in rendered)
    if not gone:
        return []
    return [Prune(gone, f"{ours},{COMPONENT_LABEL}={CODEC_SERVER_COMPONENT}")]


# ---------------------------------------------------------------- switched-off features


@dataclass(frozen=True)
class _Prunable:
    kind: str
    group: str
    resource: str  # kubectl's name for it, as `kubectl api-resources --output name` prints it
    custom: bool  # defined by a CRD, which the cluster may not have
    shared_by_versions: bool  # with WORKER_VERSIONING, older versions' pods or ScaledObjects use it


# The kinds whose objects a feature switched off leaves behind. Not here: the Namespace, the ConfigMap and the
# PodDisruptionBudget (always rendered, one name), and Deployments (older versions' go with ./patch.sh --clean-up).
PRUNABLE = (
    _Prunable("ServiceAccount", "", "serviceaccounts", custom=False, shared_by_versions=True),
    _Prunable("Secret", "", "secrets", custom=False, shared_by_versions=True),
    _Prunable("NetworkPolicy", "networking.k8s.io", "networkpolicies.networking.k8s.io", False, False),
    _Prunable("TriggerAuthentication", "keda.sh", "triggerauthentications.keda.sh", True, True),
    _Prunable("ScaledObject", "keda.sh", "scaledobjects.keda.sh", custom=True, shared_by_versions=False),
    _Prunable("PodMonitor", "azmonitoring.coreos.com", "podmonitors.azmonitoring.coreos.com", True, False),
    _Prunable("PodMonitor", "monitoring.coreos.com", "podmonitors.monitoring.coreos.com", True, False),
    _Prunable("PrometheusRule", "monitoring.coreos.com", "prometheusrules.monitoring.coreos.com", True, False),
)
CUSTOM_RESOURCES = tuple(prunable.resource for prunable in PRUNABLE if prunable.custom)


@dataclass(frozen=True)
class Prune:
    """One `kubectl delete RESOURCES --selector SELECTOR [--field-selector FIELDS] --ignore-not-found`."""

    resources: tuple[str, ...]
    selector: str
    fields: str = ""

    def line(self) -> str:
        """RESOURCE,RESOURCE...<TAB>SELECTOR<TAB>FIELDS: how the scripts read it (PLAN_PRUNE; FIELDS may be empty)."""
        return f"{','.join(self.resources)}\t{self.selector}\t{self.fields}"


def switched_off(settings: DeploySettings, manifests: Mapping[str, list[Document]]) -> list[Prune]:
    """What to delete after applying `manifests` so that no object of a feature that is off keeps running:
    every object of a kind in PRUNABLE that this configuration renders none of (KEDA off: its ScaledObject and
    TriggerAuthentication; no AZURE_CLIENT_ID: the ServiceAccount; ...), and every Secret of the app but the
    ones rendered (the pull secret without ACR_USERNAME, the `<APP_NAME>-temporal-api-key` of older releases).
    The codec server's objects (labelled COMPONENT_LABEL=codec-server) are left out of those and go by
    `_codec_server_switched_off`: all of them when CODEC_SERVER_DEPLOY is off, its Ingress without a host.

    Only objects that carry the app's labels (INSTANCE_LABEL=APP_NAME, MANAGED_BY_LABEL=MANAGED_BY) are
    selected. With WORKER_VERSIONING, what older versions still use stays (ServiceAccount, Secrets,
    TriggerAuthentication: their pods and ScaledObjects name them), and only this version's ScaledObject goes
    when KEDA is off; older versions' go with their Deployments (./patch.sh --clean-up). Without versioning, a
    ScaledObject of a version (labelled with BUILD_ID_LABEL) is left to --clean-up as well.
    """
    versioning = settings.rollout.versioning
    ours = f"{INSTANCE_LABEL}={settings.app_name},{MANAGED_BY_LABEL}={MANAGED_BY}"
    selector = f"{ours},{COMPONENT_LABEL}!={CODEC_SERVER_COMPONENT}"
    rendered: dict[tuple[str, str], list[str]] = {}
    for name, documents in manifests.items():
        if name.startswith(CODEC_SERVER_FILE_PREFIX):
            continue
        for document in documents:
            group = document["apiVersion"].rpartition("/")[0]
            rendered.setdefault((document["kind"], group), []).append(document["metadata"]["name"])
    scaled_objects, whole_kinds, secrets = [], [], []
    for prunable in PRUNABLE:
        names = rendered.get((prunable.kind, prunable.group), [])
        if versioning and prunable.shared_by_versions:
            continue
        if prunable.kind == "Secret":
            fields = ",".join(f"metadata.name!={name}" for name in names)
            secrets.append(Prune((prunable.resource,), selector, fields))
        elif names:
            continue
        elif prunable.kind == "ScaledObject":
            version = f"{BUILD_ID_LABEL}={settings.rollout.build_id}" if versioning else f"!{BUILD_ID_LABEL}"
            scaled_objects.append(Prune((prunable.resource,), f"{selector},{version}"))
        else:
            whole_kinds.append(prunable.resource)
    # A ScaledObject goes before the TriggerAuthentication it names.
    worker = scaled_objects + ([Prune(tuple(whole_kinds), selector)] if whole_kinds else []) + secrets
    return worker + _codec_server_switched_off(settings, manifests, ours)


# ---------------------------------------------------------------- files


def write(manifests: Mapping[str, list[Document]], directory: Path) -> list[Path]:
    """Replace every manifest in `directory` at once: files of features now off are removed, Secret files
    are private (0600) from the moment they exist, the others world-readable like any source file."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (directory / name).unlink(missing_ok=True)
    written = []
    for name, documents in manifests.items():
        path = directory / name
        _write_private(path, HEADER + "---\n".join(map(to_yaml, documents)))
        if name not in SECRET_FILES:
            path.chmod(0o644)
        written.append(path)
    return written


def _write_private(path: Path, content: str) -> None:
    """Write through a 0600 temporary file in the same directory, then rename: never a partial or open file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def lifecycle_policy(settings: DeploySettings) -> Document | None:
    """The lifecycle-management policy deleting payload blobs N days after creation, or None without one."""
    storage = settings.app.payload_storage
    days = settings.payload_storage_retention_days
    if not storage.enabled or days is None:
        return None
    rule = {
        "enabled": True,
        "name": f"{settings.app_name}-payloads-expire",
        "type": "Lifecycle",
        "definition": {
            "actions": {"baseBlob": {"delete": {"daysAfterCreationGreaterThan": days}}},
            "filters": {"blobTypes": ["blockBlob"], "prefixMatch": [f"{storage.container}/v0/"]},
        },
    }
    return {"rules": [rule]}


def write_lifecycle_policy(settings: DeploySettings, directory: Path) -> list[Path]:
    """Write payload-storage-lifecycle.json when there is a policy, else remove an old one."""
    path = directory / LIFECYCLE_POLICY_FILE
    policy = lifecycle_policy(settings)
    if policy is None:
        path.unlink(missing_ok=True)
        return []
    _write_private(path, json.dumps(policy, indent=2) + "\n")
    path.chmod(0o644)
    return [path]


def render_into(settings: DeploySettings, directory: Path) -> list[str]:
    """Write every manifest (and the lifecycle policy) into `directory`; the lines that report what was written."""
    written = write(render(settings), directory)
    written += write_lifecycle_policy(settings, directory)
    report = [f"Rendered manifests for {settings.image} in namespace {settings.namespace}:"]
    report += [f"  {path}" for path in written]
    report += [f"  {line}" for line in credential_sources(settings)]
    return report


def credential_sources(settings: DeploySettings) -> list[str]:
    """Where the pods (and KEDA) get the Temporal credentials: a Secret, or Key Vault and no Secret."""
    temporal, names = settings.app.temporal, _Names(settings.app_name)
    vault = f"in {settings.app.keyvault.url}, read by the pods and KEDA with the workload identity"
    lines = []
    if temporal.api_key_keyvault_secret:
        lines.append(
            f"Temporal API key: Key Vault secret {temporal.api_key_keyvault_secret} {vault}; "
            "no Kubernetes Secret holds it"
        )
    elif temporal.api_key:
        lines.append(f"Temporal API key: in the Secret {names.app_secret} (a new key: ./patch.sh --config-only)")
    if temporal.tls_client_keyvault_certificate:
        lines.append(
            f"Temporal client certificate: Key Vault certificate {temporal.tls_client_keyvault_certificate} {vault}; "
            "no Kubernetes Secret holds its key"
        )
    elif temporal.tls_client_cert_path:
        lines.append(f"Temporal client certificate: in the Secret {names.tls_secret}")
    return lines
