"""One deploy, one plan: the deploy side's command line, which the scripts read the configuration through.

    python deploy/plan.py values [TASK] [--ramp PERCENT] [--render DIR]
        Every non-secret variable as NUL-separated NAME=VALUE pairs; with TASK, after checking the
        configuration for it (problems on stderr, exit 2), followed by the plan: the PLAN_* values below,
        derived here once so that the scripts branch on them without deriving anything again. With
        --render DIR the manifests are rendered into DIR in the same call.
    python deploy/plan.py check TASK        "Configuration OK for TASK", or the problems and exit 2
    python deploy/plan.py render DIR        render the manifests into DIR and say what was written
                                            (generate-k8s-manifests.sh)
    python deploy/plan.py show              every variable and its value, secrets hidden
    python deploy/plan.py list-variables    every variable's name, one per line

The plan (values with a TASK):
    PLAN_KUBERNETES_DEPLOYMENT   the Kubernetes Deployment this configuration renders (APP_NAME, or this version's)
    PLAN_WORKER_DEPLOYMENT       the Temporal Worker Deployment (WORKER_VERSIONING=true): <namespace>/<APP_NAME>
    PLAN_POD_SELECTOR            the label selector of every pod of the app, every version's
    PLAN_IMAGE_REGISTRY          the registry APP_IMAGE is in (docker login's server)
    PLAN_ACR_IMAGE               APP_IMAGE as az acr names it: REPOSITORY:TAG, or REPOSITORY@sha256:...
    PLAN_IMAGE_PINNED            true when APP_IMAGE names a digest (nothing is built)
    PLAN_RAMP                    --ramp's percentage, checked (it needs WORKER_VERSIONING=true)
    PLAN_ROLLOUT_STEPS           ROLLOUT_STEPS in words ("10% for 5m, then 50% for 10m"), or empty: the routing
                                 step ramps through them with a gate at every step (deploy/progressive.py)
    PLAN_TEMPORAL_ADDRESS_LOCAL  true when TEMPORAL_ADDRESS is this machine (./start.sh runs the dev server)
    PLAN_PAYLOAD_STORAGE_ACCOUNT the storage account of PAYLOAD_STORAGE_ACCOUNT_URL, or empty
    PLAN_PAYLOAD_RETENTION       what happens to payload blobs: the lifecycle policy to apply, or the warning
    PLAN_FILES                   with --render: the files rendered, in the order to apply them (one per line)
    PLAN_CONFIGURATION_FILES     ... of those, the Secrets and the ConfigMap
    PLAN_SECRET_FILES            ... of those, the Secrets
    PLAN_RENDERED                with --render: the lines that say what was written where
    PLAN_PRUNE                   with --render: what to delete after applying, so that no object of a feature
                                 that is off stays (manifests.switched_off), one `RESOURCES<TAB>SELECTOR<TAB>FIELDS`
                                 a line
    PLAN_CUSTOM_RESOURCES        the resources CRDs define (the cluster may not have them), one per line
    PLAN_CODEC_SERVER_DEPLOYMENT the codec server's Deployment (CODEC_SERVER_DEPLOY=true), else empty
    PLAN_KEYVAULT_NAME           the vault of KEYVAULT_URL (the codec server's role assignment), or empty

Booleans are given to the shell as `true` or `false`, whichever word config.env used, so that the scripts
never need to know which words mean true. Secrets are never printed: the shell gets none, and the manifests
read them here. Warnings are printed once, on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

if __name__ == "__main__" and not __package__:
    # Run as a file (python deploy/plan.py): import from the repository's root, as python -m would.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import config
from config import ConfigError, exit_with_config_error
from deploy.deploy_config import (
    CATALOG,
    TASKS,
    VARIABLES,
    DeploySettings,
    acr_image_name,
    derived,
    image_registry,
    load_deploy_settings,
    ramp_percentage,
    retention_warning,
    storage_account_name,
)
from deploy.manifests import (
    CONFIGURATION_FILES,
    CUSTOM_RESOURCES,
    FILES,
    LIFECYCLE_POLICY_FILE,
    SECRET_FILES,
    codec_server_deployment_name,
    pod_selector,
    render,
    render_into,
    switched_off,
)
from deploy.quoting import shell_word, visible

PLAN_VARIABLES = (
    "PLAN_KUBERNETES_DEPLOYMENT",
    "PLAN_WORKER_DEPLOYMENT",
    "PLAN_POD_SELECTOR",
    "PLAN_IMAGE_REGISTRY",
    "PLAN_ACR_IMAGE",
    "PLAN_IMAGE_PINNED",
    "PLAN_RAMP",
    "PLAN_ROLLOUT_STEPS",
    "PLAN_TEMPORAL_ADDRESS_LOCAL",
    "PLAN_PAYLOAD_STORAGE_ACCOUNT",
    "PLAN_PAYLOAD_RETENTION",
    "PLAN_FILES",
    "PLAN_CONFIGURATION_FILES",
    "PLAN_SECRET_FILES",
    "PLAN_RENDERED",
    "PLAN_PRUNE",
    "PLAN_CUSTOM_RESOURCES",
    "PLAN_CODEC_SERVER_DEPLOYMENT",
    "PLAN_KEYVAULT_NAME",
)
"""The plan's names, in the order `values` prints them (the module's docstring says what each holds)."""


def plan_values(settings: DeploySettings, ramp: int | None, rendered: Path | None, report: list[str]) -> dict[str, str]:
    """The PLAN_* values (PLAN_VARIABLES): what the scripts need beyond the variables, derived once."""
    storage_url = settings.values["PAYLOAD_STORAGE_ACCOUNT_URL"]
    files = [name for name in FILES if rendered and (rendered / name).is_file()]
    policy = rendered / LIFECYCLE_POLICY_FILE if rendered else None
    return {
        "PLAN_KUBERNETES_DEPLOYMENT": settings.kubernetes_deployment_name,
        "PLAN_WORKER_DEPLOYMENT": settings.rollout.worker_deployment_name,
        "PLAN_POD_SELECTOR": pod_selector(settings),
        "PLAN_IMAGE_REGISTRY": image_registry(settings.image) if settings.image else "",
        "PLAN_ACR_IMAGE": acr_image_name(settings.image) if settings.image else "",
        "PLAN_IMAGE_PINNED": _word(settings.image_digest is not None),
        "PLAN_RAMP": "" if ramp is None else str(ramp),
        "PLAN_ROLLOUT_STEPS": ", then ".join(step.describe() for step in settings.rollout.steps),
        "PLAN_TEMPORAL_ADDRESS_LOCAL": _word(config.is_local_address(settings.values["TEMPORAL_ADDRESS"])),
        "PLAN_PAYLOAD_STORAGE_ACCOUNT": storage_account_name(storage_url) if storage_url else "",
        "PLAN_PAYLOAD_RETENTION": str(policy) if policy and policy.is_file() else retention_warning(settings.values),
        "PLAN_FILES": "\n".join(files),
        "PLAN_CONFIGURATION_FILES": "\n".join(name for name in files if name in CONFIGURATION_FILES),
        "PLAN_SECRET_FILES": "\n".join(name for name in files if name in SECRET_FILES),
        "PLAN_RENDERED": "\n".join(visible(line) for line in report),
        "PLAN_PRUNE": "\n".join(prune.line() for prune in switched_off(settings, render(settings))) if rendered else "",
        "PLAN_CUSTOM_RESOURCES": "\n".join(CUSTOM_RESOURCES),
        "PLAN_CODEC_SERVER_DEPLOYMENT": codec_server_deployment_name(settings),
        "PLAN_KEYVAULT_NAME": keyvault_name(settings.values["KEYVAULT_URL"]),
    }


def keyvault_name(url: str) -> str:
    """The vault's name: the first label of KEYVAULT_URL's host ("" without one)."""
    return (urlsplit(url).hostname or "").split(".", 1)[0] if url else ""


def values_for_shell(task: str | None, ramp: str | None = None, render_dir: Path | None = None) -> dict[str, str]:
    """Every non-secret variable (and with a task, the plan), after checking for `task`; problems raise ConfigError."""
    _warn_about_unknown_variables()
    if task is None:
        return _for_the_shell(derived(config.read_variables(catalog=CATALOG)))
    settings, percentage = _checked(task, ramp)
    if task != "local":
        for warning in settings.warnings:
            _warn(warning)
    report = render_into(settings, render_dir) if render_dir else []
    return _for_the_shell(settings.values) | plan_values(settings, percentage, render_dir, report)


def _checked(task: str, ramp: str | None) -> tuple[DeploySettings, int | None]:
    """The settings checked for `task`, and --ramp checked with them: every problem in one ConfigError."""
    problems = []
    try:
        settings = load_deploy_settings(task)
    except ConfigError as error:
        settings, problems = None, error.problems
    percentage = None
    if ramp is not None:
        try:
            percentage = ramp_percentage(ramp)
        except ValueError as error:
            problems.append(f"{error} (got {ramp!r})")
        if settings is not None and not settings.rollout.versioning:
            problems.append("--ramp routes a share of new workflows to a new version: it needs WORKER_VERSIONING=true")
        if settings is not None and settings.rollout.steps:
            problems.append(
                "--ramp sets one ramp by hand, and ROLLOUT_STEPS ramps through steps with a gate at each: give one "
                "(ROLLOUT_STEPS= ./deploy.sh --ramp P for a manual ramp this once)"
            )
    if problems or settings is None:
        raise ConfigError(problems)
    return settings, percentage


def _for_the_shell(values: Mapping[str, str], secrets: bool = False) -> dict[str, str]:
    """The variables (without the secrets unless asked), booleans as `true` or `false`."""
    shell = {}
    for variable in VARIABLES:
        if variable.secret and not secrets:
            continue
        value = values[variable.name]
        if variable.parse is config.boolean and config.is_text(value):
            try:
                value = _word(config.boolean(value))
            except ValueError:
                pass  # left as given: a check for the task that uses it says what is wrong
        shell[variable.name] = value
    return shell


def _word(value: bool) -> str:
    return "true" if value else "false"


def shell_text(value: str) -> str:
    """A value as `show` prints it: empty, or quoted as bash would read it back (deploy/quoting.py), on one line."""
    return shell_word(value) if value else ""


def _warn_about_unknown_variables() -> None:
    path = config.config_env_path()
    for unknown in config.unknown_file_variables(path, CATALOG):
        _warn(f"{path}: unknown variable '{unknown}' is ignored (typo? see config.env.example)")


def _warn(message: str) -> None:
    print(f"warning: {visible(message)}", file=sys.stderr)


def _pairs(values: Mapping[str, str]) -> Iterator[bytes]:
    for name, value in values.items():
        yield f"{name}={value}\0".encode("utf-8", "surrogateescape")


def _arguments(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deploy/plan.py", description=__doc__, add_help=True)
    commands = parser.add_subparsers(dest="command", required=True)
    values = commands.add_parser("values")
    values.add_argument("task", nargs="?", choices=TASKS)
    values.add_argument("--ramp")
    values.add_argument("--render", type=Path, metavar="DIR")
    commands.add_parser("check").add_argument("task", choices=TASKS)
    commands.add_parser("render").add_argument("directory", type=Path)
    commands.add_parser("show")
    commands.add_parser("list-variables")
    options = parser.parse_args(arguments)
    if options.command == "values" and options.task is None and (options.ramp is not None or options.render):
        parser.error("--ramp and --render go with a TASK")
    return options


def main(arguments: list[str]) -> int:
    options = _arguments(arguments)
    try:
        if options.command == "values":
            values = values_for_shell(options.task, options.ramp, options.render)
            sys.stdout.buffer.write(b"".join(_pairs(values)))
        elif options.command == "check":
            values_for_shell(options.task)
            print(f"Configuration OK for {options.task}")
        elif options.command == "render":
            settings, _ = _checked("render", None)
            for warning in settings.warnings:
                _warn(warning)
            print(visible("\n".join(render_into(settings, options.directory))))
        elif options.command == "show":
            _warn_about_unknown_variables()
            values = _for_the_shell(derived(config.read_variables(catalog=CATALOG)), secrets=True)
            print(f"# from the environment, then {visible(str(config.config_env_path()))}, then defaults")
            for variable in VARIABLES:
                value = values[variable.name]
                shown = "<set, hidden>" if variable.secret and value else shell_text(value)
                print(f"{variable.name}={shown}")
        else:
            print("\n".join(variable.name for variable in VARIABLES))
    except ConfigError as error:
        exit_with_config_error(error)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
