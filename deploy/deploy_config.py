"""Deploy-side configuration: the deploy variables of the catalog, their checks and the values derived from them.

Public API:
    VARIABLES, CATALOG                             # the whole catalog: config.VARIABLES, then DEPLOY_VARIABLES
    DEPLOY_VARIABLES                               # what only the deploy scripts read (registry, cluster, rollouts)
    load_deploy_settings(task) -> DeploySettings   # or ConfigError listing every problem, app side included
    TASKS                                          # what a configuration can be checked for
    ramp_percentage(text) -> int                   # the one parser of --ramp (deploy.sh, patch.sh, rollout.py)
    split_image, image_registry, acr_image_name    # image references, parsed here only

The catalog stays one: config.py, which the image runs, declares the variables the pod (and start.sh)
reads; this module, which only runs on the operator's machine, declares the rest with the same `Variable`
and adds their kinds (Kubernetes quantities and names, image references, address ranges).

The tasks, each including the ones before it:
    local     the app's own settings (what `./start.sh` needs)
    render    + everything the manifests are made of (generate-k8s-manifests.sh) and rollout.py needs
    config    + the kubectl context (patch.sh --config-only, --clean-up)
    deploy    + the subscription, registry, build and rollout (deploy.sh, patch.sh)

Values nobody gave are derived here, once: KUBE_CONTEXT from AKS_CLUSTER_NAME, BUILD_PLATFORMS from
BUILD_MODE, IMAGE_TAG from the git commit (with `-dirty-<hash>` for uncommitted changes) or from
APP_IMAGE, and APP_IMAGE from ACR_NAME, APP_NAME and IMAGE_TAG. deploy/plan.py is the command line the
scripts read all of it through. Secrets are never printed: the manifests read them here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import subprocess
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import config
from config import (
    ConfigError,
    Parser,
    Scope,
    Settings,
    Variable,
    address,
    boolean,
    has_control_characters,
    matching,
    one_of,
    whole_number,
)
from deploy import REPO_DIR

TASKS = ("local", "render", "config", "deploy")
BUILDX_PLATFORMS = "linux/amd64,linux/arm64"
ACR_BUILD_PLATFORM = "linux/amd64"
# The instance metadata service and Azure's host endpoint (WireServer): the NetworkPolicy never opens them by range.
METADATA_ADDRESS = "169.254.169.254/32"
WIRESERVER_ADDRESS = "168.63.129.16/32"
NEVER_ALLOWED = (METADATA_ADDRESS, WIRESERVER_ADDRESS)
# A versioned Deployment's name leaves room for the ReplicaSet's and the pods' suffixes within 63 characters.
MAX_VERSION_KUBERNETES_DEPLOYMENT_NAME = 47

_QUANTITY = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?")
_SUFFIX_FACTORS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


# ---------------------------------------------------------------- the deploy variables' kinds


def cidrs(raw: str) -> tuple[str, ...]:
    """Comma-separated address ranges (CIDR), each written exactly as a network: 10.1.0.0/16, 10.1.2.3/32."""
    found = []
    for part in (part.strip() for part in raw.split(",")):
        if not part:
            continue
        try:
            found.append(str(ipaddress.ip_network(part, strict=True)))
        except ValueError:
            hint = ""
            try:
                hint = f" (did you mean {ipaddress.ip_network(part, strict=False)}?)"
            except ValueError:
                pass
            raise ValueError(
                f"{part!r} is not an address range{hint}; give comma-separated CIDRs such as 10.1.0.0/16,10.2.3.4/32"
            ) from None
    return tuple(found)


# NETWORK_POLICY_METRICS_FROM: Azure Monitor managed Prometheus' scraper, the add-on's ama-metrics pods in kube-system.
METRICS_FROM_AMA = "ama-metrics"
METRICS_FROM_NONE = "none"
_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def metrics_sources(raw: str) -> tuple[str, ...]:
    """NETWORK_POLICY_METRICS_FROM: `none`, or comma-separated sources of metrics scrapes, each `ama-metrics`
    or `namespace:NAME` (every pod in namespace NAME, such as prometheus-operator's `monitoring`)."""
    parts = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if parts == (METRICS_FROM_NONE,):
        return ()
    for part in parts:
        kind, _, name = part.partition(":")
        if part == METRICS_FROM_AMA or (kind == "namespace" and _NAMESPACE_NAME.fullmatch(name)):
            continue
        raise ValueError(
            f"{part!r} is not a source of metrics scrapes; give none, or comma-separated entries of "
            "ama-metrics and namespace:NAME (a Kubernetes namespace name, such as namespace:monitoring)"
        )
    return parts


def without_control_characters(raw: str) -> str:
    if has_control_characters(raw):
        raise ValueError("must not contain control characters")
    return raw


def acr_username(raw: str) -> str:
    if ":" in raw or has_control_characters(raw):
        raise ValueError("must not contain ':' or control characters")
    return raw


def cpu_quantity(raw: str) -> str:
    if not re.fullmatch(r"[0-9]+m|[0-9]+(\.[0-9]{1,3})?", raw):
        raise ValueError("must be a CPU quantity such as 200m (millicores) or 0.5 (cores)")
    return raw


def memory_quantity(raw: str) -> str:
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?m", raw):
        raise ValueError(f"'m' means thousandths of a byte; did you mean {raw[:-1]}Mi (mebibytes)?")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?", raw):
        raise ValueError("must be a memory quantity such as 256Mi or 1Gi")
    return raw


# ROLLOUT_STEPS (deploy/progressive.py): `PERCENT:DURATION` pairs. Bounded so that a typo cannot hold a deploy for days.
MAX_ROLLOUT_STEPS = 10
MAX_ROLLOUT_STEP_SECONDS = 24 * 3600
MAX_ROLLOUT_GATE_INPUT_BYTES = 64 * 1024
_DURATION = re.compile(r"(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,6})s)?")
_STEP_PERCENT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,2})?")


@dataclass(frozen=True)
class RolloutStep:
    """One step of a progressive rollout: the new version gets `percentage` of new workflows for `seconds`."""

    percentage: float
    """Share of new workflows routed to the new version, more than 0 and less than 100."""
    seconds: int
    """How long the step holds, its gate evaluated all along."""

    def describe(self) -> str:
        return f"{self.percentage:g}% for {duration_text(self.seconds)}"


def duration_seconds(raw: str) -> int:
    """A duration with units, such as 90s, 5m, 1h or 1m30s, as whole seconds (more than 0)."""
    match = _DURATION.fullmatch(raw)
    if not raw or not match or not any(match.groups()):
        raise ValueError(
            f"{raw!r} is not a duration: give a number with a unit s, m or h, such as 30s, 5m, 1h or 1m30s"
        )
    hours, minutes, seconds_ = (int(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds_
    if not 0 < total <= MAX_ROLLOUT_STEP_SECONDS:
        raise ValueError(f"{raw!r}: a step holds for more than 0s and at most 24h")
    return total


def duration_text(seconds: float) -> str:
    """Whole seconds as the steps write them: 1h, 5m, 1m30s, 45s."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{rest}s" if rest else "")
    return text or "0s"


def rollout_steps(raw: str) -> tuple[RolloutStep, ...]:
    """ROLLOUT_STEPS: comma-separated PERCENT:DURATION, percentages increasing, each more than 0 and less than 100."""
    example = "such as 10:5m,50:10m (10% of new workflows for 5 minutes, then 50% for 10)"
    steps: list[RolloutStep] = []
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) > MAX_ROLLOUT_STEPS:
        raise ValueError(f"at most {MAX_ROLLOUT_STEPS} steps; give comma-separated PERCENT:DURATION pairs, {example}")
    for part in parts:
        percent, colon, duration = part.partition(":")
        if not colon or not _STEP_PERCENT.fullmatch(percent.strip()):
            raise ValueError(
                f"step {part!r} is not PERCENT:DURATION (a percentage more than 0 and less than 100, with at most "
                f"two decimals, then a duration); give comma-separated steps {example}"
            )
        percentage = float(percent)
        if not 0 < percentage < 100:
            raise ValueError(
                f"step {part!r}: the percentage must be more than 0 and less than 100 (the last step is followed by "
                f"making the version current, 100%); {example}"
            )
        if steps and percentage <= steps[-1].percentage:
            raise ValueError(f"step {part!r}: percentages must increase from step to step; {example}")
        steps.append(RolloutStep(percentage, duration_seconds(duration.strip())))
    return tuple(steps)


def gate_input(raw: str) -> str:
    """ROLLOUT_GATE_INPUT: the gate workflow's argument, as JSON text (at most 64 KiB)."""
    if len(raw.encode("utf-8", "surrogateescape")) > MAX_ROLLOUT_GATE_INPUT_BYTES:
        raise ValueError(f"must be at most {MAX_ROLLOUT_GATE_INPUT_BYTES // 1024} KiB of JSON")
    try:
        json.loads(raw)
    except ValueError as error:
        raise ValueError(
            f"must be JSON, the gate workflow's one argument, such as '\"smoke\"' or '{{}}': {error}"
        ) from None
    return raw


def failure_margin(raw: str) -> float:
    """ROLLOUT_FAILURE_MARGIN: how much higher the new version's failure rate may be, as an absolute rate, 0 to 1."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value < 1:
        raise ValueError(
            "must be a rate from 0 to less than 1, such as 0.05: the new version fails the gate when its failure rate "
            "exceeds the current version's by more than this"
        )
    return value


# Azure's naming rules (learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules), so that a
# name Azure would refuse is refused by the configuration check, naming the variable, and never reaches a command:
#   Microsoft.Resources/resourcegroups       1-90: underscores, hyphens, periods, parentheses, and letters or digits
#                                            as .NET's Char.IsLetterOrDigit has them (Unicode categories Lu, Ll, Lt,
#                                            Lm, Lo, Nd); can't end with a period
#   Microsoft.ContainerService/managedClusters  1-63 alphanumerics, underscores and hyphens; start and end with an
#                                            alphanumeric
#   Microsoft.ContainerRegistry/registries   5-50 alphanumerics (ACR_NAME)
# (The vault, secret and storage account names are the app's, checked in config.py.)
_RESOURCE_GROUP_LETTERS_AND_DIGITS = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"})


def resource_group(raw: str) -> str:
    """An Azure resource group name, by Azure's rule (above)."""
    allowed = all(
        character in "_-.()" or unicodedata.category(character) in _RESOURCE_GROUP_LETTERS_AND_DIGITS
        for character in raw
    )
    if not allowed or not 1 <= len(raw) <= 90 or raw.endswith("."):
        raise ValueError(
            "must be a resource group name as Azure allows it: 1 to 90 letters, digits, '_', '-', '.', '(' and ')', "
            "not ending with '.'"
        )
    return raw


AKS_CLUSTER_NAME = matching(
    r"[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?",
    "must be an AKS cluster name as Azure allows it: 1 to 63 letters, digits, '_' and '-', starting and ending with "
    "a letter or digit",
)
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
KUBERNETES_NAME = matching(
    r"(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?",
    "must be a Kubernetes name (RFC 1123 label): lowercase letters, digits and '-', starting and ending "
    "with a letter or digit, at most 63 characters",
)
IMAGE_TAG = matching(
    r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?",
    "must be letters, digits, '.', '_' or '-', starting and ending with a letter or digit, at most 63 characters",
)
DIGEST = r"sha256:[0-9a-f]{64}"
IMAGE = matching(
    r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)+"
    rf"(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}(@{DIGEST})?|@{DIGEST})",
    "must be REGISTRY/REPOSITORY:TAG in lowercase, for example myacr.azurecr.io/temporal-worker:1a2b3c4d, "
    "optionally pinned by digest (REGISTRY/REPOSITORY:TAG@sha256:<64 hex digits>, or without the tag)",
)
PLATFORM = r"[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?"
# How Prometheus finds the worker's metrics: manifests.py renders pod annotations or a PodMonitor (Azure Monitor
# managed Prometheus reads azmonitoring.coreos.com; prometheus-operator reads monitoring.coreos.com).
METRICS_SCRAPES = ("none", "annotations", "podmonitor", "prometheus-operator")


# CODEC_SERVER_INGRESS_HOST: a DNS name as an Ingress rule's host takes it (RFC 1123 subdomain, no wildcard).
INGRESS_HOST = matching(
    r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+",
    "must be the fully qualified host name the Web UI calls, in lowercase, such as codec.example.com",
)


def keyvault_certificate_uri(raw: str) -> str:
    """CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI: a Key Vault certificate's URI, as the application routing add-on
    takes it (https://VAULT.vault.azure.net/certificates/NAME, optionally /VERSION)."""
    parts = urlsplit(raw)
    segments = parts.path.strip("/").split("/")
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.query
        or parts.fragment
        or has_control_characters(raw)
        or " " in raw
        or len(segments) not in (2, 3)
        or segments[0] != "certificates"
        or not re.fullmatch(r"[A-Za-z0-9-]{1,127}", segments[1])
        or (len(segments) == 3 and not re.fullmatch(r"[0-9a-fA-F]{32}", segments[2]))
    ):
        raise ValueError(
            "must be a Key Vault certificate's URI, such as https://my-vault.vault.azure.net/certificates/codec-tls "
            "(az keyvault certificate show --query id --output tsv prints it)"
        )
    return raw


# ---------------------------------------------------------------- the deploy variables

DEPLOY_VARIABLES: tuple[Variable, ...] = (
    # Deployment to AKS (deploy.sh, patch.sh, generate-k8s-manifests.sh)
    Variable(
        "AZURE_SUBSCRIPTION_ID",
        matching(GUID, "must be a subscription ID (a GUID); az account list --output table shows yours"),
        scope=Scope.DEPLOY,
    ),
    Variable("RESOURCE_GROUP", resource_group, scope=Scope.DEPLOY),
    Variable(
        "ACR_NAME",
        matching(r"[A-Za-z0-9]{5,50}", "must be the registry name: 5 to 50 letters and digits (not its address)"),
        scope=Scope.DEPLOY,
    ),
    Variable("ACR_USERNAME", acr_username, scope=Scope.DEPLOY),
    Variable("ACR_PASSWORD", secret=True, scope=Scope.DEPLOY),
    Variable("ACR_EMAIL", scope=Scope.DEPLOY),
    Variable("AKS_CLUSTER_NAME", AKS_CLUSTER_NAME, scope=Scope.DEPLOY),
    Variable("KUBE_CONTEXT", without_control_characters, scope=Scope.DEPLOY),
    Variable("KUBERNETES_NAMESPACE", KUBERNETES_NAME, "temporal-workers", scope=Scope.DEPLOY),
    Variable("APP_NAME", KUBERNETES_NAME, "temporal-worker", scope=Scope.DEPLOY),
    Variable("IMAGE_TAG", IMAGE_TAG, scope=Scope.DEPLOY),
    Variable("APP_IMAGE", IMAGE, scope=Scope.DEPLOY),
    Variable("REPLICAS", whole_number(1), "2", scope=Scope.DEPLOY),
    Variable("CPU_REQUEST", cpu_quantity, "200m", scope=Scope.DEPLOY),
    Variable("MEMORY_REQUEST", memory_quantity, "256Mi", scope=Scope.DEPLOY),
    Variable("CPU_LIMIT", cpu_quantity, "500m", scope=Scope.DEPLOY),
    Variable("MEMORY_LIMIT", memory_quantity, "512Mi", scope=Scope.DEPLOY),
    Variable(
        "AZURE_CLIENT_ID",
        matching(GUID, "must be the managed identity's client ID, a GUID such as 00000000-0000-0000-0000-000000000000"),
        scope=Scope.DEPLOY,
    ),
    Variable("USE_NODE_IDENTITY", boolean, "false", scope=Scope.DEPLOY),
    Variable("NETWORK_POLICY", boolean, "true", scope=Scope.DEPLOY),
    Variable("NETWORK_POLICY_EGRESS_CIDRS", cidrs, scope=Scope.DEPLOY),
    Variable("NETWORK_POLICY_METRICS_FROM", metrics_sources, METRICS_FROM_AMA, scope=Scope.DEPLOY),
    Variable(
        "BUILD_MODE",
        one_of("buildx", "acr", message="must be buildx (docker buildx here) or acr (az acr build in Azure)"),
        "buildx",
        scope=Scope.DEPLOY,
    ),
    Variable(
        "BUILD_PLATFORMS",
        matching(f"{PLATFORM}(,{PLATFORM})*", "must be comma-separated platforms such as linux/amd64,linux/arm64"),
        scope=Scope.DEPLOY,
    ),
    Variable(
        "METRICS_SCRAPE",
        one_of(*METRICS_SCRAPES, message="must be none, annotations, podmonitor or prometheus-operator"),
        "annotations",
        scope=Scope.DEPLOY,
    ),
    Variable("KEDA_ENABLED", boolean, "false", scope=Scope.DEPLOY),
    Variable("KEDA_MIN_REPLICAS", whole_number(0), "1", scope=Scope.DEPLOY),
    Variable("KEDA_MAX_REPLICAS", whole_number(1), "10", scope=Scope.DEPLOY),
    Variable("KEDA_TARGET_QUEUE_SIZE", whole_number(1), "5", scope=Scope.DEPLOY),
    Variable(
        "ROLLOUT_TIMEOUT",
        matching(r"([0-9]+(s|m|h))+", "must be a duration with a unit, such as 300s, 5m or 1h"),
        "5m",
        scope=Scope.DEPLOY,
    ),
    # Versioned rollouts and the pre-deploy replay check (rollout.py, called by deploy.sh and patch.sh)
    Variable("WORKER_VERSIONING", boolean, "false", scope=Scope.DEPLOY),
    Variable("DEPLOY_REPLAY_HISTORIES", whole_number(0), "20", scope=Scope.DEPLOY),
    Variable("DEPLOY_TEMPORAL_ADDRESS", address, scope=Scope.DEPLOY),
    # Progressive rollouts: ramp steps, a gate at every step, automatic rollback (deploy/progressive.py)
    Variable("ROLLOUT_STEPS", rollout_steps, scope=Scope.DEPLOY),
    Variable("ROLLOUT_GATE_WORKFLOW", config.name, scope=Scope.DEPLOY),
    Variable("ROLLOUT_GATE_INPUT", gate_input, scope=Scope.DEPLOY),
    Variable("ROLLOUT_FAILURE_MARGIN", failure_margin, "0.05", scope=Scope.DEPLOY),
    Variable("ROLLOUT_MIN_WORKFLOWS", whole_number(1), "20", scope=Scope.DEPLOY),
    Variable("ROLLOUT_POLL_SECONDS", config.seconds(1, 60), "5", scope=Scope.DEPLOY),
    # Large payloads in Azure Blob Storage: the lifecycle rule deploy.sh suggests
    Variable("PAYLOAD_STORAGE_RETENTION_DAYS", whole_number(1), scope=Scope.DEPLOY),
    # The codec server deployed in the cluster for the team (manifests.py renders it; docs/deploy.md#codec-server)
    Variable("CODEC_SERVER_DEPLOY", boolean, "false", scope=Scope.DEPLOY),
    Variable("CODEC_SERVER_REPLICAS", whole_number(1), "2", scope=Scope.DEPLOY),
    Variable("CODEC_SERVER_CPU_REQUEST", cpu_quantity, "100m", scope=Scope.DEPLOY),
    Variable("CODEC_SERVER_MEMORY_REQUEST", memory_quantity, "256Mi", scope=Scope.DEPLOY),
    Variable("CODEC_SERVER_CPU_LIMIT", cpu_quantity, "1", scope=Scope.DEPLOY),
    Variable("CODEC_SERVER_MEMORY_LIMIT", memory_quantity, "768Mi", scope=Scope.DEPLOY),
    Variable(
        "CODEC_SERVER_AZURE_CLIENT_ID",
        matching(GUID, "must be the codec server's managed identity's client ID, a GUID"),
        scope=Scope.DEPLOY,
    ),
    Variable("CODEC_SERVER_INGRESS_HOST", INGRESS_HOST, scope=Scope.DEPLOY),
    Variable("CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI", keyvault_certificate_uri, scope=Scope.DEPLOY),
    Variable("CODEC_SERVER_ALLOW_UNAUTHENTICATED", boolean, "false", scope=Scope.DEPLOY),
)
VARIABLES: tuple[Variable, ...] = config.VARIABLES + DEPLOY_VARIABLES
CATALOG: config.Catalog = {variable.name: variable for variable in VARIABLES}
SECRET_VARIABLES = frozenset(variable.name for variable in VARIABLES if variable.secret)


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class KedaSettings:
    """KEDA's ScaledObject: scale the worker on the task queue's backlog."""

    enabled: bool
    min_replicas: int
    """Fewest pods; 0 scales to zero when the backlog is empty."""
    max_replicas: int
    target_queue_size: int
    """Backlog per pod KEDA aims for."""


@dataclass(frozen=True)
class NetworkPolicySettings:
    """The worker's egress NetworkPolicy (manifests.py says what it allows)."""

    enabled: bool
    egress_cidrs: tuple[str, ...] = ()
    """Extra address ranges the worker may reach on any port (NETWORK_POLICY_EGRESS_CIDRS)."""
    metrics_from: tuple[str, ...] = (METRICS_FROM_AMA,)
    """Who may reach the metrics port (NETWORK_POLICY_METRICS_FROM); empty: nobody."""


@dataclass(frozen=True)
class RolloutSettings:
    """Versioned rollouts and the pre-deploy replay check (rollout.py, called by deploy.sh and patch.sh)."""

    versioning: bool
    """WORKER_VERSIONING: a Kubernetes Deployment per image tag, each a version of one Temporal Worker Deployment."""
    worker_deployment_name: str
    """The Temporal Worker Deployment: <KUBERNETES_NAMESPACE>/<APP_NAME>, as the temporal-worker-controller names it."""
    build_id: str
    """This rollout's version: the image tag."""
    replay_histories: int
    """DEPLOY_REPLAY_HISTORIES: open workflows replayed before a build; 0 turns the check off."""
    temporal_address: str
    """Where this machine reaches Temporal: DEPLOY_TEMPORAL_ADDRESS, else TEMPORAL_ADDRESS."""
    steps: tuple[RolloutStep, ...] = ()
    """ROLLOUT_STEPS: the ramp steps deploy/progressive.py goes through; empty: made current at once (or --ramp)."""
    gate_workflow: str = ""
    """ROLLOUT_GATE_WORKFLOW: a workflow type started pinned to the new version at every step; "" for none."""
    gate_input: str | None = None
    """ROLLOUT_GATE_INPUT: the gate workflow's one argument as JSON text; None starts it without one."""
    failure_margin: float = 0.05
    """ROLLOUT_FAILURE_MARGIN: how much the new version's failure rate may exceed the current's (absolute)."""
    min_workflows: int = 20
    """ROLLOUT_MIN_WORKFLOWS: closed workflows the new version needs in a step before its failure rate is a verdict."""
    poll_seconds: float = 5.0
    """ROLLOUT_POLL_SECONDS: how often a step evaluates its gate and prints a progress line."""


@dataclass(frozen=True)
class CodecServerDeploySettings:
    """The codec server deployed in the cluster (CODEC_SERVER_DEPLOY=true): manifests.py says what it renders."""

    enabled: bool
    replicas: int = 2
    cpu_request: str = "100m"
    memory_request: str = "256Mi"
    cpu_limit: str = "1"
    memory_limit: str = "768Mi"
    azure_client_id: str | None = None
    """The codec server's own workload identity (read-only roles); None renders its ServiceAccount without one."""
    ingress_host: str | None = None
    """The host of the Ingress for the application routing add-on; None renders no Ingress."""
    tls_certificate_uri: str | None = None
    """The Key Vault certificate the add-on serves for ingress_host (kubernetes.azure.com/tls-cert-keyvault-uri)."""


@dataclass(frozen=True)
class DeploySettings:
    """Everything the manifests and the deploy scripts need, with the app's settings."""

    app: Settings
    values: Mapping[str, str] = field(repr=False)
    """Every variable's text after precedence and derivation, secrets included (for the Secrets)."""
    namespace: str
    app_name: str
    """Names the Deployment and every other object, and the image repository."""
    image: str
    """The full image reference the pods run."""
    image_tag: str
    replicas: int
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    azure_client_id: str | None
    """The workload identity's client ID; None renders no ServiceAccount."""
    use_node_identity: bool
    """The pod reaches Azure with the node's managed identity (USE_NODE_IDENTITY), not a workload identity."""
    acr_username: str | None
    keda: KedaSettings
    metrics_scrape: str
    """How Prometheus finds the metrics: none, annotations, podmonitor (Azure Monitor) or prometheus-operator."""
    network_policy: NetworkPolicySettings
    kube_context: str
    rollout: RolloutSettings
    payload_storage_retention_days: int | None = None
    """Days after which the rendered lifecycle-management policy deletes payload blobs; None renders none."""
    codec_server: CodecServerDeploySettings = CodecServerDeploySettings(enabled=False)
    """The codec server in the cluster; nothing of it is rendered when it is off."""
    warnings: tuple[str, ...] = ()
    """Settings that are not wrong but will not do what one might expect in the cluster."""

    @property
    def kubernetes_deployment_name(self) -> str:
        """The Kubernetes Deployment this configuration renders: APP_NAME, or with versioning this version's own."""
        if not self.rollout.versioning:
            return self.app_name
        return version_kubernetes_deployment_name(self.app_name, self.rollout.build_id)

    @property
    def image_digest(self) -> str | None:
        """The image's digest (sha256:...) when the reference pins one."""
        return split_image(self.image)[2]

    def pod_variables(self, secret: bool) -> dict[str, str]:
        """The variables the pod gets, secret or not, with a value: what goes into the ConfigMap or the app Secret."""
        return {
            variable.name: self.values[variable.name]
            for variable in VARIABLES
            if variable.scope is Scope.POD and variable.secret == secret and self.values[variable.name]
        }

    def codec_server_variables(self, secret: bool) -> dict[str, str]:
        """The variables the deployed codec server gets, secret or not, with a value: its own (Scope.CODEC_SERVER)
        and the worker's it reads too (`Variable.codec_server`); what goes into its ConfigMap or Secret."""
        return {
            variable.name: self.values[variable.name]
            for variable in VARIABLES
            if (variable.scope is Scope.CODEC_SERVER or (variable.scope is Scope.POD and variable.codec_server))
            and variable.secret == secret
            and self.values[variable.name]
        }


def load_deploy_settings(
    task: str, environ: Mapping[str, str] | None = None, env_file: Path | None = None
) -> DeploySettings:
    """Read, derive and check the configuration for `task`; raise ConfigError naming every problem."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    parser = Parser(derived(config.read_variables(environ, env_file, CATALOG)), CATALOG)
    app = config.parse_settings(parser)
    checks = TASKS.index(task)
    settings = _deploy_settings(parser, app, checks >= 1)
    if checks >= 2:
        _check_kube_context(parser)
    if checks >= 3:
        _check_azure_and_build(parser)
    if parser.problems:
        raise ConfigError(parser.problems)
    return settings


def derived(variables: Mapping[str, str]) -> dict[str, str]:
    """The values computed from others when not given."""
    values = dict(variables)
    values["KUBE_CONTEXT"] = values["KUBE_CONTEXT"] or values["AKS_CLUSTER_NAME"]
    if not values["BUILD_PLATFORMS"]:
        values["BUILD_PLATFORMS"] = ACR_BUILD_PLATFORM if values["BUILD_MODE"] == "acr" else BUILDX_PLATFORMS
    image = values["APP_IMAGE"]
    if not values["IMAGE_TAG"]:
        _, tag, digest = split_image(image)
        if tag:
            values["IMAGE_TAG"] = tag
        elif not image:
            values["IMAGE_TAG"] = git_image_tag(REPO_DIR)
        elif digest:  # REGISTRY/REPOSITORY@sha256:...: the digest names the version
            values["IMAGE_TAG"] = digest.replace(":", "-")[:19]
    if not image and values["ACR_NAME"] and values["IMAGE_TAG"]:
        values["APP_IMAGE"] = f"{acr_login_server(values['ACR_NAME'])}/{values['APP_NAME']}:{values['IMAGE_TAG']}"
    return values


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST] as (REGISTRY/REPOSITORY, TAG or None, DIGEST or None)."""
    name, _, digest = reference.partition("@")
    repository, separator, tag = name.rpartition(":")
    if not separator or "/" in tag:  # no ':' after the last '/': what follows a ':' was a registry port
        return name, None, digest or None
    return repository, tag, digest or None


def acr_login_server(acr_name: str) -> str:
    return f"{acr_name.lower()}.azurecr.io"


def image_registry(reference: str) -> str:
    """The registry of REGISTRY/REPOSITORY[:TAG][@DIGEST]: where docker logs in."""
    return split_image(reference)[0].partition("/")[0]


def acr_image_name(reference: str) -> str:
    """The image as `az acr` names it: REPOSITORY:TAG, or REPOSITORY@sha256:... when the reference names a digest."""
    repository, tag, digest = split_image(reference)
    path = repository.partition("/")[2]
    return f"{path}@{digest}" if digest else f"{path}:{tag}"


def version_kubernetes_deployment_name(app_name: str, build_id: str) -> str:
    """`<app name>-<build id>`; made a Kubernetes name of at most 47 characters with a hash when it is not one."""
    name = f"{app_name}-{build_id}"
    if re.fullmatch(r"[a-z0-9-]+", name) and len(name) <= MAX_VERSION_KUBERNETES_DEPLOYMENT_NAME:
        return name
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower())
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{cleaned[: MAX_VERSION_KUBERNETES_DEPLOYMENT_NAME - len(digest) - 1].rstrip('-')}-{digest}"


def ramp_percentage(text: str) -> int:
    """--ramp's value: the share of new workflows the new version gets, a whole percentage from 1 to 100."""
    if not re.fullmatch(r"[1-9][0-9]?|100", text):
        raise ValueError("--ramp needs a whole percentage from 1 to 100")
    return int(text)


def git_image_tag(repo: Path) -> str:
    """The commit, plus -dirty-<hash of the changes> when the tree differs from it; "" outside a git checkout.

    Untracked files count as changes; ignored files (config.env, rendered manifests) do not.
    """

    def git(*arguments: str) -> bytes:
        return subprocess.run(["git", "-C", str(repo), *arguments], capture_output=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short=12", "HEAD").decode().strip()
        if not git("status", "--porcelain", "--untracked-files=all", "--", "."):
            return commit
        changes = hashlib.sha256(git("diff", "HEAD", "--binary", "--", "."))
        for path in git("ls-files", "--others", "--exclude-standard", "-z", "--", ".").split(b"\0"):
            if path:
                changes.update(path + b"\0" + (repo / path.decode()).read_bytes() + b"\0")
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"{commit}-dirty-{changes.hexdigest()[:10]}"


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity (200m, 0.5, 256Mi) as a number."""
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return Decimal(match["number"]) * _SUFFIX_FACTORS[match["suffix"]]


def _deploy_settings(parser: Parser, app: Settings, check: bool) -> DeploySettings:
    """The typed deploy settings; with `check`, every problem the manifests would have is recorded."""
    if check:
        _check_image(parser)
        _check_resources(parser)
        _check_pull_secret(parser)
        _check_keda(parser, app)
        _check_payload_memory(parser, app)
        _check_pod(parser, app)
        _check_keyvault_credentials(parser)
        _check_versioning(parser)
        _check_temporal_from_here(parser)
        _check_progressive(parser)
        parser.value("PAYLOAD_STORAGE_RETENTION_DAYS")
        _check_identity(parser)
        _check_network_policy(parser)
        _check_codec_server(parser, app)
    values = parser.variables
    value = partial(_unchecked, parser)
    return DeploySettings(
        app=app,
        values=values,
        namespace=values["KUBERNETES_NAMESPACE"],
        app_name=values["APP_NAME"],
        image=values["APP_IMAGE"],
        image_tag=values["IMAGE_TAG"],
        replicas=value("REPLICAS") or 0,
        cpu_request=values["CPU_REQUEST"],
        memory_request=values["MEMORY_REQUEST"],
        cpu_limit=values["CPU_LIMIT"],
        memory_limit=values["MEMORY_LIMIT"],
        azure_client_id=value("AZURE_CLIENT_ID"),
        use_node_identity=value("USE_NODE_IDENTITY") is True,
        acr_username=values["ACR_USERNAME"] or None,
        keda=KedaSettings(
            enabled=value("KEDA_ENABLED") is True,
            min_replicas=value("KEDA_MIN_REPLICAS") or 0,
            max_replicas=value("KEDA_MAX_REPLICAS") or 0,
            target_queue_size=value("KEDA_TARGET_QUEUE_SIZE") or 0,
        ),
        metrics_scrape=value("METRICS_SCRAPE"),
        network_policy=NetworkPolicySettings(
            enabled=value("NETWORK_POLICY") is not False,
            egress_cidrs=value("NETWORK_POLICY_EGRESS_CIDRS") or (),
            metrics_from=value("NETWORK_POLICY_METRICS_FROM") or (),
        ),
        kube_context=values["KUBE_CONTEXT"],
        payload_storage_retention_days=value("PAYLOAD_STORAGE_RETENTION_DAYS"),
        codec_server=CodecServerDeploySettings(
            enabled=value("CODEC_SERVER_DEPLOY") is True,
            replicas=value("CODEC_SERVER_REPLICAS") or 0,
            cpu_request=values["CODEC_SERVER_CPU_REQUEST"],
            memory_request=values["CODEC_SERVER_MEMORY_REQUEST"],
            cpu_limit=values["CODEC_SERVER_CPU_LIMIT"],
            memory_limit=values["CODEC_SERVER_MEMORY_LIMIT"],
            azure_client_id=value("CODEC_SERVER_AZURE_CLIENT_ID"),
            ingress_host=value("CODEC_SERVER_INGRESS_HOST"),
            tls_certificate_uri=value("CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI"),
        ),
        warnings=tuple(_warnings(parser) + _payload_storage_warnings(parser) + _codec_server_warnings(parser)),
        rollout=RolloutSettings(
            versioning=value("WORKER_VERSIONING") is True,
            worker_deployment_name=worker_deployment_name(values),
            build_id=values["IMAGE_TAG"],
            replay_histories=value("DEPLOY_REPLAY_HISTORIES"),
            temporal_address=values["DEPLOY_TEMPORAL_ADDRESS"] or values["TEMPORAL_ADDRESS"],
            steps=value("ROLLOUT_STEPS") or (),
            gate_workflow=values["ROLLOUT_GATE_WORKFLOW"] if value("ROLLOUT_GATE_WORKFLOW") else "",
            gate_input=value("ROLLOUT_GATE_INPUT"),
            failure_margin=value("ROLLOUT_FAILURE_MARGIN"),
            min_workflows=value("ROLLOUT_MIN_WORKFLOWS"),
            poll_seconds=value("ROLLOUT_POLL_SECONDS"),
        ),
    )


def _unchecked(parser: Parser, variable_name: str) -> Any:
    """A value by its kind without recording a problem (the checks record them once): a wrong value reads as the
    catalog's default, so that a configuration checked for an earlier task still makes typed settings."""
    variable = CATALOG[variable_name]
    for raw in (parser.variables[variable_name], variable.default):
        try:
            if raw and config.is_text(raw):
                return variable.parse(raw)
        except ValueError:
            continue
    return None


def _check_image(parser: Parser) -> None:
    values = parser.variables
    for variable_name in ("APP_NAME", "KUBERNETES_NAMESPACE", "ACR_NAME", "IMAGE_TAG"):
        parser.value(variable_name)
    if not values["APP_IMAGE"]:
        if not values["ACR_NAME"]:
            parser.problems.append("ACR_NAME: not set; it names the image (or set APP_IMAGE)")
        if not values["IMAGE_TAG"]:
            parser.problems.append(
                f"IMAGE_TAG: not set and {REPO_DIR} is not a git checkout with a commit; set IMAGE_TAG"
            )
        return
    image = parser.value("APP_IMAGE")
    if image is None:
        return
    _, tag, digest = split_image(image)
    if tag is None:
        return  # pinned by digest alone
    if tag == "latest" and not digest:
        parser.problem(
            "APP_IMAGE",
            "the tag 'latest' is mutable, so a rollout could run other code than you tested; use a fixed tag "
            "(unset IMAGE_TAG to tag with the git commit)",
        )
    elif tag != values["IMAGE_TAG"]:
        parser.problems.append(
            f"APP_IMAGE={image!r} and IMAGE_TAG={values['IMAGE_TAG']!r} disagree; set only one of them"
        )


def _check_resources(parser: Parser) -> None:
    parser.value("REPLICAS")
    for request, limit in (("CPU_REQUEST", "CPU_LIMIT"), ("MEMORY_REQUEST", "MEMORY_LIMIT")):
        request_value, limit_value = parser.value(request), parser.value(limit)
        if request_value and limit_value and quantity(request_value) > quantity(limit_value):
            parser.problems.append(
                f"{request}={request_value} is more than {limit}={limit_value}; a request must not exceed its limit"
            )


def _check_pull_secret(parser: Parser) -> None:
    parser.value("AZURE_CLIENT_ID")
    parser.value("ACR_USERNAME")
    parser.raw("ACR_PASSWORD")
    parser.raw("ACR_EMAIL")
    if bool(parser.variables["ACR_USERNAME"]) != bool(parser.variables["ACR_PASSWORD"]):
        parser.problems.append(
            "ACR_USERNAME and ACR_PASSWORD go together: set both for an image pull secret, "
            "or neither to pull with az aks update --attach-acr"
        )


# What the worker needs besides payloads: Python, the SDK, its Rust core and a workflow cache (measured ~100 MiB).
PAYLOAD_MEMORY_BASE_BYTES = 128 * 1024 * 1024
# A task holds what it fetches about four times over: the blob, the payload, the decrypted payload, the value.
PAYLOAD_MEMORY_COPIES = 4


def _check_payload_memory(parser: Parser, app: Settings) -> None:
    """With payload storage on, MEMORY_LIMIT leaves room for a task's budget (PAYLOAD_STORAGE_MAX_TASK_BYTES)."""
    storage, limit = app.payload_storage, parser.value("MEMORY_LIMIT")
    if not storage.enabled or not limit or storage.max_task_bytes is None:
        return
    needed = PAYLOAD_MEMORY_COPIES * storage.max_task_bytes + PAYLOAD_MEMORY_BASE_BYTES
    if quantity(limit) < needed:
        mebibytes = -(-needed // (1024 * 1024))
        parser.problems.append(
            f"MEMORY_LIMIT={limit} leaves too little room for PAYLOAD_STORAGE_MAX_TASK_BYTES={storage.max_task_bytes}: "
            f"a workflow task may hold {PAYLOAD_MEMORY_COPIES} times that while it decodes its payloads, plus "
            f"{PAYLOAD_MEMORY_BASE_BYTES // (1024 * 1024)}Mi for the worker itself; set MEMORY_LIMIT to at least "
            f"{mebibytes}Mi or lower PAYLOAD_STORAGE_MAX_TASK_BYTES"
        )


def _check_keda(parser: Parser, app: Settings) -> None:
    if parser.value("KEDA_ENABLED") is not True:
        return
    minimum, maximum = parser.value("KEDA_MIN_REPLICAS"), parser.value("KEDA_MAX_REPLICAS")
    parser.value("KEDA_TARGET_QUEUE_SIZE")
    if minimum is not None and maximum is not None and minimum > maximum:
        parser.problems.append(f"KEDA_MIN_REPLICAS={minimum} is more than KEDA_MAX_REPLICAS={maximum}")
    temporal = app.temporal
    if temporal.tls is True and not (temporal.api_key or temporal.tls_client_cert_path or temporal.from_keyvault):
        parser.problems.append(
            "KEDA_ENABLED=true with TEMPORAL_TLS=true but no TEMPORAL_API_KEY or client certificate: KEDA's temporal "
            "scaler would connect without TLS; use an API key or mTLS, or set KEDA_ENABLED=false"
        )


def _check_keyvault_credentials(parser: Parser) -> None:
    """Temporal credentials from Key Vault are read in the cluster with the workload identity (by KEDA too)."""
    for variable_name in config.KEYVAULT_CREDENTIAL_VARIABLES:
        if parser.raw(variable_name) and not parser.variables["AZURE_CLIENT_ID"]:
            parser.problems.append(
                f"{variable_name} is set but AZURE_CLIENT_ID is not: in the cluster the pods and KEDA read Key Vault "
                "with that workload identity; set it up as docs/deploy.md says, or use TEMPORAL_API_KEY and the "
                "TLS files instead"
            )


def _check_pod(parser: Parser, app: Settings) -> None:
    """What the pod needs: a health port for its probes, and a metrics port for whatever scrapes it."""
    if app.health_port == 0:
        parser.problem("HEALTH_PORT", "the Kubernetes probes ask /livez and /readyz on it; give a port, such as 9001")
    scrape = parser.value("METRICS_SCRAPE")
    if scrape in ("podmonitor", "prometheus-operator") and app.metrics_port == 0:
        parser.problems.append(
            f"METRICS_SCRAPE={scrape} with METRICS_PORT=0: there are no metrics to scrape; "
            "set METRICS_PORT (default 9000) or METRICS_SCRAPE=none"
        )


def worker_deployment_name(values: Mapping[str, str]) -> str:
    """The Temporal Worker Deployment of a versioned rollout, named as the temporal-worker-controller names it."""
    return f"{values['KUBERNETES_NAMESPACE']}/{values['APP_NAME']}"


def _check_versioning(parser: Parser) -> None:
    """The version names come from the namespace, APP_NAME and the tag; config.env must not fix them for every pod."""
    versioning = parser.value("WORKER_VERSIONING")
    for variable_name in ("TEMPORAL_DEPLOYMENT_NAME", "TEMPORAL_WORKER_BUILD_ID"):
        if parser.raw(variable_name):
            parser.problem(
                variable_name,
                "is set by each versioned Deployment in the cluster (WORKER_VERSIONING=true), from "
                "KUBERNETES_NAMESPACE/APP_NAME and the image tag; remove it from config.env and the environment",
            )
    name = worker_deployment_name(parser.variables)
    if versioning is True and len(name) > config.MAX_WORKER_DEPLOYMENT_NAME:
        parser.problems.append(
            f"WORKER_VERSIONING=true names the Worker Deployment KUBERNETES_NAMESPACE/APP_NAME = {name!r}, "
            f"{len(name)} characters: at most {config.MAX_WORKER_DEPLOYMENT_NAME}; shorten KUBERNETES_NAMESPACE or "
            "APP_NAME"
        )


def _check_temporal_from_here(parser: Parser) -> None:
    """What the scripts need to reach Temporal from this machine (the replay check, versions, clean-up)."""
    parser.value("DEPLOY_REPLAY_HISTORIES")
    parser.value("DEPLOY_TEMPORAL_ADDRESS")


def _check_progressive(parser: Parser) -> None:
    """ROLLOUT_STEPS and its gate: the steps ramp a version, so they need versioning; the gate workflow must be a
    type the worker registers (worker_workflow_types), since it is started on the new version's workers."""
    steps = parser.value("ROLLOUT_STEPS")
    for variable_name in (
        "ROLLOUT_FAILURE_MARGIN",
        "ROLLOUT_MIN_WORKFLOWS",
        "ROLLOUT_POLL_SECONDS",
        "ROLLOUT_GATE_INPUT",
    ):
        parser.value(variable_name)
    if steps and parser.value("WORKER_VERSIONING") is not True:
        parser.problems.append(
            "ROLLOUT_STEPS ramps a new version through steps: it needs WORKER_VERSIONING=true (versioned rollouts); "
            "set WORKER_VERSIONING=true, or empty ROLLOUT_STEPS"
        )
    gate = parser.value("ROLLOUT_GATE_WORKFLOW")
    if parser.raw("ROLLOUT_GATE_INPUT") and not parser.raw("ROLLOUT_GATE_WORKFLOW"):
        parser.problems.append(
            "ROLLOUT_GATE_INPUT is the gate workflow's input: set ROLLOUT_GATE_WORKFLOW too, or remove it"
        )
    if not gate:
        return
    if not parser.raw("ROLLOUT_STEPS"):
        parser.problems.append(
            f"ROLLOUT_GATE_WORKFLOW={gate} runs at every step of ROLLOUT_STEPS: set ROLLOUT_STEPS too, or remove it"
        )
    try:
        registered = worker_workflow_types()
    except (OSError, SyntaxError, ImportError, ValueError) as error:
        parser.problems.append(
            f"ROLLOUT_GATE_WORKFLOW={gate}: could not read the workflow types worker.py registers ({error})"
        )
        return
    if gate not in registered:
        parser.problem(
            "ROLLOUT_GATE_WORKFLOW",
            f"the worker does not register this workflow type (worker.py's WORKFLOWS registers: "
            f"{', '.join(registered) or 'none'}); give one of those, or add the workflow to worker.WORKFLOWS",
        )


def worker_workflow_types(repo: Path = REPO_DIR) -> tuple[str, ...]:
    """The workflow types worker.py registers, without running or importing worker.py.

    worker.py registers `WORKFLOWS = [ClassName, ...]` (its Worker gets exactly that list), each class imported
    with `from MODULE import ClassName`. This reads that assignment and those imports from worker.py's source,
    imports each MODULE (the user's workflows.py: it runs no worker and installs no signal handler, which
    importing worker.py would) and takes each class's registered name, `@workflow.defn(name=...)` or the class
    name. This checkout is what deploy.sh builds, so it is what the new version's pods register; an APP_IMAGE
    pinned by digest (nothing built) may have been built from other code.
    """
    import ast
    import importlib

    from temporalio import workflow

    tree = ast.parse((repo / "worker.py").read_text(encoding="utf-8"))
    imported = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    listed: list[str] = []
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(target, ast.Name) and target.id == "WORKFLOWS" for target in targets):
            value = node.value
            if not isinstance(value, (ast.List, ast.Tuple)) or not all(
                isinstance(item, ast.Name) for item in value.elts
            ):
                raise ValueError("worker.py's WORKFLOWS is not a plain list of imported classes")
            listed = [item.id for item in value.elts]
    names = []
    for class_name in listed:
        if class_name not in imported:
            raise ValueError(f"worker.py's WORKFLOWS names {class_name}, which worker.py does not import by name")
        module_name, attribute = imported[class_name]
        definition = workflow._Definition.from_class(getattr(importlib.import_module(module_name), attribute))
        if definition is None or definition.name is None:
            raise ValueError(f"{module_name}.{attribute} is not a @workflow.defn class with a name")
        names.append(definition.name)
    return tuple(names)


def _check_identity(parser: Parser) -> None:
    """In the cluster the pod reaches Key Vault with its workload identity, or, only when asked, the node's."""
    parser.value("AZURE_CLIENT_ID")
    node_identity = parser.value("USE_NODE_IDENTITY") is True
    if node_identity and parser.raw("AZURE_CLIENT_ID"):
        parser.problems.append(
            "AZURE_CLIENT_ID and USE_NODE_IDENTITY=true both choose the pod's Azure identity: keep AZURE_CLIENT_ID "
            "(workload identity, recommended) and remove USE_NODE_IDENTITY, or the reverse"
        )
    elif parser.raw("KEYVAULT_URL") and not parser.raw("AZURE_CLIENT_ID") and not node_identity:
        parser.problems.append(
            "KEYVAULT_URL is set but AZURE_CLIENT_ID is not: in the cluster the pod would fall back to the node's "
            "managed identity, which every pod on the node shares; set AZURE_CLIENT_ID to the client ID of the "
            "worker's workload identity (docs/deploy.md#workload-identity-for-key-vault), or set "
            "USE_NODE_IDENTITY=true if the cluster really grants Key Vault access to the node's identity"
        )


def _check_network_policy(parser: Parser) -> None:
    parser.value("NETWORK_POLICY")
    parser.value("NETWORK_POLICY_METRICS_FROM")
    for cidr in parser.value("NETWORK_POLICY_EGRESS_CIDRS") or ():
        network = ipaddress.ip_network(cidr)
        if any(network.version == 4 and network.subnet_of(ipaddress.ip_network(address)) for address in NEVER_ALLOWED):
            parser.problem(
                "NETWORK_POLICY_EGRESS_CIDRS",
                f"{cidr} is the instance metadata service or Azure's host endpoint, which hand out the node's "
                "identity; remove it (USE_NODE_IDENTITY=true lets the pod reach the metadata service if it must)",
            )


# The deployed codec server's objects are named `<APP_NAME>-codec-server...`; its Service's name must be a DNS label
# (RFC 1035: at most 63 characters, starting with a letter).
CODEC_SERVER_SUFFIX = "-codec-server"
# What the codec server holds per request that fetches from payload storage (codec_server.Limits: at most
# max_fetching_requests = 2 fetch at once, each up to max(max_fetched_bytes = 64 MiB,
# PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES), held about four times over: the blob, the payload, the decrypted payload,
# the answer) and what it needs besides (Python, aiohttp, 16 requests of at most 6 MiB in flight).
# tests/deploy checks these against codec_server.Limits.
CODEC_SERVER_FETCHING_REQUESTS = 2
CODEC_SERVER_MIN_FETCHED_BYTES = 64 * 1024 * 1024
CODEC_SERVER_MEMORY_BASE_BYTES = 192 * 1024 * 1024
# The sign-in variables (config.py): with both, every request needs a token the issuer signed (codec_auth.py).
OIDC_ISSUER, OIDC_AUDIENCE = "CODEC_SERVER_OIDC_ISSUER", "CODEC_SERVER_OIDC_AUDIENCE"


def _check_codec_server(parser: Parser, app: Settings) -> None:
    """The deployed codec server (CODEC_SERVER_DEPLOY=true) must have something to decode, must not let anyone in
    who reaches it unless told to, and needs an identity for what it reads in Azure, a Service name and, with an
    Ingress, its certificate."""
    for variable_name in (
        "CODEC_SERVER_REPLICAS",
        "CODEC_SERVER_AZURE_CLIENT_ID",
        "CODEC_SERVER_INGRESS_HOST",
        "CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI",
        "CODEC_SERVER_ALLOW_UNAUTHENTICATED",
    ):
        parser.value(variable_name)
    if parser.value("CODEC_SERVER_DEPLOY") is not True:
        return
    values = parser.variables
    for request, limit in (
        ("CODEC_SERVER_CPU_REQUEST", "CODEC_SERVER_CPU_LIMIT"),
        ("CODEC_SERVER_MEMORY_REQUEST", "CODEC_SERVER_MEMORY_LIMIT"),
    ):
        request_value, limit_value = parser.value(request), parser.value(limit)
        if request_value and limit_value and quantity(request_value) > quantity(limit_value):
            parser.problems.append(
                f"{request}={request_value} is more than {limit}={limit_value}; a request must not exceed its limit"
            )
    if not (app.encryption.enabled or app.payload_storage.enabled):
        parser.problems.append(
            "CODEC_SERVER_DEPLOY=true but neither payload encryption nor payload storage is configured, so the codec "
            "server would have nothing to decode: set KEYVAULT_URL and KEYVAULT_SECRET_NAME (or "
            "PAYLOAD_STORAGE_ACCOUNT_URL), or set CODEC_SERVER_DEPLOY=false"
        )
    signed_in = bool(parser.raw(OIDC_ISSUER) and parser.raw(OIDC_AUDIENCE))
    allowed = parser.value("CODEC_SERVER_ALLOW_UNAUTHENTICATED") is True
    if not signed_in and not parser.raw("CODEC_SERVER_TOKEN") and not allowed:
        parser.problems.append(
            "CODEC_SERVER_DEPLOY=true without sign-in: anyone who reaches the codec server could decrypt every "
            f"payload; set {OIDC_ISSUER} and {OIDC_AUDIENCE} (users of the Web UI sign in, docs/deploy.md#codec-server)"
            ", or CODEC_SERVER_TOKEN (CLI and scripts only), or CODEC_SERVER_ALLOW_UNAUTHENTICATED=true if the "
            "network alone decides who reaches it"
        )
    identity_needed = [name for name in ("KEYVAULT_URL", "PAYLOAD_STORAGE_ACCOUNT_URL") if parser.raw(name)]
    node_identity = parser.value("USE_NODE_IDENTITY") is True
    if identity_needed and not parser.raw("CODEC_SERVER_AZURE_CLIENT_ID") and not node_identity:
        parser.problems.append(
            f"CODEC_SERVER_DEPLOY=true with {' and '.join(identity_needed)} but CODEC_SERVER_AZURE_CLIENT_ID is not "
            "set: the codec server reads them with a workload identity of its own, with read-only roles; create it "
            "as docs/deploy.md#codec-server says and set CODEC_SERVER_AZURE_CLIENT_ID to its client ID"
        )
    host, certificate = parser.raw("CODEC_SERVER_INGRESS_HOST"), parser.raw("CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI")
    if host and not certificate:
        parser.problems.append(
            f"CODEC_SERVER_INGRESS_HOST={host} needs CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI: the Ingress serves "
            "the codec server only over HTTPS, with a certificate for that host from Key Vault (tokens and decrypted "
            "payloads cross it); give the certificate's URI, or leave the host empty for no Ingress"
        )
    elif certificate and not host:
        parser.problems.append(
            "CODEC_SERVER_TLS_KEYVAULT_CERTIFICATE_URI is set but CODEC_SERVER_INGRESS_HOST is not: the certificate "
            "is for the Ingress; set the host it is for, or remove the URI"
        )
    service = values["APP_NAME"] + CODEC_SERVER_SUFFIX
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", service):
        parser.problems.append(
            f"CODEC_SERVER_DEPLOY=true names the codec server's Service {service!r} after APP_NAME: a Service name "
            f"starts with a letter and has at most 63 characters; use an APP_NAME that starts with a letter and has "
            f"at most {63 - len(CODEC_SERVER_SUFFIX)} characters"
        )
    _check_codec_server_memory(parser, app)


def _check_codec_server_memory(parser: Parser, app: Settings) -> None:
    """With payload storage, CODEC_SERVER_MEMORY_LIMIT leaves room for the requests that fetch at once."""
    storage, limit = app.payload_storage, parser.value("CODEC_SERVER_MEMORY_LIMIT")
    if not storage.enabled or not limit or storage.max_payload_bytes is None:
        return
    fetched = max(CODEC_SERVER_MIN_FETCHED_BYTES, storage.max_payload_bytes)
    needed = CODEC_SERVER_FETCHING_REQUESTS * PAYLOAD_MEMORY_COPIES * fetched + CODEC_SERVER_MEMORY_BASE_BYTES
    if quantity(limit) < needed:
        parser.problems.append(
            f"CODEC_SERVER_MEMORY_LIMIT={limit} leaves too little room for payload storage: "
            f"{CODEC_SERVER_FETCHING_REQUESTS} requests may each fetch {fetched // (1024 * 1024)}Mi at once and hold "
            f"it {PAYLOAD_MEMORY_COPIES} times over; set CODEC_SERVER_MEMORY_LIMIT to at least "
            f"{-(-needed // (1024 * 1024))}Mi or lower PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES"
        )


def _codec_server_warnings(parser: Parser) -> list[str]:
    """Codec server settings that are allowed but will not do what one might expect in the cluster."""
    values = parser.variables
    deployed = _unchecked(parser, "CODEC_SERVER_DEPLOY") is True
    if not deployed:
        unused = [name for name in ("CODEC_SERVER_INGRESS_HOST", "CODEC_SERVER_AZURE_CLIENT_ID") if values[name]]
        return [f"{name} has no effect with CODEC_SERVER_DEPLOY=false" for name in unused]
    warnings = []
    if _unchecked(parser, "CODEC_SERVER_ALLOW_UNAUTHENTICATED") is True and not values[OIDC_ISSUER]:
        if not values["CODEC_SERVER_TOKEN"]:
            warnings.append(
                "CODEC_SERVER_ALLOW_UNAUTHENTICATED=true: the deployed codec server decrypts payloads for anyone who "
                "reaches it"
            )
    if (
        values["CODEC_SERVER_INGRESS_HOST"]
        and values["CODEC_SERVER_CORS_ORIGINS"] == config.DEFAULTS["CODEC_SERVER_CORS_ORIGINS"]
    ):
        warnings.append(
            "CODEC_SERVER_INGRESS_HOST is set but CODEC_SERVER_CORS_ORIGINS is the local dev UI's origin: a browser "
            "refuses the Web UI's calls until its origin (such as https://cloud.temporal.io) is listed there"
        )
    client_id = values["CODEC_SERVER_AZURE_CLIENT_ID"]
    if client_id and client_id.lower() == values["AZURE_CLIENT_ID"].lower():
        warnings.append(
            "CODEC_SERVER_AZURE_CLIENT_ID is the worker's AZURE_CLIENT_ID: the codec server then has the worker's "
            "roles (writing blobs) too; give it an identity of its own with read-only roles"
        )
    if _unchecked(parser, "CODEC_SERVER_ENCODE") is True:
        warnings.append("CODEC_SERVER_ENCODE=true is deployed: whoever may write can make payloads that workers trust")
    return warnings


def _warnings(parser: Parser) -> list[str]:
    values = parser.variables
    warnings = []
    if config.is_local_address(values["TEMPORAL_ADDRESS"]):
        warnings.append(
            f"TEMPORAL_ADDRESS={values['TEMPORAL_ADDRESS']} points at the pod itself in the cluster; "
            "use the Temporal Cloud or in-cluster address"
        )
    for variable in VARIABLES:
        value = values[variable.name]
        if variable.scope is Scope.TEST and value != variable.default and config.is_text(value):
            warnings.append(f"{variable.name}={value} is a test-only setting and is not deployed")
    network_policy, vault = _unchecked(parser, "NETWORK_POLICY") is not False, _unchecked(parser, "KEYVAULT_URL")
    if not network_policy and _unchecked(parser, "NETWORK_POLICY_EGRESS_CIDRS"):
        warnings.append("NETWORK_POLICY_EGRESS_CIDRS has no effect with NETWORK_POLICY=false")
    scrapers = _unchecked(parser, "NETWORK_POLICY_METRICS_FROM") or ()
    if network_policy and values["METRICS_SCRAPE"] == "prometheus-operator" and scrapers == (METRICS_FROM_AMA,):
        warnings.append(
            "METRICS_SCRAPE=prometheus-operator, but the NetworkPolicy admits only Azure Monitor's ama-metrics to the "
            "metrics port: add your Prometheus' namespace to NETWORK_POLICY_METRICS_FROM (such as "
            "ama-metrics,namespace:monitoring)"
        )
    if network_policy and vault and ".privatelink." in (urlsplit(vault).hostname or ""):
        warnings.append(
            f"KEYVAULT_URL={vault} looks like a private endpoint, and the NetworkPolicy allows HTTPS only to public "
            "addresses: add the endpoint's address to NETWORK_POLICY_EGRESS_CIDRS (or set NETWORK_POLICY=false)"
        )
    return warnings


def _payload_storage_warnings(parser: Parser) -> list[str]:
    """Payload storage settings that work on a laptop but not as one might expect in the cluster."""
    values = parser.variables
    if not (values["PAYLOAD_STORAGE_ACCOUNT_URL"] or values["PAYLOAD_STORAGE_CONNECTION_STRING"]):
        return []
    warnings = []
    if values["PAYLOAD_STORAGE_CONNECTION_STRING"]:
        warnings.append(
            "PAYLOAD_STORAGE_CONNECTION_STRING puts an account key or SAS into the pod's Secret; in the cluster "
            "prefer PAYLOAD_STORAGE_ACCOUNT_URL with the workload identity (AZURE_CLIENT_ID)"
        )
    elif not values["AZURE_CLIENT_ID"]:
        warnings.append(
            "PAYLOAD_STORAGE_ACCOUNT_URL is set but AZURE_CLIENT_ID is not: the pod has no Azure identity to sign in "
            "to the storage account with (docs/deploy.md, workload identity)"
        )
    if retention_warning(values):
        warnings.append(retention_warning(values))
    return warnings


def retention_warning(values: Mapping[str, str]) -> str:
    """Payload storage on and no retention: what to say about blobs that are never deleted (else "")."""
    if not (values["PAYLOAD_STORAGE_ACCOUNT_URL"] or values["PAYLOAD_STORAGE_CONNECTION_STRING"]):
        return ""
    if values["PAYLOAD_STORAGE_RETENTION_DAYS"]:
        return ""
    return (
        "PAYLOAD_STORAGE_RETENTION_DAYS is not set: payload blobs are never deleted; set it to at least the "
        "namespace's retention plus your longest workflow run to render a lifecycle-management policy"
    )


def storage_account_name(account_url: str) -> str:
    """The account of a blob endpoint: the host's first label, or the path's for an emulator (https://IP:PORT/ACCOUNT)."""
    parts = urlsplit(account_url)
    path = parts.path.strip("/")
    host = parts.hostname or ""
    return path if path else host.split(".", 1)[0]


def _check_kube_context(parser: Parser) -> None:
    parser.value("RESOURCE_GROUP")  # both go into the az aks commands the scripts suggest
    parser.value("AKS_CLUSTER_NAME")
    if not parser.variables["KUBE_CONTEXT"]:
        parser.problems.append(
            "KUBE_CONTEXT: not set; set AKS_CLUSTER_NAME (the context az aks get-credentials creates) or KUBE_CONTEXT"
        )
    else:
        parser.value("KUBE_CONTEXT")


def _check_azure_and_build(parser: Parser) -> None:
    values = parser.variables
    if not values["AZURE_SUBSCRIPTION_ID"]:
        parser.problems.append(
            "AZURE_SUBSCRIPTION_ID: not set; give the subscription to deploy into (az account list --output table)"
        )
    parser.value("AZURE_SUBSCRIPTION_ID")
    image, acr_name = values["APP_IMAGE"], values["ACR_NAME"]
    if not acr_name:
        if image:
            parser.problems.append("ACR_NAME: not set; deploy.sh pushes the image to this registry")
    elif image and not image.startswith(f"{acr_login_server(acr_name)}/"):
        parser.problems.append(
            f"APP_IMAGE={image!r} is not in the registry ACR_NAME={acr_name} ({acr_login_server(acr_name)}/...), "
            "where deploy.sh pushes"
        )
    if parser.value("BUILD_MODE") == "acr":
        if "," in values["BUILD_PLATFORMS"]:
            parser.problem(
                "BUILD_PLATFORMS",
                "az acr build builds one platform per call; give one, such as linux/amd64 (or use BUILD_MODE=buildx)",
            )
        else:
            parser.value("BUILD_PLATFORMS")
    else:
        parser.value("BUILD_PLATFORMS")
    parser.value("ROLLOUT_TIMEOUT")
