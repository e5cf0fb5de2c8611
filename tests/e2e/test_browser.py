"""The real Temporal Web UI in headless Chromium shows payloads decrypted by our codec server.

`./start.sh` runs everything as a user would with encryption on: the dev server (its UI
pointed at the codec server), the codec server, the worker and the client loop. Runs
whenever a Chromium binary is present (Debian's `chromium` package; .ci/run installs it).
"""

from __future__ import annotations

import base64
import os
import re

import pytest

from helpers.browser import CHROMIUM, NO_CHROMIUM, rendered_page
from helpers.fake_keyvault import FakeKeyVault
from helpers.payloads import ENCRYPTED, metadata, stored_payloads
from helpers.processes import AppProcess, free_port
from helpers.start_sh import copy_of_repo, encrypted_start_sh_environment

SECRET = "temporal-encryption-key"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


def test_web_ui_shows_decrypted_input_and_result_through_the_codec_server(tmp_path):
    port, ui_port, codec_port = free_port(), free_port(), free_port()
    with FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET, base64.b64encode(os.urandom(32)).decode())
        repo = copy_of_repo(tmp_path / "repo")
        environment = encrypted_start_sh_environment(tmp_path, vault, SECRET, port, ui_port, codec_port)
        app = AppProcess([str(repo / "start.sh")], environment, cwd=repo)
        try:
            app.wait_for_line(rf"Codec server listening on http://127\.0\.0\.1:{codec_port}", timeout=120)
            completed = app.wait_for_line(r"Workflow your-workflow-\d+-\S+ completed$", timeout=120)[0]
            # With encryption on the client logs no payloads: the input and result follow from the id's number.
            workflow_id, number = re.search(r"Workflow (your-workflow-(\d+)-\S+) completed$", completed).groups()
            argument = f"ClientTriggeredPayload-{number}"
            result = f"Final result: Processed: Hello, {argument}!"

            page = rendered_page(
                f"http://localhost:{ui_port}/namespaces/default/workflows/{workflow_id}",
                tmp_path / "chromium",
                budget_ms=30000,
                timeout=180,
            )
            assert argument in page and result in page, "the UI shows the decrypted input and result"
            decode_calls = [line for line in app.lines if "POST /decode" in line]
            preflights = [line for line in app.lines if "OPTIONS /decode" in line and " 204 " in line]
            assert decode_calls and preflights, "the browser called the codec server, CORS preflight first"
            assert all(f"http://localhost:{ui_port}/" in line for line in decode_calls + preflights)

            stored = stored_payloads(f"127.0.0.1:{port}", workflow_id)
            assert stored and all(metadata(payload, "encoding") == ENCRYPTED for payload in stored)
            assert all(argument.encode() not in base64.b64decode(payload["data"]) for payload in stored)
        finally:
            app.stop()
