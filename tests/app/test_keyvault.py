"""keyvault.py through the real azure-keyvault-secrets SDK and DefaultAzureCredential, against the fake vault.

The only credential is azure-identity's AzureCliCredential with the stub `az` (AZURE_TOKEN_CREDENTIALS),
and an audit hook fails any test that tries to connect anywhere but loopback.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import trustme
from cryptography import x509
from temporalio.api.common.v1 import Payload

import config
from crypto_converter import EncryptionCodec, PayloadDecryptionError
from keyvault import (
    MAX_FETCHES_IN_FLIGHT,
    KeyVaultError,
    KeyVaultKeyProvider,
    SecretVersion,
    decode_api_key,
    decode_client_certificate,
    temporal_api_key,
    temporal_client_certificate,
)

from helpers.fake_keyvault import (
    ACCESS_TOKEN,
    FakeKeyVault,
    azure_cli_environment,
    forbid_non_loopback_connections,
    keyvault_environment,
    workload_identity_environment,
)
from helpers.processes import free_port
from helpers.static_keys import StaticKeyProvider

SECRET = "temporal-encryption-key"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """This process sees only the stub `az`, and may connect to loopback addresses only."""
    environment = azure_cli_environment()
    for name in set(os.environ) - set(environment):
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with forbid_non_loopback_connections() as refused:
        yield refused
    assert refused == [], f"a test tried to connect to non-loopback addresses: {refused}"


@pytest.fixture(params=["azure-sdk", "workload-identity"])
def identity(request: pytest.FixtureRequest) -> str:
    """How the vault is read: through the Azure SDK with `az login` (the stub), or as a pod with AKS workload
    identity does, with keyvault.py's lean reader; every test with a vault runs both ways."""
    return request.param


@pytest.fixture
def vault(tmp_path: Path, identity: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKeyVault]:
    with FakeKeyVault(tmp_path) as running:
        if identity == "workload-identity":
            environment = workload_identity_environment(running, tmp_path)
            for name in set(os.environ) - set(environment):
                monkeypatch.delenv(name)
            for name, value in environment.items():
                monkeypatch.setenv(name, value)
        yield running


def with_identity(environ: dict[str, str]) -> dict[str, str]:
    """`environ` and this process's AZURE_* variables: what load_settings sees in a pod."""
    return {name: value for name, value in os.environ.items() if name.startswith("AZURE_")} | environ


def new_key(size: int = 32) -> tuple[bytes, str]:
    """A random AES key and its base64 form, as stored in Key Vault."""
    key = os.urandom(size)
    return key, base64.b64encode(key).decode()


def provider_for(vault: FakeKeyVault, tmp_path: Path, **variables: str) -> KeyVaultKeyProvider:
    """A provider configured the way users configure it: through the settings."""
    environ = with_identity(keyvault_environment(vault, SECRET) | variables)
    settings = config.load_settings(environ=environ, env_file=tmp_path / "no-config.env")
    return KeyVaultKeyProvider(settings.encryption)


def run_with(provider: KeyVaultKeyProvider, scenario: Callable[[KeyVaultKeyProvider], Awaitable[T]]) -> T:
    async def started() -> T:
        async with provider:
            return await scenario(provider)

    return asyncio.run(started())


def start_error(provider: KeyVaultKeyProvider) -> str:
    with pytest.raises(KeyVaultError) as raised:
        asyncio.run(provider.start())
    message = str(raised.value)
    assert "\n" not in message
    return message


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll until the condition holds; the generous limit only stops a broken test from hanging."""
    for _ in range(600):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.mark.parametrize("size", [16, 24, 32])
def test_start_uses_current_version_as_key_id(vault: FakeKeyVault, tmp_path: Path, size: int) -> None:
    key, value = new_key(size)
    version = vault.add_version(SECRET, value)

    current = run_with(provider_for(vault, tmp_path), lambda provider: provider.current_key())

    assert current == (version, key)


def test_logs_key_id_but_never_key_or_token(
    vault: FakeKeyVault, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key, value = new_key()
    old_version = vault.add_version(SECRET, value)
    new_version = vault.add_version(SECRET, new_key()[1])
    caplog.set_level(logging.DEBUG)

    run_with(provider_for(vault, tmp_path), lambda provider: provider.key_for(old_version))

    messages = [record.getMessage() for record in caplog.records]
    assert any(new_version in message and "Encrypting payloads with key id" in message for message in messages)
    assert any(old_version in message and "older payloads" in message for message in messages)
    everything = "\n".join(messages)
    for secret in (value, key.hex(), repr(key), ACCESS_TOKEN):
        assert secret not in everything


def test_rotation_is_picked_up_without_restart(vault: FakeKeyVault, tmp_path: Path) -> None:
    old_key, old_value = new_key()
    old_version = vault.add_version(SECRET, old_value)
    new_key_bytes, new_value = new_key()

    async def rotate(provider: KeyVaultKeyProvider) -> None:
        new_version = vault.add_version(SECRET, new_value)

        async def uses_new_key() -> bool:
            return (await provider.current_key())[0] == new_version

        await wait_until(uses_new_key, "the refresh to pick up the new version")
        assert await provider.current_key() == (new_version, new_key_bytes)
        assert await provider.key_for(old_version) == old_key

    run_with(provider_for(vault, tmp_path, KEYVAULT_REFRESH_SECONDS="1"), rotate)

    assert vault.fetches(old_version) == 0  # the old key was still in memory from the start


def test_payloads_from_before_a_rotation_still_decrypt(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(SECRET, new_key()[1])
    before = Payload(metadata={"encoding": b"json/plain"}, data=b'"encrypted under the first key"')

    async def rotate(provider: KeyVaultKeyProvider) -> None:
        codec = EncryptionCodec(provider)
        [encrypted_before] = await codec.encode([before])
        new_version = vault.add_version(SECRET, new_key()[1])

        async def uses_new_key() -> bool:
            return (await provider.current_key())[0] == new_version

        await wait_until(uses_new_key, "the refresh to pick up the new version")
        [encrypted_after] = await codec.encode([before])
        assert encrypted_after.metadata["encryption-key-id"] == new_version.encode()
        assert await codec.decode([encrypted_before, encrypted_after]) == [before, before]

    run_with(provider_for(vault, tmp_path, KEYVAULT_REFRESH_SECONDS="1"), rotate)


def test_older_version_is_fetched_once_on_demand(vault: FakeKeyVault, tmp_path: Path) -> None:
    old_key, old_value = new_key()
    old_version = vault.add_version(SECRET, old_value)
    vault.add_version(SECRET, new_key()[1])

    async def ask_twice(provider: KeyVaultKeyProvider) -> list[bytes]:
        return [await provider.key_for(old_version), await provider.key_for(old_version)]

    assert run_with(provider_for(vault, tmp_path), ask_twice) == [old_key, old_key]
    assert vault.fetches(old_version) == 1


def test_concurrent_requests_for_one_version_share_one_fetch(vault: FakeKeyVault, tmp_path: Path) -> None:
    old_key, old_value = new_key()
    old_version = vault.add_version(SECRET, old_value)
    vault.add_version(SECRET, new_key()[1])

    async def ask_fifty_at_once(provider: KeyVaultKeyProvider) -> list[bytes]:
        return list(await asyncio.gather(*(provider.key_for(old_version) for _ in range(50))))

    assert run_with(provider_for(vault, tmp_path), ask_fifty_at_once) == [old_key] * 50
    assert vault.fetches(old_version) == 1


def test_unknown_version_is_an_error_naming_it(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(SECRET, new_key()[1])
    unknown = "0" * 32

    async def ask(provider: KeyVaultKeyProvider) -> str:
        with pytest.raises(KeyVaultError) as raised:
            await provider.key_for(unknown)
        return str(raised.value)

    message = run_with(provider_for(vault, tmp_path), ask)
    assert unknown in message and SECRET in message and "does not exist" in message


def test_codec_reports_a_version_the_vault_does_not_have(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(SECRET, new_key()[1])
    unknown = "f" * 32

    async def decode_foreign_payload(provider: KeyVaultKeyProvider) -> str:
        [encrypted] = await EncryptionCodec(provider).encode([Payload(data=b"x")])
        encrypted.metadata["encryption-key-id"] = unknown.encode()
        with pytest.raises(PayloadDecryptionError) as raised:
            await EncryptionCodec(provider).decode([encrypted])
        return str(raised.value)

    assert unknown in run_with(provider_for(vault, tmp_path), decode_foreign_payload)


def test_codec_rejects_a_payload_whose_key_id_holds_another_key_here(vault: FakeKeyVault, tmp_path: Path) -> None:
    version = vault.add_version(SECRET, new_key()[1])
    elsewhere = StaticKeyProvider({version: new_key()[0]})  # same version id, different key
    [encrypted] = asyncio.run(EncryptionCodec(elsewhere).encode([Payload(data=b"x")]))

    async def decode(provider: KeyVaultKeyProvider) -> str:
        with pytest.raises(PayloadDecryptionError) as raised:
            await EncryptionCodec(provider).decode([encrypted])
        return str(raised.value)

    message = run_with(provider_for(vault, tmp_path), decode)
    assert version in message and "failed authentication" in message


def test_failed_refresh_keeps_the_last_key_until_the_vault_is_back(
    vault: FakeKeyVault, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key, value = new_key()
    version = vault.add_version(SECRET, value)
    caplog.set_level(logging.WARNING, logger="keyvault")

    async def outage(provider: KeyVaultKeyProvider) -> None:
        vault.unavailable = True

        async def refresh_failed() -> bool:
            return any("refresh failed" in record.getMessage() for record in caplog.records)

        await wait_until(refresh_failed, "a refresh to fail")
        assert await provider.current_key() == (version, key)

        new_version = vault.add_version(SECRET, new_key()[1])
        vault.unavailable = False

        async def uses_new_key() -> bool:
            return (await provider.current_key())[0] == new_version

        await wait_until(uses_new_key, "the refresh to pick up the new version after the outage")

    run_with(provider_for(vault, tmp_path, KEYVAULT_REFRESH_SECONDS="1"), outage)
    warning = next(record.getMessage() for record in caplog.records if "refresh failed" in record.getMessage())
    assert f"still encrypting with key id {version}" in warning and "HTTP 503" in warning


def test_close_stops_the_refresh(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(SECRET, new_key()[1])

    async def start_and_close() -> set[str]:
        provider = provider_for(vault, tmp_path, KEYVAULT_REFRESH_SECONDS="1")
        await provider.start()
        await provider.close()
        return {task.get_name() for task in asyncio.all_tasks() if task is not asyncio.current_task()}

    assert asyncio.run(start_and_close()) == set()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("this is not base64!", "is not base64"),
        (base64.b64encode(os.urandom(20)).decode(), "holds 20 bytes"),
        ("", "holds 0 bytes"),
    ],
    ids=["not-base64", "20-bytes", "empty"],
)
def test_bad_secret_value_is_a_clear_error(vault: FakeKeyVault, tmp_path: Path, value: str, problem: str) -> None:
    version = vault.add_version(SECRET, value)

    message = start_error(provider_for(vault, tmp_path))

    assert problem in message and SECRET in message and version in message
    assert "openssl rand -base64 32" in message
    if value:
        assert value not in message


def test_missing_secret_is_a_clear_error(vault: FakeKeyVault, tmp_path: Path) -> None:
    message = start_error(provider_for(vault, tmp_path))

    assert "does not exist" in message and "KEYVAULT_SECRET_NAME" in message and SECRET in message


def test_unreachable_vault_is_a_clear_error(tmp_path: Path, vault: FakeKeyVault) -> None:
    closed_port_url = f"https://127.0.0.1:{free_port()}/"

    message = start_error(provider_for(vault, tmp_path, KEYVAULT_URL=closed_port_url))

    assert "cannot reach the vault" in message and "KEYVAULT_URL" in message and closed_port_url.rstrip("/") in message


def test_silent_vault_gives_up_after_the_startup_timeout(vault: FakeKeyVault, tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers the TLS handshake
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent_url = f"https://127.0.0.1:{silent.getsockname()[1]}/"

        message = start_error(
            provider_for(vault, tmp_path, KEYVAULT_URL=silent_url, KEYVAULT_STARTUP_TIMEOUT_SECONDS="1")
        )

    assert "no answer within 1s" in message
    assert "az login" in message and "Key Vault Secrets User" in message and "KEYVAULT_URL" in message


@pytest.mark.parametrize(
    ("status", "advice"), [(401, "az login"), (403, 'role "Key Vault Secrets User"')], ids=["401", "403"]
)
def test_refused_access_is_a_clear_error(vault: FakeKeyVault, tmp_path: Path, status: int, advice: str) -> None:
    vault.add_version(SECRET, new_key()[1])
    vault.rejected_status = status

    message = start_error(provider_for(vault, tmp_path))

    assert f"(HTTP {status}: " in message and advice in message


def test_identity_without_login_is_a_clear_error(
    vault: FakeKeyVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, identity: str
) -> None:
    vault.add_version(SECRET, new_key()[1])
    monkeypatch.setenv("STUB_AZ_LOGGED_OUT", "1")  # no `az login`
    vault.identity_refused = True  # Entra ID knows no federated credential for the pod's service account

    message = start_error(provider_for(vault, tmp_path))

    assert "no Azure identity could get a token" in message and "az login" in message
    if identity == "workload-identity":
        assert "AADSTS700213" in message and "workload identity" in message
        assert vault.federated_token not in message


def test_untrusted_vault_certificate_is_refused(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(SECRET, new_key()[1])
    other_ca_file = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca_file))

    message = start_error(provider_for(vault, tmp_path, KEYVAULT_CA_FILE=str(other_ca_file)))

    assert "CERTIFICATE_VERIFY_FAILED" in message and "KEYVAULT_CA_FILE" in message


def test_unknown_credential_choice_is_a_clear_error(
    vault: FakeKeyVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "NoSuchCredential")

    with pytest.raises(KeyVaultError, match="AZURE_TOKEN_CREDENTIALS"):
        provider_for(vault, tmp_path)


def test_connections_beyond_loopback_are_refused_in_tests(loopback_only: list[str]) -> None:
    with pytest.raises(PermissionError, match="loopback"):
        socket.create_connection(("192.0.2.1", 443), timeout=5)  # TEST-NET-1: never routed

    assert loopback_only == ["192.0.2.1"]
    loopback_only.clear()  # refused as it should be: not a failure of this test


# --- Key ids come from payloads: checked before any read, failures remembered, fetches bounded ----------


@pytest.mark.parametrize(
    "key_id",
    [".", "..", "%2F", "a/b", "../other-secret", "0" * 31, "0" * 33, "A" * 32, "0" * 31 + "\n", ""],
    ids=["dot", "dot-dot", "percent-2F", "slash", "parent", "31-digits", "33-digits", "upper-case", "newline", "empty"],
)
def test_a_key_id_that_is_not_a_version_never_reaches_the_vault(vault: FakeKeyVault, tmp_path: Path, key_id) -> None:
    vault.add_version(SECRET, new_key()[1])

    async def ask(provider: KeyVaultKeyProvider) -> str:
        reads_after_start = len(vault.requests)
        with pytest.raises(KeyVaultError) as raised:
            await provider.key_for(key_id)
        assert len(vault.requests) == reads_after_start
        return str(raised.value)

    message = run_with(provider_for(vault, tmp_path), ask)
    assert "not a Key Vault secret version" in message and "\n" not in message


def test_a_failed_fetch_is_remembered_for_the_interval(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(SECRET, new_key()[1])
    unknown = "1" * 32

    async def ask_until_forgotten(provider: KeyVaultKeyProvider) -> list[str]:
        messages = []
        for _ in range(5):
            with pytest.raises(KeyVaultError) as raised:
                await provider.key_for(unknown)
            messages.append(str(raised.value))
        assert len([request for request in vault.requests if request.version == unknown]) == 1
        await asyncio.sleep(1.2)  # KEYVAULT_FAILED_FETCH_RETRY_SECONDS=1 below
        with pytest.raises(KeyVaultError):
            await provider.key_for(unknown)
        return messages

    messages = run_with(provider_for(vault, tmp_path, KEYVAULT_FAILED_FETCH_RETRY_SECONDS="1"), ask_until_forgotten)
    assert len([request for request in vault.requests if request.version == unknown]) == 2
    assert all("does not exist" in message for message in messages)
    assert all("remembered" in message and "KEYVAULT_FAILED_FETCH_RETRY_SECONDS" in message for message in messages[1:])


def test_a_version_that_appears_later_is_found_after_the_interval(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(SECRET, new_key()[1])
    late_key, late_value = new_key()
    late_version = "2" * 32

    async def ask_before_and_after(provider: KeyVaultKeyProvider) -> bytes:
        with pytest.raises(KeyVaultError):
            await provider.key_for(late_version)
        vault.add_version(SECRET, late_value, version=late_version)
        with pytest.raises(KeyVaultError, match="remembered"):
            await provider.key_for(late_version)
        await asyncio.sleep(1.2)
        return await provider.key_for(late_version)

    assert run_with(provider_for(vault, tmp_path, KEYVAULT_FAILED_FETCH_RETRY_SECONDS="1"), ask_before_and_after) == (
        late_key
    )


def test_fetches_in_flight_are_bounded(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(SECRET, new_key()[1])
    unknown = [f"{number:032x}" for number in range(1, MAX_FETCHES_IN_FLIGHT + 3)]

    async def ask_all_at_once(provider: KeyVaultKeyProvider) -> list[BaseException]:
        outcomes = await asyncio.gather(*(provider.key_for(key_id) for key_id in unknown), return_exceptions=True)
        return [outcome for outcome in outcomes if isinstance(outcome, BaseException)]

    errors = run_with(provider_for(vault, tmp_path), ask_all_at_once)
    assert len(errors) == len(unknown)
    assert sum("being fetched" in str(error) for error in errors) == 2
    assert len({request.version for request in vault.requests if request.version}) == MAX_FETCHES_IN_FLIGHT


# --- The Temporal credentials: decoded, kept current, a failed refresh keeps the last value ---------------

API_KEY_SECRET = "temporal-api-key"
CERTIFICATE = "temporal-client-certificate"


def vault_settings(vault: FakeKeyVault, tmp_path: Path, **variables: str) -> config.KeyVaultSettings:
    environ = with_identity(keyvault_environment(vault, SECRET) | {"KEYVAULT_REFRESH_SECONDS": "1"} | variables)
    return config.load_settings(environ=environ, env_file=tmp_path / "no-config.env").keyvault


def version_of(value: str, content_type: str | None = None) -> SecretVersion:
    return SecretVersion("a-secret", "0" * 32, value, content_type)


def pem_bundle(*parts: trustme.Blob) -> str:
    return b"".join(part.bytes() for part in parts).decode()


@pytest.mark.parametrize("stored", ["the-key", "the-key\n", "  the-key \r\n"], ids=["plain", "newline", "spaces"])
def test_an_api_key_is_the_secret_text_without_surrounding_whitespace(stored: str) -> None:
    assert decode_api_key(version_of(stored)) == "the-key"


@pytest.mark.parametrize(
    ("stored", "problem"),
    [("", "is empty"), (" \n", "is empty"), ("one\ntwo", "line breaks"), ("kéy", "non-ASCII")],
    ids=["empty", "blank", "two-lines", "non-ascii"],
)
def test_a_value_that_cannot_be_an_api_key_is_refused_without_showing_it(stored: str, problem: str) -> None:
    with pytest.raises(KeyVaultError) as raised:
        decode_api_key(version_of(stored))
    message = str(raised.value)
    assert problem in message and "'a-secret' version " + "0" * 32 in message and "az keyvault secret set" in message
    assert stored.strip() not in message or not stored.strip()


def test_a_client_certificate_is_its_chain_leaf_first_and_its_key_in_any_order_of_the_pem() -> None:
    ca = trustme.CA()
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("worker", common_name="worker-1")
    [leaf_pem, *chain_pems] = leaf.cert_chain_pems
    stored = pem_bundle(*chain_pems, leaf.private_key_pem, leaf_pem)  # key in the middle, leaf last

    certificate = decode_client_certificate(version_of(stored, "application/x-pem-file"))

    assert certificate.subject.startswith("CN=worker-1,")
    assert x509.load_pem_x509_certificate(certificate.chain_pem) == x509.load_pem_x509_certificate(leaf_pem.bytes())
    assert certificate.chain_pem.count(b"BEGIN CERTIFICATE") == len(leaf.cert_chain_pems)
    assert certificate.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, which the SDK reads
    assert "PRIVATE" not in repr(certificate)


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("pkcs12", "is a PKCS#12 certificate"),
        ("no-key", "holds 0 private key(s) and 1 certificate(s)"),
        ("no-certificate", "holds 1 private key(s) and 0 certificate(s)"),
        ("another-key", "no certificate in it belongs to its private key"),
        ("encrypted-key", "passphrase-protected private key"),
        ("garbage", "is not valid PEM"),
    ],
)
def test_a_value_that_is_not_a_pem_certificate_with_its_key_is_refused_without_showing_it(case: str, problem: str):
    ca = trustme.CA()
    leaf, other = ca.issue_cert("worker"), ca.issue_cert("other")
    [leaf_pem] = leaf.cert_chain_pems
    key = leaf.private_key_pem.bytes().decode()
    stored, content_type = {
        "pkcs12": ("MIIK...base64 of a PFX", "application/x-pkcs12"),
        "no-key": (pem_bundle(leaf_pem), None),
        "no-certificate": (key, None),
        "another-key": (pem_bundle(other.private_key_pem, leaf_pem), None),
        "encrypted-key": (
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n" + pem_bundle(leaf_pem),
            None,
        ),
        "garbage": (
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n" + pem_bundle(leaf_pem),
            None,
        ),
    }[case]

    with pytest.raises(KeyVaultError) as raised:
        decode_client_certificate(version_of(stored, content_type))

    message = str(raised.value)
    assert problem in message and "application/x-pem-file" in message and "\n" not in message
    assert "PRIVATE KEY-----" not in message and key.splitlines()[1] not in message


def test_temporal_credentials_are_read_and_kept_current(vault: FakeKeyVault, tmp_path: Path) -> None:
    first = vault.add_version(API_KEY_SECRET, "key-1\n")
    changes: list[tuple[str, str]] = []

    async def rotate() -> tuple[str, str]:
        async with temporal_api_key(vault_settings(vault, tmp_path), API_KEY_SECRET) as api_key:
            assert (api_key.version, api_key.value) == (first, "key-1")

            async def record(version: str, value: str) -> None:
                changes.append((version, value))

            api_key.keep_fresh(record)
            second = vault.add_version(API_KEY_SECRET, "key-2")
            await wait_until(lambda: _true(api_key.version == second), "the new version")
            return api_key.version, api_key.value

    second, value = asyncio.run(rotate())
    assert value == "key-2" and changes == [(second, "key-2")]


def _true(condition: bool) -> Awaitable[bool]:
    async def answer() -> bool:
        return condition

    return answer()


@pytest.mark.parametrize("failure", ["deleted", "bad-new-version", "not-applied"])
def test_a_failed_refresh_is_one_warning_and_the_last_value_stays_in_use(
    vault: FakeKeyVault, tmp_path: Path, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    first = vault.add_version(API_KEY_SECRET, "key-1")
    caplog.set_level(logging.WARNING, logger="keyvault")
    attempts: list[str] = []

    async def refuse(version: str, value: str) -> None:
        attempts.append(version)
        if len(attempts) == 1:
            raise KeyVaultError("cannot connect with it")

    async def fail_then_recover() -> tuple[str, str]:
        async with temporal_api_key(vault_settings(vault, tmp_path), API_KEY_SECRET) as api_key:
            api_key.keep_fresh(refuse if failure == "not-applied" else None)
            if failure == "deleted":
                vault.delete(API_KEY_SECRET)
            else:
                vault.add_version(API_KEY_SECRET, "" if failure == "bad-new-version" else "key-2")
            await wait_until(lambda: _true(bool(caplog.records)), "a refresh to fail")
            assert (api_key.version, api_key.value) == (first, "key-1")
            latest = vault.add_version(API_KEY_SECRET, "key-3")
            await wait_until(lambda: _true(api_key.version == latest), "the refresh after the failure")
            return api_key.version, api_key.value

    assert asyncio.run(fail_then_recover())[1] == "key-3"
    warning = caplog.records[0].getMessage()
    assert warning.startswith(f"Key Vault refresh failed; still using the Temporal API key of version {first}: ")
    assert {
        "deleted": "the secret does not exist",
        "bad-new-version": "is empty",
        "not-applied": "cannot connect with it",
    }[failure] in warning
    assert "key-1" not in caplog.text and "key-2" not in caplog.text


def test_a_client_certificate_that_is_pkcs12_in_the_vault_fails_at_start(vault: FakeKeyVault, tmp_path: Path) -> None:
    version = vault.add_version(CERTIFICATE, "MIIK", content_type="application/x-pkcs12")

    with pytest.raises(KeyVaultError) as raised:
        asyncio.run(temporal_client_certificate(vault_settings(vault, tmp_path), CERTIFICATE).start())

    assert f"Key Vault secret {CERTIFICATE!r} version {version} is a PKCS#12 certificate" in str(raised.value)


# --- How the vault is read: the lean reader under workload identity, the Azure SDK otherwise ------------------


def test_under_workload_identity_the_vault_is_read_with_one_token_and_no_azure_sdk(
    vault: FakeKeyVault, tmp_path: Path, identity: str
) -> None:
    vault.add_version(API_KEY_SECRET, "key-1")

    async def read_four_times() -> bool:
        async with temporal_api_key(vault_settings(vault, tmp_path), API_KEY_SECRET) as api_key:
            for _ in range(3):
                await api_key.refresh()
            return api_key.reader.lean

    lean = asyncio.run(read_four_times())

    assert lean is (identity == "workload-identity")
    if lean:
        assert len(vault.token_requests) == 1, "the token is kept until shortly before it expires"
        assert [request.status for request in vault.requests] == [401, 200, 200, 200, 200], "one challenge"
    else:
        assert vault.token_requests == []


@pytest.mark.parametrize("identity", ["workload-identity"], indirect=True)
def test_keyvault_client_azure_sdk_keeps_the_sdk_under_workload_identity(vault: FakeKeyVault, tmp_path: Path) -> None:
    reader = temporal_api_key(vault_settings(vault, tmp_path, KEYVAULT_CLIENT="azure-sdk"), API_KEY_SECRET).reader
    try:
        assert reader.lean is False
    finally:
        asyncio.run(reader.close())


@pytest.mark.parametrize("identity", ["workload-identity"], indirect=True)  # the lean reader's own token cache
def test_a_token_the_vault_refuses_is_replaced_within_the_same_read(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(API_KEY_SECRET, "key-1")

    async def refused_then_accepted() -> str:
        async with temporal_api_key(vault_settings(vault, tmp_path), API_KEY_SECRET) as api_key:
            vault.rejected_status = 401
            await api_key.refresh()  # one warning; the key in use stays
            vault.rejected_status = None
            await api_key.refresh()
            return api_key.value

    assert asyncio.run(refused_then_accepted()) == "key-1"
    # start: challenge, read; the refused read: with the token, a new challenge, with a new token; then a read with
    # that new token, which the vault accepts again.
    assert [request.status for request in vault.requests] == [401, 200, 401, 401, 401, 200]
    assert len(vault.token_requests) == 2


def test_a_challenge_naming_another_domain_gets_no_token(vault: FakeKeyVault, tmp_path: Path) -> None:
    vault.add_version(SECRET, new_key()[1])

    message = start_error(provider_for(vault, tmp_path, KEYVAULT_VERIFY_CHALLENGE_RESOURCE="true"))

    assert "KEYVAULT_URL must be the vault's own URL" in message and "vault.azure.net" in message
    assert vault.token_requests == [] and [request.status for request in vault.requests] == [401]


def test_a_passing_outage_is_tried_again_within_one_read(vault: FakeKeyVault, tmp_path: Path) -> None:
    key, value = new_key()
    version = vault.add_version(SECRET, value)
    vault.fail_next = 2

    assert run_with(provider_for(vault, tmp_path), lambda provider: provider.current_key()) == (version, key)
    assert [request.status for request in vault.requests].count(503) == 2
