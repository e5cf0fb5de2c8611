"""SIGTERM and SIGINT kept from the process's first moment, before the heavy imports.

Public API:
    import early_signals   # first import of worker.py, client.py, codec_server.py: installs the handlers
    take() -> list[int]    # the stop signals received so far (each once), and forget them

Why: importing the Temporal SDK takes ~0.3 s (more with encryption or payload storage on, which import the
Azure SDK where they are switched on), and `bootstrap.Stop` can install its handlers only once the event loop
exists. Without this module a SIGTERM in that window killed the process
(exit -15) and a SIGINT printed a KeyboardInterrupt traceback, where every program documents exit 0 for a
requested stop. Importing this module (standard library only, a few microseconds) installs handlers that
only remember the signal; `bootstrap.Stop` takes what was remembered when it installs its own, so an early
signal ends the first step like any other. What runs before the import (the interpreter's own start-up,
some milliseconds) is out of reach of any Python code.

Only the programs import it: a module imported by the deploy side must not, since it would turn Ctrl-C
into a remembered signal there.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received: list[int] = []


def _remember(signal_number: int, _frame: FrameType | None) -> None:
    if signal_number not in _received:
        _received.append(signal_number)


def take() -> list[int]:
    """The stop signals received since the import, in order, each once; the list is emptied."""
    received = list(_received)
    _received.clear()
    return received


for _signal_number in STOP_SIGNALS:
    signal.signal(_signal_number, _remember)
