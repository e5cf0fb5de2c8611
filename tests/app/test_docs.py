"""The docs and the code name the same variables, with the same defaults."""

from __future__ import annotations

import re

from deploy import deploy_config

from helpers.processes import REPO_DIR

PROCESS_ONLY_VARIABLES = {"CONFIG_ENV_FILE", "IN_CONTAINER", "PYTHON", "TMPDIR"}


def example_values() -> dict[str, str]:
    text = (REPO_DIR / "config.env.example").read_text()
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE))


def documented_variables() -> set[str]:
    text = (REPO_DIR / "CONFIGURATION.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, re.MULTILINE))


def test_example_documentation_and_the_catalog_list_the_same_variables():
    in_code = {variable.name for variable in deploy_config.VARIABLES}
    assert set(example_values()) == in_code
    assert documented_variables() - PROCESS_ONLY_VARIABLES == in_code


def test_example_shows_every_default():
    values = example_values()
    assert {variable.name: values[variable.name] for variable in deploy_config.VARIABLES} == {
        variable.name: variable.default for variable in deploy_config.VARIABLES
    }


def test_example_never_holds_a_secret_value():
    values = example_values()
    assert all(values[name] == "" for name in deploy_config.SECRET_VARIABLES)


def test_readme_starts_with_the_two_commands():
    readme = (REPO_DIR / "README.md").read_text()
    first_commands = re.findall(r"^\./(\S+)", readme, re.MULTILINE)[:2]
    assert first_commands == ["start.sh", "test.sh"]
