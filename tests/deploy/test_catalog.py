"""The one configuration catalog, seen from the scripts: a secret declared once reaches the pod, what a
dry run prints is what a real run runs, every script works on a fresh clone, and the scripts read no
variable the catalog does not declare."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import deploy_config, plan

from helpers.deploy_harness import (
    FULL_CONFIG,
    IMAGE_DIGEST,
    MINIMAL_CONFIG,
    REPO,
    Project,
    contains_canary,
    secret_values,
    shown,
)

MADE_UP_SECRET = "canary-database-password-Qp2v '\"$(touch pwned)"
MARKER = "# --- Your own variables"


def test_a_secret_declared_once_in_the_catalog_reaches_the_pod_from_the_app_secret(tmp_path: Path) -> None:
    project = Project(tmp_path / "project")
    catalog = project.root / "config.py"
    text = catalog.read_text()
    assert MARKER in text, "config.py says where a copier declares their own variables"
    catalog.write_text(text.replace(MARKER, f'Variable("DATABASE_PASSWORD", secret=True),\n    {MARKER}', 1))
    project.write_config({**MINIMAL_CONFIG, "DATABASE_PASSWORD": MADE_UP_SECRET})

    result = project.run("generate-k8s-manifests.sh")
    assert result.returncode == 0, result.output
    [secret] = project.manifest("app-secret.yaml")
    assert secret_values(secret) == {"DATABASE_PASSWORD": MADE_UP_SECRET}
    [config_map] = project.manifest("config-map.yaml")
    assert "DATABASE_PASSWORD" not in config_map["data"]
    [deployment] = project.manifest("deployment.yaml")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in container["envFrom"]

    assert shown(project)["DATABASE_PASSWORD"] == "<set, hidden>"
    dry_run = project.run("deploy.sh", "--dry-run")
    assert dry_run.returncode == 0, dry_run.output
    for text in (result.output, dry_run.output, json.dumps([call["argv"] for call in project.calls()])):
        assert MADE_UP_SECRET not in text
    for name, content in project.files().items():
        if name not in ("config.env", "app-secret.yaml"):
            assert MADE_UP_SECRET.encode() not in content, name


def printed_commands(output: str) -> list[list[str]]:
    """The commands a script printed ("  $ ..."), a pipeline being one command per side of its "|"."""
    commands = []
    for line in output.splitlines():
        if not line.startswith("  $ "):
            continue
        words = shlex.split(line[4:])
        while "|" in words:
            position = words.index("|")
            commands.append(words[:position])
            words = words[position + 1 :]
        commands.append(words)
    return commands


def recorded_commands(project: Project, manifest_dir: Path) -> list[list[str]]:
    """What the stubs were called with, with the rendered manifests' directory written as DIR and the pushed
    image's digest, which only a real run learns, as the placeholder a dry run prints."""
    return [
        [word.replace(str(manifest_dir), "DIR").replace(IMAGE_DIGEST, "<digest>") for word in command]
        for command in project.commands()
    ]


@pytest.mark.parametrize(
    ("script", "arguments"),
    [("deploy.sh", ()), ("patch.sh", ()), ("patch.sh", ("--config-only",))],
    ids=["deploy", "patch", "patch-config-only"],
)
def test_a_dry_run_prints_exactly_the_commands_a_real_run_runs(tmp_path: Path, script: str, arguments: tuple) -> None:
    project = Project(tmp_path / "project")
    project.write_config(FULL_CONFIG)
    manifest_dir = tmp_path / "manifests"
    common = (*arguments, "--output-dir", str(manifest_dir))

    dry_run = project.run(script, "--dry-run", *common)
    assert dry_run.returncode == 0, dry_run.output
    assert project.commands() == [], "a dry run reaches nothing"
    printed = [
        [word.replace(str(manifest_dir), "DIR") for word in command]
        for command in printed_commands(dry_run.stdout)
        # rendering and the replay check run in a dry run too (and reach no stub)
        if not command[0].endswith("generate-k8s-manifests.sh")
        and command[1:] != [f"{project.root}/deploy/rollout.py", "gate"]
    ]

    real = project.run(script, *common)
    assert real.returncode == 0, real.output
    assert printed == recorded_commands(project, manifest_dir)
    assert printed, "the scripts printed their commands"


def fresh_clone(destination: Path) -> Path:
    """What `git clone` of this repository gives: the tracked files, no .venv, no config.env."""
    listing = ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    tracked = subprocess.run(listing, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def test_deploy_patch_and_generate_work_on_a_fresh_clone(tmp_path: Path) -> None:
    """Only the recording stubs, Python 3.11 and system tools on PATH; the first script makes .venv."""
    project = Project(tmp_path / "project", files=(), venv=False)
    fresh_clone(project.root)
    assert not (project.root / ".venv").exists()
    project.write_config(FULL_CONFIG)
    # This machine's pip settings (index, certificates) and download cache; the interpreter a user has.
    machine = {name: value for name, value in os.environ.items() if name.startswith("PIP_")}
    machine.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    machine["PYTHON"] = str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}")

    deploy = project.run("deploy.sh", "--dry-run", **machine)
    assert deploy.returncode == 0, deploy.output
    assert (project.root / ".venv" / "bin" / "python").exists()
    setup_lines = [line for line in deploy.stderr.splitlines() if "virtual environment" in line]
    assert len(setup_lines) == 1 and "requirements.txt" in setup_lines[0], deploy.stderr
    assert "temporal" not in [path.name for path in (project.root / ".venv" / "bin").iterdir()], "no dev server"

    others = (("patch.sh", "--dry-run"), ("patch.sh", "--dry-run", "--config-only"), ("generate-k8s-manifests.sh",))
    for command in others:
        result = project.run(*command)
        assert result.returncode == 0, result.output
        assert "virtual environment" not in result.stderr and "Installing" not in result.stderr, "made once"
    assert (project.root / "deployment.yaml").exists()
    assert contains_canary(deploy.output) == []


SCRIPTS = sorted([*REPO.glob("*.sh"), *REPO.glob("scripts/*.sh")])
# Variables the shell or the system sets, and the few the scripts take from the process (CONFIGURATION.md).
ENVIRONMENT = {"BASH_SOURCE", "BASH_VERSION", "HOME", "PATH", "PWD", "TMPDIR"} | {
    "CONFIG_ENV_FILE",
    "PYTHON",
    "IN_CONTAINER",
}
READ = re.compile(r"\$\{?!?([A-Z][A-Z0-9_]*)")
ASSIGNED = re.compile(r"(?:^|[\s;(])(?:local\s+|export\s+|readonly\s+)?([A-Z][A-Z0-9_]*)(?:\+?=|\[)", re.MULTILINE)


def test_every_upper_case_variable_a_script_reads_is_assigned_by_a_script_or_declared_in_the_catalog() -> None:
    """shellcheck (SC2154) assumes upper-case names come from the environment; this catches their typos."""
    texts = {path: path.read_text() for path in SCRIPTS}
    assigned = {name for text in texts.values() for name in ASSIGNED.findall(text)}
    known = assigned | set(deploy_config.CATALOG) | set(plan.PLAN_VARIABLES) | ENVIRONMENT
    for path, text in texts.items():
        unknown = sorted(set(READ.findall(text)) - known)
        assert unknown == [], f"{path.name} reads {unknown}: not assigned by a script, nor in the catalog or the plan"


def test_no_script_switches_off_shellchecks_undefined_variable_checks() -> None:
    for path in SCRIPTS:
        assert not re.search(r"disable=[^\n]*SC215[34]", path.read_text()), path.name
