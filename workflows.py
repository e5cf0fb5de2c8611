"""`YourWorkflow`: the guide's workflow, running its three activities in sequence.

first(name) -> second(that result) -> third(that result); the workflow's result
is the third activity's, e.g. "Final result: Processed: Hello, Alice!".
Every activity call has explicit timeouts and a retry policy, so a worker that
dies mid-activity costs a retry, never the workflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities import YourActivities

ACTIVITY_START_TO_CLOSE_TIMEOUT = timedelta(minutes=5)
ACTIVITY_SCHEDULE_TO_CLOSE_TIMEOUT = timedelta(minutes=30)
# How soon a worker that died mid-activity is noticed. An activity that runs longer
# than this must call activity.heartbeat() more often (see activities.py).
ACTIVITY_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
ACTIVITY_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)


@workflow.defn
class YourWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        greeting = await self._execute(YourActivities.your_first_activity, name)
        processed = await self._execute(YourActivities.your_second_activity, greeting)
        return await self._execute(YourActivities.your_third_activity, processed)

    @staticmethod
    async def _execute(activity_method, argument: str) -> str:
        return await workflow.execute_activity_method(
            activity_method,
            argument,
            start_to_close_timeout=ACTIVITY_START_TO_CLOSE_TIMEOUT,
            schedule_to_close_timeout=ACTIVITY_SCHEDULE_TO_CLOSE_TIMEOUT,
            heartbeat_timeout=ACTIVITY_HEARTBEAT_TIMEOUT,
            retry_policy=ACTIVITY_RETRY_POLICY,
        )


# The guide's name for the workflow, kept for code copied from it.
your_workflow = YourWorkflow
