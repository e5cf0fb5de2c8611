"""The dashboard's and the alert rules' PromQL, taken apart for the tests: which metrics and labels each
query uses, and what a Prometheus /metrics page offers.

Only what our own queries use is understood: metric names start with `temporal_`, label matchers are
`name{label op "value", ...}`, and groupings are `by (label, ...)`. `promtool check rules` is what
checks that the queries are PromQL at all (tests/deploy/test_monitoring.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from helpers.processes import REPO_DIR

DASHBOARD = REPO_DIR / "monitoring" / "temporal-worker-dashboard.json"
RULES = REPO_DIR / "monitoring" / "temporal-worker-alerts.yaml"
# Grafana's variables, replaced by what Prometheus would get when "All" is selected.
GRAFANA_VARIABLES = {"$task_queue": ".*", "$__rate_interval": "5m"}
# Labels the scrape adds in Kubernetes, not the worker: a PodMonitor adds `pod`, the pod-annotation job
# (Prometheus' classic kubernetes-pods job, as Azure Monitor's add-on runs it) `kubernetes_pod_name`.
SCRAPE_LABELS = {"pod", "kubernetes_pod_name"}

_METRIC = re.compile(r"\btemporal_[a-z0-9_]+")
_SELECTOR = re.compile(r"\b(temporal_[a-z0-9_]+)\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[str]:
    """Every query of the dashboard's panels and variables, with Grafana's variables replaced."""
    board = dashboard()
    queries = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric, label) is Grafana's, not PromQL: what Prometheus is asked is the metric.
            metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"]).groups()
            queries.append(f"count by ({label}) ({metric})")
    return [substitute(query) for query in queries]


def substitute(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    return query


def alert_queries() -> dict[str, str]:
    """Every alert's expression, by alert name."""
    rules = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def metric_names(query: str) -> set[str]:
    return set(_METRIC.findall(query))


def selector_labels(query: str) -> dict[str, set[str]]:
    """The labels each metric of the query is filtered on."""
    found: dict[str, set[str]] = {}
    for metric, matchers in _SELECTOR.findall(query):
        found.setdefault(metric, set()).update(_MATCHER_LABEL.findall(matchers))
    return found


def grouping_labels(query: str) -> set[str]:
    return {label.strip() for labels in _GROUPING.findall(query) for label in labels.split(",") if label.strip()}


def exposition(text: str) -> dict[str, set[str]]:
    """A /metrics page (Prometheus text format): every series name and the label names it carries."""
    series: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            series.setdefault(match[1], set()).update(_LABEL.findall(match[2] or ""))
    return series


def write_rules_without_annotations(path: Path) -> None:
    """The alert rules as they are but for their annotations, which promtool's unit tests would compare too."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path.write_text(yaml.safe_dump(rules, sort_keys=False, width=10_000))
