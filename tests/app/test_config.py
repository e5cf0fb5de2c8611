"""config.py: precedence, validation (every problem at once), and the connect arguments of each deployment shape."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import config
from bootstrap import plaintext_policy
from config import ConfigError, load_settings
from crypto_converter import Plaintext

from helpers.processes import PYTHON, REPO_DIR, base_environment


def settings_from(tmp_path: Path, file_text: str = "", **environ: str):
    env_file = tmp_path / "config.env"
    env_file.write_text(file_text)
    return load_settings(environ, env_file)


def problems_for(tmp_path: Path, file_text: str = "", **environ: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        settings_from(tmp_path, file_text, **environ)
    return raised.value.problems


def test_defaults_apply_without_file_or_environment(tmp_path):
    settings = load_settings({}, tmp_path / "missing.env")
    assert settings.temporal.address == "localhost:7233"
    assert settings.temporal.namespace == "default"
    assert settings.task_queue == "test-task-queue"
    assert settings.client_interval_seconds == 10
    assert settings.client_max_pending_workflows == 100
    assert settings.client_workflow_execution_timeout_seconds == 7200
    assert settings.worker_shutdown_timeout_seconds == 30
    assert settings.encryption.enabled is False


def test_worker_defaults_are_the_sdks_and_the_health_and_log_settings_are_read(tmp_path):
    settings = load_settings({}, tmp_path / "missing.env")
    assert settings.tuning == config.WorkerTuning(
        tuner="fixed",
        max_concurrent_activities=100,
        max_concurrent_workflow_tasks=100,
        max_cached_workflows=1000,
        target_cpu=0.8,
        target_memory=0.8,
        poller_autoscaling=False,
    )
    assert (settings.log_format, settings.health_port, settings.health_check_interval_seconds) == ("text", 9001, 10)
    tuned = settings_from(
        tmp_path,
        WORKER_TUNER="resource-based",
        WORKER_MAX_CACHED_WORKFLOWS="0",
        WORKER_TUNER_TARGET_CPU="1",
        WORKER_TUNER_TARGET_MEMORY="0.65",
        WORKER_POLLER_AUTOSCALING="true",
        LOG_FORMAT="json",
        HEALTH_PORT="0",
    )
    assert (tuned.tuning.tuner, tuned.tuning.max_cached_workflows, tuned.tuning.poller_autoscaling) == (
        "resource-based",
        0,
        True,
    )
    assert (tuned.tuning.target_cpu, tuned.tuning.target_memory) == (1.0, 0.65)
    assert (tuned.log_format, tuned.health_port) == ("json", 0)


def test_environment_wins_over_file_and_file_over_defaults(tmp_path):
    settings = settings_from(
        tmp_path,
        "TEMPORAL_TASK_QUEUE=from-file\nTEMPORAL_NAMESPACE=file-namespace\n",
        TEMPORAL_TASK_QUEUE="from-environment",
    )
    assert settings.task_queue == "from-environment"
    assert settings.temporal.namespace == "file-namespace"
    assert settings.temporal.address == config.DEFAULTS["TEMPORAL_ADDRESS"]


def test_empty_value_means_default(tmp_path):
    settings = settings_from(tmp_path, "TEMPORAL_TASK_QUEUE=\n", TEMPORAL_NAMESPACE="")
    assert settings.task_queue == "test-task-queue"
    assert settings.temporal.namespace == "default"


def test_config_env_file_is_read_as_data_not_interpolated(tmp_path):
    settings = settings_from(tmp_path, "TEMPORAL_TASK_QUEUE='queue-$HOME-#1'\n")
    assert settings.task_queue == "queue-$HOME-#1"


def test_config_env_file_location_comes_from_config_env_file_variable(tmp_path):
    custom = tmp_path / "elsewhere.env"
    custom.write_text("TEMPORAL_TASK_QUEUE=custom-file\n")
    settings = load_settings({"CONFIG_ENV_FILE": str(custom)})
    assert settings.task_queue == "custom-file"


def test_settings_are_immutable(tmp_path):
    settings = load_settings({}, tmp_path / "missing.env")
    with pytest.raises(AttributeError):
        settings.task_queue = "other"  # type: ignore[misc]


# Variables that are only checked together with a partner get the partner set.
COMPANIONS = {
    "KEYVAULT_URL": {"KEYVAULT_SECRET_NAME": "temporal-encryption-key"},
    "TEMPORAL_API_KEY_KEYVAULT_SECRET": {"KEYVAULT_URL": "https://vault.example/"},
    "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE": {"KEYVAULT_URL": "https://vault.example/"},
    "CODEC_SERVER_TLS_CERT_FILE": {"CODEC_SERVER_TLS_KEY_FILE": config.__file__},
    "CODEC_SERVER_TLS_KEY_FILE": {"CODEC_SERVER_TLS_CERT_FILE": config.__file__},
}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TEMPORAL_ADDRESS", "no-port", "must be host:port"),
        ("TEMPORAL_ADDRESS", "host:99999", "port must be a whole number from 1 to 65535"),
        ("TEMPORAL_ADDRESS", "host:port", "port must be a whole number"),
        ("TEMPORAL_NAMESPACE", " spaced ", "non-empty name"),
        ("TEMPORAL_TASK_QUEUE", "tab\there", "control characters"),
        ("TEMPORAL_TLS", "maybe", "must be true or false"),
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", "/no/such/cert.pem", "not readable"),
        ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "/no/such/ca.pem", "not readable"),
        ("TEMPORAL_DEV_SERVER_UI_PORT", "0", "port must be a whole number from 1"),
        ("CLIENT_INTERVAL_SECONDS", "soon", "number of seconds"),
        ("CLIENT_INTERVAL_SECONDS", "-1", "at least 0.1"),
        ("CLIENT_INTERVAL_SECONDS", "0", "at least 0.1"),
        ("CLIENT_INTERVAL_SECONDS", "0.05", "at least 0.1"),
        ("CLIENT_MAX_PENDING_WORKFLOWS", "0", "whole number, at least 1"),
        ("CLIENT_MAX_PENDING_WORKFLOWS", "ten", "whole number, at least 1"),
        ("CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS", "0", "at least 1 and at most 604800"),
        ("CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS", "1e9", "at least 1 and at most 604800"),
        ("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "nan", "number of seconds"),
        ("ACTIVITY_SIMULATED_WORK_SECONDS", "inf", "number of seconds"),
        ("LOG_LEVEL", "LOUD", "must be one of DEBUG"),
        ("METRICS_PORT", "90000", "port must be a whole number from 0 to 65535"),
        ("METRICS_PORT", "９０００", "port must be a whole number"),
        ("KEYVAULT_URL", "http://vault.example", "must be an https URL"),
        ("TEMPORAL_API_KEY_KEYVAULT_SECRET", "temporal_api_key", "must be a Key Vault secret or certificate name"),
        ("TEMPORAL_API_KEY_KEYVAULT_SECRET", "k" * 128, "1 to 127 letters, digits and '-'"),
        ("TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE", "a/b", "must be a Key Vault secret or certificate name"),
        ("KEYVAULT_URL", "https://vault.example:99999/", "has a port that is not a whole number"),
        ("KEYVAULT_REFRESH_SECONDS", "0", "at least 1"),
        ("KEYVAULT_STARTUP_TIMEOUT_SECONDS", "x", "number of seconds"),
        ("KEYVAULT_CA_FILE", "/no/such/ca.pem", "not readable"),
        ("KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "sometimes", "must be true or false"),
        ("ENCRYPTION_REQUIRED", "yes please", "must be true or false"),
        ("ENCRYPTION_ALLOW_PLAINTEXT", "for a while", "must be true or false"),
        ("KEYVAULT_FAILED_FETCH_RETRY_SECONDS", "0", "at least 1"),
        ("KEYVAULT_FAILED_FETCH_RETRY_SECONDS", "a minute", "number of seconds"),
        ("CODEC_SERVER_ENCODE", "enabled", "must be true or false"),
        ("CODEC_SERVER_TLS_CERT_FILE", "/no/such/cert.pem", "not readable"),
        ("CODEC_SERVER_TLS_KEY_FILE", "/no/such/key.pem", "not readable"),
        ("CODEC_SERVER_PORT", "0", "port must be a whole number from 1"),
        ("CODEC_SERVER_CORS_ORIGINS", "localhost:8233", "is not an origin"),
        ("CODEC_SERVER_HOST", " ", "must not be empty"),
        ("LOG_FORMAT", "JSON", "must be text or json"),
        ("LOG_FORMAT", "logfmt", "must be text or json"),
        ("HEALTH_PORT", "http", "port must be a whole number from 0 to 65535"),
        ("HEALTH_PORT", "65536", "port must be a whole number from 0 to 65535"),
        ("HEALTH_CHECK_INTERVAL_SECONDS", "0.5", "at least 1"),
        ("HEALTH_CHECK_INTERVAL_SECONDS", "10s", "number of seconds"),
        ("WORKER_TUNER", "auto", "must be fixed or resource-based"),
        ("WORKER_TUNER", "resource_based", "must be fixed or resource-based"),
        ("WORKER_MAX_CONCURRENT_ACTIVITIES", "0", "at least 1"),
        ("WORKER_MAX_CONCURRENT_ACTIVITIES", "1e3", "whole number"),
        ("WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", "1", "at least 2"),
        ("WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", "-5", "whole number"),
        ("WORKER_MAX_CACHED_WORKFLOWS", "lots", "whole number"),
        ("WORKER_MAX_CACHED_WORKFLOWS", "1000000", "whole number"),
        ("WORKER_TUNER_TARGET_CPU", "80%", "more than 0 and at most 1"),
        ("WORKER_TUNER_TARGET_CPU", "0", "more than 0 and at most 1"),
        ("WORKER_TUNER_TARGET_MEMORY", "1.5", "more than 0 and at most 1"),
        ("WORKER_TUNER_TARGET_MEMORY", "nan", "more than 0 and at most 1"),
        ("WORKER_POLLER_AUTOSCALING", "auto", "must be true or false"),
    ],
)
def test_each_bad_value_is_reported_with_its_variable_and_a_fix(tmp_path, variable, value, message):
    problems = problems_for(tmp_path, **{variable: value, **COMPANIONS.get(variable, {})})
    assert len(problems) == 1
    assert problems[0].startswith(f"{variable}=")
    assert message in problems[0]


def test_every_problem_is_reported_at_once(tmp_path):
    problems = problems_for(
        tmp_path,
        "METRICS_PORT=abc\n",
        TEMPORAL_ADDRESS="nope",
        TEMPORAL_TLS="perhaps",
        LOG_LEVEL="chatty",
    )
    assert [problem.split("=")[0] for problem in problems] == [
        "TEMPORAL_ADDRESS",
        "TEMPORAL_TLS",
        "LOG_LEVEL",
        "METRICS_PORT",
    ]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TEMPORAL_TLS": "false", "TEMPORAL_API_KEY": "key"}, "must not travel in plain text"),
        ({"TEMPORAL_TLS_CLIENT_KEY_PATH": "__key__"}, "set both or neither"),
        ({"KEYVAULT_URL": "https://vault.example/"}, "KEYVAULT_URL and KEYVAULT_SECRET_NAME go together"),
        ({"KEYVAULT_SECRET_NAME": "key"}, "KEYVAULT_URL and KEYVAULT_SECRET_NAME go together"),
        (
            {"TEMPORAL_API_KEY_KEYVAULT_SECRET": "api-key"},
            "TEMPORAL_API_KEY_KEYVAULT_SECRET is set but KEYVAULT_URL is not: set KEYVAULT_URL to the vault",
        ),
        (
            {"TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE": "certificate"},
            "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE is set but KEYVAULT_URL is not",
        ),
        (
            {
                "KEYVAULT_URL": "https://vault.example/",
                "TEMPORAL_API_KEY_KEYVAULT_SECRET": "api-key",
                "TEMPORAL_API_KEY": "key",
            },
            "TEMPORAL_API_KEY_KEYVAULT_SECRET and TEMPORAL_API_KEY are both set: the credential comes from Key Vault",
        ),
        (
            {
                "KEYVAULT_URL": "https://vault.example/",
                "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE": "certificate",
                "TEMPORAL_TLS_CLIENT_KEY_PATH": "__key__",
            },
            "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE and TEMPORAL_TLS_CLIENT_KEY_PATH are both set",
        ),
        (
            {"KEYVAULT_URL": "https://vault.example/", "TEMPORAL_API_KEY_KEYVAULT_SECRET": "k", "TEMPORAL_TLS": "0"},
            "TEMPORAL_TLS=false with TEMPORAL_API_KEY_KEYVAULT_SECRET set: Temporal credentials must not travel",
        ),
        (
            {
                "KEYVAULT_URL": "https://v.example/",
                "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE": "c",
                "TEMPORAL_TLS": "0",
            },
            "TEMPORAL_TLS=false with TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE set",
        ),
        ({"ENCRYPTION_REQUIRED": "true"}, "ENCRYPTION_REQUIRED=true but KEYVAULT_URL"),
        ({"ENCRYPTION_ALLOW_PLAINTEXT": "true"}, "ENCRYPTION_ALLOW_PLAINTEXT=true without ENCRYPTION_REQUIRED=true"),
        ({"CODEC_SERVER_ENCODE_TOKEN": "t"}, "CODEC_SERVER_ENCODE_TOKEN is set but CODEC_SERVER_ENCODE is not true"),
        (
            {"CODEC_SERVER_ENCODE": "true", "CODEC_SERVER_TOKEN": "same", "CODEC_SERVER_ENCODE_TOKEN": "same"},
            "CODEC_SERVER_ENCODE_TOKEN equals CODEC_SERVER_TOKEN",
        ),
        (
            {"CODEC_SERVER_TLS_KEY_FILE": "__key__"},
            "CODEC_SERVER_TLS_CERT_FILE and CODEC_SERVER_TLS_KEY_FILE go together",
        ),
        ({"METRICS_PORT": "9100", "HEALTH_PORT": "9100"}, "METRICS_PORT and HEALTH_PORT are both 9100"),
        (
            {"PAYLOAD_STORAGE_MAX_TASK_BYTES": "1000", "PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES": "2000"},
            "PAYLOAD_STORAGE_MAX_TASK_BYTES=1000 is less than PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES=2000",
        ),
    ],
)
def test_contradicting_variables_are_reported(tmp_path, environ, message):
    key_file = tmp_path / "client.key"
    key_file.write_text("key")
    environ = {name: value.replace("__key__", str(key_file)) for name, value in environ.items()}
    problems = problems_for(tmp_path, **environ)
    assert any(message in problem for problem in problems), problems


def test_a_token_shared_by_encode_and_decode_is_never_shown(tmp_path):
    problems = problems_for(
        tmp_path, CODEC_SERVER_ENCODE="true", CODEC_SERVER_TOKEN="canary-99", CODEC_SERVER_ENCODE_TOKEN="canary-99"
    )
    assert problems and "canary-99" not in "\n".join(problems)


def test_encryption_and_codec_server_hardening_settings(tmp_path):
    settings = settings_from(
        tmp_path,
        KEYVAULT_URL="https://vault.example/",
        KEYVAULT_SECRET_NAME="key",
        ENCRYPTION_REQUIRED="true",
        ENCRYPTION_ALLOW_PLAINTEXT="true",
        KEYVAULT_FAILED_FETCH_RETRY_SECONDS="5",
        CODEC_SERVER_ENCODE="true",
        CODEC_SERVER_ENCODE_TOKEN="encode-canary",
        CODEC_SERVER_TLS_CERT_FILE=config.__file__,
        CODEC_SERVER_TLS_KEY_FILE=config.__file__,
    )
    assert settings.encryption.allow_plaintext and settings.encryption.failed_fetch_retry_seconds == 5
    server = settings.codec_server
    assert server.encode and server.encode_token == "encode-canary" and server.tls_key_file == config.__file__
    assert "encode-canary" not in repr(settings)
    defaults = settings_from(tmp_path)
    assert not defaults.encryption.allow_plaintext and defaults.encryption.failed_fetch_retry_seconds == 60
    assert not defaults.codec_server.encode and defaults.codec_server.tls_cert_file is None


@pytest.mark.parametrize(
    ("required", "allow", "policy"),
    [("false", "false", Plaintext.ACCEPT), ("true", "false", Plaintext.REFUSE), ("true", "true", Plaintext.WARN)],
)
def test_unencrypted_payloads_are_refused_exactly_when_encryption_is_required(tmp_path, required, allow, policy):
    settings = settings_from(
        tmp_path,
        KEYVAULT_URL="https://vault.example/",
        KEYVAULT_SECRET_NAME="key",
        ENCRYPTION_REQUIRED=required,
        ENCRYPTION_ALLOW_PLAINTEXT=allow,
    )
    assert plaintext_policy(settings.encryption) is policy


def test_tls_forced_off_with_tls_files_is_reported(tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("ca")
    problems = problems_for(tmp_path, TEMPORAL_TLS="false", TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(ca_file))
    assert any("TLS certificate files" in problem for problem in problems)


def test_secret_values_are_never_echoed_in_problems(tmp_path):
    problems = problems_for(tmp_path, TEMPORAL_TLS="false", TEMPORAL_API_KEY="canary-api-key-1234")
    assert "canary-api-key-1234" not in "\n".join(problems)
    settings = settings_from(tmp_path, TEMPORAL_API_KEY="canary-api-key-1234", CODEC_SERVER_TOKEN="canary-token-99")
    assert "canary-api-key-1234" not in repr(settings)
    assert "canary-token-99" not in repr(settings)


# --- The three deployment shapes -------------------------------------------------------


def test_local_dev_server_connects_in_plain_text(tmp_path):
    kwargs = settings_from(tmp_path).temporal.connect_kwargs()
    assert kwargs == {"target_host": "localhost:7233", "namespace": "default"}


def test_self_hosted_in_cluster_server_connects_in_plain_text(tmp_path):
    settings = settings_from(tmp_path, TEMPORAL_ADDRESS="temporal-frontend.temporal.svc:7233")
    kwargs = settings.temporal.connect_kwargs()
    assert kwargs["target_host"] == "temporal-frontend.temporal.svc:7233"
    assert kwargs.get("tls", False) is False
    assert "api_key" not in kwargs
    assert settings.temporal.uses_tls is False


def test_temporal_cloud_with_api_key_turns_tls_on(tmp_path):
    settings = settings_from(
        tmp_path,
        TEMPORAL_ADDRESS="us-east-1.aws.api.temporal.io:7233",
        TEMPORAL_NAMESPACE="my-ns.a1b2c",
        TEMPORAL_API_KEY="secret-key",
    )
    kwargs = settings.temporal.connect_kwargs()
    assert kwargs["api_key"] == "secret-key"
    assert kwargs["tls"] is True
    assert kwargs["namespace"] == "my-ns.a1b2c"


def test_temporal_cloud_with_mtls_files_passes_their_contents(tmp_path):
    cert, key, ca = tmp_path / "client.pem", tmp_path / "client.key", tmp_path / "ca.pem"
    cert.write_bytes(b"CLIENT CERT")
    key.write_bytes(b"CLIENT KEY")
    ca.write_bytes(b"SERVER CA")
    settings = settings_from(
        tmp_path,
        TEMPORAL_ADDRESS="my-ns.a1b2c.tmprl.cloud:7233",
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(cert),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(key),
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(ca),
        TEMPORAL_TLS_SERVER_NAME="my-ns.a1b2c.tmprl.cloud",
    )
    tls = settings.temporal.connect_kwargs()["tls"]
    assert tls.client_cert == b"CLIENT CERT"
    assert tls.client_private_key == b"CLIENT KEY"
    assert tls.server_root_ca_cert == b"SERVER CA"
    assert tls.domain == "my-ns.a1b2c.tmprl.cloud"


@pytest.mark.parametrize("variable", ["TEMPORAL_API_KEY_KEYVAULT_SECRET", "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE"])
def test_a_vault_that_holds_only_temporal_credentials_needs_no_encryption_key(tmp_path, variable):
    settings = settings_from(tmp_path, KEYVAULT_URL="https://vault.example/", **{variable: "in-the-vault"})
    assert settings.temporal.from_keyvault and settings.keyvault.url == "https://vault.example/"
    assert not settings.encryption.enabled
    assert settings.temporal.uses_tls, "credentials from Key Vault turn TLS on, as TEMPORAL_API_KEY does"


def test_credentials_from_key_vault_become_connect_arguments_with_tls(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"SERVER CA")
    plain = settings_from(tmp_path, KEYVAULT_URL="https://vault.example/", TEMPORAL_API_KEY_KEYVAULT_SECRET="k")
    assert plain.temporal.connect_kwargs(api_key="from-vault") | {"target_host": "x"} == {
        "target_host": "x",
        "namespace": "default",
        "api_key": "from-vault",
        "tls": True,
    }
    mtls = settings_from(
        tmp_path,
        KEYVAULT_URL="https://vault.example/",
        TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE="c",
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(ca),
        TEMPORAL_TLS_SERVER_NAME="my-ns.a1b2c.tmprl.cloud",
    )
    tls = mtls.temporal.connect_kwargs(client_cert=b"CHAIN", client_private_key=b"KEY")["tls"]
    assert (tls.client_cert, tls.client_private_key) == (b"CHAIN", b"KEY")
    assert (tls.server_root_ca_cert, tls.domain) == (b"SERVER CA", "my-ns.a1b2c.tmprl.cloud")


def test_tls_true_turns_tls_on_for_any_address(tmp_path):
    settings = settings_from(tmp_path, TEMPORAL_ADDRESS="temporal.internal:7233", TEMPORAL_TLS="true")
    assert settings.temporal.connect_kwargs()["tls"] is not False
    assert settings.temporal.uses_tls


# --- The command line the scripts use --------------------------------------------------


def run_config_cli(tmp_path: Path, *arguments: str, **environ: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(REPO_DIR / "config.py"), *arguments],
        env=base_environment(tmp_path, **environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_check_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path):
    result = run_config_cli(tmp_path, "check", TEMPORAL_ADDRESS="nope", METRICS_PORT="x")
    assert result.returncode == 2
    assert "TEMPORAL_ADDRESS='nope': must be host:port" in result.stderr
    assert "METRICS_PORT='x'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_apps_catalog_declares_each_variable_once_and_only_what_the_app_reads():
    names = [variable.name for variable in config.VARIABLES]
    assert len(names) == len(set(names)) and all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in names)
    assert list(config.DEFAULTS) == names
    assert not [variable.name for variable in config.VARIABLES if variable.scope is config.Scope.DEPLOY], (
        "the deploy variables are declared on the deploy side (deploy/deploy_config.py)"
    )
    assert config.SECRET_VARIABLES == {
        "TEMPORAL_API_KEY",
        "CODEC_SERVER_TOKEN",
        "CODEC_SERVER_ENCODE_TOKEN",
        "PAYLOAD_STORAGE_CONNECTION_STRING",
    }
    for variable in config.VARIABLES:
        if variable.default:
            variable.parse(variable.default)  # every default passes its own check


@pytest.mark.parametrize("script", ["worker.py", "client.py"])
def test_programs_exit_2_on_configuration_mistakes(tmp_path, script):
    result = subprocess.run(
        [PYTHON, str(REPO_DIR / script)],
        env=base_environment(tmp_path, TEMPORAL_TLS="maybe", TEMPORAL_API_KEY="canary-key-5678"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "TEMPORAL_TLS='maybe': must be true or false" in result.stderr
    assert "Traceback" not in result.stderr
    assert "canary-key-5678" not in result.stdout + result.stderr


# ---------------------------------------------------------------- the connection string's fields (one parser)


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        (
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k/+==;EndpointSuffix=core.windows.net",
            {
                "defaultendpointsprotocol": "https",
                "accountname": "a",
                "accountkey": "k/+==",
                "endpointsuffix": "core.windows.net",
            },
        ),
        (
            " BlobEndpoint = http://127.0.0.1:10000/a ;SharedAccessSignature=sv=2024&sig=x%3D; ",
            {"blobendpoint": "http://127.0.0.1:10000/a", "sharedaccesssignature": "sv=2024&sig=x%3D"},
        ),
        ("UseDevelopmentStorage=true", {"usedevelopmentstorage": "true"}),
        ("AccountName=", {"accountname": ""}),
    ],
    ids=["azure", "spaces-and-sas", "emulator", "empty-value"],
)
def test_connection_string_fields_are_lowercased_keys_and_stripped_values(raw, fields):
    assert config.connection_string_fields(raw) == fields


@pytest.mark.parametrize(
    "raw",
    ["", "not a connection string", "k=v;;x=y", "=v", "AccountName=a\n;AccountKey=canary-key"],
    ids=["empty", "no-pairs", "empty-pair", "no-key", "control-character"],
)
def test_what_is_not_key_value_pairs_is_refused_without_showing_it(raw):
    with pytest.raises(ValueError, match="KEY=VALUE pairs separated by ';'") as raised:
        config.connection_string_fields(raw)
    assert "canary" not in str(raised.value)
    with pytest.raises(ValueError, match="KEY=VALUE pairs separated by ';'"):
        config.storage_connection_string(raw)
