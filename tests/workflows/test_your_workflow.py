"""YourWorkflow run in this process by a real Worker against the dev server: the tests to run after editing
workflows.py (`./test.sh tests/workflows`, a few seconds).

Copy the pattern for your own workflows: the real activities for the path users see, and stand-ins
registered under the activities' names (`@activity.defn(name="your_first_activity")`) to decide what each
step returns or how it fails, without the real work behind it. The worker runs the workflows in the SDK's
sandbox, as worker.py does, so a workflow that reaches for the clock, the network or random numbers
outside `workflow.*` fails here too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from activities import YourActivities
from worker import WORKFLOWS
from workflows import YourWorkflow

from helpers.processes import DevServer


async def run_your_workflow(dev_server: DevServer, task_queue: str, activities: Sequence[Any], name: str) -> str:
    """Run YourWorkflow to its end on a worker in this process that has these activities; its result."""
    client = await Client.connect(dev_server.address)
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities):
        return await client.execute_workflow(
            YourWorkflow.run, name, id=f"test-your-workflow-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )


class StandIns:
    """The three activities replaced: each records what it was given; `failures` makes one fail first."""

    def __init__(self, failures: dict[str, list[BaseException]] | None = None) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.failures = failures or {}

    def _called(self, argument: str) -> None:
        info = activity.info()
        self.calls.append((info.activity_type, argument, info.attempt))
        pending = self.failures.get(info.activity_type)
        if pending:
            raise pending.pop(0)

    @activity.defn(name="your_first_activity")
    async def first(self, name: str) -> str:
        self._called(name)
        return f"first({name})"

    @activity.defn(name="your_second_activity")
    async def second(self, data: str) -> str:
        self._called(data)
        return f"second({data})"

    @activity.defn(name="your_third_activity")
    async def third(self, result: str) -> str:
        self._called(result)
        return f"third({result})"

    def all(self) -> list:
        return [self.first, self.second, self.third]


def test_with_the_real_activities_the_result_is_the_guides(dev_server: DevServer, task_queue: str) -> None:
    result = asyncio.run(run_your_workflow(dev_server, task_queue, YourActivities().all(), "Alice"))
    assert result == "Final result: Processed: Hello, Alice!"


def test_each_activity_gets_the_previous_ones_result(dev_server: DevServer, task_queue: str) -> None:
    stand_ins = StandIns()
    result = asyncio.run(run_your_workflow(dev_server, task_queue, stand_ins.all(), "Alice"))
    assert result == "third(second(first(Alice)))"
    assert stand_ins.calls == [
        ("your_first_activity", "Alice", 1),
        ("your_second_activity", "first(Alice)", 1),
        ("your_third_activity", "second(first(Alice))", 1),
    ]


def test_a_failing_activity_is_retried_and_the_workflow_still_completes(dev_server: DevServer, task_queue: str) -> None:
    stand_ins = StandIns(failures={"your_second_activity": [RuntimeError("the database blinked")]})
    result = asyncio.run(run_your_workflow(dev_server, task_queue, stand_ins.all(), "Bob"))
    assert result == "third(second(first(Bob)))"
    second_attempts = [attempt for name, _, attempt in stand_ins.calls if name == "your_second_activity"]
    assert second_attempts == [1, 2], "retried once, after the retry policy's first interval"
    assert [name for name, _, _ in stand_ins.calls].count("your_first_activity") == 1, "finished steps never rerun"


def test_an_error_marked_non_retryable_fails_the_workflow_with_its_message(
    dev_server: DevServer, task_queue: str
) -> None:
    refusal = ApplicationError("no such customer", type="CustomerNotFound", non_retryable=True)
    stand_ins = StandIns(failures={"your_first_activity": [refusal]})
    with pytest.raises(WorkflowFailureError) as failed:
        asyncio.run(run_your_workflow(dev_server, task_queue, stand_ins.all(), "Nobody"))
    activity_error = failed.value.cause
    assert isinstance(activity_error, ActivityError)
    assert isinstance(activity_error.cause, ApplicationError)
    assert (activity_error.cause.type, activity_error.cause.message) == ("CustomerNotFound", "no such customer")
    assert [name for name, _, _ in stand_ins.calls] == ["your_first_activity"], "not retried, nothing after it ran"
