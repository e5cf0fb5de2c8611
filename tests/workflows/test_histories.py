"""Every recorded history in tests/histories replays against the workflow code in this checkout.

A change to workflows.py that makes a running workflow take another step than its history recorded fails
that workflow's next task in production (a non-determinism error). This test fails first, naming the
workflow and the SDK's message. Record more histories from any Temporal with
`python deploy/replay.py capture --limit 20` (see README, "Change a workflow").

The other tests here prove that the check bites: an extra activity before the first one does not replay,
and the same change guarded with `workflow.patched` does.
"""

from __future__ import annotations

import asyncio

from deploy import replay as replay_module
from deploy.replay import HISTORIES_DIR, load_histories, replay

from helpers.changed_workflows import YourWorkflowWithAnAuditStepFirst, YourWorkflowWithAPatchedAuditStep

HISTORIES = load_histories(HISTORIES_DIR)


def test_histories_are_recorded() -> None:
    assert len(HISTORIES) >= 3, f"{HISTORIES_DIR} holds the histories of finished YourWorkflow runs"
    assert {replay_module.workflow_type(history) for history in HISTORIES} == {"YourWorkflow"}


def test_every_recorded_history_replays_against_the_current_code() -> None:
    outcomes = asyncio.run(replay(HISTORIES))
    failures = [outcome.describe() for outcome in outcomes if outcome.failure is not None]
    assert not failures, "these histories do not replay against workflows.py:\n" + "\n".join(failures)
    assert len(outcomes) == len(HISTORIES)


def test_an_extra_activity_before_the_first_one_fails_replay_naming_each_workflow() -> None:
    outcomes = asyncio.run(replay(HISTORIES, workflows=[YourWorkflowWithAnAuditStepFirst]))
    assert len(outcomes) == len(HISTORIES)
    for history, outcome in zip(HISTORIES, outcomes, strict=True):
        assert outcome.nondeterministic, outcome.describe()
        assert history.workflow_id in outcome.describe()
        assert "Nondeterminism" in str(outcome.failure) or "nondeterminism" in str(outcome.failure).lower()


def test_the_same_change_behind_workflow_patched_replays() -> None:
    outcomes = asyncio.run(replay(HISTORIES, workflows=[YourWorkflowWithAPatchedAuditStep]))
    assert [outcome.failure for outcome in outcomes] == [None] * len(HISTORIES)
