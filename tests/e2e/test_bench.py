"""The benchmark still runs (tiny sizes): it cannot rot. Nothing about timing is asserted."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from helpers.azurite import AZURITE_BLOB
from helpers.processes import PYTHON, REPO_DIR, base_environment


# Our worker against the bare SDK worker: the bare figure, then the bare worker with the sample-shaped codec and ours
# with each feature setting (encrypted under workload identity, and once through the Azure SDK), each with its ratio.
def _peer_row(measure: str, unit: str) -> str:
    ours = "; ".join(
        rf"{setting} [\d.]+ {unit} \([\d.]+ x\)"
        for setting in (
            r"bare \+ sample-shaped codec",
            "features off",
            "encryption on",
            r"JSON logs \+ encryption",
            "encryption on, Azure SDK",
        )
    )
    return rf"\| worker vs bare SDK worker: {measure} \| bare [\d.]+ {unit}; {ours} \|"


WORKER_PEER_ROWS = (
    _peer_row("CPU per workflow", "ms"),
    _peer_row("RSS while polling", "MiB"),
    _peer_row("start to polling", "s"),
    _peer_row("CPU at ready", "s"),
)


# The codec against the samples-python-shaped peer and raw AES-GCM, at each of --quick's sizes.
CODEC_ROWS = (
    *(
        rf"\| codec encode\+decode, {size} \| ours [\d.]+ us, peer [\d.]+ us \(raw AES-GCM [\d.]+ us\) \| "
        r"ours / peer [\d.]+ \(target <= 1\.0\); [\d.]+ of raw speed"
        for size in ("16 B", "1 KiB", "128 KiB")
    ),
    r"\| codec encode\+decode, 128 KiB, freed memory kept \| ours [\d.]+ us, peer [\d.]+ us \(raw AES-GCM [\d.]+ us, "
    r"the protobuf copies alone [\d.]+ us\) \| ours / peer [\d.]+ \(target <= 1\.0\); [\d.]+ of raw speed; "
    r"the copies alone are \d+% of raw ",
)


def run_bench(tmp_path: Path, *arguments: str) -> str:
    """`tests/bench.py --quick` with these arguments; its table, once it exited with 0."""
    result = subprocess.run(
        [PYTHON, str(REPO_DIR / "tests" / "bench.py"), "--quick", *arguments],
        # The Azurite this process found (AZURITE_BLOB may name it), so that the bench measures when this expects it.
        env=base_environment(tmp_path, **({"AZURITE_BLOB": AZURITE_BLOB} if AZURITE_BLOB else {})),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Machine: ")
    return result.stdout


def test_bench_quick_prints_every_measure(tmp_path: Path) -> None:
    table = run_bench(tmp_path)
    for row in (
        r"\| end to end, plain \| [\d.]+ workflows/s \|",
        r"\| end to end, encrypted \| [\d.]+ workflows/s \|",
        r"\| encrypted / plain \| [\d.]+ \|",
        *CODEC_ROWS,
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


def test_bench_only_codec_prints_the_codec_rows_alone(tmp_path: Path) -> None:
    table = run_bench(tmp_path, "--only", "codec")

    for row in CODEC_ROWS:
        assert re.search(row, table), f"missing {row!r} in:\n{table}"
    assert len(table_rows(table)) == 1 + len(CODEC_ROWS), table  # the header and these rows, nothing else


def test_bench_only_crossover_prints_both_paths_per_size(tmp_path: Path) -> None:
    table = run_bench(tmp_path, "--only", "crossover")

    for size in ("4 KiB", "128 KiB", "128 KiB, freed memory kept"):
        row = (
            rf"\| codec paths, {size} \| encode: small [\d.]+ us, large [\d.]+ us; decode: small [\d.]+ us, "
            r"large [\d.]+ us \| large / small: encode [\d.]+, decode [\d.]+, round trip [\d.]+;"
        )
        assert re.search(row, table), f"missing {row!r} in:\n{table}"
    assert len(table_rows(table)) == 1 + 3, table


def table_rows(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith("| ") and "| --- |" not in line]


WORKER_ROWS = (
    r"\| worker start to polling \| [\d.]+ s \|",
    r"\| worker memory, polling \| \d+ MiB RSS \|",
    r"\| worker memory per cached workflow \| -?\d+ KiB \|",
)


@pytest.mark.parametrize(
    ("only", "rows"), [("worker-peer", WORKER_PEER_ROWS), ("worker", WORKER_ROWS + WORKER_PEER_ROWS)]
)
def test_bench_runs_the_worker_rows_on_their_own(tmp_path: Path, only: str, rows: tuple[str, ...]) -> None:
    result = subprocess.run(
        [PYTHON, str(REPO_DIR / "tests" / "bench.py"), "--quick", "--only", only],
        env=base_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(table_rows(result.stdout)) == 1 + len(rows), result.stdout  # the header and these rows, nothing else
    for row in rows:
        assert re.search(row, result.stdout), f"missing {row!r} in:\n{result.stdout}"
