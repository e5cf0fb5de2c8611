"""deploy.sh and patch.sh against stub az, docker and kubectl: the exact commands, in order; a dry
run that changes nothing; preflight problems reported together; a failing step named with a hint;
and no secret in any argv, output line or non-Secret file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.deploy_harness import (
    ACR_TOKEN_CANARY,
    CONTEXT,
    FULL_CONFIG,
    IMAGE_DIGEST,
    IMAGE_TAG,
    MINIMAL_CONFIG,
    SUBSCRIPTION,
    Project,
    contains_canary,
    counting_venv,
)

NS = "temporal-workers"
IMAGE = f"testregistry.azurecr.io/temporal-worker:{IMAGE_TAG}"
PINNED_IMAGE = f"{IMAGE}@{IMAGE_DIGEST}"
KUBE = ["kubectl", "--context", CONTEXT, "--namespace", NS]
APPLY = ["apply", "--server-side", "--field-manager=temporal-aks", "--force-conflicts"]
SECRET_FILES = ("acr-secret.yaml", "app-secret.yaml", "temporal-tls-secret.yaml")
# What deletes the objects of switched-off features: only objects with both of the app's labels.
OURS = "app.kubernetes.io/instance=temporal-worker,app.kubernetes.io/managed-by=generate-k8s-manifests.sh"
WORKER = f"{OURS},app.kubernetes.io/component!=codec-server"  # the worker's; the codec server's go by their own
CODEC_SERVER = f"{OURS},app.kubernetes.io/component=codec-server"
CODEC_SERVER_KINDS = (
    "deployments.apps,ingresses.networking.k8s.io,services,poddisruptionbudgets.policy,"
    "networkpolicies.networking.k8s.io,configmaps,secrets,serviceaccounts"
)
PODMONITORS = "podmonitors.azmonitoring.coreos.com,podmonitors.monitoring.coreos.com"
PROMETHEUSRULES = "prometheusrules.monitoring.coreos.com"
KEEP_SECRETS = ",".join(f"metadata.name!=temporal-worker-{name}" for name in ("acr-pull", "secrets", "temporal-tls"))


def preflight(keda: bool = False, buildx: bool = True) -> list[list[str]]:
    commands = []
    if buildx:
        commands += [["docker", "buildx", "version"], ["docker", "info", "--format", "{{.ServerVersion}}"]]
    commands += [
        ["az", "account", "show", "--subscription", SUBSCRIPTION, "--query", "id", "--output", "tsv"],
        ["az", "acr", "show", "--name", "testregistry", "--subscription", SUBSCRIPTION, "--query", "loginServer", "--output", "tsv"],
    ]  # fmt: skip
    commands += cluster_preflight()
    if keda:
        commands.append(
            ["kubectl", "--context", CONTEXT, "get", "crd", "scaledobjects.keda.sh", "triggerauthentications.keda.sh", "--output", "name"]
        )  # fmt: skip
    return commands


def cluster_preflight() -> list[list[str]]:
    return [
        ["kubectl", "config", "get-contexts", "--output", "name"],
        ["kubectl", "--context", CONTEXT, "auth", "can-i", "create", "deployments.apps", "--namespace", NS],
    ]


def login_and_push(root: Path) -> list[list[str]]:
    return [
        ["az", "acr", "login", "--name", "testregistry", "--subscription", SUBSCRIPTION, "--expose-token", "--output", "tsv", "--query", "accessToken"],
        ["docker", "login", "testregistry.azurecr.io", "--username", "00000000-0000-0000-0000-000000000000", "--password-stdin"],
        ["az", "acr", "repository", "show", "--name", "testregistry", "--subscription", SUBSCRIPTION, "--image", f"temporal-worker:{IMAGE_TAG}", "--output", "none"],
        ["docker", "buildx", "build", "--platform", "linux/amd64,linux/arm64", "--tag", IMAGE, "--push", "--file", f"{root}/Dockerfile", str(root)],
        digest_lookup(),
    ]  # fmt: skip


def digest_lookup() -> list[str]:
    """What the pushed tag's digest is asked with (after the push, or when the tag is already there)."""
    return [
        "az", "acr", "repository", "show", "--name", "testregistry", "--subscription", SUBSCRIPTION,
        "--image", f"temporal-worker:{IMAGE_TAG}", "--query", "digest", "--output", "tsv",
    ]  # fmt: skip


def rollout() -> list[list[str]]:
    return [
        [*KUBE, "rollout", "status", "deployment/temporal-worker", "--timeout", "5m"],
        [*KUBE, "get", "pods", "--selector", "app.kubernetes.io/instance=temporal-worker", "--output", "wide"],
    ]


def apply(root: Path, name: str) -> list[str]:
    return [*KUBE, *APPLY, "--filename", f"{root}/{name}"]


def drop_last_applied(root: Path, *names: str) -> list[str]:
    """The Secrets just applied lose the annotation in which client-side apply kept their data."""
    files = [argument for name in names for argument in ("--filename", f"{root}/{name}")]
    return [*KUBE, "annotate", *files, "kubectl.kubernetes.io/last-applied-configuration-"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def assert_no_secret_leaked(project: Project, output: str) -> None:
    """No canary secret in any argv, any output line, or any file but the Secret manifests."""
    argv = json.dumps([call["argv"] for call in project.calls()], ensure_ascii=False)
    assert contains_canary(argv) == []
    assert contains_canary(output) == []
    for name, content in project.files().items():
        if name in ("config.env", "acr-secret.yaml", "app-secret.yaml", "temporal-tls-secret.yaml"):
            continue
        assert contains_canary(content.decode("utf-8", "replace")) == [], name


def test_deploy_runs_exactly_these_commands_in_order(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    root = project.root
    assert project.commands() == [
        *preflight(keda=True),
        *login_and_push(root),
        ["kubectl", "--context", CONTEXT, *APPLY, "--filename", f"{root}/namespace.yaml"],
        apply(root, "service-account.yaml"),
        apply(root, "acr-secret.yaml"),
        apply(root, "app-secret.yaml"),
        apply(root, "temporal-tls-secret.yaml"),
        apply(root, "config-map.yaml"),
        apply(root, "network-policy.yaml"),
        apply(root, "deployment.yaml"),
        apply(root, "pod-disruption-budget.yaml"),
        apply(root, "keda-scaledobject.yaml"),
        drop_last_applied(root, *SECRET_FILES),
        # METRICS_SCRAPE=annotations: no PodMonitor or PrometheusRule of an earlier setting stays.
        ["kubectl", "--context", CONTEXT, "api-resources", "--output", "name"],
        [*KUBE, "delete", f"{PODMONITORS},{PROMETHEUSRULES}", "--selector", WORKER, "--ignore-not-found"],
        [*KUBE, "delete", "secrets", "--selector", WORKER, "--field-selector", KEEP_SECRETS, "--ignore-not-found"],
        # CODEC_SERVER_DEPLOY=false: no codec server object of an earlier setting stays.
        [*KUBE, "delete", CODEC_SERVER_KINDS, "--selector", CODEC_SERVER, "--ignore-not-found"],
        *rollout(),
    ]
    for number, name in enumerate(
        ["Checking configuration", "Checking tools and access", "Replaying open workflows", "Rendering manifests",
         "Logging in to ACR", "Building and pushing image", "Creating namespace", "Applying manifests",
         "Waiting for rollout", "Routing new workflows"], start=1
    ):  # fmt: skip
        assert f"[{number}/10] {name} ..." in result.stdout
    assert f"kubectl --context {CONTEXT} --namespace {NS} logs deployment/temporal-worker --follow" in result.stdout
    assert "Initializing worker..." in result.stdout and "Starting worker... Awaiting tasks." in result.stdout
    assert_no_secret_leaked(project, result.output)


def test_the_acr_token_reaches_docker_only_on_stdin(project: Project) -> None:
    project.write_config(MINIMAL_CONFIG)
    assert project.run("deploy.sh").returncode == 0
    [docker_login] = [call for call in project.calls() if call["tool"] == "docker" and call["argv"][0] == "login"]
    assert docker_login["stdin"].strip() == ACR_TOKEN_CANARY
    assert "--password-stdin" in docker_login["argv"]


def test_the_namespace_is_created_idempotently_and_enforces_the_restricted_profile(project: Project) -> None:
    project.write_config(MINIMAL_CONFIG)
    assert project.run("deploy.sh").returncode == 0
    [namespace_apply] = [call["argv"] for call in project.calls() if call["argv"][-1].endswith("namespace.yaml")]
    assert namespace_apply[:6] == ["--context", CONTEXT, *APPLY], "kubectl apply: creates it or leaves it be"
    [namespace] = project.manifest("namespace.yaml")
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == NS
    assert namespace["metadata"]["labels"] == {"pod-security.kubernetes.io/enforce": "restricted"}


def test_a_minimal_deploy_applies_only_what_is_configured(project: Project) -> None:
    project.write_config(MINIMAL_CONFIG)
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    applied = [command[-1].rsplit("/", 1)[-1] for command in project.commands() if "apply" in command]
    assert applied == [
        "namespace.yaml",
        "app-secret.yaml",
        "temporal-tls-secret.yaml",
        "config-map.yaml",
        "network-policy.yaml",
        "deployment.yaml",
        "pod-disruption-budget.yaml",
    ], "the Secrets are applied (empty) so that a removed secret leaves the cluster too"


def test_az_acr_build_replaces_docker(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "BUILD_MODE": "acr"})
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    commands = project.commands()
    assert not [command for command in commands if command[0] == "docker"]
    assert [
        "az", "acr", "build", "--registry", "testregistry", "--subscription", SUBSCRIPTION,
        "--image", f"temporal-worker:{IMAGE_TAG}", "--platform", "linux/amd64",
        "--file", f"{project.root}/Dockerfile", str(project.root),
    ] in commands  # fmt: skip
    assert "Not needed: az acr build pushes with your az login." in result.stdout


def test_an_image_already_in_acr_is_not_rebuilt_and_runs_by_the_registrys_digest(project: Project) -> None:
    """The tag may have been pushed again since: the pods run what the registry has under it now, by digest."""
    project.write_config(MINIMAL_CONFIG)
    other_digest = "sha256:" + "0f" * 32
    result = project.run("deploy.sh", STUB_IMAGE_EXISTS="1", STUB_IMAGE_DIGEST=other_digest)
    assert result.returncode == 0, result.output
    assert not [command for command in project.commands() if command[:3] == ["docker", "buildx", "build"]]
    assert "is already in ACR; not rebuilding" in result.stdout
    assert digest_lookup() in project.commands()
    [container] = project.manifest("deployment.yaml")[0]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{IMAGE}@{other_digest}"


def test_the_deployment_runs_the_pushed_image_by_digest(project: Project) -> None:
    project.write_config(MINIMAL_CONFIG)
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    commands = project.commands()
    pushed = commands.index(
        ["docker", "buildx", "build", "--platform", "linux/amd64,linux/arm64", "--tag", IMAGE, "--push",
         "--file", f"{project.root}/Dockerfile", str(project.root)]
    )  # fmt: skip
    assert commands.index(digest_lookup()) == pushed + 1, "the digest is the registry's, asked after the push"
    deployment = project.manifest("deployment.yaml")[0]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == PINNED_IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent", "a digest cannot name other bytes than the node has"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == IMAGE_TAG
    assert f"env APP_IMAGE={PINNED_IMAGE} {project.root}/generate-k8s-manifests.sh" in result.stdout


def test_a_digest_the_registry_does_not_report_stops_the_deploy(project: Project) -> None:
    project.write_config(MINIMAL_CONFIG)
    result = project.run("deploy.sh", STUB_IMAGE_DIGEST="")
    assert result.returncode == 1
    assert "ACR reported no digest for" in result.stderr
    assert 'step 6/10 "Building and pushing image" failed' in result.stderr
    assert not [command for command in project.commands() if "apply" in command], "nothing was applied"


def test_an_app_image_pinned_by_digest_is_deployed_as_it_is(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "IMAGE_TAG": "", "APP_IMAGE": PINNED_IMAGE})
    result = project.run("deploy.sh", STUB_IMAGE_EXISTS="1")
    assert result.returncode == 0, result.output
    commands = project.commands()
    assert not [
        command for command in commands if command[:2] in (["docker", "buildx"], ["az", "acr"]) and "build" in command
    ]
    assert [
        "az", "acr", "repository", "show", "--name", "testregistry", "--subscription", SUBSCRIPTION,
        "--image", f"temporal-worker@{IMAGE_DIGEST}", "--output", "none",
    ] in commands  # fmt: skip
    assert "APP_IMAGE names a digest" in result.stdout
    [container] = project.manifest("deployment.yaml")[0]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == PINNED_IMAGE


def test_an_app_image_pinned_by_a_digest_that_is_not_in_acr_stops_the_deploy(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "IMAGE_TAG": "", "APP_IMAGE": PINNED_IMAGE})
    result = project.run("deploy.sh")
    assert result.returncode == 1
    assert f"{PINNED_IMAGE} is not in ACR" in result.stderr
    assert "Hint: APP_IMAGE names a digest" in result.stderr
    assert not [command for command in project.commands() if "apply" in command]


def test_secrets_are_applied_server_side_and_lose_their_client_side_annotation(project: Project) -> None:
    """Client-side apply kept a Secret's data in kubectl.kubernetes.io/last-applied-configuration; server-side
    apply writes none, and the Secrets applied are cleared of one left by an earlier client-side apply."""
    project.write_config(FULL_CONFIG)
    assert project.run("deploy.sh").returncode == 0
    applies = [command for command in project.commands() if "apply" in command]
    assert applies and all(command[command.index("apply") :][:4] == APPLY for command in applies)
    [annotate] = [command for command in project.commands() if "annotate" in command]
    assert annotate == drop_last_applied(project.root, *SECRET_FILES)
    assert project.commands().index(annotate) > max(project.commands().index(command) for command in applies)


def test_dry_run_prints_every_command_and_changes_nothing(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    before = project.files()
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert project.commands() == [], "nothing reached Azure, Docker or the cluster"
    assert project.files() == before, "no manifest was written next to the scripts"
    assert not list(project.home.glob("temporal-aks-*")), "the dry run's temporary manifests are gone"
    printed = result.stdout
    for command in [
        "docker buildx version",
        f"az account show --subscription {SUBSCRIPTION}",
        "kubectl config get-contexts --output name",
        f"az acr login --name testregistry --subscription {SUBSCRIPTION} --expose-token --output tsv --query accessToken | docker login testregistry.azurecr.io",
        f"docker buildx build --platform linux/amd64,linux/arm64 --tag {IMAGE} --push",
        f"kubectl --context {CONTEXT} apply --server-side --field-manager=temporal-aks --force-conflicts --filename {project.home}/temporal-aks-dry-run.",
        f"kubectl --context {CONTEXT} --namespace {NS} apply --server-side --field-manager=temporal-aks --force-conflicts --filename",
        f"az acr repository show --name testregistry --subscription {SUBSCRIPTION} --image temporal-worker:{IMAGE_TAG} --query digest --output tsv",
        "(dry run: a real run renders the manifests again with the image's digest",
        f"kubectl --context {CONTEXT} --namespace {NS} rollout status deployment/temporal-worker --timeout 5m",
    ]:  # fmt: skip
        assert command in printed
    assert "Rendered manifests for" in printed, "the dry run rendered (and so validated) the manifests"
    assert_no_secret_leaked(project, result.output)


def python_starts(project: Project, log: Path) -> list[str]:
    """Each Python process the scripts started: its program (relative to the copy) and first argument."""
    starts = [line.split()[:2] for line in log.read_text().splitlines()]
    return [f"{Path(program).relative_to(project.root)} {argument}" for program, argument in starts]


@pytest.mark.parametrize(
    ("arguments", "planned"),
    [
        (("deploy.sh", "--dry-run"), ["deploy/plan.py values", "deploy/rollout.py gate"]),
        # After the push, the manifests are rendered again with the image's digest (generate-k8s-manifests.sh).
        (("deploy.sh",), ["deploy/plan.py values", "deploy/rollout.py gate", "deploy/plan.py render"]),
        (("patch.sh", "--dry-run"), ["deploy/plan.py values", "deploy/rollout.py gate"]),
        (("patch.sh", "--dry-run", "--config-only"), ["deploy/plan.py values"]),
    ],
    ids=["deploy-dry-run", "deploy", "patch-dry-run", "patch-config-only-dry-run"],
)
def test_one_python_call_plans_the_deploy_and_only_the_replay_gate_and_the_digest_render_add_one(
    project: Project, arguments: tuple[str, ...], planned: list[str]
) -> None:
    """The configuration is read, checked and rendered once (deploy/plan.py); bash derives nothing by calling
    Python again. Counted with a .venv whose python logs every start, not timed."""
    log = counting_venv(project.root)
    project.write_config(FULL_CONFIG)
    result = project.run(*arguments)
    assert result.returncode == 0, result.output
    assert python_starts(project, log) == planned


def test_dry_run_still_stops_on_a_bad_configuration(project: Project) -> None:
    project.write_config({**MINIMAL_CONFIG, "REPLICAS": "many"})
    result = project.run("deploy.sh", "--dry-run")
    assert result.returncode == 2
    assert 'step 1/10 "Checking configuration" failed (exit status 2)' in result.stderr
    assert "REPLICAS='many': must be a whole number" in result.stderr
    assert project.commands() == []


@pytest.mark.parametrize(
    ("failing", "step"),
    [
        ("az acr login", '5/10 "Logging in to ACR"'),
        ("docker buildx build", '6/10 "Building and pushing image"'),
        ("namespace.yaml", '7/10 "Creating namespace"'),
        ("deployment.yaml", '8/10 "Applying manifests"'),
        ("rollout status", '9/10 "Waiting for rollout"'),
    ],
)
def test_a_failing_step_stops_the_script_with_its_name_and_a_hint(project: Project, failing: str, step: str) -> None:
    project.write_config(FULL_CONFIG)
    result = project.run("deploy.sh", STUB_FAIL=failing)
    assert result.returncode == 1
    assert f"deploy.sh: step {step} failed (exit status 1)." in result.stderr
    assert "Hint: " in result.stderr
    commands = [" ".join(command) for command in project.commands()]
    failed_at = next(index for index, command in enumerate(commands) if failing in command)
    assert failed_at == len(commands) - 1, "nothing runs after the failing command"
    assert_no_secret_leaked(project, result.output)


def test_a_failed_rollout_hints_at_image_pulls_and_logs(project: Project) -> None:
    project.write_config({**FULL_CONFIG, "RESOURCE_GROUP": "rg-test"})
    result = project.run("deploy.sh", STUB_FAIL="rollout status")
    assert f"az aks update --resource-group rg-test --name {CONTEXT} --attach-acr testregistry" in result.stderr
    assert f"kubectl --context {CONTEXT} --namespace {NS} logs deployment/temporal-worker" in result.stderr


def test_preflight_reports_every_problem_at_once(project: Project) -> None:
    project.write_config({**FULL_CONFIG, "AKS_CLUSTER_NAME": "missing-context"})
    project.make_bin(stub_tools=("kubectl",))
    result = project.run("deploy.sh")
    assert result.returncode == 1
    assert "az (Azure CLI) not found" in result.stderr
    assert "docker not found" in result.stderr
    assert "kubectl: no context named missing-context" in result.stderr
    assert "az aks get-credentials --resource-group rg-test --name missing-context" in result.stderr
    assert 'step 2/10 "Checking tools and access" failed' in result.stderr
    assert [command[0] for command in project.commands()] == ["kubectl"], "no build, push or apply"


def test_preflight_checks_the_login_the_registry_and_keda(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    result = project.run("deploy.sh", STUB_FAIL="az account show\nget crd")
    assert result.returncode == 1
    assert f"Azure: not logged in, or no access to subscription {SUBSCRIPTION}" in result.stderr
    assert "KEDA_ENABLED=true but KEDA is not installed" in result.stderr


@pytest.mark.parametrize(
    ("scrape", "crds", "objects"),
    [
        ("podmonitor", ["podmonitors.azmonitoring.coreos.com"], ["pod-monitor.yaml"]),
        (
            "prometheus-operator",
            ["podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"],
            ["pod-monitor.yaml", "prometheus-rules.yaml"],
        ),
    ],
)
def test_a_pod_monitor_needs_its_crd_and_is_applied_after_the_deployment(
    project: Project, scrape: str, crds: list[str], objects: list[str]
) -> None:
    project.write_config({**MINIMAL_CONFIG, "METRICS_SCRAPE": scrape})
    result = project.run("deploy.sh")
    assert result.returncode == 0, result.output
    assert ["kubectl", "--context", CONTEXT, "get", "crd", *crds, "--output", "name"] in project.commands()
    applied = [command[-1].rsplit("/", 1)[-1] for command in project.commands() if "apply" in command]
    assert applied[-len(objects) :] == objects and applied.index("deployment.yaml") < applied.index(objects[0])

    missing = project.run("deploy.sh", STUB_FAIL="get crd")
    assert missing.returncode == 1
    assert f"METRICS_SCRAPE={scrape} but the cluster has no" in missing.stderr


def test_patch_rebuilds_pushes_and_sets_the_image(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    result = project.run("patch.sh")
    assert result.returncode == 0, result.output
    assert project.commands() == [
        *preflight(keda=True),
        *login_and_push(project.root),
        [*KUBE, "set", "image", "deployment/temporal-worker", f"worker={PINNED_IMAGE}"],
        *rollout(),
    ]
    assert "[7/9] Updating image ..." in result.stdout
    assert_no_secret_leaked(project, result.output)


def test_patch_config_only_applies_configuration_and_restarts(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    result = project.run("patch.sh", "--config-only")
    assert result.returncode == 0, result.output
    root = project.root
    assert project.commands() == [
        *cluster_preflight(),
        apply(root, "acr-secret.yaml"),
        apply(root, "app-secret.yaml"),
        apply(root, "temporal-tls-secret.yaml"),
        apply(root, "config-map.yaml"),
        drop_last_applied(root, *SECRET_FILES),
        ["kubectl", "--context", CONTEXT, "api-resources", "--output", "name"],
        [*KUBE, "delete", f"{PODMONITORS},{PROMETHEUSRULES}", "--selector", WORKER, "--ignore-not-found"],
        [*KUBE, "delete", "secrets", "--selector", WORKER, "--field-selector", KEEP_SECRETS, "--ignore-not-found"],
        # CODEC_SERVER_DEPLOY=false: no codec server object of an earlier setting stays.
        [*KUBE, "delete", CODEC_SERVER_KINDS, "--selector", CODEC_SERVER, "--ignore-not-found"],
        [*KUBE, "rollout", "restart", "deployment/temporal-worker"],
        *rollout(),
    ]
    assert "[4/5] Applying configuration ..." in result.stdout
    assert_no_secret_leaked(project, result.output)


def test_patch_config_only_needs_no_azure_settings(project: Project) -> None:
    config_values = {name: value for name, value in MINIMAL_CONFIG.items() if name != "AZURE_SUBSCRIPTION_ID"}
    project.write_config(config_values)
    project.make_bin(stub_tools=("kubectl",))
    result = project.run("patch.sh", "--config-only")
    assert result.returncode == 0, result.output


def test_patch_dry_run_changes_nothing(project: Project) -> None:
    project.write_config(FULL_CONFIG)
    before = project.files()
    result = project.run("patch.sh", "--dry-run")
    assert result.returncode == 0, result.output
    assert project.commands() == [] and project.files() == before
    assert (
        f"kubectl --context {CONTEXT} --namespace {NS} set image deployment/temporal-worker 'worker={IMAGE}@<digest>'"
        in result.stdout
    ), "the digest is known only after the push"
