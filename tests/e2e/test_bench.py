"""The benchmark still runs (tiny sizes): it cannot rot. Nothing about timing is asserted."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from helpers.azurite import AZURITE_BLOB
from helpers.processes import PYTHON, REPO_DIR, base_environment


# Our worker against the bare SDK worker: the bare figure, then ours with each feature setting and its ratio.
def _peer_row(measure: str, unit: str) -> str:
    ours = "; ".join(
        rf"{setting} [\d.]+ {unit} \([\d.]+ x\)"
        for setting in ("features off", "encryption on", r"JSON logs \+ encryption")
    )
    return rf"\| worker vs bare SDK worker: {measure} \| bare [\d.]+ {unit}; {ours} \|"


WORKER_PEER_ROWS = (
    _peer_row("CPU per workflow", "ms"),
    _peer_row("RSS while polling", "MiB"),
    _peer_row("start to polling", "s"),
    _peer_row("CPU at ready", "s"),
)


def test_bench_quick_prints_every_measure(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, str(REPO_DIR / "tests" / "bench.py"), "--quick"],
        # The Azurite this process found (AZURITE_BLOB may name it), so that the bench measures when this expects it.
        env=base_environment(tmp_path, **({"AZURITE_BLOB": AZURITE_BLOB} if AZURITE_BLOB else {})),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    assert table.startswith("Machine: ")
    for row in (
        r"\| end to end, plain \| [\d.]+ workflows/s \|",
        r"\| end to end, encrypted \| [\d.]+ workflows/s \|",
        r"\| encrypted / plain \| [\d.]+ \|",
        r"\| codec encode\+decode, 16 B \| [\d.]+ us \(raw AES-GCM [\d.]+ us\) \|",
        r"\| codec encode\+decode, 1 KiB \|",
        r"\| codec encode\+decode, 128 KiB, freed memory kept \| [\d.]+ us \(raw AES-GCM [\d.]+ us, "
        r"the protobuf copies alone [\d.]+ us\) \| [\d.]+ of raw speed; the copies alone are \d+% of raw ",
        r"\| Key Vault GETs, key version 1 of \d \| \d+ current reads, \d+ by version id \|",
        r"\| worker start to polling \| [\d.]+ s \|",
        r"\| worker throughput, fixed \(100 activity slots\) \| \d+ activities/s \([\d.]+ workflows/s\) \|",
        r"\| worker throughput, resource-based \(CPU and memory targets 0\.8\) \| \d+ activities/s ",
        r"\| probe: HTTP GET /readyz \| [\d.]+ ms CPU, [\d.]+ ms \|",
        r"\| probe CPU per pod and hour \| [\d.]+ s HTTP \| \d+ HTTP probes \(readiness 5 s, liveness 15 s\) \|",
        r"\| worker memory, polling \| \d+ MiB RSS \|",
        r"\| worker memory per cached workflow \| -?\d+ KiB \|",
        *WORKER_PEER_ROWS,
        r"\| payload storage round trip, 300 KiB \| \d+ ms plain, \d+ ms encrypted \|"
        if AZURITE_BLOB
        else r"\| payload storage round trips \| skipped \|",
    ):
        assert re.search(row, table), f"missing {row!r} in:\n{table}"


def test_bench_runs_the_worker_peer_rows_on_their_own(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, str(REPO_DIR / "tests" / "bench.py"), "--quick", "--only", "worker-peer"],
        env=base_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "| --- |" not in line]
    assert len(rows) == 1 + len(WORKER_PEER_ROWS), result.stdout  # the header and these rows, nothing else
    for row in WORKER_PEER_ROWS:
        assert re.search(row, result.stdout), f"missing {row!r} in:\n{result.stdout}"
