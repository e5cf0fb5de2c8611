"""Worker health for Kubernetes probes, through a file: the worker has no web server of its own.

The worker rewrites the health file every few seconds from the moment it polls
("Starting worker... Awaiting tasks.") until it stops, and removes it on the way
out. `python healthcheck.py` (the readiness and liveness probe) passes only while
that file is fresh, so a worker that has stopped or hung fails its probes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from config import load_settings_or_exit

BEAT_INTERVAL_SECONDS = 5.0
MAX_AGE_SECONDS = 30.0


class HealthFile:
    """The worker's side: keeps the file fresh while the worker polls."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def beat(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{time.time():.0f}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    async def keep_fresh(self) -> None:
        """Beat until cancelled."""
        while True:
            self.beat()
            await asyncio.sleep(BEAT_INTERVAL_SECONDS)


def health_problem(path: Path, now: float | None = None) -> str | None:
    """Why the worker is not healthy, or None when it is."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist: the worker is not polling (starting, stopped or failed)"
    if age > MAX_AGE_SECONDS:
        return f"{path} is {age:.0f}s old (limit {MAX_AGE_SECONDS:.0f}s): the worker has stopped beating"
    return None


def main() -> None:
    settings = load_settings_or_exit()
    problem = health_problem(settings.worker_health_file)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        sys.exit(1)
    print("healthy")


if __name__ == "__main__":
    main()
