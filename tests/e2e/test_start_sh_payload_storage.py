"""./start.sh with a connection string to a local address where nothing listens: it runs Azurite.

It installs Azurite (here: the one .ci/run installed, as start.sh would have), keeps its blobs under
.azurite/data, creates the container, and stops it with everything else; without Node.js it says what to
do. With encryption on too, the real Web UI in headless Chromium shows a 5 MiB argument decrypted,
fetched by the codec server through its reference.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from temporalio.api.common.v1 import Payload

from helpers.azurite import ACCOUNT, ACCOUNT_KEY, CONTAINER
from helpers.browser import CHROMIUM, NO_CHROMIUM, rendered_page
from helpers.fake_keyvault import FakeKeyVault
from helpers.processes import PYTHON, AppProcess, base_environment, free_port
from helpers.start_sh import INSTALLED_AZURITE, copy_of_repo, encrypted_start_sh_environment

pytestmark = pytest.mark.skipif(
    not INSTALLED_AZURITE.is_dir(), reason="Azurite is not installed in .azurite/node (bash .ci/run installs it)"
)
SECRET = "temporal-encryption-key"
MIB = 1024 * 1024


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def blob_names(port: int) -> list[str]:
    container = BlobServiceClient.from_connection_string(connection_string(port)).get_container_client(CONTAINER)
    return [blob.name for blob in container.list_blobs()]


def test_start_sh_runs_azurite_for_a_local_connection_string_and_stops_it(tmp_path):
    port, ui_port, storage_port = free_port(), free_port(), free_port()
    repo = copy_of_repo(tmp_path / "repo")
    environment = base_environment(
        tmp_path,
        TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        TEMPORAL_DEV_SERVER_UI_PORT=str(ui_port),
        CODEC_SERVER_PORT=str(free_port()),
        CLIENT_INTERVAL_SECONDS="0.5",
        PAYLOAD_STORAGE_CONNECTION_STRING=connection_string(storage_port),
        PAYLOAD_STORAGE_THRESHOLD_BYTES="0",  # even the client loop's small payloads go to the container
    )
    app = AppProcess([str(repo / "start.sh")], environment, cwd=repo)
    try:
        app.wait_for_line(
            rf"^Starting Azurite, the Azure Storage emulator, on 127\.0\.0\.1:{storage_port} ", timeout=120
        )
        app.wait_for_line(rf"^Payload storage: container {CONTAINER} in storage account {ACCOUNT} created$")
        app.wait_for_line(r"Workflow your-workflow-\d+-\S+ completed$", count=2, timeout=120)
        app.wait_for_line(r"Codec server listening on")  # it resolves the references for the Web UI
        assert blob_names(storage_port), "the workflows' payloads are in Azurite"
        assert (repo / ".azurite" / "data").is_dir() and any((repo / ".azurite" / "data").iterdir())

        app.signal(signal.SIGTERM)
        assert app.wait(timeout=60) == 0, app.output
    finally:
        app.stop()
    assert "Stopping Azurite ..." in app.output
    assert port_is_closed(storage_port) and port_is_closed(port)


def test_start_sh_without_node_says_how_to_install_it_or_to_unset_the_variable(tmp_path):
    repo = copy_of_repo(tmp_path / "repo")
    shutil.rmtree(repo / ".azurite")  # no Azurite installed yet (the symlink goes, not what it points at)
    bin_dir = tmp_path / "bin"  # the system's tools, without node, npm and npx
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(directory).iterdir() if Path(directory).is_dir() else ():
            if tool.name not in ("node", "nodejs", "npm", "npx") and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    environment = base_environment(
        tmp_path,
        PATH=str(bin_dir),
        TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        PAYLOAD_STORAGE_CONNECTION_STRING=connection_string(free_port()),
    )
    app = AppProcess([str(repo / "start.sh"), "worker"], environment, cwd=repo)
    assert app.wait(timeout=60) == 1, app.output
    assert "needs Node.js 18 or newer with npm: install it" in app.output
    assert "or unset PAYLOAD_STORAGE_CONNECTION_STRING" in app.output
    assert "Starting the Temporal dev server" not in app.output


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_web_ui_shows_a_5_mib_encrypted_argument_fetched_through_its_reference(tmp_path):
    port, ui_port, codec_port, storage_port = free_port(), free_port(), free_port(), free_port()
    with FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
        repo = copy_of_repo(tmp_path / "repo")
        environment = encrypted_start_sh_environment(
            tmp_path,
            vault,
            SECRET,
            port,
            ui_port,
            codec_port,
            PAYLOAD_STORAGE_CONNECTION_STRING=connection_string(storage_port),
        )
        environment["CLIENT_INTERVAL_SECONDS"] = "3600"  # the loop's first workflow only; the big one: --count
        app = AppProcess([str(repo / "start.sh")], environment, cwd=repo)
        try:
            app.wait_for_line(rf"Codec server listening on http://127\.0\.0\.1:{codec_port}", timeout=120)
            app.wait_for_line(r"^Starting worker\.\.\. Awaiting tasks\.$")
            big = AppProcess(
                [PYTHON, str(repo / "client.py"), "--count", "1", "--payload-size", str(5 * MIB)], environment, repo
            )
            assert big.wait(timeout=180) == 0, big.output
            workflow_id = re.search(r"^OK (\S+) ", big.output, re.MULTILINE).group(1)
            stored = [Payload.FromString(blob) for blob in blob_contents(storage_port)]
            assert stored and all(payload.metadata["encoding"] == b"binary/encrypted" for payload in stored)

            page = rendered_page(
                f"http://localhost:{ui_port}/namespaces/default/workflows/{workflow_id}",
                tmp_path / "chromium",
                budget_ms=60000,
                timeout=300,
            )
            assert "ClientTriggeredPayload-1 0000000 0000001 0000002" in page, "the UI shows the decrypted input"
            assert "externalStorage" not in page and "azure.blobdriver" not in page, "not the reference"
            decode_calls = [line for line in app.lines if "POST /decode" in line and " 200 " in line]
            assert decode_calls, "the browser had the codec server resolve the references"
        finally:
            app.stop()


def blob_contents(port: int) -> list[bytes]:
    container = BlobServiceClient.from_connection_string(connection_string(port)).get_container_client(CONTAINER)
    return [container.download_blob(blob.name).readall() for blob in container.list_blobs()]
