"""The real worker.py and client.py processes against a real Temporal dev server."""

from __future__ import annotations

import re
import signal
import socket
import time
import urllib.request

import pytest

from helpers.processes import base_environment, free_port, temporal_cli_json, workflow_history
from helpers.stopping import SilentServer

WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"


def app_environment(tmp_path, dev_server, task_queue, **overrides):
    return base_environment(tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue, **overrides)


def test_worker_prints_its_two_lines_and_client_smoke_test_completes_workflows(
    tmp_path, dev_server, task_queue, run_app
):
    env = app_environment(tmp_path, dev_server, task_queue)
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    assert worker.lines.index("Initializing worker...") < worker.lines.index("Starting worker... Awaiting tasks.")

    client = run_app("client.py", "--count", "3", env=env)
    assert client.wait() == 0, client.output
    for number in (1, 2, 3):
        assert re.search(
            rf"^OK your-workflow-{number}-\S+: Final result: Processed: Hello, ClientTriggeredPayload-{number}!$",
            client.output,
            re.MULTILINE,
        ), client.output
    assert "3 of 3 workflows succeeded" in client.output
    # Text logs (the default) keep the SDK's context appended to the message, as the SDK writes it.
    [activity_line, *_] = worker.wait_for_line(r" INFO temporalio\.activity: Running your_first_activity \(")
    assert (
        f"'task_queue': '{task_queue}'" in activity_line and "'activity_type': 'your_first_activity'" in activity_line
    )


def test_client_loop_starts_a_workflow_every_interval_and_logs_outcomes_with_payloads_only_at_debug(
    tmp_path, dev_server, task_queue, run_app
):
    env = app_environment(tmp_path, dev_server, task_queue, CLIENT_INTERVAL_SECONDS="0.2")
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    client = run_app("client.py", env=env)
    talkative_client = run_app("client.py", env=env | {"LOG_LEVEL": "DEBUG"})
    completed = client.wait_for_line(r"Workflow your-workflow-\d+-\S+ completed$", count=3)
    workflow_ids = {re.search(r"Workflow (\S+) completed", line).group(1) for line in completed}
    assert len(workflow_ids) == 3
    results = talkative_client.wait_for_line(
        r"Workflow your-workflow-(\d+)-\S+ result: Final result: Processed: Hello, ClientTriggeredPayload-\1!$", count=3
    )
    assert len(results) >= 3
    talkative_client.wait_for_line(r"Workflow your-workflow-1-\S+ argument: ClientTriggeredPayload-1$")
    for program in (client, talkative_client):
        program.signal(signal.SIGTERM)
        assert program.wait() == 0
        assert "Client stopped (SIGTERM)" in program.output
    assert "ClientTriggeredPayload" not in client.output and "Final result" not in client.output, "INFO shows none"


def test_client_loop_keeps_going_when_a_start_fails(tmp_path, dev_server, task_queue, run_app):
    # Connecting does not check the namespace but starting a workflow does, so every start fails.
    env = app_environment(
        tmp_path, dev_server, task_queue, CLIENT_INTERVAL_SECONDS="0.1", TEMPORAL_NAMESPACE="no-such-namespace"
    )
    client = run_app("client.py", env=env)
    client.wait_for_line(r"Failed to start workflow number 3:")
    assert client.process.poll() is None, "the loop must survive failed starts"
    client.signal(signal.SIGINT)
    assert client.wait() == 0


def test_client_loop_pauses_while_its_pending_workflows_reach_the_limit_and_goes_on_when_a_worker_comes(
    tmp_path, dev_server, task_queue, run_app
):
    env = app_environment(
        tmp_path, dev_server, task_queue, CLIENT_INTERVAL_SECONDS="0.1", CLIENT_MAX_PENDING_WORKFLOWS="2"
    )
    client = run_app("client.py", env=env)
    client.wait_for_line(
        rf"2 workflows are waiting for a result \(CLIENT_MAX_PENDING_WORKFLOWS\): starting no more until one "
        rf"finishes\. Is a worker polling task queue {task_queue} in namespace default\?"
    )
    time.sleep(2)  # twenty intervals
    assert len(client.wait_for_line(r"Starting workflow ")) == 2, client.output

    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    client.wait_for_line(r"starting workflows again")
    client.wait_for_line(r"Workflow your-workflow-4-\S+ completed$")
    client.signal(signal.SIGINT)
    assert client.wait() == 0


def test_smoke_test_gives_up_at_its_timeout_in_start_up_and_while_waiting(tmp_path, dev_server, task_queue, run_app):
    waiting = run_app(
        "client.py", "--count", "2", "--timeout", "3", env=app_environment(tmp_path, dev_server, task_queue)
    )
    with SilentServer() as silent:
        connecting = run_app(
            "client.py",
            "--count",
            "2",
            "--timeout",
            "3",
            env=base_environment(tmp_path, TEMPORAL_ADDRESS=silent.address, TEMPORAL_TASK_QUEUE=task_queue),
        )
        assert connecting.wait() == 124, connecting.output
    assert connecting.lines[-1] == "Timed out after 3s (--timeout): 0 of 2 results arrived; no workflow was started"

    assert waiting.wait() == 124, waiting.output
    assert len(re.findall(r"^PENDING your-workflow-\d+-\S+$", waiting.output, re.MULTILINE)) == 2
    assert waiting.lines[-1].startswith(
        "Timed out after 3s (--timeout): 0 of 2 results arrived. The 2 workflows without a result keep running on "
        "the server (they are durable): see them in the Temporal Web UI or with: temporal workflow list "
    ), waiting.output


def test_every_workflow_has_the_execution_timeout_so_none_waits_for_a_worker_forever(
    tmp_path, dev_server, task_queue, run_app
):
    env = app_environment(tmp_path, dev_server, task_queue, CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS="2")
    client = run_app("client.py", "--count", "1", env=env)
    assert client.wait() == 1, client.output
    failed = re.search(r"^FAILED (\S+): (.*)$", client.output, re.MULTILINE)
    assert failed, client.output
    assert (
        failed.group(2) == "WorkflowFailureError: Workflow execution failed; caused by TimeoutError: Workflow timed out"
    )
    assert "0 of 1 workflows succeeded" in client.output
    described = temporal_cli_json(dev_server.address, "workflow", "describe", "--workflow-id", failed.group(1))
    assert described["executionConfig"]["workflowExecutionTimeout"] == "2s"


def test_client_help_documents_the_exit_statuses_and_timeout_needs_count(tmp_path, run_app):
    shown = run_app("client.py", "--help", env=base_environment(tmp_path))
    assert shown.wait() == 0
    for status in ("0 ", "1 ", "2 ", "124 ", "130 ", "143 "):
        assert re.search(rf"^  {status}", shown.output, re.MULTILINE), shown.output
    refused = run_app("client.py", "--timeout", "5", env=base_environment(tmp_path))
    assert refused.wait() == 2
    assert "--timeout goes with --count N" in refused.output


def test_sigterm_lets_the_running_activity_finish_and_the_workflow_complete(tmp_path, dev_server, task_queue, run_app):
    env = app_environment(tmp_path, dev_server, task_queue, ACTIVITY_SIMULATED_WORK_SECONDS="2")
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    client = run_app("client.py", "--count", "1", env=env)
    worker.wait_for_line(r"Running your_first_activity")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output
    assert "Shutdown requested" in worker.output

    successor = run_app("worker.py", env=env)
    successor.wait_for_line(WORKER_READY)
    assert client.wait() == 0, client.output
    workflow_id = re.search(
        r"^OK (\S+): Final result: Processed: Hello, ClientTriggeredPayload-1!$", client.output, re.M
    )
    assert workflow_id, client.output

    events = workflow_history(dev_server.address, workflow_id.group(1))
    first_activity_attempts = [
        event["activityTaskStartedEventAttributes"]["attempt"]
        for event in events
        if event["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED"
    ][:1]
    assert first_activity_attempts == [1], "the interrupted activity finished instead of being retried"


def test_wrong_address_makes_worker_and_client_exit_non_zero_with_one_readable_line(tmp_path, task_queue, run_app):
    nothing_listens = f"127.0.0.1:{free_port()}"
    env = base_environment(tmp_path, TEMPORAL_ADDRESS=nothing_listens, TEMPORAL_TASK_QUEUE=task_queue)
    for program in (
        run_app("worker.py", env=env),
        run_app("client.py", env=env),
        run_app("client.py", "--count", "1", env=env),
    ):
        assert program.wait() == 1
        assert f"ERROR: Cannot connect to Temporal at {nothing_listens}" in program.output
        assert "Check TEMPORAL_ADDRESS" in program.output
        assert "Traceback" not in program.output


def test_worker_serves_health_and_metrics_while_polling_and_not_after(tmp_path, dev_server, task_queue, run_app):
    metrics_port, health_port = free_port(), free_port()
    env = app_environment(
        tmp_path, dev_server, task_queue, METRICS_PORT=str(metrics_port), HEALTH_PORT=str(health_port)
    )
    worker = run_app("worker.py", env=env)
    worker.wait_for_line(WORKER_READY)
    for path in ("livez", "readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/{path}", timeout=10) as response:
            assert (response.status, response.read()) == (200, b"ok\n")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert "temporal_num_pollers{" in metrics

    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    for port in (health_port, metrics_port):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)


def test_unknown_namespace_makes_the_worker_exit_non_zero_with_a_hint(tmp_path, dev_server, task_queue, run_app):
    env = app_environment(tmp_path, dev_server, task_queue, TEMPORAL_NAMESPACE="no-such-namespace")
    worker = run_app("worker.py", env=env)
    assert worker.wait() == 1
    assert "ERROR: Worker could not start" in worker.output
    assert "Check TEMPORAL_NAMESPACE" in worker.output
    assert "Starting worker... Awaiting tasks." not in worker.output
    assert "Traceback" not in worker.output


def test_metrics_listen_on_loopback_unless_told_every_interface(tmp_path, dev_server, task_queue, run_app):
    """Metrics and /livez, /readyz: 127.0.0.2 is loopback too, but only a listener on every interface (the
    pod's 0.0.0.0) answers there."""
    ports = {"default": (free_port(), free_port()), "0.0.0.0": (free_port(), free_port())}
    workers = {}
    for bind_address, (metrics_port, health_port) in ports.items():
        overrides = {"METRICS_PORT": str(metrics_port), "HEALTH_PORT": str(health_port)}
        if bind_address != "default":
            overrides["METRICS_BIND_ADDRESS"] = bind_address
        workers[bind_address] = run_app("worker.py", env=app_environment(tmp_path, dev_server, task_queue, **overrides))
    for worker in workers.values():
        worker.wait_for_line(WORKER_READY)

    def answers(host: str, port: int) -> bool:
        try:
            socket.create_connection((host, port), timeout=5).close()
        except ConnectionRefusedError:
            return False
        return True

    for port in ports["default"]:
        assert answers("127.0.0.1", port) and not answers("127.0.0.2", port)
    for port in ports["0.0.0.0"]:
        assert answers("127.0.0.1", port) and answers("127.0.0.2", port)
    for worker in workers.values():
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output
