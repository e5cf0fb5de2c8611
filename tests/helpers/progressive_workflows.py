"""The builds of the progressive-rollout tests (tests/e2e/test_progressive_rollout.py), one worker process each.

Three workflow types, each in several builds:
    Job(name)       what the app's users start: one activity, then it returns "<build> finished <name>";
                    build C's fails at once (ApplicationError, not retried), so that C's failure rate is 1
    Waiting(name)   runs an activity, waits for its `release` signal, then runs another; build E starts a timer
                    instead of the first activity, so it cannot replay a history build A wrote (a non-determinism
                    error on the workflow's next task)
    RolloutGate(x)  the gate workflow: one activity, then "gate passed on <build>"; build D's fails

BUILDS maps a build name (A to E) to its workflow classes. They live in their own module because the workflow
sandbox re-imports a workflow's module.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(maximum_attempts=3)
GATE_WORKFLOW_TYPE = "RolloutGate"


@activity.defn(name="progressive_step")
async def progressive_step(text: str) -> str:
    return text


async def _step(text: str) -> str:
    return await workflow.execute_activity(progressive_step, text, start_to_close_timeout=TIMEOUT, retry_policy=RETRY)


@workflow.defn(name="Job")
class JobA:
    @workflow.run
    async def run(self, name: str) -> str:
        return await _step(f"A finished {name}")


@workflow.defn(name="Job")
class JobB:
    @workflow.run
    async def run(self, name: str) -> str:
        return await _step(f"B finished {name}")


@workflow.defn(name="Job")
class JobD:
    @workflow.run
    async def run(self, name: str) -> str:
        return await _step(f"D finished {name}")


@workflow.defn(name="Job")
class JobE:
    @workflow.run
    async def run(self, name: str) -> str:
        return await _step(f"E finished {name}")


@workflow.defn(name="Job")
class JobFailing:
    @workflow.run
    async def run(self, name: str) -> str:
        raise ApplicationError(f"build C cannot do {name}", non_retryable=True)


class _Waiting:
    def __init__(self) -> None:
        self.released = False

    @workflow.signal
    def release(self) -> None:
        self.released = True


@workflow.defn(name="Waiting")
class WaitingA(_Waiting):
    @workflow.run
    async def run(self, name: str) -> str:
        await _step(f"A checks {name}")
        await workflow.wait_condition(lambda: self.released)
        return await _step(f"A finished {name}")


@workflow.defn(name="Waiting")
class WaitingIncompatible(_Waiting):
    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.sleep(0.1)  # a timer where A's histories have the activity "A checks": no replay
        await workflow.wait_condition(lambda: self.released)
        return await _step(f"E finished {name}")


@workflow.defn(name=GATE_WORKFLOW_TYPE)
class GatePasses:
    @workflow.run
    async def run(self, check: str) -> str:
        return await _step(f"gate passed: {check}")


@workflow.defn(name=GATE_WORKFLOW_TYPE)
class GateFails:
    @workflow.run
    async def run(self, check: str) -> str:
        raise ApplicationError(f"gate check {check} failed on this build", non_retryable=True)


BUILDS: dict[str, list[type]] = {
    "A": [JobA, WaitingA, GatePasses],
    "B": [JobB, WaitingA, GatePasses],
    "C": [JobFailing, WaitingA, GatePasses],
    "D": [JobD, WaitingA, GateFails],
    "E": [JobE, WaitingIncompatible, GatePasses],
}
