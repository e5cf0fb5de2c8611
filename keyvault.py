"""Secrets from Azure Key Vault: the only module that talks to Key Vault.

Public API:
    provider = KeyVaultKeyProvider(settings.encryption)   # raises KeyVaultError on a bad identity setup
    await provider.start()      # fetch the current key, or raise KeyVaultError in one line
    await provider.current_key() -> (key_id, key)          # crypto_converter.KeyProvider
    await provider.key_for(key_id) -> key                  # crypto_converter.KeyProvider
    await provider.close()
    async with KeyVaultKeyProvider(settings.encryption) as provider: ...   # start() and close()

    api_key = temporal_api_key(settings.keyvault, secret_name)              # RefreshingSecret[str]
    certificate = temporal_client_certificate(settings.keyvault, name)      # RefreshingSecret[ClientCertificate]
    await secret.start()         # read and decode the current version, or raise KeyVaultError in one line
    secret.version, secret.value # what is in use
    secret.keep_fresh(on_change) # from now on re-read every KEYVAULT_REFRESH_SECONDS; on_change(version, value)
    await secret.close()

The building blocks are `SecretReader` (one secret, read with the process's Azure identity, every read
bounded and every failure one line that says what to check) and `RefreshingSecret` (a secret's current
version, decoded, re-read on an interval). The encryption key, the Temporal API key and the Temporal
client certificate are each one RefreshingSecret over its own reader; the identity is
`DefaultAzureCredential` (azure_identity.py, shared with payload storage): workload identity in AKS,
`az login` on a laptop.

Rotation without restart: the current version is re-read every KEYVAULT_REFRESH_SECONDS, so after
`az keyvault secret set` the new value is used; a refresh that fails (the vault unreachable, the secret
deleted or disabled, a new version that is not a valid value, or one its user could not apply) logs one
warning and keeps the last value, and the next refresh tries again. Values are never logged; versions are.

The encryption key is a secret whose value is a base64 AES key of 16, 24 or 32 bytes
(`openssl rand -base64 32`); its key id is the secret's version. Payloads name the version they were
encrypted with, and any version not yet known is fetched on demand and kept for the life of the process
(Key Vault versions never change), with one fetch per version however many payloads wait for it.
Key ids come from payloads, so from whoever wrote them: before anything is fetched, a key id must have the
shape of a secret version (32 lowercase hexadecimal digits), so `.`, `..`, `/` or `%2F` never become a
vault path. A fetch that failed is remembered for KEYVAULT_FAILED_FETCH_RETRY_SECONDS (at most one vault
read per key id per interval, for at most MAX_REMEMBERED_FAILURES ids), and at most MAX_FETCHES_IN_FLIGHT
versions are fetched at once; beyond that a key id is refused at once (not remembered), and the workflow
task or codec request that needed it is simply tried again later.

The Temporal API key is a secret whose value is the key (surrounding whitespace ignored). The client
certificate is a Key Vault certificate (or a plain secret) whose value is PEM: the private key
(unencrypted) and the certificate chain, leaf first or in any order; Key Vault serves a certificate's
key and chain this way when its policy's content type is `application/x-pem-file`. PKCS#12 is refused
with that advice, because KEDA's temporal scaler reads the same secret and understands PEM only.

Every read of Key Vault is bounded by KEYVAULT_STARTUP_TIMEOUT_SECONDS, because DefaultAzureCredential
can otherwise wait minutes on the managed-identity probe.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar
from urllib.parse import urlsplit

from azure_identity import IDENTITY_ADVICE, IdentityError, WorkloadIdentityTokens, default_credential
from bounded_http import FetchError, Reply, fetch_in_thread
from config import EncryptionSettings, KeyVaultSettings
from log_format import one_line, shown

if TYPE_CHECKING:  # cryptography's certificate parts are imported only to read a client certificate (below)
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

AES_KEY_SIZES = (16, 24, 32)
# The shape of a Key Vault secret version, which is what our key ids are.
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
# Different versions fetched at the same time; a legitimate process meets one or two old versions at once.
MAX_FETCHES_IN_FLIGHT = 4
# Failed key ids remembered at once; beyond that the oldest is forgotten (and may cost one more read).
MAX_REMEMBERED_FAILURES = 1024
NEW_KEY_ADVICE = 'store a key made with: az keyvault secret set ... --value "$(openssl rand -base64 32)"'
API_KEY_ADVICE = "store the key with: az keyvault secret set --vault-name VAULT --name NAME --file KEY_FILE"
CERTIFICATE_ADVICE = (
    "import the certificate with its key as PEM: az keyvault certificate import --vault-name VAULT --name NAME "
    '--file client-key-and-chain.pem --policy \'{"secretProperties": {"contentType": "application/x-pem-file"}}\''
)
ACCESS_ADVICE = 'Give this identity the role "Key Vault Secrets User" on the vault (az role assignment create)'
PKCS12_CONTENT_TYPE = "application/x-pkcs12"
# The lean reader (workload identity): Key Vault's REST API version, the most an answer may hold (a secret's
# value is at most 25 KiB; a certificate's PEM with its chain a few KiB), and the pauses before trying a read
# again after a broken connection or a 429/5xx answer (the SDK retries such answers too).
KEYVAULT_API_VERSION = "7.5"
MAX_SECRET_ANSWER_BYTES = 256 * 1024
TRANSIENT_RETRY_DELAYS = (0.5, 1.0)
_BEARER = re.compile(r"\s*bearer\s", re.IGNORECASE)
_CHALLENGE_PARAMETER = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,"]+))')
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_PRIVATE_KEY_BLOCKS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")

T = TypeVar("T")

logger = logging.getLogger(__name__)


class KeyVaultError(Exception):
    """A secret that cannot be had from Key Vault, in one line that says what failed and what to check."""


# ---------------------------------------------------------------- reading one secret


@dataclass(frozen=True)
class SecretVersion:
    """One version of a secret as Key Vault served it."""

    name: str
    """The secret's name."""
    version: str
    """The version Key Vault served (32 hexadecimal digits)."""
    value: str = field(repr=False)
    """The secret value: never logged, never in a message."""
    content_type: str | None = None
    """The content type the secret was stored with (a certificate's: application/x-pem-file or -pkcs12)."""

    @property
    def where(self) -> str:
        """The secret and version, as messages name them."""
        return f"Key Vault secret {self.name!r} version {self.version}"


class SecretReader:
    """Reads versions of one Key Vault secret, each read bounded in time; failures are one-line KeyVaultErrors.

    `variable` names the setting that names the secret and `store_advice` says how to store a good
    value: both go into the messages. Under workload identity (`vault.workload_identity`) the reads go through
    the lean reader below, otherwise through the Azure SDK; the two fail with the same messages.
    """

    def __init__(self, vault: KeyVaultSettings, secret_name: str, variable: str, store_advice: str) -> None:
        if not (vault.url and secret_name):
            raise ValueError(f"SecretReader needs KEYVAULT_URL and {variable}")
        self.secret_name = secret_name
        self.variable = variable
        self._vault_url = vault.url
        self._timeout_seconds = vault.startup_timeout_seconds
        self._store_advice = store_advice
        self._closed = False
        self._source: _LeanSource | _AzureSdkSource = (
            _LeanSource(vault, secret_name) if vault.workload_identity else _AzureSdkSource(vault, secret_name)
        )

    @property
    def lean(self) -> bool:
        """Whether this reader reads without the Azure SDK (under workload identity)."""
        return isinstance(self._source, _LeanSource)

    async def read(self, version: str | None = None) -> SecretVersion:
        """One version of the secret (None = the current one), or a KeyVaultError saying what to check."""
        try:
            return await asyncio.wait_for(self._source.read(version), timeout=self._timeout_seconds)
        except TimeoutError:
            raise KeyVaultError(
                self._cannot_read(version)
                + f"no answer within {self._timeout_seconds:g}s (KEYVAULT_STARTUP_TIMEOUT_SECONDS). "
                f"Check KEYVAULT_URL and network access to the vault. {IDENTITY_ADVICE}. {ACCESS_ADVICE}"
            ) from None
        except _ReadFailure as failure:
            raise KeyVaultError(self._cannot_read(version) + self._explain(failure, version)) from failure.__cause__

    async def close(self) -> None:
        """Close the Key Vault client and the identity (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        await self._source.close()

    def _cannot_read(self, version: str | None) -> str:
        which = f"version {version} of " if version else ""
        return f"Cannot read {which}Key Vault secret {self.secret_name!r} from {self._vault_url}: "

    def _explain(self, failure: _ReadFailure, version: str | None) -> str:
        """What went wrong and what to check, by kind of failure."""
        kind, detail = failure.kind, failure.detail
        if kind is _Kind.NOT_FOUND:
            if version:
                return (
                    "that version does not exist (it was deleted, or belongs to another vault or secret). "
                    f"Check that every process uses the same KEYVAULT_URL and {self.variable}"
                )
            return f"the secret does not exist. Check {self.variable} and KEYVAULT_URL, or {self._store_advice}"
        if kind is _Kind.NO_TOKEN:
            return f"no Azure identity could get a token ({detail}). {IDENTITY_ADVICE}"
        if kind is _Kind.TOKEN_REFUSED:
            return f"Key Vault refused the token ({detail}). {IDENTITY_ADVICE}"
        if kind is _Kind.ACCESS_REFUSED:
            return (
                f"Key Vault refused access ({detail}). {ACCESS_ADVICE}; "
                "if Key Vault says the secret is disabled, enable that version again"
            )
        if kind is _Kind.HTTP_ERROR:
            return f"Key Vault answered {detail}. Check KEYVAULT_URL"
        if kind is _Kind.CHALLENGE:
            return (
                f"{detail} KEYVAULT_URL must be the vault's own URL, https://NAME.vault.azure.net/ "
                "(only a test vault needs KEYVAULT_VERIFY_CHALLENGE_RESOURCE=false)"
            )
        return (
            f"cannot reach the vault ({detail}). "
            "Check KEYVAULT_URL, DNS and network access to the vault, and KEYVAULT_CA_FILE if it is set"
        )


class _Kind(enum.Enum):
    """The kinds of failed read, each with its own advice (SecretReader._explain)."""

    NOT_FOUND = "not found"
    NO_TOKEN = "no token"
    TOKEN_REFUSED = "token refused"
    ACCESS_REFUSED = "access refused"
    HTTP_ERROR = "other HTTP status"
    CHALLENGE = "challenge for another domain"
    UNREACHABLE = "unreachable"


class _ReadFailure(Exception):
    """A read that failed, by kind, with a one-line detail (a service message, never a secret)."""

    def __init__(self, kind: _Kind, detail: str = "") -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


class _AzureSdkSource:
    """One secret read with azure-keyvault-secrets and DefaultAzureCredential (azure_identity.py): on a laptop
    (`az login`) and for every identity but workload identity, or with KEYVAULT_CLIENT=azure-sdk."""

    def __init__(self, vault: KeyVaultSettings, secret_name: str) -> None:
        from azure.keyvault.secrets.aio import SecretClient

        self._secret_name = secret_name
        self._credential = default_credential(KeyVaultError, "Key Vault")
        self._client = SecretClient(
            vault.url or "",
            self._credential,
            verify_challenge_resource=vault.verify_challenge_resource,
            connection_verify=vault.ca_file or True,
            http_logging_level=logging.DEBUG,  # the SDK logs every request at INFO otherwise
        )

    async def read(self, version: str | None) -> SecretVersion:
        from azure.core.exceptions import AzureError

        try:
            secret = await self._client.get_secret(self._secret_name, version)
        except (AzureError, ValueError) as error:
            raise _sdk_failure(error) from error
        return SecretVersion(
            self._secret_name, secret.properties.version or "", secret.value or "", secret.properties.content_type
        )

    async def close(self) -> None:
        await self._client.close()
        await self._credential.close()


def _sdk_failure(error: Exception) -> _ReadFailure:
    """The kind of an Azure SDK error."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

    if isinstance(error, ResourceNotFoundError):
        return _ReadFailure(_Kind.NOT_FOUND)
    if isinstance(error, ClientAuthenticationError) and error.response is None:
        return _ReadFailure(_Kind.NO_TOKEN, one_line(error))
    if isinstance(error, HttpResponseError):
        detail = error.error.message if error.error and error.error.message else error.reason
        message = _service_message(error.status_code, detail)
        kinds = {401: _Kind.TOKEN_REFUSED, 403: _Kind.ACCESS_REFUSED}
        return _ReadFailure(kinds.get(error.status_code or 0, _Kind.HTTP_ERROR), message)
    if isinstance(error, ValueError):  # the SDK's check of the vault's authentication challenge
        return _ReadFailure(_Kind.CHALLENGE, one_line(error))
    return _ReadFailure(_Kind.UNREACHABLE, one_line(error))


class _LeanSource:
    """One secret read with Key Vault's REST API and the standard library, under AKS workload identity.

    What the SDK does, in the few steps a GET of a secret needs: the first request goes without a token and
    Key Vault's 401 challenge names the resource to ask a token for (KEYVAULT_VERIFY_CHALLENGE_RESOURCE: it must
    be the vault's own domain, so a token for Key Vault never goes to another service); the token comes from
    azure_identity.WorkloadIdentityTokens (our AZURE_TENANT_ID, whatever tenant the challenge names); then
    `GET /secrets/NAME/VERSION?api-version=KEYVAULT_API_VERSION`. Bounds: each request through
    bounded_http.fetch_in_thread (https, no redirects, MAX_SECRET_ANSWER_BYTES, each request shut down at the
    startup timeout, at most bounded_http.MAX_FETCH_THREADS at once), a connection or an answer of 429/5xx
    tried again after each of TRANSIENT_RETRY_DELAYS, the whole read within SecretReader's timeout; a token the
    vault refuses is, as the SDK does, followed once by a new challenge and a new token. Secret names and
    versions are checked before they reach a path (config.py, KEY_ID_PATTERN)."""

    def __init__(self, vault: KeyVaultSettings, secret_name: str) -> None:
        assert vault.url and vault.workload_identity
        self._secret_name = secret_name
        self._vault_url = vault.url.rstrip("/")
        self._vault_host = (urlsplit(vault.url).hostname or "").lower()
        self._timeout_seconds = vault.startup_timeout_seconds
        self._ca_file = vault.ca_file
        self._verify_challenge_resource = vault.verify_challenge_resource
        self._tokens = WorkloadIdentityTokens(vault.workload_identity, vault.startup_timeout_seconds, vault.ca_file)
        self._scope: str | None = None

    async def read(self, version: str | None) -> SecretVersion:
        url = f"{self._vault_url}/secrets/{self._secret_name}/{version or ''}?api-version={KEYVAULT_API_VERSION}"
        for last_try in (False, True):
            if self._scope is None:
                self._scope = self._challenge_scope(await self._get(url, token=None))
            try:
                token = await self._tokens.token(self._scope)
            except IdentityError as error:
                raise _ReadFailure(_Kind.NO_TOKEN, str(error)) from None
            reply = await self._get(url, token)
            if reply.status == 200:
                return self._secret_version(reply)
            if reply.status != 401 or last_try:
                raise self._failure(reply)
            # Refused with a token: as the SDK does, once more from the challenge with a new token (the token
            # was revoked, or the vault now names another resource).
            self._tokens.forget(self._scope)
            self._scope = None
        raise AssertionError("unreachable")  # the loop returns or raises on its last pass

    async def close(self) -> None:
        """Nothing is held open between reads."""

    async def _get(self, url: str, token: str | None) -> Reply:
        """One GET, tried again on a broken connection or a 429/5xx answer."""
        headers = {"Accept": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
        for delay in (*TRANSIENT_RETRY_DELAYS, None):
            try:
                reply = await fetch_in_thread(
                    url,
                    headers=headers,
                    max_bytes=MAX_SECRET_ANSWER_BYTES,
                    timeout_seconds=self._timeout_seconds,
                    ca_file=self._ca_file,
                )
            except FetchError as error:
                if delay is None:
                    raise _ReadFailure(_Kind.UNREACHABLE, str(error)) from None
            else:
                if delay is None or not (reply.status == 429 or reply.status >= 500):
                    return reply
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises on its last pass

    def _challenge_scope(self, reply: Reply) -> str:
        """The token scope Key Vault's 401 challenge asks for, checked against the vault's domain."""
        if reply.status != 401:
            raise self._failure(reply)
        bearer = next(
            (entry for entry in reply.headers.get("www-authenticate", "").split("\n") if _BEARER.match(entry)), ""
        )
        challenge = {name.lower(): quoted or bare for name, quoted, bare in _CHALLENGE_PARAMETER.findall(bearer)}
        resource = challenge.get("resource", "").rstrip("/")
        scope = challenge.get("scope") or (f"{resource}/.default" if resource else "")
        if not scope.startswith("https://"):
            raise _ReadFailure(_Kind.HTTP_ERROR, "HTTP 401 without a Bearer challenge naming a resource")
        domain = (urlsplit(scope).hostname or "").lower()
        if self._verify_challenge_resource and not self._vault_host.endswith("." + domain):
            raise _ReadFailure(
                _Kind.CHALLENGE, f"The vault's challenge names the resource {domain}, not {self._vault_host}'s domain."
            )
        return scope

    def _secret_version(self, reply: Reply) -> SecretVersion:
        answer = _json_object(reply.body)
        value, secret_id = answer.get("value"), answer.get("id")
        if not (isinstance(value, str) and isinstance(secret_id, str)):
            raise _ReadFailure(_Kind.HTTP_ERROR, "HTTP 200 without a secret's value and id")
        content_type = answer.get("contentType")
        version = secret_id.rstrip("/").rsplit("/", 1)[-1]
        return SecretVersion(self._secret_name, version, value, content_type if isinstance(content_type, str) else None)

    @staticmethod
    def _failure(reply: Reply) -> _ReadFailure:
        error = _json_object(reply.body).get("error")
        detail = error.get("message") if isinstance(error, dict) else None
        message = _service_message(reply.status, detail or f"{len(reply.body)} bytes")
        if reply.status == 404:
            return _ReadFailure(_Kind.NOT_FOUND, message)
        kinds = {401: _Kind.TOKEN_REFUSED, 403: _Kind.ACCESS_REFUSED}
        return _ReadFailure(kinds.get(reply.status, _Kind.HTTP_ERROR), message)


def _json_object(body: bytes) -> dict:
    """The answer's JSON object, or {} when it is not one."""
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- a secret kept current


class RefreshingSecret(Generic[T]):
    """A secret's current version, decoded, re-read every refresh interval once `keep_fresh` is called.

    `decode` turns a version into the value its user needs, or raises KeyVaultError (never showing the
    value). `still_using` completes the warning of a failed refresh: "Key Vault refresh failed;
    <still_using> <version in use>: <why>". The reader is owned: `close` closes it.
    """

    def __init__(
        self,
        reader: SecretReader,
        decode: Callable[[SecretVersion], T],
        refresh_seconds: float,
        still_using: str,
    ) -> None:
        self.reader = reader
        self._decode = decode
        self._refresh_seconds = refresh_seconds
        self._still_using = still_using
        self._version: str | None = None
        self._value: T | None = None
        self._on_change: Callable[[str, T], Awaitable[None]] | None = None
        self._refresh_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def secret_name(self) -> str:
        return self.reader.secret_name

    @property
    def version(self) -> str:
        """The version in use."""
        if self._version is None:
            raise RuntimeError("RefreshingSecret.start() must succeed before the secret is used")
        return self._version

    @property
    def value(self) -> T:
        """The decoded value in use."""
        if self._value is None:
            raise RuntimeError("RefreshingSecret.start() must succeed before the secret is used")
        return self._value

    async def start(self) -> None:
        """Read and decode the current version; on failure close the reader and raise KeyVaultError."""
        try:
            secret = await self.reader.read()
            self._value = self._decode(secret)
            self._version = secret.version
        except BaseException:
            await self.close()
            raise

    def keep_fresh(self, on_change: Callable[[str, T], Awaitable[None]] | None = None) -> None:
        """Re-read the secret every refresh interval from now on; a new version is in use once
        `on_change(version, value)` returned (one that raises leaves the last version in use, and is tried
        again at the next refresh)."""
        self._on_change = on_change
        if self._refresh_task is None:
            self._refresh_task = asyncio.create_task(
                self._refresh_forever(), name=f"keyvault-refresh-{self.secret_name}"
            )

    async def close(self) -> None:
        """Stop the refresh and close the reader."""
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            await asyncio.gather(self._refresh_task, return_exceptions=True)
        await self.reader.close()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self.refresh()

    async def refresh(self) -> None:
        """Read the current version now; a failure is one warning, and the last version stays in use."""
        try:
            secret = await self.reader.read()
            if secret.version == self._version:
                return
            value = self._decode(secret)
            if self._on_change is not None:
                await self._on_change(secret.version, value)
        except Exception as error:  # a refresh must never end the loop: the last value stays in use
            logger.warning("Key Vault refresh failed; %s %s: %s", self._still_using, self._version, one_line(error))
            return
        self._version, self._value = secret.version, value


# ---------------------------------------------------------------- the encryption key


class KeyVaultKeyProvider:
    """The `crypto_converter.KeyProvider` backed by one Key Vault secret."""

    def __init__(self, settings: EncryptionSettings) -> None:
        if not (settings.keyvault_url and settings.secret_name):
            raise ValueError("KeyVaultKeyProvider needs KEYVAULT_URL and KEYVAULT_SECRET_NAME")
        self._secret_name = settings.secret_name
        self._failure_memory_seconds = settings.failed_fetch_retry_seconds
        self._keys: dict[str, bytes] = {}
        self._fetches: dict[str, asyncio.Task[bytes]] = {}
        self._failures: dict[str, tuple[float, str]] = {}  # key id -> (when to ask again, monotonic; the message)
        self._reader = SecretReader(settings.vault, settings.secret_name, "KEYVAULT_SECRET_NAME", NEW_KEY_ADVICE)
        self._current = RefreshingSecret(
            self._reader, decode_aes_key, settings.refresh_seconds, "still encrypting with key id"
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
        await self._current.start()
        self._keys[self._current.version] = self._current.value
        logger.info(
            "Encrypting payloads with key id %s (Key Vault secret %s)", self._current.version, self._secret_name
        )
        self._current.keep_fresh(self._use_new_key)

    async def close(self) -> None:
        """Stop the background refresh and any fetch in flight, and close the Key Vault client and identity."""
        fetches = list(self._fetches.values())
        for task in fetches:
            task.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)
        await self._current.close()

    async def current_key(self) -> tuple[str, bytes]:
        """The key new payloads are encrypted with: the secret's current version as last read."""
        return self._current.version, self._current.value

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

    async def _use_new_key(self, key_id: str, key: bytes) -> None:
        self._keys[key_id] = key
        logger.info(
            "Key Vault secret %s has a new current version: encrypting new payloads with key id %s (was %s)",
            self._secret_name,
            key_id,
            self._current.version,
        )

    def _check_before_fetching(self, key_id: str) -> None:
        """Refuse, without a vault read, what no read may be spent on."""
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise KeyVaultError(
                f"Key id {shown(key_id)} is not a Key Vault secret version (32 hexadecimal digits), so it was not "
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
            key = decode_aes_key(await self._reader.read(key_id))
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


def decode_aes_key(secret: SecretVersion) -> bytes:
    """The AES key in a secret value, or a KeyVaultError naming the secret and version (never the value)."""
    try:
        key = base64.b64decode(secret.value.strip(), validate=True)
    except ValueError:
        raise KeyVaultError(f"{secret.where} is not base64; {NEW_KEY_ADVICE}") from None
    if len(key) not in AES_KEY_SIZES:
        raise KeyVaultError(
            f"{secret.where} holds {len(key)} bytes after base64 decoding, but an AES key has 16, 24 or 32; "
            f"{NEW_KEY_ADVICE}"
        )
    return key


# ---------------------------------------------------------------- the Temporal credentials


@dataclass(frozen=True)
class ClientCertificate:
    """An mTLS client certificate chain and its private key, in the PEM the Temporal SDK takes."""

    chain_pem: bytes
    """The leaf certificate first, then any intermediates."""
    private_key_pem: bytes = field(repr=False)
    """The private key, unencrypted PKCS#8 PEM."""
    subject: str
    """The leaf certificate's subject, for log lines."""
    not_valid_after: datetime
    """When the leaf certificate expires (UTC)."""


def temporal_api_key(vault: KeyVaultSettings, secret_name: str) -> RefreshingSecret[str]:
    """The Temporal API key in a Key Vault secret (TEMPORAL_API_KEY_KEYVAULT_SECRET), kept current."""
    reader = SecretReader(vault, secret_name, "TEMPORAL_API_KEY_KEYVAULT_SECRET", API_KEY_ADVICE)
    return RefreshingSecret(
        reader, decode_api_key, vault.refresh_seconds, "still using the Temporal API key of version"
    )


def temporal_client_certificate(vault: KeyVaultSettings, name: str) -> RefreshingSecret[ClientCertificate]:
    """The mTLS client certificate and key of a Key Vault certificate (TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE)."""
    reader = SecretReader(vault, name, "TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE", CERTIFICATE_ADVICE)
    return RefreshingSecret(
        reader, decode_client_certificate, vault.refresh_seconds, "still using the client certificate of version"
    )


def decode_api_key(secret: SecretVersion) -> str:
    """The API key in a secret value: its text without surrounding whitespace (a file's final newline)."""
    key = secret.value.strip()
    if not key:
        raise KeyVaultError(f"{secret.where} is empty; {API_KEY_ADVICE}")
    if not all(" " <= character <= "~" for character in key):
        raise KeyVaultError(
            f"{secret.where} is not an API key: it holds line breaks, control or non-ASCII characters, which "
            f"cannot travel in a gRPC header; {API_KEY_ADVICE}"
        )
    return key


def decode_client_certificate(secret: SecretVersion) -> ClientCertificate:
    """The certificate chain and private key of a PEM secret value, checked to belong together."""
    # Here, not at the top: only a client certificate from Key Vault needs them (1 MiB, 30 ms to import).
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if secret.content_type == PKCS12_CONTENT_TYPE:
        raise KeyVaultError(
            f"{secret.where} is a PKCS#12 certificate, but the worker and KEDA's temporal scaler read PEM; "
            f"{CERTIFICATE_ADVICE}"
        )
    blocks = [(match.group(1), match.group(0).encode()) for match in _PEM_BLOCK.finditer(secret.value)]
    if any(kind == "ENCRYPTED PRIVATE KEY" for kind, _ in blocks):
        raise KeyVaultError(f"{secret.where} holds a passphrase-protected private key; {CERTIFICATE_ADVICE}")
    keys = [block for kind, block in blocks if kind in _PRIVATE_KEY_BLOCKS]
    certificates = [block for kind, block in blocks if kind == "CERTIFICATE"]
    if len(keys) != 1 or not certificates:
        raise KeyVaultError(
            f"{secret.where} must hold one PEM private key and its certificate chain, but holds {len(keys)} private "
            f"key(s) and {len(certificates)} certificate(s); {CERTIFICATE_ADVICE}"
        )
    try:
        key = serialization.load_pem_private_key(keys[0], password=None)
        chain = [x509.load_pem_x509_certificate(block) for block in certificates]
    except (ValueError, TypeError) as error:
        raise KeyVaultError(f"{secret.where} is not valid PEM ({one_line(error)}); {CERTIFICATE_ADVICE}") from None
    leaf = next((certificate for certificate in chain if _same_public_key(certificate, key)), None)
    if leaf is None:
        raise KeyVaultError(f"{secret.where}: no certificate in it belongs to its private key; {CERTIFICATE_ADVICE}")
    ordered = [leaf, *(certificate for certificate in chain if certificate is not leaf)]
    return ClientCertificate(
        chain_pem=b"".join(certificate.public_bytes(serialization.Encoding.PEM) for certificate in ordered),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        subject=leaf.subject.rfc4514_string(),
        not_valid_after=leaf.not_valid_after_utc,
    )


def _same_public_key(certificate: x509.Certificate, key: CertificateIssuerPrivateKeyTypes) -> bool:
    from cryptography.hazmat.primitives import serialization  # loaded already by decode_client_certificate

    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


# ---------------------------------------------------------------- helpers


def _service_message(status: int | None, detail: object) -> str:
    """`HTTP 403: <Key Vault's own message>`, on one line and without the repetitions in the SDK's message."""
    return f"HTTP {status}: {' '.join(str(detail).split()).rstrip('.')[:400]}"
