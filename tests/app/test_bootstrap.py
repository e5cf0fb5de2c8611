"""bootstrap.Stop in this process: real signals, delivered to the test's own event loop.

The programs' behaviour under signals is in tests/e2e/test_stop_signals.py; these check the rules every
program relies on: a signal that arrives before the loop runs is kept, a stop cancels the step it
interrupts, a step that finished is never thrown away, and a second signal changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from bootstrap import STOP_SIGNALS, Stop, StopRequested


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop for a Stop; afterwards the test process's own signal handlers are back."""
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    new_loop = asyncio.new_event_loop()
    try:
        yield new_loop
    finally:
        for number in STOP_SIGNALS:
            new_loop.remove_signal_handler(number)
            if previous[number] is not None:  # None: installed from C, not restorable from Python
                signal.signal(number, previous[number])
        new_loop.close()


def test_a_signal_before_the_loop_runs_is_kept_and_ends_the_first_step(loop):
    stop = Stop(loop)
    os.kill(os.getpid(), signal.SIGTERM)  # as if it came while the settings were being read
    started = time.monotonic()
    with pytest.raises(StopRequested) as raised:
        loop.run_until_complete(stop.race(asyncio.sleep(60), "connecting to Temporal"))
    assert time.monotonic() - started < 5
    assert (raised.value.reason, raised.value.doing) == ("SIGTERM", "connecting to Temporal")
    assert str(raised.value) == "stopped by SIGTERM while connecting to Temporal"
    assert stop.signal_number == signal.SIGTERM


def test_a_stop_cancels_the_step_it_interrupts_and_a_second_signal_changes_nothing(loop):
    stop = Stop(loop)
    step_saw: list[str] = []

    async def step() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            step_saw.append("cancelled")
            raise

    async def interrupted() -> None:
        loop.call_later(0.2, os.kill, os.getpid(), signal.SIGINT)
        loop.call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)
        await stop.race(step(), "waiting for results")

    with pytest.raises(StopRequested, match="stopped by SIGINT while waiting for results"):
        loop.run_until_complete(interrupted())
    loop.run_until_complete(asyncio.sleep(0.3))  # the SIGTERM arrives
    assert step_saw == ["cancelled"]
    assert (stop.reason, stop.signal_number) == ("SIGINT", signal.SIGINT)


def test_a_finished_step_gives_its_result_or_its_error_and_sleep_ends_early_on_a_stop(loop):
    stop = Stop(loop)

    async def fails() -> None:
        raise ValueError("the step's own error")

    assert loop.run_until_complete(stop.race(asyncio.sleep(0, result="key"), "reading the key")) == "key"
    with pytest.raises(ValueError, match="the step's own error"):
        loop.run_until_complete(stop.race(fails(), "connecting"))
    assert loop.run_until_complete(stop.sleep(0.01)) is False

    loop.call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
    started = time.monotonic()
    assert loop.run_until_complete(stop.sleep(60)) is True
    assert time.monotonic() - started < 5 and stop.requested
