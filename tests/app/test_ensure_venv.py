"""ensure_venv.sh: the two commands set up their environments on a fresh machine, and do nothing when up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.processes import REPO_DIR


def ensure_venv(venv: Path, requirements: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "bash",
            "-c",
            'source "$0"; ensure_venv "$1" "$2"',
            str(REPO_DIR / "ensure_venv.sh"),
            str(venv),
            str(requirements),
        ],
        env={
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "PYTHON": sys.executable,
            "HOME": str(venv.parent),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_creates_installs_then_skips_until_an_included_file_changes(tmp_path):
    base = tmp_path / "requirements-base.txt"
    base.write_text("# nothing to install yet\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("-r requirements-base.txt\n")
    venv = tmp_path / "venv"

    first = ensure_venv(venv, requirements)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [
        f"Creating virtual environment {venv} with {sys.executable} and installing {requirements} into it "
        "(the first run takes a minute) ..."
    ], "one line says what happens"
    assert (venv / "bin" / "python").exists()

    second = ensure_venv(venv, requirements)
    assert second.returncode == 0 and second.stderr == "", "nothing changed, nothing to do"

    base.write_text("# an included file changed\n")
    third = ensure_venv(venv, requirements)
    changed = f"Installing {requirements} into {venv}: it changed since the last install ..."
    assert third.stderr.splitlines() == [changed]


def test_a_file_installed_through_another_that_includes_it_counts_as_installed(tmp_path):
    """start.sh installs requirements-local.txt, which includes requirements.txt: the deploy scripts then
    find requirements.txt installed in the same .venv and install nothing."""
    runtime = tmp_path / "requirements.txt"
    runtime.write_text("# the runtime\n")
    local = tmp_path / "requirements-local.txt"
    local.write_text("-r requirements.txt\n# and the dev server\n")
    venv = tmp_path / "venv"
    assert ensure_venv(venv, local).returncode == 0
    again = ensure_venv(venv, runtime)
    assert again.returncode == 0 and again.stderr == ""
    runtime.write_text("# the runtime changed\n")
    assert "Installing" in ensure_venv(venv, runtime).stderr


def test_a_failed_install_says_so_and_is_retried_next_time(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("--this-is-not-a-pip-option\n")
    venv = tmp_path / "venv"
    for _ in range(2):
        result = ensure_venv(venv, requirements)
        assert result.returncode != 0
        assert f"ERROR: pip could not install {requirements}" in result.stderr


def test_a_requirements_file_with_a_lock_is_installed_from_the_lock_with_require_hashes(tmp_path):
    """requirements.txt -> requirements.lock: pip gets the lock and --require-hashes, so an unhashed line fails
    (pip says so before it installs anything; the package here is a local file, nothing is downloaded)."""
    wheel = tmp_path / "tinypkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinypkg==1.0\n")
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"tinypkg @ {wheel.as_uri()}\n")
    venv = tmp_path / "venv"

    result = ensure_venv(venv, requirements)
    assert result.returncode != 0
    assert "Hashes are required in --require-hashes mode" in result.stderr, result.stderr
    assert f"ERROR: pip could not install {lock} into {venv}" in result.stderr

    lock.write_text(f"tinypkg @ {wheel.as_uri()} --hash=sha256:{'0' * 64}\n")
    result = ensure_venv(venv, requirements)
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in result.stderr, result.stderr

    lock.write_text("# a lock with nothing to install\n")
    assert ensure_venv(venv, requirements).returncode == 0
    assert ensure_venv(venv, requirements).stderr == "", "installed: nothing to do"
    lock.write_text("# the lock changed\n")
    assert "Installing" in ensure_venv(venv, requirements).stderr, "a new lock is a new install"
