"""Configuration: the catalog of every variable, and the only module that reads the environment and `config.env`.

Public API:
    VARIABLES                      # the app's part of the catalog: every variable the pod, start.sh or the tests read
    load_settings() -> Settings    # the app's validated, immutable settings, or ConfigError listing every problem
    load_settings_or_exit()        # the same for a command-line entry point: problems printed, exit status 2
    read_variables() -> dict       # every variable's text after precedence (the deploy side builds on it)
    Parser                         # turns that text into typed values by a catalog's kinds, collecting problems

Each variable is declared once, in one catalog: its name, its default, how its text is checked and
converted, whether it is a secret, and where it goes (`Scope`): into the worker's pod (the ConfigMap, or the
app Secret when it is secret), into the deployed codec server's pod only, only on this machine, only in
tests, or only to the deploy scripts. A worker variable the deployed codec server reads as well (the key's
vault, the payload storage container) says so (`Variable.codec_server`) and goes into both pods.
This module, which the image runs, declares the app's variables; deploy/deploy_config.py, which only runs
on the operator's machine, extends the catalog with the deploy variables (registry, cluster, resources,
rollouts) and their own kinds. Everything else follows from the declaration: `source_config.sh --show`
hides secrets, the manifests put each variable where its scope says, and a new variable is one more line.

Precedence is the same for every program and script: the process environment wins over `config.env`,
which wins over the defaults. An empty value counts as unset. `config.env` is read as KEY=VALUE data by
python-dotenv with interpolation off, so `$` and quotes arrive exactly as written.

Temporal connection variables are the ones the `temporal` CLI and the SDK's `temporalio.envconfig`
read, and `temporalio.envconfig` turns them into `Client.connect` arguments: TLS is on when an API key
or a TLS file is given, unless `TEMPORAL_TLS=false`; `TEMPORAL_TLS=true` turns it on for any address.
Nothing is guessed from the address, so a self-hosted in-cluster server such as
`temporal-frontend.temporal.svc:7233` connects in plain text like the dev server.
The API key and the client certificate may instead live in Key Vault
(TEMPORAL_API_KEY_KEYVAULT_SECRET, TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE, in KEYVAULT_URL's vault):
they turn TLS on the same way, and bootstrap.py reads them and keeps them current.

`python config.py check` validates the app's settings without starting anything.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import log_format

CONFIG_ENV_FILE_VARIABLE = "CONFIG_ENV_FILE"
DEFAULT_CONFIG_ENV_FILE = Path(__file__).resolve().parent / "config.env"

# The client loop's fastest pace: 0 would start workflows as fast as the server answers, forever.
MIN_CLIENT_INTERVAL_SECONDS = 0.1
# A week: far beyond YourWorkflow's worst case (three activities of at most 30 minutes each), and a bound,
# since no timedelta holds an unbounded number of seconds.
MAX_CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS = 7 * 86400.0
# A day. Far more overflows the worker's timedelta (about 8.6e13 s) and, sooner or later, the pod's
# terminationGracePeriodSeconds (an int64); no shutdown needs to wait that long.
MAX_WORKER_SHUTDOWN_TIMEOUT_SECONDS = 86400.0
# Temporal refuses a payload over 2 MiB (the server's limit.blobSize.error): storing payloads externally only
# from a larger size would never store anything in time.
MAX_PAYLOAD_STORAGE_THRESHOLD_BYTES = 2 * 1024 * 1024
# The largest payload the storage driver accepts by default: the SDK's own drivers' 50 MiB (S3, GCS).
DEFAULT_PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES = 50 * 1024 * 1024
# Payloads this large or larger are stored in the container by default: far below Temporal's 2 MiB limit, far
# above what most workflows carry.
DEFAULT_PAYLOAD_STORAGE_THRESHOLD_BYTES = 256 * 1024
DEFAULT_PAYLOAD_STORAGE_CONTAINER = "temporal-payloads"
# A protobuf message (a Payload) cannot exceed 2 GiB; a single payload of 1 GiB is already beyond any pod.
MAX_PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024
# What one workflow task (or one client call) may fetch from payload storage, all its references together, by
# default: one largest payload (50 MiB) with room to spare. A task holds what it fetches several times over
# (the blob, the payload, the decrypted payload, the value), so the rendered Deployment needs MEMORY_LIMIT of
# at least 4 times this plus 128 MiB (deploy/deploy_config.py checks it): 384 MiB for the default, under 512Mi.
DEFAULT_PAYLOAD_STORAGE_MAX_TASK_BYTES = 64 * 1024 * 1024
# The task budget's ceiling: two largest payloads; more is beyond any pod.
MAX_PAYLOAD_STORAGE_MAX_TASK_BYTES = 2 * MAX_PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES
# The problem with a value the environment gave as bytes that are not UTF-8 (the value is never shown).
NOT_TEXT = "holds bytes that are not UTF-8 text; write the value in UTF-8"
HIDDEN = "<hidden>"

# The words temporalio.envconfig and the `temporal` CLI accept, so one config.env means the same to all.
_TRUE_WORDS = frozenset({"true", "1"})
_FALSE_WORDS = frozenset({"false", "0"})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
# How Key Vault is read: `auto` reads it with the standard library under AKS workload identity (keyvault.py's
# lean reader, no Azure SDK in the process) and with the Azure SDK otherwise; `azure-sdk` always with the SDK.
KEYVAULT_CLIENTS = ("auto", "azure-sdk")
# What AKS's workload identity webhook sets in a pod whose service account is annotated with a client id; the
# same variables azure-identity's WorkloadIdentityCredential reads. Not in the catalog: the cluster sets them.
WORKLOAD_IDENTITY_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE")
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
# azure-identity's check of a tenant id before it goes into a token URL.
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9.-]+")
# What makes azure-identity's EnvironmentCredential, ahead of workload identity in DefaultAzureCredential's chain.
ENVIRONMENT_CREDENTIAL_VARIABLES = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME")
WORKER_TUNERS = ("fixed", "resource-based")


class ConfigError(Exception):
    """Every configuration problem found, one human-readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# ---------------------------------------------------------------- kinds: text -> value, or ValueError


def text(raw: str) -> str:
    """Any text."""
    return raw


def required_text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


def name(raw: str) -> str:
    """A Temporal name (namespace, task queue): any text but control characters and surrounding spaces."""
    if raw != raw.strip() or not raw or has_control_characters(raw):
        raise ValueError("must be a non-empty name without surrounding spaces or control characters")
    return raw


def boolean(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError("must be true or false")


def seconds(minimum: float, maximum: float = math.inf) -> Callable[[str], float]:
    bounds = f"at least {minimum:g}" + (f" and at most {maximum:g}" if maximum < math.inf else "")

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number of seconds, {bounds}") from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise ValueError(f"must be a number of seconds, {bounds}")
        return value

    return parse


def port(lowest: int = 1) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        # No leading zeros: YAML and bash arithmetic (start.sh) read 0010 as octal 8.
        plain = raw.isascii() and raw.isdigit() and len(raw) <= 5 and (raw == "0" or not raw.startswith("0"))
        if not plain or not lowest <= int(raw) <= 65535:
            raise ValueError(f"port must be a whole number from {lowest} to 65535, without leading zeros")
        return int(raw)

    return parse


def is_local_address(address: str) -> bool:
    """Whether a host:port names this machine (localhost, 127.x.x.x, [::1]): where ./start.sh runs the dev server,
    and, in a pod, the pod itself."""
    host = address.rpartition(":")[0]
    return host in ("localhost", "[::1]", "::1") or host.startswith("127.")


def address(raw: str) -> str:
    host, separator, port_text = raw.rpartition(":")
    if not separator or not host or has_control_characters(raw) or " " in raw:
        raise ValueError("must be host:port, for example localhost:7233")
    port()(port_text)
    return raw


def log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return level


def readable_file(raw: str) -> str:
    path = Path(raw)
    try:
        readable = path.is_file() and os.access(path, os.R_OK)
    except OSError:  # a path the OS refuses to look up, such as a name too long
        readable = False
    if not readable:
        raise ValueError("file does not exist or is not readable; give the path to a readable file")
    return raw


def https_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname or has_control_characters(raw) or " " in raw:
        raise ValueError("must be an https URL, for example https://my-vault.vault.azure.net/")
    try:
        parts.port  # noqa: B018  (urlsplit checks the port only when asked)
    except ValueError:
        raise ValueError("has a port that is not a whole number from 0 to 65535") from None
    return raw


# Azure's naming rules (learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules), checked
# where a name is given so that a name Azure would refuse is refused here, naming the variable:
#   Microsoft.KeyVault/vaults          3-24 alphanumerics and hyphens; start with a letter, end with a letter or
#                                      digit; no consecutive hyphens (the first label of https://NAME.vault.azure.net)
#   Microsoft.KeyVault/vaults/secrets  1-127 alphanumerics and hyphens (KEYVAULT_NAME, below)
#   Microsoft.Storage/storageAccounts  3-24 lowercase letters and digits (https://NAME.blob.core.windows.net)
# Only Azure's own hosts are held to them: an emulator or a test stand-in (https://127.0.0.1:PORT/) is not Azure.
KEYVAULT_HOST_SUFFIXES = (".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net", ".vault.microsoftazure.de")
BLOB_HOST_SUFFIXES = (
    ".blob.core.windows.net",
    ".blob.core.chinacloudapi.cn",
    ".blob.core.usgovcloudapi.net",
    ".blob.core.cloudapi.de",
    ".blob.storage.azure.net",
)
_VAULT_NAME = re.compile(r"(?=.{3,24}$)[a-z](?!.*--)[a-z0-9-]*[a-z0-9]")
_STORAGE_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")


def keyvault_url(raw: str) -> str:
    """The vault's https URL; for an Azure vault host, a vault name Azure allows and nothing after the host."""
    https_url(raw)
    parts = urlsplit(raw)
    host = parts.hostname or ""
    if not host.endswith(KEYVAULT_HOST_SUFFIXES):
        return raw
    name = host.split(".", 1)[0]
    if not _VAULT_NAME.fullmatch(name):
        raise ValueError(
            f"names the vault {name!r}, which Azure does not allow: a Key Vault name is 3 to 24 letters, digits and "
            "'-', starting with a letter, ending with a letter or digit, without consecutive '-'"
        )
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be the vault's URL alone, for example https://my-vault.vault.azure.net/")
    return raw


def storage_account_url(raw: str) -> str:
    """The blob endpoint of a storage account: https://ACCOUNT.blob.core.windows.net/, or an emulator's
    https://HOST:PORT/ACCOUNT; never a SAS token or any other query (the identity authenticates)."""
    parts = urlsplit(raw)
    example = "for example https://mystorageaccount.blob.core.windows.net/"
    if parts.scheme != "https" or not parts.hostname or has_control_characters(raw) or " " in raw:
        raise ValueError(f"must be the storage account's https blob endpoint, {example}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(
            f"must be the bare account URL, {example}: no SAS token, key or query (the Azure identity authenticates)"
        )
    if parts.path.strip("/").count("/") > 0:
        raise ValueError(f"must be the account URL, not a container or blob URL, {example}")
    try:
        parts.port  # noqa: B018  (urlsplit checks the port only when asked)
    except ValueError:
        raise ValueError("has a port that is not a whole number from 0 to 65535") from None
    host = parts.hostname or ""
    if host.endswith(BLOB_HOST_SUFFIXES):
        account = host.split(".", 1)[0]
        if not _STORAGE_ACCOUNT_NAME.fullmatch(account):
            raise ValueError(
                f"names the storage account {account!r}, which Azure does not allow: 3 to 24 lowercase letters "
                f"and digits, {example}"
            )
        if parts.path.strip("/"):
            raise ValueError(f"must be the account URL alone, {example}")
    return raw


# The keys of an Azure Storage connection string that tell where the blob service is and how to sign in.
_CONNECTION_STRING_ENDPOINT_KEYS = frozenset({"blobendpoint", "accountname", "usedevelopmentstorage"})
_CONNECTION_STRING_CREDENTIAL_KEYS = frozenset({"accountkey", "sharedaccesssignature", "usedevelopmentstorage"})


def connection_string_fields(raw: str) -> dict[str, str]:
    """The KEY=VALUE fields of an Azure Storage connection string: keys lowercased (Azure reads them in any
    case), keys and values stripped, a final ';' allowed; ValueError (never showing it) when it is not one.
    The one parser of the connection string: storage_connection_string checks it, payload_storage reads it."""
    pairs = [part.partition("=") for part in raw.strip().rstrip(";").split(";")]
    if has_control_characters(raw) or any(not separator or not key.strip() for key, separator, _ in pairs):
        raise ValueError(
            "must be an Azure Storage connection string, KEY=VALUE pairs separated by ';' "
            "(az storage account show-connection-string, or Azurite's, see config.env.example)"
        )
    return {key.strip().lower(): value.strip() for key, _, value in pairs}


def storage_connection_string(raw: str) -> str:
    """An Azure Storage connection string (KEY=VALUE;...) with an endpoint and a key or SAS; never shown."""
    keys = connection_string_fields(raw).keys()
    if not keys & _CONNECTION_STRING_ENDPOINT_KEYS or not keys & _CONNECTION_STRING_CREDENTIAL_KEYS:
        raise ValueError(
            "must name the account (AccountName or BlobEndpoint) and hold an AccountKey or SharedAccessSignature; "
            "copy it whole from az storage account show-connection-string, or Azurite's from config.env.example"
        )
    return raw


def container_name(raw: str) -> str:
    """An Azure Blob Storage container name."""
    if not re.fullmatch(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*", raw):
        raise ValueError(
            "must be a container name: 3 to 63 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return raw


def byte_count(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"0|[1-9][0-9]{0,11}", raw) or not minimum <= int(raw) <= maximum:
            raise ValueError(f"must be a whole number of bytes from {minimum} to {maximum}")
        return int(raw)

    return parse


def origins(raw: str) -> tuple[str, ...]:
    found = tuple(origin.strip() for origin in raw.split(",") if origin.strip())
    for origin in found:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"{origin!r} is not an origin; give comma-separated origins like http://localhost:8233")
    return tuple(origin.rstrip("/") for origin in found)


def matching(pattern: str, message: str) -> Callable[[str], str]:
    """Text that matches a regular expression as a whole."""
    compiled = re.compile(pattern)

    def parse(raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ValueError(message)
        return raw

    return parse


def whole_number(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"0|[1-9][0-9]{0,5}", raw) or int(raw) < minimum:
            raise ValueError(f"must be a whole number, at least {minimum}")
        return int(raw)

    return parse


def fraction(raw: str) -> float:
    """A share such as a target CPU usage: more than 0, at most 1."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number more than 0 and at most 1, such as 0.8") from None
    if not math.isfinite(value) or not 0 < value <= 1:
        raise ValueError("must be a number more than 0 and at most 1, such as 0.8")
    return value


# The roles a codec server grants on a namespace, weakest first: each includes those before it (decode needs read,
# encode needs write), as in Temporal's own `<namespace>:<role>` permissions.
CODEC_ROLES = ("read", "write", "admin")
# How CODEC_SERVER_OIDC_CLAIM's values grant roles: `temporal` values are `<namespace>:<role>` themselves (Temporal's
# claim format); `mapped` values (Entra app roles, group ids, emails) are looked up in CODEC_SERVER_OIDC_ROLE_MAP.
OIDC_CLAIM_FORMATS = ("temporal", "mapped")
# Every namespace, in a role map's grant (`Codec.Admin=*:read`).
ALL_NAMESPACES = "*"


def oidc_issuer(raw: str) -> str:
    """An OIDC issuer: an https URL without query or fragment, exactly as the tokens' `iss` claim spells it."""
    try:
        https_url(raw)
    except ValueError as error:
        raise ValueError(
            f"{error}; give the issuer as its tokens name it, such as https://login.microsoftonline.com/TENANT_ID/v2.0"
        ) from None
    parts = urlsplit(raw)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be the issuer's URL alone: no query, fragment or user name")
    return raw


def role_map(raw: str) -> tuple[tuple[str, str, str], ...]:
    """`VALUE=NAMESPACE:ROLE` entries, comma-separated: a claim value (an Entra app role, a group id, an email) and
    the role it grants on a namespace (`*` for all). A value may repeat, one grant each."""
    entries = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        value, equals, grant = entry.rpartition("=")
        namespace, colon, role = grant.rpartition(":")
        if not (equals and colon and value.strip() and namespace.strip()) or has_control_characters(entry):
            raise ValueError(
                f"entry {entry[:80]!r} is not VALUE=NAMESPACE:ROLE; for example "
                "Codec.Read.Default=default:read,Codec.Write.Orders=orders:write"
            )
        if role not in CODEC_ROLES:
            raise ValueError(f"entry {entry[:80]!r} grants role {role[:20]!r}; the roles are {', '.join(CODEC_ROLES)}")
        entries.append((value.strip(), namespace.strip(), role))
    if not entries:
        raise ValueError("holds no entry; give VALUE=NAMESPACE:ROLE entries, comma-separated")
    return tuple(entries)


def one_of(*choices: str, message: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(message)
        return raw

    return parse


def ip_address(raw: str) -> str:
    """An IP address to listen on (what a socket binds to: no host name)."""
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ValueError(
            "must be an IP address to listen on, such as 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from None


KEYVAULT_NAME = matching(
    r"[0-9A-Za-z-]{1,127}",
    "must be a Key Vault secret or certificate name: 1 to 127 letters, digits and '-'",
)

# Worker Deployment Versioning names, checked as the temporal-worker-controller checks them: a build id is also a
# Kubernetes label value; a deployment name may hold the controller's '/' (<namespace>/<name>), never Temporal's
# version delimiters '.' and ':'.
BUILD_ID = matching(
    r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?",
    "must be at most 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit "
    "(a Kubernetes label value, as the temporal-worker-controller requires)",
)
# The longest Worker Deployment name the temporal-worker-controller accepts (a Kubernetes label value's limit).
MAX_WORKER_DEPLOYMENT_NAME = 63
WORKER_DEPLOYMENT_NAME = matching(
    rf"[A-Za-z0-9]([A-Za-z0-9_/-]{{0,{MAX_WORKER_DEPLOYMENT_NAME - 2}}}[A-Za-z0-9])?",
    f"must be at most {MAX_WORKER_DEPLOYMENT_NAME} letters, digits, '-', '_' or '/', starting and ending with a "
    "letter or digit (Temporal refuses '.' and ':' in it)",
)
VERSIONING_BEHAVIORS = ("pinned", "auto-upgrade")
DEFAULT_VERSIONING_BEHAVIOR = "pinned"


# ---------------------------------------------------------------- the catalog


class Scope(enum.Enum):
    """Where a variable is used, and so where it goes."""

    POD = "pod"
    """Read by the worker: deployed in the ConfigMap, or in the app Secret when the variable is secret (and into
    the codec server's too when `Variable.codec_server` says it reads it as well)."""
    CODEC_SERVER = "codec-server"
    """Read only by the codec server: deployed (CODEC_SERVER_DEPLOY=true) in the codec server's own ConfigMap, or
    its own Secret when secret; never in the worker's. `./start.sh` reads it on this machine like any other."""
    LOCAL = "local"
    """Read only on this machine (start.sh, a codec server run there): never deployed."""
    TEST = "test"
    """A test-only override of the app's behaviour: never deployed, and a warning when set for a deployment."""
    DEPLOY = "deploy"
    """Read by the deploy scripts (build, registry, cluster); never reaches the app. Declared by the deploy side
    (deploy/deploy_config.py), not here."""


@dataclass(frozen=True)
class Variable:
    """One configuration variable, declared once."""

    name: str
    """The environment variable's name, which is also its name in config.env."""
    parse: Callable[[str], Any] = text
    """Turns the text into a value, or raises ValueError saying what is wrong and how to fix it."""
    default: str = ""
    """The value when neither the environment nor config.env gives one; empty means unset."""
    secret: bool = False
    """Never printed, never in a ConfigMap, on a command line or in the scripts' shell."""
    scope: Scope = Scope.POD
    """Where the variable is used and deployed."""
    codec_server: bool = False
    """A POD variable the deployed codec server reads too (Key Vault, payload storage, logging): it goes into the
    codec server's ConfigMap or Secret as well as the worker's."""


VARIABLES: tuple[Variable, ...] = (
    # Temporal connection (names shared with the `temporal` CLI and temporalio.envconfig)
    Variable("TEMPORAL_ADDRESS", address, "localhost:7233"),
    Variable("TEMPORAL_NAMESPACE", name, "default"),
    Variable("TEMPORAL_API_KEY", secret=True),
    Variable("TEMPORAL_TLS", boolean),
    Variable("TEMPORAL_TLS_CLIENT_CERT_PATH", readable_file),
    Variable("TEMPORAL_TLS_CLIENT_KEY_PATH", readable_file),
    Variable("TEMPORAL_TLS_SERVER_CA_CERT_PATH", readable_file),
    Variable("TEMPORAL_TLS_SERVER_NAME"),
    # Temporal credentials read from KEYVAULT_URL's vault instead (re-read every KEYVAULT_REFRESH_SECONDS)
    Variable("TEMPORAL_API_KEY_KEYVAULT_SECRET", KEYVAULT_NAME),
    Variable("TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE", KEYVAULT_NAME),
    # Application
    Variable("TEMPORAL_TASK_QUEUE", name, "test-task-queue"),
    Variable("CLIENT_INTERVAL_SECONDS", seconds(MIN_CLIENT_INTERVAL_SECONDS), "10"),
    Variable("CLIENT_MAX_PENDING_WORKFLOWS", whole_number(1), "100"),
    Variable(
        "CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS", seconds(1.0, MAX_CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS), "7200"
    ),
    Variable("WORKER_SHUTDOWN_TIMEOUT_SECONDS", seconds(0.0, MAX_WORKER_SHUTDOWN_TIMEOUT_SECONDS), "30"),
    Variable("LOG_LEVEL", log_level, "INFO", codec_server=True),
    # Empty: text on this machine; the rendered ConfigMap sets json for the cluster (manifests.py).
    Variable("LOG_FORMAT", one_of(*LOG_FORMATS, message="must be text or json"), codec_server=True),
    Variable("ACTIVITY_SIMULATED_WORK_SECONDS", seconds(0.0), "0"),
    # Local dev server started by ./start.sh (empty = the address's port + 1000, as the temporal CLI does)
    Variable("TEMPORAL_DEV_SERVER_UI_PORT", port(), scope=Scope.LOCAL),
    # Worker health and metrics (Kubernetes probes, Prometheus)
    Variable("METRICS_PORT", port(lowest=0), "9000"),
    # Metrics and health endpoints: loopback on a laptop; the rendered ConfigMap sets 0.0.0.0 (kubelet, Prometheus).
    Variable("METRICS_BIND_ADDRESS", ip_address, "127.0.0.1"),
    Variable("HEALTH_PORT", port(lowest=0), "9001"),
    Variable("HEALTH_CHECK_INTERVAL_SECONDS", seconds(1.0, 3600.0), "10"),
    # Worker tuning (temporalio.worker.Worker options)
    Variable("WORKER_TUNER", one_of(*WORKER_TUNERS, message="must be fixed or resource-based"), "fixed"),
    Variable("WORKER_MAX_CONCURRENT_ACTIVITIES", whole_number(1), "100"),
    Variable("WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", whole_number(2), "100"),
    Variable("WORKER_MAX_CACHED_WORKFLOWS", whole_number(0), "1000"),
    Variable("WORKER_TUNER_TARGET_CPU", fraction, "0.8"),
    Variable("WORKER_TUNER_TARGET_MEMORY", fraction, "0.8"),
    Variable("WORKER_POLLER_AUTOSCALING", boolean, "false"),
    # Payload encryption with a key from Azure Key Vault
    Variable("KEYVAULT_URL", keyvault_url, codec_server=True),
    Variable("KEYVAULT_SECRET_NAME", KEYVAULT_NAME, codec_server=True),
    Variable("KEYVAULT_REFRESH_SECONDS", seconds(1.0), "300", codec_server=True),
    Variable("KEYVAULT_STARTUP_TIMEOUT_SECONDS", seconds(1.0), "30", codec_server=True),
    Variable("KEYVAULT_FAILED_FETCH_RETRY_SECONDS", seconds(1.0), "60", codec_server=True),
    Variable(
        "KEYVAULT_CLIENT",
        one_of(*KEYVAULT_CLIENTS, message="must be auto or azure-sdk"),
        "auto",
        codec_server=True,
    ),
    Variable("KEYVAULT_CA_FILE", readable_file, scope=Scope.TEST),
    Variable("KEYVAULT_VERIFY_CHALLENGE_RESOURCE", boolean, "true", scope=Scope.TEST),
    Variable("ENCRYPTION_REQUIRED", boolean, "false"),
    Variable("ENCRYPTION_ALLOW_PLAINTEXT", boolean, "false"),
    # Large payloads in Azure Blob Storage (Temporal external payload storage)
    Variable("PAYLOAD_STORAGE_ACCOUNT_URL", storage_account_url, codec_server=True),
    Variable("PAYLOAD_STORAGE_CONNECTION_STRING", storage_connection_string, secret=True, codec_server=True),
    Variable("PAYLOAD_STORAGE_CONTAINER", container_name, DEFAULT_PAYLOAD_STORAGE_CONTAINER, codec_server=True),
    Variable(
        "PAYLOAD_STORAGE_THRESHOLD_BYTES",
        byte_count(0, MAX_PAYLOAD_STORAGE_THRESHOLD_BYTES),
        str(DEFAULT_PAYLOAD_STORAGE_THRESHOLD_BYTES),
    ),
    Variable(
        "PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES",
        byte_count(1, MAX_PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES),
        str(DEFAULT_PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES),
        codec_server=True,
    ),
    Variable(
        "PAYLOAD_STORAGE_MAX_TASK_BYTES",
        byte_count(1, MAX_PAYLOAD_STORAGE_MAX_TASK_BYTES),
        str(DEFAULT_PAYLOAD_STORAGE_MAX_TASK_BYTES),
    ),
    Variable("PAYLOAD_STORAGE_CA_FILE", readable_file, scope=Scope.TEST),
    # Codec server (decrypts payloads for the Web UI and CLI): on this machine, or deployed (CODEC_SERVER_DEPLOY)
    # with these in its own ConfigMap and Secret. In the cluster it listens on every interface (the rendered
    # ConfigMap sets CODEC_SERVER_HOST=0.0.0.0) and the Ingress terminates TLS.
    Variable("CODEC_SERVER_HOST", required_text, "127.0.0.1", scope=Scope.CODEC_SERVER),
    Variable("CODEC_SERVER_PORT", port(), "8081", scope=Scope.CODEC_SERVER),
    Variable("CODEC_SERVER_CORS_ORIGINS", origins, "http://localhost:8233", scope=Scope.CODEC_SERVER),
    Variable("CODEC_SERVER_TOKEN", secret=True, scope=Scope.CODEC_SERVER),
    Variable("CODEC_SERVER_ENCODE", boolean, "false", scope=Scope.CODEC_SERVER),
    Variable("CODEC_SERVER_ENCODE_TOKEN", secret=True, scope=Scope.CODEC_SERVER),
    Variable("CODEC_SERVER_TLS_CERT_FILE", readable_file, scope=Scope.LOCAL),
    Variable("CODEC_SERVER_TLS_KEY_FILE", readable_file, scope=Scope.LOCAL),
    # Signed-in users (OIDC): with an issuer, every request needs a bearer JWT from it (codec_auth.py)
    Variable("CODEC_SERVER_OIDC_ISSUER", oidc_issuer, scope=Scope.CODEC_SERVER),
    Variable("CODEC_SERVER_OIDC_AUDIENCE", required_text, scope=Scope.CODEC_SERVER),
    Variable(
        "CODEC_SERVER_OIDC_CLAIM_FORMAT",
        one_of(*OIDC_CLAIM_FORMATS, message="must be temporal or mapped"),
        "temporal",
        scope=Scope.CODEC_SERVER,
    ),
    Variable("CODEC_SERVER_OIDC_CLAIM", required_text, scope=Scope.CODEC_SERVER),
    Variable("CODEC_SERVER_OIDC_ROLE_MAP", role_map, scope=Scope.CODEC_SERVER),
    Variable("CODEC_SERVER_OIDC_CA_FILE", readable_file, scope=Scope.TEST),
    # Worker Deployment Versioning: on when both names are set (each versioned Deployment sets them in the cluster)
    Variable("TEMPORAL_DEPLOYMENT_NAME", WORKER_DEPLOYMENT_NAME),
    Variable("TEMPORAL_WORKER_BUILD_ID", BUILD_ID),
    Variable(
        "WORKER_VERSIONING_BEHAVIOR",
        one_of(*VERSIONING_BEHAVIORS, message="must be pinned or auto-upgrade"),
        DEFAULT_VERSIONING_BEHAVIOR,
    ),
    # --- Your own variables: declare them here, e.g. Variable("DATABASE_PASSWORD", secret=True),
    # --- and read them in load_settings(). A secret reaches the pod from the app Secret.
)
Catalog = Mapping[str, Variable]
CATALOG: Catalog = {variable.name: variable for variable in VARIABLES}
# The app's variables and their defaults ("" = unset by default), in catalog order.
DEFAULTS: dict[str, str] = {variable.name: variable.default for variable in VARIABLES}
SECRET_VARIABLES = frozenset(variable.name for variable in VARIABLES if variable.secret)


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class TemporalSettings:
    """Where and how to connect to Temporal."""

    address: str
    namespace: str
    api_key: str | None = field(default=None, repr=False)
    tls: bool | None = None
    tls_client_cert_path: str | None = None
    tls_client_key_path: str | None = None
    tls_server_ca_cert_path: str | None = None
    tls_server_name: str | None = None
    api_key_keyvault_secret: str | None = None
    """The Key Vault secret that holds the API key, read instead of `api_key`."""
    tls_client_keyvault_certificate: str | None = None
    """The Key Vault certificate (or secret) whose PEM holds the mTLS client certificate and its key, read
    instead of the TLS_CLIENT_* files."""

    @property
    def from_keyvault(self) -> bool:
        """Whether a credential comes from Key Vault (and is kept current there)."""
        return bool(self.api_key_keyvault_secret or self.tls_client_keyvault_certificate)

    def connect_kwargs(
        self, api_key: str | None = None, client_cert: bytes | None = None, client_private_key: bytes | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for `temporalio.client.Client.connect`, built by `temporalio.envconfig`.

        `api_key`, or `client_cert` with `client_private_key`, are the credentials read from Key Vault:
        they turn TLS on as TEMPORAL_API_KEY and the TLS_CLIENT_* files do (TEMPORAL_TLS=false with them is
        refused by the configuration check).
        """
        # Imported here so that the deploy scripts, which never connect, do not pay for the SDK.
        from temporalio.envconfig import ClientConfigProfile
        from temporalio.service import TLSConfig

        profile = ClientConfigProfile.load(disable_file=True, override_env_vars=self._as_envconfig_variables())
        kwargs = dict(profile.to_client_connect_config())
        if api_key is not None:
            kwargs["api_key"] = api_key
            kwargs.setdefault("tls", True)
        if client_cert is not None and client_private_key is not None:
            tls = kwargs.get("tls")
            tls = tls if isinstance(tls, TLSConfig) else TLSConfig()
            kwargs["tls"] = replace(tls, client_cert=client_cert, client_private_key=client_private_key)
        return kwargs

    @property
    def uses_tls(self) -> bool:
        """Whether the connection is encrypted with TLS (for log lines; never guessed from the address)."""
        if self.from_keyvault and self.tls is not False:
            return True
        tls = self.connect_kwargs().get("tls", False)
        return tls is not False

    def _as_envconfig_variables(self) -> dict[str, str]:
        values = {
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": self.namespace,
            "TEMPORAL_API_KEY": self.api_key,
            "TEMPORAL_TLS": None if self.tls is None else str(self.tls).lower(),
            "TEMPORAL_TLS_CLIENT_CERT_PATH": self.tls_client_cert_path,
            "TEMPORAL_TLS_CLIENT_KEY_PATH": self.tls_client_key_path,
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": self.tls_server_ca_cert_path,
            "TEMPORAL_TLS_SERVER_NAME": self.tls_server_name,
        }
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class WorkloadIdentity:
    """The pod's AKS workload identity, as the webhook describes it in the environment."""

    client_id: str
    """AZURE_CLIENT_ID: the managed identity (or app registration) the service account is federated with."""
    tenant_id: str
    """AZURE_TENANT_ID: its Entra tenant."""
    token_file: str
    """AZURE_FEDERATED_TOKEN_FILE: the service account token Kubernetes projects and renews (re-read each time)."""
    authority_host: str = DEFAULT_AUTHORITY_HOST
    """AZURE_AUTHORITY_HOST: where tokens are asked for, without a trailing slash."""


@dataclass(frozen=True)
class KeyVaultSettings:
    """The vault and how it is read: shared by the encryption key and the Temporal credentials."""

    url: str | None
    refresh_seconds: float
    """How often a secret's current version is re-read."""
    startup_timeout_seconds: float
    """Limit on each read (and the Azure identity behind it)."""
    ca_file: str | None = None
    verify_challenge_resource: bool = True
    workload_identity: WorkloadIdentity | None = None
    """Set when the vault is read with the lean reader (KEYVAULT_CLIENT=auto in a pod with workload identity);
    None reads it through the Azure SDK's DefaultAzureCredential."""


@dataclass(frozen=True)
class EncryptionSettings:
    """Payload encryption: on exactly when both Key Vault variables are set."""

    keyvault_url: str | None
    secret_name: str | None
    refresh_seconds: float
    startup_timeout_seconds: float
    ca_file: str | None
    verify_challenge_resource: bool
    required: bool
    allow_plaintext: bool = False
    """With `required`: accept unencrypted payloads (with a warning) during a migration window."""
    failed_fetch_retry_seconds: float = 60.0
    """How long a key id that could not be fetched is refused without asking Key Vault again."""
    workload_identity: WorkloadIdentity | None = None
    """See KeyVaultSettings.workload_identity."""

    @property
    def enabled(self) -> bool:
        return bool(self.keyvault_url and self.secret_name)

    @property
    def vault(self) -> KeyVaultSettings:
        """The vault the key is read from."""
        return KeyVaultSettings(
            self.keyvault_url,
            self.refresh_seconds,
            self.startup_timeout_seconds,
            self.ca_file,
            self.verify_challenge_resource,
            self.workload_identity,
        )


@dataclass(frozen=True)
class PayloadStorageSettings:
    """Large payloads in Azure Blob Storage: on when the account URL or a connection string is set."""

    account_url: str | None
    """The account's blob endpoint; the process signs in with its Azure identity (DefaultAzureCredential)."""
    connection_string: str | None = field(default=None, repr=False)
    """Instead of the URL: an endpoint with a key or SAS, for Azurite and local use."""
    container: str = DEFAULT_PAYLOAD_STORAGE_CONTAINER
    threshold_bytes: int = DEFAULT_PAYLOAD_STORAGE_THRESHOLD_BYTES
    """Payloads this large or larger (after encryption) are stored in the container, smaller ones inline."""
    max_payload_bytes: int = DEFAULT_PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES
    """The largest payload stored or fetched; a larger one fails its task (or codec server request)."""
    max_task_bytes: int = DEFAULT_PAYLOAD_STORAGE_MAX_TASK_BYTES
    """What one workflow task may fetch, all its references together; more fails the task before any download."""
    ca_file: str | None = None
    """Tests only: the CA bundle the storage endpoint's TLS certificate is checked against."""

    @property
    def enabled(self) -> bool:
        return bool(self.account_url or self.connection_string)


@dataclass(frozen=True)
class CodecServerSettings:
    """The HTTP codec server that lets the Web UI and CLI show decrypted payloads."""

    host: str
    port: int
    cors_origins: tuple[str, ...]
    token: str | None = field(default=None, repr=False)
    encode: bool = False
    """Whether POST /encode is served at all (it encrypts anything with the production key)."""
    encode_token: str | None = field(default=None, repr=False)
    """The bearer token /encode needs instead of `token`, when set."""
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    oidc: OidcSettings | None = None
    """Signed-in users only (CODEC_SERVER_OIDC_*), or None when no issuer is set."""


@dataclass(frozen=True)
class OidcSettings:
    """Who may call the codec server when an OIDC issuer is set: a bearer JWT it signed, and the namespaces and
    roles the token's claim grants (codec_auth.py verifies and maps; docs/encryption.md explains)."""

    issuer: str
    """The issuer URL, compared exactly with each token's `iss`; its OIDC discovery document names the keys."""
    audience: str
    """Compared exactly with each token's `aud` (or one of them): the codec server's app, e.g. api://temporal-codec."""
    claim_format: str = "temporal"
    """temporal: the claim's values are `<namespace>:<role>`; mapped: each value is looked up in `role_map`."""
    claim: str = "permissions"
    """The claim that grants access: Temporal's `permissions`, Entra's `roles` or `groups`, or any other."""
    role_map: tuple[tuple[str, str, str], ...] = ()
    """For `mapped`: (claim value, namespace or `*`, role) entries."""
    ca_file: str | None = None
    """Tests only: the CA bundle the issuer's TLS certificate is checked against."""


@dataclass(frozen=True)
class WorkerTuning:
    """How much work one worker takes on at once (WORKER_TUNER and the WORKER_MAX_* variables)."""

    tuner: str
    """fixed: at most the WORKER_MAX_CONCURRENT_* slots; resource-based: slots handed out while the
    CPU and memory targets hold, up to those maxima."""
    max_concurrent_activities: int
    max_concurrent_workflow_tasks: int
    max_cached_workflows: int
    """Workflows kept in memory between their tasks (sticky execution); 0 turns the cache off."""
    target_cpu: float
    """The resource-based tuner's CPU target (a share of the node's CPUs, as the SDK measures it)."""
    target_memory: float
    """The resource-based tuner's memory target (a share of the memory the SDK sees)."""
    poller_autoscaling: bool
    """Let the SDK scale the number of pollers on the server's feedback instead of a fixed 5 per queue."""


@dataclass(frozen=True)
class VersioningSettings:
    """Worker Deployment Versioning: the worker registers as one version of a Worker Deployment."""

    worker_deployment_name: str
    """TEMPORAL_DEPLOYMENT_NAME: the Temporal Worker Deployment, the same for every version of this worker."""
    build_id: str
    """TEMPORAL_WORKER_BUILD_ID: this version (in the cluster: the image tag)."""
    default_behavior: str = DEFAULT_VERSIONING_BEHAVIOR
    """What a workflow that does not choose gets: pinned (stays on this version) or auto-upgrade."""


@dataclass(frozen=True)
class Settings:
    """Everything the worker, client and codec server need, validated."""

    temporal: TemporalSettings
    dev_server_ui_port: int | None
    task_queue: str
    client_interval_seconds: float
    client_max_pending_workflows: int
    client_workflow_execution_timeout_seconds: float
    worker_shutdown_timeout_seconds: float
    log_level: str
    activity_simulated_work_seconds: float
    metrics_port: int
    metrics_bind_address: str
    """The address the Prometheus endpoint listens on: loopback on a laptop, every interface in the pod."""
    health_port: int
    """Port of /livez and /readyz (health.py); 0 turns them off."""
    health_check_interval_seconds: float
    """How often the worker checks it still reaches Temporal; /readyz fails after three intervals without."""
    tuning: WorkerTuning
    log_format: str
    encryption: EncryptionSettings
    codec_server: CodecServerSettings
    versioning: VersioningSettings | None = None
    """None unless TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID are both set."""
    payload_storage: PayloadStorageSettings = PayloadStorageSettings(account_url=None)

    @property
    def keyvault(self) -> KeyVaultSettings:
        """The vault of the encryption key and of the Temporal credentials (KEYVAULT_URL and how it is read)."""
        return self.encryption.vault


# ---------------------------------------------------------------- reading


def config_env_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config.env file in use: $CONFIG_ENV_FILE, else config.env next to this module."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(CONFIG_ENV_FILE_VARIABLE) or DEFAULT_CONFIG_ENV_FILE)


def read_variables(
    environ: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    catalog: Catalog = CATALOG,
) -> dict[str, str]:
    """Every catalog variable's text: the environment wins over config.env over the default; empty = unset."""
    environ = os.environ if environ is None else environ
    from_file = read_env_file(Path(env_file) if env_file else config_env_path(environ))
    merged = {variable.name: variable.default for variable in catalog.values()}
    for source in (from_file, environ):
        for variable_name in merged:
            value = source.get(variable_name)
            if value:
                merged[variable_name] = value
    return merged


def read_env_file(path: Path) -> dict[str, str]:
    """Every KEY=VALUE in a config.env file, as data (python-dotenv, no interpolation)."""
    try:
        if not path.exists():  # raises too, for a path the OS refuses (a name too long)
            return {}
        if b"\0" in path.read_bytes():
            raise ConfigError([f"{path}: contains a NUL byte; remove it (values are text)"])
        from dotenv import dotenv_values  # only where a config.env exists: a pod reads its environment alone

        values = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{path}: cannot be read ({error}); fix the file or its permissions"]) from None
    return {key: value for key, value in values.items() if value is not None}


def unknown_file_variables(path: Path, catalog: Catalog = CATALOG) -> list[str]:
    """Names in a config.env that no variable of the catalog has (typos), in file order."""
    return [key for key in read_env_file(path) if key not in catalog]


class Parser:
    """Turns the variables' text into typed values with the catalog's kinds, collecting one problem line each."""

    def __init__(self, variables: Mapping[str, str], catalog: Catalog = CATALOG) -> None:
        self.variables = dict(variables)
        self.catalog = catalog
        self.problems: list[str] = []
        self._checked_text: set[str] = set()

    def raw(self, variable_name: str) -> str:
        """The text of a variable ("" when unset); a value that is not UTF-8 is a problem and reads as unset."""
        raw = self.variables[variable_name]
        if raw and not is_text(raw):
            if variable_name not in self._checked_text:
                self.problems.append(f"{variable_name}: {NOT_TEXT}")
            self._checked_text.add(variable_name)
            return ""
        return raw

    def value(self, variable_name: str) -> Any:
        """The variable's value by its declared kind; None when unset or wrong (the problem is recorded)."""
        raw = self.raw(variable_name)
        if not raw:
            return None
        try:
            return self.catalog[variable_name].parse(raw)
        except ValueError as error:
            self.problem(variable_name, str(error))
            return None

    def problem(self, variable_name: str, message: str) -> None:
        """Record that a variable's value is wrong, showing the value unless it is a secret."""
        secret = self.catalog[variable_name].secret
        self.problems.append(f"{variable_name}={shown(self.variables[variable_name], secret)}: {message}")


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the app's configuration; raise ConfigError naming every bad variable."""
    parser = Parser(read_variables(environ, env_file))
    settings = parse_settings(parser)
    if parser.problems:
        raise ConfigError(parser.problems)
    if parser.value("KEYVAULT_CLIENT") == "auto" and (identity := workload_identity(environ)):
        settings = replace(settings, encryption=replace(settings.encryption, workload_identity=identity))
    return settings


def workload_identity(environ: Mapping[str, str] | None = None) -> WorkloadIdentity | None:
    """The pod's workload identity when DefaultAzureCredential would sign in with it, else None.

    That is when the webhook set all of WORKLOAD_IDENTITY_VARIABLES, no variable gives azure-identity's
    EnvironmentCredential (which comes first in its chain) a secret, certificate or password, and
    AZURE_TOKEN_CREDENTIALS, azure-identity's own choice of credential, is unset, `prod` or
    `WorkloadIdentityCredential`. Read from the process environment only (never config.env): the cluster sets
    these, not the user."""
    environ = os.environ if environ is None else environ
    client_id, tenant_id, token_file = (environ.get(name, "").strip() for name in WORKLOAD_IDENTITY_VARIABLES)
    if not (client_id and tenant_id and token_file):
        return None
    if any(name in environ for name in ENVIRONMENT_CREDENTIAL_VARIABLES):  # even empty: the SDK tests `is not None`
        return None
    if environ.get("AZURE_TOKEN_CREDENTIALS", "").strip().lower() not in ("", "prod", "workloadidentitycredential"):
        return None
    if not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise ConfigError(
            [
                f"AZURE_TENANT_ID={tenant_id!r}: a tenant id is letters, digits, '-' and '.'; "
                "check the pod's workload identity"
            ]
        )
    authority_host = environ.get("AZURE_AUTHORITY_HOST", "").strip().rstrip("/") or DEFAULT_AUTHORITY_HOST
    if "://" not in authority_host:  # as azure-identity takes it: a host alone means https
        authority_host = f"https://{authority_host}"
    if not authority_host.startswith("https://"):
        raise ConfigError(
            [
                f"AZURE_AUTHORITY_HOST={authority_host!r}: Entra ID is asked for tokens over https only; "
                "give https://HOST (or the host alone), e.g. https://login.microsoftonline.com"
            ]
        )
    return WorkloadIdentity(client_id, tenant_id, token_file, authority_host)


def parse_settings(parser: Parser) -> Settings:
    """The app's settings from a parser; problems are left in `parser.problems` (deploy_config.py adds its own)."""
    value = parser.value
    settings = Settings(
        temporal=TemporalSettings(
            address=value("TEMPORAL_ADDRESS"),
            namespace=value("TEMPORAL_NAMESPACE"),
            api_key=value("TEMPORAL_API_KEY"),
            tls=value("TEMPORAL_TLS"),
            tls_client_cert_path=value("TEMPORAL_TLS_CLIENT_CERT_PATH"),
            tls_client_key_path=value("TEMPORAL_TLS_CLIENT_KEY_PATH"),
            tls_server_ca_cert_path=value("TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
            tls_server_name=value("TEMPORAL_TLS_SERVER_NAME"),
            api_key_keyvault_secret=value("TEMPORAL_API_KEY_KEYVAULT_SECRET"),
            tls_client_keyvault_certificate=value("TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE"),
        ),
        dev_server_ui_port=value("TEMPORAL_DEV_SERVER_UI_PORT"),
        task_queue=value("TEMPORAL_TASK_QUEUE"),
        client_interval_seconds=value("CLIENT_INTERVAL_SECONDS"),
        client_max_pending_workflows=value("CLIENT_MAX_PENDING_WORKFLOWS"),
        client_workflow_execution_timeout_seconds=value("CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS"),
        worker_shutdown_timeout_seconds=value("WORKER_SHUTDOWN_TIMEOUT_SECONDS"),
        log_level=value("LOG_LEVEL"),
        activity_simulated_work_seconds=value("ACTIVITY_SIMULATED_WORK_SECONDS"),
        metrics_port=value("METRICS_PORT"),
        metrics_bind_address=value("METRICS_BIND_ADDRESS"),
        health_port=value("HEALTH_PORT"),
        health_check_interval_seconds=value("HEALTH_CHECK_INTERVAL_SECONDS"),
        tuning=WorkerTuning(
            tuner=value("WORKER_TUNER"),
            max_concurrent_activities=value("WORKER_MAX_CONCURRENT_ACTIVITIES"),
            max_concurrent_workflow_tasks=value("WORKER_MAX_CONCURRENT_WORKFLOW_TASKS"),
            max_cached_workflows=value("WORKER_MAX_CACHED_WORKFLOWS"),
            target_cpu=value("WORKER_TUNER_TARGET_CPU"),
            target_memory=value("WORKER_TUNER_TARGET_MEMORY"),
            poller_autoscaling=value("WORKER_POLLER_AUTOSCALING") is True,
        ),
        log_format=value("LOG_FORMAT") or "text",
        encryption=EncryptionSettings(
            keyvault_url=value("KEYVAULT_URL"),
            secret_name=value("KEYVAULT_SECRET_NAME"),
            refresh_seconds=value("KEYVAULT_REFRESH_SECONDS"),
            startup_timeout_seconds=value("KEYVAULT_STARTUP_TIMEOUT_SECONDS"),
            ca_file=value("KEYVAULT_CA_FILE"),
            verify_challenge_resource=value("KEYVAULT_VERIFY_CHALLENGE_RESOURCE") is not False,
            required=value("ENCRYPTION_REQUIRED") is True,
            allow_plaintext=value("ENCRYPTION_ALLOW_PLAINTEXT") is True,
            failed_fetch_retry_seconds=value("KEYVAULT_FAILED_FETCH_RETRY_SECONDS"),
        ),
        codec_server=CodecServerSettings(
            host=value("CODEC_SERVER_HOST"),
            port=value("CODEC_SERVER_PORT"),
            cors_origins=value("CODEC_SERVER_CORS_ORIGINS") or (),
            token=value("CODEC_SERVER_TOKEN"),
            encode=value("CODEC_SERVER_ENCODE") is True,
            encode_token=value("CODEC_SERVER_ENCODE_TOKEN"),
            tls_cert_file=value("CODEC_SERVER_TLS_CERT_FILE"),
            tls_key_file=value("CODEC_SERVER_TLS_KEY_FILE"),
            oidc=oidc_settings(parser),
        ),
        versioning=versioning_settings(parser),
        payload_storage=PayloadStorageSettings(
            account_url=value("PAYLOAD_STORAGE_ACCOUNT_URL"),
            connection_string=value("PAYLOAD_STORAGE_CONNECTION_STRING"),
            container=value("PAYLOAD_STORAGE_CONTAINER"),
            threshold_bytes=value("PAYLOAD_STORAGE_THRESHOLD_BYTES"),
            max_payload_bytes=value("PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES"),
            max_task_bytes=value("PAYLOAD_STORAGE_MAX_TASK_BYTES"),
            ca_file=value("PAYLOAD_STORAGE_CA_FILE"),
        ),
    )
    parser.problems.extend(combination_problems(parser, settings))
    return settings


def oidc_settings(parser: Parser) -> OidcSettings | None:
    """The codec server's sign-in settings when CODEC_SERVER_OIDC_ISSUER is set (its problems: oidc_problems)."""
    values = {name: parser.value(f"CODEC_SERVER_OIDC_{name.upper()}") for name in OidcSettings.__dataclass_fields__}
    if not values["issuer"]:
        return None  # every value was still parsed above, so a wrong one is a problem even without an issuer
    claim_format = values["claim_format"] or "temporal"
    return OidcSettings(
        issuer=values["issuer"],
        audience=values["audience"] or "",
        claim_format=claim_format,
        claim=values["claim"] or ("permissions" if claim_format == "temporal" else "roles"),
        role_map=values["role_map"] or (),
        ca_file=values["ca_file"],
    )


def versioning_settings(parser: Parser) -> VersioningSettings | None:
    """Versioning when both names are set and valid; None otherwise (combination_problems says what is missing)."""
    worker_deployment, build_id = parser.value("TEMPORAL_DEPLOYMENT_NAME"), parser.value("TEMPORAL_WORKER_BUILD_ID")
    behavior = parser.value("WORKER_VERSIONING_BEHAVIOR")
    if not (worker_deployment and build_id):
        return None
    return VersioningSettings(worker_deployment, build_id, behavior)


def combination_problems(parser: Parser, settings: Settings) -> list[str]:
    """Problems that involve more than one variable."""
    problems = []
    temporal = settings.temporal
    tls_files = ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_PATH")
    if temporal.tls is False and temporal.api_key:
        problems.append(
            "TEMPORAL_TLS=false with TEMPORAL_API_KEY set: an API key must not travel in plain text; "
            "remove TEMPORAL_TLS=false or the API key"
        )
    if temporal.tls is False and any(parser.raw(tls_file) for tls_file in tls_files):
        problems.append(
            "TEMPORAL_TLS=false with TLS certificate files set: remove TEMPORAL_TLS=false or the TLS_* paths"
        )
    if bool(temporal.tls_client_cert_path) != bool(temporal.tls_client_key_path):
        problems.append(
            "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH go together for mTLS: set both or neither"
        )
    problems.extend(keyvault_credential_problems(parser, temporal))
    if settings.metrics_port and settings.metrics_port == settings.health_port:
        problems.append(
            f"METRICS_PORT and HEALTH_PORT are both {settings.metrics_port}: they need a port each; change one of them"
        )
    encryption = settings.encryption
    names_credentials = any(parser.raw(name) for name in KEYVAULT_CREDENTIAL_VARIABLES)
    if parser.raw("KEYVAULT_URL") and not encryption.secret_name and not names_credentials:
        problems.append(
            "KEYVAULT_URL and KEYVAULT_SECRET_NAME go together: set both to encrypt payloads, or neither "
            "(or name the Temporal credentials the vault holds: TEMPORAL_API_KEY_KEYVAULT_SECRET, "
            "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE)"
        )
    elif encryption.secret_name and not parser.raw("KEYVAULT_URL"):
        problems.append("KEYVAULT_URL and KEYVAULT_SECRET_NAME go together: set both to encrypt payloads, or neither")
    elif encryption.required and not encryption.enabled:
        problems.append(
            "ENCRYPTION_REQUIRED=true but KEYVAULT_URL and KEYVAULT_SECRET_NAME are not set: "
            "set them, or set ENCRYPTION_REQUIRED=false"
        )
    if encryption.allow_plaintext and switched_off(parser, "ENCRYPTION_REQUIRED"):
        problems.append(
            "ENCRYPTION_ALLOW_PLAINTEXT=true without ENCRYPTION_REQUIRED=true: unencrypted payloads are only refused "
            "when encryption is required; set ENCRYPTION_REQUIRED=true, or remove ENCRYPTION_ALLOW_PLAINTEXT"
        )
    problems.extend(codec_server_problems(parser, settings.codec_server))
    if bool(parser.raw("TEMPORAL_DEPLOYMENT_NAME")) != bool(parser.raw("TEMPORAL_WORKER_BUILD_ID")):
        problems.append(
            "TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID go together: set both to run the worker as a "
            "version of a Worker Deployment (in the cluster each Deployment sets them when WORKER_VERSIONING=true), "
            "or neither"
        )
    problems.extend(payload_storage_problems(parser, settings.payload_storage))
    return problems


KEYVAULT_CREDENTIAL_VARIABLES = ("TEMPORAL_API_KEY_KEYVAULT_SECRET", "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE")


def keyvault_credential_problems(parser: Parser, temporal: TemporalSettings) -> list[str]:
    """The Temporal credentials from Key Vault: one source per credential, a vault, and TLS."""
    problems = []
    for variable_name, instead in (
        ("TEMPORAL_API_KEY_KEYVAULT_SECRET", ("TEMPORAL_API_KEY",)),
        (
            "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE",
            ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        ),
    ):
        if not parser.raw(variable_name):
            continue
        given = [name for name in instead if parser.raw(name)]
        if given:
            problems.append(
                f"{variable_name} and {' and '.join(given)} are both set: the credential comes from Key Vault or "
                f"from config.env, not both; remove one"
            )
        if not parser.raw("KEYVAULT_URL"):
            problems.append(
                f"{variable_name} is set but KEYVAULT_URL is not: set KEYVAULT_URL to the vault that holds it"
            )
        if temporal.tls is False:
            problems.append(
                f"TEMPORAL_TLS=false with {variable_name} set: Temporal credentials must not travel in plain text; "
                f"remove TEMPORAL_TLS=false or {variable_name}"
            )
    return problems


def payload_storage_problems(parser: Parser, storage: PayloadStorageSettings) -> list[str]:
    """Payload storage variables that contradict each other (the connection string is never shown)."""
    problems = []
    if parser.raw("PAYLOAD_STORAGE_ACCOUNT_URL") and parser.raw("PAYLOAD_STORAGE_CONNECTION_STRING"):
        problems.append(
            "PAYLOAD_STORAGE_ACCOUNT_URL and PAYLOAD_STORAGE_CONNECTION_STRING are both set: use the URL (the Azure "
            "identity signs in, no key) or the connection string (Azurite, local use), not both"
        )
    threshold, maximum = storage.threshold_bytes, storage.max_payload_bytes
    if threshold is not None and maximum is not None and threshold > maximum:
        problems.append(
            f"PAYLOAD_STORAGE_THRESHOLD_BYTES={storage.threshold_bytes} is more than "
            f"PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES={storage.max_payload_bytes}: no payload could be stored; "
            "lower the threshold or raise the maximum"
        )
    task = storage.max_task_bytes
    if task is not None and maximum is not None and task < maximum:
        problems.append(
            f"PAYLOAD_STORAGE_MAX_TASK_BYTES={task} is less than PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES={maximum}: a task "
            "could not fetch even one largest payload; raise PAYLOAD_STORAGE_MAX_TASK_BYTES to at least "
            f"{maximum} or lower the maximum"
        )
    return problems


def switched_off(parser: Parser, variable_name: str) -> bool:
    """Whether a boolean variable is unset or false (a value that is neither is its own problem already)."""
    raw = parser.raw(variable_name)
    return not raw or raw.strip().lower() in _FALSE_WORDS


def codec_server_problems(parser: Parser, server: CodecServerSettings) -> list[str]:
    """The codec server's variables that contradict each other (no secret value is ever shown)."""
    problems = []
    if server.encode_token and switched_off(parser, "CODEC_SERVER_ENCODE"):
        problems.append(
            "CODEC_SERVER_ENCODE_TOKEN is set but CODEC_SERVER_ENCODE is not true: set CODEC_SERVER_ENCODE=true "
            "to serve /encode, or remove the token"
        )
    if server.encode_token and server.encode_token == server.token:
        problems.append(
            "CODEC_SERVER_ENCODE_TOKEN equals CODEC_SERVER_TOKEN: /encode forges payloads that workers trust, so "
            "give it its own token (openssl rand -hex 32)"
        )
    problems += oidc_problems(parser)
    if bool(parser.raw("CODEC_SERVER_TLS_CERT_FILE")) != bool(parser.raw("CODEC_SERVER_TLS_KEY_FILE")):
        problems.append(
            "CODEC_SERVER_TLS_CERT_FILE and CODEC_SERVER_TLS_KEY_FILE go together: set both to serve HTTPS, or neither"
        )
    return problems


def oidc_problems(parser: Parser) -> list[str]:
    """CODEC_SERVER_OIDC_* variables that contradict each other or are missing a partner."""
    issuer, audience = parser.raw("CODEC_SERVER_OIDC_ISSUER"), parser.raw("CODEC_SERVER_OIDC_AUDIENCE")
    mapped = parser.raw("CODEC_SERVER_OIDC_CLAIM_FORMAT").strip() == "mapped"
    role_map_given = bool(parser.raw("CODEC_SERVER_OIDC_ROLE_MAP"))
    if not issuer:
        others = [
            name
            for name in ("CODEC_SERVER_OIDC_AUDIENCE", "CODEC_SERVER_OIDC_CLAIM", "CODEC_SERVER_OIDC_ROLE_MAP")
            if parser.raw(name)
        ]
        return (
            [
                f"{', '.join(others)} set without CODEC_SERVER_OIDC_ISSUER: set the issuer to require signed-in "
                "users, or remove them"
            ]
            if others
            else []
        )
    problems = []
    if not audience:
        problems.append(
            "CODEC_SERVER_OIDC_ISSUER is set without CODEC_SERVER_OIDC_AUDIENCE: a token for any application of the "
            "issuer would do; set the codec server's audience (Entra: its Application ID URI or client id)"
        )
    if mapped and not role_map_given:
        problems.append(
            "CODEC_SERVER_OIDC_CLAIM_FORMAT=mapped needs CODEC_SERVER_OIDC_ROLE_MAP (VALUE=NAMESPACE:ROLE, ...): "
            "without it no token grants anything"
        )
    if role_map_given and not mapped:
        problems.append(
            "CODEC_SERVER_OIDC_ROLE_MAP is set but CODEC_SERVER_OIDC_CLAIM_FORMAT is not mapped: set "
            "CODEC_SERVER_OIDC_CLAIM_FORMAT=mapped to use it, or remove it"
        )
    return problems


def load_settings_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings for a command-line entry point; on a mistake print every problem and exit 2."""
    try:
        return load_settings(environ)
    except ConfigError as error:
        exit_with_config_error(error)


def exit_with_config_error(error: ConfigError) -> NoReturn:
    print("Configuration error:", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)
    print("Fix config.env (see config.env.example and CONFIGURATION.md) or the environment.", file=sys.stderr)
    sys.exit(2)


def configure_logging(settings: Settings) -> None:
    """One log format for every process, at the configured level: text lines, or JSON objects (log_format.py)."""
    log_format.configure(settings.log_level, settings.log_format)


# ---------------------------------------------------------------- helpers


def is_text(raw: str) -> bool:
    """Whether a value is UTF-8 text; bytes the environment held that are not arrive as lone surrogates."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_control_characters(value: str) -> bool:
    return any(ord(character) < 32 or ord(character) == 127 for character in value)


def shown(raw: str, secret: bool) -> str:
    """A variable's value as it may appear in a message: secrets never are, long values are cut short."""
    if secret:
        return HIDDEN
    return repr(raw[:80] + ("..." if len(raw) > 80 else ""))


if __name__ == "__main__":
    if sys.argv[1:] != ["check"]:
        print("usage: python config.py check   (validate the app's configuration; exit 2 listing every problem)")
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    load_settings_or_exit()
    print("Configuration OK")
