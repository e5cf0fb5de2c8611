"""Shared by the deploy-side tests: a throw-away copy of the scripts, stub tools, runs, parsing.

Every test works in its own copy of the scripts (so tests run in parallel and never write next
to the real ones) with a PATH that holds only the stub az/docker/kubectl and the few system
tools the scripts use, and an environment that holds nothing from the developer's shell.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shlex
import shutil
import site
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
STUBS = Path(__file__).resolve().parent / "stubs"
PYTHON = sys.executable
REAL_KUBECTL = shutil.which("kubectl", path=str(Path(PYTHON).parent)) or shutil.which("kubectl")

# The image's modules are the root's *.py: the deploy side imports the app's configuration, and the pre-deploy
# replay check and versioned rollouts (deploy/rollout.py) the app's workflow code.
APP_MODULES = tuple(sorted(path.name for path in REPO.glob("*.py")))
PROJECT_FILES = (
    "source_config.sh",
    "generate-k8s-manifests.sh",
    "deploy.sh",
    "patch.sh",
    "lock-requirements.sh",
    "ensure_venv.sh",
    "deploy",
    "scripts",
    *APP_MODULES,
    "Dockerfile",
    ".dockerignore",
    "requirements.txt",
    "requirements.lock",
)
# Everything the scripts run besides bash builtins, the project's Python and the stubbed tools.
SYSTEM_TOOLS = (
    "bash", "sh", "dirname", "basename", "mktemp", "rm", "mkdir", "chmod", "mv", "cat", "tr", "git",
    "grep", "sed", "cut", "sha256sum", "env",
)  # fmt: skip
STUB_TOOLS = ("az", "docker", "kubectl")
# What CODEC_SERVER_DEPLOY=true renders (its Ingress only with CODEC_SERVER_INGRESS_HOST), written out here so
# that a file the renderer drops or adds is a failing test, not a silently changed expectation.
CODEC_SERVER_FILES = frozenset(
    {
        "codec-server-service-account.yaml",
        "codec-server-secret.yaml",
        "codec-server-config-map.yaml",
        "codec-server-network-policy.yaml",
        "codec-server-deployment.yaml",
        "codec-server-pod-disruption-budget.yaml",
        "codec-server-service.yaml",
        "codec-server-ingress.yaml",
    }
)

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "99999999-8888-7777-6666-555555555555"
CONTEXT = "aks-test"
IMAGE_TAG = "0123abcd"
# What the stub az reports as the pushed image's digest (`az acr repository show --query digest`).
IMAGE_DIGEST = "sha256:" + "5e" * 32

# Canary secrets: none may appear in an argv, an output line or a non-Secret file.
API_KEY_CANARY = 'canary-api-key-7Qx9 "#:$(touch pwned)'
ACR_PASSWORD_CANARY = "canary-acr-password-Zt4w'$HOME"
ACR_TOKEN_CANARY = "canary-acr-token-Lm3k"
CODEC_TOKEN_CANARY = "canary-codec-token-Rb8p"
CANARIES = (API_KEY_CANARY, ACR_PASSWORD_CANARY, ACR_TOKEN_CANARY, CODEC_TOKEN_CANARY)

# A filled-in config.env for a deployment with every feature on.
FULL_CONFIG = {
    "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    "RESOURCE_GROUP": "rg-test",
    "ACR_NAME": "testregistry",
    "AKS_CLUSTER_NAME": CONTEXT,
    "IMAGE_TAG": IMAGE_TAG,
    "TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233",
    "TEMPORAL_NAMESPACE": "ns.acct",
    "TEMPORAL_API_KEY": API_KEY_CANARY,
    "CODEC_SERVER_TOKEN": CODEC_TOKEN_CANARY,
    "ACR_USERNAME": "testregistry",
    "ACR_PASSWORD": ACR_PASSWORD_CANARY,
    "AZURE_CLIENT_ID": CLIENT_ID,
    "KEDA_ENABLED": "true",
    # No Temporal is reachable from the deploy tests but the dev server: the replay check is off unless a test
    # points DEPLOY_TEMPORAL_ADDRESS at one (tests/deploy/test_replay_gate.py).
    "DEPLOY_REPLAY_HISTORIES": "0",
}
# The least a deployment needs: image pulled through --attach-acr, no identity, no KEDA.
MINIMAL_CONFIG = {
    "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    "ACR_NAME": "testregistry",
    "AKS_CLUSTER_NAME": CONTEXT,
    "IMAGE_TAG": IMAGE_TAG,
    "TEMPORAL_ADDRESS": "temporal-frontend.temporal.svc:7233",
    "DEPLOY_REPLAY_HISTORIES": "0",
}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def dotenv_line(name: str, value: str) -> str:
    """NAME="value" that python-dotenv reads back as exactly `value`."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
    return f'{name}="{escaped}"\n'


_runtime_venv: list[Path] = []


def runtime_venv() -> Path:
    """A virtual environment that ensure_venv.sh takes for .venv made from requirements.txt, made once per process.

    Creating a real one (pip installing requirements.txt) for every copy of the scripts would take minutes:
    this one is an empty venv whose site-packages point (a .pth file) at this test environment's, which
    holds requirements.txt and more, stamped exactly as ensure_venv.sh stamps an install. The fresh-clone
    test makes a real one.
    """
    if not _runtime_venv:
        venv = Path(tempfile.mkdtemp(prefix="runtime-venv-"))
        atexit.register(shutil.rmtree, venv, True)
        subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
        [site_packages] = venv.glob("lib/python3*/site-packages")
        (site_packages / "test-environment.pth").write_text(site.getsitepackages()[0] + "\n")
        subprocess.run(
            ["bash", "-c", 'source "$0/ensure_venv.sh" && stamp_installed "$1" "$0/requirements.txt"', REPO, venv],
            check=True,
        )
        _runtime_venv.append(venv)
    return _runtime_venv[0]


def counting_venv(project_root: Path) -> Path:
    """Replace the copy's .venv with one whose python logs each start (its arguments, one line each) and then runs
    the runtime venv's python; returns the log. Every Python process the scripts start goes through .venv."""
    venv, real = project_root / ".venv", runtime_venv()
    log = project_root.parent / f"{project_root.name}-python-starts.log"
    venv.unlink()
    (venv / "bin").mkdir(parents=True)
    for stamp in real.glob(".installed-*"):
        shutil.copy2(stamp, venv / stamp.name)
    shim = venv / "bin" / "python"
    python = shlex.quote(str(real / "bin" / "python"))
    shim.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >>{shlex.quote(str(log))}\nexec {python} "$@"\n')
    shim.chmod(0o755)
    return log


class Project:
    """A private copy of the scripts with stub tools; run scripts in it and inspect what they did.

    The copy holds `files` (by default the scripts and what they need) and, unless `venv` is False, a
    `.venv` with the runtime requirements (see runtime_venv).
    """

    def __init__(self, root: Path, files: tuple[str, ...] = PROJECT_FILES, venv: bool = True) -> None:
        self.root = root
        self.log = root.parent / f"{root.name}-calls.jsonl"
        self.bin = root.parent / f"{root.name}-bin"
        self.home = root.parent / f"{root.name}-home"
        root.mkdir(parents=True)
        self.home.mkdir()
        for name in files:
            source = REPO / name
            if not source.exists():
                continue
            if source.is_dir():
                shutil.copytree(source, root / name)
            else:
                shutil.copy2(source, root / name)
        if venv:
            (root / ".venv").symlink_to(runtime_venv())
        self.make_bin(STUB_TOOLS)

    def make_bin(self, stub_tools: tuple[str, ...]) -> None:
        """PATH directory with the given stubs and the system tools the scripts need, nothing else."""
        if self.bin.exists():
            shutil.rmtree(self.bin)
        self.bin.mkdir()
        for tool in SYSTEM_TOOLS:
            found = shutil.which(tool, path="/usr/bin:/bin")
            assert found, f"system tool {tool} is missing"
            (self.bin / tool).symlink_to(found)
        shutil.copy2(STUBS / "stub.py", self.bin / "stub.py")
        for tool in stub_tools:
            shutil.copy2(STUBS / tool, self.bin / tool)

    def write_config(self, values: dict[str, str]) -> None:
        text = "".join(dotenv_line(name, value) for name, value in values.items())
        (self.root / "config.env").write_text(text, encoding="utf-8")

    def environment(self, **extra: str) -> dict[str, str]:
        environment = {
            "PATH": str(self.bin),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "STUB_PYTHON": PYTHON,
            "STUB_LOG": str(self.log),
            "REAL_KUBECTL": REAL_KUBECTL,
            "KUBECONFIG": str(self.home / "no-kubeconfig"),
            "STUB_SUBSCRIPTION": SUBSCRIPTION,
            "STUB_CONTEXTS": f"other-context\n{CONTEXT}",
            "STUB_ACR_TOKEN": ACR_TOKEN_CANARY,
            "STUB_IMAGE_DIGEST": IMAGE_DIGEST,
            "TMPDIR": str(self.home),
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        environment.update(extra)
        return environment

    def run(self, *command: str, **extra: str) -> Result:
        """Run a script of the copy (or a tool on the sandbox PATH) with the given extra environment."""
        if self.log.exists():
            self.log.unlink()
        program = self.root / command[0]
        completed = subprocess.run(
            [str(program) if program.exists() else command[0], *command[1:]],
            cwd=self.root,
            env=self.environment(**extra),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=300,
        )
        return Result(
            completed.returncode,
            completed.stdout.decode("utf-8", "surrogateescape"),
            completed.stderr.decode("utf-8", "surrogateescape"),
        )

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]

    def commands(self) -> list[list[str]]:
        """Calls that reach Azure, Docker or the cluster (not local rendering), as tool + argv."""
        return [
            [call["tool"], *call["argv"]]
            for call in self.calls()
            if not ("--dry-run=client" in call["argv"] or "--local" in call["argv"])
        ]

    def manifest(self, name: str, directory: Path | None = None) -> list[dict]:
        """The documents of a rendered manifest, parsed by kubectl's own YAML decoder."""
        return parse_with_kubectl(Path(directory or self.root) / name)

    def files(self) -> dict[str, bytes]:
        return {
            str(path.relative_to(self.root)): path.read_bytes()
            for path in sorted(self.root.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts and ".venv" not in path.parts
        }


def shown(project: Project, **environment: str) -> dict[str, str]:
    """The values `source_config.sh --show` prints in the copy: defaults, config.env and the environment merged."""
    result = project.run("bash", "source_config.sh", "--show", **environment)
    assert result.returncode == 0, result.output
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if not line.startswith("#"))


def parse_with_kubectl(path: Path) -> list[dict]:
    """Parse a manifest exactly as kubectl does (offline: `kubectl label --local` re-emits it as JSON)."""
    completed = subprocess.run(
        [REAL_KUBECTL, "label", "--local", "--filename", str(path), "parsed-by=kubectl", "--output", "json"],
        capture_output=True,
        check=True,
        env={"PATH": os.environ.get("PATH", ""), "KUBECONFIG": "/nonexistent"},
    )
    documents, decoder, text, position = [], json.JSONDecoder(), completed.stdout.decode(), 0
    while text[position:].strip():  # one JSON object per YAML document
        document, end = decoder.raw_decode(text, position)
        documents.append(document)
        position = end + len(text[end:]) - len(text[end:].lstrip())
    for parsed in documents:
        labels = parsed["metadata"]["labels"]
        del labels["parsed-by"]
        if not labels:
            del parsed["metadata"]["labels"]
    return documents


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader, minus a YAML 1.1 relic: a plain `=` is the string "=" (as in Go's YAML, which
    kubectl writes and Kubernetes reads), not the "value" tag PyYAML cannot construct."""


_Yaml12Loader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def parse_with_pyyaml(path: Path) -> list[dict]:
    return [document for document in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader) if document]


def secret_values(document: dict) -> dict[str, str]:
    return {key: base64.b64decode(value).decode("utf-8") for key, value in document.get("data", {}).items()}


def contains_canary(text: str) -> list[str]:
    return [canary for canary in CANARIES if canary in text]
