"""azure_identity.py: the one DefaultAzureCredential of Key Vault and payload storage, its failure in one line
in the caller's error class, and an import that costs nothing of Azure."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pytest
from azure.identity.aio import DefaultAzureCredential

import keyvault
import payload_storage
from azure_identity import CREDENTIAL_CHAIN_LOGGER, IDENTITY_ADVICE, default_credential

from helpers.processes import REPO_DIR


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
