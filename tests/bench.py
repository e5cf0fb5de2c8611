"""What encryption, payload storage and operation cost, measured: `./.venv-test/bin/python tests/bench.py`.

    python tests/bench.py            the full run (about 14 minutes on 2 cores)
    python tests/bench.py --quick    tiny sizes and counts: proves the benchmark still runs, measures nothing
    python tests/bench.py --only codec          only the codec rows (2 below; no servers, about 3 minutes)
    python tests/bench.py --only crossover      only the sweep behind the codec's small/large crossover (10 min)
    python tests/bench.py --only worker-peer    only the rows of 9 (about 5 minutes; with --quick, seconds)
    python tests/bench.py --only worker         the rows of 4, 7 and 9: the worker's own (about 7 minutes)

It measures, on this machine, with real parts (run it through the test environment, which has the
`temporal` dev server and the test Key Vault):
  1. end-to-end workflows per second, plain vs encrypted, against one Temporal dev server, in
     interleaved rounds (plain, encrypted, plain, ...), with the median of each and their ratio;
  2. the codec's encode+decode time per payload at several sizes against the samples-python encryption
     codec's shape (tests/helpers/peer_codec.py, same key) and raw `cryptography` AES-GCM, in CPU time of
     the measuring thread, each in a process of its own (their large buffers would otherwise share one
     heap), the contenders' processes taking turns (so other processes on the machine change all alike);
     and at the target sizes, with glibc keeping freed memory (no page faults for any), the same next to
     the copies alone that the protobuf API makes any `PayloadCodec` do (what they cost, no codec can save);
  3. Key Vault requests per key version during an encrypted run with one rotation;
  4. seconds from starting `python worker.py` to `Starting worker... Awaiting tasks.`;
  5. the worker's own throughput on an activity-heavy workload (many short activities at once), with
     WORKER_TUNER=fixed and =resource-based, in interleaved rounds against a real `python worker.py`;
  6. what one Kubernetes probe costs: an HTTP GET of the worker's /readyz (CPU time of the worker process,
     and wall time), and that per pod and hour at the Deployment's probe periods;
  7. the worker's memory: its RSS once polling, and what each workflow in the sticky cache adds;
  8. the round trip of 1, 8 and 32 MiB payloads through payload storage in Azurite (the data converter's
     encode, which uploads, then its decode, which downloads), plain and encrypted; skipped, saying so,
     when Azurite is not installed (.ci/run installs it);
  9. our worker against a bare SDK worker (tests/helpers/bare_worker.py: a `Worker` with YourWorkflow and the
     activities, nothing else) on the same dev server, in interleaved rounds: CPU per workflow, RSS while
     polling, start to polling and the CPU time spent by then, each with its ratio to the bare worker; the
     bare worker with the samples-python-shaped codec (what any codec costs inside the SDK), and ours with
     every optional feature off, with encryption on (the test Key Vault), and with JSON logs and encryption.
  10. `--only codec-auth` (alone, about half a minute): what verifying a sign-in token (OIDC JWT) costs the
     codec server per request with the issuer's keys held, next to decoding a 1 KiB payload, and a whole
     /decode request with the static token and with a token.
The targets it is written against: encrypted/plain >= 0.95; the codec at most 1.0 x the peer at every size
(glibc's defaults below 1 MiB and at 16 MiB, freed memory kept at 1 and 16 MiB); one Key Vault GET per
version plus the refreshes; against the bare SDK worker, RSS while polling at most 1.1 x (features off) and
1.2 x (encryption on), start to polling at most 1.25 x (features off), CPU per workflow at most 1.0 x (JSON
logs and encryption on).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.worker import Worker

REPO_DIR = Path(__file__).resolve().parents[1]
# Run as a file, this lives next to the tests' helpers (tests/ is first on sys.path); the app's modules are at
# the repository's root, which pytest.ini puts on the tests' path the same way.
sys.path.insert(1, str(REPO_DIR))

import crypto_converter  # noqa: E402
from activities import YourActivities  # noqa: E402
from config import PayloadStorageSettings, load_settings  # noqa: E402
from crypto_converter import EncryptionCodec, Plaintext, encrypted_data_converter  # noqa: E402
from keyvault import KeyVaultKeyProvider  # noqa: E402
from payload_storage import PayloadStorage  # noqa: E402
from workflows import YourWorkflow  # noqa: E402

from helpers.azurite import AZURITE_BLOB, AZURITE_MISSING, Azurite  # noqa: E402
from helpers.fake_keyvault import (  # noqa: E402
    FakeKeyVault,
    azure_cli_environment,
    keyvault_environment,
    workload_identity_environment,
)
from helpers.peer_codec import BENCH_KEY_ID, SampleShapedCodec  # noqa: E402
from helpers.processes import DevServer, base_environment, free_port  # noqa: E402  (test helpers)

SECRET = "bench-encryption-key"
POLLING_LINE = "Starting worker... Awaiting tasks."
NONCE_BYTES = 12


MIB = 1024 * 1024


@dataclass(frozen=True)
class Scale:
    workflows_per_round: int
    rounds: int
    payload_sizes: tuple[int, ...]
    codec_seconds_per_size: float
    codec_processes: int
    codec_bound_sizes: tuple[int, ...]
    crossover_sizes: tuple[int, ...]
    crossover_kept_sizes: tuple[int, ...]
    worker_starts: int
    tuner_workflows_per_round: int
    tuner_rounds: int
    http_probes: int
    cached_workflows: int
    storage_sizes: tuple[int, ...]
    storage_round_trips: int
    peer_rounds: int
    peer_workflows: int


FULL = Scale(
    workflows_per_round=200,
    rounds=5,
    payload_sizes=(16, 1024, 64 * 1024, MIB, 16 * MIB),
    codec_seconds_per_size=2.0,
    codec_processes=3,
    codec_bound_sizes=(MIB, 16 * MIB),
    crossover_sizes=tuple(size * 1024 for size in (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)),
    crossover_kept_sizes=(256 * 1024, MIB, 4 * MIB),
    worker_starts=3,
    tuner_workflows_per_round=300,
    tuner_rounds=3,
    http_probes=2000,
    cached_workflows=200,
    storage_sizes=(MIB, 8 * MIB, 32 * MIB),
    storage_round_trips=5,
    peer_rounds=3,
    peer_workflows=200,
)
QUICK = Scale(
    workflows_per_round=3,
    rounds=1,
    payload_sizes=(16, 1024, 128 * 1024),
    codec_seconds_per_size=0.05,
    codec_processes=1,
    codec_bound_sizes=(128 * 1024,),
    crossover_sizes=(4096, 128 * 1024),
    crossover_kept_sizes=(128 * 1024,),
    worker_starts=1,
    tuner_workflows_per_round=3,
    tuner_rounds=1,
    http_probes=20,
    cached_workflows=3,
    storage_sizes=(300 * 1024,),
    storage_round_trips=1,
    peer_rounds=1,
    peer_workflows=3,
)

# The activity-heavy workload: every YourWorkflow runs three activities of this many seconds each.
ACTIVITY_SECONDS = 0.1
TUNERS = {
    "fixed (100 activity slots)": {"WORKER_TUNER": "fixed"},
    "resource-based (CPU and memory targets 0.8)": {"WORKER_TUNER": "resource-based"},
}
# Probes per pod and hour at the Deployment's periods: readiness every 5 s and liveness every 15 s (the
# startup probe only runs at start).
HTTP_PROBES_PER_HOUR = 3600 / 5 + 3600 / 15


# --- 1 and 3: end to end, plain vs encrypted, and Key Vault requests ------------------------------


async def run_round(client: Client, task_queue: str, count: int) -> float:
    """Start `count` workflows, wait for all of them, and return workflows per second."""
    started = time.perf_counter()
    handles = [
        await client.start_workflow(YourWorkflow.run, f"bench-{n}", id=f"bench-{uuid.uuid4()}", task_queue=task_queue)
        for n in range(count)
    ]
    await asyncio.gather(*(handle.result() for handle in handles))
    return count / (time.perf_counter() - started)


async def measure_end_to_end(scale: Scale, dev_server: DevServer, vault: FakeKeyVault, settings) -> dict:
    """Plain and encrypted rounds taking turns on one server; the key is rotated before the last encrypted one."""
    keys = KeyVaultKeyProvider(settings.encryption)
    await keys.start()
    converters = {"plain": DataConverter.default, "encrypted": encrypted_data_converter(keys, Plaintext.REFUSE)}
    try:
        clients = {name: await Client.connect(dev_server.address, data_converter=c) for name, c in converters.items()}
        queues = {name: f"bench-{name}-{uuid.uuid4().hex[:8]}" for name in clients}
        workers = [
            Worker(client, task_queue=queues[name], workflows=[YourWorkflow], activities=YourActivities().all())
            for name, client in clients.items()
        ]
        rates: dict[str, list[float]] = {name: [] for name in clients}
        async with workers[0], workers[1]:
            for name, client in clients.items():
                await run_round(client, queues[name], scale.workflows_per_round)  # warm-up, not counted
            for round_number in range(scale.rounds):
                if round_number == scale.rounds - 1:
                    vault.add_version(SECRET, new_key_value())  # one rotation, picked up by the refresh
                for name, client in clients.items():
                    rates[name].append(await run_round(client, queues[name], scale.workflows_per_round))
        return rates
    finally:
        await keys.close()


def interleave_note(rates: dict[str, list[float]]) -> str:
    plain, encrypted = statistics.median(rates["plain"]), statistics.median(rates["encrypted"])
    return (
        f"| end to end, plain | {plain:.1f} workflows/s | median of {len(rates['plain'])} rounds |\n"
        f"| end to end, encrypted | {encrypted:.1f} workflows/s | median of {len(rates['encrypted'])} rounds |\n"
        f"| encrypted / plain | {encrypted / plain:.3f} | target >= 0.95 |"
    )


# --- 2: the codec against the samples-python-shaped peer and raw AES-GCM ------------------------


class _InMemoryKeys:
    """The codec's key provider without Key Vault, so only the codec itself is timed."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    async def current_key(self) -> tuple[str, bytes]:
        return "bench", self._key

    async def key_for(self, key_id: str) -> bytes:
        return self._key


def cpu_time_per_call(run_batch: Callable[[int], None], seconds: float) -> float:
    """Median CPU seconds per call of `run_batch(n)` (which makes n calls), in batches for about `seconds`.

    CPU time of this thread, not wall time: the machine is shared, and a process waiting for a core is not
    the code being slow.
    """
    batch, samples = 1, []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        started = time.thread_time()
        run_batch(batch)
        samples.append((time.thread_time() - started) / batch)
        if samples[-1] * batch < 0.01:
            batch *= 2
    return statistics.median(samples)


# The codec's two paths, each forced in a process of its own for the crossover sweep (`--only crossover`):
# "<direction> <path>", e.g. "encode large" runs only our codec's encode with every payload on the large path.
DIRECTIONS = ("encode", "decode")
PATH_CONTENDERS = tuple(f"{direction} {path}" for direction in DIRECTIONS for path in ("small", "large"))


def codec_contender_seconds(contender: str, size: int, seconds: float) -> float:
    """CPU seconds per round trip of one `size`-byte payload, for one contender.

    "raw": AES-GCM encrypt+decrypt of the bytes; "ours": our codec's encode+decode of a payload holding them;
    "peer": the same through the samples-python-shaped codec (tests/helpers/peer_codec.py), same key;
    "copies": no cipher, only the copies the protobuf API makes any `PayloadCodec` do in each direction (the
    bytes read out of the payload it is handed, the payload it returns parsed from a buffer); one of
    PATH_CONTENDERS: only our encode or only our decode, every payload on the path named (seconds per call).
    Runs in the process `measure_in_own_process` starts for it, alone: nothing else allocates there.
    """
    key = os.urandom(32)
    data = os.urandom(size)
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=data)
    if contender == "raw":
        raw = AESGCM(key)

        def raw_round_trips(count: int) -> None:
            for _ in range(count):
                nonce = os.urandom(NONCE_BYTES)
                raw.decrypt(nonce, raw.encrypt(nonce, data, b"bench"), b"bench")

        return cpu_time_per_call(raw_round_trips, seconds)
    if contender == "copies":
        wire = payload.SerializeToString()

        def copies_round_trips(count: int) -> None:
            for _ in range(count * 2):  # encode, then decode
                _read_out = payload.data
                _parsed = Payload.FromString(wire)

        return cpu_time_per_call(copies_round_trips, seconds)
    codec: PayloadCodec
    if contender == "peer":
        codec = SampleShapedCodec("bench", key)
    elif contender == "ours":
        codec = EncryptionCodec(_InMemoryKeys(key))
    elif contender in PATH_CONTENDERS:
        direction, path = contender.split()
        threshold = 0 if path == "large" else sys.maxsize
        crypto_converter.LARGE_ENCODE_BYTES = crypto_converter.LARGE_DECODE_BYTES = threshold
        return codec_direction_seconds(EncryptionCodec(_InMemoryKeys(key)), direction, payload, seconds)
    else:
        raise ValueError(f"unknown codec contender {contender!r}")

    async def codec_round_trips(count: int) -> None:
        for _ in range(count):
            await codec.decode(await codec.encode([payload]))

    loop = asyncio.new_event_loop()
    try:
        return cpu_time_per_call(lambda count: loop.run_until_complete(codec_round_trips(count)), seconds)
    finally:
        loop.close()


def codec_direction_seconds(codec: PayloadCodec, direction: str, payload: Payload, seconds: float) -> float:
    """CPU seconds per `codec.encode([payload])`, or per decode of its result ("encode" or "decode")."""
    loop = asyncio.new_event_loop()
    try:
        encrypted = loop.run_until_complete(codec.encode([payload]))

        async def calls(count: int) -> None:
            for _ in range(count):
                if direction == "encode":
                    await codec.encode([payload])
                else:
                    await codec.decode(encrypted)

        return cpu_time_per_call(lambda count: loop.run_until_complete(calls(count)), seconds)
    finally:
        loop.close()


# glibc told to keep what is freed: big buffers come from reused heap memory instead of fresh pages.
KEEP_FREED_MEMORY = {
    "MALLOC_MMAP_THRESHOLD_": str(128 * MIB),
    "MALLOC_TRIM_THRESHOLD_": str(512 * MIB),
    "MALLOC_TOP_PAD_": str(64 * MIB),
}


def measure_codec(scale: Scale) -> list[str]:
    """Encode+decode of one payload through our codec, through the samples-python-shaped peer, and
    encrypt+decrypt of its bytes with raw AES-GCM.

    Each measurement is a process of its own, the contenders taking turns (raw, ours, peer, raw, ...), and
    each result is the median of its processes. Not one process for all: at 1 MiB and more they are bound by
    memory allocation, and in one process the buffers one frees decide whether the other's next buffer is
    reused memory or fresh pages (page faults): raw AES-GCM measured 0.8 ms or 2.6 ms per 1 MiB round
    trip depending on which codec code ran between its batches.

    Fresh pages are most of the time at those sizes on a VM, so at the target sizes the contenders are
    measured again with glibc keeping freed memory, where what is left is the cipher and the copies, next
    to a fourth: the copies alone that the protobuf API makes any `PayloadCodec` do (it is handed and must
    return `Payload` messages). Whatever they cost beyond 11% of raw keeps every codec below 0.9 of raw speed.
    """
    rows = []
    processes = f"median of {scale.codec_processes} processes each, interleaved"
    for size in scale.payload_sizes:
        seconds = median_seconds(("raw", "ours", "peer"), size, scale)
        raw_seconds, ours, peer = seconds["raw"], seconds["ours"], seconds["peer"]
        rows.append(
            f"| codec encode+decode, {human_size(size)} | ours {ours * 1e6:.1f} us, peer {peer * 1e6:.1f} us "
            f"(raw AES-GCM {raw_seconds * 1e6:.1f} us) | ours / peer {ours / peer:.2f} (target <= 1.0); "
            f"{raw_seconds / ours:.2f} of raw speed, +{(ours - raw_seconds) * 1e6:.1f} us; {processes} |"
        )
    settings = " ".join(f"{name}={value}" for name, value in KEEP_FREED_MEMORY.items())
    for size in scale.codec_bound_sizes:
        seconds = median_seconds(("raw", "ours", "peer", "copies"), size, scale, KEEP_FREED_MEMORY)
        raw_seconds, ours, peer, copies = seconds["raw"], seconds["ours"], seconds["peer"], seconds["copies"]
        rows.append(
            f"| codec encode+decode, {human_size(size)}, freed memory kept | ours {ours * 1e6:.1f} us, "
            f"peer {peer * 1e6:.1f} us (raw AES-GCM {raw_seconds * 1e6:.1f} us, the protobuf copies alone "
            f"{copies * 1e6:.1f} us) | ours / peer {ours / peer:.2f} (target <= 1.0); {raw_seconds / ours:.2f} of "
            f"raw speed; the copies alone are {copies / raw_seconds:.0%} of raw (0.9 of raw speed leaves a codec "
            f"11%); `{settings}`, {processes} |"
        )
    return rows


def measure_crossover(scale: Scale) -> list[str]:
    """Our codec's small and large paths, each forced, per size of the sweep: encode alone and decode alone.

    The measurement behind crypto_converter.LARGE_ENCODE_BYTES and LARGE_DECODE_BYTES (`python tests/bench.py
    --only crossover`): each direction's large path starts where it costs less than its small one. Processes
    and turns as `measure_codec`; glibc's defaults (what the image runs) up to `crossover_sizes`, then freed
    memory kept for `crossover_kept_sizes`: above glibc's mmap threshold (128 KiB at first) the defaults
    measure which allocation pattern meets fresh pages, not the path (decode alone measured the large path
    3 times slower at 1 MiB that way, and the round trip the other way round).
    """
    rows = []
    sweeps = [(size, None, "") for size in scale.crossover_sizes]
    sweeps += [(size, KEEP_FREED_MEMORY, ", freed memory kept") for size in scale.crossover_kept_sizes]
    for size, environment, mode in sweeps:
        seconds = median_seconds(PATH_CONTENDERS, size, scale, environment)
        encode, decode = (seconds[f"{direction} large"] / seconds[f"{direction} small"] for direction in DIRECTIONS)
        round_trip = sum(seconds[f"{direction} large"] for direction in DIRECTIONS) / sum(
            seconds[f"{direction} small"] for direction in DIRECTIONS
        )
        rows.append(
            f"| codec paths, {human_size(size)}{mode} | encode: small {seconds['encode small'] * 1e6:.1f} us, "
            f"large {seconds['encode large'] * 1e6:.1f} us; decode: small {seconds['decode small'] * 1e6:.1f} us, "
            f"large {seconds['decode large'] * 1e6:.1f} us | large / small: encode {encode:.2f}, decode "
            f"{decode:.2f}, round trip {round_trip:.2f}; median of {scale.codec_processes} processes each, "
            "interleaved |"
        )
    return rows


def median_seconds(
    contenders: tuple[str, ...], size: int, scale: Scale, environment: dict[str, str] | None = None
) -> dict[str, float]:
    """Each contender's median seconds per call over `scale.codec_processes` processes, taking turns."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(scale.codec_processes):
        for contender, measured in seconds.items():
            measured.append(measure_in_own_process(contender, size, scale.codec_seconds_per_size, environment))
    return {name: statistics.median(measured) for name, measured in seconds.items()}


def measure_in_own_process(
    contender: str, size: int, seconds: float, environment: dict[str, str] | None = None
) -> float:
    """`codec_contender_seconds` in a new Python process, with `environment` added to this one's."""
    program = (
        "import sys, bench; print(bench.codec_contender_seconds(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, contender, str(size), str(seconds)],
        cwd=Path(__file__).resolve().parent,  # `import bench` finds this file; it puts the root on the path itself
        env={**os.environ, **(environment or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(result.stdout.strip().splitlines()[-1])


# --- 5: payload storage round trips through Azurite ----------------------------------------------


async def measure_storage(scale: Scale, directory: Path) -> list[str]:
    """Wall seconds of encode (codec, then upload) + decode (download, then codec) per size, plain and encrypted."""
    if AZURITE_BLOB is None:
        return [f"| payload storage round trips | skipped | {AZURITE_MISSING} |"]
    rows = []
    with Azurite(directory) as azurite:
        storage = PayloadStorage(PayloadStorageSettings(account_url=None, connection_string=azurite.connection_string))
        try:
            external = storage.external_storage()
            converters = {
                "plain": dataclasses.replace(DataConverter.default, external_storage=external),
                "encrypted": dataclasses.replace(
                    encrypted_data_converter(_InMemoryKeys(os.urandom(32)), Plaintext.REFUSE),
                    external_storage=external,
                ),
            }
            for size in scale.storage_sizes:
                seconds: dict[str, list[float]] = {name: [] for name in converters}
                for attempt in range(scale.storage_round_trips + 1):  # the first of each is a warm-up
                    value = f"bench-{attempt}-" + "x" * size  # new bytes each time: a real upload, not a dedup
                    for name, converter in converters.items():
                        started = time.perf_counter()
                        (back,) = await converter.decode(await converter.encode([value]))
                        elapsed = time.perf_counter() - started
                        if back != value:
                            raise RuntimeError(f"payload storage round trip of {size} bytes ({name}) changed the value")
                        if attempt:
                            seconds[name].append(elapsed)
                plain, encrypted = (statistics.median(seconds[name]) for name in ("plain", "encrypted"))
                rows.append(
                    f"| payload storage round trip, {human_size(size)} | {plain * 1000:.0f} ms plain, "
                    f"{encrypted * 1000:.0f} ms encrypted | Azurite on loopback, upload + download, "
                    f"median of {scale.storage_round_trips} |"
                )
        finally:
            await storage.close()
    return rows


def human_size(size: int) -> str:
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= factor:
            return f"{size // factor} {unit}"
    return f"{size} B"


# --- 4: worker start-up ---------------------------------------------------------------------------


def measure_worker_start(scale: Scale, address: str, environment: dict[str, str]) -> list[float]:
    durations = []
    for _ in range(scale.worker_starts):
        env = environment | {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": f"bench-start-{uuid.uuid4().hex}"}
        started = time.perf_counter()
        worker = subprocess.Popen(
            [sys.executable, str(REPO_DIR / "worker.py")], env=env, stdout=subprocess.PIPE, text=True
        )
        assert worker.stdout is not None
        polling = any(line.strip() == "Starting worker... Awaiting tasks." for line in worker.stdout)
        elapsed = time.perf_counter() - started
        worker.terminate()
        worker.communicate(timeout=60)
        if not polling:
            raise RuntimeError(f"worker.py exited with {worker.returncode} before it polled")
        durations.append(elapsed)
    return durations


# --- 5 to 7: the worker process: throughput per tuner, probe cost, memory -------------------------


class WorkerProcess:
    """`python worker.py` as the pod runs it (or another `script` that prints the same line once it polls, such as
    the bare SDK worker), started and stopped around a measurement.

    `start_seconds` is the wall time from starting the process to its "Starting worker... Awaiting tasks." line,
    `cpu_at_ready` the process's CPU time at that moment."""

    def __init__(self, address: str, home: Path, script: Path = REPO_DIR / "worker.py", **variables: str) -> None:
        self.task_queue = f"bench-worker-{uuid.uuid4().hex[:8]}"
        environment = base_environment(home, TEMPORAL_ADDRESS=address, TEMPORAL_TASK_QUEUE=self.task_queue)
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, str(script)],
            env=environment | variables,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        output = []
        for line in self.process.stdout:
            if is_polling_line(line):
                self.start_seconds = time.perf_counter() - started
                self.cpu_at_ready = self.cpu_seconds()
                break
            output.append(line)
        else:
            raise RuntimeError(f"{script.name} exited with {self.process.wait()} before it polled:\n{''.join(output)}")
        # Keep reading what it logs: a full pipe would block the worker's event loop on its next log line.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        for line in _read_lines(f"/proc/{self.process.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc")

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=60)


def is_polling_line(line: str) -> bool:
    """Whether a line of the worker's output is "Starting worker... Awaiting tasks." (text, or with
    LOG_FORMAT=json the message of a JSON line)."""
    if line.startswith("{"):
        return json.loads(line).get("message") == POLLING_LINE
    return line.strip() == POLLING_LINE


async def run_workflows(client: Client, task_queue: str, count: int) -> float:
    """Start `count` YourWorkflows at once, wait for all, and return the seconds it took."""
    started = time.perf_counter()
    handles = await asyncio.gather(
        *(
            client.start_workflow(YourWorkflow.run, f"w-{n}", id=f"bench-{uuid.uuid4()}", task_queue=task_queue)
            for n in range(count)
        )
    )
    await asyncio.gather(*(handle.result() for handle in handles))
    return time.perf_counter() - started


async def measure_tuners(scale: Scale, address: str, home: Path) -> list[str]:
    """Activities per second of one worker process per tuner setting, in interleaved rounds."""
    client = await Client.connect(address)
    activity_rates: dict[str, list[float]] = {name: [] for name in TUNERS}
    for _ in range(scale.tuner_rounds):
        for name, variables in TUNERS.items():
            worker = WorkerProcess(address, home, ACTIVITY_SIMULATED_WORK_SECONDS=str(ACTIVITY_SECONDS), **variables)
            try:
                await run_workflows(client, worker.task_queue, 5)  # warm-up, not counted
                seconds = await run_workflows(client, worker.task_queue, scale.tuner_workflows_per_round)
            finally:
                worker.stop()
            activity_rates[name].append(3 * scale.tuner_workflows_per_round / seconds)
    return [
        f"| worker throughput, {name} | {statistics.median(rates):.0f} activities/s "
        f"({statistics.median(rates) / 3:.1f} workflows/s) | median of {len(rates)} rounds of "
        f"{scale.tuner_workflows_per_round} workflows started at once, 3 activities of {ACTIVITY_SECONDS:g} s each |"
        for name, rates in activity_rates.items()
    ]


def measure_probes(scale: Scale, address: str, home: Path) -> list[str]:
    """CPU time (in the worker) and wall time of one HTTP probe, and the CPU of the probes per pod and hour."""
    health_port = free_port()
    worker = WorkerProcess(address, home, HEALTH_PORT=str(health_port))
    url = f"http://127.0.0.1:{health_port}/readyz"
    try:
        time.sleep(1)  # let start-up work settle
        idle_cpu, idle_started = worker.cpu_seconds(), time.perf_counter()
        time.sleep(2)
        idle_rate = (worker.cpu_seconds() - idle_cpu) / (time.perf_counter() - idle_started)
        walls = []
        cpu_before, started = worker.cpu_seconds(), time.perf_counter()
        for _ in range(scale.http_probes):  # a new connection each time, as the kubelet makes
            probe_started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
            walls.append(time.perf_counter() - probe_started)
        elapsed = time.perf_counter() - started
        http_cpu = max(worker.cpu_seconds() - cpu_before - idle_rate * elapsed, 0.0) / scale.http_probes
    finally:
        worker.stop()
    http_wall = statistics.median(walls)
    return [
        f"| probe: HTTP GET /readyz | {http_cpu * 1e3:.2f} ms CPU, {http_wall * 1e3:.1f} ms | worker's CPU time per "
        f"probe beyond its idle use, mean of {scale.http_probes}; wall: median |",
        f"| probe CPU per pod and hour | {http_cpu * HTTP_PROBES_PER_HOUR:.2f} s HTTP | "
        f"{HTTP_PROBES_PER_HOUR:.0f} HTTP probes (readiness 5 s, liveness 15 s) |",
    ]


async def measure_memory(scale: Scale, address: str, home: Path) -> list[str]:
    """The worker's RSS once polling, and per open workflow held in its sticky cache."""
    metrics_port = free_port()
    # One activity slot and long activities: the workflows stay open, each waiting for its first activity.
    worker = WorkerProcess(
        address,
        home,
        METRICS_PORT=str(metrics_port),
        WORKER_MAX_CONCURRENT_ACTIVITIES="1",
        ACTIVITY_SIMULATED_WORK_SECONDS="600",
        WORKER_SHUTDOWN_TIMEOUT_SECONDS="0",
    )
    try:
        time.sleep(2)
        idle = worker.rss_bytes()
        client = await Client.connect(address)
        for n in range(scale.cached_workflows):
            await client.start_workflow(
                YourWorkflow.run, f"m-{n}", id=f"bench-{uuid.uuid4()}", task_queue=worker.task_queue
            )
        deadline = time.monotonic() + 120
        while cached_workflows(metrics_port) < scale.cached_workflows:
            if time.monotonic() > deadline:
                raise RuntimeError("the workflows did not all reach the sticky cache within 120 s")
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
        loaded = worker.rss_bytes()
    finally:
        worker.stop()
    per_workflow = (loaded - idle) / scale.cached_workflows
    return [
        f"| worker memory, polling | {idle / 2**20:.0f} MiB RSS | `python worker.py` with the SDK, no workflow yet |",
        f"| worker memory per cached workflow | {per_workflow / 1024:.0f} KiB | {scale.cached_workflows} open "
        f"YourWorkflows in the sticky cache, RSS difference |",
    ]


def cached_workflows(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("temporal_sticky_cache_size{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- 9: our worker against a bare SDK worker, side by side ---------------------------------------

BARE_WORKER = REPO_DIR / "tests" / "helpers" / "bare_worker.py"
BARE = "bare SDK worker"
BARE_WITH_CODEC = "bare + sample-shaped codec"
# Ours as the pod runs it (health and metrics ports on), each optional feature named; LOG_FORMAT is text unless said.
OURS_OFF = "ours, features off"
# Encryption as in AKS: under workload identity, so Key Vault is read by keyvault.py's lean reader; and once as on
# a laptop, through the Azure SDK (`az login`), which is what every identity but workload identity costs.
OURS_ENCRYPTED = "ours, encryption on"
OURS_JSON_ENCRYPTED = "ours, JSON logs + encryption"
OURS_ENCRYPTED_SDK = "ours, encryption on, Azure SDK"
# Settling time between "polling" and reading the RSS: the SDK's pollers and the first round trips are under way.
PEER_SETTLE_SECONDS = 2.0


@dataclass
class PeerMeasures:
    """One contender's measures, a value per round."""

    start_seconds: list[float] = dataclasses.field(default_factory=list)
    cpu_at_ready: list[float] = dataclasses.field(default_factory=list)
    rss_bytes: list[int] = dataclasses.field(default_factory=list)
    cpu_per_workflow: list[float] = dataclasses.field(default_factory=list)


async def measure_worker_peer(scale: Scale, address: str, home: Path, vault: FakeKeyVault) -> list[str]:
    """Our worker.py against tests/helpers/bare_worker.py on one dev server, in interleaved rounds (bare, ours
    features off, ours encrypted, ours JSON + encrypted, bare, ...): start to polling and the CPU time at that
    moment, RSS once polling, and the worker process's CPU time per workflow (from /proc) over
    `scale.peer_workflows` YourWorkflows started at once. Ours runs with its health and metrics ports on, as the
    Deployment runs it; the encrypted ones read their key from `vault` under workload identity, as in AKS (the
    lean reader), and once through the Azure SDK, as with any other identity."""
    vault_environment = keyvault_environment(vault, SECRET)
    encrypted = workload_identity_environment(vault, home, base_environment(home)) | vault_environment
    encrypted_sdk = azure_cli_environment(base_environment(home)) | vault_environment
    peer_key = os.urandom(32)
    contenders: dict[str, tuple[Path, dict[str, str]]] = {
        BARE: (BARE_WORKER, {}),
        BARE_WITH_CODEC: (BARE_WORKER, {"BARE_WORKER_CODEC_KEY": peer_key.hex()}),
        OURS_OFF: (REPO_DIR / "worker.py", {}),
        OURS_ENCRYPTED: (REPO_DIR / "worker.py", encrypted),
        OURS_JSON_ENCRYPTED: (REPO_DIR / "worker.py", encrypted | {"LOG_FORMAT": "json"}),
        OURS_ENCRYPTED_SDK: (REPO_DIR / "worker.py", encrypted_sdk),
    }
    keys = KeyVaultKeyProvider(load_settings(vault_environment, env_file=home / "none.env").encryption)
    await keys.start()
    try:
        plain = await Client.connect(address)
        encrypting = await Client.connect(address, data_converter=encrypted_data_converter(keys, Plaintext.REFUSE))
        peer_codec = DataConverter(payload_codec=SampleShapedCodec(BENCH_KEY_ID, peer_key))
        peer_encrypting = await Client.connect(address, data_converter=peer_codec)
        clients = {
            BARE_WITH_CODEC: peer_encrypting,
            OURS_ENCRYPTED: encrypting,
            OURS_JSON_ENCRYPTED: encrypting,
            OURS_ENCRYPTED_SDK: encrypting,
        }
        measures = {name: PeerMeasures() for name in contenders}
        for _ in range(scale.peer_rounds):
            for name, (script, variables) in contenders.items():
                ports = (
                    {"HEALTH_PORT": str(free_port()), "METRICS_PORT": str(free_port())} if script != BARE_WORKER else {}
                )
                worker = WorkerProcess(address, home, script, **(variables | ports))
                try:
                    measured = measures[name]
                    measured.start_seconds.append(worker.start_seconds)
                    measured.cpu_at_ready.append(worker.cpu_at_ready)
                    await asyncio.sleep(PEER_SETTLE_SECONDS)
                    measured.rss_bytes.append(worker.rss_bytes())
                    client = clients.get(name, plain)
                    await run_workflows(client, worker.task_queue, 5)  # warm-up, not counted
                    cpu_before = worker.cpu_seconds()
                    await run_workflows(client, worker.task_queue, scale.peer_workflows)
                    measured.cpu_per_workflow.append((worker.cpu_seconds() - cpu_before) / scale.peer_workflows)
                finally:
                    worker.stop()
    finally:
        await keys.close()
    return peer_rows(measures, scale)


def peer_rows(measures: dict[str, PeerMeasures], scale: Scale) -> list[str]:
    """One row per measure: the bare worker's median, then each of ours with its ratio to it."""

    def row(
        measure: str, values: Callable[[PeerMeasures], list[float]], shown: Callable[[float], str], note: str
    ) -> str:
        bare = statistics.median(values(measures[BARE]))
        ours = [
            f"{name.removeprefix('ours, ')} {shown(statistics.median(values(measured)))} "
            f"({statistics.median(values(measured)) / bare:.2f} x)"
            for name, measured in measures.items()
            if name != BARE
        ]
        return f"| worker vs bare SDK worker: {measure} | bare {shown(bare)}; {'; '.join(ours)} | {note} |"

    rounds = f"median of {scale.peer_rounds} interleaved rounds"
    return [
        row(
            "CPU per workflow",
            lambda m: m.cpu_per_workflow,
            lambda seconds: f"{seconds * 1e3:.1f} ms",
            f"target: JSON logs + encryption <= 1.0 x; worker process CPU (/proc) over {scale.peer_workflows} "
            f"YourWorkflows started at once; {rounds}",
        ),
        row(
            "RSS while polling",
            lambda m: m.rss_bytes,
            lambda size: f"{size / MIB:.0f} MiB",
            f"targets: features off <= 1.1 x, encryption on <= 1.2 x; VmRSS {PEER_SETTLE_SECONDS:g} s after polling "
            f"began; {rounds}",
        ),
        row(
            "start to polling",
            lambda m: m.start_seconds,
            lambda seconds: f"{seconds:.2f} s",
            f"target: features off <= 1.25 x; process start to its 'Awaiting tasks.' line; {rounds}",
        ),
        row(
            "CPU at ready",
            lambda m: m.cpu_at_ready,
            lambda seconds: f"{seconds:.2f} s",
            f"the process's CPU time when it printed that line; {rounds}",
        ),
    ]


async def measure_worker_alone(scale: Scale, with_own_rows: bool) -> list[str]:
    """`--only worker-peer`: the peer rows (9), with their own dev server and test Key Vault; `--only worker`: also
    the worker's start to polling (4) and memory (7) rows, measured as in the full run."""
    with tempfile.TemporaryDirectory() as directory, FakeKeyVault(Path(directory)) as vault:
        vault.add_version(SECRET, new_key_value())
        environment = azure_cli_environment() | keyvault_environment(vault, SECRET)
        os.environ.update(environment)  # azure-identity reads its settings from this process's environment
        home = Path(directory)
        dev_server = DevServer().start(("--headless",))
        try:
            rows = []
            if with_own_rows:
                start_times = measure_worker_start(
                    scale, dev_server.address, environment | {"METRICS_PORT": "0", "HEALTH_PORT": "0"}
                )
                rows.append(worker_start_row(start_times))
                rows += await measure_memory(scale, dev_server.address, home)
            return rows + await measure_worker_peer(scale, dev_server.address, home, vault)
        finally:
            dev_server.stop()


# --- putting it together --------------------------------------------------------------------------


def new_key_value() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def machine_description() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def key_vault_rows(vault: FakeKeyVault) -> list[str]:
    """Per key version: reads of the current version (start-ups and refreshes) and reads by version id."""
    served = [request for request in vault.requests if request.served_version]
    versions = list(dict.fromkeys(request.served_version for request in served))
    rows = []
    for number, version in enumerate(versions, start=1):
        current_reads = sum(1 for r in served if r.served_version == version and r.version is None)
        by_id = sum(1 for r in served if r.served_version == version and r.version is not None)
        rows.append(
            f"| Key Vault GETs, key version {number} of {len(versions)} | {current_reads} current reads, "
            f"{by_id} by version id | start-up + one per refresh; target: at most one by id per process |"
        )
    return rows


async def measure_with_servers(scale: Scale) -> tuple[dict[str, list[float]], list[str], list[float], list[str]]:
    """End-to-end rates, Key Vault rows, worker start times and the worker's own rows, against a dev server
    and the test Key Vault."""
    with tempfile.TemporaryDirectory() as directory, FakeKeyVault(Path(directory)) as vault:
        vault.add_version(SECRET, new_key_value())
        environment = azure_cli_environment() | keyvault_environment(vault, SECRET) | {"KEYVAULT_REFRESH_SECONDS": "5"}
        os.environ.update(environment)  # azure-identity reads its settings from this process's environment
        settings = load_settings(environment, env_file=Path(directory) / "none.env")
        dev_server = DevServer().start(("--headless",))
        try:
            rates = await measure_end_to_end(scale, dev_server, vault, settings)
            start_times = measure_worker_start(
                scale, dev_server.address, environment | {"METRICS_PORT": "0", "HEALTH_PORT": "0"}
            )
            home = Path(directory)
            worker_rows = await measure_tuners(scale, dev_server.address, home)
            worker_rows += measure_probes(scale, dev_server.address, home)
            worker_rows += await measure_memory(scale, dev_server.address, home)
            key_vault = key_vault_rows(vault)  # before the peer workers' key reads, which are not the codec's
            worker_rows += await measure_worker_peer(scale, dev_server.address, home, vault)
        finally:
            dev_server.stop()
        return rates, key_vault, start_times, worker_rows


# The parts `--only` runs on their own: the codec's without any server, worker-peer and worker with their own.
ONLY: dict[str, Callable[[Scale], list[str]]] = {
    "codec": measure_codec,
    "crossover": measure_crossover,
    "worker-peer": lambda scale: asyncio.run(measure_worker_alone(scale, with_own_rows=False)),
    "worker": lambda scale: asyncio.run(measure_worker_alone(scale, with_own_rows=True)),
    "codec-auth": lambda scale: measure_codec_auth(quick=scale is QUICK),
}


# --- The codec server's signed-in access (`--only codec-auth`): what verifying a token adds to a request ------------


def measure_codec_auth(quick: bool) -> list[str]:
    """Token verification per request with the keys held (RS256, ES256), next to decoding one 1 KiB payload, and
    whole /decode requests over loopback HTTP with the static token and with an OIDC token; against the tests'
    OIDC provider (tests/helpers/oidc_provider.py). Self-contained: its imports are here."""
    from aiohttp.test_utils import TestClient, TestServer  # noqa: PLC0415
    from google.protobuf import json_format  # noqa: PLC0415
    from temporalio.api.common.v1 import Payloads  # noqa: PLC0415

    import config  # noqa: PLC0415
    from codec_auth import TokenVerifier  # noqa: PLC0415
    from codec_server import create_app  # noqa: PLC0415

    from helpers.oidc_provider import AUDIENCE, OidcProvider  # noqa: PLC0415
    from helpers.static_keys import StaticKeyProvider  # noqa: PLC0415

    verifications, requests = (200, 50) if quick else (5000, 1000)
    static = "static-bench-token"
    codec = EncryptionCodec(StaticKeyProvider.random(), Plaintext.ACCEPT)

    async def per_call_us(call: Callable, count: int) -> float:
        for _ in range(min(count, 100)):  # warm up
            await call()
        started = time.perf_counter()
        for _ in range(count):
            await call()
        return (time.perf_counter() - started) / count * 1e6

    async def measure(provider: OidcProvider, es_provider: OidcProvider) -> list[str]:
        rows = []
        [encrypted] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=os.urandom(1024))])
        body = json_format.MessageToJson(Payloads(payloads=[encrypted]))
        decode_us = await per_call_us(lambda: codec.decode([encrypted]), verifications)
        for name, source in (("RS256 (2048-bit RSA)", provider), ("ES256 (P-256)", es_provider)):
            settings = config.OidcSettings(issuer=source.issuer, audience=AUDIENCE, ca_file=source.ca_file)
            verifier = TokenVerifier(settings)
            await verifier.start()
            token = source.token(permissions=["default:read"])
            verify_us = await per_call_us(lambda verifier=verifier, token=token: verifier.verify(token), verifications)
            rows.append(
                f"| codec server: token verification, {name} | {verify_us:.0f} us | per request, keys held; "
                f"decoding one 1 KiB payload takes {decode_us:.0f} us; mean of {verifications} |"
            )
            await verifier.close()
        settings = config.OidcSettings(issuer=provider.issuer, audience=AUDIENCE, ca_file=provider.ca_file)
        verifier = TokenVerifier(settings)
        await verifier.start()
        app = create_app(codec, [], static, verifier=verifier)
        token = provider.token(permissions=["default:read"])
        logging_level = logging.getLogger().level
        logging.getLogger().setLevel(logging.WARNING)  # the audit lines are not what is measured
        try:
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                medians = {}
                for label, bearer in (("static token", static), ("OIDC token", token)):
                    times = []
                    for _ in range(requests):
                        started = time.perf_counter()
                        response = await client.post(
                            "/default/decode", data=body, headers={"Authorization": f"Bearer {bearer}"}
                        )
                        await response.read()
                        assert response.status == 200, response.status
                        times.append(time.perf_counter() - started)
                    medians[label] = statistics.median(times) * 1e3
        finally:
            logging.getLogger().setLevel(logging_level)
            await verifier.close()
        rows.append(
            f"| codec server: /decode request, one 1 KiB payload | {medians['static token']:.2f} ms static token, "
            f"{medians['OIDC token']:.2f} ms OIDC token (RS256) | loopback HTTP through the app, median of {requests} "
            "each |"
        )
        return rows

    with tempfile.TemporaryDirectory() as directory:
        with OidcProvider(Path(directory)) as provider, OidcProvider(Path(directory), algorithm="ES256") as es:
            return asyncio.run(measure(provider, es))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and counts: a smoke run, not a measurement")
    parser.add_argument(
        "--only",
        choices=ONLY,
        help="only these rows: codec = the codec against the samples-python-shaped peer and raw AES-GCM (no "
        "servers, about 3 minutes); crossover = the sweep of the codec's small and large paths behind its "
        "LARGE_ENCODE_BYTES and LARGE_DECODE_BYTES (about 10 minutes); worker-peer = our worker against a bare "
        "SDK worker (about 5 minutes); worker = those rows, the worker's start to polling and its memory (about "
        "7 minutes); codec-auth = the codec server's sign-in tokens (about half a minute)",
    )
    arguments = parser.parse_args()
    scale = QUICK if arguments.quick else FULL
    if arguments.only:
        print_table(scale, ONLY[arguments.only](scale), f" --only {arguments.only}")
    rates, key_vault, start_times, worker_rows = asyncio.run(measure_with_servers(scale))
    codec = measure_codec(scale)
    with tempfile.TemporaryDirectory() as directory:
        storage = asyncio.run(measure_storage(scale, Path(directory)))
    print_table(
        scale,
        [
            interleave_note(rates),
            *codec,
            *key_vault,
            worker_start_row(start_times),
            *worker_rows,
            *storage,
        ],
    )


def worker_start_row(start_times: list[float]) -> str:
    return f"| worker start to polling | {statistics.median(start_times):.2f} s | median of {len(start_times)} |"


def print_table(scale: Scale, rows: list[str], options: str = "") -> NoReturn:
    """The machine, the command, the rows; then leave (the SDK's threads can abort interpreter teardown,
    sdk-python issue 300)."""
    print(f"Machine: {machine_description()}")
    print(f"Command: python tests/bench.py{' --quick' if scale is QUICK else ''}{options}\n")
    print("| measure | result | note |\n| --- | --- | --- |")
    print("\n".join(rows))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
