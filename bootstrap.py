"""How worker.py, client.py and codec_server.py start, run until asked to stop, and exit.

Public API:
    run_program(name, program)        # the one entry point: settings, logging, stop signals, event loop, exit status
    Stop                              # SIGTERM/SIGINT as one object every program waits on (see below)
    StopRequested                     # raised by `Stop.race` when a stop comes first
    temporal_client(settings, stop)   # the key (when encryption is on), then the connection, each raced against stop
    temporal_connection(settings, stop, runtime)   # the same, as a TemporalConnection that follows credentials
    credentialed_connection(settings, converter, stop)   # that connection with a converter of your own (no key)
    TemporalConnection                # .client, the client in use; .on_new_client(callback) for a worker
    data_converter(settings, stop)    # the one data converter: encryption and payload storage, as configured
    started_key_provider(encryption, stop)
    StartupError                      # a reason the process cannot start, in one line
    exit_process(code)

Stopping works the same way in every program and every phase. `run_program` installs the SIGTERM
(Kubernetes, ./start.sh) and SIGINT (Ctrl-C) handlers before it does anything else, so no signal is
lost or turned into a traceback. Every step that waits on something outside the process (the Key
Vault read, the Temporal connection, the worker's namespace check, starting a workflow, waiting for
results) runs as `await stop.race(step, "what it is doing")`: the step's result, or, when a stop comes
first, the step is cancelled and `StopRequested` raised. Long-running phases wait with `stop.wait()`
or `stop.sleep(seconds)`. A `StopRequested` that reaches `run_program` is a requested stop: one log
line saying what was interrupted, exit status 0. A program that owes its caller a verdict (the
client's `--count`) catches it and chooses its own status.

Temporal credentials from Key Vault (TEMPORAL_API_KEY_KEYVAULT_SECRET, TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE)
are read before connecting, like the encryption key, and kept current by `TemporalConnection`: a new API
key is set on the live client (`Client.api_key`, the SDK's `update_api_key`: every later call, the
worker's polls included, carries it; calls in flight finish with the old one), and a new client
certificate gets a new client, connected with it and handed to whoever follows the connection (the
worker sets `Worker.client`: its next polls use the new client, calls in flight finish on the old one).
One log line per rotation names the secret and version.

A start-up problem becomes one `StartupError` line that names what failed and what to check, never
a traceback, and the process exits 1 (the guide's client logged a failed connection and exited 0,
which hides an outage from Kubernetes and from CI). A configuration mistake exits 2 (config.py).

A feature that is off costs nothing: crypto_converter (and cryptography), keyvault (and the Azure Key Vault and
identity packages) and payload_storage (and the Azure Blob packages) are imported only when encryption, a
credential from Key Vault or payload storage is configured (tests/e2e/test_worker_imports.py checks the modules
of a running worker).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, NoReturn, TypeVar

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from config import EncryptionSettings, PayloadStorageSettings, Settings, configure_logging, load_settings_or_exit

# crypto_converter, keyvault and payload_storage (and with them cryptography and the Azure SDK: 30 MiB and 0.25 s
# of CPU at start-up) are imported where their feature is switched on, so that a feature that is off costs nothing.
if TYPE_CHECKING:
    from crypto_converter import Plaintext
    from keyvault import ClientCertificate, KeyVaultKeyProvider, RefreshingSecret
    from payload_storage import PayloadStorage

CONNECT_TIMEOUT = timedelta(seconds=30)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long a step interrupted by a stop gets to close what it opened (sockets, the Key Vault client)
# before the process leaves without it. Cancellation of the SDK's and Azure's calls takes milliseconds.
CANCELLED_STEP_GRACE_SECONDS = 0.5

T = TypeVar("T")
Program = Callable[[Settings, "Stop"], Awaitable[int]]

logger = logging.getLogger(__name__)


# What a StartupError says could not be used: deploy/rollout.py's replay check leads with it.
KEY_VAULT, PAYLOAD_STORAGE, TEMPORAL = "Key Vault", "payload storage", "Temporal"


class StartupError(Exception):
    """A reason the process cannot start, worded for the person reading the log.

    `source` names what failed when it is outside the process: KEY_VAULT, PAYLOAD_STORAGE or TEMPORAL ("" for
    anything else), so that a caller can say which service to check before anything else."""

    def __init__(self, message: str, source: str = "") -> None:
        super().__init__(message)
        self.source = source


class StopRequested(Exception):
    """A stop signal arrived before a step finished; the step was cancelled (or never begun)."""

    def __init__(self, reason: str, doing: str) -> None:
        super().__init__(f"stopped by {reason} while {doing}")
        self.reason = reason
        """What asked for the stop: "SIGTERM" or "SIGINT"."""
        self.doing = doing
        """The step that was interrupted, e.g. "connecting to Temporal"."""


class Stop:
    """SIGTERM and SIGINT as one event: what every program waits on, in start-up and while it runs.

    Made by `run_program` before anything else, so a signal that arrives early is kept and ends the
    first step. Further signals change nothing: the stop is already under way (a worker's graceful
    shutdown is not cut short by ./start.sh passing on the terminal's Ctrl-C as a SIGTERM).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._event = asyncio.Event()
        self.reason: str | None = None
        """The first signal's name ("SIGTERM", "SIGINT"), or None while no stop was requested."""
        self.signal_number: int | None = None
        """The first signal's number, for exit statuses of the form 128 + signal."""
        for signal_number in STOP_SIGNALS:
            loop.add_signal_handler(signal_number, self._on_signal, signal_number)
        # A signal that came during the imports, kept by early_signals (imported first by every program).
        early = sys.modules.get("early_signals")
        for signal_number in early.take() if early is not None else ():
            self._on_signal(signal_number)

    def _on_signal(self, signal_number: int) -> None:
        name = signal.Signals(signal_number).name
        if self.reason is None:
            self.reason, self.signal_number = name, signal_number
            logger.info("%s received: stopping", name)
            self._event.set()
        else:
            logger.info("%s received: already stopping (%s)", name, self.reason)

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        """Return once a stop is requested."""
        await self._event.wait()

    async def sleep(self, seconds: float) -> bool:
        """Wait `seconds`, or less if a stop comes; whether a stop was requested."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout=seconds)
        except TimeoutError:
            pass
        return self.requested

    async def race(self, step: Awaitable[T], doing: str) -> T:
        """The step's result; or, if a stop comes first, cancel the step and raise StopRequested.

        `doing` says what the step does ("connecting to Temporal"), for the log line and the
        client's message. A step that finishes wins even when a stop arrives at the same moment.
        Wrap a task in `asyncio.shield` to wait for it without cancelling it.
        """
        if self.requested:  # never begin a step once stopping
            if asyncio.iscoroutine(step):
                step.close()
            raise StopRequested(self.reason or "a stop request", doing)
        task = asyncio.ensure_future(step)
        stopped = asyncio.ensure_future(self._event.wait())
        try:
            done, _ = await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                await _cancel(task)
        if task in done:
            return task.result()
        raise StopRequested(self.reason or "a stop request", doing)


async def _cancel(task: asyncio.Future) -> None:
    """Cancel a step and give it a moment to close what it opened; never wait on it longer."""
    task.cancel()
    await asyncio.wait((task,), timeout=CANCELLED_STEP_GRACE_SECONDS)
    # Whatever the step ends with now, nobody reads it: say so, or asyncio logs "never retrieved".
    task.add_done_callback(lambda finished: finished.cancelled() or finished.exception())


@asynccontextmanager
async def temporal_client(settings: Settings, stop: Stop, runtime: Runtime | None = None) -> AsyncIterator[Client]:
    """A connected client whose payloads are encrypted when Key Vault is configured, and stored in Azure
    Blob Storage from PAYLOAD_STORAGE_THRESHOLD_BYTES when payload storage is (see `data_converter`).

    The key is fetched, and the storage container checked, before connecting, so a Key Vault or storage
    problem stops the process at start-up instead of failing workflow tasks later. Every step ends at
    once when a stop is requested (StopRequested). A rotated API key reaches this client; a rotated
    client certificate reaches `temporal_connection`'s followers only.
    """
    async with temporal_connection(settings, stop, runtime) as connection:
        yield connection.client


@asynccontextmanager
async def temporal_connection(
    settings: Settings, stop: Stop, runtime: Runtime | None = None
) -> AsyncIterator[TemporalConnection]:
    """The connection of `temporal_client`, as a TemporalConnection that keeps Key Vault credentials current."""
    async with data_converter(settings, stop) as converter:
        async with credentialed_connection(settings, converter, stop, runtime) as connection:
            yield connection


@asynccontextmanager
async def credentialed_connection(
    settings: Settings, converter: DataConverter, stop: Stop, runtime: Runtime | None = None
) -> AsyncIterator[TemporalConnection]:
    """A TemporalConnection with `converter`: its Key Vault credentials read, connected, and kept current
    until the block ends. For clients that carry no payloads (deploy/rollout.py), `DataConverter.default`."""
    connection = TemporalConnection(settings, converter, runtime)
    try:
        await connection.read_credentials(stop)
        await connection.connect(stop)
        yield connection
    finally:
        await connection.close()


@asynccontextmanager
async def data_converter(settings: Settings, stop: Stop) -> AsyncIterator[DataConverter]:
    """The one data converter of the worker and client: encryption and payload storage as configured.

    The key provider's background refresh and the storage client end when the block does.
    """
    async with encryption_codec_converter(settings.encryption, stop) as converter:
        async with started_payload_storage(settings.payload_storage, stop, settings.temporal.namespace) as storage:
            if storage is not None:
                converter = dataclasses.replace(converter, external_storage=storage.external_storage())
            yield converter


@asynccontextmanager
async def encryption_codec_converter(encryption: EncryptionSettings, stop: Stop) -> AsyncIterator[DataConverter]:
    """The default data converter, or the encrypting one with its key provider started."""
    if not encryption.enabled:
        logger.info("Payload encryption: off (set KEYVAULT_URL and KEYVAULT_SECRET_NAME to switch it on)")
        yield DataConverter.default
        return
    from crypto_converter import encrypted_data_converter  # encryption is on: the codec and cryptography

    plaintext = plaintext_policy(encryption)
    logger.info(
        "Payload encryption: on (AES-GCM, key from Key Vault); unencrypted payloads: %s",
        PLAINTEXT_POLICY_NAMES[plaintext.value],
    )
    keys = await started_key_provider(encryption, stop)
    try:
        yield encrypted_data_converter(keys, plaintext)
    finally:
        await keys.close()


class TemporalConnection:
    """The Temporal client in use, with the credentials from Key Vault kept current.

    Made by `temporal_connection`. `client` is the client to use now; `on_new_client(callback)` asks
    for every client connected later (after a client certificate rotation), as a worker must.
    """

    def __init__(self, settings: Settings, data_converter: DataConverter, runtime: Runtime | None) -> None:
        self._settings = settings
        self._data_converter = data_converter
        self._runtime = runtime
        self._api_key: RefreshingSecret[str] | None = None
        self._certificate: RefreshingSecret[ClientCertificate] | None = None
        self._client: Client | None = None
        self._followers: list[Callable[[Client], None]] = []

    @property
    def client(self) -> Client:
        """The client every new call should use."""
        if self._client is None:
            raise RuntimeError("TemporalConnection.connect() must succeed first")
        return self._client

    def on_new_client(self, callback: Callable[[Client], None]) -> None:
        """Call `callback(client)` with every client connected from now on (a rotated client certificate)."""
        self._followers.append(callback)

    async def read_credentials(self, stop: Stop) -> None:
        """Read the Temporal credentials that live in Key Vault: a StartupError saying what to check, or
        StopRequested."""
        temporal, vault = self._settings.temporal, self._settings.keyvault
        if temporal.api_key_keyvault_secret or temporal.tls_client_keyvault_certificate:
            # credentials in Key Vault: the Key Vault client and the Azure SDK
            from keyvault import temporal_api_key, temporal_client_certificate
        if temporal.api_key_keyvault_secret:
            logger.info(
                "Reading the Temporal API key: Key Vault secret %s at %s", temporal.api_key_keyvault_secret, vault.url
            )
            self._api_key = temporal_api_key(vault, temporal.api_key_keyvault_secret)
            await _started(self._api_key, stop, "reading the Temporal API key from Key Vault")
            logger.info(
                "Using the Temporal API key of version %s (Key Vault secret %s)",
                self._api_key.version,
                self._api_key.secret_name,
            )
        if temporal.tls_client_keyvault_certificate:
            logger.info(
                "Reading the Temporal client certificate: Key Vault certificate %s at %s",
                temporal.tls_client_keyvault_certificate,
                vault.url,
            )
            self._certificate = temporal_client_certificate(vault, temporal.tls_client_keyvault_certificate)
            await _started(self._certificate, stop, "reading the Temporal client certificate from Key Vault")
            logger.info(
                "Using the Temporal client certificate of version %s (Key Vault certificate %s): %s",
                self._certificate.version,
                self._certificate.secret_name,
                _described(self._certificate.value),
            )

    async def connect(self, stop: Stop) -> None:
        """Connect with the credentials read; then keep them current until `close`."""
        certificate = self._certificate.value if self._certificate else None
        self._client = await stop.race(self._connect(certificate), "connecting to Temporal")
        if self._api_key is not None:
            self._api_key.keep_fresh(self._use_api_key)
        if self._certificate is not None:
            self._certificate.keep_fresh(self._use_certificate)

    async def close(self) -> None:
        """Stop keeping the credentials current and close their Key Vault readers."""
        for secret in (self._api_key, self._certificate):
            if secret is not None:
                await secret.close()

    async def _connect(self, certificate: ClientCertificate | None, announce: bool = True) -> Client:
        return await connect_client(
            self._settings,
            self._data_converter,
            self._runtime,
            api_key=self._api_key.value if self._api_key else None,
            certificate=certificate,
            announce=announce,
        )

    async def _use_api_key(self, version: str, api_key: str) -> None:
        """A rotated API key: every later call of the live client (and of the worker built on it) carries it."""
        self.client.api_key = api_key
        assert self._api_key is not None
        logger.info(
            "Temporal API key rotated: Key Vault secret %s version %s is in use from now on (was %s)",
            self._api_key.secret_name,
            version,
            self._api_key.version,
        )

    async def _use_certificate(self, version: str, certificate: ClientCertificate) -> None:
        """A rotated client certificate: a new client connected with it, handed to the followers.

        A failed connection raises, so the refresh keeps the current client and tries again later.
        """
        assert self._certificate is not None
        from keyvault import KeyVaultError  # loaded already: only a certificate from Key Vault rotates

        try:
            client = await self._connect(certificate, announce=False)
        except StartupError as error:
            raise KeyVaultError(f"cannot connect with version {version} of the client certificate: {error}") from None
        if self._api_key is not None and client.api_key != self._api_key.value:
            client.api_key = self._api_key.value  # the API key rotated while this client was connecting
        for follow in self._followers:
            follow(client)
        self._client = client
        logger.info(
            "Temporal client certificate rotated: Key Vault certificate %s version %s (%s) is in use from now on by "
            "a new connection; calls in flight finish on the previous one (version %s)",
            self._certificate.secret_name,
            version,
            _described(certificate),
            self._certificate.version,
        )


async def _started(secret: RefreshingSecret, stop: Stop, doing: str) -> None:
    from keyvault import KeyVaultError  # loaded already: `secret` comes from it

    try:
        await stop.race(secret.start(), doing)
    except KeyVaultError as error:
        raise StartupError(str(error), KEY_VAULT) from None


def _described(certificate: ClientCertificate) -> str:
    return f"subject {certificate.subject}, valid until {certificate.not_valid_after:%Y-%m-%d %H:%M} UTC"


@asynccontextmanager
async def started_payload_storage(
    settings: PayloadStorageSettings, stop: Stop, namespace: str | None = None
) -> AsyncIterator[PayloadStorage | None]:
    """The payload storage with its container checked, or None when it is off; a StartupError saying what to check.

    With `namespace` (the worker's and client's) it follows only that namespace's references."""
    if not settings.enabled:
        logger.info(
            "Payload storage: off (set PAYLOAD_STORAGE_ACCOUNT_URL or PAYLOAD_STORAGE_CONNECTION_STRING to store "
            "large payloads in Azure Blob Storage)"
        )
        yield None
        return
    from payload_storage import PayloadStorage, PayloadStorageError  # payload storage is on: the Azure Blob SDK

    try:
        storage = PayloadStorage(settings, namespace)
    except PayloadStorageError as error:
        raise StartupError(str(error), PAYLOAD_STORAGE) from None
    try:
        logger.info(
            "Payload storage: on (Azure Blob Storage account %s, container %s, signed in with %s); payloads of %d "
            "bytes or more are stored there, at most %d bytes each",
            storage.account,
            storage.container,
            "the connection string" if settings.connection_string else "the Azure identity",
            settings.threshold_bytes,
            settings.max_payload_bytes,
        )
        try:
            await stop.race(storage.check(), "checking the payload storage container")
        except PayloadStorageError as error:
            raise StartupError(str(error), PAYLOAD_STORAGE) from None
        yield storage
    finally:
        await storage.close()


# By crypto_converter.Plaintext's values (that module is only imported with encryption on).
PLAINTEXT_POLICY_NAMES = {
    "refuse": "refused (ENCRYPTION_REQUIRED=true)",
    "warn": "accepted with a warning during a migration (ENCRYPTION_ALLOW_PLAINTEXT=true)",
    "accept": "accepted (ENCRYPTION_REQUIRED=false)",
}


def plaintext_policy(encryption: EncryptionSettings) -> Plaintext:
    """What decode does with an unencrypted payload: refused only when encryption is required."""
    from crypto_converter import Plaintext  # for an encrypting converter: its module is loaded, or about to be

    if not encryption.required:
        return Plaintext.ACCEPT
    return Plaintext.WARN if encryption.allow_plaintext else Plaintext.REFUSE


async def started_key_provider(settings: EncryptionSettings, stop: Stop) -> KeyVaultKeyProvider:
    """A key provider holding the current key; a StartupError saying what to check; or StopRequested."""
    logger.info("Reading the encryption key: Key Vault secret %s at %s", settings.secret_name, settings.keyvault_url)
    from keyvault import KeyVaultError, KeyVaultKeyProvider  # encryption is on: the Key Vault client and the Azure SDK

    try:
        keys = KeyVaultKeyProvider(settings)
        await stop.race(keys.start(), "reading the encryption key from Key Vault")
    except KeyVaultError as error:
        raise StartupError(str(error), KEY_VAULT) from None
    return keys


async def connect_client(
    settings: Settings,
    data_converter: DataConverter,
    runtime: Runtime | None,
    api_key: str | None = None,
    certificate: ClientCertificate | None = None,
    announce: bool = True,
) -> Client:
    """Connect with the settings' address, namespace, TLS and API key, or the credentials read from Key Vault.

    `announce` logs the attempt and the connection (not done for the reconnection of a certificate
    rotation, which has its own line)."""
    temporal = settings.temporal
    tls = "on" if temporal.uses_tls else "off"
    if announce:
        logger.info("Connecting to Temporal at %s in namespace %s (TLS %s)", temporal.address, temporal.namespace, tls)
    kwargs = temporal.connect_kwargs(
        api_key=api_key,
        client_cert=certificate.chain_pem if certificate else None,
        client_private_key=certificate.private_key_pem if certificate else None,
    )
    try:
        client = await asyncio.wait_for(
            Client.connect(**kwargs, data_converter=data_converter, runtime=runtime),
            timeout=CONNECT_TIMEOUT.total_seconds(),
        )
    except (TimeoutError, RuntimeError, OSError) as error:
        reason = str(error) or f"no answer within {CONNECT_TIMEOUT.total_seconds():g}s"
        raise StartupError(
            f"Cannot connect to Temporal at {temporal.address} (namespace {temporal.namespace}, TLS {tls}): "
            f"{reason}. Check TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, {_credential_variables(settings)} and "
            "TEMPORAL_TLS.",
            TEMPORAL,
        ) from None
    if announce:
        logger.info("Connected to Temporal at %s in namespace %s (TLS %s)", temporal.address, temporal.namespace, tls)
    return client


def _credential_variables(settings: Settings) -> str:
    """Where the credentials of a failed connection came from, for its message."""
    temporal = settings.temporal
    names = ["TEMPORAL_API_KEY_KEYVAULT_SECRET's key" if temporal.api_key_keyvault_secret else "TEMPORAL_API_KEY"]
    if temporal.tls_client_keyvault_certificate:
        names.append("TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE")
    return ", ".join(names)


def exit_process(code: int) -> NoReturn:
    """Flush output and leave without interpreter teardown.

    The SDK's Rust threads can abort a finalizing interpreter with
    "Fatal Python error: PyGILState_Release" (exit 134, sdk-python issue 300),
    which would turn a clean exit into a crash for Kubernetes and CI. Callers
    have already shut their workers down and awaited their work.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_program(name: str, program: Program) -> NoReturn:
    """Run `program(settings, stop)` until it returns its exit status, and exit with it.

    The stop signals are handled from the first moment; then the settings are loaded (exit 2 on a
    mistake). A StopRequested from the program is a requested stop (exit 0); a StartupError is one
    `ERROR:` line on stderr (exit 1), any other failure one logged line (exit 1). The event loop is
    never torn down: the process leaves as soon as the program is done (see `exit_process`), so a
    step abandoned after a stop cannot hold the exit up.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = Stop(loop)
    settings = load_settings_or_exit()
    configure_logging(settings)
    program_logger = logging.getLogger(name.replace(" ", "_"))
    try:
        code = loop.run_until_complete(program(settings, stop))
    except StopRequested as stopped:
        program_logger.info("%s stopped by %s while %s", name.capitalize(), stopped.reason, stopped.doing)
        code = 0
    except StartupError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        code = 1
    except Exception as error:
        program_logger.error("%s failed: %s", name.capitalize(), error)
        code = 1
    exit_process(code)
