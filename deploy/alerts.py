"""The worker's Prometheus alert rules: Temporal's recommended SDK alerts, written once, as data.

Public API:
    RULE_GROUPS        # the rule groups, as a Prometheus rules file and a PrometheusRule's spec hold them
    RULES_FILE         # monitoring/temporal-worker-alerts.yaml: the same rules as a file, for any Prometheus
    rules_file_text()  # that file's content

The alerts (docs/deploy.md#alerts says what to do about each):

    TemporalWorkflowTaskScheduleToStartSlow   workflow tasks wait for a worker: p99 > 5 s for 5 minutes
    TemporalWorkerSlotsExhausted              a worker has no free workflow-task or activity slot for 2 minutes
    TemporalWorkerNoPollers                   nothing polls a task queue for 5 minutes
    TemporalWorkflowTaskExecutionSlow         workflow code takes p99 > 10 s per task for 5 minutes
    TemporalWorkflowTaskFailing               workflow tasks keep failing (non-determinism, bugs) for 10 minutes
    TemporalWorkerMetricsMissing              no worker's metrics reach Prometheus for 10 minutes

The first four are the set Temporal recommends for SDK metrics; the last two catch what they cannot:
a workflow stuck on a failing task, and workers that are gone altogether (then no series is left to
compare with 0). Every expression groups by `task_queue` (and `worker_type`/`poller_type`), never by
`namespace`: a PodMonitor adds the Kubernetes namespace as `namespace`, which makes Prometheus rename
the SDK's own label (the Temporal namespace) to `exported_namespace`. The pod is `pod` when a PodMonitor
scrapes it and `kubernetes_pod_name` when the pod-annotation job does, so messages name both. The
metric names are the ones worker.py exports (seconds, `_total` counters): tests/e2e/test_observability.py
checks them against a real worker's /metrics, and tests/deploy/test_monitoring.py runs `promtool check
rules` and `promtool test rules` on the file.

The same rules reach a cluster three ways: this file in any Prometheus's `rule_files`; a PrometheusRule
that manifests.py renders for prometheus-operator (METRICS_SCRAPE=prometheus-operator); or, for Azure
Monitor managed Prometheus, an Azure "Prometheus rule group" converted from this file (docs/deploy.md).

Command line: `python deploy/alerts.py --write` rewrites the file from RULE_GROUPS; `--check` exits 1 if it
is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    # Run as a file (python deploy/alerts.py): import from the repository's root, as python -m would.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from deploy import REPO_DIR
from deploy.yaml_text import to_yaml

RULES_FILE = REPO_DIR / "monitoring" / "temporal-worker-alerts.yaml"
RUNBOOK = "https://docs.temporal.io/troubleshooting/worker-capacity"
FILE_HEADER = (
    "# Prometheus alert rules for the temporal-aks worker: written by `python deploy/alerts.py --write` from\n"
    "# deploy/alerts.py (edit RULE_GROUPS there). Check with: promtool check rules temporal-worker-alerts.yaml\n"
)

Rule = dict[str, Any]


def _alert(name: str, expr: str, duration: str, severity: str, summary: str, description: str) -> Rule:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook_url": RUNBOOK},
    }


def _p99(histogram: str) -> str:
    return f"histogram_quantile(0.99, sum by (task_queue, le) (rate({histogram}[5m])))"


RULE_GROUPS: list[dict[str, Any]] = [
    {
        "name": "temporal-worker",
        "rules": [
            _alert(
                "TemporalWorkflowTaskScheduleToStartSlow",
                f"{_p99('temporal_workflow_task_schedule_to_start_latency_seconds_bucket')} > 5",
                "5m",
                "warning",
                "Workflow tasks on {{ $labels.task_queue }} wait {{ $value | humanizeDuration }} (p99) for a worker",
                "Workers take workflow tasks off the queue too slowly: too few pods or slots for the load, "
                "or workers that stopped polling. Check the slots and pollers panels, then scale out "
                "(REPLICAS, KEDA_MAX_REPLICAS) or raise WORKER_MAX_CONCURRENT_WORKFLOW_TASKS.",
            ),
            _alert(
                "TemporalWorkerSlotsExhausted",
                'temporal_worker_task_slots_available{worker_type=~"WorkflowWorker|ActivityWorker"} == 0',
                "2m",
                "warning",
                "{{ $labels.worker_type }} slots of pod {{ $labels.pod }}{{ $labels.kubernetes_pod_name }} on "
                "{{ $labels.task_queue }} are all taken",
                "Every slot is occupied, so this worker polls no new tasks until one frees up: tasks that "
                "never finish (an activity without a timeout), or more load than WORKER_MAX_CONCURRENT_* "
                "allows. Only meaningful with WORKER_TUNER=fixed.",
            ),
            _alert(
                "TemporalWorkerNoPollers",
                'sum by (task_queue, poller_type) (temporal_num_pollers{poller_type=~"workflow_task|activity_task"}) '
                "== 0",
                "5m",
                "critical",
                "Nothing polls {{ $labels.poller_type }} tasks on {{ $labels.task_queue }}",
                "Workers report metrics but no poller: their slots are full, or they cannot reach Temporal "
                "(address, TLS, API key). Tasks on this queue wait until a poller returns.",
            ),
            _alert(
                "TemporalWorkflowTaskExecutionSlow",
                f"{_p99('temporal_workflow_task_execution_latency_seconds_bucket')} > 10",
                "5m",
                "warning",
                "Workflow tasks on {{ $labels.task_queue }} take {{ $value | humanizeDuration }} (p99) to run",
                "Workflow code runs for seconds per task: blocking calls in workflow code, very large "
                "histories being replayed (a small WORKER_MAX_CACHED_WORKFLOWS), or a starved CPU "
                "(CPU_LIMIT). Past the 10 s workflow task timeout the tasks time out and retry.",
            ),
            _alert(
                "TemporalWorkflowTaskFailing",
                "sum by (task_queue) (rate(temporal_workflow_task_execution_failed_total[5m])) > 0",
                "10m",
                "warning",
                "Workflow tasks on {{ $labels.task_queue }} keep failing",
                "A workflow task fails and is retried without end: a non-determinism error after a code "
                "change, an exception in workflow code, or a workflow type no worker registers. The "
                "worker's log names the workflow id.",
            ),
            _alert(
                "TemporalWorkerMetricsMissing",
                "absent(temporal_num_pollers)",
                "10m",
                "critical",
                "No Temporal worker metrics reach Prometheus",
                "Either no worker runs (kubectl get pods), or nothing scrapes them (METRICS_SCRAPE, and "
                "for Azure Monitor the ama-metrics pods).",
            ),
        ],
    }
]


def rules_file_text() -> str:
    """The rules file: RULE_GROUPS through the deploy side's one YAML writer."""
    return FILE_HEADER + to_yaml({"groups": RULE_GROUPS})


def _main(arguments: list[str]) -> int:
    if arguments == ["--write"]:
        RULES_FILE.write_text(rules_file_text())
        print(f"Wrote {RULES_FILE}")
        return 0
    if arguments == ["--check"]:
        if RULES_FILE.read_text() != rules_file_text():
            print(f"{RULES_FILE} is out of date: run python deploy/alerts.py --write", file=sys.stderr)
            return 1
        print(f"{RULES_FILE} is up to date")
        return 0
    print("usage: python deploy/alerts.py --write | --check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
