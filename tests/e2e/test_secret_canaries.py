"""Secret canaries: recognizable fake secrets go through every program and script, and come out nowhere.

The secrets are the API key, the ACR password and the codec server token of deploy_harness (which hold
shell and YAML syntax, too), the codec server's /encode token, and an encryption key whose bytes read as
text, stored in the fake Key Vault in base64 as a user stores it. Each is searched for in several forms (as
given, base64, and for the key also hex and URL-safe base64), in:

  * every stdout/stderr line of ./start.sh and everything it starts (dev server, worker, client loop,
    codec server) run with LOG_LEVEL=DEBUG, of `client.py --count 2`, and of the codec server's answers
    to good, unauthorized, malformed and tampered requests;
  * the command lines (/proc/PID/cmdline) of every process ./start.sh started, read while they run;
  * every file the runs leave (logs, the dev server's database, HOME);
  * the output, the stub tools' recorded argv and the files of `deploy.sh --dry-run`, `patch.sh --dry-run`
    and `generate-k8s-manifests.sh`, where only the Secret manifests may hold a secret, base64-encoded.

With encryption on, what is encrypted is secret too: the workflows' arguments and results (and the
failure messages) must not show in the output of the client loop and `client.py --count 2` at DEBUG,
nor of the worker: the client logs workflow ids and outcomes only.

The API key cannot reach the TLS-less dev server (it turns TLS on, and TEMPORAL_TLS=false with a key is
refused on purpose), so it is followed through what can happen to it locally: the refusal of that
combination by every program, and a real TLS connection attempt that fails.

An API key in Key Vault (TEMPORAL_API_KEY_KEYVAULT_SECRET) is followed all the way: the worker and client
read it from the fake vault, use it against a Temporal that checks it (helpers/auth_proxy), and take over
a rotated one; neither key shows in their output at DEBUG, their command lines or their environment.
With the key in Key Vault the scripts put no API key in any manifest: the only Secret holding a secret is
the image pull Secret.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.auth_proxy import AuthProxy
from helpers.deploy_harness import (
    ACR_PASSWORD_CANARY,
    API_KEY_CANARY,
    CODEC_TOKEN_CANARY,
    FULL_CONFIG,
    Project,
    parse_with_kubectl,
    secret_values,
)
from helpers.fake_keyvault import ACCESS_TOKEN, FakeKeyVault, azure_cli_environment, workload_identity_environment
from helpers.processes import PYTHON, REPO_DIR, AppProcess, base_environment, free_port
from helpers.start_sh import copy_of_repo, encrypted_start_sh_environment

SECRET_NAME = "temporal-encryption-key"
# API keys that live only in the fake vault; shell and YAML syntax, as the other canaries.
VAULT_API_KEY_CANARY = 'canary-vault-api-key-Jd6r "#:$(touch pwned)'
ROTATED_API_KEY_CANARY = "canary-rotated-api-key-Wc2y `touch pwned`"
CODEC_ENCODE_TOKEN_CANARY = "canary-codec-encode-token-Vq2n"  # local only, like the codec server that reads it
ENCRYPTION_KEY = b"canary-encryption-key-32-bytes!!"  # an AES-256 key whose bytes are recognizable text
KEY_IN_VAULT = base64.b64encode(ENCRYPTION_KEY).decode()
# The line itself (LOG_FORMAT=text), or the message of a JSON line (LOG_FORMAT=json).
WORKER_READY = r'^Starting worker\.\.\. Awaiting tasks\.$|"message": "Starting worker\.\.\. Awaiting tasks\."'
SECRET_MANIFESTS = ("acr-secret.yaml", "app-secret.yaml", "temporal-tls-secret.yaml")
# Pieces of YourWorkflow's argument ("ClientTriggeredPayload-N") and result ("Final result: Processed: Hello, ...!").
PAYLOAD_TEXTS = ("ClientTriggeredPayload", "Processed: Hello", "Final result")


def text_forms(name: str, secret: str) -> dict[str, bytes]:
    encoded = secret.encode()
    return {name: encoded, f"{name} (base64)": base64.b64encode(encoded)}


# Every form in which a secret could leak, by a name that says which secret and form it is.
CANARY_FORMS = {
    **text_forms("TEMPORAL_API_KEY", API_KEY_CANARY),
    **text_forms("API key in Key Vault", VAULT_API_KEY_CANARY),
    **text_forms("rotated API key in Key Vault", ROTATED_API_KEY_CANARY),
    **text_forms("ACR_PASSWORD", ACR_PASSWORD_CANARY),
    **text_forms("CODEC_SERVER_TOKEN", CODEC_TOKEN_CANARY),
    **text_forms("CODEC_SERVER_ENCODE_TOKEN", CODEC_ENCODE_TOKEN_CANARY),
    "encryption key (raw bytes)": ENCRYPTION_KEY,
    "encryption key (base64, as stored in Key Vault)": KEY_IN_VAULT.encode(),
    "encryption key (URL-safe base64, unpadded)": base64.urlsafe_b64encode(ENCRYPTION_KEY).rstrip(b"="),
    "encryption key (hex)": ENCRYPTION_KEY.hex().encode(),
    "encryption key (HEX)": ENCRYPTION_KEY.hex().upper().encode(),
}


def leaked(data: bytes | str) -> list[str]:
    """The canary forms found in some output, argv or file content."""
    data = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return [name for name, form in CANARY_FORMS.items() if form in data]


def files_under(directory: Path) -> Iterator[Path]:
    """Every regular file below a directory, without following symlinks (the repo copy's .venv is one)."""
    for root, _, names in os.walk(directory):
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


def assert_no_file_leaks(directory: Path, allowed: tuple[str, ...] = ()) -> int:
    """No file below `directory` holds a canary in any form, but those named in `allowed`; returns the count."""
    checked = 0
    for path in files_under(directory):
        if path.name in allowed:
            continue
        assert leaked(path.read_bytes()) == [], f"{path} holds a secret"
        checked += 1
    return checked


# --- ./start.sh, the worker, the client and the codec server ----------------------------------------


def processes_in_session(session: int) -> dict[int, list[bytes]]:
    """The argv of every process in a session (start.sh runs as a session leader: all it starts is in it)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            session_of_process = int(stat[stat.rindex(")") + 2 :].split()[3])  # state ppid pgrp session
            if session_of_process == session:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process ended meanwhile
    return found


def call_codec_server(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST to the codec server on loopback; the status and body, whatever the status."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def payloads(*data: bytes) -> bytes:
    """A Payloads body in proto3 JSON, each payload a JSON string as the SDK's converter writes it."""
    return json.dumps(
        {
            "payloads": [
                {
                    "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                    "data": base64.b64encode(item).decode(),
                }
                for item in data
            ]
        }
    ).encode()


def exercise_codec_server(base_url: str) -> list[tuple[str, int, bytes]]:
    """Good, unauthorized, malformed and tampered requests; (what, status, body) of each answer."""
    authorized = {"Authorization": f"Bearer {CODEC_TOKEN_CANARY}", "Content-Type": "application/json"}
    plain = payloads(b'"a patient record"')
    answers = []

    status, body = call_codec_server(f"{base_url}/encode", plain, authorized)
    answers.append(("encode with the decode token", status, body))
    assert status == 401
    encoding = {**authorized, "Authorization": f"Bearer {CODEC_ENCODE_TOKEN_CANARY}"}
    status, encoded = call_codec_server(f"{base_url}/encode", plain, encoding)
    answers.append(("encode", status, encoded))
    assert status == 200 and json.loads(encoded)["payloads"][0]["metadata"]["encryption-key-id"]
    status, decoded = call_codec_server(f"{base_url}/default/decode", encoded, authorized)
    answers.append(("decode", status, decoded))
    assert status == 200 and json.loads(decoded) == json.loads(plain), "the codec server round-trips a payload"

    for what, headers in [
        ("no token", {"Content-Type": "application/json"}),
        (
            "a wrong token that starts like the right one",
            {**authorized, "Authorization": f"Bearer {CODEC_TOKEN_CANARY}x"},
        ),
        ("the token in the wrong scheme", {**authorized, "Authorization": f"Basic {CODEC_TOKEN_CANARY}"}),
    ]:
        status, body = call_codec_server(f"{base_url}/decode", encoded, headers)
        answers.append((what, status, body))
        assert status == 401, what

    status, body = call_codec_server(
        f"{base_url}/decode", b'{"payloads": [{"data": "' + KEY_IN_VAULT.encode(), authorized
    )
    answers.append(("a malformed body holding the key", status, body))
    assert status == 400

    tampered = json.loads(encoded)
    data = bytearray(base64.b64decode(tampered["payloads"][0]["data"]))
    data[-1] ^= 1
    tampered["payloads"][0]["data"] = base64.b64encode(bytes(data)).decode()
    status, body = call_codec_server(f"{base_url}/decode", json.dumps(tampered).encode(), authorized)
    answers.append(("a tampered payload", status, body))
    assert status == 400 and b"cannot be decrypted" in body

    status, body = call_codec_server(f"{base_url}/decode", encoded, {**authorized, "Origin": "http://evil.example"})
    answers.append(("a browser from another origin", status, body))
    assert status == 403
    return answers


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_start_sh_worker_client_and_codec_server_never_show_a_secret(tmp_path: Path, log_format: str) -> None:
    port, ui_port, codec_port = free_port(), free_port(), free_port()
    with FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET_NAME, KEY_IN_VAULT)
        repo = copy_of_repo(tmp_path / "repo")
        environment = encrypted_start_sh_environment(
            tmp_path,
            vault,
            SECRET_NAME,
            port,
            ui_port,
            codec_port,
            LOG_LEVEL="DEBUG",
            LOG_FORMAT=log_format,
            CODEC_SERVER_TOKEN=CODEC_TOKEN_CANARY,
            CODEC_SERVER_ENCODE="true",
            CODEC_SERVER_ENCODE_TOKEN=CODEC_ENCODE_TOKEN_CANARY,
            ACR_PASSWORD=ACR_PASSWORD_CANARY,  # not read by the app: shows if a program dumps its environment
        )
        app = AppProcess([str(repo / "start.sh")], environment, cwd=repo)
        client = None
        try:
            app.wait_for_line(rf"Codec server listening on http://127\.0\.0\.1:{codec_port}", timeout=120)
            app.wait_for_line(WORKER_READY)
            app.wait_for_line(r"Workflow \S+ completed($|\")", timeout=120)  # a text line, or a JSON message

            running = processes_in_session(app.process.pid)
            command_lines = [b" ".join(argv) for argv in running.values()]
            for program in (b"worker.py", b"client.py", b"codec_server.py", b"start-dev"):
                assert any(program in line for line in command_lines), f"{program} is not running: {command_lines}"
            for pid, argv in running.items():
                assert leaked(b"\0".join(argv)) == [], f"process {pid} has a secret on its command line: {argv}"

            client = AppProcess(
                [str(repo / ".venv" / "bin" / "python"), "client.py", "--count", "2"], environment, repo
            )
            assert client.wait(timeout=120) == 0, client.output
            assert "2 of 2 workflows succeeded" in client.output

            answers = exercise_codec_server(f"http://127.0.0.1:{codec_port}")
            app.wait_for_line(r"Refused a request to '/decode' from \S+ without the right bearer token", count=3)
            app.wait_for_line(r"Encoded 1 payload\(s\) with key id [0-9a-f]{32} for ")
        finally:
            app.stop()
            if client is not None:
                client.stop()
        assert app.process.returncode == 0, app.output
        assert vault.fetches(None) >= 2, "the worker, client and codec server read the key from the vault"

    debug_line = '"level": "DEBUG"' if log_format == "json" else " DEBUG "
    for program in (app, client):
        assert "Payload encryption: on" in program.output, "the key was in use"
        assert debug_line in program.output, "the most talkative log level was searched"
        assert leaked(program.output) == [], program.output
        shown_payloads = [line for line in program.lines if any(text in line for text in PAYLOAD_TEXTS)]
        assert shown_payloads == [], "a payload shows although encryption is on"
    assert re.search(r"^OK your-workflow-\d+-\S+ \(result not shown: payload encryption is on\)$", client.output, re.M)
    if log_format == "json":
        assert '"message": "Starting worker... Awaiting tasks."' in app.output, "the worker wrote JSON"
    for what, _, body in answers:
        assert leaked(body) == [], f"the codec server's answer to {what} holds a secret: {body!r}"
    assert (repo / ".temporal" / "dev-server.log").exists() and (repo / ".temporal" / "dev-server.db").exists()
    assert assert_no_file_leaks(tmp_path) > 5


def test_the_api_key_shows_neither_when_refused_nor_when_a_tls_connection_fails(tmp_path: Path, dev_server) -> None:
    """TEMPORAL_TLS=false with a key is refused by every program; with TLS on, the key's connection to a
    server that speaks no TLS fails with one line, and neither says the key."""
    repo = copy_of_repo(tmp_path / "repo")
    python = str(repo / ".venv" / "bin" / "python")
    refused = base_environment(
        tmp_path, TEMPORAL_API_KEY=API_KEY_CANARY, TEMPORAL_TLS="false", METRICS_PORT="x", LOG_LEVEL="DEBUG"
    )
    for command in (
        [str(repo / "start.sh")],
        [python, "worker.py"],
        [python, "client.py"],
        [python, "codec_server.py"],
    ):
        program = AppProcess(command, refused, cwd=repo)
        try:
            assert program.wait() == 2, program.output
        finally:
            program.stop()
        assert "TEMPORAL_TLS=false with TEMPORAL_API_KEY set" in program.output
        assert "METRICS_PORT='x'" in program.output, "the other problems are still listed"
        assert leaked(program.output) == [], program.output

    connecting = base_environment(
        tmp_path, TEMPORAL_API_KEY=API_KEY_CANARY, TEMPORAL_ADDRESS=dev_server.address, LOG_LEVEL="DEBUG"
    )
    for command in ([python, "worker.py"], [python, "client.py", "--count", "2"]):
        program = AppProcess(command, connecting, cwd=repo)
        try:
            assert program.wait(timeout=120) == 1, program.output
        finally:
            program.stop()
        [error] = [line for line in program.lines if line.startswith("ERROR: ")]
        assert f"Cannot connect to Temporal at {dev_server.address}" in error and "TLS on" in error
        assert leaked(program.output) == [], program.output


@pytest.mark.parametrize("identity", ["azure-cli", "workload-identity"])
def test_an_api_key_from_key_vault_shows_in_no_output_command_line_or_environment(
    tmp_path: Path, dev_server, task_queue, identity: str
) -> None:
    keys = {VAULT_API_KEY_CANARY, ROTATED_API_KEY_CANARY}
    with FakeKeyVault(tmp_path) as vault, AuthProxy(dev_server.address, tmp_path, api_keys=keys) as proxy:
        vault.add_version("temporal-api-key", VAULT_API_KEY_CANARY)
        # `az login` through the Azure SDK, or a pod's workload identity through keyvault.py's lean reader, whose
        # federated token and access token are secrets as well.
        with_identity = (
            azure_cli_environment
            if identity == "azure-cli"
            else lambda base: workload_identity_environment(vault, tmp_path, base)
        )
        environment = with_identity(
            base_environment(
                tmp_path,
                TEMPORAL_ADDRESS=proxy.address,
                TEMPORAL_TLS_SERVER_CA_CERT_PATH=proxy.ca_file,
                TEMPORAL_TASK_QUEUE=task_queue,
                TEMPORAL_API_KEY_KEYVAULT_SECRET="temporal-api-key",
                KEYVAULT_CA_FILE=vault.ca_file,
                KEYVAULT_VERIFY_CHALLENGE_RESOURCE="false",
                KEYVAULT_REFRESH_SECONDS="1",
                CLIENT_INTERVAL_SECONDS="0.5",
                LOG_LEVEL="DEBUG",
            )
        ) | {"KEYVAULT_URL": vault.url}
        programs = [AppProcess([PYTHON, str(REPO_DIR / "worker.py")], environment)]
        try:
            programs[0].wait_for_line(WORKER_READY)
            programs.append(AppProcess([PYTHON, str(REPO_DIR / "client.py")], environment))
            programs[1].wait_for_line(r"Workflow \S+ completed$")
            version = vault.add_version("temporal-api-key", ROTATED_API_KEY_CANARY)
            for program in programs:
                program.wait_for_line(rf"Temporal API key rotated: Key Vault secret temporal-api-key version {version}")
            programs[1].wait_for_line(r"Workflow \S+ completed$", count=3)
            smoke_test = AppProcess([PYTHON, str(REPO_DIR / "client.py"), "--count", "2"], environment)
            programs.append(smoke_test)
            assert smoke_test.wait(timeout=120) == 0, smoke_test.output
            for program in programs[:2]:
                pid = program.process.pid
                assert leaked(Path(f"/proc/{pid}/cmdline").read_bytes()) == [], "no key on a command line"
                assert leaked(Path(f"/proc/{pid}/environ").read_bytes()) == [], "no key in the environment"
        finally:
            for program in programs:
                program.stop()
        assert {call.credential for call in proxy.calls} == keys, "both keys were in use"
        identity_secrets = [vault.federated_token, ACCESS_TOKEN] if identity == "workload-identity" else []
        assert bool(vault.token_requests) is bool(identity_secrets), "the lean reader is used exactly there"
    for program in programs:
        assert " DEBUG " in program.output, "the most talkative log level was searched"
        assert leaked(program.output) == [], program.output
        assert [secret for secret in identity_secrets if secret in program.output] == []
    assert assert_no_file_leaks(tmp_path) > 0


# --- deploy.sh --dry-run, patch.sh --dry-run, generate-k8s-manifests.sh -----------------------------


def assert_run_leaks_nothing(project: Project, *command: str) -> None:
    """The run succeeds; no secret in its output, in any argv it gave a stub, or in its temporary files."""
    result = project.run(*command)
    assert result.returncode == 0, result.output
    assert leaked(result.output) == [], result.output
    assert leaked(json.dumps([call["argv"] for call in project.calls()], ensure_ascii=False)) == []
    assert_no_file_leaks(project.home)


def assert_secret_manifests_hold_secrets_base64_only(directory: Path) -> None:
    """The Secret manifests hold the API key and the ACR password, but only as Kubernetes stores them."""
    api_key_file, pull_secret_file = directory / "app-secret.yaml", directory / "acr-secret.yaml"
    for path in (api_key_file, pull_secret_file):
        text = path.read_bytes()
        assert API_KEY_CANARY.encode() not in text and ACR_PASSWORD_CANARY.encode() not in text, path.name
    [api_key_secret] = parse_with_kubectl(api_key_file)
    assert secret_values(api_key_secret) == {"TEMPORAL_API_KEY": API_KEY_CANARY}
    [pull_secret] = parse_with_kubectl(pull_secret_file)
    [entry] = json.loads(secret_values(pull_secret)[".dockerconfigjson"])["auths"].values()
    assert entry["password"] == ACR_PASSWORD_CANARY


@pytest.mark.parametrize(
    "command",
    [
        ("deploy.sh", "--dry-run"),
        ("patch.sh", "--dry-run"),
        ("patch.sh", "--config-only", "--dry-run"),
        ("generate-k8s-manifests.sh",),
        ("deploy.sh",),
        ("patch.sh", "--config-only"),
    ],
    ids=" ".join,
)
def test_scripts_keep_secrets_to_the_secret_manifests(tmp_path: Path, command: tuple[str, ...]) -> None:
    project = Project(tmp_path / "project")
    project.write_config(
        {**FULL_CONFIG, "KEYVAULT_URL": "https://my-vault.vault.azure.net/", "KEYVAULT_SECRET_NAME": "k"}
    )
    if "--dry-run" not in command:  # renders next to the scripts; deploy.sh and patch.sh call the stubs
        assert_run_leaks_nothing(project, *command)
        assert project.calls() or command[0] == "generate-k8s-manifests.sh", "the stubs saw the commands"
        manifests = project.root
    else:
        assert_run_leaks_nothing(project, *command)  # into a temporary directory, removed at exit
        assert project.commands() == [], "a dry run reaches neither Azure, Docker nor the cluster"
        manifests = tmp_path / "kept"
        assert_run_leaks_nothing(project, *command, "--output-dir", str(manifests))

    secret_files = {path.name for path in manifests.glob("*-secret.yaml")}
    assert secret_files == {"acr-secret.yaml", "app-secret.yaml", "temporal-tls-secret.yaml"}
    assert_secret_manifests_hold_secrets_base64_only(manifests)
    # config.env is the user's own input, the one other file allowed to hold the secrets.
    searched = assert_no_file_leaks(manifests, allowed=("config.env", *SECRET_MANIFESTS))
    assert searched >= 4, "the ConfigMap, the Deployment and the rest were searched"
    assert_no_file_leaks(project.root, allowed=("config.env", *SECRET_MANIFESTS))


@pytest.mark.parametrize(
    "command", [("deploy.sh", "--dry-run"), ("patch.sh", "--config-only"), ("generate-k8s-manifests.sh",)], ids=" ".join
)
def test_with_the_api_key_in_key_vault_no_manifest_holds_one(tmp_path: Path, command: tuple[str, ...]) -> None:
    project = Project(tmp_path / "project")
    project.write_config(
        {
            **{name: value for name, value in FULL_CONFIG.items() if name != "TEMPORAL_API_KEY"},
            "KEYVAULT_URL": "https://my-vault.vault.azure.net/",
            "TEMPORAL_API_KEY_KEYVAULT_SECRET": "temporal-api-key",
        }
    )
    manifests = tmp_path / "kept"
    arguments = ("--output-dir", str(manifests)) if command[0] != "patch.sh" else ()
    assert_run_leaks_nothing(project, *command, *arguments)
    manifests = manifests if arguments else project.root
    # The image pull Secret is the one Secret left that holds a secret.
    assert assert_no_file_leaks(manifests, allowed=("config.env", "acr-secret.yaml")) >= 5
    [app_secret] = parse_with_kubectl(manifests / "app-secret.yaml")
    assert secret_values(app_secret) == {}
    [deployment] = parse_with_kubectl(manifests / "deployment.yaml")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert "env" not in container and container["envFrom"][1] == {"secretRef": {"name": "temporal-worker-secrets"}}
