"""The worker as an operator sees it, with the real worker.py against a real Temporal dev server: JSON log
lines, /livez and /readyz through start-up, shutdown and a Temporal outage, the tuning variables reaching
the SDK, and every metric the dashboard and the alert rules query being one the worker exports."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

import config
import worker as worker_module

from helpers.failing_workflow import FailingWorkflow, failing_activity
from helpers.processes import DevServer, base_environment, free_port, temporal_cli_json
from helpers.promql import (
    SCRAPE_LABELS,
    alert_queries,
    dashboard_queries,
    exposition,
    grouping_labels,
    metric_names,
    selector_labels,
)

WORKER_READY_TEXT = r"^Starting worker\.\.\. Awaiting tasks\.$"
WORKER_READY_JSON = r'"message": "Starting worker\.\.\. Awaiting tasks\."'
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def app_environment(tmp_path: Path, address: str, task_queue: str, **overrides: str) -> dict[str, str]:
    return base_environment(tmp_path, TEMPORAL_ADDRESS=address, TEMPORAL_TASK_QUEUE=task_queue, **overrides)


def get(url: str) -> tuple[int, str]:
    """The status and body of a GET, whatever the status; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.2)


def health_urls(port: int) -> tuple[str, str]:
    return f"http://127.0.0.1:{port}/livez", f"http://127.0.0.1:{port}/readyz"


def scrape(port: int) -> str:
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the one series of `name` whose labels include `labels`, or None."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def start_workflow_without_its_argument(address: str, task_queue: str) -> str:
    """YourWorkflow started with no input: its workflow task fails with a TypeError, and is retried."""
    workflow_id = f"missing-argument-{uuid.uuid4().hex[:8]}"
    temporal_cli_json(
        address, "workflow", "start", "--type", "YourWorkflow", "--task-queue", task_queue, "--workflow-id", workflow_id
    )
    return workflow_id


# --- logs ---------------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_the_temporal_context(tmp_path, dev_server, task_queue, run_app):
    env = app_environment(tmp_path, dev_server.address, task_queue, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY_JSON)
    client = run_app("client.py", "--count", "2", env=env)
    assert client.wait() == 0, client.output
    failing_id = start_workflow_without_its_argument(dev_server.address, task_queue)
    worker.wait_for_line(r"Failed activation on workflow YourWorkflow")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output

    entries = [json.loads(line) for line in worker.lines]  # every line is one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert RFC3339_UTC.fullmatch(entry["time"]), entry["time"]
    messages = [entry["message"] for entry in entries]
    assert messages.index("Initializing worker...") < messages.index("Starting worker... Awaiting tasks.")

    [activity] = [entry for entry in entries if entry["message"] == "Running your_second_activity"][:1]
    assert activity["logger"] == "temporalio.activity" and activity["level"] == "INFO"
    assert activity["activity_type"] == "your_second_activity" and activity["attempt"] == 1
    assert activity["task_queue"] == task_queue and activity["workflow_type"] == "YourWorkflow"
    assert activity["workflow_id"].startswith("your-workflow-") and activity["run_id"]

    failure = next(entry for entry in entries if entry["message"].startswith("Failed activation"))
    assert failure["level"] == "WARNING"
    assert failure["workflow_id"] == failing_id and failure["run_id"] and failure["task_queue"] == task_queue
    assert failure["exception"].startswith("Traceback") and "TypeError" in failure["exception"]


# --- health -------------------------------------------------------------------------------------


def test_the_worker_is_live_at_once_and_ready_only_once_it_polls(tmp_path, dev_server, task_queue, run_app):
    health_port = free_port()
    livez, readyz = health_urls(health_port)
    with socket.socket() as silent:  # a "Temporal" that accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        env = app_environment(tmp_path, address, task_queue, HEALTH_PORT=str(health_port))
        connecting = run_app("worker.py", env=env)
        wait_until(lambda: get(livez)[0] == 200, "/livez")
        assert get(readyz) == (503, "starting: not polling yet\n")
        assert connecting.process.poll() is None, "still connecting"
        connecting.process.kill()  # it would wait for its connect timeout before honouring SIGTERM
        connecting.wait()

    env = app_environment(tmp_path, dev_server.address, task_queue, HEALTH_PORT=str(health_port))
    polling = run_app("worker.py", env=env)
    polling.wait_for_line(WORKER_READY_TEXT)
    assert get(readyz) == (200, "ok\n")
    assert get(livez) == (200, "ok\n")


def test_a_shutting_down_worker_is_not_ready_but_still_live(tmp_path, dev_server, task_queue, run_app):
    health_port = free_port()
    livez, readyz = health_urls(health_port)
    env = app_environment(
        tmp_path, dev_server.address, task_queue, HEALTH_PORT=str(health_port), ACTIVITY_SIMULATED_WORK_SECONDS="3"
    )
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY_TEXT)
    assert get(readyz)[0] == 200
    temporal_cli_json(
        dev_server.address, "workflow", "start", "--type", "YourWorkflow", "--task-queue", task_queue, "--input", '"x"'
    )
    worker.wait_for_line(r"Running your_first_activity")
    worker.signal(signal.SIGTERM)
    worker.wait_for_line(r"Shutdown requested")
    status, reason = get(readyz)
    assert status == 503 and reason.startswith("shutting down"), (status, reason)
    assert get(livez) == (200, "ok\n"), "a draining worker must not be restarted"
    assert worker.wait() == 0, worker.output
    assert get(livez)[0] == 0, "the health server stops with the worker"


def test_a_temporal_outage_fails_readiness_never_liveness(tmp_path, task_queue, run_app):
    server = DevServer(db_file=tmp_path / "temporal.db").start(("--headless",))
    try:
        health_port = free_port()
        livez, readyz = health_urls(health_port)
        env = app_environment(
            tmp_path, server.address, task_queue, HEALTH_PORT=str(health_port), HEALTH_CHECK_INTERVAL_SECONDS="1"
        )
        worker = run_app("worker.py", env=env)
        worker.wait_for_line(WORKER_READY_TEXT)
        assert get(readyz)[0] == 200

        server.stop()
        answers: list[int] = []

        def not_ready() -> bool:
            answers.append(get(livez)[0])
            return get(readyz)[0] == 503

        wait_until(not_ready, "failing /readyz during the outage", timeout=30)
        status, reason = get(readyz)
        assert status == 503 and "no successful round trip to Temporal" in reason, reason
        for _ in range(10):  # a few more seconds of outage
            answers.append(get(livez)[0])
            time.sleep(0.3)
        assert set(answers) == {200}, "liveness never fails for an outage: no restart storm"
        worker.wait_for_line(r"No answer from Temporal")

        server = DevServer(db_file=tmp_path / "temporal.db", port=server.port).start(("--headless",))
        wait_until(lambda: get(readyz)[0] == 200, "/readyz after Temporal came back")
        worker.wait_for_line(r"Temporal answers again")
        assert worker.process.poll() is None
    finally:
        server.stop()


def test_a_taken_health_port_stops_the_worker_with_one_line(tmp_path, dev_server, task_queue, run_app):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = app_environment(tmp_path, dev_server.address, task_queue, HEALTH_PORT=str(port))
        worker = run_app("worker.py", env=env)
        assert worker.wait() == 1
    assert f"ERROR: Cannot serve /livez and /readyz on 127.0.0.1:{port}" in worker.output
    assert "change HEALTH_PORT" in worker.output and "Traceback" not in worker.output


# --- tuning -------------------------------------------------------------------------------------


def test_fixed_slots_and_the_cache_size_reach_the_sdk(tmp_path, dev_server, task_queue, run_app):
    metrics_port = free_port()
    env = app_environment(
        tmp_path,
        dev_server.address,
        task_queue,
        METRICS_PORT=str(metrics_port),
        WORKER_MAX_CONCURRENT_ACTIVITIES="7",
        WORKER_MAX_CONCURRENT_WORKFLOW_TASKS="3",
        WORKER_MAX_CACHED_WORKFLOWS="0",
    )
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY_TEXT)
    assert run_app("client.py", "--count", "2", env=env).wait() == 0
    assert "Worker tuning: fixed slots (3 workflow tasks, 7 activities), 0 cached workflows, fixed pollers" in (
        worker.output
    )
    metrics = scrape(metrics_port)
    assert sample(metrics, "temporal_worker_task_slots_available", worker_type="ActivityWorker") == 7
    assert sample(metrics, "temporal_worker_task_slots_available", worker_type="WorkflowWorker") == 3
    assert not sample(metrics, "temporal_num_pollers", poller_type="sticky_workflow_task"), "no cache, no sticky polls"
    assert sample(metrics, "temporal_num_pollers", poller_type="workflow_task")


def test_the_resource_based_tuner_and_poller_autoscaling_run_workflows(tmp_path, dev_server, task_queue, run_app):
    metrics_port = free_port()
    env = app_environment(
        tmp_path,
        dev_server.address,
        task_queue,
        METRICS_PORT=str(metrics_port),
        WORKER_TUNER="resource-based",
        WORKER_TUNER_TARGET_CPU="0.9",
        WORKER_TUNER_TARGET_MEMORY="0.7",
        WORKER_MAX_CONCURRENT_ACTIVITIES="20",
        WORKER_POLLER_AUTOSCALING="true",
    )
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY_TEXT)
    assert run_app("client.py", "--count", "3", env=env).wait() == 0
    assert (
        "Worker tuning: resource-based slots (CPU target 0.9, memory target 0.7, at most 100 workflow tasks, "
        "20 activities), 1000 cached workflows, autoscaling pollers"
    ) in worker.output
    metrics = scrape(metrics_port)
    assert sample(metrics, "temporal_resource_slots_cpu_usage") is not None, "the resource-based tuner measures CPU"
    assert sample(metrics, "temporal_resource_slots_mem_usage") is not None


# --- the dashboard's and the alerts' metric names ------------------------------------------------


async def run_failures(address: str, metrics_port: int, task_queue: str) -> str:
    """What the demo workflow never does, with worker.py's own runtime (its metric names): an activity and a
    workflow that fail, and a request Temporal refuses. Returns that runtime's /metrics page."""
    settings = config.load_settings({"METRICS_PORT": str(metrics_port), "HEALTH_PORT": "0"}, "/nonexistent.env")
    client = await Client.connect(address, runtime=worker_module.build_runtime(settings))
    async with Worker(client, task_queue=task_queue, workflows=[FailingWorkflow], activities=[failing_activity]):
        try:
            await client.execute_workflow(
                FailingWorkflow.run, "on purpose", id=f"failing-{uuid.uuid4()}", task_queue=task_queue
            )
        except WorkflowFailureError:
            pass
        else:
            raise AssertionError("FailingWorkflow succeeded")
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="no-such-namespace"))
    except Exception:  # NotFound: counted as a failed request
        pass
    return await asyncio.to_thread(scrape, metrics_port)


def test_every_metric_the_dashboard_and_the_alerts_query_is_one_the_worker_exports(
    tmp_path, dev_server, task_queue, run_app
):
    metrics_port = free_port()
    env = app_environment(tmp_path, dev_server.address, task_queue, METRICS_PORT=str(metrics_port))
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY_TEXT)
    assert run_app("client.py", "--count", "3", env=env).wait() == 0
    start_workflow_without_its_argument(dev_server.address, task_queue)
    wait_until(
        lambda: "temporal_workflow_task_execution_failed_total{" in scrape(metrics_port), "workflow task failure metric"
    )
    exported = exposition(scrape(metrics_port))

    failures = exposition(asyncio.run(run_failures(dev_server.address, free_port(), f"{task_queue}-failing")))
    only_on_failure = {"temporal_workflow_failed_total", "temporal_activity_execution_failed_total"}
    only_on_failure.add("temporal_request_failure_total")
    assert set(failures) - set(exported) <= only_on_failure, "the rest comes from the real worker.py"
    for name, labels in failures.items():
        exported.setdefault(name, set()).update(labels)

    queries = dashboard_queries() + list(alert_queries().values())
    for query in queries:
        names = metric_names(query)
        assert names, f"no temporal_ metric in {query}"
        assert names <= set(exported), f"{query} uses {sorted(names - set(exported))}, which the worker never exports"
        for name, labels in selector_labels(query).items():
            assert labels <= exported[name] | SCRAPE_LABELS, f"{query} filters {name} on labels it lacks"
        available = set().union(*(exported[name] for name in names)) | SCRAPE_LABELS
        assert grouping_labels(query) <= available, f"{query} groups by labels none of its metrics has"
