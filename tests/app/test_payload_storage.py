"""payload_storage.py without storage: blob names, reference claims, which connection strings name an emulator
./start.sh may start, the configuration's checks, and what the start-up check says when nothing answers.

The driver against real Azurite (plain, and over HTTPS with a token) is tests/e2e/test_payload_storage_azurite.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverActivityInfo,
    StorageDriverClaim,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WithSerializationContext,
    WorkflowSerializationContext,
)

import config
from payload_storage import (
    MAX_REFERENCES_PER_TASK,
    PayloadStorage,
    PayloadStorageError,
    ReferenceRefusedError,
    TaskBudget,
    TaskBudgetExceededError,
    TaskScopedDriver,
    _blob_size,
    blob_prefix,
    check_reference_namespace,
    emulator_endpoint,
    reference_claim,
)

from helpers.processes import free_port
from helpers.storage_driver import RETRIEVE, WORKFLOW, payload, run, with_storage

# ---------------------------------------------------------------- names and claims (no storage needed)


def test_blob_names_are_scoped_by_namespace_and_workflow_or_activity_and_percent_encoded():
    assert blob_prefix(WORKFLOW) == "v0/ns/default/wt/YourWorkflow/wi/order%2F42%20%C3%BC/ri/run-1"
    activity = StorageDriverStoreContext(
        target=StorageDriverActivityInfo(namespace="ns.acct", id="..", run_id=None, type="your_first_activity")
    )
    assert blob_prefix(activity) == "v0/ns/ns.acct/at/your_first_activity/ai/%2E%2E/ri/null"
    assert blob_prefix(StorageDriverStoreContext(target=None)) == "v0"


def test_a_reference_payload_yields_its_driver_and_claim_and_other_payloads_none():
    assert reference_claim(payload(10)) is None
    forged = Payload(
        metadata={"encoding": b"json/protobuf", "messageType": b"temporal.api.sdk.v1.ExternalStorageReference"},
        data=b'{"driverName":"azure.blobdriver","claimData":{"container":"c","blob":"b"}}',
    )
    assert reference_claim(forged) == ("azure.blobdriver", StorageDriverClaim({"container": "c", "blob": "b"}))
    forged.data = b"{not json"
    with pytest.raises(ReferenceRefusedError, match="malformed"):
        reference_claim(forged)


@pytest.mark.parametrize(
    ("connection_string", "endpoint"),
    [
        ("AccountName=a;AccountKey=k;BlobEndpoint=http://127.0.0.1:10123/a;", "127.0.0.1:10123"),
        ("AccountName=a;AccountKey=k;BlobEndpoint=http://localhost:10000/a", "127.0.0.1:10000"),
        ("UseDevelopmentStorage=true", "127.0.0.1:10000"),
        ("AccountName=a;AccountKey=k;BlobEndpoint=https://127.0.0.1:10000/a", None),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k;EndpointSuffix=core.windows.net", None),
    ],
)
def test_only_a_local_http_blob_endpoint_is_an_emulator_start_sh_may_start(connection_string, endpoint):
    settings = config.PayloadStorageSettings(account_url=None, connection_string=connection_string)
    assert emulator_endpoint(settings) == endpoint


# ---------------------------------------------------------------- configuration


def problems(tmp_path: Path, **variables: str) -> list[str]:
    try:
        config.load_settings(variables, env_file=tmp_path / "none.env")
    except config.ConfigError as error:
        return error.problems
    return []


def test_storage_is_off_by_default_and_on_with_either_the_url_or_a_connection_string(tmp_path):
    storage = config.load_settings({}, env_file=tmp_path / "none.env").payload_storage
    assert not storage.enabled
    assert (storage.container, storage.threshold_bytes, storage.max_payload_bytes) == (
        "temporal-payloads",
        256 * 1024,
        50 * 1024 * 1024,
    )
    url = "https://mystorage.blob.core.windows.net/"
    assert config.load_settings({"PAYLOAD_STORAGE_ACCOUNT_URL": url}, tmp_path / "n.env").payload_storage.enabled
    settings = config.load_settings(
        {"PAYLOAD_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "PAYLOAD_STORAGE_THRESHOLD_BYTES": "0"},
        tmp_path / "n.env",
    )
    assert settings.payload_storage.enabled and settings.payload_storage.threshold_bytes == 0
    assert "UseDevelopmentStorage" not in repr(settings)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"PAYLOAD_STORAGE_ACCOUNT_URL": "http://a.blob.core.windows.net/"}, "https blob endpoint"),
        ({"PAYLOAD_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net/?sv=2024&sig=x"}, "no SAS token"),
        ({"PAYLOAD_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net/payloads/x"}, "not a container or blob"),
        ({"PAYLOAD_STORAGE_CONTAINER": "Temporal_Payloads"}, "must be a container name"),
        ({"PAYLOAD_STORAGE_CONTAINER": "a--b"}, "must be a container name"),
        ({"PAYLOAD_STORAGE_THRESHOLD_BYTES": "3000000"}, "from 0 to 2097152"),
        ({"PAYLOAD_STORAGE_THRESHOLD_BYTES": "256Ki"}, "whole number of bytes"),
        ({"PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES": "0"}, "whole number of bytes from 1"),
        ({"PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES": "100000"}, "no payload could be stored"),
        (
            {
                "PAYLOAD_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net/",
                "PAYLOAD_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            },
            "are both set",
        ),
    ],
)
def test_bad_storage_settings_are_one_clear_problem_each(tmp_path, variables, expected):
    found = problems(tmp_path, **variables)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize("value", ["not a connection string", "AccountName=secret-canary-a9", "k=v;;x"])
def test_a_bad_connection_string_is_refused_without_showing_it(tmp_path, value):
    (found,) = problems(tmp_path, PAYLOAD_STORAGE_CONNECTION_STRING=value)
    assert found.startswith("PAYLOAD_STORAGE_CONNECTION_STRING=<hidden>: ") and "connection" in found
    assert value not in found


def test_an_unreachable_account_is_named_with_what_to_check():
    settings = config.PayloadStorageSettings(
        account_url=None,
        connection_string=f"AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:{free_port()}/acct;",
    )
    with pytest.raises(PayloadStorageError) as raised:
        run(with_storage(settings, lambda storage: storage.check()))
    message = str(raised.value)
    assert (
        "container 'temporal-payloads' of storage account 'acct': the storage account could not be reached" in message
    )
    assert "network path" in message


# ---------------------------------------------------------------- issue 23: references held to the task and namespace


def claim(blob: str) -> StorageDriverClaim:
    return StorageDriverClaim(claim_data={"container": "temporal-payloads", "blob": blob})


DIGEST = "ab" * 32


@pytest.mark.parametrize(
    "blob",
    [
        f"v0/ns/team-b/wt/W/wi/w/ri/r/d/sha256/{DIGEST}",
        f"v0/d/sha256/{DIGEST}",  # no namespace at all
        f"v0/ns/team-a-2/d/sha256/{DIGEST}",  # a namespace that only starts like it
        f"v0/ns/team%2Da/d/sha256/{DIGEST}",
    ],
    ids=["other-namespace", "no-namespace", "longer-name", "encoded-differently"],
)
def test_only_references_under_the_namespace_pass_its_check(blob):
    with pytest.raises(ReferenceRefusedError, match="not under namespace 'team-a'"):
        check_reference_namespace(claim(blob), "team-a")
    check_reference_namespace(claim(f"v0/ns/team-a/wt/W/wi/w/ri/r/d/sha256/{DIGEST}"), "team-a")
    check_reference_namespace(claim(f"v0/ns/a%2Fb/d/sha256/{DIGEST}"), "a/b")


def unreachable_settings(**overrides) -> config.PayloadStorageSettings:
    return config.PayloadStorageSettings(
        account_url=None,
        connection_string=f"AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:{free_port()}/acct;",
        **overrides,
    )


def test_the_worker_refuses_another_namespaces_reference_before_asking_the_storage():
    async def step(storage: PayloadStorage):
        return await storage.driver.retrieve(RETRIEVE, [claim(f"v0/ns/team-b/d/sha256/{DIGEST}")])

    async def run_step():
        storage = PayloadStorage(unreachable_settings(), "team-a")
        try:
            return await step(storage)
        finally:
            await storage.close()

    with pytest.raises(ReferenceRefusedError, match="not under namespace 'team-a'"):
        run(run_step())


def test_a_store_without_a_target_goes_under_the_drivers_namespace():
    assert blob_prefix(StorageDriverStoreContext(), "team-a") == "v0/ns/team-a"
    assert blob_prefix(StorageDriverStoreContext()) == "v0"


def test_a_tasks_references_are_counted_and_its_bytes_reserved_before_any_download():
    budget = TaskBudget(100, "a workflow task")
    budget.name_target(StorageDriverWorkflowInfo(namespace="default", id="w\n1", type="YourWorkflow", run_id="r"))
    budget.name_target(StorageDriverWorkflowInfo(namespace="default", id="later"))  # a command's target: ignored
    budget.count(3)
    budget.reserve([40, 40])
    with pytest.raises(TaskBudgetExceededError) as raised:
        budget.reserve([30])
    message = str(raised.value)
    assert "workflow 'w\\n1', type 'YourWorkflow', run 'r', namespace 'default'" in message
    assert "asked for 110 bytes" in message and "(PAYLOAD_STORAGE_MAX_TASK_BYTES)" in message
    with pytest.raises(TaskBudgetExceededError, match=f"over the {MAX_REFERENCES_PER_TASK} one task may carry"):
        TaskBudget(100).count(MAX_REFERENCES_PER_TASK + 1)


def test_each_serialization_context_gets_a_budget_of_its_own_shared_by_its_retrieves():
    async def step(storage: PayloadStorage):
        external = storage.external_storage()
        assert isinstance(external, WithSerializationContext)
        first = external.with_context(WorkflowSerializationContext(namespace="default", workflow_id="a"))
        second = external.with_context(WorkflowSerializationContext(namespace="default", workflow_id="b"))
        bound = first._with_store_context(WORKFLOW)
        (scoped,) = bound.drivers
        assert isinstance(scoped, TaskScopedDriver) and scoped.budget is first.drivers[0].budget
        assert scoped.budget is not second.drivers[0].budget
        assert scoped.budget.max_bytes == config.DEFAULT_PAYLOAD_STORAGE_MAX_TASK_BYTES
        assert "type 'YourWorkflow'" in scoped.budget.described
        assert bound._get_driver_by_name("azure.blobdriver") is scoped

    run(with_storage(unreachable_settings(), step))


@pytest.mark.parametrize(
    ("content_range", "size", "expected"),
    [("bytes 0-14680133/52428800", 14680134, 52428800), (None, 12, 12), ("bytes */7", 0, 7)],
)
def test_a_blobs_size_is_its_content_ranges_total_not_the_ranges_length(content_range, size, expected):
    properties = type("Properties", (), {"content_range": content_range, "size": size})()
    assert _blob_size(properties) == expected
