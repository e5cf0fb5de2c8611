"""The payload storage driver's side of a test: a workflow's store context and a retrieve context, payloads of a
given size, and a PayloadStorage opened for one step and closed after it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverRetrieveContext, StorageDriverStoreContext, StorageDriverWorkflowInfo

import config
from payload_storage import PayloadStorage

T = TypeVar("T")

WORKFLOW = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="order/42 ü", run_id="run-1", type="YourWorkflow")
)
RETRIEVE = StorageDriverRetrieveContext()


def payload(size: int, fill: bytes = b"x") -> Payload:
    return Payload(metadata={"encoding": b"binary/plain"}, data=fill * size)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def with_storage(settings: config.PayloadStorageSettings, step: Callable[[PayloadStorage], Awaitable[T]]) -> T:
    storage = PayloadStorage(settings)
    try:
        return await step(storage)
    finally:
        await storage.close()
