"""`tests/bench.py --only codec-auth --quick` still runs and prints its rows. Nothing about timing is asserted."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from helpers.processes import PYTHON, REPO_DIR, base_environment


def test_bench_codec_auth_prints_its_rows(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, str(REPO_DIR / "tests" / "bench.py"), "--only", "codec-auth", "--quick"],
        env=base_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    for row in (
        r"\| codec server: token verification, RS256 \(2048-bit RSA\) \| \d+ us \| per request, keys held; "
        r"decoding one 1 KiB payload takes \d+ us",
        r"\| codec server: token verification, ES256 \(P-256\) \| \d+ us \|",
        r"\| codec server: /decode request, one 1 KiB payload \| [\d.]+ ms static token, [\d.]+ ms OIDC token",
    ):
        assert re.search(row, result.stdout), f"missing {row!r} in:\n{result.stdout}"
    assert "end to end" not in result.stdout  # only what was asked for
