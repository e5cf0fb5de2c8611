"""Two builds of one workflow type for the versioned-rollout tests: build A, and build B incompatible with it.

`Held` waits for its `release` signal, then runs one activity and returns which build finished it. Build B
runs an extra activity before it waits, so it cannot replay a history that build A wrote: on an unversioned
task queue, A's waiting workflows would fail with a non-determinism error once B's workers took them.
They live in their own module because the workflow sandbox re-imports a workflow's module.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW_TYPE = "Held"
TIMEOUT = timedelta(seconds=30)


@activity.defn(name="held_step")
async def held_step(text: str) -> str:
    return text


class _Held:
    def __init__(self) -> None:
        self.released = False

    @workflow.signal
    def release(self) -> None:
        self.released = True


@workflow.defn(name=WORKFLOW_TYPE)
class HeldBuildA(_Held):
    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.wait_condition(lambda: self.released)
        return await workflow.execute_activity(held_step, f"A finished {name}", start_to_close_timeout=TIMEOUT)


@workflow.defn(name=WORKFLOW_TYPE)
class HeldBuildB(_Held):
    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.execute_activity(held_step, f"B checks {name}", start_to_close_timeout=TIMEOUT)
        await workflow.wait_condition(lambda: self.released)
        return await workflow.execute_activity(held_step, f"B finished {name}", start_to_close_timeout=TIMEOUT)
