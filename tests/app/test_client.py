"""client.py's own wording: what it says about a failed workflow, and the command that lists unfinished ones."""

from __future__ import annotations

import shlex

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

import config
from client import describe_failure, running_workflows_command


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
