"""The Temporal worker: polls the task queue and runs YourWorkflow and its activities.

Prints the two lines people look for in `kubectl logs`:
    Initializing worker...
    Starting worker... Awaiting tasks.
the second only once the worker is really polling. SIGTERM or SIGINT starts a
graceful shutdown: polling stops and in-flight activities get
WORKER_SHUTDOWN_TIMEOUT_SECONDS to finish. While polling, the worker keeps its
health file fresh for the Kubernetes probes (healthcheck.py) and serves
Prometheus metrics from the SDK runtime on METRICS_PORT. With TEMPORAL_DEPLOYMENT_NAME and
TEMPORAL_WORKER_BUILD_ID set it registers as that version of a Worker Deployment (Worker Versioning),
with WORKER_VERSIONING_BEHAVIOR as the default for its workflows, and logs both names at start.

Exit status: 0 after a requested shutdown, 1 when it cannot start or the worker
fails, 2 for a configuration mistake.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities import YourActivities
from bootstrap import StartupError, run_program, stop_on_signals, temporal_client
from config import Settings
from healthcheck import HealthFile
from workflows import YourWorkflow

POLL_CHECK_INTERVAL_SECONDS = 0.05
# Every workflow this worker runs: the replay checks (replay.py, the pre-deploy check) replay against these too.
WORKFLOWS = [YourWorkflow]
VERSIONING_BEHAVIORS = {"pinned": VersioningBehavior.PINNED, "auto-upgrade": VersioningBehavior.AUTO_UPGRADE}

logger = logging.getLogger("worker")


def build_runtime(metrics_port: int) -> Runtime | None:
    """An SDK runtime serving Prometheus metrics on every interface, or None when METRICS_PORT=0."""
    if not metrics_port:
        return None
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"0.0.0.0:{metrics_port}")))
    except Exception as error:  # the bridge raises a plain Exception for a busy port
        raise StartupError(
            f"Cannot serve metrics on port {metrics_port}: {error}. "
            "Free the port or change METRICS_PORT (0 turns it off)."
        ) from None


def build_worker(client, settings: Settings) -> Worker:
    activities = YourActivities(settings.activity_simulated_work_seconds)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_timeout_seconds),
        deployment_config=deployment_config(settings),
    )


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The Worker Deployment version this worker registers as, or None to run unversioned; logged either way."""
    versioning = settings.versioning
    if versioning is None:
        logger.info(
            "Worker Versioning: off (set TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID to switch it on)"
        )
        return None
    logger.info(
        "Worker Versioning: deployment %s, build id %s, workflows %s by default",
        versioning.deployment_name,
        versioning.build_id,
        versioning.default_behavior,
    )
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=versioning.deployment_name, build_id=versioning.build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VERSIONING_BEHAVIORS[versioning.default_behavior],
    )


async def wait_until_polling(worker: Worker, run_task: asyncio.Task) -> None:
    """Return once the worker has passed its namespace check and started its pollers."""
    while not worker.is_running:
        if run_task.done():
            error = run_task.exception()
            raise StartupError(f"Worker could not start: {error}. Check TEMPORAL_NAMESPACE and the connection.")
        await asyncio.sleep(POLL_CHECK_INTERVAL_SECONDS)


async def run(settings: Settings) -> bool:
    print("Initializing worker...", flush=True)
    stop = stop_on_signals()
    async with temporal_client(settings, build_runtime(settings.metrics_port)) as client:
        await serve(build_worker(client, settings), settings, stop)
    return True


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


async def serve(worker: Worker, settings: Settings, stop: asyncio.Event) -> None:
    """Poll until stopped or failed, keeping the health file fresh meanwhile; then shut down gracefully."""
    run_task = asyncio.create_task(worker.run())
    await wait_until_polling(worker, run_task)
    health = HealthFile(settings.worker_health_file)
    await first_beat_or_stop(health, worker)
    print("Starting worker... Awaiting tasks.", flush=True)
    beating = asyncio.create_task(health.keep_fresh())
    try:
        stop_requested = asyncio.create_task(stop.wait())
        await asyncio.wait([stop_requested, run_task], return_when=asyncio.FIRST_COMPLETED)
        stop_requested.cancel()
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
