"""End-to-end payload encryption: an AES-GCM `PayloadCodec` and the `DataConverter` that uses it.

Public API:
    encrypted_data_converter(key_provider) -> DataConverter   # for Client.connect(data_converter=...)
    EncryptionCodec(key_provider)                             # the codec itself (the codec server uses it)
    KeyProvider                                               # what both need: where the keys come from
    PayloadDecryptionError                                    # raised by decode; its message names the key id

Encryption lives in a codec, not in a payload converter, because codecs run outside the workflow
sandbox (they may await a key from Key Vault) and because only codec-level encryption can be
decoded by a codec server for the Web UI and the CLI.

Each payload's full serialized form (data and metadata) is encrypted with AES-GCM under a fresh
random 96-bit nonce. The result is a new payload:

    metadata: encoding=binary/encrypted, encryption-key-id=<key id>
    data:     nonce (12 bytes) || ciphertext || tag (16 bytes)

The key id is AES-GCM associated data, so a payload relabelled with another key id fails
authentication instead of decrypting under the wrong key. Payloads that are not
`binary/encrypted` pass through decode unchanged, so histories written before encryption was
switched on stay readable.

This module knows nothing about Key Vault or configuration: it is handed a `KeyProvider`
(`keyvault.KeyVaultKeyProvider` in the product) and touches no network at import.
Search attributes are never passed through a codec by Temporal, so they are never encrypted.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12  # 96 bits, the nonce size AES-GCM is designed for
TAG_BYTES = 16


class KeyProvider(Protocol):
    """Where the codec gets its keys: the key to encrypt with now, and any key a payload names."""

    async def current_key(self) -> tuple[str, bytes]:
        """The (key id, AES key of 16, 24 or 32 bytes) that new payloads are encrypted with."""
        ...

    async def key_for(self, key_id: str) -> bytes:
        """The AES key with this id, for decryption; raise if there is none."""
        ...


class PayloadDecryptionError(Exception):
    """An encrypted payload that cannot be decrypted; the message names its key id, never its contents."""


class EncryptionCodec(PayloadCodec):
    """AES-GCM encryption of whole payloads with keys from a `KeyProvider`."""

    def __init__(self, key_provider: KeyProvider) -> None:
        self._key_provider = key_provider

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt every payload with the provider's current key."""
        key_id, key = await self._key_provider.current_key()
        cipher = _cipher(key)
        associated_data = key_id.encode()
        return [_encrypt(cipher, key_id, associated_data, payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads with the key each one names; pass others through."""
        return [await self._decrypt(payload) if _is_encrypted(payload) else payload for payload in payloads]

    async def _decrypt(self, payload: Payload) -> Payload:
        associated_data = payload.metadata.get(KEY_ID_METADATA, b"")
        key_id = associated_data.decode("utf-8", errors="replace")
        if not key_id:
            raise PayloadDecryptionError(
                f"Encrypted payload has no {KEY_ID_METADATA} metadata, so no key can decrypt it"
            )
        data = memoryview(payload.data)  # one copy out of the message; slices of the view copy nothing
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadDecryptionError(f"Encrypted payload with key id {key_id!r} is truncated")
        key = await self._key(key_id)
        nonce, ciphertext = data[:NONCE_BYTES], data[NONCE_BYTES:]
        try:
            plaintext = _cipher(key).decrypt(nonce, ciphertext, associated_data)
        except InvalidTag:
            raise PayloadDecryptionError(
                f"Encrypted payload with key id {key_id!r} failed authentication: the key with that id is not "
                "the one it was encrypted with, or the payload or its key id was altered"
            ) from None
        return Payload.FromString(plaintext)

    async def _key(self, key_id: str) -> bytes:
        try:
            return await self._key_provider.key_for(key_id)
        except Exception as error:  # any provider failure means the same thing here: no key, no plaintext
            raise PayloadDecryptionError(f"No key for encrypted payload with key id {key_id!r}: {error}") from error


def encrypted_data_converter(key_provider: KeyProvider) -> DataConverter:
    """The data converter for worker and client: default conversion, encrypted payloads and failures.

    The failure converter moves failure messages and stack traces into an encoded attribute, so
    they are encrypted too instead of reaching the server in plain text.
    """
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=EncryptionCodec(key_provider),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


@functools.lru_cache(maxsize=64)
def _cipher(key: bytes) -> AESGCM:
    """One AES-GCM object per key: building it costs about as much as encrypting a small payload."""
    return AESGCM(key)


def _is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def _encrypt(cipher: AESGCM, key_id: str, associated_data: bytes, payload: Payload) -> Payload:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = cipher.encrypt(nonce, payload.SerializeToString(), associated_data)
    encrypted = Payload()
    encrypted.CopyFrom(_encrypted_metadata(key_id))
    encrypted.data = nonce + ciphertext
    return encrypted


@functools.lru_cache(maxsize=64)
def _encrypted_metadata(key_id: str) -> Payload:
    """A payload holding only the metadata of one key id's payloads: copying it is faster than building it."""
    return Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()})
