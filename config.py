"""Configuration: the only module that reads the environment and `config.env`.

Precedence is the same everywhere in this repo (here and in `source_config.sh`):
the process environment wins over `config.env`, which wins over the defaults below.
An empty value counts as unset. `config.env` is read as KEY=VALUE data by
python-dotenv with interpolation off, so `$` and quotes arrive exactly as written.

`load_settings()` returns one immutable `Settings` object or raises `ConfigError`
listing every problem at once; `load_settings_or_exit()` prints those problems,
one line each, and exits with status 2 so that a typo never becomes a traceback.

Temporal connection variables are the ones the `temporal` CLI and the SDK's
`temporalio.envconfig` read, and `temporalio.envconfig` turns them into
`Client.connect` arguments: TLS is on when an API key or a TLS file is given,
unless `TEMPORAL_TLS=false`; `TEMPORAL_TLS=true` turns it on for any address.
Nothing is guessed from the address, so a self-hosted in-cluster server such as
`temporal-frontend.temporal.svc:7233` connects in plain text like the dev server.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values

CONFIG_ENV_FILE_VARIABLE = "CONFIG_ENV_FILE"
DEFAULT_CONFIG_ENV_FILE = Path(__file__).resolve().parent / "config.env"

# Variables read by this module, with their defaults ("" = unset by default).
# config.env.example and CONFIGURATION.md list the same names; a test keeps them in step.
DEFAULTS: dict[str, str] = {
    # Temporal connection (names shared with the `temporal` CLI and temporalio.envconfig)
    "TEMPORAL_ADDRESS": "localhost:7233",
    "TEMPORAL_NAMESPACE": "default",
    "TEMPORAL_API_KEY": "",
    "TEMPORAL_TLS": "",
    "TEMPORAL_TLS_CLIENT_CERT_PATH": "",
    "TEMPORAL_TLS_CLIENT_KEY_PATH": "",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "",
    "TEMPORAL_TLS_SERVER_NAME": "",
    # Application
    "TEMPORAL_TASK_QUEUE": "test-task-queue",
    "CLIENT_INTERVAL_SECONDS": "10",
    "WORKER_SHUTDOWN_TIMEOUT_SECONDS": "30",
    "LOG_LEVEL": "INFO",
    "ACTIVITY_SIMULATED_WORK_SECONDS": "0",
    # Local dev server started by ./start.sh (empty = the address's port + 1000, as the temporal CLI does)
    "TEMPORAL_DEV_SERVER_UI_PORT": "",
    # Worker health and metrics (Kubernetes probes, Prometheus)
    "METRICS_PORT": "9000",
    "WORKER_HEALTH_FILE": "/tmp/temporal-worker-health",
    # Payload encryption with a key from Azure Key Vault
    "KEYVAULT_URL": "",
    "KEYVAULT_SECRET_NAME": "",
    "KEYVAULT_REFRESH_SECONDS": "300",
    "KEYVAULT_STARTUP_TIMEOUT_SECONDS": "30",
    "KEYVAULT_CA_FILE": "",
    "KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "true",
    "ENCRYPTION_REQUIRED": "false",
    # Codec server (decrypts payloads for the Web UI and CLI)
    "CODEC_SERVER_HOST": "127.0.0.1",
    "CODEC_SERVER_PORT": "8081",
    "CODEC_SERVER_CORS_ORIGINS": "http://localhost:8233",
    "CODEC_SERVER_TOKEN": "",
}

SECRET_VARIABLES = frozenset({"TEMPORAL_API_KEY", "CODEC_SERVER_TOKEN"})
# A day. Far more overflows the worker's timedelta (about 8.6e13 s) and, sooner or later, the pod's
# terminationGracePeriodSeconds (an int64); no shutdown needs to wait that long.
MAX_WORKER_SHUTDOWN_TIMEOUT_SECONDS = 86400.0
# The problem with a value the environment gave as bytes that are not UTF-8 (the value is never shown).
NOT_TEXT = "holds bytes that are not UTF-8 text; write the value in UTF-8"

# The words temporalio.envconfig and the `temporal` CLI accept, so one config.env means the same to all.
_TRUE_WORDS = frozenset({"true", "1"})
_FALSE_WORDS = frozenset({"false", "0"})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TEMPORAL_TLS_FILES = (
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
)


class ConfigError(Exception):
    """Every configuration problem found, one human-readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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
        # Imported here so that the shell scripts' `python config.py get ...` stays quick.
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


@dataclass(frozen=True)
class Settings:
    """Everything the worker, client and codec server need, validated."""

    temporal: TemporalSettings
    dev_server_ui_port: int | None
    task_queue: str
    client_interval_seconds: float
    worker_shutdown_timeout_seconds: float
    log_level: str
    activity_simulated_work_seconds: float
    metrics_port: int
    worker_health_file: Path
    encryption: EncryptionSettings
    codec_server: CodecServerSettings


def read_variables(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Merge defaults, `config.env` and the environment (environment wins); empty means unset."""
    environ = os.environ if environ is None else environ
    path = Path(env_file or environ.get(CONFIG_ENV_FILE_VARIABLE) or DEFAULT_CONFIG_ENV_FILE)
    from_file = read_env_file(path)
    merged = dict(DEFAULTS)
    for source in (from_file, environ):
        for name in DEFAULTS:
            value = source.get(name)
            if value:
                merged[name] = value
    return merged


def read_env_file(path: Path) -> dict[str, str]:
    """Every KEY=VALUE in a config.env file, as data (python-dotenv, no interpolation)."""
    try:
        if not path.exists():  # raises too, for a path the OS refuses (a name too long)
            return {}
        values = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{path}: cannot be read ({error}); fix the file or its permissions"]) from None
    return {name: value for name, value in values.items() if value is not None}


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the configuration; raise ConfigError naming every bad variable."""
    parser = _Parser(read_variables(environ, env_file))
    temporal = TemporalSettings(
        address=parser.address("TEMPORAL_ADDRESS"),
        namespace=parser.name("TEMPORAL_NAMESPACE"),
        api_key=parser.optional("TEMPORAL_API_KEY"),
        tls=parser.optional_boolean("TEMPORAL_TLS"),
        tls_client_cert_path=parser.readable_file("TEMPORAL_TLS_CLIENT_CERT_PATH"),
        tls_client_key_path=parser.readable_file("TEMPORAL_TLS_CLIENT_KEY_PATH"),
        tls_server_ca_cert_path=parser.readable_file("TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
        tls_server_name=parser.optional("TEMPORAL_TLS_SERVER_NAME"),
    )
    settings = Settings(
        temporal=temporal,
        dev_server_ui_port=parser.optional_port("TEMPORAL_DEV_SERVER_UI_PORT"),
        task_queue=parser.name("TEMPORAL_TASK_QUEUE"),
        client_interval_seconds=parser.seconds("CLIENT_INTERVAL_SECONDS", minimum=0.0),
        worker_shutdown_timeout_seconds=parser.seconds(
            "WORKER_SHUTDOWN_TIMEOUT_SECONDS", minimum=0.0, maximum=MAX_WORKER_SHUTDOWN_TIMEOUT_SECONDS
        ),
        log_level=parser.log_level("LOG_LEVEL"),
        activity_simulated_work_seconds=parser.seconds("ACTIVITY_SIMULATED_WORK_SECONDS", minimum=0.0),
        metrics_port=parser.port("METRICS_PORT", allow_zero=True),
        worker_health_file=Path(parser.required("WORKER_HEALTH_FILE")),
        encryption=EncryptionSettings(
            keyvault_url=parser.https_url("KEYVAULT_URL"),
            secret_name=parser.optional("KEYVAULT_SECRET_NAME"),
            refresh_seconds=parser.seconds("KEYVAULT_REFRESH_SECONDS", minimum=1.0),
            startup_timeout_seconds=parser.seconds("KEYVAULT_STARTUP_TIMEOUT_SECONDS", minimum=1.0),
            ca_file=parser.readable_file("KEYVAULT_CA_FILE"),
            verify_challenge_resource=parser.boolean("KEYVAULT_VERIFY_CHALLENGE_RESOURCE"),
            required=parser.boolean("ENCRYPTION_REQUIRED"),
        ),
        codec_server=CodecServerSettings(
            host=parser.required("CODEC_SERVER_HOST"),
            port=parser.port("CODEC_SERVER_PORT"),
            cors_origins=parser.origins("CODEC_SERVER_CORS_ORIGINS"),
            token=parser.optional("CODEC_SERVER_TOKEN"),
        ),
    )
    parser.check_combinations(settings)
    if parser.problems:
        raise ConfigError(parser.problems)
    return settings


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


T = TypeVar("T")


class _Parser:
    """Turns raw strings into typed values, collecting a problem line instead of raising."""

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = dict(variables)
        self.problems: list[str] = []
        for name, raw in variables.items():
            if not _is_text(raw):  # bytes the environment held that are not UTF-8 (lone surrogates here)
                self.problems.append(f"{name}: {NOT_TEXT}")
                self.variables[name] = DEFAULTS[name]

    def _parse(self, name: str, convert: Callable[[str], T], fallback: T) -> T:
        raw = self.variables[name]
        try:
            return convert(raw)
        except ValueError as error:
            self.problems.append(f"{name}={_shown(name, raw)}: {error}")
            return fallback

    def optional(self, name: str) -> str | None:
        return self.variables[name] or None

    def required(self, name: str) -> str:
        def convert(raw: str) -> str:
            if not raw.strip():
                raise ValueError("must not be empty")
            return raw

        return self._parse(name, convert, "")

    def name(self, name: str) -> str:
        def convert(raw: str) -> str:
            if raw != raw.strip() or not raw or _has_control_characters(raw):
                raise ValueError("must be a non-empty name without surrounding spaces or control characters")
            return raw

        return self._parse(name, convert, "")

    def boolean(self, name: str) -> bool:
        return self._parse(name, _boolean, False)

    def optional_boolean(self, name: str) -> bool | None:
        return self._parse(name, lambda raw: _boolean(raw) if raw else None, None)

    def seconds(self, name: str, minimum: float, maximum: float = math.inf) -> float:
        bounds = f"at least {minimum:g}" + (f" and at most {maximum:g}" if maximum < math.inf else "")

        def convert(raw: str) -> float:
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"must be a number of seconds, {bounds}") from None
            if not math.isfinite(value) or not minimum <= value <= maximum:
                raise ValueError(f"must be a number of seconds, {bounds}")
            return value

        return self._parse(name, convert, minimum)

    def port(self, name: str, allow_zero: bool = False) -> int:
        lowest = 0 if allow_zero else 1
        return self._parse(name, lambda raw: _port(raw, lowest), 0)

    def optional_port(self, name: str) -> int | None:
        return self._parse(name, lambda raw: _port(raw, 1) if raw else None, None)

    def address(self, name: str) -> str:
        def convert(raw: str) -> str:
            host, separator, port = raw.rpartition(":")
            if not separator or not host or _has_control_characters(raw) or " " in raw:
                raise ValueError("must be host:port, for example localhost:7233")
            _port(port, 1)
            return raw

        return self._parse(name, convert, "")

    def log_level(self, name: str) -> str:
        def convert(raw: str) -> str:
            level = raw.strip().upper()
            if level not in _LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
            return level

        return self._parse(name, convert, "INFO")

    def readable_file(self, name: str) -> str | None:
        def convert(raw: str) -> str | None:
            if not raw:
                return None
            path = Path(raw)
            try:
                readable = path.is_file() and os.access(path, os.R_OK)
            except OSError:  # a path the OS refuses to look up, such as a name too long
                readable = False
            if not readable:
                raise ValueError("file does not exist or is not readable; give the path to a readable file")
            return raw

        return self._parse(name, convert, None)

    def https_url(self, name: str) -> str | None:
        def convert(raw: str) -> str | None:
            if not raw:
                return None
            parts = urlsplit(raw)
            if parts.scheme != "https" or not parts.hostname or _has_control_characters(raw) or " " in raw:
                raise ValueError("must be an https URL, for example https://my-vault.vault.azure.net/")
            try:
                parts.port  # noqa: B018  (urlsplit checks the port only when asked)
            except ValueError:
                raise ValueError("has a port that is not a whole number from 0 to 65535") from None
            return raw

        return self._parse(name, convert, None)

    def origins(self, name: str) -> tuple[str, ...]:
        def convert(raw: str) -> tuple[str, ...]:
            origins = tuple(origin.strip() for origin in raw.split(",") if origin.strip())
            for origin in origins:
                parts = urlsplit(origin)
                if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                    raise ValueError(
                        f"{origin!r} is not an origin; give comma-separated origins like http://localhost:8233"
                    )
            return tuple(origin.rstrip("/") for origin in origins)

        return self._parse(name, convert, ())

    def check_combinations(self, settings: Settings) -> None:
        """Problems that involve more than one variable."""
        temporal = settings.temporal
        if temporal.tls is False and temporal.api_key:
            self.problems.append(
                "TEMPORAL_TLS=false with TEMPORAL_API_KEY set: an API key must not travel in plain text; "
                "remove TEMPORAL_TLS=false or the API key"
            )
        if temporal.tls is False and any(self.variables[name] for name in _TEMPORAL_TLS_FILES):
            self.problems.append(
                "TEMPORAL_TLS=false with TLS certificate files set: remove TEMPORAL_TLS=false or the TLS_* paths"
            )
        if bool(temporal.tls_client_cert_path) != bool(temporal.tls_client_key_path):
            self.problems.append(
                "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH go together for mTLS: "
                "set both or neither"
            )
        encryption = settings.encryption
        if bool(self.variables["KEYVAULT_URL"]) != bool(encryption.secret_name):
            self.problems.append(
                "KEYVAULT_URL and KEYVAULT_SECRET_NAME go together: set both to encrypt payloads, or neither"
            )
        elif encryption.required and not encryption.enabled:
            self.problems.append(
                "ENCRYPTION_REQUIRED=true but KEYVAULT_URL and KEYVAULT_SECRET_NAME are not set: "
                "set them, or set ENCRYPTION_REQUIRED=false"
            )


def _boolean(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError("must be true or false")


def _port(raw: str, lowest: int) -> int:
    # No leading zeros: YAML (containerPort) and bash arithmetic (start.sh) read 0010 as octal 8.
    plain_number = raw.isascii() and raw.isdigit() and len(raw) <= 5 and (raw == "0" or not raw.startswith("0"))
    if not plain_number or not lowest <= int(raw) <= 65535:
        raise ValueError(f"port must be a whole number from {lowest} to 65535, without leading zeros")
    return int(raw)


def _is_text(raw: str) -> bool:
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_control_characters(text: str) -> bool:
    return any(ord(character) < 32 or ord(character) == 127 for character in text)


def _shown(name: str, raw: str) -> str:
    """The value as it may appear in an error message: secrets are never echoed."""
    if name in SECRET_VARIABLES:
        return "<hidden>"
    return repr(raw[:80] + ("..." if len(raw) > 80 else ""))


def _print_file_values(path: str) -> None:
    """Write a config.env file's pairs as NUL-separated KEY=VALUE, for source_config.sh to read as data."""
    try:
        values = read_env_file(Path(path))
    except ConfigError as error:
        exit_with_config_error(error)
    for name, value in values.items():
        sys.stdout.write(f"{name}={value}\0")


def _print_values(names: list[str]) -> None:
    """Print the merged values of non-secret variables, one per line, for start.sh."""
    try:
        variables = read_variables()
    except ConfigError as error:
        exit_with_config_error(error)
    for name in names:
        if name not in DEFAULTS or name in SECRET_VARIABLES:
            print(f"config.py get: {name} is not a non-secret configuration variable", file=sys.stderr)
            sys.exit(2)
        print(variables[name])


def _main(arguments: list[str]) -> None:
    """Command line for the shell scripts.

    check             validate the app settings (exit 2 with one line per problem)
    get NAME...       print non-secret merged values, one per line (start.sh)
    file-values FILE  print a config.env's pairs NUL-separated (source_config.sh)
    """
    if arguments == ["check"]:
        load_settings_or_exit()
        print("Configuration OK")
    elif len(arguments) > 1 and arguments[0] == "get":
        _print_values(arguments[1:])
    elif len(arguments) == 2 and arguments[0] == "file-values":
        _print_file_values(arguments[1])
    else:
        print("usage: python config.py check | get NAME... | file-values FILE", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    _main(sys.argv[1:])
