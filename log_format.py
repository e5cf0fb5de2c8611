"""How every process writes its log: text lines for people, or one JSON object per line for Log Analytics.

Public API:
    configure(level, log_format)    # the root logger on stdout, "text" or "json" (config.configure_logging calls it)
    announce(logger, message)       # a line people grep for, whatever the level: "Starting worker... Awaiting tasks."
    JsonFormatter                   # the JSON lines, for a handler of your own
    shown(value) -> str             # a value from untrusted input as a message may show it: quoted, escaped, cut short
    one_line(error) -> str          # an exception's message on one line, for a log line or an error message

LOG_FORMAT=text (the default on a laptop) is `2026-11-22 10:15:00,123 INFO worker: message`, and the
Temporal SDK appends its workflow or activity details to the message as it always does.

LOG_FORMAT=json (what the rendered ConfigMap sets) is one object per line, which Container Insights
stores in Log Analytics as queryable fields:

    {"time": "2026-11-22T10:15:00.123Z", "level": "INFO", "logger": "temporalio.activity",
     "message": "Running your_first_activity", "workflow_id": "...", "run_id": "...",
     "activity_type": "your_first_activity", "attempt": 1, "task_queue": "...", ...}

`time` is RFC 3339 in UTC; the Temporal context the SDK attaches to a record (`temporal_workflow` /
`temporal_activity`) becomes top-level fields with the names below, and is no longer appended to the
message; the codec server's audit line (codec_auth.py) carries its own fields, `AUDIT_FIELDS`;
an exception is one `exception` field holding the whole traceback. Nothing else of a record
is written: a field only appears here because this module names it, so no value reaches the log that
was not put into a message on purpose.

What goes into a message is this module's concern too, because every message ends up as a log line (or
the one line a process exits with). `shown` is how a value from untrusted input appears in one: a key id
or an encoding from a payload, a container or blob name from a history's reference. It is quoted and
escaped (repr), so a line break or a control character cannot forge another log line, and cut short, so
whoever wrote the value cannot flood the log. `one_line` is how an exception appears in one: the Azure
SDK's messages span several lines, and the lines after the first say why (which credential failed, and
how). Both are written once here, for the modules that put such values into messages (crypto_converter,
keyvault, payload_storage); like the rest of this module they need nothing beyond the standard library.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The SDK's context keys -> our field names. The activity's `workflow_run_id` and the workflow's
# `run_id` are the same thing, so both become `run_id`.
TEMPORAL_FIELDS = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_id": "activity_id",
    "activity_type": "activity_type",
    "attempt": "attempt",
    "namespace": "namespace",
    "task_queue": "task_queue",
    "update_id": "update_id",
    "update_name": "update_name",
}
TEMPORAL_CONTEXTS = ("temporal_workflow", "temporal_activity")
# The fields of the codec server's audit line (codec_auth.log_audit puts them on the record as `audit`): in JSON
# they are fields of their own, so Log Analytics can filter by subject, namespace or status.
AUDIT_FIELDS = (
    "endpoint",
    "namespace",
    "auth",
    "subject",
    "user",
    "payloads",
    "bytes",
    "key_ids",
    "status",
    "reason",
    "remote",
    "path",
)
# How much of a value from untrusted input a message shows (`shown`): a key id of 32 digits whole, never a flood.
SHOWN_CHARACTERS = 64


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time, level, logger, message, the Temporal context, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": rfc3339_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for context in TEMPORAL_CONTEXTS:
            details = getattr(record, context, None)
            if isinstance(details, Mapping):
                entry |= {TEMPORAL_FIELDS[key]: value for key, value in details.items() if key in TEMPORAL_FIELDS}
        audit = getattr(record, "audit", None)
        if isinstance(audit, Mapping):
            entry |= {name: audit[name] for name in AUDIT_FIELDS if name in audit}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def rfc3339_utc(timestamp: float) -> str:
    """2026-11-22T10:15:00.123Z: RFC 3339, UTC, milliseconds."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure(level: str, log_format: str) -> None:
    """Log at `level` to stdout, as text lines or JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if log_format == "json":
        _context_in_fields_only()


def is_json() -> bool:
    """Whether the root logger writes JSON lines."""
    return any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)


def announce(logger: logging.Logger, message: str) -> None:
    """A milestone line people grep for in `kubectl logs`, shown at any LOG_LEVEL.

    In text it is the bare message on its own line, exactly as the guide prints it; in JSON it is an
    INFO object whose message is that text, so `grep 'Starting worker... Awaiting tasks.'` finds both.
    """
    if not is_json():
        print(message, flush=True)
        return
    record = logger.makeRecord(logger.name, logging.INFO, "(announce)", 0, message, None, None)
    logger.handle(record)  # handle() skips the level check that logger.info() would make


def shown(value: str | bytes, limit: int = SHOWN_CHARACTERS) -> str:
    """A value from untrusted input as a message may show it: quoted, escaped, cut short.

    Its repr, so line breaks and control characters are escapes; past `limit` characters it is cut, and
    "..." says so. Bytes (payload metadata) are read as UTF-8, anything else in them replaced.
    """
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def one_line(error: BaseException) -> str:
    """An exception's message on one line: all of its lines, each run of whitespace one space (Azure SDK
    messages span several, and the lines after the first say why); its type's name when it has no message."""
    return " ".join(str(error).split()) or type(error).__name__


def _context_in_fields_only() -> None:
    """Stop the SDK appending its context to messages: in JSON it is in fields of its own."""
    # Imported here: the deploy scripts configure no logging and need not pay for the SDK.
    from temporalio import activity, workflow

    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False
