"""deploy/plan.py, the deploy side's command line: the variables as NUL-separated data for the shell, the plan
derived once (object names, the image as ACR names it, the files to apply), rendering in the same call, and
--ramp checked with the configuration. (The scripts that read it are tested in test_deploy.py and
test_scripts_config.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from deploy import deploy_config

from helpers.processes import PYTHON, REPO_DIR, base_environment


def shell_values(tmp_path: Path, config_text: str = "", *arguments: str, **environ: str) -> subprocess.CompletedProcess:
    """`python deploy/plan.py values`, the one interface the scripts read configuration through."""
    (tmp_path / "config.env").write_text(config_text)
    return subprocess.run(
        [PYTHON, str(REPO_DIR / "deploy" / "plan.py"), "values", *arguments],
        env=base_environment(tmp_path, CONFIG_ENV_FILE=str(tmp_path / "config.env"), **environ),
        capture_output=True,
        timeout=60,
    )


def test_shell_values_are_nul_separated_data_for_every_variable_but_the_secrets(tmp_path):
    result = shell_values(
        tmp_path,
        "TEMPORAL_TASK_QUEUE='quoted # not a comment'\nLOG_LEVEL=$HOME\nTEMPORAL_API_KEY=canary-secret\n",
        TEMPORAL_NAMESPACE="line one\nline two",
    )
    assert result.returncode == 0, result.stderr
    pairs = dict(pair.split("=", 1) for pair in result.stdout.decode().split("\0") if pair)
    assert pairs["TEMPORAL_TASK_QUEUE"] == "quoted # not a comment"
    assert pairs["LOG_LEVEL"] == "$HOME", "config.env is data: nothing is expanded"
    assert pairs["TEMPORAL_NAMESPACE"] == "line one\nline two", "the environment wins, byte-exact"
    assert set(pairs) == {variable.name for variable in deploy_config.VARIABLES if not variable.secret}
    assert b"canary-secret" not in result.stdout + result.stderr


def test_shell_values_give_booleans_as_true_or_false_whatever_word_config_env_used(tmp_path):
    result = shell_values(tmp_path, "KEDA_ENABLED=1\nENCRYPTION_REQUIRED= FALSE \n")
    pairs = dict(pair.split("=", 1) for pair in result.stdout.decode().split("\0") if pair)
    assert (pairs["KEDA_ENABLED"], pairs["ENCRYPTION_REQUIRED"]) == ("true", "false")
