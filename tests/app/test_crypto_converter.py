"""The AES-GCM codec and the encrypted data converter, with keys held in memory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from crypto_converter import EncryptionCodec, PayloadDecryptionError, encrypted_data_converter

from helpers.processes import REPO_DIR
from helpers.static_keys import StaticKeyProvider

PLAINTEXT = b'"card number 4111 1111 1111 1111"'


def plain_payload(data: bytes = PLAINTEXT) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def encode(provider: StaticKeyProvider, payloads: list[Payload]) -> list[Payload]:
    return asyncio.run(EncryptionCodec(provider).encode(payloads))


def decode(provider: StaticKeyProvider, payloads: list[Payload]) -> list[Payload]:
    return asyncio.run(EncryptionCodec(provider).decode(payloads))


def decryption_error(provider: StaticKeyProvider, payload: Payload) -> str:
    with pytest.raises(PayloadDecryptionError) as raised:
        decode(provider, [payload])
    return str(raised.value)


@pytest.mark.parametrize("size", [16, 24, 32])
def test_round_trip_with_every_key_size(size: int) -> None:
    provider = StaticKeyProvider.random("v1", size)
    original = plain_payload()

    [encrypted] = encode(provider, [original])

    assert encrypted.metadata["encoding"] == b"binary/encrypted"
    assert encrypted.metadata["encryption-key-id"] == b"v1"
    assert PLAINTEXT not in encrypted.SerializeToString()
    assert decode(provider, [encrypted]) == [original]


@given(
    data=st.binary(max_size=2048),
    metadata=st.dictionaries(st.text(max_size=20), st.binary(max_size=64), max_size=5),
)
def test_round_trip_preserves_any_payload(data: bytes, metadata: dict[str, bytes]) -> None:
    provider = StaticKeyProvider.random()
    original = Payload(metadata=metadata, data=data)

    assert decode(provider, encode(provider, [original])) == [original]


def test_every_encryption_uses_a_fresh_nonce() -> None:
    provider = StaticKeyProvider.random()

    encrypted = encode(provider, [plain_payload()] * 200)

    nonces = {payload.data[:12] for payload in encrypted}
    assert len(nonces) == 200
    assert len({payload.data for payload in encrypted}) == 200


def test_unencrypted_payloads_pass_through_in_order() -> None:
    provider = StaticKeyProvider.random()
    written_before_encryption = plain_payload(b'"old"')
    [encrypted] = encode(provider, [plain_payload(b'"new"')])

    decoded = decode(provider, [written_before_encryption, encrypted, written_before_encryption])

    assert decoded == [written_before_encryption, plain_payload(b'"new"'), written_before_encryption]


def test_unknown_key_id_is_rejected_naming_it() -> None:
    [encrypted] = encode(StaticKeyProvider.random("retired-key"), [plain_payload()])

    message = decryption_error(StaticKeyProvider.random("other-key"), encrypted)

    assert "'retired-key'" in message


def test_wrong_key_is_rejected_naming_the_key_id() -> None:
    [encrypted] = encode(StaticKeyProvider.random("v1"), [plain_payload()])

    message = decryption_error(StaticKeyProvider.random("v1"), encrypted)

    assert "'v1'" in message and "failed authentication" in message


@pytest.mark.parametrize(
    "position", [0, 11, 12, -17, -1], ids=["nonce", "nonce-end", "ciphertext", "last-ciphertext", "tag"]
)
def test_tampered_payload_is_rejected(position: int) -> None:
    provider = StaticKeyProvider.random("v1")
    [encrypted] = encode(provider, [plain_payload()])
    data = bytearray(encrypted.data)
    data[position] ^= 0x01
    encrypted.data = bytes(data)

    message = decryption_error(provider, encrypted)

    assert "'v1'" in message and "failed authentication" in message


def test_truncated_payload_is_rejected() -> None:
    provider = StaticKeyProvider.random("v1")
    [encrypted] = encode(provider, [plain_payload()])
    encrypted.data = encrypted.data[:20]

    assert "'v1'" in decryption_error(provider, encrypted)


def test_relabelled_key_id_is_rejected_even_when_both_ids_hold_the_same_key() -> None:
    key = os.urandom(32)
    provider = StaticKeyProvider({"v1": key, "v2": key})
    [encrypted] = encode(provider, [plain_payload()])
    encrypted.metadata["encryption-key-id"] = b"v2"

    message = decryption_error(provider, encrypted)

    assert "'v2'" in message and "failed authentication" in message


def test_encrypted_payload_without_key_id_is_rejected() -> None:
    provider = StaticKeyProvider.random()
    [encrypted] = encode(provider, [plain_payload()])
    del encrypted.metadata["encryption-key-id"]

    assert "encryption-key-id" in decryption_error(provider, encrypted)


def test_data_converter_encrypts_values() -> None:
    converter = encrypted_data_converter(StaticKeyProvider.random())

    async def round_trip() -> tuple[list[Payload], list[object]]:
        payloads = await converter.encode(["card number 4111 1111 1111 1111"])
        return payloads, await converter.decode(payloads, [str])

    payloads, values = asyncio.run(round_trip())

    assert [payload.metadata["encoding"] for payload in payloads] == [b"binary/encrypted"]
    assert b"4111" not in payloads[0].SerializeToString()
    assert values == ["card number 4111 1111 1111 1111"]


def test_data_converter_encrypts_failure_messages_and_stack_traces() -> None:
    converter = encrypted_data_converter(StaticKeyProvider.random())

    def telltale_function_name() -> None:
        raise ApplicationError("customer 4111 1111 1111 1111 was declined")

    async def round_trip() -> tuple[Failure, BaseException]:
        failure = Failure()
        try:
            telltale_function_name()
        except ApplicationError as error:
            await converter.encode_failure(error, failure)
        sent = Failure.FromString(failure.SerializeToString())
        return sent, await converter.decode_failure(failure)

    sent, decoded = asyncio.run(round_trip())

    wire = sent.SerializeToString()
    assert b"4111" not in wire and b"telltale_function_name" not in wire
    assert sent.encoded_attributes.metadata["encoding"] == b"binary/encrypted"
    assert str(decoded) == "customer 4111 1111 1111 1111 was declined"
    assert "telltale_function_name" in decoded.failure.stack_trace  # type: ignore[attr-defined]


def test_module_knows_nothing_of_key_vault_or_configuration() -> None:
    probe = "import sys, crypto_converter; print(sorted({'keyvault', 'config', 'azure'} & set(sys.modules)))"

    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_DIR, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"
