"""The alert rules and the Grafana dashboard in monitoring/, checked with the real promtool (Debian's
`prometheus` package, which .ci/run installs): the rules are valid, each alert fires on synthetic series
that should fire it and stays quiet on series that should not, and every dashboard query is PromQL.

Whether the metric names they use are the ones the worker exports is tests/e2e/test_observability.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy import alerts

from helpers.processes import REPO_DIR
from helpers.promql import RULES, dashboard, dashboard_queries, write_rules_without_annotations

PROMTOOL_TESTS = REPO_DIR / "tests" / "helpers" / "prometheus" / "temporal-worker-alerts.test.yaml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed: apt-get install prometheus (.ci/run installs it where it can)")
    return path


def run_promtool(promtool: str, *arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *arguments], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_the_rules_file_is_what_alerts_py_writes() -> None:
    assert RULES.read_text() == alerts.rules_file_text(), "run: python alerts.py --write"


def test_promtool_accepts_the_rules_file(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_count = sum(len(group["rules"]) for group in alerts.RULE_GROUPS)
    assert f"SUCCESS: {rule_count} rules found" in result.stdout


def test_every_alert_fires_on_its_symptom_and_stays_quiet_otherwise(promtool: str, tmp_path: Path) -> None:
    shutil.copy(PROMTOOL_TESTS, tmp_path / PROMTOOL_TESTS.name)
    write_rules_without_annotations(tmp_path / RULES.name)
    result = run_promtool(promtool, "test", "rules", PROMTOOL_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    # Each alert is tested both ways: at some time it must fire, at another it must not.
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    alert_names = {rule["alert"] for group in alerts.RULE_GROUPS for rule in group["rules"]}
    assert cases == {name: {True, False} for name in alert_names}


def test_promtool_fails_an_alert_that_no_longer_fires(promtool: str, tmp_path: Path) -> None:
    """The unit tests have teeth: with a threshold nobody reaches, promtool reports the missing alert."""
    shutil.copy(PROMTOOL_TESTS, tmp_path / PROMTOOL_TESTS.name)
    write_rules_without_annotations(tmp_path / RULES.name)
    rules = tmp_path / RULES.name
    rules.write_text(rules.read_text().replace("> 5", "> 5000"))
    result = run_promtool(promtool, "test", "rules", PROMTOOL_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "TemporalWorkflowTaskScheduleToStartSlow" in result.stdout + result.stderr


def test_every_dashboard_query_is_promql(promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries()
    recorded = [{"record": f"dashboard:query_{number}", "expr": query} for number, query in enumerate(queries)]
    recording_rules = {"groups": [{"name": "dashboard", "rules": recorded}]}
    rules = tmp_path / "dashboard-queries.yaml"
    rules.write_text(yaml.safe_dump(recording_rules))
    result = run_promtool(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_the_dashboard_imports_into_grafana_with_a_data_source_of_your_choice() -> None:
    board = dashboard()
    assert board["uid"] == "temporal-aks-worker" and board["title"] and board["schemaVersion"] >= 36
    assert "id" not in board, "an id would clash with the importing Grafana's own"
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    graphs = [panel for panel in board["panels"] if panel["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(target["expr"] for target in panel["targets"]), panel["title"]
        assert panel["description"], f"{panel['title']} says what it shows"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"].lower() for panel in graphs)
    for subject in ("completed", "failures", "schedule-to-start", "slots used", "slots free", "pollers", "sticky"):
        assert subject in titles, f"no panel about {subject}"
