"""The Temporal worker: polls the task queue and runs YourWorkflow and its activities.

Prints the two lines people look for in `kubectl logs`:
    Initializing worker...
    Starting worker... Awaiting tasks.
the second only once the worker is really polling (with LOG_FORMAT=json, as the
`message` of a JSON line). SIGTERM or SIGINT while it polls starts a graceful
shutdown: polling stops and in-flight activities get
WORKER_SHUTDOWN_TIMEOUT_SECONDS to finish. SIGTERM or SIGINT during start-up
(reading the key from Key Vault, connecting, the namespace check) stops it at
once (bootstrap.Stop).

From start to exit it serves /livez and /readyz on HEALTH_PORT for the
Kubernetes probes (health.py), and Prometheus metrics from the SDK runtime on
METRICS_PORT, both on METRICS_BIND_ADDRESS (loopback unless told otherwise; the
rendered ConfigMap says 0.0.0.0, for the kubelet and scraping in the pod). Both
ports go through bounded_http.BoundedHttpServer (timeouts, a cap on open
connections): the SDK's exporter has no limits, so it listens on a free
127.0.0.1 port and METRICS_PORT relays GET /metrics to it. How
much it runs at once is WORKER_TUNER and the WORKER_MAX_* variables
(`tuning_options`). With TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID
set it registers as that version of a Worker Deployment (Worker Versioning),
with WORKER_VERSIONING_BEHAVIOR as the default for its workflows, and logs both
names at start.

Exit status: 0 after a requested stop (in start-up too), 1 when it cannot start
or the worker fails, 2 for a configuration mistake.
"""

from __future__ import annotations

# isort: off
import early_signals  # noqa: F401  first: keeps a stop signal that comes during the imports below
# isort: on

import asyncio
import logging
import socket
from datetime import timedelta
from typing import Any

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.runtime import LogForwardingConfig, LoggingConfig, PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    PollerBehaviorAutoscaling,
    ResourceBasedSlotConfig,
    Worker,
    WorkerDeploymentConfig,
    WorkerTuner,
)

from activities import YourActivities
from bootstrap import StartupError, Stop, StopRequested, TemporalConnection, run_program, temporal_connection
from bounded_http import BoundedHttpServer, HttpRelay
from config import Settings, WorkerTuning
from health import Health, HealthServer, keep_checking_temporal
from log_format import announce
from workflows import YourWorkflow

POLL_CHECK_INTERVAL_SECONDS = 0.05
# The resource-based tuner's own floors (temporalio.worker.ResourceBasedSlotConfig), kept under a lower maximum.
RESOURCE_BASED_MINIMUM_WORKFLOW_SLOTS = 5
RESOURCE_BASED_MINIMUM_ACTIVITY_SLOTS = 1
# Every workflow this worker runs: the replay checks (deploy/replay.py, the pre-deploy check) replay against these too.
WORKFLOWS = [YourWorkflow]
VERSIONING_BEHAVIORS = {"pinned": VersioningBehavior.PINNED, "auto-upgrade": VersioningBehavior.AUTO_UPGRADE}

logger = logging.getLogger("worker")


def build_runtime(settings: Settings, exporter_address: str | None = None) -> Runtime | None:
    """The SDK runtime: Prometheus metrics on `exporter_address` (host:port; by default
    METRICS_BIND_ADDRESS:METRICS_PORT, served by the SDK directly), and with LOG_FORMAT=json the SDK core's own
    warnings forwarded to Python logging so that they are JSON lines too; None when neither is asked for (the
    SDK's default runtime). The worker passes a loopback address that its bounded relay serves from."""
    if not settings.metrics_port and settings.log_format != "json":
        return None
    log_config = LoggingConfig.default
    if settings.log_format == "json":
        forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
        log_config = LoggingConfig(filter=LoggingConfig.default.filter, forwarding=forwarding)
    metrics = None
    exporter_address = exporter_address or f"{listen_host(settings.metrics_bind_address)}:{settings.metrics_port}"
    if settings.metrics_port:
        # Prometheus' own conventions, which are the names Temporal's docs and alerts use and which any
        # scraper keeps as they are: durations in seconds with a unit suffix, counters ending in _total
        # (temporal_workflow_task_schedule_to_start_latency_seconds_bucket, temporal_workflow_completed_total).
        metrics = PrometheusConfig(
            bind_address=exporter_address,
            counters_total_suffix=True,
            unit_suffix=True,
            durations_as_seconds=True,
        )
    try:
        return Runtime(telemetry=TelemetryConfig(logging=log_config, metrics=metrics))
    except Exception as error:  # the bridge raises a plain Exception for a busy port
        raise StartupError(
            f"Cannot serve metrics on {exporter_address}: {error}. "
            "Free the port or change METRICS_PORT (0 turns it off) or METRICS_BIND_ADDRESS."
        ) from None


def tuning_options(tuning: WorkerTuning) -> dict[str, Any]:
    """The Worker options for WORKER_TUNER, WORKER_MAX_* and WORKER_POLLER_AUTOSCALING.

    With the fixed tuner the maxima are the slots; with the resource-based one they are its ceilings,
    and slots are handed out while the process stays under the CPU and memory targets.
    """
    options: dict[str, Any] = {"max_cached_workflows": tuning.max_cached_workflows}
    if tuning.tuner == "resource-based":
        workflow_slots, activity_slots = tuning.max_concurrent_workflow_tasks, tuning.max_concurrent_activities
        options["tuner"] = WorkerTuner.create_resource_based(
            target_memory_usage=tuning.target_memory,
            target_cpu_usage=tuning.target_cpu,
            workflow_config=ResourceBasedSlotConfig(
                minimum_slots=min(RESOURCE_BASED_MINIMUM_WORKFLOW_SLOTS, workflow_slots), maximum_slots=workflow_slots
            ),
            activity_config=ResourceBasedSlotConfig(
                minimum_slots=min(RESOURCE_BASED_MINIMUM_ACTIVITY_SLOTS, activity_slots), maximum_slots=activity_slots
            ),
        )
    else:
        options["max_concurrent_workflow_tasks"] = tuning.max_concurrent_workflow_tasks
        options["max_concurrent_activities"] = tuning.max_concurrent_activities
    if tuning.poller_autoscaling:
        options["workflow_task_poller_behavior"] = PollerBehaviorAutoscaling()
        options["activity_task_poller_behavior"] = PollerBehaviorAutoscaling()
    return options


def describe_tuning(tuning: WorkerTuning) -> str:
    """The tuning in one line for the log, e.g. `fixed slots (100 workflow tasks, 100 activities), ...`."""
    slots = f"{tuning.max_concurrent_workflow_tasks} workflow tasks, {tuning.max_concurrent_activities} activities"
    if tuning.tuner == "resource-based":
        targets = f"CPU target {tuning.target_cpu:g}, memory target {tuning.target_memory:g}"
        slots = f"resource-based slots ({targets}, at most {slots})"
    else:
        slots = f"fixed slots ({slots})"
    pollers = "autoscaling" if tuning.poller_autoscaling else "fixed"
    return f"{slots}, {tuning.max_cached_workflows} cached workflows, {pollers} pollers"


def build_worker(client, settings: Settings) -> Worker:
    activities = YourActivities(settings.activity_simulated_work_seconds)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_timeout_seconds),
        **tuning_options(settings.tuning),
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
        versioning.worker_deployment_name,
        versioning.build_id,
        versioning.default_behavior,
    )
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(
            deployment_name=versioning.worker_deployment_name, build_id=versioning.build_id
        ),
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


async def run(settings: Settings, stop: Stop) -> int:
    announce(logger, "Initializing worker...")
    health = Health(settings.health_check_interval_seconds)
    health_server = await start_health_server(settings.metrics_bind_address, settings.health_port, health)
    metrics_relay: BoundedHttpServer | None = None
    try:
        exporter_address = None
        if settings.metrics_port:
            exporter_port = free_loopback_port()
            metrics_relay = await start_metrics_relay(settings, exporter_port)
            exporter_address = f"127.0.0.1:{exporter_port}"
        async with temporal_connection(settings, stop, build_runtime(settings, exporter_address)) as connection:
            worker = build_worker(connection.client, settings)
            connection.on_new_client(lambda client: setattr(worker, "client", client))  # a rotated client certificate
            await serve(worker, settings, stop, health, connection)
    finally:
        if metrics_relay is not None:
            await metrics_relay.stop()
        await health_server.stop()
    return 0


def listen_host(address: str) -> str:
    """An address as the host part of host:port (an IPv6 address in brackets)."""
    return f"[{address}]" if ":" in address else address


async def start_health_server(address: str, port: int, health: Health) -> HealthServer:
    """/livez and /readyz from start-up to exit (live at once, ready once polling), or a StartupError."""
    server = HealthServer(address, port, health)
    try:
        await server.start()
    except OSError as error:
        raise StartupError(
            f"Cannot serve /livez and /readyz on {listen_host(address)}:{port}: {error.strerror or error}. "
            "Free the port or change HEALTH_PORT (0 turns it off) or METRICS_BIND_ADDRESS."
        ) from None
    return server


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 now, for the SDK's exporter behind the relay."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def start_metrics_relay(settings: Settings, exporter_port: int) -> BoundedHttpServer:
    """METRICS_PORT: GET /metrics relayed from the SDK's exporter on 127.0.0.1:`exporter_port`, bounded; or a
    StartupError."""
    address, port = settings.metrics_bind_address, settings.metrics_port
    relay = BoundedHttpServer(address, port, HttpRelay(exporter_port), "metrics")
    try:
        await relay.start()
    except OSError as error:
        raise StartupError(
            f"Cannot serve metrics on {listen_host(address)}:{port}: {error.strerror or error}. "
            "Free the port or change METRICS_PORT (0 turns it off) or METRICS_BIND_ADDRESS."
        ) from None
    return relay


async def abandon_start(worker: Worker, run_task: asyncio.Task) -> None:
    """A stop during start-up: end the namespace check at once, or shut down if polling began meanwhile."""
    if worker.is_running:
        await worker.shutdown()
    else:
        run_task.cancel()  # the SDK marks a worker cancelled during its namespace check as shut down
    await asyncio.gather(run_task, return_exceptions=True)


def release_start_up_memory() -> bool:
    """Hand the heap memory start-up freed back to the OS, once, after polling began; whether any was.

    Imports (the configuration's dataclasses compile code as they are made), reading the key and the first
    round trips allocate and free a lot; glibc keeps the freed pages for reuse, scattered between live objects,
    so the pod holds them until the process ends: 2 MiB with every feature off and 4 MiB with encryption on
    (`tests/bench.py --only worker-peer`, README Performance). `malloc_trim` returns them; ctypes costs 0.3 MiB.
    Where libc has no malloc_trim (musl), nothing happens."""
    import ctypes
    import gc

    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except AttributeError:
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))


async def serve(worker: Worker, settings: Settings, stop: Stop, health: Health, connection: TemporalConnection) -> None:
    """Poll until stopped or failed, checking the way to Temporal meanwhile; then shut down gracefully."""
    run_task = asyncio.create_task(worker.run())
    try:
        await stop.race(wait_until_polling(worker, run_task), "checking the namespace and starting to poll")
    except StopRequested:
        await abandon_start(worker, run_task)
        raise
    health.polling_started()
    logger.info("Worker tuning: %s", describe_tuning(settings.tuning))
    announce(logger, "Starting worker... Awaiting tasks.")
    release_start_up_memory()
    checking = asyncio.create_task(keep_checking_temporal(lambda: connection.client, health))
    try:
        # shield: a stop must not cancel the worker, which shuts down gracefully below
        await stop.race(asyncio.shield(run_task), "polling")
    except StopRequested:
        pass
    finally:
        health.shutting_down()
        checking.cancel()
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
