"""The Azure Blob Storage driver (payload_storage.py) against real Azurite: round trips, deduplication, tampered,
missing and foreign blobs, the size limit, the start-up check, and the identity path.

Azurite is the npm package `azurite` (.ci/run installs it; these tests skip without it). The identity
tests run Azurite over HTTPS in its OAuth mode and sign in the way a laptop does: DefaultAzureCredential
narrowed to AzureCliCredential, which runs the tests' stub `az` for a token. Names, claims and configuration,
without storage, are tests/app/test_payload_storage.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
from temporalio.converter import StorageDriverClaim, StorageDriverStoreContext, StorageDriverWorkflowInfo

import config
from payload_storage import PayloadStorage, PayloadStorageError, PayloadTooLargeError, ReferenceRefusedError

from helpers.azurite import AZURITE_BLOB, AZURITE_MISSING, Azurite, storage_token
from helpers.fake_keyvault import azure_cli_environment, forbid_non_loopback_connections
from helpers.storage_driver import RETRIEVE, WORKFLOW, payload, run, with_storage

needs_azurite = pytest.mark.skipif(AZURITE_BLOB is None, reason=AZURITE_MISSING)


def connection_settings(azurite: Azurite, **overrides) -> config.PayloadStorageSettings:
    return config.PayloadStorageSettings(account_url=None, connection_string=azurite.connection_string, **overrides)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    if AZURITE_BLOB is None:
        pytest.skip(AZURITE_MISSING)
    with Azurite(tmp_path_factory.mktemp("azurite")) as running:
        yield running


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
