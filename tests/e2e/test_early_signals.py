"""A stop signal during a program's imports ends it like any other stop: exit 0, one line, no traceback.

Importing the SDK, aiohttp and Azure takes ~0.3 s, before `bootstrap.Stop` exists. To signal each program
exactly there, a `sitecustomize` (on PYTHONPATH for this test only) holds the first import of `temporalio`
for a moment and leaves a mark: the signal is sent once the mark is there, so it always lands in the
imports. Before early_signals.py, SIGTERM there killed the process (exit -15) and SIGINT printed a
KeyboardInterrupt traceback (exit 1).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from helpers.fake_keyvault import azure_cli_environment
from helpers.processes import PYTHON, REPO_DIR, AppProcess, base_environment, free_port
from helpers.stopping import SilentServer

HOLD_SECONDS = 1.5  # how long the first `import temporalio` is held
STOP_BOUND_SECONDS = 10.0  # generous: catches a program that does not stop, not a slow one
SITECUSTOMIZE = f"""
import os, sys, time
MARK = os.environ["IMPORTS_REACHED_MARK"]

def hold_the_first_temporalio_import(event, arguments):
    if event == "import" and arguments[0] == "temporalio" and not os.path.exists(MARK):
        open(MARK, "w").close()
        time.sleep({HOLD_SECONDS})

sys.addaudithook(hold_the_first_temporalio_import)
"""


@pytest.mark.parametrize("program", ["worker.py", "client.py", "codec_server.py"])
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_during_the_imports_exits_0(tmp_path: Path, program: str, stop_signal: int) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    mark = tmp_path / "imports-reached"
    with SilentServer() as vault:  # never reached: the stop comes first
        env = azure_cli_environment(
            base_environment(
                tmp_path,
                PYTHONPATH=str(site),
                IMPORTS_REACHED_MARK=str(mark),
                TEMPORAL_ADDRESS=vault.address,
                CODEC_SERVER_PORT=str(free_port()),
                KEYVAULT_URL=vault.url,
                KEYVAULT_SECRET_NAME="temporal-encryption-key",
                KEYVAULT_VERIFY_CHALLENGE_RESOURCE="false",
            )
        )
        code, output = signalled_in_the_imports(env, program, mark, stop_signal)
    name = signal.Signals(stop_signal).name
    assert code == 0, output
    assert f"stopped by {name} while" in output
    assert "Traceback" not in output


def signalled_in_the_imports(env: dict[str, str], program: str, mark: Path, stop_signal: int) -> tuple[int, str]:
    """Start the program, send the signal once its imports are held; its exit status and output."""
    app = AppProcess([str(PYTHON), str(REPO_DIR / program)], env)
    try:
        deadline = time.monotonic() + 60
        while not mark.exists():
            assert app.process.poll() is None and time.monotonic() < deadline, app.output
            time.sleep(0.01)
        app.signal(stop_signal)
        code = app.wait(timeout=STOP_BOUND_SECONDS)
    finally:
        app.stop()
    return code, app.output
