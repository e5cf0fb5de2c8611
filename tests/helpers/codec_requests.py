"""What goes to the codec server and comes back: /decode and /encode bodies, a plain and an encrypted payload,
and an answer (status, headers, body). Used by the codec server's tests in process and against the real process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from crypto_converter import EncryptionCodec, KeyProvider

PLAINTEXT = b'"the patient record 1234"'


def payloads_json(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def payloads_from(body: bytes) -> list[Payload]:
    return list(json_format.Parse(body, Payloads()).payloads)


def plain_payload() -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=PLAINTEXT)


def encrypt(provider: KeyProvider, payload: Payload) -> Payload:
    [encrypted] = asyncio.run(EncryptionCodec(provider).encode([payload]))
    return encrypted


def many_payloads_body(count: int, payload: bytes = b"{}") -> bytes:
    """A /decode body of `count` copies of one payload's JSON, written as bytes (fast at a million)."""
    return b'{"payloads":[' + b",".join([payload] * count) + b"]}"


@dataclass(frozen=True)
class Answer:
    """What the server answered."""

    status: int
    headers: dict[str, str]
    body: bytes
