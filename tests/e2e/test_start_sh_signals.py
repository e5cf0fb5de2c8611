"""./start.sh stops on a signal to its own process (what a supervisor sends), whatever it is doing.

A supervisor signals start.sh's process, not its group (the terminal's Ctrl-C signals the group:
test_start_sh.py). Two ways this failed: while start.sh created the payload container against a storage
endpoint that accepts and never answers, it ran `payload_storage.py create-container` in the foreground,
and bash runs a trap only once the foreground command returns (up to 190 s of retries); and started in the
background by a script (a shell without job control), start.sh inherits SIGINT ignored, which bash can
neither trap nor reset, so a lone SIGINT did nothing. And start.sh waited for its children without a bound:
one that ignores SIGTERM now is killed once the worker's shutdown timeout and a margin have passed, with a
WARNING, and a second signal kills it at once.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from helpers.azurite import ACCOUNT, ACCOUNT_KEY
from helpers.processes import AppProcess, base_environment, free_port
from helpers.start_sh import copy_of_repo
from helpers.stopping import SilentServer, processes_in_session

STOP_BOUND_SECONDS = 10.0  # the bound; a stop takes well under a second here
SETTLE_SECONDS = 1.0  # the signal comes this long after start.sh reached its wait


def stop_and_check(app: AppProcess, stop_signal: int) -> None:
    """Signal start.sh's process only; it exits 0 within the bound and leaves nothing running."""
    time.sleep(SETTLE_SECONDS)
    started = time.monotonic()
    app.signal(stop_signal)
    code = app.wait(timeout=STOP_BOUND_SECONDS)
    seconds = time.monotonic() - started
    assert code == 0, app.output
    assert seconds < STOP_BOUND_SECONDS, app.output
    assert processes_in_session(app.process.pid) == [], "start.sh left processes behind"
    assert "Traceback" not in app.output


def test_sigterm_to_start_sh_stops_it_while_it_creates_the_container_on_a_silent_storage(tmp_path):
    repo = copy_of_repo(tmp_path / "repo")
    with SilentServer() as storage:
        environment = base_environment(
            tmp_path,
            TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
            PAYLOAD_STORAGE_CONNECTION_STRING=(
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{storage.port}/{ACCOUNT};"
            ),
        )
        app = AppProcess([str(repo / "start.sh"), "worker"], environment, cwd=repo)
        try:
            app.wait_for_line(rf"^Using the Azure Storage emulator already listening at 127\.0\.0\.1:{storage.port}$")
            stop_and_check(app, signal.SIGTERM)
        finally:
            app.stop()
    assert "Starting the Temporal dev server" not in app.output


def test_a_lone_sigint_stops_start_sh_started_with_sigint_ignored(tmp_path, dev_server, task_queue):
    repo = copy_of_repo(tmp_path / "repo")
    environment = base_environment(tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    # What `./start.sh worker &` in a script does: the shell starts it with SIGINT ignored (then execs it, so
    # the process signalled is start.sh's).
    ignoring_sigint = ["bash", "-c", 'trap "" INT && exec "$0" worker', str(repo / "start.sh")]
    app = AppProcess(ignoring_sigint, environment, cwd=repo)
    try:
        app.wait_for_line(r"^Starting worker\.\.\. Awaiting tasks\.$")
        stop_and_check(app, signal.SIGINT)
    finally:
        app.stop()
    assert "Worker stopped" in app.output


# A worker.py that ignores SIGTERM: what a process stuck in its shutdown looks like to start.sh.
DEAF_WORKER = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("Starting worker... Awaiting tasks.", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("second_signal", [False, True], ids=["bound", "second-signal"])
def test_start_sh_kills_a_child_that_ignores_sigterm_after_a_bound_or_a_second_signal(
    tmp_path, dev_server, second_signal
):
    repo = copy_of_repo(tmp_path / "repo")
    (repo / "worker.py").write_text(DEAF_WORKER)
    environment = base_environment(
        tmp_path, TEMPORAL_ADDRESS=dev_server.address, WORKER_SHUTDOWN_TIMEOUT_SECONDS="1"
    )  # the bound: 1 s + 1 + start.sh's 10 s margin
    app = AppProcess([str(repo / "start.sh"), "worker"], environment, cwd=repo)
    try:
        app.wait_for_line(r"^Starting worker\.\.\. Awaiting tasks\.$")
        started = time.monotonic()
        app.signal(signal.SIGTERM)
        if second_signal:
            time.sleep(SETTLE_SECONDS)
            app.signal(signal.SIGTERM)
        code = app.wait(timeout=60)
        seconds = time.monotonic() - started
    finally:
        app.stop()
    assert code == 0, app.output
    assert processes_in_session(app.process.pid) == [], "start.sh left processes behind"
    if second_signal:
        assert "WARNING: a second stop signal: killing what is still running" in app.output
        assert seconds < 10, app.output
    else:
        assert re.search(r"WARNING: process \d+ still running 12s after SIGTERM: killed", app.output), app.output
