"""The rollout-gate benchmark still runs (tiny counts): it cannot rot. Nothing about timing is asserted; the
calls per evaluation are, since they are the design's bound (deploy/gates.py states them)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from helpers.processes import PYTHON, REPO_DIR, base_environment


def test_bench_rollout_gate_quick_prints_every_row(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, str(REPO_DIR / "tests" / "bench_rollout_gate.py"), "--quick"],
        env=base_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    for row in (
        r"\| rollout gate: one evaluation \| [\d.]+ ms median \(slowest [\d.]+ ms\) \|",
        r"\| rollout gate: Temporal API calls per evaluation \| 5 \| count_workflow_executions 2, "
        r"describe_workflow_execution 1, list_workflow_executions 2;",
        r"\| rollout gate: with 2 stuck workflows \| [\d.]+ ms median \(slowest [\d.]+ ms\), 9 calls \| "
        r"count_workflow_executions 2, describe_workflow_execution 5, list_workflow_executions 2:",
        r"\| rollout step of 5 min at a 1 s poll \| 1500 calls \(5\.0/s\) \|",
        r"\| rollout step of 5 min at a 5 s poll \| 300 calls \(1\.0/s\) \|",
    ):
        assert re.search(row, table), f"missing row {row!r} in:\n{table}"
