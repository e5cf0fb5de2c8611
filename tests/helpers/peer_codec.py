"""The simplest peer our codec is measured against: the shape of temporalio/samples-python's encryption codec.

Public API:
    SampleShapedCodec(key_id, key)   # a `PayloadCodec`: AES-GCM over each payload's serialized form

Our own code, written in the shape of samples-python `encryption/codec.py`: encode builds a new
Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": key_id}, data=nonce + AESGCM.encrypt(
payload.SerializeToString())), decode checks the encoding and the key id and returns
Payload.FromString(AESGCM.decrypt(...)). No associated data, one key, no plaintext policy: the least a codec
can do, which is what makes it the yardstick (`tests/bench.py`, "ours / peer"). Not used by the product.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

BENCH_KEY_ID = "bench"
"""The key id the benchmark's bare worker and its client use with this codec."""


class SampleShapedCodec(PayloadCodec):
    """AES-GCM of whole payloads under one key, as the samples-python encryption sample does it."""

    def __init__(self, key_id: str, key: bytes) -> None:
        super().__init__()
        self.key_id = key_id
        self.encryptor = AESGCM(key)

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={"encoding": b"binary/encrypted", "encryption-key-id": self.key_id.encode()},
                data=self.encrypt(p.SerializeToString()),
            )
            for p in payloads
        ]

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        decoded: list[Payload] = []
        for p in payloads:
            if p.metadata.get("encoding", b"").decode() != "binary/encrypted":
                decoded.append(p)
                continue
            key_id = p.metadata.get("encryption-key-id", b"").decode()
            if key_id != self.key_id:
                raise ValueError(f"Unrecognized key ID {key_id}. Current key ID is {self.key_id}.")
            decoded.append(Payload.FromString(self.decrypt(p.data)))
        return decoded

    def encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.encryptor.encrypt(nonce, data, None)

    def decrypt(self, data: bytes) -> bytes:
        return self.encryptor.decrypt(data[:12], data[12:], None)
