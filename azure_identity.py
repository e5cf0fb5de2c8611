"""The process's Azure identity, the one Key Vault and payload storage both sign in with.

Public API:
    credential = default_credential(KeyVaultError, "Key Vault")   # DefaultAzureCredential, or that error in one line
    IDENTITY_ADVICE              # what to check when no identity gets a token, for the end of a message
    CREDENTIAL_CHAIN_LOGGER      # the azure-identity logger default_credential quiets

keyvault.py and payload_storage.py each talk to their own service, but the identity is the same one:
`DefaultAzureCredential`, which is the workload identity in AKS (AZURE_CLIENT_ID, through the service
account annotation and its federated credential) and `az login` on a laptop. What sets it up, what it
logs and what to check when it fails is therefore written once, here, and each caller names itself and
its error class so the failure reads like its other failures.

Setting up is the only step that can fail at once (an AZURE_TOKEN_CREDENTIALS value azure-identity does
not know); a failed token request shows later, in the caller's own request, which says so with
IDENTITY_ADVICE. azure-identity logs such a failure as a multi-line warning from CREDENTIAL_CHAIN_LOGGER;
the callers' errors say the same in one line, so that logger is quieted to errors.

azure.identity is imported when a credential is made, not when this module is: importing it costs only
the standard library and log_format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from log_format import one_line

if TYPE_CHECKING:
    from azure.identity.aio import DefaultAzureCredential

IDENTITY_ADVICE = (
    "On a laptop run `az login`; in AKS check the pod's workload identity "
    "(AZURE_CLIENT_ID, its federated credential and the service account annotation)"
)
# azure-identity logs a failed token request as a multi-line warning; the callers' errors say it in one line.
CREDENTIAL_CHAIN_LOGGER = "azure.identity.aio._credentials.chained"


def default_credential(error_class: Callable[[str], Exception], what: str) -> DefaultAzureCredential:
    """The process's `DefaultAzureCredential` (async), with the token chain's warnings quieted.

    A setup azure-identity refuses raises `error_class("Cannot set up the Azure identity for <what>: ...")`,
    one line, without the traceback of the ValueError behind it.
    """
    from azure.identity.aio import DefaultAzureCredential

    logging.getLogger(CREDENTIAL_CHAIN_LOGGER).setLevel(logging.ERROR)
    try:
        return DefaultAzureCredential()
    except ValueError as error:  # e.g. an AZURE_TOKEN_CREDENTIALS value azure-identity does not know
        raise error_class(f"Cannot set up the Azure identity for {what}: {one_line(error)}") from None
