"""What a rendered manifest is checked against besides Kubernetes' own schema (kubernetes-validate):
KEDA's ScaledObject and TriggerAuthentication schemas and its temporal scaler's trigger keys, and the
PodMonitor (Azure Monitor's and prometheus-operator's) and PrometheusRule schemas.

The KEDA files are vendored in tests/helpers/keda/, the Prometheus ones in tests/helpers/prometheus/
(each says where it comes from, in its `$comment`).
"""

from __future__ import annotations

import json
from pathlib import Path

KUBERNETES_VERSION = "1.37.0"  # the Kubernetes version kubernetes-validate checks every manifest against
KEDA = Path(__file__).resolve().parent / "keda"
PROMETHEUS = Path(__file__).resolve().parent / "prometheus"


def closed(schema: object) -> object:
    """The schema with every object closed to unknown fields, as the API server's strict validation is."""
    if isinstance(schema, dict):
        schema = {key: closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [closed(item) for item in schema]
    return schema


def keda_schema(kind: str) -> dict:
    schema = json.loads((KEDA / f"{kind.lower()}.v1alpha1.schema.json").read_text())
    schema.pop("$comment")
    return closed(schema)


def crd_schema(api_version: str, kind: str) -> dict:
    """The closed schema of a Prometheus CRD object (PodMonitor, PrometheusRule) by its apiVersion and kind."""
    group, version = api_version.split("/")
    schema = json.loads((PROMETHEUS / f"{kind.lower()}.{group}.{version}.schema.json").read_text())
    schema.pop("$comment")
    return closed(schema)


def check_temporal_trigger(trigger: dict) -> None:
    """The trigger against KEDA's temporal scaler: known keys, required ones, values of the right type."""
    spec = json.loads((KEDA / "temporal-trigger.json").read_text())
    metadata = trigger["metadata"]
    assert trigger["type"] == "temporal"
    assert set(metadata) <= set(spec["metadata"]), "unknown temporal scaler keys"
    assert set(spec["required"]) <= set(metadata)
    for alternatives in spec["one_of_required"]:
        assert len(set(alternatives) & set(metadata)) == 1
    for key, value in metadata.items():
        kind = spec["metadata"][key]["type"]
        if kind == "integer":
            assert value.isdigit(), key
        elif kind == "boolean":
            assert value in ("true", "false"), key
        elif kind == "queueTypes":
            assert set(value.split(",")) <= {"workflow", "activity", "nexus"}
