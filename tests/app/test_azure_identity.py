"""azure_identity.py: the one DefaultAzureCredential of Key Vault and payload storage, its failure in one line
in the caller's error class, and an import that costs nothing of Azure; the lean workload identity tokens
(WorkloadIdentityTokens) and where config chooses them."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.identity.aio import DefaultAzureCredential

import config
import keyvault
import payload_storage
from azure_identity import (
    CREDENTIAL_CHAIN_LOGGER,
    IDENTITY_ADVICE,
    MAX_TOKEN_FILE_BYTES,
    IdentityError,
    WorkloadIdentityTokens,
    default_credential,
)

from helpers.fake_keyvault import ACCESS_TOKEN, WORKLOAD_CLIENT_ID, FakeKeyVault, workload_identity_environment
from helpers.processes import REPO_DIR, free_port


class CallerError(Exception):
    """Stands for KeyVaultError or PayloadStorageError."""


def test_the_credential_is_defaultazurecredential_and_its_chain_warnings_are_quieted(monkeypatch) -> None:
    monkeypatch.delenv("AZURE_TOKEN_CREDENTIALS", raising=False)
    chain_logger = logging.getLogger(CREDENTIAL_CHAIN_LOGGER)
    saved_level = chain_logger.level
    chain_logger.setLevel(logging.NOTSET)
    try:
        credential = default_credential(CallerError, "the test")
        assert isinstance(credential, DefaultAzureCredential)
        assert chain_logger.level == logging.ERROR, "azure-identity's multi-line warning is said by our error"
        asyncio.run(credential.close())
    finally:
        chain_logger.setLevel(saved_level)


@pytest.mark.parametrize("error_class", [CallerError, keyvault.KeyVaultError, payload_storage.PayloadStorageError])
def test_a_setup_azure_identity_refuses_is_one_line_in_the_callers_error_class(monkeypatch, error_class) -> None:
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "NoSuchCredential")

    with pytest.raises(error_class) as raised:
        default_credential(error_class, "the test")

    message = str(raised.value)
    assert message.startswith("Cannot set up the Azure identity for the test: ")
    assert "AZURE_TOKEN_CREDENTIALS" in message and "\n" not in message
    assert raised.value.__suppress_context__, "no traceback of the ValueError behind it"


def test_key_vault_and_payload_storage_give_the_same_advice() -> None:
    assert keyvault.IDENTITY_ADVICE is IDENTITY_ADVICE is payload_storage.IDENTITY_ADVICE
    assert "az login" in IDENTITY_ADVICE and "AZURE_CLIENT_ID" in IDENTITY_ADVICE and "\n" not in IDENTITY_ADVICE


def test_importing_the_module_imports_nothing_of_azure_the_deploy_side_or_the_tests() -> None:
    probe = (
        "import sys, azure_identity; "
        "print(sorted(name for name in sys.modules if name.split('.')[0] in {'azure', 'deploy', 'tests', 'config'}))"
    )

    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_DIR, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


# --- The lean way to the workload identity: WorkloadIdentityTokens, against the fake vault as Entra ID -------------

VAULT_SCOPE = "https://vault.azure.net/.default"


@pytest.fixture
def entra(tmp_path: Path) -> Iterator[FakeKeyVault]:
    with FakeKeyVault(tmp_path) as running:
        yield running


def tokens_for(entra: FakeKeyVault, tmp_path: Path, **changes: str) -> WorkloadIdentityTokens:
    """Tokens of the identity a pod's environment describes (workload_identity_environment), as config reads it."""
    environment = workload_identity_environment(entra, tmp_path, base={}) | changes
    identity = config.workload_identity(environment)
    assert identity is not None
    return WorkloadIdentityTokens(identity, timeout_seconds=10, ca_file=entra.ca_file)


def test_a_token_is_exchanged_once_and_reused_for_its_scope(entra, tmp_path) -> None:
    tokens = tokens_for(entra, tmp_path)

    async def scenario() -> list[str]:
        return await asyncio.gather(*(tokens.token(VAULT_SCOPE) for _ in range(5)))

    assert asyncio.run(scenario()) == [ACCESS_TOKEN] * 5
    assert len(entra.token_requests) == 1  # concurrent callers shared one exchange
    request = entra.token_requests[0]
    assert request["client_assertion"] == entra.federated_token and request["scope"] == VAULT_SCOPE


def test_a_forgotten_token_is_asked_for_again_with_the_token_file_read_afresh(entra, tmp_path) -> None:
    tokens = tokens_for(entra, tmp_path)
    asyncio.run(tokens.token(VAULT_SCOPE))
    entra.federated_token = "eyJrenewed.by.kubelet"  # Kubernetes renewed the projected token
    (tmp_path / "azure-identity-token").write_text(entra.federated_token + "\n")

    tokens.forget(VAULT_SCOPE)
    asyncio.run(tokens.token(VAULT_SCOPE))

    assert [request["client_assertion"] for request in entra.token_requests][-1] == "eyJrenewed.by.kubelet"
    assert len(entra.token_requests) == 2


def test_a_refused_exchange_says_entras_reason_never_the_assertion(entra, tmp_path) -> None:
    entra.identity_refused = True
    tokens = tokens_for(entra, tmp_path)

    with pytest.raises(IdentityError) as raised:
        asyncio.run(tokens.token(VAULT_SCOPE))

    message = str(raised.value)
    assert "AADSTS700213" in message and WORKLOAD_CLIENT_ID in message and "\n" not in message
    assert entra.federated_token not in message and "Trace ID" not in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read AZURE_FEDERATED_TOKEN_FILE"),
        ("", "does not hold one"),
        ("a b", "does not hold one"),
        ("x" * (MAX_TOKEN_FILE_BYTES + 1), "does not hold one"),
    ],
    ids=["missing", "empty", "two-words", "too-big"],
)
def test_a_token_file_that_cannot_be_an_assertion_is_named_and_nothing_is_sent(
    entra, tmp_path, content: str | None, problem: str
) -> None:
    tokens = tokens_for(entra, tmp_path)
    token_file = tmp_path / "azure-identity-token"
    if content is None:
        token_file.unlink()
    else:
        token_file.write_text(content)

    with pytest.raises(IdentityError, match=problem) as raised:
        asyncio.run(tokens.token(VAULT_SCOPE))

    assert str(token_file) in str(raised.value) and entra.token_requests == []


def test_an_unreachable_authority_is_named(entra, tmp_path) -> None:
    tokens = tokens_for(entra, tmp_path, AZURE_AUTHORITY_HOST=f"https://127.0.0.1:{free_port()}/")

    with pytest.raises(IdentityError, match="cannot reach Entra ID at AZURE_AUTHORITY_HOST"):
        asyncio.run(tokens.token(VAULT_SCOPE))


@pytest.mark.parametrize(
    ("changes", "lean"),
    [
        ({}, True),
        ({"AZURE_TOKEN_CREDENTIALS": "prod"}, True),
        ({"AZURE_TOKEN_CREDENTIALS": "WorkloadIdentityCredential"}, True),
        ({"AZURE_TOKEN_CREDENTIALS": "AzureCliCredential"}, False),
        ({"AZURE_TOKEN_CREDENTIALS": "dev"}, False),
        ({"AZURE_CLIENT_SECRET": "s"}, False),  # EnvironmentCredential comes first in DefaultAzureCredential
        ({"AZURE_CLIENT_SECRET": ""}, False),  # set but empty: the SDK refuses it, so the lean way does not hide that
        ({"AZURE_FEDERATED_TOKEN_FILE": ""}, False),
        ({"AZURE_TENANT_ID": ""}, False),
        ({"AZURE_CLIENT_ID": ""}, False),
    ],
    ids=lambda value: str(value),
)
def test_the_lean_way_is_taken_exactly_where_defaultazurecredential_takes_workload_identity(
    entra, tmp_path, changes: dict[str, str], lean: bool
) -> None:
    environment = workload_identity_environment(entra, tmp_path, base={}) | changes
    assert (config.workload_identity(environment) is not None) is lean


def test_the_authority_defaults_to_entras_public_cloud_without_a_trailing_slash(entra, tmp_path) -> None:
    environment = workload_identity_environment(entra, tmp_path, base={})
    del environment["AZURE_AUTHORITY_HOST"]
    assert config.workload_identity(environment).authority_host == "https://login.microsoftonline.com"
    environment["AZURE_AUTHORITY_HOST"] = "https://login.microsoftonline.us/"
    assert config.workload_identity(environment).authority_host == "https://login.microsoftonline.us"


def test_an_authority_host_without_a_scheme_is_https_as_azure_identity_takes_it(entra, tmp_path) -> None:
    environment = workload_identity_environment(entra, tmp_path, base={}) | {
        "AZURE_AUTHORITY_HOST": "login.microsoftonline.us"
    }
    assert config.workload_identity(environment).authority_host == "https://login.microsoftonline.us"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"AZURE_AUTHORITY_HOST": "http://login.example"}, "AZURE_AUTHORITY_HOST"),
        ({"AZURE_TENANT_ID": "tenant/../other"}, "AZURE_TENANT_ID"),
    ],
    ids=["plain-http-authority", "tenant-with-a-path"],
)
def test_a_workload_identity_that_cannot_be_asked_safely_is_a_configuration_error(
    entra, tmp_path, changes: dict[str, str], named: str
) -> None:
    environment = workload_identity_environment(entra, tmp_path, base={}) | changes
    with pytest.raises(config.ConfigError, match=named):
        config.workload_identity(environment)
