"""Payloads as the Temporal server stores them: found in a workflow's history, with their metadata decoded."""

from __future__ import annotations

import base64
from collections.abc import Iterator

from helpers.processes import workflow_history

ENCRYPTED = "binary/encrypted"  # the `encoding` metadata of a payload our codec encrypted


def payloads_in(node) -> Iterator[dict]:
    """Every Payload (a dict with metadata and data) anywhere in a history event."""
    if isinstance(node, dict):
        if "metadata" in node and "data" in node:
            yield node
        for value in node.values():
            yield from payloads_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from payloads_in(value)


def stored_payloads(address: str, workflow_id: str) -> list[dict]:
    """Every payload in a workflow's history as the server stores it."""
    return [payload for event in workflow_history(address, workflow_id) for payload in payloads_in(event)]


def metadata(payload: dict, name: str) -> str:
    return base64.b64decode(payload["metadata"][name]).decode()
