"""./start.sh as a newcomer runs it: dev server, worker and client from nothing, and a clean stop."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from helpers.processes import AppProcess, base_environment, free_port
from helpers.start_sh import copy_of_repo


def process_group_is_gone(process_group: int) -> bool:
    try:
        os.killpg(process_group, 0)
    except ProcessLookupError:
        return True
    return False


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def start_sh(tmp_path):
    started: list[AppProcess] = []

    def start(*arguments: str, **environ: str) -> AppProcess:
        repo = tmp_path / "repo" if (tmp_path / "repo").exists() else copy_of_repo(tmp_path / "repo")
        process = AppProcess([str(repo / "start.sh"), *arguments], base_environment(tmp_path, **environ), cwd=repo)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_start_sh_brings_up_dev_server_worker_and_client_and_sigterm_leaves_nothing(tmp_path, start_sh):
    port, ui_port = free_port(), free_port()
    app = start_sh(
        TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        TEMPORAL_DEV_SERVER_UI_PORT=str(ui_port),
        CLIENT_INTERVAL_SECONDS="0.5",
        LOG_LEVEL="DEBUG",  # the client logs results at DEBUG
    )
    app.wait_for_line(rf"^Temporal Web UI: http://localhost:{ui_port}$", timeout=120)
    app.wait_for_line(r"^Initializing worker\.\.\.$")
    app.wait_for_line(r"^Starting worker\.\.\. Awaiting tasks\.$")
    app.wait_for_line(r"result: Final result: Processed: Hello, ClientTriggeredPayload-\d+!$", count=2)

    app.signal(signal.SIGTERM)
    assert app.wait(timeout=60) == 0, app.output
    assert process_group_is_gone(app.process.pid), "start.sh left a process behind"
    assert port_is_closed(port) and port_is_closed(ui_port)
    assert (tmp_path / "repo" / ".temporal" / "dev-server.db").exists(), "history is kept between runs"


def test_start_sh_uses_a_server_that_already_listens(tmp_path, dev_server, start_sh, task_queue):
    app = start_sh("worker", TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    app.wait_for_line(rf"^Using the Temporal server already listening at {dev_server.address}$")
    app.wait_for_line(r"^Starting worker\.\.\. Awaiting tasks\.$")
    os.killpg(app.process.pid, signal.SIGINT)  # Ctrl-C: a terminal signals the whole foreground process group
    assert app.wait() == 0, app.output
    assert "Starting the Temporal dev server" not in app.output


def test_start_sh_in_a_container_replaces_itself_with_python(tmp_path, dev_server, start_sh, task_queue):
    app = start_sh("worker", IN_CONTAINER="true", TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    app.wait_for_line(r"^Starting worker\.\.\. Awaiting tasks\.$")
    command_line = Path(f"/proc/{app.process.pid}/cmdline").read_bytes().split(b"\0")
    assert command_line[0].endswith(b"python") and command_line[1].endswith(b"worker.py"), command_line
    app.signal(signal.SIGTERM)
    assert app.wait() == 0, app.output


def test_start_sh_stops_before_starting_anything_on_a_configuration_mistake(tmp_path, start_sh):
    app = start_sh(TEMPORAL_ADDRESS="nowhere", CLIENT_INTERVAL_SECONDS="often")
    assert app.wait() == 2
    assert "TEMPORAL_ADDRESS='nowhere'" in app.output
    assert "CLIENT_INTERVAL_SECONDS='often'" in app.output
    assert "Starting the Temporal dev server" not in app.output


@pytest.mark.parametrize(("arguments", "status"), [(("--help",), 0), (("sideways",), 2)])
def test_start_sh_help_and_unknown_mode(tmp_path, start_sh, arguments, status):
    app = start_sh(*arguments)
    assert app.wait() == status
    assert "Usage: ./start.sh [all|worker|client|codec-server]" in app.output
