"""One version's pod for the progressive-rollout tests: a real worker process registered as a build of a Worker
Deployment, running one build of tests/helpers/progressive_workflows.py.

    python tests/helpers/progressive_worker.py ADDRESS TASK_QUEUE DEPLOYMENT_NAME BUILD_ID BUILD [BEHAVIOR]

BUILD is A to E (progressive_workflows.BUILDS); BEHAVIOR is pinned (default) or auto-upgrade, the workflows'
default versioning behavior, as WORKER_VERSIONING_BEHAVIOR sets it for the app. The deployment config is the one
worker.py makes from TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID. Prints "polling" once the worker
runs; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

import config  # noqa: E402
import worker  # noqa: E402

from helpers.progressive_workflows import BUILDS, progressive_step  # noqa: E402


async def main(address: str, task_queue: str, deployment_name: str, build_id: str, build: str, behavior: str) -> None:
    settings = config.load_settings(
        {
            "CONFIG_ENV_FILE": "/nonexistent/config.env",
            "TEMPORAL_DEPLOYMENT_NAME": deployment_name,
            "TEMPORAL_WORKER_BUILD_ID": build_id,
            "WORKER_VERSIONING_BEHAVIOR": behavior,
        }
    )
    stopped = asyncio.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signal_number, stopped.set)
    client = await Client.connect(address)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=BUILDS[build],
        activities=[progressive_step],
        deployment_config=worker.deployment_config(settings),
    ):
        print("polling", flush=True)
        await stopped.wait()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    asyncio.run(main(*arguments[:5], arguments[5] if len(arguments) > 5 else "pinned"))
