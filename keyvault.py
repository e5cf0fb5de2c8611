"""Encryption keys from Azure Key Vault: the only module that talks to Key Vault.

Public API:
    provider = KeyVaultKeyProvider(settings.encryption)   # raises KeyVaultError on a bad identity setup
    await provider.start()      # fetch the current key, or raise KeyVaultError in one line
    await provider.current_key() -> (key_id, key)          # crypto_converter.KeyProvider
    await provider.key_for(key_id) -> key                  # crypto_converter.KeyProvider
    await provider.close()
    async with KeyVaultKeyProvider(settings.encryption) as provider: ...   # start() and close()

The key is a Key Vault secret whose value is a base64 AES key of 16, 24 or 32 bytes
(`openssl rand -base64 32`); its key id is the secret's version. The identity is
`DefaultAzureCredential`: workload identity in AKS, `az login` on a laptop.

Rotation without restart: the current version is re-read every KEYVAULT_REFRESH_SECONDS, so after
`az keyvault secret set` new payloads use the new key; a failed refresh logs a warning and keeps the
last key. Payloads name the version they were encrypted with, and any version not yet known is
fetched on demand and kept for the life of the process (Key Vault versions never change), with one
fetch per version however many payloads wait for it.

Key ids come from payloads, so from whoever wrote them: before anything is fetched, a key id must
have the shape of a secret version (32 lowercase hexadecimal digits), so `.`, `..`, `/` or `%2F`
never become a vault path. A fetch that failed is remembered for KEYVAULT_FAILED_FETCH_RETRY_SECONDS
(at most one vault read per key id per interval, for at most MAX_REMEMBERED_FAILURES ids), and at most
MAX_FETCHES_IN_FLIGHT versions are fetched at once; beyond that a key id is refused at once (not
remembered), and the workflow task or codec request that needed it is simply tried again later.

Every read of Key Vault is bounded by KEYVAULT_STARTUP_TIMEOUT_SECONDS, because DefaultAzureCredential
can otherwise wait minutes on the managed-identity probe. The key id in use is logged at start and on
every change; the key never is.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from types import TracebackType
from typing import Self

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity.aio import DefaultAzureCredential
from azure.keyvault.secrets.aio import SecretClient

from config import EncryptionSettings

AES_KEY_SIZES = (16, 24, 32)
# The shape of a Key Vault secret version, which is what our key ids are.
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
# Different versions fetched at the same time; a legitimate process meets one or two old versions at once.
MAX_FETCHES_IN_FLIGHT = 4
# Failed key ids remembered at once; beyond that the oldest is forgotten (and may cost one more read).
MAX_REMEMBERED_FAILURES = 1024
SHOWN_KEY_ID_CHARACTERS = 64
NEW_KEY_ADVICE = 'store a key made with: az keyvault secret set ... --value "$(openssl rand -base64 32)"'
IDENTITY_ADVICE = (
    "On a laptop run `az login`; in AKS check the pod's workload identity "
    "(service account annotation azure.workload.identity/client-id and its federated credential)"
)
ACCESS_ADVICE = 'Give this identity the role "Key Vault Secrets User" on the vault (az role assignment create)'
# azure-identity logs a failed token request as a multi-line warning; KeyVaultError says the same in one line.
CREDENTIAL_CHAIN_LOGGER = "azure.identity.aio._credentials.chained"

logger = logging.getLogger(__name__)


class KeyVaultError(Exception):
    """A key that cannot be had from Key Vault, in one line that says what failed and what to check."""


class KeyVaultKeyProvider:
    """The `crypto_converter.KeyProvider` backed by one Key Vault secret."""

    def __init__(self, settings: EncryptionSettings) -> None:
        if not (settings.keyvault_url and settings.secret_name):
            raise ValueError("KeyVaultKeyProvider needs KEYVAULT_URL and KEYVAULT_SECRET_NAME")
        self._vault_url = settings.keyvault_url
        self._secret_name = settings.secret_name
        self._refresh_seconds = settings.refresh_seconds
        self._timeout_seconds = settings.startup_timeout_seconds
        self._failure_memory_seconds = settings.failed_fetch_retry_seconds
        self._keys: dict[str, bytes] = {}
        self._current_key_id: str | None = None
        self._fetches: dict[str, asyncio.Task[bytes]] = {}
        self._failures: dict[str, tuple[float, str]] = {}  # key id -> (when to ask again, monotonic; the message)
        self._refresh_task: asyncio.Task[None] | None = None
        logging.getLogger(CREDENTIAL_CHAIN_LOGGER).setLevel(logging.ERROR)
        self._credential = _default_credential()
        self._client = SecretClient(
            self._vault_url,
            self._credential,
            verify_challenge_resource=settings.verify_challenge_resource,
            connection_verify=settings.ca_file or True,
            http_logging_level=logging.DEBUG,  # the SDK logs every request at INFO otherwise
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Fetch the current key, then keep re-reading it in the background; on failure close and raise."""
        try:
            key_id, key = await self._fetch(version=None)
        except BaseException:
            await self.close()
            raise
        self._keys[key_id] = key
        self._current_key_id = key_id
        logger.info("Encrypting payloads with key id %s (Key Vault secret %s)", key_id, self._secret_name)
        self._refresh_task = asyncio.create_task(self._refresh_forever(), name="keyvault-refresh")

    async def close(self) -> None:
        """Stop the background refresh and any fetch in flight, and close the Key Vault client and identity."""
        tasks = [task for task in (self._refresh_task, *self._fetches.values()) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.close()
        await self._credential.close()

    async def current_key(self) -> tuple[str, bytes]:
        """The key new payloads are encrypted with: the secret's current version as last read."""
        if self._current_key_id is None:
            raise RuntimeError("KeyVaultKeyProvider.start() must succeed before keys are used")
        return self._current_key_id, self._keys[self._current_key_id]

    async def key_for(self, key_id: str) -> bytes:
        """The key of secret version `key_id`: from memory, or fetched once however many callers wait.

        Raises KeyVaultError, without asking Key Vault, for a key id that is not a secret version, one
        whose fetch failed less than KEYVAULT_FAILED_FETCH_RETRY_SECONDS ago, or when too many versions
        are being fetched already.
        """
        key = self._keys.get(key_id)
        if key is not None:
            return key
        fetch = self._fetches.get(key_id)
        if fetch is None:
            self._check_before_fetching(key_id)
            fetch = asyncio.create_task(self._fetch_version(key_id), name=f"keyvault-fetch-{key_id}")
            self._fetches[key_id] = fetch
            fetch.add_done_callback(lambda _: self._fetches.pop(key_id, None))
        # shield: a caller that gives up (is cancelled) must not cancel the fetch the others wait for
        return await asyncio.shield(fetch)

    def _check_before_fetching(self, key_id: str) -> None:
        """Refuse, without a vault read, what no read may be spent on."""
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise KeyVaultError(
                f"Key id {_shown(key_id)} is not a Key Vault secret version (32 hexadecimal digits), so it was not "
                "looked up: the payload was not encrypted by this project's codec, or its metadata was altered"
            )
        remembered = self._failures.get(key_id)
        if remembered is not None:
            retry_at, message = remembered
            remaining = retry_at - time.monotonic()
            if remaining > 0:
                raise KeyVaultError(
                    f"{message} (remembered: Key Vault is asked for this key id again in {remaining:.0f}s, "
                    "KEYVAULT_FAILED_FETCH_RETRY_SECONDS)"
                )
            del self._failures[key_id]
        if len(self._fetches) >= MAX_FETCHES_IN_FLIGHT:
            raise KeyVaultError(
                f"Key id {key_id} not fetched: {MAX_FETCHES_IN_FLIGHT} other key versions are being fetched from "
                "Key Vault right now; it is fetched when asked again"
            )

    async def _fetch_version(self, key_id: str) -> bytes:
        try:
            _, key = await self._fetch(version=key_id)
        except KeyVaultError as error:
            self._remember_failure(key_id, str(error))
            raise
        self._keys[key_id] = key
        logger.info("Fetched key id %s (Key Vault secret %s) to decrypt older payloads", key_id, self._secret_name)
        return key

    def _remember_failure(self, key_id: str, message: str) -> None:
        """Refuse this key id without a vault read until the interval is over; forget the oldest beyond the cap."""
        self._failures.pop(key_id, None)
        while len(self._failures) >= MAX_REMEMBERED_FAILURES:
            del self._failures[next(iter(self._failures))]
        self._failures[key_id] = (time.monotonic() + self._failure_memory_seconds, message)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            key_id, key = await self._fetch(version=None)
        except Exception as error:  # a refresh must never end the loop: the last key stays in use
            logger.warning("Key Vault refresh failed; still encrypting with key id %s: %s", self._current_key_id, error)
            return
        self._keys[key_id] = key
        if key_id != self._current_key_id:
            logger.info(
                "Key Vault secret %s has a new current version: encrypting new payloads with key id %s (was %s)",
                self._secret_name,
                key_id,
                self._current_key_id,
            )
            self._current_key_id = key_id

    async def _fetch(self, version: str | None) -> tuple[str, bytes]:
        """Read one version of the secret (None = the current one) as (version, AES key), bounded in time."""
        try:
            secret = await asyncio.wait_for(
                self._client.get_secret(self._secret_name, version), timeout=self._timeout_seconds
            )
        except TimeoutError:
            raise KeyVaultError(
                self._cannot_read(version)
                + f"no answer within {self._timeout_seconds:g}s (KEYVAULT_STARTUP_TIMEOUT_SECONDS). "
                f"Check KEYVAULT_URL and network access to the vault. {IDENTITY_ADVICE}. {ACCESS_ADVICE}"
            ) from None
        except (AzureError, ValueError) as error:
            raise KeyVaultError(self._cannot_read(version) + self._explain(error, version)) from error
        found_version = secret.properties.version or ""
        return found_version, self._decode_key(secret.value, found_version)

    def _cannot_read(self, version: str | None) -> str:
        which = f"version {version} of " if version else ""
        return f"Cannot read {which}Key Vault secret {self._secret_name!r} from {self._vault_url}: "

    def _explain(self, error: AzureError | ValueError, version: str | None) -> str:
        """What went wrong and what to check, by kind of failure."""
        if isinstance(error, ResourceNotFoundError):
            if version:
                return (
                    "that version does not exist: the payload was encrypted with another vault or secret, or the "
                    "version was deleted. Check that every process uses the same KEYVAULT_URL and KEYVAULT_SECRET_NAME"
                )
            return f"the secret does not exist. Check KEYVAULT_SECRET_NAME and KEYVAULT_URL, or {NEW_KEY_ADVICE}"
        if isinstance(error, ClientAuthenticationError) and error.response is None:
            return f"no Azure identity could get a token ({_one_line(error)}). {IDENTITY_ADVICE}"
        if isinstance(error, HttpResponseError) and error.status_code == 401:
            return f"Key Vault refused the token ({_service_message(error)}). {IDENTITY_ADVICE}"
        if isinstance(error, HttpResponseError) and error.status_code == 403:
            return (
                f"Key Vault refused access ({_service_message(error)}). {ACCESS_ADVICE}; "
                "if Key Vault says the secret is disabled, enable that version again"
            )
        if isinstance(error, HttpResponseError):
            return f"Key Vault answered {_service_message(error)}. Check KEYVAULT_URL"
        if isinstance(error, ValueError):  # the SDK's check of the vault's authentication challenge
            return (
                f"{_one_line(error)} KEYVAULT_URL must be the vault's own URL, https://NAME.vault.azure.net/ "
                "(only a test vault needs KEYVAULT_VERIFY_CHALLENGE_RESOURCE=false)"
            )
        return (
            f"cannot reach the vault ({_one_line(error)}). "
            "Check KEYVAULT_URL, DNS and network access to the vault, and KEYVAULT_CA_FILE if it is set"
        )

    def _decode_key(self, value: str | None, version: str) -> bytes:
        """The AES key in a secret value, or a KeyVaultError naming the secret and version (never the value)."""
        where = f"Key Vault secret {self._secret_name!r} version {version}"
        try:
            key = base64.b64decode((value or "").strip(), validate=True)
        except ValueError:
            raise KeyVaultError(f"{where} is not base64; {NEW_KEY_ADVICE}") from None
        if len(key) not in AES_KEY_SIZES:
            raise KeyVaultError(
                f"{where} holds {len(key)} bytes after base64 decoding, but an AES key has 16, 24 or 32; "
                f"{NEW_KEY_ADVICE}"
            )
        return key


def _default_credential() -> DefaultAzureCredential:
    try:
        return DefaultAzureCredential()
    except ValueError as error:  # e.g. an AZURE_TOKEN_CREDENTIALS value azure-identity does not know
        raise KeyVaultError(f"Cannot set up the Azure identity for Key Vault: {_one_line(error)}") from None


def _service_message(error: HttpResponseError) -> str:
    """`HTTP 403: <Key Vault's own message>`, without the repetitions in the SDK's message."""
    detail = error.error.message if error.error and error.error.message else error.reason
    return f"HTTP {error.status_code}: {' '.join(str(detail).split()).rstrip('.')}"


def _shown(key_id: str) -> str:
    """A key id from a payload as a message may show it: quoted, escaped, cut short."""
    if len(key_id) > SHOWN_KEY_ID_CHARACTERS:
        return repr(key_id[:SHOWN_KEY_ID_CHARACTERS]) + "..."
    return repr(key_id)


def _one_line(error: BaseException) -> str:
    """An exception's message on one line: Azure SDK messages span several."""
    return " ".join(str(error).split())
