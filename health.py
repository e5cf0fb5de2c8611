"""The worker's health over HTTP, for the Kubernetes probes: `/livez` and `/readyz` on HEALTH_PORT.

Public API:
    Health                                  # what the worker reports: polling, round trips, shutting down
    HealthServer(address, port, health)     # the HTTP server: await start() (OSError: port taken), await stop()
    keep_checking_temporal(current_client, health)  # a round trip every HEALTH_CHECK_INTERVAL_SECONDS

What each answer means (docs/deploy.md says what Kubernetes does with it):

    /livez    200 whenever the worker's event loop answers. Nothing else: a Temporal outage, a missing
              key or a slow start must not restart the pod, only a process that has stopped
              answering (an event loop blocked by synchronous code in an `async def` activity, a
              deadlock) should be.
    /readyz   200 while the worker polls its task queue, its last round trip to Temporal succeeded
              less than three intervals ago, and it is not shutting down; otherwise 503 and one line
              saying which of these is missing.

The round trip is `GetSystemInfo`, the call every client makes when it connects: it needs the same
address, TLS and API key as polling, and no permission beyond them. The worker's namespace check at
start-up counts as the first round trip. The server answers with text/plain so that `kubectl describe
pod` shows the reason of a failed probe as it is. Any pod can reach the port: it is served by
`bounded_http.BoundedHttpServer`, whose limits (header and write timeouts, a cap on open connections, on
header bytes) keep stalled connections from holding the worker's file descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from bounded_http import DEFAULT_LIMITS, BoundedHttpServer, Limits, Response

STALE_AFTER_INTERVALS = 3
MAX_ROUND_TRIP_SECONDS = 10.0

logger = logging.getLogger("health")


class Health:
    """The worker's state as the probes see it; the worker reports, the HTTP handlers read."""

    def __init__(self, check_interval_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.check_interval_seconds = check_interval_seconds
        self.max_age_seconds = STALE_AFTER_INTERVALS * check_interval_seconds
        self._clock = clock
        self._polling = False
        self._shutting_down = False
        self._last_round_trip: float | None = None
        self._last_error: str | None = None

    def polling_started(self) -> None:
        """The worker polls; its namespace check has just been answered, which is a round trip."""
        self._polling = True
        self.round_trip_succeeded()

    def shutting_down(self) -> None:
        self._shutting_down = True

    def round_trip_succeeded(self) -> None:
        if self._last_error is not None:
            logger.info("Temporal answers again: /readyz passes")
        self._last_round_trip = self._clock()
        self._last_error = None

    def round_trip_failed(self, error: str) -> None:
        if self._last_error is None:
            logger.warning(
                "No answer from Temporal: %s; /readyz fails if none succeeds within %gs of the last",
                error,
                self.max_age_seconds,
            )
        self._last_error = error

    def readiness_problem(self) -> str | None:
        """Why the worker is not ready, or None when it is."""
        if self._shutting_down:
            return "shutting down: polling has stopped, running activities are finishing"
        if not self._polling:
            return "starting: not polling yet"
        age = self._clock() - (self._last_round_trip or 0.0)
        if age > self.max_age_seconds:
            return (
                f"no successful round trip to Temporal for {age:.0f}s (limit {self.max_age_seconds:g}s); "
                f"last error: {self._last_error or 'none'}"
            )
        return None


def _answer(problem: str | None) -> Response:
    if problem is None:
        return Response(200, b"ok\n")
    return Response(503, f"{problem}\n".encode())


def health_handler(health: Health) -> Callable[[str, str], Awaitable[Response]]:
    """/livez and /readyz for `health`; any other path 404."""

    async def answer(_method: str, path: str) -> Response:
        if path == "/livez":
            return _answer(None)  # answering at all is the proof: the event loop runs this handler
        if path == "/readyz":
            return _answer(health.readiness_problem())
        return Response(404, b"not found; try /livez or /readyz\n")

    return answer


class HealthServer:
    """/livez and /readyz on `address`:`port` (port 0: not served at all), within `limits`."""

    def __init__(self, address: str, port: int, health: Health, limits: Limits = DEFAULT_LIMITS) -> None:
        self.address = address
        self.port = port
        self._server = BoundedHttpServer(address, port, health_handler(health), "health", limits)

    async def start(self) -> None:
        """Start answering; OSError when the port cannot be bound."""
        if not self.port:
            return
        await self._server.start()

    async def stop(self) -> None:
        if self.port:
            await self._server.stop()


async def check_temporal_once(client: Client, health: Health) -> None:
    """One round trip to Temporal, reported to `health`."""
    timeout = min(health.check_interval_seconds, MAX_ROUND_TRIP_SECONDS)
    try:
        await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timedelta(seconds=timeout))
    except Exception as error:  # RPCError, and whatever a broken connection raises: all mean "no answer"
        health.round_trip_failed(str(error) or type(error).__name__)
    else:
        health.round_trip_succeeded()


async def keep_checking_temporal(current_client: Callable[[], Client], health: Health) -> None:
    """A round trip every interval until cancelled, with the client in use at that moment (credentials rotate)."""
    while True:
        await asyncio.sleep(health.check_interval_seconds)
        await check_temporal_once(current_client(), health)
