"""What one workflow task may download is bounded (issue 23, item 1), with the real worker.py, Azurite and a
dev server, encryption required.

A workflow started with a few KB of input, 8 references to one 50 MiB blob, used to take the worker from
about 80 MiB to over 800 MiB (all of it downloaded at once, before the codec refused anything). Now the
task's references are sized from the blobs' properties first, and the task fails over its budget
(PAYLOAD_STORAGE_MAX_TASK_BYTES, 64 MiB by default) with one error naming the workflow and the bytes asked
for, having downloaded nothing: the worker's peak RSS grows by less than RSS_GROWTH_BOUND (before the fix
it grew by hundreds of MiB), and a normal workflow on the same worker completes afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.converter import StorageDriverClaim

import config
from payload_storage import PayloadStorage, PayloadTooLargeError

from helpers.azurite import AZURITE_BLOB, AZURITE_MISSING, Azurite
from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment, keyvault_environment
from helpers.processes import PYTHON, REPO_DIR, base_environment

pytestmark = pytest.mark.skipif(AZURITE_BLOB is None, reason=AZURITE_MISSING)

MIB = 1024 * 1024
SECRET = "temporal-encryption-key"
WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"
REFERENCES = 8
# Downloading even two of the 50 MiB blobs would exceed it; sizing them from their properties costs nothing.
RSS_GROWTH_BOUND = 64 * MIB


def memory_kib(pid: int, field: str) -> int:
    """A /proc/PID/status field in KiB: VmRSS (now) or VmHWM (the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


def reference(container: str, blob: str) -> Payload:
    data = json.dumps({"driverName": "azure.blobdriver", "claimData": {"container": container, "blob": blob}})
    return Payload(
        metadata={"encoding": b"json/protobuf", "messageType": b"temporal.api.sdk.v1.ExternalStorageReference"},
        data=data.encode(),
    )


@pytest.fixture
def azurite(tmp_path: Path):
    with Azurite(tmp_path) as running:
        yield running


def test_8_references_to_a_50_mib_blob_fail_their_task_without_downloading_and_other_workflows_run(
    tmp_path, dev_server, task_queue, azurite, run_app
):
    stored = Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(50 * MIB - 64)).SerializeToString()
    blob = f"v0/ns/default/wt/YourWorkflow/wi/big/ri/r/d/sha256/{hashlib.sha256(stored).hexdigest()}"
    azurite.admin().get_container_client(azurite.container).upload_blob(blob, stored)
    blob_bytes = len(stored)
    del stored

    with FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
        env = base_environment(
            tmp_path,
            TEMPORAL_ADDRESS=dev_server.address,
            TEMPORAL_TASK_QUEUE=task_queue,
            PAYLOAD_STORAGE_CONNECTION_STRING=azurite.connection_string,
            ENCRYPTION_REQUIRED="true",
        )
        env = azure_cli_environment(env) | keyvault_environment(vault, SECRET)
        worker = run_app("worker.py", env=env)
        worker.wait_for_line(WORKER_READY)
        pid = worker.process.pid
        before_kib = memory_kib(pid, "VmRSS")

        async def start() -> None:
            client = await Client.connect(dev_server.address)
            arguments = [RawValue(reference(azurite.container, blob)) for _ in range(REFERENCES)]
            await client.start_workflow("YourWorkflow", args=arguments, id="big", task_queue=task_queue)

        asyncio.run(start())
        (failure,) = worker.wait_for_line(r"asked for \d+ bytes of payloads from payload storage", timeout=120)
        growth = (memory_kib(pid, "VmHWM") - before_kib) * 1024
        assert growth < RSS_GROWTH_BOUND, f"the worker's peak RSS grew by {growth // MIB} MiB"
        assert "workflow 'big'" in failure and "type 'YourWorkflow'" in failure, failure
        assert f"asked for {REFERENCES * blob_bytes} bytes" in failure, failure
        assert "PAYLOAD_STORAGE_MAX_TASK_BYTES" in failure

        normal = run_app("client.py", "--count", "1", env=env)
        assert normal.wait(timeout=180) == 0, normal.output
        assert "1 of 1 workflows succeeded" in normal.output
        assert worker.process.poll() is None, "the worker keeps running"


def test_a_413_names_the_blobs_real_size_not_the_ranges(azurite):
    stored = Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(3 * MIB)).SerializeToString()
    blob = f"v0/ns/default/d/sha256/{hashlib.sha256(stored).hexdigest()}"
    azurite.admin().get_container_client(azurite.container).upload_blob(blob, stored)
    settings = config.PayloadStorageSettings(account_url=None, connection_string=azurite.connection_string)

    async def fetch() -> None:
        storage = PayloadStorage(settings)
        try:
            await storage.driver.fetch(StorageDriverClaim({"container": azurite.container, "blob": blob}), MIB)
        finally:
            await storage.close()

    with pytest.raises(PayloadTooLargeError, match=f"holds {len(stored)} bytes, over the {MIB} "):
        asyncio.run(fetch())


def test_create_container_against_a_silent_endpoint_ends_cleanly_on_sigterm_and_sigint(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        port = silent.getsockname()[1]
        env = base_environment(
            tmp_path,
            PAYLOAD_STORAGE_CONNECTION_STRING=(
                f"AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:{port}/acct;"
            ),
        )
        for signum, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
            process = subprocess.Popen(
                [PYTHON, str(REPO_DIR / "payload_storage.py"), "create-container"],
                env=env,
                cwd=REPO_DIR,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                silent.settimeout(60)
                connection, _ = silent.accept()  # it is waiting for an answer now
                process.send_signal(signum)
                _, stderr = process.communicate(timeout=10)
            finally:
                process.kill()
                process.wait()
            connection.close()
            assert process.returncode == status, stderr
            assert f"stopped by {signal.Signals(signum).name} before the container was created" in stderr
            assert "Traceback" not in stderr
