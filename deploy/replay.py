"""Replay: run the workflow code in this checkout against recorded histories, and record them.

A worker that picks up a running workflow re-runs its code from the start against the workflow's
history. Code that now does something else at an earlier step (an extra activity, a reordered call)
fails that workflow's next task with a non-determinism error. Replaying real histories against the
new code finds this before a deploy does.

    python deploy/replay.py capture [--limit N] [--query QUERY] [--output DIR] [--decrypt]
        Write the histories of the N most recent workflows on TEMPORAL_TASK_QUEUE (or matching a
        visibility QUERY) from the Temporal that config.env points at, one JSON file per run, in
        the format `temporal workflow show --output json` prints. Payloads are written as Temporal
        stores them: encrypted when encryption is on. --decrypt writes them decrypted, with the
        worker's own data converter (the key from Key Vault), and says so.
    python deploy/replay.py check [DIR]
        Replay every history in DIR (default tests/histories) against this checkout's workflows
        (worker.WORKFLOWS). Exit 0 when all replay; 1 naming each workflow that does not and the
        SDK's message. Encrypted histories need the Key Vault configuration that wrote them.

Public API (the tests and rollout.py's pre-deploy check use it):
    HISTORIES_DIR                                   the histories the test suite replays
    load_histories(directory) -> list[WorkflowHistory]
    history_from_json(text, fallback_id) -> WorkflowHistory
    history_json(history) -> str                    the CLI's JSON format
    replay(histories, data_converter, workflows) -> list[ReplayOutcome]
    fetch_histories(client, query, limit) -> list[WorkflowHistory]
    decrypt_history(history, codec) -> WorkflowHistory
    is_encrypted(history) -> bool

Exit status: 0 all good, 1 a replay failed or Temporal could not be reached, 2 a configuration or
usage mistake.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

if __name__ == "__main__" and not __package__:
    # Run as a file (python deploy/replay.py): import from the repository's root, as python -m would.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bootstrap import StartupError, Stop, exit_process, run_program, started_key_provider, temporal_client
from config import Settings
from crypto_converter import ENCODING, Plaintext, encrypted_data_converter
from deploy import REPO_DIR

HISTORIES_DIR = REPO_DIR / "tests" / "histories"
DEFAULT_LIMIT = 20
_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
# The SDK reports a failed replay as the core's Debug text: `Failure { failure: Some(Failure { message: "...", ...`.
_FAILURE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
NONDETERMINISM_HINT = (
    "The workflow code no longer does what these histories recorded at the same step. Guard the change with "
    "workflow.patched() so that running workflows keep the old path, or deploy it as a new version with "
    "WORKER_VERSIONING=true (docs/deploy.md, 'Changing a workflow safely')."
)

logger = logging.getLogger("replay")


@dataclass(frozen=True)
class ReplayOutcome:
    """One history replayed against the code: `failure` is None when the code reproduced it."""

    workflow_id: str
    run_id: str
    workflow_type: str
    failure: Exception | None

    @property
    def nondeterministic(self) -> bool:
        """Whether the code made different decisions than the history recorded (the SDK's verdict)."""
        return isinstance(self.failure, NondeterminismError)

    @property
    def message(self) -> str:
        """What the SDK said, without the Rust structure around it (the first failure message, when there is one)."""
        text = str(self.failure)
        found = _FAILURE_MESSAGE.search(text)
        return re.sub(r"\\(.)", r"\1", found.group(1)) if found else text

    def describe(self) -> str:
        """One line naming the workflow and what the SDK said."""
        return f"workflow {self.workflow_id} (run {self.run_id}, {self.workflow_type}): {self.message}"


# ---------------------------------------------------------------- histories as files


def history_from_json(text: str, fallback_id: str) -> WorkflowHistory:
    """A history in the CLI's (or the SDK's) JSON; the workflow id comes from its first event when recorded there."""
    data = json.loads(text)
    events = data.get("events") or []
    started = events[0].get("workflowExecutionStartedEventAttributes", {}) if events else {}
    return WorkflowHistory.from_json(started.get("workflowId") or fallback_id, data)


def history_json(history: WorkflowHistory) -> str:
    """The JSON `temporal workflow show --output json` prints for the same history."""
    return json.dumps(history.to_json_dict(), indent=2, ensure_ascii=False) + "\n"


def load_histories(directory: Path) -> list[WorkflowHistory]:
    """Every *.json history in `directory`, in file name order."""
    return [history_from_json(path.read_text(encoding="utf-8"), path.stem) for path in sorted(directory.glob("*.json"))]


def history_file_name(history: WorkflowHistory) -> str:
    """`<workflow id>_<run id>.json`, with characters a file name should not hold replaced."""
    safe_id = _UNSAFE_FILE_CHARACTERS.sub("_", history.workflow_id)[:100]
    return f"{safe_id}_{history.run_id}.json"


def workflow_type(history: WorkflowHistory) -> str:
    if not history.events:
        return "?"
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name or "?"


# ---------------------------------------------------------------- payloads


def _payloads(message: Message) -> Iterable[Payload]:
    """Every Payload in a protobuf message tree, search attributes excluded (Temporal never encodes them)."""
    if isinstance(message, Payload):
        yield message
        return
    if isinstance(message, SearchAttributes):
        return
    for _, value in message.ListFields():
        if isinstance(value, Message):
            items: Iterable = [value]
        elif callable(getattr(value, "values", None)):  # a map field
            items = value.values()
        else:  # a repeated field (or a scalar, which holds no payload)
            items = value if isinstance(value, Iterable) and not isinstance(value, str | bytes) else []
        for item in items:
            if isinstance(item, Message):
                yield from _payloads(item)


def _encrypted_payloads(history: WorkflowHistory) -> list[Payload]:
    return [
        payload
        for event in history.events
        for payload in _payloads(event)
        if payload.metadata.get("encoding") == ENCODING
    ]


def is_encrypted(history: WorkflowHistory) -> bool:
    """Whether any payload of the history is encrypted (replaying it needs the key)."""
    return bool(_encrypted_payloads(history))


async def decrypt_history(history: WorkflowHistory, codec: PayloadCodec) -> WorkflowHistory:
    """A copy of the history with every encrypted payload replaced by its plaintext."""
    copy = History()
    copy.events.extend(history.events)
    decrypted = WorkflowHistory(history.workflow_id, copy.events)
    payloads = _encrypted_payloads(decrypted)
    if payloads:
        for payload, plain in zip(payloads, await codec.decode(payloads), strict=True):
            payload.CopyFrom(plain)
    return decrypted


# ---------------------------------------------------------------- replay


async def replay(
    histories: Sequence[WorkflowHistory],
    data_converter: DataConverter = DataConverter.default,
    workflows: Sequence[type] | None = None,
) -> list[ReplayOutcome]:
    """Replay each history against `workflows` (default: the worker's); one outcome per history, in order."""
    if workflows is None:
        from worker import WORKFLOWS  # imported here: the worker module pulls in the metrics runtime and more

        workflows = WORKFLOWS
    replayer = Replayer(workflows=workflows, data_converter=data_converter, runtime=_quiet_runtime())

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    outcomes = []
    async with replayer.workflow_replay_iterator(each()) as results:
        async for result in results:
            history = result.history
            outcomes.append(
                ReplayOutcome(history.workflow_id, history.run_id, workflow_type(history), result.replay_failure)
            )
    return outcomes


@functools.cache
def _quiet_runtime() -> Runtime:
    """An SDK runtime whose core logs only errors: a failed replay is reported once, by the caller."""
    quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    return Runtime(telemetry=TelemetryConfig(logging=quiet, metrics=None))


async def fetch_histories(client: Client, query: str, limit: int) -> list[WorkflowHistory]:
    """The histories of the `limit` most recent workflow runs that match a visibility query, as stored."""
    histories = []
    async for execution in client.list_workflows(query, limit=limit):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        histories.append(await handle.fetch_history())
    return histories


def task_queue_query(task_queue: str, open_only: bool = False) -> str:
    """A visibility query for the workflows of a task queue (quotes in the name escaped)."""
    escaped = task_queue.replace("\\", "\\\\").replace('"', '\\"')
    query = f'TaskQueue = "{escaped}"'
    return f'{query} AND ExecutionStatus = "Running"' if open_only else query


# ---------------------------------------------------------------- the commands


async def capture(settings: Settings, stop: Stop, limit: int, query: str | None, output: Path, decrypt: bool) -> int:
    query = query or task_queue_query(settings.task_queue)
    encryption = settings.encryption.enabled
    async with temporal_client(settings, stop) as client:
        histories = await fetch_histories(client, query, limit)
        if decrypt and encryption:
            codec = client.data_converter.payload_codec
            assert codec is not None, "encryption is on, so the client has a codec"
            histories = [await decrypt_history(history, codec) for history in histories]
    output.mkdir(parents=True, exist_ok=True)
    for history in histories:
        path = output / history_file_name(history)
        path.write_text(history_json(history), encoding="utf-8")
        print(f"  {path}")
    print(f"Wrote {len(histories)} histories ({query}) to {output}.")
    if not encryption:
        print("Payload encryption is off: the files hold the payloads as Temporal stores them, in plain text.")
    elif decrypt:
        print(
            "WARNING: --decrypt: these files hold your workflows' inputs and results DECRYPTED, in plain text. "
            "Keep them out of version control unless the data may be read by anyone who can read the repository."
        )
    else:
        print(
            "The payloads stay encrypted, as Temporal stores them: replaying them needs the same Key Vault key "
            "(KEYVAULT_URL, KEYVAULT_SECRET_NAME). --decrypt writes them in plain text instead."
        )
    return 0


async def replay_converter(settings: Settings, stop: Stop, histories: Sequence[WorkflowHistory]):
    """The data converter to replay with, and what to close afterwards: the key only when a history needs it."""
    encrypted = [history.workflow_id for history in histories if is_encrypted(history)]
    if not encrypted:
        return DataConverter.default, None
    if not settings.encryption.enabled:
        raise StartupError(
            f"The history of workflow {encrypted[0]} holds encrypted payloads: set KEYVAULT_URL and "
            "KEYVAULT_SECRET_NAME to the key that wrote them, or capture it again with --decrypt."
        )
    keys = await started_key_provider(settings.encryption, stop)
    return encrypted_data_converter(keys, Plaintext.ACCEPT), keys


async def check(settings: Settings, stop: Stop, directory: Path) -> int:
    histories = load_histories(directory)
    if not histories:
        print(
            f"No histories (*.json) in {directory}: capture some with python deploy/replay.py capture "
            f"--output {directory}"
        )
        return 1
    data_converter, keys = await replay_converter(settings, stop, histories)
    try:
        outcomes = await replay(histories, data_converter)
    finally:
        if keys is not None:
            await keys.close()
    failures = [outcome for outcome in outcomes if outcome.failure is not None]
    for outcome in outcomes:
        print(f"  {'FAILED' if outcome.failure else 'ok    '} {outcome.workflow_id} ({outcome.workflow_type})")
    if not failures:
        print(f"All {len(outcomes)} histories in {directory} replay against this code.")
        return 0
    print(f"\n{len(failures)} of {len(outcomes)} histories in {directory} do not replay against this code:")
    for failure in failures:
        print(f"  {failure.describe()}")
    if any(failure.nondeterministic for failure in failures):
        print(f"\n{NONDETERMINISM_HINT}")
    return 1


def parse_arguments(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    capture_parser = commands.add_parser("capture", help="write recent histories from Temporal to files")
    capture_parser.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N")
    capture_parser.add_argument("--query", help='a visibility query (default: TaskQueue = "$TEMPORAL_TASK_QUEUE")')
    capture_parser.add_argument("--output", type=Path, default=HISTORIES_DIR, metavar="DIR")
    capture_parser.add_argument("--decrypt", action="store_true", help="write payloads decrypted (plain text)")
    check_parser = commands.add_parser("check", help="replay every history in DIR against this code")
    check_parser.add_argument("directory", nargs="?", type=Path, default=HISTORIES_DIR, metavar="DIR")
    return parser.parse_args(arguments)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


if __name__ == "__main__":
    options = parse_arguments(sys.argv[1:])
    if options.command == "check" and not options.directory.is_dir():
        print(f"ERROR: {options.directory} is not a directory of histories", file=sys.stderr)
        exit_process(2)
    if options.command == "capture":
        run_program(
            "replay",
            lambda settings, stop: capture(
                settings, stop, options.limit, options.query, options.output, options.decrypt
            ),
        )
    run_program("replay", lambda settings, stop: check(settings, stop, options.directory))
