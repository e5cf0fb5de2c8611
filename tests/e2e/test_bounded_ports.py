"""The worker's health and metrics ports hold against stalled connections (issue 23, item 3).

Reproduced before: 300 connections that send half a request header stayed open for 100 s (0 closed), and with
a soft limit of 256 file descriptors the worker could no longer reach Temporal and logged 10,479 `accept() out
of system resource` tracebacks in 8 s. Here the real worker.py runs with that limit; 300 connections stall on
one of its ports; a fresh request is answered at once, every stalled connection is closed within the bound,
and the log has no traceback.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest

from helpers.processes import PYTHON, REPO_DIR, AppProcess, base_environment, free_port

STALLED_CONNECTIONS = 300
FILE_DESCRIPTOR_LIMIT = 256
CLOSED_WITHIN_SECONDS = 30.0  # the bound; bounded_http's header timeout is 5 s
FRESH_ANSWER_WITHIN_SECONDS = 2.0
HALF_A_HEADER = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: sl"


def get(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def stall(port: int) -> list[socket.socket]:
    """STALLED_CONNECTIONS connections to the port, each having sent half a request header."""
    stalled = []
    for _ in range(STALLED_CONNECTIONS):
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            connection.sendall(HALF_A_HEADER)
        except OSError:
            pass  # closed by the server at once (over its cap): fine
        stalled.append(connection)
    return stalled


def closed_by_the_server(connection: socket.socket, deadline: float) -> bool:
    connection.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        return connection.recv(65536) == b"" or closed_by_the_server(connection, deadline)
    except (ConnectionError, OSError) as error:
        return not isinstance(error, TimeoutError)


@pytest.mark.parametrize("which", ["health", "metrics"])
def test_stalled_connections_are_closed_and_a_fresh_request_is_answered(tmp_path, dev_server, task_queue, which):
    health_port, metrics_port = free_port(), free_port()
    env = base_environment(
        tmp_path,
        TEMPORAL_ADDRESS=dev_server.address,
        TEMPORAL_TASK_QUEUE=task_queue,
        HEALTH_PORT=str(health_port),
        METRICS_PORT=str(metrics_port),
    )
    limited = [
        "bash",
        "-c",
        f'ulimit -Sn {FILE_DESCRIPTOR_LIMIT} && exec "$0" "$1"',
        PYTHON,
        str(REPO_DIR / "worker.py"),
    ]
    worker = AppProcess(limited, env)
    stalled: list[socket.socket] = []
    try:
        worker.wait_for_line(r"^Starting worker\.\.\. Awaiting tasks\.$")
        port, path = (health_port, "/readyz") if which == "health" else (metrics_port, "/metrics")
        stalled = stall(port)
        started = time.monotonic()
        assert get(f"http://127.0.0.1:{port}{path}", timeout=FRESH_ANSWER_WITHIN_SECONDS) == 200
        assert time.monotonic() - started < FRESH_ANSWER_WITHIN_SECONDS
        deadline = time.monotonic() + CLOSED_WITHIN_SECONDS
        still_open = [c for c in stalled if not closed_by_the_server(c, deadline)]
        assert not still_open, f"{len(still_open)} of {STALLED_CONNECTIONS} still open after {CLOSED_WITHIN_SECONDS}s"
        assert get(f"http://127.0.0.1:{health_port}/readyz", timeout=5) == 200, "still polling: Temporal reachable"
    finally:
        for connection in stalled:
            connection.close()
        worker.stop()
    assert "Traceback" not in worker.output
    assert "out of system resource" not in worker.output
