"""Configuration: the catalog of every variable, and the only module that reads the environment and `config.env`.

Public API:
    VARIABLES                      # the catalog: every variable, app and deploy side, declared once
    load_settings() -> Settings    # the app's validated, immutable settings, or ConfigError listing every problem
    load_settings_or_exit()        # the same for a command-line entry point: problems printed, exit status 2
    read_variables() -> dict       # every variable's text after precedence (deploy_config.py builds on it)
    Parser                         # turns that text into typed values, collecting problems

Each variable is declared once in `VARIABLES`: its name, its default, how its text is checked and
converted, whether it is a secret, and where it goes (`Scope`): into the pod (the ConfigMap, or the
app Secret when it is secret), only on this machine, only in tests, or only to the deploy scripts.
Everything else follows from the declaration: `source_config.sh --show` hides secrets, the manifests
put each variable where its scope says, and a new variable is one more line in the catalog.

Precedence is the same for every program and script: the process environment wins over `config.env`,
which wins over the defaults. An empty value counts as unset. `config.env` is read as KEY=VALUE data by
python-dotenv with interpolation off, so `$` and quotes arrive exactly as written.

Temporal connection variables are the ones the `temporal` CLI and the SDK's `temporalio.envconfig`
read, and `temporalio.envconfig` turns them into `Client.connect` arguments: TLS is on when an API key
or a TLS file is given, unless `TEMPORAL_TLS=false`; `TEMPORAL_TLS=true` turns it on for any address.
Nothing is guessed from the address, so a self-hosted in-cluster server such as
`temporal-frontend.temporal.svc:7233` connects in plain text like the dev server.

`python config.py check` validates the app's settings without starting anything.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from dotenv import dotenv_values

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
# The problem with a value the environment gave as bytes that are not UTF-8 (the value is never shown).
NOT_TEXT = "holds bytes that are not UTF-8 text; write the value in UTF-8"
HIDDEN = "<hidden>"

# The words temporalio.envconfig and the `temporal` CLI accept, so one config.env means the same to all.
_TRUE_WORDS = frozenset({"true", "1"})
_FALSE_WORDS = frozenset({"false", "0"})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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


# ---------------------------------------------------------------- the catalog


class Scope(enum.Enum):
    """Where a variable is used, and so where it goes."""

    POD = "pod"
    """Read by the worker: deployed in the ConfigMap, or in the app Secret when the variable is secret."""
    LOCAL = "local"
    """Read only on this machine (start.sh, the codec server): never deployed."""
    TEST = "test"
    """A test-only override of the app's behaviour: never deployed, and a warning when set for a deployment."""
    DEPLOY = "deploy"
    """Read by the deploy scripts (build, registry, cluster); never reaches the app."""


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
    # Application
    Variable("TEMPORAL_TASK_QUEUE", name, "test-task-queue"),
    Variable("CLIENT_INTERVAL_SECONDS", seconds(MIN_CLIENT_INTERVAL_SECONDS), "10"),
    Variable("CLIENT_MAX_PENDING_WORKFLOWS", whole_number(1), "100"),
    Variable(
        "CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS", seconds(1.0, MAX_CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS), "7200"
    ),
    Variable("WORKER_SHUTDOWN_TIMEOUT_SECONDS", seconds(0.0, MAX_WORKER_SHUTDOWN_TIMEOUT_SECONDS), "30"),
    Variable("LOG_LEVEL", log_level, "INFO"),
    Variable("ACTIVITY_SIMULATED_WORK_SECONDS", seconds(0.0), "0"),
    # Local dev server started by ./start.sh (empty = the address's port + 1000, as the temporal CLI does)
    Variable("TEMPORAL_DEV_SERVER_UI_PORT", port(), scope=Scope.LOCAL),
    # Worker health and metrics (Kubernetes probes, Prometheus)
    Variable("METRICS_PORT", port(lowest=0), "9000"),
    # Loopback on a laptop; the rendered ConfigMap sets 0.0.0.0 so that Prometheus can scrape the pod.
    Variable("METRICS_BIND_ADDRESS", ip_address, "127.0.0.1"),
    Variable("WORKER_HEALTH_FILE", required_text, "/tmp/temporal-worker-health"),
    # Payload encryption with a key from Azure Key Vault
    Variable("KEYVAULT_URL", https_url),
    Variable("KEYVAULT_SECRET_NAME"),
    Variable("KEYVAULT_REFRESH_SECONDS", seconds(1.0), "300"),
    Variable("KEYVAULT_STARTUP_TIMEOUT_SECONDS", seconds(1.0), "30"),
    Variable("KEYVAULT_FAILED_FETCH_RETRY_SECONDS", seconds(1.0), "60"),
    Variable("KEYVAULT_CA_FILE", readable_file, scope=Scope.TEST),
    Variable("KEYVAULT_VERIFY_CHALLENGE_RESOURCE", boolean, "true", scope=Scope.TEST),
    Variable("ENCRYPTION_REQUIRED", boolean, "false"),
    Variable("ENCRYPTION_ALLOW_PLAINTEXT", boolean, "false"),
    # Codec server (decrypts payloads for the Web UI and CLI)
    Variable("CODEC_SERVER_HOST", required_text, "127.0.0.1"),
    Variable("CODEC_SERVER_PORT", port(), "8081"),
    Variable("CODEC_SERVER_CORS_ORIGINS", origins, "http://localhost:8233"),
    Variable("CODEC_SERVER_TOKEN", secret=True, scope=Scope.LOCAL),
    Variable("CODEC_SERVER_ENCODE", boolean, "false", scope=Scope.LOCAL),
    Variable("CODEC_SERVER_ENCODE_TOKEN", secret=True, scope=Scope.LOCAL),
    Variable("CODEC_SERVER_TLS_CERT_FILE", readable_file, scope=Scope.LOCAL),
    Variable("CODEC_SERVER_TLS_KEY_FILE", readable_file, scope=Scope.LOCAL),
    # --- Your own variables: declare them here, e.g. Variable("DATABASE_PASSWORD", secret=True),
    # --- and read them in load_settings(). A secret reaches the pod from the app Secret.
    # Deployment to AKS (deploy.sh, patch.sh, generate-k8s-manifests.sh; checked by deploy_config.py)
    Variable(
        "AZURE_SUBSCRIPTION_ID",
        matching(GUID, "must be a subscription ID (a GUID); az account list --output table shows yours"),
        scope=Scope.DEPLOY,
    ),
    Variable("RESOURCE_GROUP", scope=Scope.DEPLOY),
    Variable(
        "ACR_NAME",
        matching(r"[A-Za-z0-9]{5,50}", "must be the registry name: 5 to 50 letters and digits (not its address)"),
        scope=Scope.DEPLOY,
    ),
    Variable("ACR_USERNAME", acr_username, scope=Scope.DEPLOY),
    Variable("ACR_PASSWORD", secret=True, scope=Scope.DEPLOY),
    Variable("ACR_EMAIL", scope=Scope.DEPLOY),
    Variable("AKS_CLUSTER_NAME", scope=Scope.DEPLOY),
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
)
CATALOG: dict[str, Variable] = {variable.name: variable for variable in VARIABLES}
APP_SCOPES = frozenset({Scope.POD, Scope.LOCAL, Scope.TEST})
# The app's variables and their defaults ("" = unset by default), in catalog order.
DEFAULTS: dict[str, str] = {variable.name: variable.default for variable in VARIABLES if variable.scope in APP_SCOPES}
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

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `temporalio.client.Client.connect`, built by `temporalio.envconfig`."""
        # Imported here so that the deploy scripts, which never connect, do not pay for the SDK.
        from temporalio.envconfig import ClientConfigProfile

        profile = ClientConfigProfile.load(disable_file=True, override_env_vars=self._as_envconfig_variables())
        return dict(profile.to_client_connect_config())

    @property
    def uses_tls(self) -> bool:
        """Whether the connection is encrypted with TLS (for log lines; never guessed from the address)."""
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

    @property
    def enabled(self) -> bool:
        return bool(self.keyvault_url and self.secret_name)


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
    worker_health_file: Path
    encryption: EncryptionSettings
    codec_server: CodecServerSettings


# ---------------------------------------------------------------- reading


def config_env_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config.env file in use: $CONFIG_ENV_FILE, else config.env next to this module."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(CONFIG_ENV_FILE_VARIABLE) or DEFAULT_CONFIG_ENV_FILE)


def read_variables(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Every catalog variable's text: the environment wins over config.env over the default; empty = unset."""
    environ = os.environ if environ is None else environ
    from_file = read_env_file(Path(env_file) if env_file else config_env_path(environ))
    merged = {variable.name: variable.default for variable in VARIABLES}
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
        values = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{path}: cannot be read ({error}); fix the file or its permissions"]) from None
    return {key: value for key, value in values.items() if value is not None}


def unknown_file_variables(path: Path) -> list[str]:
    """Names in a config.env that no variable of the catalog has (typos), in file order."""
    return [key for key in read_env_file(path) if key not in CATALOG]


class Parser:
    """Turns the variables' text into typed values with the catalog's kinds, collecting one problem line each."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.variables = dict(variables)
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
            return CATALOG[variable_name].parse(raw)
        except ValueError as error:
            self.problem(variable_name, str(error))
            return None

    def problem(self, variable_name: str, message: str) -> None:
        """Record that a variable's value is wrong, showing the value unless it is a secret."""
        self.problems.append(f"{variable_name}={shown(variable_name, self.variables[variable_name])}: {message}")


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the app's configuration; raise ConfigError naming every bad variable."""
    parser = Parser(read_variables(environ, env_file))
    settings = parse_settings(parser)
    if parser.problems:
        raise ConfigError(parser.problems)
    return settings


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
        ),
        dev_server_ui_port=value("TEMPORAL_DEV_SERVER_UI_PORT"),
        task_queue=value("TEMPORAL_TASK_QUEUE"),
        client_interval_seconds=value("CLIENT_INTERVAL_SECONDS"),
        client_max_pending_workflows=value("CLIENT_MAX_PENDING_WORKFLOWS"),
        client_workflow_execution_timeout_seconds=value("CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS"),
        worker_shutdown_timeout_seconds=value("WORKER_SHUTDOWN_TIMEOUT_SECONDS"),
        log_level=value("LOG_LEVEL") or "INFO",
        activity_simulated_work_seconds=value("ACTIVITY_SIMULATED_WORK_SECONDS"),
        metrics_port=value("METRICS_PORT"),
        metrics_bind_address=value("METRICS_BIND_ADDRESS") or "127.0.0.1",
        worker_health_file=Path(value("WORKER_HEALTH_FILE") or "."),
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
        ),
    )
    parser.problems.extend(combination_problems(parser, settings))
    return settings


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
    encryption = settings.encryption
    if bool(parser.raw("KEYVAULT_URL")) != bool(encryption.secret_name):
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
    if bool(parser.raw("CODEC_SERVER_TLS_CERT_FILE")) != bool(parser.raw("CODEC_SERVER_TLS_KEY_FILE")):
        problems.append(
            "CODEC_SERVER_TLS_CERT_FILE and CODEC_SERVER_TLS_KEY_FILE go together: set both to serve HTTPS, or neither"
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
    """One log format for every process, at the configured level."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
        force=True,
    )


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


def shown(variable_name: str, raw: str) -> str:
    """The value as it may appear in a message: secrets never are, long values are cut short."""
    if variable_name in SECRET_VARIABLES:
        return HIDDEN
    return repr(raw[:80] + ("..." if len(raw) > 80 else ""))


if __name__ == "__main__":
    if sys.argv[1:] != ["check"]:
        print("usage: python config.py check   (validate the app's configuration; exit 2 listing every problem)")
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    load_settings_or_exit()
    print("Configuration OK")
