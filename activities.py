"""The guide's three activities: plain functions of their input, nothing else.

`simulated_work_seconds` stands in for real work (an API call, a query) so that
graceful shutdown and worker crashes can be watched mid-activity; it is zero by
default. The simulated work heartbeats every second, as any activity that runs
longer than the workflow's heartbeat timeout must: a worker killed mid-activity
is then noticed within that timeout and the activity retried on another worker.
The activities keep the guide's names whatever the Python method is called.
"""

from __future__ import annotations

import asyncio

from temporalio import activity

HEARTBEAT_INTERVAL_SECONDS = 1.0


class YourActivities:
    """The activities, sharing one setting: how long each one pretends to work."""

    def __init__(self, simulated_work_seconds: float = 0.0) -> None:
        self.simulated_work_seconds = simulated_work_seconds

    @activity.defn(name="your_first_activity")
    async def your_first_activity(self, name: str) -> str:
        await self._work()
        return f"Hello, {name}!"

    @activity.defn(name="your_second_activity")
    async def your_second_activity(self, data: str) -> str:
        await self._work()
        return f"Processed: {data}"

    @activity.defn(name="your_third_activity")
    async def your_third_activity(self, result: str) -> str:
        await self._work()
        return f"Final result: {result}"

    def all(self) -> list:
        """The bound activity methods, as a worker registers them."""
        return [self.your_first_activity, self.your_second_activity, self.your_third_activity]

    async def _work(self) -> None:
        activity.logger.info("Running %s", activity.info().activity_type)
        remaining = self.simulated_work_seconds
        while remaining > 0:
            activity.heartbeat()
            await asyncio.sleep(min(HEARTBEAT_INTERVAL_SECONDS, remaining))
            remaining -= HEARTBEAT_INTERVAL_SECONDS
