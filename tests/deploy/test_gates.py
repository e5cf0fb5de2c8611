"""deploy/gates.py's pure parts, in process: VersionFigures' sums and rate, the failure-rate comparison (minimum
sample, baseline, margin, stuck workflows), and the visibility queries it sends. What the figures are against a
real Temporal (and the gate workflow, pinned workflows) is in tests/e2e/test_rollout_gates.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from deploy.gates import (
    STUCK_LIMIT,
    VersionFigures,
    compare_failure_rates,
    figures_query,
    stuck_query,
)


def figures(build_id: str, completed: int = 0, failed: int = 0, **others: int) -> VersionFigures:
    return VersionFigures(build_id=build_id, completed=completed, failed=failed, **others)


def test_closed_counts_every_closed_status_and_failures_only_failed_timed_out_and_terminated() -> None:
    found = VersionFigures(
        "b", completed=5, failed=2, timed_out=1, terminated=1, canceled=3, continued_as_new=4, running=7, stuck=1
    )

    assert found.closed == 5 + 2 + 1 + 1 + 3 + 4
    assert found.failures == 4
    assert found.failure_rate == pytest.approx(4 / 16)


def test_no_closed_workflow_is_a_rate_of_zero_not_a_division_by_zero() -> None:
    assert VersionFigures("b", running=3).failure_rate == 0.0


def test_the_summary_line_has_the_numbers() -> None:
    line = VersionFigures("b", completed=9, failed=2, timed_out=1, running=4).summary()

    assert line == "12 closed, 3 failures (25.0%: 2 failed, 1 timed out, 0 terminated), 4 running, 0 stuck"
    assert VersionFigures("b", stuck_measured=False).summary().endswith("stuck: not measured")
    assert VersionFigures("b", stuck=STUCK_LIMIT).summary().endswith(f"{STUCK_LIMIT}+ stuck")


def test_one_failure_among_three_workflows_is_no_verdict() -> None:
    verdict = compare_failure_rates(figures("new", completed=2, failed=1), figures("old", completed=50), 0.05, 20)

    assert verdict.passed is None
    assert verdict.check == "failure rate"
    assert "no verdict below 20 closed" in verdict.figures
    assert "new new 3 closed, 1 failures (33.3%" in verdict.figures


def test_a_new_version_failing_more_than_the_current_plus_the_margin_fails() -> None:
    verdict = compare_failure_rates(
        figures("new", completed=16, failed=4), figures("old", completed=95, failed=5), 0.1, 20
    )

    assert verdict.passed is False  # 20% > 5% + 10%
    assert verdict.check == "failure rate"
    assert "current old 5/100 (5.0%)" in verdict.figures and "allowed up to 15.0%" in verdict.figures


def test_within_the_margin_of_the_current_versions_rate_passes() -> None:
    verdict = compare_failure_rates(
        figures("new", completed=17, failed=3), figures("old", completed=90, failed=10), 0.05, 20
    )

    assert verdict.passed is True  # 15% <= 10% + 5%


def test_a_current_version_with_too_few_closed_workflows_is_no_baseline_the_margin_alone_is_allowed() -> None:
    new = figures("new", completed=18, failed=2)  # 10%
    current = figures("old", completed=1, failed=1)  # 100%, but one workflow

    assert compare_failure_rates(new, current, 0.05, 20).passed is False
    assert "too few for a baseline: 0%" in compare_failure_rates(new, current, 0.05, 20).figures
    assert compare_failure_rates(new, current, 0.10, 20).passed is True


def test_timeouts_and_terminations_are_failures_too() -> None:
    new = figures("new", completed=10, timed_out=5, terminated=5)

    assert compare_failure_rates(new, figures("old", completed=20), 0.05, 20).passed is False


def test_a_stuck_workflow_fails_the_gate_at_once_whatever_the_sample() -> None:
    new = figures("new", completed=1, stuck=1, stuck_workflows=["order-17"])

    verdict = compare_failure_rates(new, figures("old", completed=100), 0.05, 20)

    assert verdict.passed is False
    assert verdict.check == "stuck workflow tasks"
    assert "stuck: order-17" in verdict.figures


def test_the_count_query_counts_one_version_closed_in_the_window_or_running_grouped_by_status() -> None:
    since = datetime(2026, 12, 4, 17, 30, tzinfo=timezone(timedelta(hours=1)))

    assert figures_query("workers/app", "b2", since) == (
        "TemporalWorkerDeploymentVersion = 'workers/app:b2' AND (CloseTime >= '2026-12-04T16:30:00Z' "
        "OR ExecutionStatus = 'Running') GROUP BY ExecutionStatus"
    )


def test_stuck_workflows_are_looked_for_by_task_queue_or_else_by_deployment() -> None:
    assert stuck_query("workers/app", "jobs") == (
        "TaskQueue = 'jobs' AND ExecutionStatus = 'Running' AND TemporalReportedProblems IS NOT NULL"
    )
    assert stuck_query("workers/app", None).startswith("TemporalWorkerDeployment = 'workers/app' AND ")


@pytest.mark.parametrize("build_id", ["b'2", 'b"2', "b\\2"])
def test_a_name_that_would_break_the_query_is_refused(build_id: str) -> None:
    with pytest.raises(ValueError, match="cannot go in a Temporal visibility query"):
        figures_query("workers/app", build_id, datetime.now(UTC))


def test_a_window_start_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a time zone"):
        figures_query("workers/app", "b2", datetime(2026, 12, 4, 17, 30))
