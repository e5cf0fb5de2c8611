"""Workflows for the rollout-gate tests (tests/e2e/test_rollout_gates.py), one type per behaviour a gate tells
apart: `GateOk` completes, `GateFails` fails with its input as the message, `GateCrashes` raises an ordinary
exception so that its workflow tasks fail again and again (the workflow stays open, stuck), and `GateHeld`
waits for its `release` signal. `GateHeld` has two builds: build A runs `gate_step` before it waits; build E
sleeps instead, so E cannot replay a history A wrote (a non-determinism error at E's first task).

A module of its own, importing only temporalio, because the workflow sandbox re-imports a workflow's module.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError

TIMEOUT = timedelta(seconds=30)


@activity.defn(name="gate_step")
async def gate_step(text: str) -> str:
    return text


@workflow.defn(name="GateOk")
class GateOk:
    @workflow.run
    async def run(self, value: Any = None) -> str:
        return f"ok {value}"


@workflow.defn(name="GateFails")
class GateFails:
    @workflow.run
    async def run(self, reason: str) -> str:
        raise ApplicationError(reason, non_retryable=True)


@workflow.defn(name="GateCrashes")
class GateCrashes:
    @workflow.run
    async def run(self, reason: str) -> str:
        raise RuntimeError(reason)  # not a Temporal failure: the workflow task fails, the workflow stays open


class _Held:
    def __init__(self) -> None:
        self.released = False

    @workflow.signal
    def release(self) -> None:
        self.released = True


@workflow.defn(name="GateHeld")
class GateHeldA(_Held):
    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.execute_activity(gate_step, f"A {name}", start_to_close_timeout=TIMEOUT)
        await workflow.wait_condition(lambda: self.released)
        return f"A finished {name}"


@workflow.defn(name="GateHeld")
class GateHeldE(_Held):
    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.sleep(0.1)  # where A's history has an activity: E's first task fails (non-determinism)
        await workflow.wait_condition(lambda: self.released)
        return f"E finished {name}"


BUILD_A = [GateOk, GateFails, GateCrashes, GateHeldA]
BUILD_E = [GateOk, GateFails, GateCrashes, GateHeldE]
