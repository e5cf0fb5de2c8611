"""`python codec_server.py` with signed-in access (CODEC_SERVER_OIDC_*), as a real process: the real
`temporal workflow show --codec-endpoint ... --codec-auth "Bearer <token>"` shows decrypted payloads with a valid
token of the local OIDC provider and is refused with an invalid one; each request is one JSON audit line; a
provider that cannot be read stops the process at start with one line.

The keys come from the fake Key Vault through the stub `az`; the tokens from tests/helpers/oidc_provider.py. The
application in process, with every kind of invalid token, is tests/app/test_codec_auth.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from helpers.fake_keyvault import (
    FakeKeyVault,
    azure_cli_environment,
    forbid_non_loopback_connections,
    keyvault_environment,
)
from helpers.oidc_provider import AUDIENCE, OidcProvider, flipped_signature
from helpers.payloads import start_encrypted_workflow
from helpers.processes import TEMPORAL_CLI, base_environment, free_port

SECRET = "temporal-encryption-key"
LISTENING = r"Codec server listening on http://127\.0\.0\.1:\d+"


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    with forbid_non_loopback_connections() as refused:
        yield
    assert refused == [], f"a test tried to connect to non-loopback addresses: {refused}"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[FakeKeyVault]:
    with FakeKeyVault(tmp_path) as running:
        yield running


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path) as running:
        yield running


def oidc_codec_server_environment(
    tmp_path: Path, vault: FakeKeyVault, provider: OidcProvider, **variables: str
) -> dict[str, str]:
    """A configuration (no config.env) requiring users signed in at `provider`, logging JSON as in the cluster."""
    environment = base_environment(tmp_path, CODEC_SERVER_HOST="127.0.0.1", CODEC_SERVER_PORT=str(free_port()))
    return (
        azure_cli_environment(environment)
        | keyvault_environment(vault, SECRET)
        | {
            "CODEC_SERVER_OIDC_ISSUER": provider.issuer,
            "CODEC_SERVER_OIDC_AUDIENCE": AUDIENCE,
            "CODEC_SERVER_OIDC_CA_FILE": provider.ca_file,
            "LOG_FORMAT": "json",
        }
        | variables
    )


def audit_lines(output: str) -> list[dict]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "codec_server.audit"]


@pytest.mark.slow
def test_temporal_cli_shows_plaintext_only_with_a_valid_token(vault, provider, tmp_path, run_app, dev_server) -> None:
    key = os.urandom(32)
    version = vault.add_version(SECRET, base64.b64encode(key).decode())
    marker = f"plaintext-marker-{uuid.uuid4().hex}"
    workflow_id = f"codec-oidc-{uuid.uuid4().hex}"

    start_encrypted_workflow(dev_server.address, version, key, marker, workflow_id)
    environment = oidc_codec_server_environment(tmp_path, vault, provider)
    server = run_app("codec_server.py", env=environment)
    server.wait_for_line(LISTENING)
    endpoint = f"http://127.0.0.1:{environment['CODEC_SERVER_PORT']}/{{namespace}}"

    def show(token: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TEMPORAL_CLI, "workflow", "show", "-w", workflow_id, "--address", dev_server.address, "-o", "json"]
            + ["--codec-endpoint", endpoint, "--codec-auth", f"Bearer {token}"],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def first_input(shown: subprocess.CompletedProcess[str]) -> Payload:
        started = json.loads(shown.stdout)["events"][0]["workflowExecutionStartedEventAttributes"]
        [payload] = json_format.ParseDict(started["input"], Payloads()).payloads
        return payload

    valid = provider.token(permissions=["default:read"], subject="sub-reader", preferred_username="reader@example.com")
    invalid = {
        "flipped signature": flipped_signature(valid),
        "expired": provider.token(permissions=["default:read"], expires_in=-600),
        "another namespace": provider.token(permissions=["orders:read"]),
    }

    allowed = show(valid)
    refused = {case: show(token) for case, token in invalid.items()}

    assert allowed.returncode == 0, allowed.stderr
    assert first_input(allowed).data == json.dumps(marker).encode()
    for case, shown in refused.items():
        assert shown.returncode != 0, (case, shown.stdout[-500:], shown.stderr[-500:])
        assert marker not in shown.stdout, case
    audited = audit_lines(server.output)
    assert {(line["status"], line.get("subject"), line.get("user")) for line in audited} >= {
        (200, "sub-reader", "reader@example.com")
    }
    assert {line["status"] for line in audited} == {200, 401, 403}
    for line in audited:
        assert line["endpoint"] == "decode" and line["namespace"] == "default" and line["auth"] == "oidc"
    [ok] = [line for line in audited if line["status"] == 200][:1]
    assert ok["payloads"] >= 1 and ok["key_ids"] == [version]
    for token in (valid, *invalid.values()):
        assert token.split(".")[2] not in server.output and token.split(".")[1] not in server.output
    assert marker not in server.output


@pytest.mark.slow
def test_process_exits_with_one_line_when_the_issuer_cannot_be_read(vault, provider, tmp_path, run_app) -> None:
    vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
    provider.stop()  # the port is closed: nothing answers discovery
    environment = oidc_codec_server_environment(tmp_path, vault, provider)
    server = run_app("codec_server.py", env=environment)

    assert server.wait() == 1
    assert "Traceback" not in server.output
    [error] = [line for line in server.lines if "ERROR" in line]
    assert "cannot read the signing keys of CODEC_SERVER_OIDC_ISSUER" in error and provider.issuer in error
