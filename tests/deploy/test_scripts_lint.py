"""Static checks of the delivery files: shellcheck on every shell script, hadolint on the Dockerfile,
the image's build context, and a helpful --help from every script."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.deploy_harness import REPO, STUBS, Project

SKIPPED_DIRECTORIES = {".git", ".venv", ".venv-test", "node_modules", ".temporal", "__pycache__"}
STUB_SCRIPTS = sorted(path for path in STUBS.iterdir() if path.is_file() and path.suffix != ".py")


def shell_scripts() -> list[Path]:
    """Every *.sh in the repository, including ones added later, plus the shell stubs."""
    scripts = [
        path for path in REPO.rglob("*.sh") if not SKIPPED_DIRECTORIES.intersection(path.relative_to(REPO).parts)
    ]
    return sorted(scripts) + STUB_SCRIPTS


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed: pip install -r requirements-dev.txt"
    return found


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda path: str(path.relative_to(REPO)))
def test_shellcheck_finds_nothing(script: Path) -> None:
    completed = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    completed = subprocess.run([tool("hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_the_image_is_slim_compiler_free_unbuffered_and_unprivileged() -> None:
    instructions = dockerfile_instructions()
    # One stage whose base is a build argument: the image tests point it at their stand-in, deploy.sh uses the default.
    assert instructions[0][0] == "ARG" and instructions[1] == ("FROM", "${BASE_IMAGE}")
    name, _, default = instructions[0][1].partition("=")
    assert name == "BASE_IMAGE"
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", default), "the base is pinned by digest: " + default
    assert [keyword for keyword, _ in instructions].count("FROM") == 1
    text = " ".join(rest for _, rest in instructions)
    for compiler_or_package_manager in ("gcc", "build-essential", "apt-get", "apk "):
        assert compiler_or_package_manager not in text
    assert "--only-binary=:all:" in text and "--require-hashes -r requirements.lock" in text
    assert "PYTHONUNBUFFERED=1" in dict(instructions)["ENV"]
    assert "IN_CONTAINER=true" in dict(instructions)["ENV"], "start.sh must exec the worker, not set up a venv"
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users == ["10001:10001"], "the last USER must be the numeric non-root user the Deployment runs as"
    assert instructions[-1] == ("CMD", '["./start.sh", "worker"]')


def test_the_build_context_is_an_allow_list_of_the_app_files() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "exclude everything first, so config.env, .venv, tests and manifests never get in"
    assert set(lines[1:]) == {
        "!Dockerfile",
        "!requirements.lock",
        "!*.py",
        "!start.sh",
    }


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "deploy.sh",
            ["--dry-run", "--output-dir", "[3/10]", "az acr login", "docker buildx", "--ramp", "set-current"],
        ),
        ("patch.sh", ["--config-only", "--dry-run", "kubectl set image", "rollout restart", "--clean-up", "drained"]),
        ("generate-k8s-manifests.sh", ["--output-dir", "config-map.yaml", "0600"]),
        ("source_config.sh", ["--list-variables", "--check", "--show"]),
        ("lock-requirements.sh", ["--upgrade", "requirements.lock", "--require-hashes"]),
    ],
)
def test_every_script_explains_itself_with_help(tmp_path: Path, script: str, expected: list[str]) -> None:
    project = Project(tmp_path / "project")
    result = project.run("bash", script, "--help") if script == "source_config.sh" else project.run(script, "--help")
    assert result.returncode == 0, result.output
    assert result.stdout.startswith("Usage:")
    for text in expected:
        assert text in result.stdout
    assert project.calls() == [], "--help runs nothing"


@pytest.mark.parametrize("script", ["deploy.sh", "patch.sh", "generate-k8s-manifests.sh"])
def test_an_unknown_argument_is_an_error_that_points_to_help(tmp_path: Path, script: str) -> None:
    project = Project(tmp_path / "project")
    result = project.run(script, "--frobnicate")
    assert result.returncode == 2
    assert "unknown argument '--frobnicate'; see --help" in result.stderr
