"""The worker's Kubernetes manifests, rendered from the configuration (`./generate-k8s-manifests.sh` runs this).

Public API:
    render(settings) -> dict[file name, list of documents]   # from deploy_config.DeploySettings
    write(manifests, directory) -> list[Path]                  # files of features that are off are removed
    to_yaml(document) -> str                                   # the one YAML writer
    FILES                                                      # every file this renders, in the order to apply

Every manifest is built as data and written by `to_yaml`, the only place a value becomes YAML: every
string is a double-quoted scalar with everything outside printable ASCII escaped, which every YAML
parser (Go's in kubectl and the API server, PyYAML) reads back byte-exact, so no value can change the
document's structure, whatever it holds.

Where each variable goes follows from its declaration in `config.VARIABLES`: a POD variable goes into
the ConfigMap, or into the app Secret when it is secret, and the container gets both with `envFrom`;
LOCAL, TEST and DEPLOY variables stay out of the cluster. Secrets are read here, from config.env and the
environment, and written only into Secret files (mode 0600, gitignored); never onto a command line.

Command line: `python manifests.py [--output-dir DIR]` renders into DIR (default: next to this file);
`python manifests.py --list [configuration|secrets]` prints the file names in the order to apply them (all,
only the configuration: Secrets and ConfigMap, or only the Secrets).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config import ConfigError, exit_with_config_error
from deploy_config import METADATA_ADDRESS, NEVER_ALLOWED, WIRESERVER_ADDRESS, DeploySettings, load_deploy_settings

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
)
SECRET_FILES = frozenset({"acr-secret.yaml", "app-secret.yaml", "temporal-tls-secret.yaml"})
CONFIGURATION_FILES = ("acr-secret.yaml", "app-secret.yaml", "temporal-tls-secret.yaml", "config-map.yaml")
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
HTTPS_PORT = 443
CHECKSUM_ANNOTATION = "temporal-aks/config-checksum"
# Words YAML 1.1 (PyYAML) reads as booleans or null: a key like these is quoted.
_YAML_WORDS = frozenset("y n yes no on off true false null ~".split())
_PLAIN_KEY = re.compile(r"[A-Za-z_.][A-Za-z0-9_./-]*")

Document = dict[str, Any]


# ---------------------------------------------------------------- YAML


def to_yaml(document: Any) -> str:
    """A document as block-style YAML; see yaml_string for how every string is written."""
    return "".join(line + "\n" for line in _block(document, 0))


def yaml_string(value: str) -> str:
    """A double-quoted YAML scalar: printable ASCII as is, everything else escaped.

    Escaping every non-ASCII character (with \\U for those outside the BMP, never surrogate pairs,
    which Go's YAML parser rejects) keeps line-break look-alikes such as U+2028 and U+0085 from
    being folded by a parser.
    """
    parts = []
    for character in value:
        code = ord(character)
        if character in '"\\':
            parts.append("\\" + character)
        elif 0x20 <= code < 0x7F:
            parts.append(character)
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    return '"' + "".join(parts) + '"'


def _block(value: Mapping | list, indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{_key(key)}:")
                lines.extend(_block(item, indent + 2))
            else:
                lines.append(f"{pad}{_key(key)}: {_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, Mapping | list) and item:
                first, *rest = _block(item, indent + 2)
                lines.append(f"{pad}- {first.lstrip()}")
                lines.extend(rest)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS else yaml_string(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return yaml_string(value)
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    raise TypeError(f"no YAML for {type(value).__name__}")


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
    checksum = _checksum({name: rendered[name] for name in CONFIGURATION_FILES if name in rendered})
    rendered["deployment.yaml"] = [_deployment(settings, names, labels, checksum)]
    rendered["pod-disruption-budget.yaml"] = [_pod_disruption_budget(settings, names, labels)]
    if settings.keda.enabled:
        rendered["keda-scaledobject.yaml"] = _keda(settings, names, labels)
    return {name: rendered[name] for name in FILES if name in rendered}


def _labels(settings: DeploySettings) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": settings.app_name,
        "app.kubernetes.io/instance": settings.app_name,
        "app.kubernetes.io/version": settings.image_tag,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "temporal-aks",
        "app.kubernetes.io/managed-by": "generate-k8s-manifests.sh",
    }


def _selector(settings: DeploySettings) -> dict[str, str]:
    return {"app.kubernetes.io/name": settings.app_name, "app.kubernetes.io/instance": settings.app_name}


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
    """Every non-secret POD variable with a value; TLS files are where the pod has them mounted."""
    data = settings.pod_variables(secret=False)
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
    """Egress for the worker's pods: DNS, Temporal, HTTPS to public addresses (Key Vault, Entra ID), and the
    ranges in NETWORK_POLICY_EGRESS_CIDRS; never the instance metadata address unless USE_NODE_IDENTITY=true.

    A NetworkPolicy cannot name hosts, so destinations are ports and address ranges: Temporal's port to any
    address but link-local ones (and to pods in any namespace, for a Temporal running in the cluster), and
    HTTPS to any address but private and link-local ones. Ingress is not restricted (Prometheus scrapes the
    metrics port). A cluster without a network policy engine ignores the object.
    """
    temporal_port = int(settings.app.temporal.address.rpartition(":")[2])
    https_ports = {HTTPS_PORT}
    if settings.app.encryption.keyvault_url:
        https_ports.add(urlsplit(settings.app.encryption.keyvault_url).port or HTTPS_PORT)
    egress: list[Document] = [
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        {
            "to": [{"namespaceSelector": {}}, _ip_block(ANYWHERE, NEVER_REACHED)],
            "ports": [{"protocol": "TCP", "port": temporal_port}],
        },
        {
            "to": [_ip_block(ANYWHERE, PRIVATE_RANGES + NEVER_REACHED)],
            "ports": [{"protocol": "TCP", "port": port} for port in sorted(https_ports)],
        },
    ]
    extra = settings.network_policy.egress_cidrs
    if extra:  # any port; a range that holds the metadata or WireServer address still leaves it out
        egress.append({"to": [_ip_block(cidr, _within(cidr, NEVER_ALLOWED)) for cidr in extra]})
    if settings.use_node_identity:  # the node's managed identity is reached through the metadata service
        egress.append({"to": [_ip_block(METADATA_ADDRESS, ())], "ports": [{"protocol": "TCP", "port": 80}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(settings, names.app, labels),
        "spec": {"podSelector": {"matchLabels": _selector(settings)}, "policyTypes": ["Egress"], "egress": egress},
    }


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


def _probe(period_seconds: int, failures: int) -> Document:
    """Exec probes: the worker keeps WORKER_HEALTH_FILE fresh while it polls; healthcheck.py reads it."""
    return {
        "exec": {"command": ["python", "healthcheck.py"]},
        "periodSeconds": period_seconds,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _deployment(settings: DeploySettings, names: _Names, labels: dict[str, str], checksum: str) -> Document:
    app = settings.app
    pod_labels = dict(labels)
    if settings.azure_client_id:
        pod_labels["azure.workload.identity/use"] = "true"
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": topology_key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": _selector(settings)},
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
    if app.metrics_port:
        container["ports"] = [{"name": "metrics", "containerPort": app.metrics_port, "protocol": "TCP"}]
    container |= {
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "startupProbe": _probe(5, 60),
        "readinessProbe": _probe(10, 3),
        "livenessProbe": _probe(15, 4),
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
    spec |= {
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": _selector(settings)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": pod_labels, "annotations": {CHECKSUM_ANNOTATION: checksum}},
            "spec": pod,
        },
    }
    metadata = _metadata(settings, names.app, labels)
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
    """A ScaledObject on the task queue's backlog (KEDA's temporal scaler, KEDA 2.17+), with its credentials."""
    values, temporal = settings.values, settings.app.temporal
    secret_targets = []
    if temporal.api_key:
        secret_targets.append({"parameter": "apiKey", "name": names.app_secret, "key": "TEMPORAL_API_KEY"})
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
    trigger: Document = {"type": "temporal", "metadata": metadata}
    documents = []
    needs_credentials = bool(temporal.api_key or temporal.tls_client_cert_path)
    if needs_credentials:
        trigger["authenticationRef"] = {"name": names.trigger_authentication}
        documents.append(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "TriggerAuthentication",
                "metadata": _metadata(settings, names.trigger_authentication, labels),
                "spec": {"secretTargetRef": secret_targets},
            }
        )
    documents.append(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": _metadata(settings, names.app, labels),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": names.app},
                "minReplicaCount": settings.keda.min_replicas,
                "maxReplicaCount": settings.keda.max_replicas,
                "triggers": [trigger],
            },
        }
    )
    return documents


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


def _main(arguments: list[str]) -> int:
    if arguments and arguments[0] == "--list":
        lists: dict[tuple[str, ...], Iterable[str]] = {
            (): FILES,
            ("configuration",): CONFIGURATION_FILES,
            ("secrets",): [name for name in FILES if name in SECRET_FILES],
        }
        if tuple(arguments[1:]) not in lists:
            print("usage: python manifests.py --list [configuration|secrets]", file=sys.stderr)
            return 2
        print("\n".join(lists[tuple(arguments[1:])]))
        return 0
    if arguments[:1] != ["--output-dir"] or len(arguments) != 2:
        print("usage: python manifests.py --output-dir DIR | --list [configuration|secrets]", file=sys.stderr)
        return 2
    try:
        settings = load_deploy_settings("render")
    except ConfigError as error:
        exit_with_config_error(error)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    written = write(render(settings), Path(arguments[1]))
    print(f"Rendered manifests for {settings.image} in namespace {settings.namespace}:")
    print("".join(f"  {path}\n" for path in written), end="")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
