"""Fault scenarios: what Temporal promises when a worker or the server goes away, shown with our processes."""

from __future__ import annotations

import re
import signal
import time

from conftest import AppProcess, DevServer, base_environment

WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"
WORKFLOWS_IN_FLIGHT = 20


def expected_results(output: str) -> dict[str, str]:
    """workflow id -> result, from the smoke-test client's OK lines."""
    return dict(re.findall(r"^OK (\S+): (.*)$", output, re.MULTILINE))


def completed_after_last_failed_start(client: AppProcess) -> list[int]:
    """Numbers of the workflows that completed and were started after the last failed start."""
    last_failed = max(int(n) for n in re.findall(r"Failed to start workflow number (\d+):", client.output))
    completed = (
        int(n) for n in re.findall(r"Workflow your-workflow-(\d+)-\S+ completed: Final result:", client.output)
    )
    return [number for number in completed if number > last_failed]


def wait_for_completions_after_restart(client: AppProcess, count: int, timeout: float = 120) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(numbers := completed_after_last_failed_start(client)) < count:
        assert time.monotonic() < deadline, f"no {count} workflows completed after the restart:\n{client.output}"
        time.sleep(0.2)
    return numbers


def test_kill_9_worker_mid_activity_and_a_new_worker_completes_every_workflow_once(
    tmp_path, dev_server, task_queue, run_app
):
    env = base_environment(
        tmp_path,
        TEMPORAL_ADDRESS=dev_server.address,
        TEMPORAL_TASK_QUEUE=task_queue,
        ACTIVITY_SIMULATED_WORK_SECONDS="3",
    )
    doomed = run_app("worker.py", env=env)
    doomed.wait_for_line(WORKER_READY)
    client = run_app("client.py", "--count", str(WORKFLOWS_IN_FLIGHT), env=env)
    doomed.wait_for_line(r"Running your_first_activity", count=WORKFLOWS_IN_FLIGHT)
    doomed.signal(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL

    successor = run_app("worker.py", env=env)
    successor.wait_for_line(WORKER_READY)
    assert client.wait(timeout=180) == 0, client.output

    results = expected_results(client.output)
    assert len(results) == WORKFLOWS_IN_FLIGHT
    for workflow_id, result in results.items():
        number = re.match(r"your-workflow-(\d+)-", workflow_id).group(1)
        assert result == f"Final result: Processed: Hello, ClientTriggeredPayload-{number}!"


def test_server_restart_while_the_client_loop_runs(tmp_path, task_queue, run_app):
    server = DevServer(db_file=tmp_path / "history.db").start(("--headless",))
    try:
        env = base_environment(
            tmp_path, TEMPORAL_ADDRESS=server.address, TEMPORAL_TASK_QUEUE=task_queue, CLIENT_INTERVAL_SECONDS="0.3"
        )
        worker = run_app("worker.py", env=env)
        worker.wait_for_line(WORKER_READY)
        client = run_app("client.py", env=env)
        client.wait_for_line(r"completed: Final result:")

        server.stop()
        client.wait_for_line(r"Failed to start workflow number \d+:", count=2)
        server.start(("--headless",))

        wait_for_completions_after_restart(client, count=3)
        assert client.process.poll() is None and worker.process.poll() is None
        client.signal(signal.SIGTERM)
        worker.signal(signal.SIGTERM)
        assert client.wait() == 0
        assert worker.wait() == 0, worker.output
    finally:
        server.stop()
