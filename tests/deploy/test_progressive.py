"""deploy/progressive.py's decisions in process: where a run starts (resume at the step whose percentage the version
ramps at, with Temporal's window, or restart at step 1, saying why), a busy Worker Deployment tried again, the JSON
lines of LOG_FORMAT=json, and the API-call counter. The routing configs are the protobuf messages Temporal answers
with. Rollouts against the dev server: tests/e2e/test_progressive_rollout.py."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.deployment.v1 import RoutingConfig, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode

from deploy import progressive
from deploy.deploy_config import load_deploy_settings
from deploy.progressive import CallCounter, Output, Rollout, StepRecord, until_not_busy

STEPS = "10:5m,50:10m"
SET_AT = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def rollout_for(tmp_path: Path) -> Rollout:
    env_file = tmp_path / "config.env"
    env_file.write_text(f"WORKER_VERSIONING=true\nROLLOUT_STEPS={STEPS}\nIMAGE_TAG=new2\nACR_NAME=testregistry\n")
    settings = load_deploy_settings("render", environ={}, env_file=env_file)
    rollout = Rollout(settings, None, None, "new2", Output(json_lines=False), None)  # type: ignore[arg-type]
    rollout.records = [StepRecord(step) for step in settings.rollout.steps]
    return rollout


def routing(ramping: str = "", percentage: float = 0) -> RoutingConfig:
    return RoutingConfig(
        current_deployment_version=WorkerDeploymentVersion(deployment_name="ns/app", build_id="old1"),
        ramping_deployment_version=WorkerDeploymentVersion(deployment_name="ns/app", build_id=ramping),
        ramping_version_percentage=percentage,
        ramping_version_percentage_changed_time=Timestamp(seconds=int(SET_AT.timestamp())),
    )


def test_a_version_ramping_at_a_steps_percentage_resumes_at_that_step_with_temporals_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rollout = rollout_for(tmp_path)

    assert rollout.where_to_start(routing("new2", 50)) == (1, SET_AT)
    assert "Resuming at step 2/2: build id new2 already ramps at 50%" in capsys.readouterr().out
    assert [record.verdict for record in rollout.records] == ["passed", "not run"]


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (routing(), "no rollout of build id new2 is under way"),
        (routing("new2", 30), "build id new2 ramps at 30%, which is none of the steps' percentages"),
        (routing("other3", 10), "build id other3 was ramping at 10%; the steps replace that ramp"),
    ],
    ids=["no-ramp", "manual-ramp", "another-version"],
)
def test_anything_else_restarts_at_step_1_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: RoutingConfig, reason: str
) -> None:
    assert rollout_for(tmp_path).where_to_start(config) == (0, None)
    assert f"Starting at step 1/2: {reason}." in capsys.readouterr().out


def test_a_busy_worker_deployment_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progressive, "RETRY_INTERVAL_SECONDS", 0.01)
    answers: list[object] = [RPCError("too many requests", RPCStatusCode.RESOURCE_EXHAUSTED, b"")] * 2 + ["done"]

    async def call() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert asyncio.run(until_not_busy(call)) == "done"
    assert answers == []


def test_any_other_refusal_is_not_asked_again() -> None:
    calls = []

    async def call() -> None:
        calls.append(1)
        raise RPCError("no", RPCStatusCode.PERMISSION_DENIED, b"")

    with pytest.raises(RPCError):
        asyncio.run(until_not_busy(call))
    assert len(calls) == 1


def test_json_lines_carry_the_event_the_message_and_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    Output(json_lines=True).say("gate_failed", "  step 1/2 (10%): the gate FAILED", check="failure rate", step=1)
    record = json.loads(capsys.readouterr().out)
    assert record["event"] == "gate_failed" and record["check"] == "failure rate" and record["step"] == 1
    assert record["message"] == "  step 1/2 (10%): the gate FAILED"
    assert datetime.fromisoformat(record["time"]).tzinfo is not None


def test_the_counter_counts_every_call_through_the_service_client() -> None:
    async def rpc_call(*_: object, **__: object) -> str:
        return "answer"

    client = SimpleNamespace(service_client=SimpleNamespace(_rpc_call=rpc_call))
    counter = CallCounter(client)  # type: ignore[arg-type]

    async def three_calls() -> None:
        for _ in range(3):
            assert await client.service_client._rpc_call("DescribeWorkflowExecution") == "answer"

    asyncio.run(three_calls())
    assert counter.count == 3 and counter.since(1) == 2
