"""Headless Chromium for the Web UI checks: the page as a browser renders it, talking to loopback only.

Public API:
    CHROMIUM                                    # the chromium binary, or None (the tests skip, saying so)
    rendered_page(url, profile_dir, budget_ms)  # the page's DOM after its scripts ran for up to budget_ms
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
NO_CHROMIUM = "no Chromium binary (apt-get install chromium)"


def rendered_page(url: str, profile_dir: Path, budget_ms: int, timeout: float) -> str:
    """The page's DOM after its scripts ran (`budget_ms` of virtual time), from headless Chromium that talks
    to nothing but loopback; `timeout` bounds the real time, to catch a hang."""
    assert CHROMIUM is not None, "the test skips without Chromium"
    rendered = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile_dir}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return rendered.stdout
