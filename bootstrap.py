"""How worker.py and client.py start and stop: connect to Temporal, handle signals, exit.

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
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import NoReturn

from temporalio.client import Client
from temporalio.runtime import Runtime

from config import Settings, configure_logging, load_settings_or_exit

CONNECT_TIMEOUT = timedelta(seconds=30)

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """A reason the process cannot start, worded for the person reading the log."""


async def connect_client(settings: Settings, runtime: Runtime | None = None) -> Client:
    """Connect with the settings' address, namespace, TLS and API key."""
    temporal = settings.temporal
    try:
        client = await asyncio.wait_for(
            Client.connect(**temporal.connect_kwargs(), runtime=runtime),
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
