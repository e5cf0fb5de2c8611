"""log_format.py: the JSON lines' fields, that nothing reaches them that was not put there on purpose, and how
untrusted values and exceptions appear in a message (`shown`, `one_line`)."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from temporalio import activity, workflow

import log_format


def formatted(record: logging.LogRecord) -> dict:
    return json.loads(log_format.JsonFormatter().format(record))


def record(message: str = "hello %s", args: tuple = ("world",), **extra) -> logging.LogRecord:
    made = logging.getLogger("test").makeRecord("test", logging.INFO, __file__, 1, message, args, None, extra=extra)
    made.created = 1795342500.123456  # 2026-11-22T10:15:00.123Z
    return made


def test_a_line_has_the_time_in_utc_the_level_the_logger_and_the_formatted_message():
    assert formatted(record()) == {
        "time": "2026-11-22T10:15:00.123Z",
        "level": "INFO",
        "logger": "test",
        "message": "hello world",
    }


def test_the_sdks_workflow_and_activity_context_become_fields_and_nothing_else_does():
    activity = {
        "activity_id": "1",
        "activity_type": "your_first_activity",
        "attempt": 2,
        "namespace": "default",
        "task_queue": "q",
        "workflow_id": "w",
        "workflow_run_id": "r",
        "workflow_type": "YourWorkflow",
    }
    entry = formatted(record(temporal_activity=activity, api_key="canary-secret", password="canary-password"))
    assert entry["run_id"] == "r" and "workflow_run_id" not in entry, "one name for the run id"
    assert {key: entry[key] for key in ("activity_type", "attempt", "task_queue", "workflow_id")} == {
        "activity_type": "your_first_activity",
        "attempt": 2,
        "task_queue": "q",
        "workflow_id": "w",
    }
    assert "canary" not in json.dumps(entry), "an extra field of a record is not a field of the line"
    workflow = {"workflow_id": "w2", "run_id": "r2", "update_id": "u", "update_name": "set"}
    assert {"workflow_id": "w2", "run_id": "r2", "update_id": "u", "update_name": "set"}.items() <= formatted(
        record(temporal_workflow=workflow)
    ).items()


def test_an_exception_is_one_field_and_the_line_stays_one_line():
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        failed = record(message="failed", args=())
        failed.exc_info = sys.exc_info()
    line = log_format.JsonFormatter().format(failed)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed"
    assert entry["exception"].startswith("Traceback") and "ValueError: broken\nacross lines" in entry["exception"]


@pytest.mark.parametrize("log_format_name", ["text", "json"])
def test_announcements_show_at_any_level_bare_in_text_and_as_a_message_in_json(monkeypatch, log_format_name):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    # configure() changes these process-wide: put them back afterwards.
    monkeypatch.setattr(activity.logger, "activity_info_on_message", True)
    monkeypatch.setattr(workflow.logger, "workflow_info_on_message", True)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        log_format.configure("ERROR", log_format_name)
        logger = logging.getLogger("worker")
        logger.info("not shown at ERROR")
        log_format.announce(logger, "Starting worker... Awaiting tasks.")
        assert activity.logger.activity_info_on_message is (log_format_name == "text"), "JSON has it in fields"
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = stream.getvalue().splitlines()
    if log_format_name == "text":
        assert lines == ["Starting worker... Awaiting tasks."]
    else:
        [line] = lines
        assert json.loads(line)["message"] == "Starting worker... Awaiting tasks."
        assert json.loads(line)["level"] == "INFO" and json.loads(line)["logger"] == "worker"


# ---------------------------------------------------------------- values and exceptions in a message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("v1", "'v1'"),
        ("", "''"),
        (b"binary/plain", "'binary/plain'"),
        ("forged\nline\x1b[2J", "'forged\\nline\\x1b[2J'"),
        (b"\xff\xfeid", "'\ufffd\ufffdid'"),
        ("it's", '"it\'s"'),
    ],
    ids=["text", "empty", "bytes", "control-characters", "not-utf-8", "quote"],
)
def test_a_shown_value_is_quoted_and_escaped(value, expected):
    assert log_format.shown(value) == expected


def test_a_shown_value_is_cut_short_and_says_so():
    limit = log_format.SHOWN_CHARACTERS
    assert log_format.shown("x" * limit) == repr("x" * limit), "a value of the limit's length is whole"
    assert log_format.shown("x" * (limit + 1)) == repr("x" * limit) + "..."
    assert log_format.shown(b"y" * 10_000) == repr("y" * limit) + "..."
    assert log_format.shown("z" * 100, limit=80) == repr("z" * 80) + "..."
    flood = log_format.shown("\n" * 10_000)
    assert "\n" not in flood and len(flood) < 3 * limit


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ValueError("plain"), "plain"),
        (
            RuntimeError("DefaultAzureCredential failed.\nAttempted credentials:\n\tAzureCliCredential: run az login"),
            "DefaultAzureCredential failed. Attempted credentials: AzureCliCredential: run az login",
        ),
        (OSError("  spaced \r\n out  "), "spaced out"),
        (TimeoutError(), "TimeoutError"),
        (ConnectionError(" \n "), "ConnectionError"),
    ],
    ids=["one-line", "every-line-kept", "whitespace", "no-message", "blank-message"],
)
def test_an_exception_is_one_line_with_all_it_says_or_its_type(error, expected):
    assert log_format.one_line(error) == expected
