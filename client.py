"""The Temporal client: starts YourWorkflow executions.

Two modes:
  python client.py
      The guide's loop: a uniquely named workflow every CLIENT_INTERVAL_SECONDS,
      logging each outcome as it arrives; a failed start is logged and the loop
      goes on. At most CLIENT_MAX_PENDING_WORKFLOWS workflows wait for a result at
      a time: while no worker polls, the loop pauses instead of piling them up.
      SIGTERM/SIGINT stop it at once, during start-up too (exit 0).
  python client.py --count N [--timeout SECONDS] [--payload-size BYTES]
      The smoke test: start N workflows, print each outcome as it arrives, exit 0
      only if all succeeded. SIGTERM/SIGINT (Ctrl-C) or an expired --timeout end
      the wait with one line saying how many results arrived; the workflows keep
      running on the server (Temporal workflows are durable) and the line says
      how to see them.

--payload-size BYTES makes every workflow's argument a generated text of that many bytes (in either mode),
so a large payload can be watched going to Azure Blob Storage (PAYLOAD_STORAGE_*): e.g.
`--count 1 --payload-size 5242880`; results are then shown by their size, never printed.

Every workflow gets an execution timeout of CLIENT_WORKFLOW_EXECUTION_TIMEOUT_SECONDS,
so none waits for a worker forever. With payload encryption on, the client shows
workflow ids and outcomes only, never arguments, results or failure messages (what
encryption protects); with it off, the loop logs them at DEBUG and --count prints
results.

Exit status:
  0    the loop stopped by SIGTERM/SIGINT; --count: all N workflows succeeded
  1    cannot start (Temporal, Key Vault); --count: a workflow failed
  2    a configuration or command-line mistake
  124  --count: --timeout expired before every result arrived
  130  --count: stopped by SIGINT (Ctrl-C) before every result arrived
  143  --count: stopped by SIGTERM before every result arrived
"""

from __future__ import annotations

# isort: off
import early_signals  # noqa: F401  first: keeps a stop signal that comes during the imports below
# isort: on

import argparse
import asyncio
import json
import logging
import math
import shlex
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError

from bootstrap import Stop, StopRequested, TemporalConnection, run_program, temporal_client, temporal_connection
from config import Settings
from workflows import YourWorkflow

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_TIMED_OUT = 124  # what timeout(1) exits with; a signal gives 128 + its number, as a shell reports it
MAX_CAUSES_SHOWN = 5

logger = logging.getLogger("client")


def new_workflow_id(counter: int) -> str:
    """The guide's id shape plus a random suffix, so two clients never collide."""
    timestamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"your-workflow-{counter}-{timestamp}-{uuid.uuid4().hex[:8]}"


def shows_payloads(settings: Settings) -> bool:
    """Arguments, results and failure messages are what encryption protects: shown only when it is off."""
    return not settings.encryption.enabled


def workflow_argument(counter: int, payload_size: int | None = None) -> str:
    """The guide's argument, or a generated text of exactly `payload_size` bytes that starts with it."""
    argument = f"ClientTriggeredPayload-{counter}"
    if payload_size is None:
        return argument
    head = f"{argument} "
    filler = "".join(f"{n:07d} " for n in range(payload_size // 8 + 1))  # numbered 8-byte cells, easy to scroll
    return (head + filler)[:payload_size]


def shown_value(value: object, payload_size: int | None) -> str:
    """A result as the client shows it: in full, or by its size when payloads are generated large."""
    return f"{len(str(value))} characters" if payload_size is not None else str(value)


async def start_workflow(
    client: Client, settings: Settings, counter: int, payload_size: int | None = None
) -> WorkflowHandle:
    workflow_id = new_workflow_id(counter)
    argument = workflow_argument(counter, payload_size)
    logger.info("Starting workflow %s", workflow_id)
    if shows_payloads(settings):
        logger.debug("Workflow %s argument: %s", workflow_id, shown_value(argument, payload_size))
    handle = await client.start_workflow(
        YourWorkflow.run,
        argument,
        id=workflow_id,
        task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=settings.client_workflow_execution_timeout_seconds),
    )
    logger.info("Workflow %s started. Run ID: %s", workflow_id, handle.result_run_id)
    return handle


def describe_failure(error: BaseException, show_messages: bool) -> str:
    """A failed workflow's chain of errors; their messages only when payloads may be shown.

    With encryption on, failure messages are encrypted in the history like payloads, so only the
    error types are shown (and the server's own RPC errors, which hold no payload).
    """
    parts = []
    current: BaseException | None = error
    while current is not None and len(parts) < MAX_CAUSES_SHOWN:
        part = type(current).__name__
        if isinstance(current, ApplicationError) and current.type:
            part += f" ({current.type})"
        message = current.message if isinstance(current, FailureError) else str(current)
        if (show_messages or isinstance(current, RPCError)) and message:
            part += f": {message}"
        parts.append(part)
        current = current.__cause__
    described = "; caused by ".join(parts)
    return described if show_messages else f"{described} (messages not shown: payload encryption is on)"


# ---------------------------------------------------------------- the loop


async def log_outcome(handle: WorkflowHandle, show_payloads: bool, payload_size: int | None = None) -> None:
    try:
        result = await handle.result()
    except Exception as error:
        logger.error("Workflow %s failed: %s", handle.id, describe_failure(error, show_payloads))
    else:
        logger.info("Workflow %s completed", handle.id)
        if show_payloads:
            logger.debug("Workflow %s result: %s", handle.id, shown_value(result, payload_size))


async def run_loop(
    connection: TemporalConnection, settings: Settings, stop: Stop, payload_size: int | None = None
) -> None:
    """Start a workflow every interval until stopped; one failed start never ends the loop.

    At most CLIENT_MAX_PENDING_WORKFLOWS results are awaited at a time; with that many pending the
    loop starts nothing new (no worker is taking them) until one finishes or times out. Every start
    uses the connection's client in use (after a client certificate rotation, the new one).
    """
    watchers: set[asyncio.Task] = set()
    limit = settings.client_max_pending_workflows
    counter = 0
    paused = False
    while not stop.requested:
        if len(watchers) >= limit:
            if not paused:
                logger.warning(
                    "%d workflows are waiting for a result (CLIENT_MAX_PENDING_WORKFLOWS): starting no more until "
                    "one finishes. Is a worker polling task queue %s in namespace %s?",
                    len(watchers),
                    settings.task_queue,
                    settings.temporal.namespace,
                )
                paused = True
        else:
            if paused:
                logger.info("Fewer than %d workflows are waiting for a result: starting workflows again", limit)
                paused = False
            counter += 1
            try:
                handle = await stop.race(
                    start_workflow(connection.client, settings, counter, payload_size), f"starting workflow {counter}"
                )
            except StopRequested:
                break
            except Exception as error:
                logger.error("Failed to start workflow number %d: %s", counter, error)
            else:
                watcher = asyncio.create_task(log_outcome(handle, shows_payloads(settings), payload_size))
                watchers.add(watcher)
                watcher.add_done_callback(watchers.discard)
            logger.info("Waiting %g seconds before the next workflow", settings.client_interval_seconds)
        if await stop.sleep(settings.client_interval_seconds):
            break
    pending = list(watchers)
    for watcher in pending:
        watcher.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        logger.info(
            "Client stopped (%s); %d workflows had no result yet and keep running on the server (see them with: %s)",
            stop.reason,
            len(pending),
            running_workflows_command(settings),
        )
    else:
        logger.info("Client stopped (%s)", stop.reason)


# ---------------------------------------------------------------- the smoke test


@dataclass
class SmokeTest:
    """A --count run: the workflows it started and the outcomes that arrived, printed as they arrive."""

    count: int
    """How many workflows the run starts."""
    show_payloads: bool
    """Whether results and failure messages may be printed (payload encryption off)."""
    payload_size: int | None = None
    """With --payload-size: results are shown by their size."""
    started: list[WorkflowHandle] = field(default_factory=list)
    """The workflows started so far, in order."""
    finished: set[str] = field(default_factory=set)
    """Ids of the workflows whose outcome arrived."""
    failed: int = 0
    """How many of those failed."""

    async def wait_for_all(self) -> None:
        await asyncio.gather(*(self._wait_for(handle) for handle in self.started))

    async def _wait_for(self, handle: WorkflowHandle) -> None:
        try:
            result = await handle.result()
        except Exception as error:
            self.failed += 1
            print(f"FAILED {handle.id}: {describe_failure(error, self.show_payloads)}", flush=True)
        else:
            if self.show_payloads:
                shown = f": {shown_value(result, self.payload_size)}"
            else:
                shown = " (result not shown: payload encryption is on)"
            print(f"OK {handle.id}{shown}", flush=True)
        self.finished.add(handle.id)

    def summary(self) -> str:
        return f"{self.count - self.failed} of {self.count} workflows succeeded"

    def unfinished(self, what: str, settings: Settings) -> str:
        """One line for a run that ended early: how many results arrived, where the other workflows are."""
        waiting = [handle.id for handle in self.started if handle.id not in self.finished]
        for workflow_id in waiting:
            print(f"PENDING {workflow_id}", flush=True)
        line = f"{what}: {len(self.finished)} of {self.count} results arrived"
        if not self.started:
            return f"{line}; no workflow was started"
        if len(self.started) < self.count:
            line += f" ({len(self.started)} of {self.count} workflows were started)"
        if not waiting:
            return line
        return (
            f"{line}. The {len(waiting)} workflows without a result keep running on the server (they are durable): "
            f"see them in the Temporal Web UI or with: {running_workflows_command(settings)}"
        )


def running_workflows_command(settings: Settings) -> str:
    """The `temporal` CLI command that lists the workflows still running on the client's task queue."""
    query = f'TaskQueue={json.dumps(settings.task_queue, ensure_ascii=False)} AND ExecutionStatus="Running"'
    arguments = ["temporal", "workflow", "list", "--address", settings.temporal.address]
    arguments += ["--namespace", settings.temporal.namespace, "--query", query]
    return shlex.join(arguments)


async def run_smoke_test(
    settings: Settings, stop: Stop, count: int, timeout: float | None, payload_size: int | None = None
) -> int:
    """Start `count` workflows and print each outcome; the exit status says whether all succeeded."""
    smoke_test = SmokeTest(count, shows_payloads(settings), payload_size)
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline, temporal_client(settings, stop) as client:
            for number in range(1, count + 1):
                handle = await stop.race(
                    start_workflow(client, settings, number, payload_size), f"starting workflow {number}"
                )
                smoke_test.started.append(handle)
            await stop.race(smoke_test.wait_for_all(), "waiting for results")
    except StopRequested as stopped:
        print(smoke_test.unfinished(f"Stopped by {stopped.reason} while {stopped.doing}", settings), flush=True)
        return 128 + (stop.signal_number or 0)
    except TimeoutError:
        if not deadline.expired():
            raise
        print(smoke_test.unfinished(f"Timed out after {timeout:g}s (--timeout)", settings), flush=True)
        return EXIT_TIMED_OUT
    print(smoke_test.summary(), flush=True)
    return EXIT_SUCCEEDED if smoke_test.failed == 0 else EXIT_FAILED


# ---------------------------------------------------------------- command line


async def run(settings: Settings, stop: Stop, arguments: argparse.Namespace) -> int:
    if arguments.count is None:
        async with temporal_connection(settings, stop) as connection:
            await run_loop(connection, settings, stop, arguments.payload_size)
        return EXIT_SUCCEEDED
    return await run_smoke_test(settings, stop, arguments.count, arguments.timeout, arguments.payload_size)


def parse_arguments(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--count",
        type=positive_int,
        metavar="N",
        help="start N workflows, wait for their results, print them and exit (0 only if all succeeded)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="with --count: give up after SECONDS in all, start-up included (exit 124); default: wait for every result",
    )
    parser.add_argument(
        "--payload-size",
        type=payload_bytes,
        metavar="BYTES",
        help="make each workflow's argument a generated text of BYTES bytes (e.g. 5242880 to watch payload storage)",
    )
    parsed = parser.parse_args(arguments)
    if parsed.timeout is not None and parsed.count is None:
        parser.error("--timeout goes with --count N (the loop runs until SIGTERM or SIGINT)")
    return parsed


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


# The largest argument --payload-size generates: beyond it the process itself runs short (the text is held
# several times over while it is encoded, encrypted and uploaded).
MAX_PAYLOAD_SIZE = 1024 * 1024 * 1024


def payload_bytes(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAYLOAD_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes from 1 to {MAX_PAYLOAD_SIZE}")
    return int(text)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds greater than 0")
    return value


if __name__ == "__main__":
    parsed_arguments = parse_arguments(sys.argv[1:])
    run_program("client", lambda settings, stop: run(settings, stop, parsed_arguments))
