"""A workflow whose one activity fails for good: what makes the SDK count a failed activity and a failed
workflow, which the demo's YourWorkflow never does. (A module of its own, importing only temporalio, so
that the workflow sandbox can re-import it.)"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError


@activity.defn(name="failing_activity")
async def failing_activity(reason: str) -> str:
    raise ApplicationError(reason, non_retryable=True)


@workflow.defn(name="FailingWorkflow")
class FailingWorkflow:
    @workflow.run
    async def run(self, reason: str) -> str:
        return await workflow.execute_activity(
            failing_activity,
            reason,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
