"""Shared test fixtures and hooks: a real Temporal dev server, a task queue per test, app processes.

Each test gets its own task queue, so tests run in parallel (pytest-xdist) against one dev server per
test process. The helpers behind the fixtures (DevServer, AppProcess, base_environment, ...) are in
tests/helpers/processes.py; import them from there, never from this file.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from helpers.processes import PYTHON, REPO_DIR, AppProcess, DevServer, base_environment


@pytest.fixture(scope="session")
def dev_server() -> Iterator[DevServer]:
    server = DevServer().start(("--headless",))
    yield server
    server.stop()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def run_app(tmp_path: Path) -> Iterator:
    """Start `python <script> [args]` with a clean environment; every process is stopped after the test."""
    started: list[AppProcess] = []

    def start(script: str, *arguments: str, env: Mapping[str, str] | None = None, cwd: Path = REPO_DIR) -> AppProcess:
        process = AppProcess([PYTHON, str(REPO_DIR / script), *arguments], env or base_environment(tmp_path), cwd)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what tests measured (`record_property("measured", text)`), once each: e.g. the image's size."""
    reports = [report for reports in terminalreporter.stats.values() for report in reports]
    measured = dict.fromkeys(
        value for report in reports for name, value in getattr(report, "user_properties", ()) if name == "measured"
    )
    if measured:
        terminalreporter.write_sep("-", "measured")
        for line in measured:
            terminalreporter.write_line(line)


# The Temporal SDK's Rust threads can abort a finalizing interpreter ("Fatal Python
# error: PyGILState_Release", exit 134, sdk-python issue 300). pytest's own exit status
# must never be turned into that: once everything is reported, leave without teardown.
# (Not in pytest-xdist workers: they still have to hand their results to the controller.)
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    is_xdist_worker = hasattr(config, "workerinput")
    if _exit_status and "temporalio" in sys.modules and not is_xdist_worker:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
