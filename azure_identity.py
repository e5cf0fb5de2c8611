"""The process's Azure identity, the one Key Vault and payload storage both sign in with.

Public API:
    credential = default_credential(KeyVaultError, "Key Vault")   # DefaultAzureCredential, or that error in one line
    IDENTITY_ADVICE              # what to check when no identity gets a token, for the end of a message
    CREDENTIAL_CHAIN_LOGGER      # the azure-identity logger default_credential quiets
    tokens = WorkloadIdentityTokens(identity, timeout_seconds, ca_file)   # AKS workload identity, no Azure SDK
    await tokens.token("https://vault.azure.net/.default") -> str         # or IdentityError in one line

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

`WorkloadIdentityTokens` is the lean way to the same identity in a pod: what azure-identity's
WorkloadIdentityCredential does, with the standard library. Kubernetes projects a service account token into
AZURE_FEDERATED_TOKEN_FILE (and renews it); Entra ID exchanges it, as a client assertion for AZURE_CLIENT_ID in
AZURE_TENANT_ID, for an access token (RFC 7523 over the OAuth 2.0 client credentials grant at
AZURE_AUTHORITY_HOST/<tenant>/oauth2/v2.0/token). It exists because azure-identity brings msal and requests
(~10 MiB) and its async credentials aiohttp (~8 MiB): a worker with encryption on would otherwise hold half as
much again as a bare SDK worker (issue 24). keyvault.py uses it under workload identity (config.WorkloadIdentity);
everything else, and every other identity (`az login`, managed identity, a client secret), keeps
DefaultAzureCredential. Its bounds: the token file is read up to MAX_TOKEN_FILE_BYTES each time, Entra's answer
up to MAX_TOKEN_ANSWER_BYTES within the caller's timeout, one exchange at a time (concurrent callers share
it), and a token is reused until TOKEN_REFRESH_MARGIN_SECONDS before it expires. The assertion and the tokens
are never logged or put in a message; Entra's error code and description are (they hold neither).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from bounded_http import FetchError, fetch_in_thread
from log_format import one_line

if TYPE_CHECKING:
    from azure.identity.aio import DefaultAzureCredential

    from config import WorkloadIdentity

IDENTITY_ADVICE = (
    "On a laptop run `az login`; in AKS check the pod's workload identity "
    "(AZURE_CLIENT_ID, its federated credential and the service account annotation)"
)
# azure-identity logs a failed token request as a multi-line warning; the callers' errors say it in one line.
CREDENTIAL_CHAIN_LOGGER = "azure.identity.aio._credentials.chained"
# A projected service account token is ~1 KiB; Entra's token answer ~2-5 KiB.
MAX_TOKEN_FILE_BYTES = 64 * 1024
MAX_TOKEN_ANSWER_BYTES = 64 * 1024
# A token is asked for again this long before it expires (Entra's last an hour or more), as azure-identity does.
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


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


class IdentityError(Exception):
    """No token for the workload identity, in one line that says why (never the assertion or a token)."""


class WorkloadIdentityTokens:
    """Access tokens of the pod's AKS workload identity, one per scope, each reused until shortly before it expires.

    `timeout_seconds` bounds each exchange with Entra ID; `ca_file` replaces the system's CAs (a test authority).
    """

    def __init__(self, identity: WorkloadIdentity, timeout_seconds: float, ca_file: str | None = None) -> None:
        self._identity = identity
        self._timeout_seconds = timeout_seconds
        self._ca_file = ca_file
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, monotonic time to ask again)
        self._lock = asyncio.Lock()

    async def token(self, scope: str) -> str:
        """An access token for `scope` (e.g. https://vault.azure.net/.default), or IdentityError."""
        async with self._lock:  # concurrent callers wait for one exchange rather than each starting their own
            cached = self._tokens.get(scope)
            if cached and time.monotonic() < cached[1]:
                return cached[0]
            token, lifetime = await self._exchange(scope)
            margin = min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 2)
            self._tokens[scope] = (token, time.monotonic() + lifetime - margin)
            return token

    def forget(self, scope: str) -> None:
        """Ask Entra again next time (the service refused the token)."""
        self._tokens.pop(scope, None)

    async def _exchange(self, scope: str) -> tuple[str, float]:
        """The federated token for an access token: (token, seconds it lasts)."""
        identity = self._identity
        assertion = self._assertion()
        url = f"{identity.authority_host}/{identity.tenant_id}/oauth2/v2.0/token"
        form = urlencode(
            {
                "client_id": identity.client_id,
                "scope": scope,
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": assertion,
            }
        ).encode()
        try:
            reply = await fetch_in_thread(
                url,
                method="POST",
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                max_bytes=MAX_TOKEN_ANSWER_BYTES,
                timeout_seconds=self._timeout_seconds,
                ca_file=self._ca_file,
            )
        except FetchError as error:
            raise IdentityError(f"cannot reach Entra ID at AZURE_AUTHORITY_HOST: {error}") from None
        answer = _json_object(reply.body)
        if reply.status != 200:
            code = answer.get("error") or f"HTTP {reply.status}"
            description = str(answer.get("error_description") or "").split("\n")[0]
            raise IdentityError(
                f"Entra ID refused the workload identity's token exchange for AZURE_CLIENT_ID {identity.client_id} "
                f"({one_line(f'{code}: {description}'.rstrip(': '))[:400]})"
            )
        token, lifetime = answer.get("access_token"), answer.get("expires_in")
        try:
            seconds = float(lifetime)  # Entra sends a number; older endpoints a string of one
        except (TypeError, ValueError):
            seconds = 0.0
        if not (isinstance(token, str) and token and seconds > 0):
            raise IdentityError("Entra ID answered the token exchange without an access token and its lifetime")
        return token, seconds

    def _assertion(self) -> str:
        """The projected service account token, read afresh each time: Kubernetes renews the file (a small local
        file, read in the event loop)."""
        path = Path(self._identity.token_file)
        try:
            with path.open("rb") as file:
                data = file.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as error:
            raise IdentityError(
                f"cannot read AZURE_FEDERATED_TOKEN_FILE {path}: {error.strerror or error}. Check the pod's "
                "service account: it needs the label azure.workload.identity/use=true and the annotation "
                "azure.workload.identity/client-id"
            ) from None
        assertion = data.decode("ascii", errors="replace").strip()
        if len(data) > MAX_TOKEN_FILE_BYTES or not assertion or any(c.isspace() for c in assertion):
            raise IdentityError(
                f"AZURE_FEDERATED_TOKEN_FILE {path} does not hold one service account token "
                f"(a JWT of at most {MAX_TOKEN_FILE_BYTES} bytes)"
            )
        return assertion


def _json_object(body: bytes) -> dict:
    """The answer's JSON object, or {} when it is not one (an error page from a proxy, say)."""
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
