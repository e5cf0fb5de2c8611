"""The worker image, built with podman and run the way a Kubernetes node runs its container (tests/image).

Public API:
    machine_problem() -> str | None           why this machine cannot build and run images here (None: it can)
    stand_in_base() -> StandIn                the local stand-in for python:3.11-slim, created once per machine
    build_image(context, base) -> BuiltImage  `podman build` of the Dockerfile with FROM pointed at `base`
    BuiltImage.run(env, ...) -> Container     the image's Cmd (or a command) in its own file system, as UID:GID
    Container.exec(command) -> result         a command inside a running container, as a kubelet exec probe runs
    Unavailable                               raised when a tool or the network the stand-in needs is missing

Why not `podman run`: its OCI runtime cannot start containers on the CI machines (crun fails on cgroups and
setrlimit), and Docker Hub cannot be reached. So the image's file system is mounted with `podman image mount`
and run by image_chroot.sh inside `unshare --mount --pid --fork`: a read-only root (readOnlyRootFilesystem),
/proc, a minimal /dev, a tmpfs /tmp (the Deployment's emptyDir), the image's own Env, WorkingDir, User and Cmd
from `podman image inspect`, the host's network namespace (so the dev server on 127.0.0.1 is reachable) or a
private one with only loopback. The process is PID 1 of its PID namespace, as in a pod: SIGTERM reaches it only
if it handles the signal, so a start.sh that does not exec Python would fail the shutdown test.

The stand-in: python:3.11-slim is a slim Debian (trixie since August 2025, bookworm before) with CPython 3.11 built
from source in /usr/local. The stand-in is Debian bookworm (debootstrap --variant=minbase), the Debian release
whose own Python is 3.11, with that Python in a virtual environment at /usr/local, so `python` and `pip` are
where the real image has them: the same Python version, paths and user tools (groupadd, useradd, bash), not the
same Python build, C library version or size. It also holds this machine's CA bundle with PIP_CERT pointing at it,
because pip inside the build reaches PyPI through this network's TLS-inspecting proxy; that setting belongs to
the stand-in only, never to the Dockerfile. It is kept in podman's image store under a name that changes with
its recipe and the CA bundle, so it is created once per machine (a few minutes) and reused afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from helpers.processes import AppProcess

STANDS_FOR = "python:3.11-slim"
STAND_IN_REPOSITORY = "localhost/temporal-aks-tests/python-3.11-slim-stand-in"
TEST_IMAGE_REPOSITORY = "localhost/temporal-aks-tests/worker"
DEBIAN_SUITE = "bookworm"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian/"
DEBOOTSTRAP_PACKAGES = ("python3", "python3-venv", "ca-certificates")
STAND_IN_CA_FILE = "/etc/ssl/certs/host-ca-bundle.crt"
DEBIAN_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# The parts of python:3.11-slim's configuration the build and the app rely on (the CA setting is the stand-in's own).
STAND_IN_CHANGES = (
    "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
# Change this when the recipe changes: it is part of the stand-in's name, so every machine makes a new one.
STAND_IN_RECIPE = f"1 {DEBIAN_SUITE} minbase {','.join(DEBOOTSTRAP_PACKAGES)} venv:/usr/local {STAND_IN_CHANGES}"
CHROOT_SCRIPT = Path(__file__).resolve().parent / "image_chroot.sh"
LOCK_FILE = Path(tempfile.gettempdir()) / "temporal-aks-image-tests.lock"
# The tools, by the Debian package that has them.
TOOLS = {"podman": "podman", "unshare": "util-linux", "nsenter": "util-linux", "setpriv": "util-linux",
         "mount": "mount", "ip": "iproute2", "chroot": "coreutils", "tar": "tar"}  # fmt: skip
LEFTOVER_AGE_SECONDS = 6 * 3600
DEBOOTSTRAP_TIMEOUT_SECONDS = 1800
BUILD_TIMEOUT_SECONDS = 1200


class Unavailable(Exception):
    """This machine cannot build or run the image (a tool or the network is missing); the tests skip."""


def machine_problem() -> str | None:
    """Why the image tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "the image tests need root (podman image mount, mount namespaces, chroot): run them as root, as CI does"
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        packages = " ".join(dict.fromkeys(TOOLS[tool] for tool in missing))
        return f"{', '.join(missing)} not found: apt-get install {packages} (.ci/run installs podman and debootstrap)"
    probe = _run(["unshare", "--mount", "--pid", "--net", "--fork", "--", "true"])
    if probe.returncode != 0:
        return f"this machine cannot create mount, PID and network namespaces: {probe.stderr.strip()}"
    info = _run(["podman", "info", "--format", "{{.Store.GraphDriverName}}"])
    if info.returncode != 0:
        return f"podman cannot use its image store here: {_tail(info.stderr)}"
    return None


# ---------------------------------------------------------------- the stand-in base


@dataclass(frozen=True)
class StandIn:
    """The base image the test build uses instead of python:3.11-slim."""

    name: str
    """Its local name, for the Dockerfile's BASE_IMAGE build argument."""
    created_seconds: float | None
    """How long creating it took in this run; None when it was already in the image store."""

    @property
    def summary(self) -> str:
        how = "cached" if self.created_seconds is None else f"created in {self.created_seconds:.0f} s"
        return f"stand-in for {STANDS_FOR}: {self.name} ({how})"


def stand_in_base() -> StandIn:
    """The stand-in base image, created when this machine has none of the current recipe (one run at a time)."""
    ca_bundle = host_ca_bundle()
    key = hashlib.sha256(STAND_IN_RECIPE.encode() + (ca_bundle.read_bytes() if ca_bundle else b"")).hexdigest()
    name = f"{STAND_IN_REPOSITORY}:{DEBIAN_SUITE}-{key[:12]}"
    if _image_exists(name):
        return StandIn(name, None)
    with _machine_lock():
        if _image_exists(name):  # another run made it while this one waited
            return StandIn(name, None)
        started = time.monotonic()
        _create_stand_in(name, ca_bundle)
        _remove_other_tags(STAND_IN_REPOSITORY, keep=name)
        return StandIn(name, time.monotonic() - started)


def host_ca_bundle() -> Path | None:
    """The CA bundle this machine's pip and Python trust (it may hold a TLS-inspecting proxy's CA)."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), DEBIAN_CA_BUNDLE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def debian_mirror() -> tuple[str, dict[str, str]]:
    """The Debian mirror apt uses here for bookworm main (and apt's HTTP proxy, as debootstrap's environment)."""
    mirror = DEFAULT_DEBIAN_MIRROR
    if shutil.which("apt-get"):
        targets = _run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE) $(COMPONENT)"])
        for line in targets.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1:] == [DEBIAN_SUITE, "main"]:
                mirror = parts[0]
                break
    proxy_environment = {}
    if shutil.which("apt-config"):
        shown = _run(["apt-config", "shell", "PROXY", "Acquire::http::Proxy"]).stdout.strip()
        match = re.fullmatch(r"PROXY='(.+)'", shown)
        if match:
            proxy_environment["http_proxy"] = match.group(1)
    return mirror, proxy_environment


def _create_stand_in(name: str, ca_bundle: Path | None) -> None:
    debootstrap = shutil.which("debootstrap")
    if not debootstrap:
        raise Unavailable(f"debootstrap is not installed and there is no stand-in for {STANDS_FOR}: install it")
    mirror, proxy_environment = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="temporal-aks-stand-in-", dir="/var/tmp") as work:
        rootfs = Path(work) / "rootfs"
        # In a private mount namespace: whatever debootstrap mounts in the target disappears with it, even on failure.
        created = _run(
            ["unshare", "--mount", "--propagation", "private", "--", debootstrap, "--variant=minbase",
             f"--include={','.join(DEBOOTSTRAP_PACKAGES)}", DEBIAN_SUITE, str(rootfs), mirror],
            env=os.environ | proxy_environment,
            timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
        )  # fmt: skip
        if created.returncode != 0:
            output = _tail(created.stdout + created.stderr)
            raise Unavailable(f"debootstrap could not create the stand-in for {STANDS_FOR} from {mirror}: {output}")
        venv = ["chroot", str(rootfs), "/usr/bin/python3", "-m", "venv", "/usr/local"]
        _check(_run(venv), "python3 -m venv /usr/local")
        for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        for script in (rootfs / "usr/local/bin").glob("[Aa]ctivate*"):
            script.unlink()
        changes = list(STAND_IN_CHANGES)
        if ca_bundle:
            shutil.copyfile(ca_bundle, rootfs / STAND_IN_CA_FILE.lstrip("/"))
            changes.append(f"ENV PIP_CERT={STAND_IN_CA_FILE}")
        archive = Path(work) / "rootfs.tar"
        _check(_run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(archive), "."]), "tar")
        change_arguments = [argument for change in changes for argument in ("--change", change)]
        _check(_run(["podman", "import", *change_arguments, str(archive), name], timeout=600), "podman import")


# ---------------------------------------------------------------- the image


@dataclass
class BuiltImage:
    """An image built from the Dockerfile; `mount()` before `run()`, `remove()` at the end."""

    name: str
    base: StandIn
    build_seconds: float
    config: dict
    """The image's configuration from `podman image inspect`: Env, User, WorkingDir, Cmd, ..."""
    size: int
    base_size: int
    root: Path | None = None

    @property
    def environment(self) -> dict[str, str]:
        return dict(entry.split("=", 1) for entry in self.config.get("Env") or [])

    @property
    def user(self) -> str:
        return self.config.get("User") or ""

    @property
    def summary(self) -> str:
        megabytes = 1_000_000
        return (
            f"image: {self.size / megabytes:.0f} MB = base {self.base_size / megabytes:.0f} MB + app layers "
            f"{(self.size - self.base_size) / megabytes:.0f} MB; build {self.build_seconds:.0f} s; {self.base.summary}"
        )

    def mount(self) -> Path:
        mounted = _check(_run(["podman", "image", "mount", self.name]), "podman image mount")
        self.root = Path(mounted.stdout.strip())
        return self.root

    def remove(self) -> None:
        _run(["podman", "image", "umount", "--force", self.name])
        _run(["podman", "rmi", "--force", self.name], timeout=300)
        self.root = None

    def numeric_user(self) -> tuple[int, int]:
        """The image's USER as numbers, as the runtime and runAsNonRoot need it."""
        match = re.fullmatch(r"(\d+):(\d+)", self.user)
        if not match:
            raise ValueError(f"the image's USER is {self.user!r}, not UID:GID")
        return int(match.group(1)), int(match.group(2))

    def home_of(self, uid: int) -> str:
        """HOME as container runtimes set it: the user's entry in the image's /etc/passwd, else /."""
        assert self.root, "mount() first"
        for line in (self.root / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) >= 6 and fields[2] == str(uid):
                return fields[5]
        return "/"

    def run(
        self,
        env: Mapping[str, str],
        work_dir: Path,
        command: Sequence[str] | None = None,
        own_network: bool = False,
    ) -> Container:
        """Start the image's Cmd (or `command`) with `env` as its whole environment; see Container."""
        assert self.root, "mount() first"
        uid, gid = self.numeric_user()
        new_root = work_dir / f"root-{uuid.uuid4().hex[:8]}"
        new_root.mkdir()
        arguments = [
            shutil.which("unshare") or "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            *(["--net"] if own_network else []),
            "--",
            str(CHROOT_SCRIPT),
            *(["--own-network"] if own_network else []),
            str(self.root),
            str(new_root),
            str(uid),
            str(gid),
            self.config.get("WorkingDir") or "/",
            "--",
            *(command or self.config["Cmd"]),
        ]
        return Container(arguments, dict(env), uid, gid)


class Container(AppProcess):
    """A process tree in the image's file system; its first process is PID 1 of its own PID namespace."""

    def __init__(self, arguments: list[str], env: dict[str, str], uid: int, gid: int) -> None:
        super().__init__(arguments, env, Path("/"))
        self.env, self.uid, self.gid = env, uid, gid

    @property
    def init_pid(self) -> int:
        """The host's process id of the container's PID 1 (the child `unshare --fork` started)."""
        children_file = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = children_file.read_text().split() if children_file.exists() else []
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise AssertionError(f"the container's first process did not start; output:\n{self.output}")

    def stop(self) -> None:
        """Kill it at once: the PID namespace ends with its PID 1, and the mounts with the namespace."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def signal(self, signal_number: int) -> None:
        """Signal the container's PID 1, as the runtime does when Kubernetes stops a pod."""
        os.kill(self.init_pid, signal_number)

    def exec(self, command: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `command` inside the container (its mount and PID namespaces, root, working directory and user,
        the container's environment), the way the kubelet runs an exec probe."""
        arguments = [
            "setpriv", "--no-new-privs", "--", "nsenter", "--target", str(self.init_pid), "--mount", "--pid",
            "--root", "--wd", "--setuid", str(self.uid), "--setgid", str(self.gid), "--", *command,
        ]  # fmt: skip
        return _run(arguments, env=self.env, timeout=timeout)


def build_image(context: Path, base: StandIn) -> BuiltImage:
    """`podman build` of context/Dockerfile with BASE_IMAGE=base, under a unique name; AssertionError if it fails."""
    _remove_leftovers()
    name = f"{TEST_IMAGE_REPOSITORY}:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    # --layers=false: one layer on top of the base and no intermediate images to clean up; --force-rm: no
    # working container left behind by a failed build; --pull=never: no registry is asked for anything.
    built = _run(
        ["podman", "build", "--isolation=chroot", "--network=host", "--pull=never", "--layers=false", "--force-rm",
         "--build-arg", f"BASE_IMAGE={base.name}", "--label", f"temporal-aks-tests.created={int(time.time())}",
         "--tag", name, str(context)],
        timeout=BUILD_TIMEOUT_SECONDS,
    )  # fmt: skip
    build_seconds = time.monotonic() - started
    if built.returncode != 0:
        output = _tail(built.stdout + built.stderr, 40)
        raise AssertionError(f"podman build failed (exit {built.returncode}):\n{output}")
    inspected = _inspect(name)
    return BuiltImage(name, base, build_seconds, inspected["Config"], inspected["Size"], _inspect(base.name)["Size"])


def _inspect(name: str) -> dict:
    return json.loads(_check(_run(["podman", "image", "inspect", name]), "podman image inspect").stdout)[0]


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _image_exists(name: str) -> bool:
    return _run(["podman", "image", "exists", name]).returncode == 0


def _remove_other_tags(repository: str, keep: str) -> None:
    listed = _run(["podman", "images", "--filter", f"reference={repository}", "--format", "{{.Repository}}:{{.Tag}}"])
    for name in set(listed.stdout.split()) - {keep}:
        _run(["podman", "rmi", name])  # fails harmlessly while another run still builds on it


def _remove_leftovers() -> None:
    """Images of test runs that were killed before their clean-up (older than LEFTOVER_AGE_SECONDS)."""
    listed = _run(
        ["podman", "images", "--filter", f"reference={TEST_IMAGE_REPOSITORY}", "--format",
         '{{.Repository}}:{{.Tag}} {{index .Labels "temporal-aks-tests.created"}}'],
    )  # fmt: skip
    for line in listed.stdout.splitlines():
        name, _, created = line.partition(" ")
        if created.isdigit() and time.time() - int(created) > LEFTOVER_AGE_SECONDS:
            _run(["podman", "image", "umount", "--force", name])
            _run(["podman", "rmi", "--force", name])


def _run(
    arguments: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(arguments),
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _check(completed: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if completed.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {completed.returncode}): {_tail(completed.stdout + completed.stderr)}")
    return completed


def _tail(text: str, lines: int = 10) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
