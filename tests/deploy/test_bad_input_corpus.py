"""Bad input corpus: malformed configuration values, each refused naming its variable or carried byte-exact.

Every case is one line of CORPUS: (variable, value, expected outcome). Each value goes, as a user would
give it, through both sides of the project:

  * the Python side (app variables only): `python config.py check`, and for a refused value also
    `worker.py` and `client.py`, which must exit 2 naming the variable;
  * the shell side: `source_config.sh --check deploy` and `generate-k8s-manifests.sh` (which validates
    exactly as `--check render` does, run too when the value must be refused there), in a private copy of
    the scripts with stub az/docker/kubectl.

Whatever the outcome, no run may print a Python traceback, no value may reach a shell (a `touch` on PATH
records every call and creates the canary file that `$(touch CANARY)` or a backtick payload would
create), and every manifest that is rendered must be sound: valid for Kubernetes (strict) or KEDA's
schema, read the same by kubectl and PyYAML, and telling the pod what its ConfigMap tells the worker.

Values come from config.env (written as python-dotenv reads it back exactly), except bytes that are not
UTF-8, which only the environment can hold.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

import config
from deploy import deploy_config

from helpers.deploy_harness import (
    CONTEXT,
    FULL_CONFIG,
    SUBSCRIPTION,
    Project,
    Result,
    dotenv_line,
    parse_with_kubectl,
    parse_with_pyyaml,
    secret_values,
    shown,
)
from helpers.fake_keyvault import azure_cli_environment
from helpers.manifest_checks import KUBERNETES_VERSION, check_temporal_trigger, crd_schema, keda_schema
from helpers.processes import base_environment, free_port

# Replaced in every value by the path of a file that only a shell running the value would create.
CANARY = "CANARY"
INT64_MAX = 2**63 - 1
LONG = 200_000  # longer than one command-line argument may be (MAX_ARG_STRLEN, 128 KiB)


@dataclass(frozen=True)
class Outcome:
    """What must happen to a value.

    kind "rejected": refused with a line naming the variable and containing `message`, by every entry
    point from `by` on: "config.py" (config.py, the programs and all scripts), "render" (the scripts;
    config.py accepts it for local use) or "deploy" (only `--check deploy`; manifests still render).
    kind "carried": accepted everywhere and found byte-exact in the ConfigMap or the Secret it belongs in.
    kind "default": an empty value counts as unset, so the variable keeps its default.
    kind "replaced": accepted everywhere, but the cluster gets the rendered manifests' own value (the deployed
    codec server listens on 0.0.0.0 whatever CODEC_SERVER_HOST says).
    """

    kind: str
    message: str = ""
    by: str = ""


def rejected(message: str, by: str = "config.py") -> Outcome:
    return Outcome("rejected", message, by)


CARRIED = Outcome("carried")
DEFAULT = Outcome("default")

# fmt: off
CORPUS = [
    # --- names: Kubernetes names are strict, Temporal names take any text but control characters
    ("APP_NAME", "worker;touch CANARY", rejected("RFC 1123", by="render")),
    ("APP_NAME", "$(touch CANARY)", rejected("RFC 1123", by="render")),
    ("KUBERNETES_NAMESPACE", "team`touch CANARY`", rejected("RFC 1123", by="render")),
    ("KUBERNETES_NAMESPACE", "workers\nkind: Secret", rejected("RFC 1123", by="render")),
    ("TEMPORAL_TASK_QUEUE", "q $(touch CANARY) `touch CANARY`; | && \"' # x", CARRIED),
    ("TEMPORAL_NAMESPACE", "ns; echo $HOME > CANARY && echo | cat", CARRIED),
    ("TEMPORAL_TASK_QUEUE", "q\x1b[31mred", rejected("control characters")),
    ("TEMPORAL_TASK_QUEUE", "first line\nsecond line", rejected("control characters")),
    ("TEMPORAL_NAMESPACE", " padded", rejected("without surrounding spaces")),
    ("TEMPORAL_TASK_QUEUE", "队列-😀-ü-\u202eevil", CARRIED),
    ("TEMPORAL_TASK_QUEUE", "line\u2028separator\u00a0nbsp", CARRIED),
    ("TEMPORAL_TASK_QUEUE", "csi\x9b31m", CARRIED),
    ("TEMPORAL_TASK_QUEUE", "q" * LONG, CARRIED),
    ("TEMPORAL_TASK_QUEUE", "bytes-\udcff\udcfe", rejected("not UTF-8")),
    ("TEMPORAL_TLS_SERVER_NAME", 'srv" \\ `touch CANARY`\n$(touch CANARY)\r\t', CARRIED),
    ("KEYVAULT_SECRET_NAME", "key'$(touch CANARY)'", rejected("Key Vault secret or certificate name")),
    ("KEYVAULT_SECRET_NAME", "k" * 128, rejected("1 to 127 letters, digits and '-'")),
    ("KEYVAULT_SECRET_NAME", "temporal-encryption-key-2", CARRIED),
    ("CODEC_SERVER_HOST", "127.0.0.1; touch CANARY", Outcome("replaced")),
    # --- ports: whole numbers, no leading zeros (YAML and bash arithmetic read 0010 as octal 8)
    ("METRICS_PORT", "9000; touch CANARY", rejected("port must be a whole number")),
    ("METRICS_PORT", "0010", rejected("without leading zeros")),
    ("METRICS_PORT", "00", rejected("without leading zeros")),
    ("METRICS_PORT", "9" * 5000, rejected("port must be a whole number")),
    ("METRICS_PORT", "0x2328", rejected("port must be a whole number")),
    ("CODEC_SERVER_PORT", "-1", rejected("port must be a whole number")),
    ("CODEC_SERVER_PORT", "8081 ", rejected("port must be a whole number")),
    ("TEMPORAL_DEV_SERVER_UI_PORT", "65536", rejected("port must be a whole number")),
    ("TEMPORAL_ADDRESS", "localhost:07233", rejected("without leading zeros")),
    ("TEMPORAL_ADDRESS", "temporal;touch CANARY", rejected("must be host:port")),
    ("TEMPORAL_ADDRESS", "temporal:7233 && touch CANARY", rejected("must be host:port")),
    ("TEMPORAL_ADDRESS", "temporal:7233\n", rejected("must be host:port")),
    ("TEMPORAL_ADDRESS", "$(touch${IFS}CANARY):7233", CARRIED),
    # --- quantities and counts
    ("CPU_REQUEST", "200m; touch CANARY", rejected("CPU quantity", by="render")),
    ("CPU_LIMIT", "1e3", rejected("CPU quantity", by="render")),
    ("CPU_REQUEST", "０.５", rejected("CPU quantity", by="render")),
    ("MEMORY_REQUEST", "256Mi\nkind: Secret", rejected("memory quantity", by="render")),
    ("MEMORY_LIMIT", "-512Mi", rejected("memory quantity", by="render")),
    ("REPLICAS", "2 && touch CANARY", rejected("whole number", by="render")),
    ("REPLICAS", "-1", rejected("whole number", by="render")),
    ("KEDA_MAX_REPLICAS", "9999999", rejected("whole number", by="render")),
    ("KEDA_TARGET_QUEUE_SIZE", "5`touch CANARY`", rejected("whole number", by="render")),
    ("KEDA_MIN_REPLICAS", "11", rejected("more than KEDA_MAX_REPLICAS", by="render")),
    ("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "1e20", rejected("at most")),
    ("CLIENT_INTERVAL_SECONDS", "10; touch CANARY", rejected("number of seconds")),
    ("KEYVAULT_REFRESH_SECONDS", "-inf", rejected("number of seconds")),
    ("KEYVAULT_FAILED_FETCH_RETRY_SECONDS", "60; touch CANARY", rejected("number of seconds")),
    ("ACTIVITY_SIMULATED_WORK_SECONDS", "0x10", rejected("number of seconds")),
    # --- booleans and words
    ("KEDA_ENABLED", "true; touch CANARY", rejected("true or false", by="render")),
    ("TEMPORAL_TLS", "$(touch CANARY)", rejected("true or false")),
    ("ENCRYPTION_REQUIRED", "on", rejected("true or false")),
    ("ENCRYPTION_REQUIRED", " TRUE ", CARRIED),
    ("ENCRYPTION_ALLOW_PLAINTEXT", "$(touch CANARY)", rejected("true or false")),
    ("ENCRYPTION_ALLOW_PLAINTEXT", "true", rejected("without ENCRYPTION_REQUIRED=true")),
    ("CODEC_SERVER_ENCODE", "yes`touch CANARY`", rejected("true or false")),
    ("LOG_LEVEL", "INFO; touch CANARY", rejected("must be one of")),
    ("BUILD_MODE", "buildx`touch CANARY`", rejected("must be buildx", by="deploy")),
    ("BUILD_PLATFORMS", "linux/amd64 && touch CANARY", rejected("comma-separated platforms", by="deploy")),
    ("ROLLOUT_TIMEOUT", "5m; touch CANARY", rejected("with a unit", by="deploy")),
    # --- URLs and origins
    ("KEYVAULT_URL", "https://vault.example/$(touch${IFS}CANARY)`touch${IFS}CANARY`", CARRIED),
    ("KEYVAULT_URL", "javascript:alert(1)", rejected("must be an https URL")),
    ("KEYVAULT_URL", "https://", rejected("must be an https URL")),
    ("KEYVAULT_URL", "https://va ult.example/", rejected("must be an https URL")),
    ("KEYVAULT_URL", "https://[::1/", rejected("IPv6")),
    # --- names Azure restricts, by Azure's rules (a vault, a storage account; an emulator's host is not Azure's)
    ("KEYVAULT_URL", "https://a--b.vault.azure.net/", rejected("which Azure does not allow")),
    ("KEYVAULT_URL", "https://1vault.vault.azure.net/", rejected("which Azure does not allow")),
    ("KEYVAULT_URL", "https://" + "v" * 25 + ".vault.azure.net/", rejected("which Azure does not allow")),
    ("KEYVAULT_URL", "https://my-vault.vault.azure.net/$(touch${IFS}CANARY)", rejected("the vault's URL alone")),
    ("KEYVAULT_URL", "https://my-vault.vault.azure.net/", CARRIED),
    ("PAYLOAD_STORAGE_ACCOUNT_URL", "https://my_acct.blob.core.windows.net/", rejected("Azure does not allow")),
    ("PAYLOAD_STORAGE_ACCOUNT_URL", "https://ab.blob.core.windows.net/", rejected("which Azure does not allow")),
    ("RESOURCE_GROUP", "rg $(touch CANARY)", rejected("resource group name as Azure allows", by="deploy")),
    ("RESOURCE_GROUP", "rg`touch CANARY`;x", rejected("resource group name as Azure allows", by="deploy")),
    ("RESOURCE_GROUP", "rg\x1b[31m", rejected("resource group name as Azure allows", by="deploy")),
    ("RESOURCE_GROUP", "rg.", rejected("not ending with '.'", by="deploy")),
    ("RESOURCE_GROUP", "r" * 91, rejected("1 to 90", by="deploy")),
    ("AKS_CLUSTER_NAME", "aks;touch CANARY", rejected("AKS cluster name as Azure allows", by="deploy")),
    ("AKS_CLUSTER_NAME", "aks\x1b]0;title\x07", rejected("AKS cluster name as Azure allows", by="deploy")),
    ("AKS_CLUSTER_NAME", "-aks", rejected("AKS cluster name as Azure allows", by="deploy")),
    ("CODEC_SERVER_CORS_ORIGINS", "http://localhost:8233,$(touch CANARY)", rejected("is not an origin")),
    ("CODEC_SERVER_CORS_ORIGINS", "http://localhost:8233/path", rejected("is not an origin")),
    ("CODEC_SERVER_CORS_ORIGINS", "https://ui.example.com, http://localhost:8233", CARRIED),
    ("PAYLOAD_STORAGE_ACCOUNT_URL", "http://acct.blob.core.windows.net/", rejected("https blob endpoint")),
    ("PAYLOAD_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net/?sv=2024&sig=abc", rejected("no SAS token")),
    ("PAYLOAD_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net/$(touch CANARY)", rejected("blob endpoint")),
    ("PAYLOAD_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net/container/blob", rejected("not a container")),
    ("PAYLOAD_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net/", CARRIED),
    # --- payload storage: names, sizes and days
    ("PAYLOAD_STORAGE_CONTAINER", "Payloads;touch CANARY", rejected("container name")),
    ("PAYLOAD_STORAGE_CONTAINER", "payloads\nkind: Secret", rejected("container name")),
    ("PAYLOAD_STORAGE_THRESHOLD_BYTES", "3000000", rejected("from 0 to 2097152")),
    ("PAYLOAD_STORAGE_THRESHOLD_BYTES", "256Ki", rejected("whole number of bytes")),
    ("PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES", "1e9", rejected("whole number of bytes")),
    ("PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES", "100000", rejected("no payload could be stored")),
    ("PAYLOAD_STORAGE_RETENTION_DAYS", "30; touch CANARY", rejected("whole number", by="render")),
    ("PAYLOAD_STORAGE_RETENTION_DAYS", "0", rejected("at least 1", by="render")),
    ("PAYLOAD_STORAGE_CA_FILE", "/tmp/$(touch CANARY)", rejected("not readable")),
    # --- keys, passwords and identities
    ("TEMPORAL_API_KEY", "key\n$(touch CANARY)\n`touch CANARY`;|&&'\"#", CARRIED),
    ("TEMPORAL_API_KEY", "🔑" + "k" * LONG, CARRIED),
    ("TEMPORAL_API_KEY", "key-\udcff", rejected("not UTF-8")),
    ("TEMPORAL_API_KEY_KEYVAULT_SECRET", "temporal-api-key", CARRIED),
    ("TEMPORAL_API_KEY_KEYVAULT_SECRET", "key'$(touch CANARY)'", rejected("Key Vault secret or certificate name")),
    ("TEMPORAL_API_KEY_KEYVAULT_SECRET", "../secrets/other", rejected("Key Vault secret or certificate name")),
    ("TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE", "temporal-client-1", CARRIED),
    ("TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE", "c" * 128, rejected("1 to 127 letters, digits and '-'")),
    ("ACR_PASSWORD", "p@ss'w\"o$(touch CANARY)rd\n# not a comment", CARRIED),
    ("ACR_PASSWORD", "password-\udcff", rejected("not UTF-8", by="render")),
    ("ACR_PASSWORD", "", rejected("go together", by="render")),
    ("ACR_USERNAME", "$(touch CANARY)", CARRIED),
    ("ACR_USERNAME", "user:name", rejected("must not contain ':'", by="render")),
    ("ACR_USERNAME", "user\tname", rejected("control characters", by="render")),
    ("ACR_EMAIL", "ops@example.com; touch CANARY", CARRIED),
    ("PAYLOAD_STORAGE_CONNECTION_STRING", "AccountName=a;AccountKey=k$(touch CANARY)`x`'\"#;", CARRIED),
    ("PAYLOAD_STORAGE_CONNECTION_STRING", "not a connection string; touch CANARY", rejected("connection string")),
    ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000\n", rejected("GUID", by="render")),
    ("AZURE_CLIENT_ID", "$(uuidgen)", rejected("GUID", by="render")),
    ("AZURE_SUBSCRIPTION_ID", "11111111-2222-3333-4444-555555555555; touch CANARY", rejected("GUID", by="deploy")),
    ("KUBE_CONTEXT", "ctx\x1b]0;title\x07", rejected("control characters", by="deploy")),
    # --- images
    ("IMAGE_TAG", "v1;touch CANARY", rejected("letters, digits", by="render")),
    ("IMAGE_TAG", "a" * 64, rejected("letters, digits", by="render")),
    ("APP_IMAGE", "testregistry.azurecr.io/w:1 --privileged", rejected("REGISTRY/REPOSITORY:TAG", by="render")),
    ("APP_IMAGE", "testregistry.azurecr.io/w@sha256:$(touch CANARY)", rejected("REGISTRY/REPOSITORY", by="render")),
    ("APP_IMAGE", "testregistry.azurecr.io/w@sha256:" + "0" * 63, rejected("pinned by digest", by="render")),
    ("ACR_NAME", "testregistry.azurecr.io", rejected("5 to 50 letters and digits", by="render")),
    ("ACR_NAME", "reg$(touch CANARY)", rejected("5 to 50 letters and digits", by="render")),
    # --- files
    ("TEMPORAL_TLS_CLIENT_CERT_PATH", "/tmp/" + "a" * 5000, rejected("not readable")),
    ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "/tmp/$(touch CANARY)", rejected("not readable")),
    ("KEYVAULT_CA_FILE", "/dev/null/ca.pem", rejected("not readable")),
    ("CODEC_SERVER_TLS_CERT_FILE", "/tmp/$(touch CANARY)", rejected("not readable")),
    # --- health, logs and tuning
    ("HEALTH_PORT", "9001; touch CANARY", rejected("port must be a whole number")),
    ("HEALTH_PORT", "0", rejected("the Kubernetes probes", by="render")),
    ("HEALTH_PORT", "9000", rejected("METRICS_PORT and HEALTH_PORT are both 9000")),
    ("HEALTH_CHECK_INTERVAL_SECONDS", "`touch CANARY`", rejected("number of seconds")),
    ("LOG_FORMAT", "json`touch CANARY`", rejected("must be text or json")),
    ("LOG_FORMAT", "text", CARRIED),
    ("WORKER_TUNER", "fixed; touch CANARY", rejected("must be fixed or resource-based")),
    ("WORKER_TUNER", "resource-based", CARRIED),
    ("WORKER_MAX_CONCURRENT_ACTIVITIES", "100 && touch CANARY", rejected("whole number")),
    ("WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", "1", rejected("at least 2")),
    ("WORKER_MAX_CACHED_WORKFLOWS", "$(touch CANARY)", rejected("whole number")),
    ("WORKER_TUNER_TARGET_CPU", "0.8; touch CANARY", rejected("more than 0 and at most 1")),
    ("WORKER_TUNER_TARGET_MEMORY", "-0.5", rejected("more than 0 and at most 1")),
    ("WORKER_POLLER_AUTOSCALING", "yes", rejected("true or false")),
    ("METRICS_SCRAPE", "podmonitor; touch CANARY", rejected("must be none, annotations", by="render")),
    # --- Worker Versioning: names as the temporal-worker-controller checks them; versions are the manifests' to set
    ("TEMPORAL_WORKER_BUILD_ID", "b" * 64, rejected("at most 63 letters, digits")),
    ("TEMPORAL_WORKER_BUILD_ID", "v1;touch CANARY", rejected("at most 63 letters, digits")),
    ("TEMPORAL_WORKER_BUILD_ID", "-leading-dash", rejected("starting and ending with a letter or digit")),
    ("TEMPORAL_WORKER_BUILD_ID", "0123abcd", rejected("is set by each versioned Deployment", by="render")),
    ("TEMPORAL_DEPLOYMENT_NAME", "orders.v2", rejected("Temporal refuses '.' and ':'")),
    ("TEMPORAL_DEPLOYMENT_NAME", "orders:v2", rejected("Temporal refuses '.' and ':'")),
    ("TEMPORAL_DEPLOYMENT_NAME", "team/" + "w" * 59, rejected("at most 63 letters")),
    ("TEMPORAL_DEPLOYMENT_NAME", "$(touch CANARY)", rejected("at most 63 letters")),
    ("TEMPORAL_DEPLOYMENT_NAME", "workers/worker", rejected("is set by each versioned Deployment", by="render")),
    ("WORKER_VERSIONING_BEHAVIOR", "sticky", rejected("must be pinned or auto-upgrade")),
    ("WORKER_VERSIONING", "yes`touch CANARY`", rejected("true or false", by="render")),
    ("DEPLOY_REPLAY_HISTORIES", "-1", rejected("whole number", by="render")),
    ("DEPLOY_REPLAY_HISTORIES", "20; touch CANARY", rejected("whole number", by="render")),
    ("DEPLOY_TEMPORAL_ADDRESS", "localhost:7233 && touch CANARY", rejected("must be host:port", by="render")),
    # --- addresses, ranges and the pod's identity
    ("METRICS_BIND_ADDRESS", "0.0.0.0; touch CANARY", rejected("must be an IP address")),
    ("METRICS_BIND_ADDRESS", "::", CARRIED),
    ("NETWORK_POLICY_EGRESS_CIDRS", "10.0.0.0/8 && touch CANARY", rejected("not an address range", by="render")),
    ("NETWORK_POLICY_EGRESS_CIDRS", "10.1.2.3/16", rejected("did you mean 10.1.0.0/16", by="render")),
    ("NETWORK_POLICY_EGRESS_CIDRS", "0.0.0.0/0,169.254.169.254/32", rejected("instance metadata", by="render")),
    ("NETWORK_POLICY", "$(touch CANARY)", rejected("true or false", by="render")),
    ("USE_NODE_IDENTITY", "true", rejected("both choose the pod's Azure identity", by="render")),
    ("AZURE_CLIENT_ID", "", rejected("KEYVAULT_URL is set but AZURE_CLIENT_ID is not", by="render")),
    # --- empty: the same as unset
    ("TEMPORAL_TASK_QUEUE", "", DEFAULT),
    ("TEMPORAL_ADDRESS", "", DEFAULT),
    ("KUBERNETES_NAMESPACE", "", DEFAULT),
    ("MEMORY_LIMIT", "", DEFAULT),
]
# fmt: on

# Variables only checked together with a partner get the partner (loopback only: nothing is contacted).
COMPANIONS = {
    "KEYVAULT_URL": {"KEYVAULT_SECRET_NAME": "temporal-encryption-key"},
    "KEYVAULT_SECRET_NAME": {"KEYVAULT_URL": "https://127.0.0.1:1/"},
    "ENCRYPTION_REQUIRED": {"KEYVAULT_URL": "https://127.0.0.1:1/", "KEYVAULT_SECRET_NAME": "temporal-encryption-key"},
    "APP_IMAGE": {"IMAGE_TAG": ""},
    # The credential in Key Vault replaces the one in config.env (SHELL_BASE has an API key).
    "TEMPORAL_API_KEY_KEYVAULT_SECRET": {"KEYVAULT_URL": "https://127.0.0.1:1/", "TEMPORAL_API_KEY": ""},
    "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE": {"KEYVAULT_URL": "https://127.0.0.1:1/"},
    "HEALTH_PORT": {"METRICS_PORT": "9000"},
    # The two Worker Versioning names go together: each is checked with a valid partner.
    "TEMPORAL_WORKER_BUILD_ID": {"TEMPORAL_DEPLOYMENT_NAME": "orders"},
    "TEMPORAL_DEPLOYMENT_NAME": {"TEMPORAL_WORKER_BUILD_ID": "0123abcd"},
}
# The shell side starts from a deployment with every feature on, so that every manifest is rendered.
SHELL_BASE = {
    **FULL_CONFIG,
    "KEYVAULT_URL": "https://my-vault.vault.azure.net/",
    "KEYVAULT_SECRET_NAME": "key",
    "CODEC_SERVER_DEPLOY": "true",
    "CODEC_SERVER_AZURE_CLIENT_ID": "12345678-8888-7777-6666-555555555555",
}
PULL_SECRET_FIELDS = {"ACR_USERNAME": "username", "ACR_PASSWORD": "password", "ACR_EMAIL": "email"}
SECRETS = config.SECRET_VARIABLES | {"ACR_PASSWORD"}
APP_CORPUS = [case for case in CORPUS if case[0] in config.DEFAULTS]


def parameters(cases: list[tuple[str, str, Outcome]]) -> list:
    """The cases as pytest parameters, each named by its variable and (the start of) its value."""
    return [pytest.param(*case, id=f"{case[0]}={ascii(case[1])[:40]}") for case in cases]


def is_text(value: str) -> bool:
    """Whether the value is UTF-8 text; values from undecodable environment bytes hold lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def with_canary(value: str, canary: Path) -> str:
    return value.replace(CANARY, str(canary))


def problem_lines(output: str, variable: str) -> list[str]:
    return [line for line in output.splitlines() if variable in line]


def assert_refused(output: str, variable: str, message: str) -> None:
    lines = problem_lines(output, variable)
    assert any(message in line for line in lines), f"no line names {variable} with {message!r}:\n{output[-3000:]}"


def assert_no_traceback(output: str) -> None:
    assert "Traceback" not in output, output[-3000:]


def assert_not_echoed(output: str, variable: str, value: str) -> None:
    """A secret's value is never shown, not even in the message that refuses it."""
    if variable in SECRETS and value:
        assert value not in output, f"{variable}'s value was printed"


# --- The Python side ------------------------------------------------------------------------------


def app_environment(tmp_path: Path, variable: str, value: str) -> dict[str, str]:
    """config.env (or, for bytes that are not text, the environment) with the value, Temporal on a closed
    loopback port, and Azure identity limited to the stub `az`: a program that wrongly started would reach
    nothing outside this machine."""
    values = {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", **COMPANIONS.get(variable, {}), variable: value}
    environment = azure_cli_environment(base_environment(tmp_path))
    for name in values:
        environment.pop(name, None)  # the environment would win over config.env
    if is_text(value):
        config_file = tmp_path / "config.env"
        config_file.write_text("".join(dotenv_line(name, text) for name, text in values.items()), encoding="utf-8")
        environment["CONFIG_ENV_FILE"] = str(config_file)
    else:
        environment.update(values)
    return environment


@pytest.mark.parametrize(("variable", "value", "outcome"), parameters(APP_CORPUS))
def test_config_py_and_the_programs(tmp_path: Path, run_app, variable: str, value: str, outcome: Outcome) -> None:
    canary = tmp_path / "pwned"
    value = with_canary(value, canary)
    environment = app_environment(tmp_path, variable, value)

    check = run_app("config.py", "check", env=environment)
    status = check.wait()
    assert_no_traceback(check.output)
    assert_not_echoed(check.output, variable, value)
    if outcome.kind == "rejected" and outcome.by == "config.py":
        assert status == 2, check.output
        assert_refused(check.output, variable, outcome.message)
        programs = {"worker.py": run_app("worker.py", env=environment)}
        programs["client.py"] = run_app("client.py", "--count", "1", env=environment)
        for script, program in programs.items():
            assert program.wait() == 2, f"{script}:\n{program.output}"
            assert_refused(program.output, variable, outcome.message)
            assert_no_traceback(program.output)
            assert_not_echoed(program.output, variable, value)
            assert "Initializing worker" not in program.output and "Starting workflow" not in program.output
    else:
        assert status == 0 and "Configuration OK" in check.output, check.output
        if outcome.kind in ("carried", "default") and variable not in deploy_config.SECRET_VARIABLES:
            expected = value if outcome.kind == "carried" else config.DEFAULTS[variable]
            assert value_config_py_reads(environment, variable) == expected, "config.py reads the value byte-exact"
    assert not canary.exists(), "a shell ran the value"


def value_config_py_reads(environment: dict[str, str], variable: str) -> str:
    """The text config.py reads for a variable, with the same environment (and so the same config.env)."""
    return config.read_variables(environment)[variable]


# --- The shell side -------------------------------------------------------------------------------


def corpus_project(tmp_path: Path) -> Project:
    """The scripts' private copy, plus a `touch` on PATH that is recorded like the stubs before it runs."""
    project = Project(tmp_path / "project")
    touch = project.bin / "touch"
    touch.write_text(f'#!/bin/sh\n"$STUB_PYTHON" "${{0%/*}}/stub.py" touch "$@" && exec {shutil.which("touch")} "$@"\n')
    touch.chmod(0o755)
    return project


def run_script(project: Project, canary: Path, *command: str, **environment: str) -> Result:
    """Run a script of the copy; nothing it ran may have been a shell evaluating a value."""
    result = project.run(*command, **environment)
    assert_no_traceback(result.output)
    assert [call for call in project.calls() if call["tool"] == "touch"] == [], "a shell ran `touch` from a value"
    assert not canary.exists(), "a shell ran the value"
    return result


def stub_argv(project: Project) -> str:
    return json.dumps([call["argv"] for call in project.calls()], ensure_ascii=False)


def assert_manifests_sound(directory: Path) -> None:
    """Every manifest: read alike by kubectl and PyYAML, valid (strict) for Kubernetes or KEDA, and a pod
    that matches what its ConfigMap tells the worker."""
    documents = {}
    for path in sorted(directory.glob("*.yaml")):
        parsed = parse_with_kubectl(path)
        assert parsed == parse_with_pyyaml(path), f"kubectl and PyYAML read {path.name} differently"
        for document in parsed:
            if not path.name.startswith("codec-server-"):  # the worker's objects, checked together below
                documents[document["kind"]] = document
            if document["apiVersion"].startswith("keda.sh/"):
                jsonschema.validate(document, keda_schema(document["kind"]))
            elif ".coreos.com/" in document["apiVersion"]:
                jsonschema.validate(document, crd_schema(document["apiVersion"], document["kind"]))
            else:
                kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    if "ScaledObject" in documents:
        [trigger] = documents["ScaledObject"]["spec"]["triggers"]
        check_temporal_trigger(trigger)
    settings = {**config.DEFAULTS, **documents["ConfigMap"]["data"]}  # what the worker in the pod reads
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    metrics_port, health_port = int(settings["METRICS_PORT"]), int(settings["HEALTH_PORT"])
    ports = [port["containerPort"] for port in container["ports"]]
    assert ports == [health_port] + ([metrics_port] if metrics_port else [])
    grace = pod["terminationGracePeriodSeconds"]
    assert isinstance(grace, int) and float(settings["WORKER_SHUTDOWN_TIMEOUT_SECONDS"]) < grace <= INT64_MAX


def carried_value(project: Project, variable: str) -> str:
    """Where a legal value lands: the app Secret, the image pull Secret, or the ConfigMap."""
    if variable in ("TEMPORAL_API_KEY", "PAYLOAD_STORAGE_CONNECTION_STRING"):
        [secret] = project.manifest("app-secret.yaml")
        return secret_values(secret)[variable]
    if variable in PULL_SECRET_FIELDS:
        [secret] = project.manifest("acr-secret.yaml")
        [entry] = json.loads(secret_values(secret)[".dockerconfigjson"])["auths"].values()
        return entry[PULL_SECRET_FIELDS[variable]]
    if variable in config.CATALOG and config.CATALOG[variable].scope is config.Scope.CODEC_SERVER:
        [config_map] = project.manifest("codec-server-config-map.yaml")  # the deployed codec server's
        return config_map["data"][variable]
    [config_map] = project.manifest("config-map.yaml")
    return config_map["data"][variable]


@pytest.mark.parametrize(("variable", "value", "outcome"), parameters(CORPUS))
def test_source_config_and_generate_manifests(tmp_path: Path, variable: str, value: str, outcome: Outcome) -> None:
    canary = tmp_path / "pwned"
    value = with_canary(value, canary)
    project = corpus_project(tmp_path)
    values = {**SHELL_BASE, **COMPANIONS.get(variable, {}), variable: value}
    environment = {}
    if not is_text(value):
        environment[variable] = values.pop(variable)
    project.write_config(values)
    before = project.files()

    deploy_check = run_script(project, canary, "bash", "source_config.sh", "--check", "deploy", **environment)
    generated = run_script(project, canary, "generate-k8s-manifests.sh", **environment)
    for result in (deploy_check, generated):
        assert_not_echoed(result.output, variable, value)
    if outcome.kind == "rejected":
        assert deploy_check.returncode == 2
        assert_refused(deploy_check.stderr, variable, outcome.message)
    else:
        assert deploy_check.returncode == 0, deploy_check.output

    if outcome.kind == "rejected" and outcome.by in ("config.py", "render"):
        assert generated.returncode == 2
        assert_refused(generated.stderr, variable, outcome.message)
        assert "nothing was rendered" in generated.stderr
        assert project.files() == before, "nothing is written when a value is refused"
        assert [call for call in project.calls() if call["tool"] == "kubectl"] == [], "kubectl never saw the value"
        render_check = run_script(project, canary, "bash", "source_config.sh", "--check", "render", **environment)
        assert render_check.returncode == 2
        assert_refused(render_check.stderr, variable, outcome.message)
        assert_not_echoed(render_check.output, variable, value)
        return

    # generate-k8s-manifests.sh validated exactly as `--check render` does, and rendered.
    assert generated.returncode == 0, generated.output
    assert_manifests_sound(project.root)
    if outcome.kind == "carried":
        assert carried_value(project, variable) == value, "the value arrives byte-exact"
        assert value not in stub_argv(project), "values travel in files, never on a command line"
    elif outcome.kind == "replaced":
        assert carried_value(project, variable) != value, "the cluster's own value"
        assert value not in stub_argv(project)
    elif outcome.kind == "default":
        without = {name: text for name, text in values.items() if name != variable}
        project.write_config(without)
        default = shown(project)[variable]
        assert default, f"{variable} has a default"
        project.write_config(values)
        assert shown(project)[variable] == default, "an empty value counts as unset"
        if variable in config.DEFAULTS:
            assert carried_value(project, variable) == config.DEFAULTS[variable]


def test_a_kube_context_full_of_shell_syntax_reaches_kubectl_as_one_argument(tmp_path: Path) -> None:
    """A kubectl context name is free text; deploy.sh hands it to every kubectl call as one argv word."""
    canary = tmp_path / "pwned"
    context = f"ctx $(touch {canary}) `touch {canary}`; | && '\"# x"
    project = corpus_project(tmp_path)
    project.write_config({**SHELL_BASE, "KUBE_CONTEXT": context})
    result = run_script(project, canary, "deploy.sh", STUB_CONTEXTS=f"other\n{context}")
    assert result.returncode == 0, result.output
    contexts = {
        call["argv"][call["argv"].index("--context") + 1] for call in project.calls() if "--context" in call["argv"]
    }
    assert contexts == {context}


def printed_words(command: str) -> list[str]:
    """The arguments bash reads from a printed command line (each word printed NUL-terminated, nothing run)."""
    completed = subprocess.run(
        ["bash", "-c", f"set -- {command}; printf '%s\\0' \"$@\""], capture_output=True, check=True, env={}
    )
    return completed.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1]


def assert_no_control_characters(text: str) -> None:
    assert not [character for character in text if character not in "\n\t" and not character.isprintable()], ascii(
        text[-2000:]
    )


def test_hints_with_hostile_values_come_out_shell_quoted(tmp_path: Path) -> None:
    """The issue's reproduction: the hint after a failed step printed `az aks get-credentials --resource-group rg
    $(touch ...)` unquoted. Values Azure allows can still hold shell syntax (a resource group's parentheses, a
    kubectl context's anything): each hint's command is read back by bash as exactly its words, and runs nothing."""
    canary = tmp_path / "pwned"
    group, context = "rg(prod)-ü", f"ctx $(touch {canary}) `touch {canary}`; | && '\"# x"
    project = corpus_project(tmp_path)
    project.write_config({**SHELL_BASE, "RESOURCE_GROUP": group, "KUBE_CONTEXT": context})
    result = run_script(project, canary, "deploy.sh", STUB_CONTEXTS="other")  # the context is missing
    assert result.returncode == 1, result.output
    assert_no_control_characters(result.output)
    [problem] = [line for line in result.stderr.splitlines() if "no context named" in line]
    command = problem.partition(": run ")[2].rpartition(", or set KUBE_CONTEXT")[0]
    assert printed_words(command) == [
        "az", "aks", "get-credentials", "--resource-group", group, "--name", CONTEXT, "--subscription", SUBSCRIPTION
    ]  # fmt: skip
    printed_context = problem.partition("no context named ")[2].partition(": run ")[0]
    assert printed_words(printed_context) == [context]

    # The rollout's hint: kubectl commands with the context, the ACR one with the resource group.
    result = run_script(project, canary, "deploy.sh", STUB_CONTEXTS=context, STUB_FAIL="rollout status")
    assert result.returncode == 1, result.output
    assert_no_control_characters(result.output)
    [hint] = [line for line in result.stderr.splitlines() if line.startswith("Hint: ")]
    describe = hint.partition("see why the pods are not ready: ")[2].partition(" (ImagePullBackOff")[0]
    assert printed_words(describe)[:4] == ["kubectl", "--context", context, "--namespace"]
    attach = hint.partition("pull from ACR with ")[2].partition(";")[0]
    assert printed_words(attach) == [
        "az", "aks", "update", "--resource-group", group, "--name", CONTEXT, "--attach-acr", "testregistry"
    ]  # fmt: skip


def test_an_escape_character_in_an_argument_never_reaches_the_terminal(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    project = corpus_project(tmp_path)
    result = run_script(project, canary, "deploy.sh", "--dry-run\x1b]0;title\x07\x1b[31m")
    assert result.returncode == 2
    assert "unknown argument $'--dry-run\\E]0;title\\a\\E[31m'" in result.stderr
    assert_no_control_characters(result.output)
