"""How worker.py, client.py and codec_server.py start and stop.

Connecting to Temporal with payload encryption switched on exactly when Key
Vault is configured, fetching the key before anything else, handling signals
and exiting.

A start-up problem becomes one `StartupError` line that names what failed and
what to check, never a traceback, and the process exits non-zero with it (the
guide's client logged a failed connection and exited 0, which hides an outage
from Kubernetes and from CI).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import NoReturn

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from config import EncryptionSettings, Settings, configure_logging, load_settings_or_exit
from crypto_converter import Plaintext, encrypted_data_converter
from keyvault import KeyVaultError, KeyVaultKeyProvider

CONNECT_TIMEOUT = timedelta(seconds=30)

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """A reason the process cannot start, worded for the person reading the log."""


@asynccontextmanager
async def temporal_client(settings: Settings, runtime: Runtime | None = None) -> AsyncIterator[Client]:
    """A connected client whose payloads are encrypted when Key Vault is configured.

    The key is fetched before connecting, so a Key Vault problem stops the process
    at start-up instead of failing workflow tasks later; the key provider's
    background refresh ends when the block does.
    """
    encryption = settings.encryption
    if not encryption.enabled:
        logger.info("Payload encryption: off (set KEYVAULT_URL and KEYVAULT_SECRET_NAME to switch it on)")
        yield await connect_client(settings, DataConverter.default, runtime)
        return
    keys = await started_key_provider(encryption)
    try:
        plaintext = plaintext_policy(encryption)
        logger.info(
            "Payload encryption: on (AES-GCM, key from Key Vault secret %s at %s); unencrypted payloads: %s",
            encryption.secret_name,
            encryption.keyvault_url,
            PLAINTEXT_POLICY_NAMES[plaintext],
        )
        yield await connect_client(settings, encrypted_data_converter(keys, plaintext), runtime)
    finally:
        await keys.close()


PLAINTEXT_POLICY_NAMES = {
    Plaintext.REFUSE: "refused (ENCRYPTION_REQUIRED=true)",
    Plaintext.WARN: "accepted with a warning during a migration (ENCRYPTION_ALLOW_PLAINTEXT=true)",
    Plaintext.ACCEPT: "accepted (ENCRYPTION_REQUIRED=false)",
}


def plaintext_policy(encryption: EncryptionSettings) -> Plaintext:
    """What decode does with an unencrypted payload: refused only when encryption is required."""
    if not encryption.required:
        return Plaintext.ACCEPT
    return Plaintext.WARN if encryption.allow_plaintext else Plaintext.REFUSE


async def started_key_provider(settings: EncryptionSettings) -> KeyVaultKeyProvider:
    """A key provider holding the current key, or a StartupError saying what to check."""
    try:
        keys = KeyVaultKeyProvider(settings)
        await keys.start()
    except KeyVaultError as error:
        raise StartupError(str(error)) from None
    return keys


async def connect_client(settings: Settings, data_converter: DataConverter, runtime: Runtime | None) -> Client:
    """Connect with the settings' address, namespace, TLS and API key."""
    temporal = settings.temporal
    try:
        client = await asyncio.wait_for(
            Client.connect(**temporal.connect_kwargs(), data_converter=data_converter, runtime=runtime),
            timeout=CONNECT_TIMEOUT.total_seconds(),
        )
    except (TimeoutError, RuntimeError, OSError) as error:
        reason = str(error) or f"no answer within {CONNECT_TIMEOUT.total_seconds():g}s"
        raise StartupError(
            f"Cannot connect to Temporal at {temporal.address} (namespace {temporal.namespace}, "
            f"TLS {'on' if temporal.uses_tls else 'off'}): {reason}. "
            "Check TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY and TEMPORAL_TLS."
        ) from None
    logger.info(
        "Connected to Temporal at %s in namespace %s (TLS %s)",
        temporal.address,
        temporal.namespace,
        "on" if temporal.uses_tls else "off",
    )
    return client


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


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM (Kubernetes, ./start.sh) or SIGINT (Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    return stop


def run_program(name: str, program: Callable[[Settings], Awaitable[bool]]) -> NoReturn:
    """Load the settings, run `program` and exit: 0 if it succeeded, 1 if not or if it could not start."""
    settings = load_settings_or_exit()
    configure_logging(settings)
    try:
        succeeded = asyncio.run(program(settings))
    except StartupError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        exit_process(1)
    except Exception as error:
        logging.getLogger(name).error("%s failed: %s", name.capitalize(), error)
        exit_process(1)
    exit_process(0 if succeeded else 1)
