"""worker.release_start_up_memory: the heap pages start-up freed go back to the OS once the worker polls.

In a fresh process (so nothing else holds on to the heap), as start-up does: many allocations, most freed, some
kept between them, so the freed pages lie scattered and glibc keeps them; then the call. Checked on the
process's VmRSS, not by timing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.processes import REPO_DIR

PROBE = """
import json, worker

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

kept, freed = [], []
for n in range(40_000):  # 1 KiB blocks: glibc's heap, not Python's small-object arenas
    (kept if n % 16 == 0 else freed).append(bytearray(1024))
del freed
before = rss_kib()
released = worker.release_start_up_memory()
print(json.dumps({"before": before, "after": rss_kib(), "released": released, "kept": len(kept)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmRSS and glibc's malloc_trim are Linux's")
def test_memory_freed_at_start_up_is_handed_back_to_the_os() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_DIR, capture_output=True, text=True, check=True, timeout=60
    )
    measured = json.loads(result.stdout.splitlines()[-1])

    assert measured["released"] is True
    # ~37 MiB were freed between kept blocks; at least a third of it must have left the process.
    assert measured["before"] - measured["after"] > 12 * 1024, measured
