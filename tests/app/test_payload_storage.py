"""The Azure Blob Storage driver (payload_storage.py) against real Azurite, and its configuration.

Azurite is the npm package `azurite` (.ci/run installs it; these tests skip without it). The identity
tests run Azurite over HTTPS in its OAuth mode and sign in the way a laptop does: DefaultAzureCredential
narrowed to AzureCliCredential, which runs the tests' stub `az` for a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverActivityInfo,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

import config
from payload_storage import (
    PayloadStorage,
    PayloadStorageError,
    PayloadTooLargeError,
    ReferenceRefusedError,
    blob_prefix,
    emulator_endpoint,
    reference_claim,
)

from helpers.azurite import AZURITE_BLOB, AZURITE_MISSING, Azurite, storage_token
from helpers.fake_keyvault import azure_cli_environment, forbid_non_loopback_connections
from helpers.processes import free_port

needs_azurite = pytest.mark.skipif(AZURITE_BLOB is None, reason=AZURITE_MISSING)

WORKFLOW = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="order/42 ü", run_id="run-1", type="YourWorkflow")
)
RETRIEVE = StorageDriverRetrieveContext()


def payload(size: int, fill: bytes = b"x") -> Payload:
    return Payload(metadata={"encoding": b"binary/plain"}, data=fill * size)


def connection_settings(azurite: Azurite, **overrides) -> config.PayloadStorageSettings:
    return config.PayloadStorageSettings(account_url=None, connection_string=azurite.connection_string, **overrides)


def run(coroutine):
    return asyncio.run(coroutine)


async def with_storage(settings: config.PayloadStorageSettings, step):
    storage = PayloadStorage(settings)
    try:
        return await step(storage)
    finally:
        await storage.close()


@pytest.fixture(scope="module")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    if AZURITE_BLOB is None:
        pytest.skip(AZURITE_MISSING)
    with Azurite(tmp_path_factory.mktemp("azurite")) as running:
        yield running


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
        ({"PAYLOAD_STORAGE_ACCOUNT_URL": "https://a.blob.core.windows.net/?sv=2024&sig=x"}, "no SAS token"),
        ({"PAYLOAD_STORAGE_ACCOUNT_URL": "https://a.blob.core.windows.net/payloads/x"}, "not a container or blob"),
        ({"PAYLOAD_STORAGE_CONTAINER": "Temporal_Payloads"}, "must be a container name"),
        ({"PAYLOAD_STORAGE_CONTAINER": "a--b"}, "must be a container name"),
        ({"PAYLOAD_STORAGE_THRESHOLD_BYTES": "3000000"}, "from 0 to 2097152"),
        ({"PAYLOAD_STORAGE_THRESHOLD_BYTES": "256Ki"}, "whole number of bytes"),
        ({"PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES": "0"}, "whole number of bytes from 1"),
        ({"PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES": "100000"}, "no payload could be stored"),
        (
            {
                "PAYLOAD_STORAGE_ACCOUNT_URL": "https://a.blob.core.windows.net/",
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


# ---------------------------------------------------------------- the driver against Azurite


@needs_azurite
def test_a_payload_round_trips_and_its_claim_holds_the_container_and_blob_name_only(azurite):
    original = payload(300_000, b"round trip ")

    async def step(storage: PayloadStorage):
        (claim,) = await storage.driver.store(WORKFLOW, [original])
        return claim, await storage.driver.retrieve(RETRIEVE, [claim])

    claim, (back,) = run(with_storage(connection_settings(azurite), step))
    digest = hashlib.sha256(original.SerializeToString()).hexdigest()
    assert claim.claim_data == {
        "container": "temporal-payloads",
        "blob": f"v0/ns/default/wt/YourWorkflow/wi/order%2F42%20%C3%BC/ri/run-1/d/sha256/{digest}",
    }
    assert back == original
    assert azurite.read(claim.claim_data["blob"]) == original.SerializeToString()


@needs_azurite
def test_the_same_payload_twice_is_stored_once(azurite):
    same = payload(280_000, os.urandom(16))

    async def step(storage: PayloadStorage):
        (first,) = await storage.driver.store(WORKFLOW, [same])
        etag = azurite.container_client().get_blob_client(first.claim_data["blob"]).get_blob_properties().etag
        second, third = await storage.driver.store(WORKFLOW, [same, same])
        return first, second, third, etag

    first, second, third, etag = run(with_storage(connection_settings(azurite), step))
    assert first == second == third
    name = first.claim_data["blob"]
    assert [blob for blob in azurite.blob_names() if blob.endswith(name.rsplit("/", 1)[1])] == [name]
    properties = azurite.container_client().get_blob_client(name).get_blob_properties()
    assert properties.etag == etag, "the blob was not written again"


@needs_azurite
def test_a_name_over_1024_characters_falls_back_to_the_namespace_prefix(azurite):
    long_id = StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id="w" * 1100, run_id="r", type="YourWorkflow")
    )

    async def step(storage: PayloadStorage):
        (claim,) = await storage.driver.store(long_id, [payload(10)])
        return claim, await storage.driver.retrieve(RETRIEVE, [claim])

    claim, (back,) = run(with_storage(connection_settings(azurite), step))
    assert claim.claim_data["blob"].startswith("v0/ns/default/d/sha256/") and back == payload(10)


@needs_azurite
def test_a_tampered_blob_is_an_error_naming_it_and_reads_again_once_restored(azurite):
    original = payload(270_000, b"tamper me ")

    async def store(storage: PayloadStorage):
        return (await storage.driver.store(WORKFLOW, [original]))[0]

    claim = run(with_storage(connection_settings(azurite), store))
    name = claim.claim_data["blob"]
    azurite.write(name, payload(270_000, b"tampered! ").SerializeToString())

    async def retrieve(storage: PayloadStorage):
        return await storage.driver.retrieve(RETRIEVE, [claim])

    with pytest.raises(PayloadStorageError, match="integrity check") as raised:
        run(with_storage(connection_settings(azurite), retrieve))
    message = str(raised.value)
    assert name in message and "'temporal-payloads'" in message and "'devstoreaccount1'" in message
    assert "Restore it" in message
    azurite.write(name, original.SerializeToString())
    assert run(with_storage(connection_settings(azurite), retrieve)) == [original]


@needs_azurite
@pytest.mark.parametrize(
    ("claim_data", "expected"),
    [
        ({"container": "other", "blob": "v0/d/sha256/" + "0" * 64}, "reads only container 'temporal-payloads'"),
        ({"container": "temporal-payloads", "blob": "secrets/db.json"}, "not a name this driver writes"),
        ({"container": "temporal-payloads", "blob": "v0/ns/../../x/d/sha256/" + "0" * 64}, "not a name"),
        ({"blob": "v0/d/sha256/" + "0" * 64}, "reads only container"),
    ],
)
def test_claims_outside_the_container_or_not_of_our_shape_are_refused_before_any_read(azurite, claim_data, expected):
    if claim_data.get("container") == "other":
        other = azurite.admin().get_container_client("other")
        if not other.exists():
            other.create_container()
        other.upload_blob(claim_data["blob"], payload(5).SerializeToString(), overwrite=True)

    async def step(storage: PayloadStorage):
        return await storage.driver.retrieve(RETRIEVE, [StorageDriverClaim(claim_data)])

    with pytest.raises(ReferenceRefusedError, match=expected):
        run(with_storage(connection_settings(azurite), step))


@needs_azurite
def test_payloads_over_the_maximum_are_neither_stored_nor_read_past_it(azurite):
    settings = connection_settings(azurite, threshold_bytes=0, max_payload_bytes=100_000)

    async def store_big(storage: PayloadStorage):
        return await storage.driver.store(WORKFLOW, [payload(200_000)])

    with pytest.raises(PayloadTooLargeError, match="PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES=100000"):
        run(with_storage(settings, store_big))

    async def store_allowed(storage: PayloadStorage):
        return (await storage.driver.store(WORKFLOW, [payload(200_000)]))[0]

    claim = run(with_storage(connection_settings(azurite), store_allowed))

    async def fetch(storage: PayloadStorage):
        return await storage.driver.fetch(claim, max_bytes=50_000)

    for limited in (settings, connection_settings(azurite)):
        with pytest.raises(PayloadTooLargeError, match="over the"):
            run(with_storage(limited, fetch if limited is not settings else lambda s: s.driver.fetch(claim)))


@needs_azurite
def test_a_missing_blob_names_it_and_says_what_deletes_blobs(azurite):
    claim = StorageDriverClaim({"container": "temporal-payloads", "blob": "v0/d/sha256/" + "a" * 64})

    async def step(storage: PayloadStorage):
        return await storage.driver.retrieve(RETRIEVE, [claim])

    with pytest.raises(PayloadStorageError, match="the blob does not exist") as raised:
        run(with_storage(connection_settings(azurite), step))
    assert "v0/d/sha256/" + "a" * 64 in str(raised.value) and "PAYLOAD_STORAGE_RETENTION_DAYS" in str(raised.value)


@needs_azurite
def test_the_start_up_check_names_a_missing_container_and_how_to_create_it(azurite):
    settings = connection_settings(azurite, container="no-such-container")
    with pytest.raises(PayloadStorageError) as raised:
        run(with_storage(settings, lambda storage: storage.check()))
    assert str(raised.value).startswith(
        "Cannot use container 'no-such-container' of storage account 'devstoreaccount1': the container does not exist"
    )
    assert "az storage container create --account-name devstoreaccount1 --name no-such-container" in str(raised.value)
    run(with_storage(connection_settings(azurite), lambda storage: storage.check()))


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


# ---------------------------------------------------------------- the identity path: HTTPS and OAuth


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory) -> Iterator[Azurite]:
    if AZURITE_BLOB is None:
        pytest.skip(AZURITE_MISSING)
    with Azurite(tmp_path_factory.mktemp("azurite-oauth"), oauth=True) as running:
        yield running


@pytest.fixture
def az_cli(monkeypatch) -> Iterator[None]:
    """This process signs in to Azure as on a laptop: AzureCliCredential only, the stub az, loopback only."""
    environment = azure_cli_environment(dict(os.environ))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for name in set(os.environ) - set(environment):
        monkeypatch.delenv(name)
    monkeypatch.setenv("STUB_AZ_STORAGE_ACCESS_TOKEN", storage_token())
    with forbid_non_loopback_connections() as refused:
        yield
    assert refused == []


@needs_azurite
def test_the_azure_identity_signs_in_to_an_https_account_with_a_token(oauth_azurite, az_cli):
    settings = config.PayloadStorageSettings(account_url=oauth_azurite.account_url, ca_file=oauth_azurite.ca_file)
    original = payload(300_000, b"identity ")

    async def step(storage: PayloadStorage):
        await storage.check()
        (claim,) = await storage.driver.store(WORKFLOW, [original])
        return await storage.driver.retrieve(RETRIEVE, [claim])

    assert run(with_storage(settings, step)) == [original]


@needs_azurite
def test_azurite_refuses_a_request_without_a_valid_token(oauth_azurite, az_cli, monkeypatch):
    monkeypatch.setenv("STUB_AZ_STORAGE_ACCESS_TOKEN", storage_token(lifetime_seconds=-3600))  # expired
    settings = config.PayloadStorageSettings(account_url=oauth_azurite.account_url, ca_file=oauth_azurite.ca_file)
    with pytest.raises(PayloadStorageError) as raised:
        run(with_storage(settings, lambda storage: storage.check()))
    message = str(raised.value)
    assert "storage account 'devstoreaccount1'" in message
    assert "the storage account did not accept the credentials (HTTP 403 AuthenticationFailed)" in message
    assert "az login" in message


@needs_azurite
def test_no_identity_says_to_sign_in(oauth_azurite, az_cli, monkeypatch):
    monkeypatch.setenv("STUB_AZ_LOGGED_OUT", "1")
    settings = config.PayloadStorageSettings(account_url=oauth_azurite.account_url, ca_file=oauth_azurite.ca_file)
    with pytest.raises(PayloadStorageError, match="no Azure identity could get a token") as raised:
        run(with_storage(settings, lambda storage: storage.check()))
    assert "az login" in str(raised.value) and "workload identity" in str(raised.value)
