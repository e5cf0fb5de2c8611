"""Payloads as the Temporal server stores them: found in a workflow's history, with their metadata decoded; and
`start_encrypted_workflow`, which puts an encrypted input into a history for a codec server to read."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

from temporalio.client import Client

from crypto_converter import Plaintext, encrypted_data_converter

from helpers.processes import workflow_history
from helpers.static_keys import StaticKeyProvider

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


def start_encrypted_workflow(address: str, key_version: str, key: bytes, value: str, workflow_id: str) -> None:
    """Start a workflow no worker runs, its input `value` encrypted under `key` (Key Vault version `key_version`):
    its history then holds one encrypted payload."""

    async def start() -> None:
        converter = encrypted_data_converter(StaticKeyProvider({key_version: key}), Plaintext.REFUSE)
        client = await Client.connect(address, data_converter=converter)
        await client.start_workflow("NoWorkerNeeded", value, id=workflow_id, task_queue=f"no-worker-{workflow_id}")

    asyncio.run(start())
