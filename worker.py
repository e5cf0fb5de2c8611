"""The Temporal worker: polls the task queue and runs YourWorkflow and its activities.

Prints the two lines people look for in `kubectl logs`:
    Initializing worker...
    Starting worker... Awaiting tasks.
the second only once the worker is really polling. SIGTERM or SIGINT while it
polls starts a graceful shutdown: polling stops and in-flight activities get
WORKER_SHUTDOWN_TIMEOUT_SECONDS to finish. SIGTERM or SIGINT during start-up
(reading the key from Key Vault, connecting, the namespace check) stops it at
once (bootstrap.Stop). While polling, the worker keeps its health file fresh
for the Kubernetes probes (healthcheck.py) and serves Prometheus metrics from
the SDK runtime on METRICS_BIND_ADDRESS:METRICS_PORT (loopback unless told
otherwise; the rendered ConfigMap says 0.0.0.0, for scraping in the pod).

Exit status: 0 after a requested stop (in start-up too), 1 when it cannot start
or the worker fails, 2 for a configuration mistake.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities import YourActivities
from bootstrap import StartupError, Stop, StopRequested, run_program, temporal_client
from config import Settings
from healthcheck import HealthFile
from workflows import YourWorkflow

POLL_CHECK_INTERVAL_SECONDS = 0.05

logger = logging.getLogger("worker")


def build_runtime(metrics_port: int, bind_address: str) -> Runtime | None:
    """An SDK runtime serving Prometheus metrics on METRICS_BIND_ADDRESS, or None when METRICS_PORT=0."""
    if not metrics_port:
        return None
    host = f"[{bind_address}]" if ":" in bind_address else bind_address  # an IPv6 address
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{metrics_port}")))
    except Exception as error:  # the bridge raises a plain Exception for a busy port
        raise StartupError(
            f"Cannot serve metrics on {host}:{metrics_port}: {error}. "
            "Free the port or change METRICS_PORT (0 turns it off) or METRICS_BIND_ADDRESS."
        ) from None


def build_worker(client, settings: Settings) -> Worker:
    activities = YourActivities(settings.activity_simulated_work_seconds)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[YourWorkflow],
        activities=activities.all(),
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_timeout_seconds),
    )


async def wait_until_polling(worker: Worker, run_task: asyncio.Task) -> None:
    """Return once the worker has passed its namespace check and started its pollers."""
    while not worker.is_running:
        if run_task.done():
            error = run_task.exception()
            raise StartupError(f"Worker could not start: {error}. Check TEMPORAL_NAMESPACE and the connection.")
        await asyncio.sleep(POLL_CHECK_INTERVAL_SECONDS)


async def run(settings: Settings, stop: Stop) -> int:
    print("Initializing worker...", flush=True)
    runtime = build_runtime(settings.metrics_port, settings.metrics_bind_address)
    async with temporal_client(settings, stop, runtime) as client:
        await serve(build_worker(client, settings), settings, stop)
    return 0


async def abandon_start(worker: Worker, run_task: asyncio.Task) -> None:
    """A stop during start-up: end the namespace check at once, or shut down if polling began meanwhile."""
    if worker.is_running:
        await worker.shutdown()
    else:
        run_task.cancel()  # the SDK marks a worker cancelled during its namespace check as shut down
    await asyncio.gather(run_task, return_exceptions=True)


async def first_beat_or_stop(health: HealthFile, worker: Worker) -> None:
    """Write the health file once before announcing readiness: a worker whose probes can never pass must say so."""
    try:
        health.beat()
    except OSError as error:
        await worker.shutdown()
        raise StartupError(
            f"Cannot write the health file {health.path}: {error.strerror or error}. "
            "Set WORKER_HEALTH_FILE to a writable path (in the pod: under /tmp)."
        ) from None


async def serve(worker: Worker, settings: Settings, stop: Stop) -> None:
    """Poll until stopped or failed, keeping the health file fresh meanwhile; then shut down gracefully."""
    run_task = asyncio.create_task(worker.run())
    try:
        await stop.race(wait_until_polling(worker, run_task), "checking the namespace and starting to poll")
    except StopRequested:
        await abandon_start(worker, run_task)
        raise
    health = HealthFile(settings.worker_health_file)
    await first_beat_or_stop(health, worker)
    print("Starting worker... Awaiting tasks.", flush=True)
    beating = asyncio.create_task(health.keep_fresh())
    try:
        # shield: a stop must not cancel the worker, which shuts down gracefully below
        await stop.race(asyncio.shield(run_task), "polling")
    except StopRequested:
        pass
    finally:
        beating.cancel()
        health.remove()
    if not run_task.done():
        logger.info(
            "Shutdown requested: waiting up to %gs for running activities",
            settings.worker_shutdown_timeout_seconds,
        )
        await worker.shutdown()
    await run_task  # re-raises a fatal worker error
    logger.info("Worker stopped")


if __name__ == "__main__":
    run_program("worker", run)
