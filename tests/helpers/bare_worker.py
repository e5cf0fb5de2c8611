"""The peer tests/bench.py compares our worker with: a bare Temporal SDK worker and nothing else.

    python tests/helpers/bare_worker.py    # TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE from the environment

A `temporalio.worker.Worker` with `YourWorkflow` and the activities, on the SDK's default runtime and data
converter, connected with `Client.connect(TEMPORAL_ADDRESS)`: what anyone would write from the SDK's samples.
No configuration module, no logging set-up, no health or metrics ports, no signal handling (SIGTERM ends it).
With BARE_WORKER_CODEC_KEY (64 hex digits) it runs the samples-python-shaped codec (tests/helpers/peer_codec.py)
under that key (key id `BENCH_KEY_ID`): what any `PayloadCodec` costs inside the SDK, next to ours.
It prints the same line as worker.py once it polls, found the same way (the worker's `is_running`, looked at
every 50 ms), so the bench times both alike: "Starting worker... Awaiting tasks.".
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the user's workflows.py and activities.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers.peer_codec

from activities import YourActivities  # noqa: E402
from workflows import YourWorkflow  # noqa: E402

POLL_CHECK_INTERVAL_SECONDS = 0.05  # worker.py's


async def main() -> None:
    converter = DataConverter.default
    if key := os.environ.get("BARE_WORKER_CODEC_KEY"):
        from helpers.peer_codec import BENCH_KEY_ID, SampleShapedCodec  # only then: cryptography is the codec's cost

        converter = DataConverter(payload_codec=SampleShapedCodec(BENCH_KEY_ID, bytes.fromhex(key)))
    client = await Client.connect(os.environ["TEMPORAL_ADDRESS"], data_converter=converter)
    worker = Worker(
        client,
        task_queue=os.environ["TEMPORAL_TASK_QUEUE"],
        workflows=[YourWorkflow],
        activities=YourActivities().all(),
    )
    run_task = asyncio.create_task(worker.run())
    while not worker.is_running:
        if run_task.done():
            run_task.result()  # raises what stopped it
        await asyncio.sleep(POLL_CHECK_INTERVAL_SECONDS)
    print("Starting worker... Awaiting tasks.", flush=True)
    await run_task


if __name__ == "__main__":
    asyncio.run(main())
