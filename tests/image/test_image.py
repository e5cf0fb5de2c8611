"""The worker image, built from the Dockerfile and run the way the cluster runs it.

Marked `image` (skip with `./test.sh -m "not image"`): it builds the image with podman (about a minute) and,
the first time on a machine, creates the stand-in base (a few minutes; see helpers/image.py). It skips, saying
why, where podman, debootstrap, root or namespaces are missing; .ci/run installs the tools.

The base is a stand-in: python:3.11-slim cannot be pulled here, so the Dockerfile's BASE_IMAGE points at a local
Debian bookworm image with Python 3.11 in /usr/local (helpers/image.py says what it is and is not). Everything
above the FROM line is the real Dockerfile, built from a copy of this checkout with decoys planted where a
developer's secrets and tools live, and run with the configuration, user, probes and grace period of the
Deployment that generate-k8s-manifests.sh renders.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import config

from helpers.azurite import AZURITE_BLOB, AZURITE_MISSING, Azurite
from helpers.deploy_harness import CLIENT_ID, MINIMAL_CONFIG, REPO, Project, secret_values
from helpers.image import BuiltImage, Container, Unavailable, build_image, machine_problem, stand_in_base
from helpers.processes import base_environment, free_port

pytestmark = [pytest.mark.image, pytest.mark.slow]

# The rendered ConfigMap sets LOG_FORMAT=json: the lines people grep for are the `message` of a JSON line.
WORKER_STARTING = r'"message": "Initializing worker\.\.\."'
WORKER_READY = r'"message": "Starting worker\.\.\. Awaiting tasks\."'
CANARY = "canary-image-context-Vb7q"
# Planted in the build context: what a developer's checkout holds that must never reach the image.
DECOYS = {
    "config.env": f"TEMPORAL_API_KEY={CANARY}\n",
    "app-secret.yaml": f"stringData:\n  TEMPORAL_API_KEY: {CANARY}\n",
    "deployment.yaml": "kind: Deployment\n",
    ".venv/bin/python": f"#!/bin/sh\n# {CANARY}\n",
    ".temporal/dev-server.db": CANARY,
    ".secrets/client.key": CANARY,
}
# The deploy side (deploy/): it runs on the operator's machine, not in the pod.
DEPLOY_SIDE = {path.name for path in (REPO / "deploy").glob("*.py")}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# The directory pip installs into in python:3.11-slim (and in the stand-in).
SITE_PACKAGES = "usr/local/lib/python3.11/site-packages"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    problem = machine_problem()
    if problem:
        pytest.skip(f"image tests skipped: {problem}")
    try:
        base = stand_in_base()
    except Unavailable as error:
        pytest.skip(f"image tests skipped: {error}")
    built = build_image(build_context(tmp_path_factory.mktemp("context")), base)
    try:
        built.mount()
        yield built
    finally:
        built.remove()


@pytest.fixture(autouse=True)
def report_measurements(request: pytest.FixtureRequest, record_property) -> None:
    """Every image test reports the image size, the build time and the stand-in (printed once at the end)."""
    if "image" in request.fixturenames:
        record_property("measured", request.getfixturevalue("image").summary)


@pytest.fixture
def run_container(tmp_path: Path) -> Iterator:
    started: list[Container] = []

    def start(image: BuiltImage, pod: Pod, **arguments) -> Container:
        container = image.run(pod.env, tmp_path, **arguments)
        started.append(container)
        return container

    yield start
    for container in started:
        container.stop()


def build_context(directory: Path) -> Path:
    """A copy of this checkout as `docker build .` sees it, plus the decoys."""
    skipped = shutil.ignore_patterns(".git", ".venv*", ".temporal", "__pycache__", ".*_cache", "node_modules")
    context = directory / "temporal-aks"
    shutil.copytree(REPO, context, ignore=skipped, symlinks=True)
    for name, text in DECOYS.items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(text)
    return context


@dataclass
class Pod:
    """What the rendered Deployment gives the worker container."""

    container: dict
    spec: dict
    env: dict[str, str]


def rendered_pod(image: BuiltImage, directory: Path, **config: str) -> Pod:
    """The worker container of the Deployment generate-k8s-manifests.sh renders for `config`, and its environment:
    the image's Env, overridden by the ConfigMap and the app Secret (envFrom) and the container's own env."""
    project = Project(directory / "project")
    project.write_config(MINIMAL_CONFIG | free_ports() | config)
    rendered = project.run("generate-k8s-manifests.sh")
    assert rendered.returncode == 0, rendered.output
    spec = project.manifest("deployment.yaml")[0]["spec"]["template"]["spec"]
    [container] = spec["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    assert "emptyDir" in volumes.get(mounts.get("/tmp"), {}), "the chroot's tmpfs /tmp stands for an emptyDir at /tmp"
    env = dict(image.environment)
    env |= project.manifest("config-map.yaml")[0].get("data", {})
    env |= secret_values(project.manifest("app-secret.yaml")[0])
    env |= {variable["name"]: variable["value"] for variable in container.get("env", []) if "value" in variable}
    uid, _ = image.numeric_user()
    env.setdefault("HOME", image.home_of(uid))  # as container runtimes do
    return Pod(container, spec, env)


def rendered_codec_server_pod(image: BuiltImage, directory: Path, **config: str) -> Pod:
    """The codec server's container as codec-server-deployment.yaml renders it (CODEC_SERVER_DEPLOY=true), with
    the environment its ConfigMap and Secret give it over the image's."""
    project = Project(directory / "project")
    project.write_config(MINIMAL_CONFIG | free_ports() | {"CODEC_SERVER_DEPLOY": "true"} | config)
    rendered = project.run("generate-k8s-manifests.sh")
    assert rendered.returncode == 0, rendered.output
    spec = project.manifest("codec-server-deployment.yaml")[0]["spec"]["template"]["spec"]
    [container] = spec["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
    assert "emptyDir" in {v["name"]: v for v in spec["volumes"]}[mounts["/tmp"]], "/tmp is an emptyDir"
    env = dict(image.environment)
    env |= project.manifest("codec-server-config-map.yaml")[0].get("data", {})
    env |= secret_values(project.manifest("codec-server-secret.yaml")[0])
    uid, _ = image.numeric_user()
    env.setdefault("HOME", image.home_of(uid))
    return Pod(container, spec, env)


def free_ports() -> dict[str, str]:
    """A free port for every port the pod's configuration names: the container shares this host's network."""
    return {
        variable.name: str(free_port())
        for variable in config.VARIABLES
        if variable.scope in (config.Scope.POD, config.Scope.CODEC_SERVER) and variable.name.endswith("_PORT")
    }


def probe_problem(container: Container, probe: dict, pod: Pod) -> str | None:
    """Why the probe fails against the running container, or None when it passes (as the kubelet decides)."""
    timeout = probe.get("timeoutSeconds", 1)
    if "exec" in probe:
        result = container.exec(probe["exec"]["command"], timeout=timeout + 30)
        return None if result.returncode == 0 else f"exit {result.returncode}: {result.stdout}{result.stderr}"
    if "httpGet" in probe or "tcpSocket" in probe:
        action = probe.get("httpGet") or probe["tcpSocket"]
        port = named_port(action["port"], pod.container)
        host = action.get("host", "127.0.0.1")  # the pod's IP; the container shares this host's network
        if "tcpSocket" in probe:
            try:
                socket.create_connection((host, port), timeout=timeout).close()
            except OSError as error:
                return f"cannot connect to {host}:{port}: {error}"
            return None
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request("GET", action.get("path", "/"))
            status = connection.getresponse().status
        except OSError as error:
            return f"GET {action.get('path', '/')} on {host}:{port}: {error}"
        finally:
            connection.close()
        return None if 200 <= status < 400 else f"GET {action.get('path', '/')} on port {port}: HTTP {status}"
    return f"this test does not know the probe {probe}"


def named_port(port: int | str, container: dict) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    by_name = {entry["name"]: entry["containerPort"] for entry in container.get("ports", []) if "name" in entry}
    return by_name[port]


def mode_problem(path: Path, relative: str, uid: int, gid: int) -> str | None:
    """Why the user uid:gid could change this file or directory (by mode bits and ownership), or None."""
    status = path.lstat()
    if stat.S_ISLNK(status.st_mode):
        return None
    if status.st_uid != 0:
        return f"{relative} is owned by {status.st_uid}, not root"
    if status.st_mode & stat.S_IWOTH or (status.st_gid == gid and status.st_mode & stat.S_IWGRP):
        return f"{relative} is writable by {uid}:{gid} (mode {stat.filemode(status.st_mode)}, group {status.st_gid})"
    return None


# ---------------------------------------------------------------- the image as built


def test_the_user_is_numeric_not_root_and_the_one_the_deployment_runs_as(image: BuiltImage, tmp_path: Path) -> None:
    uid, gid = image.numeric_user()  # runAsNonRoot can only verify a numeric user
    assert uid != 0 and gid != 0
    pod = rendered_pod(image, tmp_path)
    security = pod.spec["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["runAsNonRoot"]) == (uid, gid, True)
    assert pod.container["workingDir"] == image.config["WorkingDir"]


def test_the_app_and_its_dependencies_are_owned_by_root_and_not_writable_by_the_user(image: BuiltImage) -> None:
    uid, gid = image.numeric_user()
    assert image.root
    problems, checked = [], 0
    for top in (image.config["WorkingDir"].lstrip("/"), SITE_PACKAGES):
        for path in [image.root / top, *(image.root / top).rglob("*")]:
            checked += 1
            problem = mode_problem(path, str(path.relative_to(image.root)), uid, gid)
            if problem:
                problems.append(problem)
    assert checked > 100, "the app and the installed packages were found"
    assert problems == []


def test_the_app_directory_holds_only_what_the_allow_list_names(image: BuiltImage) -> None:
    assert image.root
    app = image.root / image.config["WorkingDir"].lstrip("/")
    present = {path.name for path in app.iterdir()}
    app_modules = {path.name for path in REPO.glob("*.py")}
    assert present == app_modules | {"start.sh", "requirements.lock"}
    assert {"worker.py", "health.py", "log_format.py", "config.py", "bootstrap.py"} <= present
    assert not DEPLOY_SIDE & present, "no module of the deploy side is in the image"
    for path in app.iterdir():
        assert CANARY not in path.read_text(errors="replace"), f"{path.name} holds a decoy's content"
    for planted in ("config.env", ".venv", ".secrets", ".temporal", "tests", "docs", "deploy", "scripts", "Dockerfile"):
        assert not (image.root / planted).exists() and not (app / planted).exists()


# ---------------------------------------------------------------- the image as the cluster runs it


def test_the_container_runs_as_the_image_user_as_pid_1_on_a_read_only_root(
    image: BuiltImage, tmp_path, run_container
) -> None:
    """What the other tests rely on: the harness runs the image as a pod would."""
    uid, gid = image.numeric_user()
    script = (
        "import os, pathlib\n"
        "print(os.getuid(), os.getgid(), os.getgroups(), os.getpid(), os.getcwd())\n"
        "pathlib.Path('/tmp/scratch').write_text('the tmp volume is writable')\n"
        "try:\n"
        "    pathlib.Path('/app/new.py').write_text('')\n"
        "except OSError as error:\n"
        "    print('read-only:', error.strerror)\n"
    )
    container = run_container(image, rendered_pod(image, tmp_path), command=["python", "-c", script])
    assert container.wait(timeout=60) == 0, container.output
    assert container.lines == [f"{uid} {gid} [] 1 {image.config['WorkingDir']}", "read-only: Read-only file system"]


def test_the_probes_fail_while_no_worker_polls(image: BuiltImage, tmp_path, run_container) -> None:
    """The probe check below can fail: the same probes against the image's Python doing nothing."""
    pod = rendered_pod(image, tmp_path)
    idle = "import time; print('idle', flush=True); time.sleep(300)"
    container = run_container(image, pod, command=["python", "-c", idle])
    container.wait_for_line("^idle$")
    for name in PROBES:
        if name in pod.container:
            assert probe_problem(container, pod.container[name], pod) is not None, name


def test_the_worker_from_the_image_cmd_completes_a_workflow_and_passes_its_probes(
    image: BuiltImage, dev_server, task_queue, tmp_path, run_container, run_app
) -> None:
    pod = rendered_pod(image, tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    probes = {name: pod.container[name] for name in PROBES if name in pod.container}
    assert probes, "the Deployment has probes"

    worker = run_container(image, pod)
    worker.wait_for_line(WORKER_STARTING)
    worker.wait_for_line(WORKER_READY)
    client = run_app(
        "client.py",
        "--count",
        "1",
        env=base_environment(tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue),
    )
    assert client.wait() == 0, client.output + "\n--- worker:\n" + worker.output
    assert "1 of 1 workflows succeeded" in client.output
    for name, probe in probes.items():
        assert probe_problem(worker, probe, pod) is None, f"{name}: {probe_problem(worker, probe, pod)}"
    assert worker.process.poll() is None, worker.output
    assert "Traceback" not in worker.output


def test_sigterm_stops_the_worker_with_exit_0_within_the_grace_period(
    image: BuiltImage, dev_server, task_queue, tmp_path, run_container
) -> None:
    pod = rendered_pod(image, tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue)
    grace_seconds = pod.spec["terminationGracePeriodSeconds"]
    worker = run_container(image, pod)
    worker.wait_for_line(WORKER_READY)

    worker.signal(signal.SIGTERM)  # to PID 1 of the container, which ignores it unless it handles it
    started = time.monotonic()
    try:
        status = worker.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"still running {grace_seconds}s after SIGTERM: the kubelet would kill it (is Python PID 1, does start.sh "
            f"exec it?); output:\n{worker.output}"
        )
    assert status == 0, worker.output
    assert time.monotonic() - started < grace_seconds
    assert "Traceback" not in worker.output


def test_required_encryption_with_an_unreachable_key_vault_stops_with_one_clear_line(
    image: BuiltImage, tmp_path, run_container
) -> None:
    unreachable = f"https://127.0.0.1:{free_port()}/"
    pod = rendered_pod(
        image,
        tmp_path,
        KEYVAULT_URL=unreachable,
        KEYVAULT_SECRET_NAME="temporal-encryption-key",
        ENCRYPTION_REQUIRED="true",
        KEYVAULT_STARTUP_TIMEOUT_SECONDS="5",
        AZURE_CLIENT_ID=CLIENT_ID,
    )
    # The ConfigMap pins the one credential a pod uses (workload identity), here without its token file: no
    # identity service, no instance-metadata address is asked. The container gets a network of its own with only
    # loopback, besides.
    assert pod.env["AZURE_TOKEN_CREDENTIALS"] == "WorkloadIdentityCredential"
    worker = run_container(image, pod, own_network=True)

    assert worker.wait(timeout=60) != 0, worker.output
    errors = [line for line in worker.lines if line.startswith("ERROR: ")]
    assert len(errors) == 1, worker.output
    assert "Key Vault" in errors[0] and unreachable.rstrip("/") in errors[0], worker.output
    assert "Traceback" not in worker.output
    assert "Starting worker" not in worker.output


# ---------------------------------------------------------------- the codec server as its Deployment runs it

CODEC_TOKEN = "image-codec-token-Hq2m"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if AZURITE_BLOB is None:
        pytest.skip(f"codec server image tests skipped: {AZURITE_MISSING}")
    with Azurite(tmp_path_factory.mktemp("azurite")) as running:
        yield running


def codec_server_pod(image: BuiltImage, tmp_path: Path, azurite: Azurite) -> Pod:
    """A codec server for payload storage (Azurite on this host's loopback, which the container shares)."""
    return rendered_codec_server_pod(
        image,
        tmp_path,
        PAYLOAD_STORAGE_CONNECTION_STRING=azurite.connection_string,
        PAYLOAD_STORAGE_CONTAINER=azurite.container,
        CODEC_SERVER_TOKEN=CODEC_TOKEN,
    )


def decode(port: int, token: str) -> int:
    """POST /default/decode of one plain payload with the token; the status."""
    body = b'{"payloads": [{"metadata": {"encoding": "YmluYXJ5L3BsYWlu"}, "data": "aGk="}]}'
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        connection.request("POST", "/default/decode", body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_codec_server_runs_from_the_image_as_its_deployment_says_and_passes_its_probes(
    image: BuiltImage, azurite: Azurite, tmp_path, run_container
) -> None:
    pod = codec_server_pod(image, tmp_path, azurite)
    uid, gid = image.numeric_user()
    security = pod.spec["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid), "its Deployment runs the image's user"
    assert pod.container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod.env["CODEC_SERVER_HOST"] == "0.0.0.0"
    probes = {name: pod.container[name] for name in PROBES}

    server = run_container(image, pod, command=pod.container["command"])
    server.wait_for_line(r'"message": "Codec server listening on http://0\.0\.0\.0:\d+"')
    for name, probe in probes.items():
        assert probe_problem(server, probe, pod) is None, f"{name}: {probe_problem(server, probe, pod)}"
    port = named_port("http", pod.container)
    assert decode(port, CODEC_TOKEN) == 200, server.output
    assert decode(port, "wrong-token") == 401
    assert server.process.poll() is None, server.output
    assert "Traceback" not in server.output and CODEC_TOKEN not in server.output


def test_the_codec_servers_probes_fail_while_it_does_not_listen(
    image: BuiltImage, azurite: Azurite, tmp_path, run_container
) -> None:
    """The probe check above can fail: the same probes against the image's Python doing nothing."""
    pod = codec_server_pod(image, tmp_path, azurite)
    container = run_container(
        image, pod, command=["python", "-c", "import time; print('idle', flush=True); time.sleep(300)"]
    )
    container.wait_for_line("^idle$")
    for name in PROBES:
        assert probe_problem(container, pod.container[name], pod) is not None, name


def test_sigterm_stops_the_codec_server_with_exit_0_within_its_grace_period(
    image: BuiltImage, azurite: Azurite, tmp_path, run_container
) -> None:
    pod = codec_server_pod(image, tmp_path, azurite)
    grace_seconds = pod.spec["terminationGracePeriodSeconds"]
    server = run_container(image, pod, command=pod.container["command"])
    server.wait_for_line("Codec server listening")
    server.signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        status = server.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {grace_seconds}s after SIGTERM; output:\n{server.output}")
    assert status == 0, server.output
    assert time.monotonic() - started < grace_seconds
