"""The docs and the code name the same variables, with the same defaults."""

from __future__ import annotations

import re
import subprocess

import config

from helpers.processes import REPO_DIR

PROCESS_ONLY_VARIABLES = {"CONFIG_ENV_FILE", "IN_CONTAINER", "PYTHON", "TMPDIR"}


def example_values() -> dict[str, str]:
    text = (REPO_DIR / "config.env.example").read_text()
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE))


def documented_variables() -> set[str]:
    text = (REPO_DIR / "CONFIGURATION.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, re.MULTILINE))


def shell_variables() -> set[str]:
    """The deployment variables source_config.sh knows, when it exists."""
    script = REPO_DIR / "source_config.sh"
    if not script.exists():
        return set()
    listed = subprocess.run(
        ["bash", str(script), "--list-variables"], capture_output=True, text=True, check=True, timeout=60
    )
    return set(listed.stdout.split())


def test_example_documentation_and_code_list_the_same_variables():
    in_code = set(config.DEFAULTS) | shell_variables()
    assert set(example_values()) == in_code
    assert documented_variables() - PROCESS_ONLY_VARIABLES == in_code


def test_example_shows_the_app_defaults():
    values = example_values()
    assert {name: values[name] for name in config.DEFAULTS} == config.DEFAULTS


def test_example_never_holds_a_secret_value():
    values = example_values()
    assert all(values[name] == "" for name in config.SECRET_VARIABLES)


def test_readme_starts_with_the_two_commands():
    readme = (REPO_DIR / "README.md").read_text()
    first_commands = re.findall(r"^\./(\S+)", readme, re.MULTILINE)[:2]
    assert first_commands == ["start.sh", "test.sh"]
