"""Run one of our programs as it runs in the pod, and let a test ask which modules it has loaded.

    python tests/helpers/loaded_modules.py worker.py [arguments]     # MODULES_FILE=<path> in the environment

The program (a file at the repository's root) runs unchanged as `__main__`, as `python worker.py` runs it. The
only addition, made here before it starts and shipped nowhere: on SIGUSR1 the names in `sys.modules` are written
to MODULES_FILE, one a line, then MODULES_FILE + ".done" is created. A test waits for the program's "polling"
line (or whatever moment it cares about), sends SIGUSR1, and reads the file: what the running process has
imported by then, not what a static import of its module would.

Used by tests/e2e/test_worker_imports.py: a feature that is off costs nothing.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path
from types import FrameType

REPO_DIR = Path(__file__).resolve().parents[2]


def _write_modules(_signal_number: int, _frame: FrameType | None) -> None:
    target = Path(os.environ["MODULES_FILE"])
    target.write_text("\n".join(sorted(sys.modules)) + "\n")
    target.with_name(target.name + ".done").touch()


def main() -> None:
    script = REPO_DIR / sys.argv[1]
    signal.signal(signal.SIGUSR1, _write_modules)
    sys.argv = [str(script), *sys.argv[2:]]
    sys.path[0] = str(REPO_DIR)  # as `python worker.py` puts the script's directory first
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
