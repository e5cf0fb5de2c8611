"""Temporal credentials from Key Vault, rotated in running processes, against a Temporal that enforces them.

The Temporal in front of the worker and client is the dev server behind helpers/auth_proxy.AuthProxy,
which accepts only the current API key (or client certificate), as Temporal Cloud does; the vault is
helpers/fake_keyvault.FakeKeyVault, read over HTTPS by the real Azure SDK. A rotation is what a user does:
store a new version in the vault (`az keyvault secret set`), wait until every process logged that it uses
it, then revoke the old credential in Temporal (here: switch the proxy). Every workflow started meanwhile
must complete, the worker must be the same process throughout, no call may be refused, and the old
credential must be refused afterwards.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from pathlib import Path

import grpc
import trustme

from keyvault import API_KEY_ADVICE, CERTIFICATE_ADVICE

from helpers.auth_proxy import AuthProxy, probe
from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment
from helpers.processes import PYTHON, REPO_DIR, AppProcess, base_environment, temporal_cli_json

API_KEY_SECRET = "temporal-api-key"
CERTIFICATE = "temporal-client-certificate"
WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"
PEM = "application/x-pem-file"
# Generous: what would otherwise be a hang. Rotations take about KEYVAULT_REFRESH_SECONDS (1 s here).
ROTATION_BOUND_SECONDS = 60


def credential_environment(tmp_path: Path, vault: FakeKeyVault, proxy: AuthProxy, task_queue: str, **overrides: str):
    """The worker's and client's environment: Temporal behind the proxy, credentials from the test vault."""
    return azure_cli_environment(
        base_environment(
            tmp_path,
            TEMPORAL_ADDRESS=proxy.address,
            TEMPORAL_TLS_SERVER_CA_CERT_PATH=proxy.ca_file,
            TEMPORAL_TASK_QUEUE=task_queue,
            KEYVAULT_URL=vault.url,
            KEYVAULT_CA_FILE=vault.ca_file,
            KEYVAULT_VERIFY_CHALLENGE_RESOURCE="false",
            KEYVAULT_REFRESH_SECONDS="1",
            **overrides,
        )
    )


def workflows_on(dev_server, task_queue: str) -> dict[str, str]:
    """Every workflow of the task queue and its status, as the server (not the proxy) knows them."""
    listed = temporal_cli_json(dev_server.address, "workflow", "list", "--query", f'TaskQueue="{task_queue}"')
    entries = listed if isinstance(listed, list) else listed.get("executions", [])
    return {entry["execution"]["workflowId"]: entry["status"] for entry in entries}


def wait_until_all_complete(dev_server, task_queue: str, at_least: int) -> dict[str, str]:
    deadline = time.monotonic() + 120
    while True:
        statuses = workflows_on(dev_server, task_queue)
        done = all(status != "WORKFLOW_EXECUTION_STATUS_RUNNING" for status in statuses.values())
        if (done and len(statuses) >= at_least) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.5)


def python_command(script: str, *arguments: str) -> list[str]:
    return [PYTHON, str(REPO_DIR / script), *arguments]


def pem_bundle(certificate: trustme.LeafCert) -> str:
    """A client certificate as the vault holds it: the private key and the chain, in PEM."""
    return (certificate.private_key_pem.bytes() + b"".join(pem.bytes() for pem in certificate.cert_chain_pems)).decode()


class WorkflowStarter:
    """Starts YourWorkflow directly on the dev server (not through the proxy) every `interval` seconds."""

    def __init__(self, dev_server, task_queue: str, interval: float = 0.3) -> None:
        self._dev_server, self._task_queue, self._interval = dev_server, task_queue, interval
        self.started: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkflowStarter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stopping.is_set():
            workflow_id = f"started-{len(self.started)}-{uuid.uuid4().hex[:8]}"
            temporal_cli_json(
                self._dev_server.address,
                "workflow",
                "start",
                "--type",
                "YourWorkflow",
                "--task-queue",
                self._task_queue,
                "--workflow-id",
                workflow_id,
                "--input",
                json.dumps(workflow_id),
            )
            self.started.append(workflow_id)
            self._stopping.wait(self._interval)


def test_an_api_key_rotates_in_the_running_worker_and_client_and_every_workflow_completes(
    tmp_path, dev_server, task_queue
):
    old_key, new_key = "temporal-api-key-old-Xq3v", "temporal-api-key-new-Pw8z"
    with FakeKeyVault(tmp_path) as vault, AuthProxy(dev_server.address, tmp_path, api_keys={old_key}) as proxy:
        old_version = vault.add_version(API_KEY_SECRET, old_key + "\n")  # as `--file` stores it
        env = credential_environment(
            tmp_path,
            vault,
            proxy,
            task_queue,
            TEMPORAL_API_KEY_KEYVAULT_SECRET=API_KEY_SECRET,
            CLIENT_INTERVAL_SECONDS="0.2",
        )
        worker = AppProcess(python_command("worker.py"), env)
        client = AppProcess(python_command("client.py"), env)
        try:
            worker.wait_for_line(WORKER_READY)
            assert f"Using the Temporal API key of version {old_version}" in worker.output
            client.wait_for_line(r"Workflow \S+ completed$", count=3)

            proxy.accept_only(api_keys={old_key, new_key})  # the new key is created in Temporal first
            rotated_at = time.monotonic()
            new_version = vault.add_version(API_KEY_SECRET, new_key)
            rotation = rf"Temporal API key rotated: Key Vault secret {API_KEY_SECRET} version {new_version} is in use"
            for program in (worker, client):
                program.wait_for_line(rotation, timeout=ROTATION_BOUND_SECONDS)
                print(
                    f"{program.process.args[1].rsplit('/', 1)[-1]} rotated {time.monotonic() - rotated_at:.2f}s later"
                )
            proxy.accept_only(api_keys={new_key})  # the old key is revoked in Temporal
            completed_before = len(client.wait_for_line(r"Workflow \S+ completed$"))
            client.wait_for_line(r"Workflow \S+ completed$", count=completed_before + 5)
            first_new_call = proxy.first_call_with(new_key)
            assert first_new_call is not None
            print(f"rotation reached the first call {first_new_call.at - rotated_at:.2f}s after the new version")

            client.signal(signal.SIGTERM)
            assert client.wait() == 0, client.output
            statuses = wait_until_all_complete(dev_server, task_queue, at_least=completed_before + 5)
            assert set(statuses.values()) == {"WORKFLOW_EXECUTION_STATUS_COMPLETED"}, statuses

            assert worker.process.poll() is None, "the worker never stopped"
            assert worker.lines.count("Starting worker... Awaiting tasks.") == 1, "nor started again"
            refused = [call for call in proxy.calls if not call.accepted]
            assert refused == [], "no call of the worker or client was refused"
            assert probe(proxy, api_key=old_key) == grpc.StatusCode.UNAUTHENTICATED, "the old key is refused"
            assert probe(proxy, api_key=new_key) == grpc.StatusCode.OK
        finally:
            client.stop()
            worker.stop()
    for program in (worker, client):
        [rotation_line] = [line for line in program.lines if "rotated" in line]
        assert re.search(rotation, rotation_line), "one log line per rotation, naming the secret and version"
        assert old_key not in program.output and new_key not in program.output, "the key is never logged"
        assert "Traceback" not in program.output and " WARNING " not in program.output, program.output


def test_a_client_certificate_rotates_in_the_running_worker_and_every_workflow_completes(
    tmp_path, dev_server, task_queue
):
    client_ca = trustme.CA()
    old_certificate = client_ca.issue_cert("worker", common_name="worker-certificate-1")
    new_certificate = client_ca.issue_cert("worker", common_name="worker-certificate-2")
    with (
        FakeKeyVault(tmp_path) as vault,
        AuthProxy(dev_server.address, tmp_path, client_ca=client_ca, common_names={"worker-certificate-1"}) as proxy,
    ):
        old_version = vault.add_version(CERTIFICATE, pem_bundle(old_certificate), content_type=PEM)
        env = credential_environment(
            tmp_path,
            vault,
            proxy,
            task_queue,
            TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE=CERTIFICATE,
            ACTIVITY_SIMULATED_WORK_SECONDS="1",  # activities are in flight when the client changes
        )
        worker = AppProcess(python_command("worker.py"), env)
        try:
            worker.wait_for_line(WORKER_READY)
            assert f"Using the Temporal client certificate of version {old_version}" in worker.output
            with WorkflowStarter(dev_server, task_queue) as starter:
                time.sleep(3)
                proxy.accept_only(common_names={"worker-certificate-1", "worker-certificate-2"})
                rotated_at = time.monotonic()
                new_version = vault.add_version(CERTIFICATE, pem_bundle(new_certificate), content_type=PEM)
                rotation = (
                    rf"Temporal client certificate rotated: Key Vault certificate {CERTIFICATE} version {new_version} "
                    r"\(subject CN=worker-certificate-2,"
                )
                worker.wait_for_line(rotation, timeout=ROTATION_BOUND_SECONDS)
                first_new_call = proxy.first_call_with("worker-certificate-2")
                assert first_new_call is not None
                print(
                    f"the new certificate's first call came {first_new_call.at - rotated_at:.2f}s after it was stored"
                )
                time.sleep(3)  # activities that began on the old client finish meanwhile
                proxy.accept_only(common_names={"worker-certificate-2"})  # the old certificate is revoked
                time.sleep(3)
            statuses = wait_until_all_complete(dev_server, task_queue, at_least=len(starter.started))
            assert set(statuses) == set(starter.started)
            assert set(statuses.values()) == {"WORKFLOW_EXECUTION_STATUS_COMPLETED"}, statuses

            assert worker.process.poll() is None, "the worker never stopped"
            assert worker.lines.count("Starting worker... Awaiting tasks.") == 1, "nor started again"
            assert [call for call in proxy.calls if not call.accepted] == [], "no call of the worker was refused"
            used = {call.credential for call in proxy.calls}
            assert used == {"worker-certificate-1", "worker-certificate-2"}
            assert probe(proxy, certificate=old_certificate) == grpc.StatusCode.UNAUTHENTICATED
            assert probe(proxy, certificate=new_certificate) == grpc.StatusCode.OK
        finally:
            worker.stop()
    [rotation_line] = [line for line in worker.lines if "rotated" in line]
    assert re.search(rotation, rotation_line), "one log line per rotation, naming the certificate and version"
    assert "PRIVATE KEY" not in worker.output
    assert "Traceback" not in worker.output and " WARNING " not in worker.output, worker.output


def test_a_credential_that_cannot_be_read_at_start_up_is_one_line_and_exit_status_1(tmp_path, dev_server, task_queue):
    with FakeKeyVault(tmp_path) as vault, AuthProxy(dev_server.address, tmp_path) as proxy:
        for variable, name in (
            ("TEMPORAL_API_KEY_KEYVAULT_SECRET", "no-such-api-key"),
            ("TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE", "no-such-certificate"),
        ):
            env = credential_environment(tmp_path, vault, proxy, task_queue, **{variable: name})
            for command in (["worker.py"], ["client.py"], ["client.py", "--count", "1"]):
                program = AppProcess(python_command(*command), env)
                try:
                    assert program.wait() == 1, program.output
                finally:
                    program.stop()
                [error] = [line for line in program.lines if line.startswith("ERROR: ")]
                assert error == (
                    f"ERROR: Cannot read Key Vault secret {name!r} from {vault.url}: the secret does not exist. "
                    f"Check {variable} and KEYVAULT_URL, or "
                    + (API_KEY_ADVICE if "API_KEY" in variable else CERTIFICATE_ADVICE)
                ), program.output
                assert "Traceback" not in program.output
    assert proxy.calls == [], "nothing reached Temporal"


def test_an_api_key_that_disappears_from_the_vault_is_a_warning_and_the_last_key_stays_in_use(
    tmp_path, dev_server, task_queue
):
    key = "temporal-api-key-kept-Hn5c"
    with FakeKeyVault(tmp_path) as vault, AuthProxy(dev_server.address, tmp_path, api_keys={key}) as proxy:
        version = vault.add_version(API_KEY_SECRET, key)
        env = credential_environment(
            tmp_path, vault, proxy, task_queue, TEMPORAL_API_KEY_KEYVAULT_SECRET=API_KEY_SECRET
        )
        worker = AppProcess(python_command("worker.py"), env)
        try:
            worker.wait_for_line(WORKER_READY)
            vault.delete(API_KEY_SECRET)
            warning = worker.wait_for_line(r" WARNING keyvault: Key Vault refresh failed")[0]
            assert warning.endswith(
                f"Key Vault refresh failed; still using the Temporal API key of version {version}: Cannot read Key "
                f"Vault secret {API_KEY_SECRET!r} from {vault.url}: the secret does not exist. Check "
                f"TEMPORAL_API_KEY_KEYVAULT_SECRET and KEYVAULT_URL, or {API_KEY_ADVICE}"
            ), warning
            with WorkflowStarter(dev_server, task_queue, interval=0.5) as starter:
                time.sleep(2)
            statuses = wait_until_all_complete(dev_server, task_queue, at_least=len(starter.started))
            assert set(statuses.values()) == {"WORKFLOW_EXECUTION_STATUS_COMPLETED"}, statuses
            assert worker.process.poll() is None
            assert [call for call in proxy.calls if not call.accepted] == []
        finally:
            worker.stop()
    assert key not in worker.output


def test_a_new_certificate_that_cannot_connect_is_a_warning_and_the_worker_keeps_its_connection(
    tmp_path, dev_server, task_queue
):
    client_ca = trustme.CA()
    good, also_good = (client_ca.issue_cert("worker", common_name=f"worker-certificate-{n}") for n in (1, 3))
    untrusted = trustme.CA().issue_cert("worker", common_name="worker-certificate-2")  # a CA the proxy does not trust
    names = {"worker-certificate-1", "worker-certificate-2", "worker-certificate-3"}
    with (
        FakeKeyVault(tmp_path) as vault,
        AuthProxy(dev_server.address, tmp_path, client_ca=client_ca, common_names=names) as proxy,
    ):
        first = vault.add_version(CERTIFICATE, pem_bundle(good), content_type=PEM)
        env = credential_environment(
            tmp_path, vault, proxy, task_queue, TEMPORAL_TLS_CLIENT_KEYVAULT_CERTIFICATE=CERTIFICATE
        )
        worker = AppProcess(python_command("worker.py"), env)
        try:
            worker.wait_for_line(WORKER_READY)
            refused = vault.add_version(CERTIFICATE, pem_bundle(untrusted), content_type=PEM)
            warning = worker.wait_for_line(
                r" WARNING keyvault: Key Vault refresh failed", timeout=ROTATION_BOUND_SECONDS
            )[0]
            assert (
                f"still using the client certificate of version {first}: cannot connect with version {refused} of "
                f"the client certificate: Cannot connect to Temporal at {proxy.address}"
            ) in warning
            with WorkflowStarter(dev_server, task_queue, interval=0.5) as starter:
                time.sleep(2)
            statuses = wait_until_all_complete(dev_server, task_queue, at_least=len(starter.started))
            assert set(statuses.values()) == {"WORKFLOW_EXECUTION_STATUS_COMPLETED"}, statuses

            fixed = vault.add_version(CERTIFICATE, pem_bundle(also_good), content_type=PEM)
            worker.wait_for_line(
                rf"Temporal client certificate rotated: Key Vault certificate {CERTIFICATE} version {fixed} ",
                timeout=ROTATION_BOUND_SECONDS,
            )
            assert worker.process.poll() is None
            assert {call.credential for call in proxy.calls} == {"worker-certificate-1", "worker-certificate-3"}
        finally:
            worker.stop()
    assert "rotated" not in "\n".join(line for line in worker.lines if refused in line)
