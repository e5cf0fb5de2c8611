"""Style checks that keep the Python code the kind people want to keep: ruff lint and format."""

from __future__ import annotations

import shutil
import subprocess

from helpers.processes import REPO_DIR


def run_ruff(*arguments: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff")
    assert ruff, "ruff comes with requirements-dev.txt; run the tests through ./test.sh"
    return subprocess.run([ruff, *arguments], cwd=REPO_DIR, capture_output=True, text=True, timeout=120)


def test_ruff_finds_no_problems():
    result = run_ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted():
    result = run_ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
