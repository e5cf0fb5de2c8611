"""ROLLOUT_STEPS and its gate from the configuration's side: parsed and checked in the catalog (bad steps, a gate
workflow type worker.py does not register, steps without versioning, --ramp with steps: exit 2 before anything is
built), and a dry run that prints the plan and the command the routing step runs. The rollouts themselves, against
the dev server: tests/e2e/test_progressive_rollout.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.deploy_config import RolloutStep, duration_text, rollout_steps, worker_workflow_types

from helpers.deploy_harness import IMAGE_TAG, MINIMAL_CONFIG, Project

VERSIONED = {**MINIMAL_CONFIG, "WORKER_VERSIONING": "true"}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def nothing_ran(project: Project) -> bool:
    """No command reached Azure, Docker or the cluster (the configuration check lists kubectl contexts at most)."""
    return [command for command in project.commands() if command[0] != "kubectl" or "get-contexts" not in command] == []


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("10:5m", (RolloutStep(10, 300),)),
        ("10:5m,50:10m", (RolloutStep(10, 300), RolloutStep(50, 600))),
        (" 1:30s , 2.5:1m30s ,99.99:1h ", (RolloutStep(1, 30), RolloutStep(2.5, 90), RolloutStep(99.99, 3600))),
    ],
)
def test_steps_are_percentages_and_durations_with_units(text: str, steps: tuple[RolloutStep, ...]) -> None:
    assert rollout_steps(text) == steps
    assert [duration_text(step.seconds) for step in steps] == [part.split(":")[1].strip() for part in text.split(",")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("50:5m,10:5m", "percentages must increase"),
        ("10:5m,10:5m", "percentages must increase"),
        ("0:5m", "more than 0 and less than 100"),
        ("100:5m", "more than 0 and less than 100"),
        ("10", "is not PERCENT:DURATION"),
        ("ten:5m", "is not PERCENT:DURATION"),
        ("10:5", "is not a duration"),
        ("10:5 minutes", "is not a duration"),
        ("10:0s", "more than 0s and at most 24h"),
        ("10:25h", "more than 0s and at most 24h"),
        ("10:5m,", "is not PERCENT:DURATION"),
        (",".join(f"{n}:1m" for n in range(1, 12)), "at most 10 steps"),
    ],
)
def test_a_bad_step_string_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rollout_steps(text)


def test_the_registered_workflow_types_are_read_from_worker_py_without_importing_it(tmp_path: Path) -> None:
    project = Project(tmp_path / "project", venv=False)
    assert worker_workflow_types(project.root) == ("YourWorkflow",)
    (project.root / "worker.py").write_text(
        (project.root / "worker.py").read_text().replace("WORKFLOWS = [YourWorkflow]", "WORKFLOWS = workflows_from()")
    )
    with pytest.raises(ValueError, match="not a plain list"):
        worker_workflow_types(project.root)


@pytest.mark.parametrize(
    ("values", "arguments", "message"),
    [
        ({**VERSIONED, "ROLLOUT_STEPS": "50:5m,10:5m"}, (), "ROLLOUT_STEPS='50:5m,10:5m': step '10:5m': percentages must increase"),
        ({**VERSIONED, "ROLLOUT_STEPS": "10:5"}, (), "ROLLOUT_STEPS='10:5': '5' is not a duration"),
        ({**MINIMAL_CONFIG, "ROLLOUT_STEPS": "10:5m"}, (), "ROLLOUT_STEPS ramps a new version through steps: it needs WORKER_VERSIONING=true"),
        (
            {**VERSIONED, "ROLLOUT_STEPS": "10:5m", "ROLLOUT_GATE_WORKFLOW": "NoSuchWorkflow"},
            (),
            "ROLLOUT_GATE_WORKFLOW='NoSuchWorkflow': the worker does not register this workflow type (worker.py's "
            "WORKFLOWS registers: YourWorkflow)",
        ),
        ({**VERSIONED, "ROLLOUT_GATE_WORKFLOW": "YourWorkflow"}, (), "runs at every step of ROLLOUT_STEPS: set ROLLOUT_STEPS too"),
        ({**VERSIONED, "ROLLOUT_STEPS": "10:5m", "ROLLOUT_GATE_INPUT": '"x"'}, (), "ROLLOUT_GATE_INPUT is the gate workflow's input"),
        (
            {**VERSIONED, "ROLLOUT_STEPS": "10:5m", "ROLLOUT_GATE_WORKFLOW": "YourWorkflow", "ROLLOUT_GATE_INPUT": "{x"},
            (),
            "ROLLOUT_GATE_INPUT='{x': must be JSON",
        ),
        ({**VERSIONED, "ROLLOUT_STEPS": "10:5m", "ROLLOUT_FAILURE_MARGIN": "5%"}, (), "ROLLOUT_FAILURE_MARGIN='5%': must be a rate"),
        ({**VERSIONED, "ROLLOUT_STEPS": "10:5m", "ROLLOUT_MIN_WORKFLOWS": "0"}, (), "ROLLOUT_MIN_WORKFLOWS='0': must be a whole number, at least 1"),
        ({**VERSIONED, "ROLLOUT_STEPS": "10:5m", "ROLLOUT_POLL_SECONDS": "0.1"}, (), "ROLLOUT_POLL_SECONDS='0.1': must be a number of seconds, at least 1"),
        ({**VERSIONED, "ROLLOUT_STEPS": "10:5m"}, ("--ramp", "10"), "--ramp sets one ramp by hand, and ROLLOUT_STEPS ramps through steps"),
    ],
    ids=[
        "decreasing", "no-unit", "versioning-off", "unknown-gate-workflow", "gate-without-steps", "input-without-gate",
        "input-not-json", "margin", "min-workflows", "poll", "ramp-and-steps",
    ],
)  # fmt: skip
@pytest.mark.parametrize("script", ["deploy.sh", "patch.sh"])
def test_a_bad_progressive_configuration_stops_before_anything_is_built(
    project: Project, script: str, values: dict[str, str], arguments: tuple[str, ...], message: str
) -> None:
    project.write_config(values)
    result = project.run(script, *arguments)
    assert result.returncode == 2, result.output
    assert message in result.stderr
    assert nothing_ran(project)
    assert "[2/" not in result.stdout, "stopped in step 1"


def test_a_dry_run_prints_the_step_plan_and_the_command_that_runs_the_steps(project: Project) -> None:
    project.write_config(
        {
            **VERSIONED,
            "ROLLOUT_STEPS": "10:5m,50:1h",
            "ROLLOUT_GATE_WORKFLOW": "YourWorkflow",
            "ROLLOUT_GATE_INPUT": '"smoke"',
        }
    )
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert project.commands() == []
    assert "Steps:         10% for 5m, then 50% for 1h, then current; a gate at every step" in result.stdout
    assert "    step 1/2: 10% of new workflows for 5m\n    step 2/2: 50% of new workflows for 1h\n" in result.stdout
    assert f'gate workflow YourWorkflow with input "smoke", started pinned to {IMAGE_TAG}' in result.stdout
    assert "at most the current version's + 0.05, once 20 have closed" in result.stdout
    assert f"no workflow stuck on failing workflow tasks on {IMAGE_TAG}" in result.stdout
    printed = [line[4:] for line in result.stdout.splitlines() if line.startswith("  $ ")]
    python, progressive = f"{project.root}/.venv/bin/python", f"{project.root}/deploy/progressive.py"
    assert printed[-3:-1] == [f"{python} {progressive} plan {IMAGE_TAG}", f"{python} {progressive} run {IMAGE_TAG}"]


def test_without_steps_the_routing_step_makes_the_version_current_as_before(project: Project) -> None:
    project.write_config(VERSIONED)
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert "progressive.py" not in result.stdout
    assert "Steps:" not in result.stdout
