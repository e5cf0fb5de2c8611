"""A feature that is off costs nothing: a running worker loads no module of a feature it does not use.

Checked on `sys.modules` of a started `python worker.py` (through tests/helpers/loaded_modules.py, which runs it
unchanged and writes its loaded modules on SIGUSR1), once it polls and has run a workflow; not by timing. Each
feature switched on still works: the tests of encryption, payload storage and the Key Vault credentials.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from helpers.fake_keyvault import (
    FakeKeyVault,
    azure_cli_environment,
    keyvault_environment,
    workload_identity_environment,
)
from helpers.processes import base_environment, free_port

WORKER_READY = r"Starting worker\.\.\. Awaiting tasks\."
SECRET = "temporal-encryption-key"
KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64

# What encryption, Key Vault credentials and payload storage bring in: our modules for them, and the packages
# only they need (cryptography for the cipher and certificates; the Azure SDK with its HTTP stack, aiohttp, and
# the identity's msal, requests and urllib3).
ENCRYPTION_MODULES = ("crypto_converter", "cryptography")
KEY_VAULT_MODULES = ("keyvault", "azure_identity", "azure.keyvault", "azure.identity", "azure.core", "msal")
BLOB_MODULES = ("payload_storage", "azure.storage")
HTTP_CLIENT_MODULES = ("aiohttp", "requests", "urllib3", "yarl", "multidict", "isodate")
# What the worker needs with every feature off, as a control that the list is the running worker's.
ALWAYS = ("temporalio.worker", "bootstrap", "health", "bounded_http", "workflows", "activities")


def loaded_modules(run_app, tmp_path: Path, env: dict[str, str], dev_server, task_queue: str) -> set[str]:
    """The modules of a worker that polls and has run one workflow."""
    modules_file = tmp_path / "modules.txt"
    worker = run_app("tests/helpers/loaded_modules.py", "worker.py", env=env | {"MODULES_FILE": str(modules_file)})
    worker.wait_for_line(WORKER_READY)
    client = run_app("client.py", "--count", "1", env=env)
    assert client.wait() == 0, client.output
    worker.signal(signal.SIGUSR1)
    done = modules_file.with_name(modules_file.name + ".done")
    deadline = time.monotonic() + 30
    while not done.exists():
        assert time.monotonic() < deadline, f"no module list within 30 s; worker output:\n{worker.output}"
        time.sleep(0.05)
    return set(modules_file.read_text().split())


def matching(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(name for name in modules if any(name == p or name.startswith(p + ".") for p in prefixes))


def worker_environment(tmp_path: Path, dev_server, task_queue: str, **overrides: str) -> dict[str, str]:
    """As the pod runs it: health and metrics ports on, text logs; every optional feature off unless given."""
    return base_environment(
        tmp_path,
        TEMPORAL_ADDRESS=dev_server.address,
        TEMPORAL_TASK_QUEUE=task_queue,
        HEALTH_PORT=str(free_port()),
        METRICS_PORT=str(free_port()),
        LOG_FORMAT="text",
        **overrides,
    )


def test_a_worker_with_every_feature_off_loads_none_of_their_modules(tmp_path, dev_server, task_queue, run_app):
    env = worker_environment(tmp_path, dev_server, task_queue)
    modules = loaded_modules(run_app, tmp_path, env, dev_server, task_queue)
    assert set(ALWAYS) <= modules
    for feature in (ENCRYPTION_MODULES, KEY_VAULT_MODULES, BLOB_MODULES, HTTP_CLIENT_MODULES):
        assert matching(modules, feature) == []


def test_a_worker_with_encryption_on_loads_no_blob_storage_module(tmp_path, dev_server, task_queue, run_app):
    with FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET, KEY)
        env = azure_cli_environment(worker_environment(tmp_path, dev_server, task_queue)) | keyvault_environment(
            vault, SECRET
        )
        modules = loaded_modules(run_app, tmp_path, env, dev_server, task_queue)
    # The control: encryption and Key Vault are loaded, so the list is the one of an encrypting worker.
    assert matching(modules, ("crypto_converter", "keyvault")) == ["crypto_converter", "keyvault"]
    assert matching(modules, BLOB_MODULES) == []


def test_a_worker_encrypting_under_workload_identity_loads_no_azure_sdk(tmp_path, dev_server, task_queue, run_app):
    """As in AKS: Key Vault is read by keyvault.py's lean reader, so neither the Azure SDK nor its HTTP stack is
    loaded, and the workflow still runs encrypted (the worker and client.py each exchanged a token)."""
    with FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET, KEY)
        env = workload_identity_environment(
            vault, tmp_path, worker_environment(tmp_path, dev_server, task_queue)
        ) | keyvault_environment(vault, SECRET)
        modules = loaded_modules(run_app, tmp_path, env, dev_server, task_queue)
        token_exchanges = len(vault.token_requests)
        served = [request.served_version for request in vault.requests if request.served_version]
    assert matching(modules, ("crypto_converter", "keyvault", "azure_identity")) == [
        "azure_identity",
        "crypto_converter",
        "keyvault",
    ]
    assert matching(modules, ("azure", "msal", *BLOB_MODULES, *HTTP_CLIENT_MODULES)) == []
    assert token_exchanges == 2 and len(served) >= 2
