"""Changed versions of YourWorkflow for the replay tests: one incompatible with recorded runs, one made safe.

They live in their own module, which imports nothing but the SDK and workflows.py, because the workflow
sandbox re-imports a workflow's module (and the test modules import more than the sandbox allows).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import YourWorkflow

AUDIT_TIMEOUT = timedelta(minutes=1)


@workflow.defn(name="YourWorkflow")
class YourWorkflowWithAnAuditStepFirst:
    """YourWorkflow with an extra activity before the first one: incompatible with every recorded run."""

    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.execute_activity("your_first_activity", f"audit {name}", start_to_close_timeout=AUDIT_TIMEOUT)
        return await YourWorkflow().run(name)


@workflow.defn(name="YourWorkflow")
class YourWorkflowWithAPatchedAuditStep:
    """The same change behind workflow.patched: runs that started before it keep the old path."""

    @workflow.run
    async def run(self, name: str) -> str:
        if workflow.patched("audit-step"):
            await workflow.execute_activity(
                "your_first_activity", f"audit {name}", start_to_close_timeout=AUDIT_TIMEOUT
            )
        return await YourWorkflow().run(name)
