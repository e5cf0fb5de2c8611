"""The Temporal client: starts YourWorkflow executions.

Two modes:
  python client.py              the guide's loop: a uniquely named workflow every
                                CLIENT_INTERVAL_SECONDS, logging each result as it
                                completes; a failed start is logged and the loop
                                goes on. SIGTERM/SIGINT stop it (exit 0).
  python client.py --count N    the smoke test: start N workflows, wait for all,
                                print each result; exit 0 only if all succeeded.

Either way, a connection that cannot be made is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowHandle

from bootstrap import run_program, stop_on_signals, temporal_client
from config import Settings
from workflows import YourWorkflow

logger = logging.getLogger("client")


def new_workflow_id(counter: int) -> str:
    """The guide's id shape plus a random suffix, so two clients never collide."""
    timestamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"your-workflow-{counter}-{timestamp}-{uuid.uuid4().hex[:8]}"


async def start_workflow(client: Client, settings: Settings, counter: int) -> WorkflowHandle:
    workflow_id = new_workflow_id(counter)
    argument = f"ClientTriggeredPayload-{counter}"
    logger.info("Starting workflow %s with argument %s", workflow_id, argument)
    handle = await client.start_workflow(YourWorkflow.run, argument, id=workflow_id, task_queue=settings.task_queue)
    logger.info("Workflow %s started. Run ID: %s", workflow_id, handle.result_run_id)
    return handle


async def log_result(handle: WorkflowHandle) -> None:
    try:
        result = await handle.result()
    except Exception as error:
        logger.error("Workflow %s failed: %s", handle.id, error)
    else:
        logger.info("Workflow %s completed: %s", handle.id, result)


async def run_loop(client: Client, settings: Settings, stop: asyncio.Event) -> None:
    """Start a workflow every interval until stopped; one failed start never ends the loop."""
    result_watchers: set[asyncio.Task] = set()
    counter = 0
    while not stop.is_set():
        counter += 1
        try:
            handle = await start_workflow(client, settings, counter)
        except Exception as error:
            logger.error("Failed to start workflow number %d: %s", counter, error)
        else:
            watcher = asyncio.create_task(log_result(handle))
            result_watchers.add(watcher)
            watcher.add_done_callback(result_watchers.discard)
        logger.info("Waiting %g seconds before the next workflow", settings.client_interval_seconds)
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.client_interval_seconds)
        except TimeoutError:
            pass
    for watcher in list(result_watchers):
        watcher.cancel()
    logger.info("Client stopped")


async def run_smoke_test(client: Client, settings: Settings, count: int) -> bool:
    """Start `count` workflows, print each result, and say whether all succeeded."""
    handles = [await start_workflow(client, settings, number) for number in range(1, count + 1)]
    outcomes = await asyncio.gather(*(handle.result() for handle in handles), return_exceptions=True)
    failures = 0
    for handle, outcome in zip(handles, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failures += 1
            print(f"FAILED {handle.id}: {outcome}", flush=True)
        else:
            print(f"OK {handle.id}: {outcome}", flush=True)
    print(f"{count - failures} of {count} workflows succeeded", flush=True)
    return failures == 0


async def run(settings: Settings, count: int | None) -> bool:
    stop = stop_on_signals()
    async with temporal_client(settings) as client:
        if count is None:
            await run_loop(client, settings, stop)
            return True
        return await run_smoke_test(client, settings, count)


def parse_arguments(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--count",
        type=positive_int,
        metavar="N",
        help="start N workflows, wait for their results, print them and exit (0 only if all succeeded)",
    )
    return parser.parse_args(arguments)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


if __name__ == "__main__":
    count = parse_arguments(sys.argv[1:]).count
    run_program("client", lambda settings: run(settings, count))
