"""client.py's own wording: what it says about a failed workflow, and the command that lists unfinished ones."""

from __future__ import annotations

import shlex

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

import config
from client import describe_failure, parse_arguments, running_workflows_command, workflow_argument


def test_a_failure_shows_its_messages_only_when_payloads_may_be_shown():
    error = WorkflowFailureError(cause=ApplicationError("patient 42 has no record", type="MissingRecord"))

    hidden = describe_failure(error, show_messages=False)
    assert hidden == (
        "WorkflowFailureError; caused by ApplicationError (MissingRecord) "
        "(messages not shown: payload encryption is on)"
    )
    shown = describe_failure(error, show_messages=True)
    assert shown == (
        "WorkflowFailureError: Workflow execution failed; "
        "caused by ApplicationError (MissingRecord): patient 42 has no record"
    )


def test_the_list_command_quotes_the_task_queue_for_the_shell_and_the_query(tmp_path):
    settings = config.load_settings(
        {"TEMPORAL_TASK_QUEUE": 'it\'s "odd"', "TEMPORAL_ADDRESS": "temporal.example:7233"}, tmp_path / "none.env"
    )
    arguments = shlex.split(running_workflows_command(settings))
    assert arguments == [
        "temporal",
        "workflow",
        "list",
        "--address",
        "temporal.example:7233",
        "--namespace",
        "default",
        "--query",
        'TaskQueue="it\'s \\"odd\\"" AND ExecutionStatus="Running"',
    ]


def test_payload_size_generates_an_argument_of_exactly_that_many_bytes_that_starts_with_the_guides():
    for size in (1, 23, 24, 25, 5 * 1024 * 1024):
        argument = workflow_argument(7, size)
        assert len(argument.encode()) == size
        assert "ClientTriggeredPayload-7 0000000 0000001"[:size] == argument[:40]
    assert workflow_argument(7) == "ClientTriggeredPayload-7"


@pytest.mark.parametrize("text", ["0", "-1", "5MiB", "1e6", str(1024**3 + 1)])
def test_payload_size_must_be_a_whole_number_of_bytes(text, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_arguments(["--count", "1", "--payload-size", text])
    assert exited.value.code == 2
    assert "is not a whole number of bytes from 1 to 1073741824" in capsys.readouterr().err
    assert parse_arguments(["--payload-size", "5242880"]).payload_size == 5242880
