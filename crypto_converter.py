"""End-to-end payload encryption: an AES-GCM `PayloadCodec` and the `DataConverter` that uses it.

Public API:
    encrypted_data_converter(key_provider, plaintext) -> DataConverter   # for Client.connect(data_converter=...)
    EncryptionCodec(key_provider, plaintext=Plaintext.REFUSE)           # the codec itself (the codec server's too)
    Plaintext                      # what decode does with a payload that is not encrypted: REFUSE, WARN or ACCEPT
    KeyProvider                    # what both need: where the keys come from
    PayloadDecryptionError         # raised by decode; its message names the key id, never payload contents
    PlaintextRefusedError          # the PayloadDecryptionError for an unencrypted payload; names the workflow

Encryption lives in a codec, not in a payload converter, because codecs run outside the workflow
sandbox (they may await a key from Key Vault) and because only codec-level encryption can be
decoded by a codec server for the Web UI and the CLI.

Each payload's full serialized form (data and metadata) is encrypted with AES-GCM under a fresh
random 96-bit nonce. The result is a new payload:

    metadata: encoding=binary/encrypted, encryption-key-id=<key id>
    data:     nonce (12 bytes) || ciphertext || tag (16 bytes)

The key id is AES-GCM associated data, so a payload relabelled with another key id fails
authentication instead of decrypting under the wrong key.

Large payloads take a copy-lean path, because a copy of a large buffer costs about what encrypting it
does, and a fresh large buffer costs its page faults on top: encode reads the data out of the payload
once, encrypts the serialized payload piece by piece straight into a buffer laid out as the encrypted
payload's wire form (an AES-GCM stream, the same bytes as the one-shot cipher), and parses that buffer
once; decode decrypts from a view of the data straight into a buffer it parses (`decrypt_into`).
Parsing copies the bytes into the new Payload, so that buffer is a scratch buffer kept per thread and
reused (up to SCRATCH_KEPT_BYTES; a larger payload gets one of its own): what is left is the two copies
the protobuf API makes in each direction (reading `payload.data`, parsing the result). Small payloads
take the one-shot path, the samples-python encryption codec's shape with less work around it. Each
direction has its own crossover (LARGE_ENCODE_BYTES, LARGE_DECODE_BYTES), measured: the large encode
pays a fixed few microseconds for its streaming cipher, the large decode almost nothing.

A payload that is not `binary/encrypted` was written without the key: before encryption was switched
on, or by anyone who can start or signal a workflow (or by the server itself). What decode does with
it is the `Plaintext` policy the codec was built with: REFUSE raises `PlaintextRefusedError`, whose
message names the workflow the payload belongs to (the SDK hands the codec a serialization context
through `with_context`), so a worker fails that workflow task instead of running attacker-chosen
input; WARN passes it through and warns once per workflow (a migration window); ACCEPT passes it
through silently (encryption not required, and the codec server, which must show old histories).

This module knows nothing about Key Vault or configuration: it is handed a `KeyProvider`
(`keyvault.KeyVaultKeyProvider` in the product) and touches no network at import.
Search attributes are never passed through a codec by Temporal, so they are never encrypted.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    NexusSerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from log_format import shown

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12  # 96 bits, the nonce size AES-GCM is designed for
TAG_BYTES = 16
# WARN remembers this many workflows it has warned about, so a long migration cannot grow memory.
WARNED_WORKFLOWS = 1024
# The crossovers, measured by `python tests/bench.py --only crossover` (each path forced, each in a process of its
# own, thread CPU time, median of 3 interleaved; 2-core VM, Python 3.11, cryptography 50, protobuf upb; the
# crossover run of 2026-12-04, large/small per call): encode 1.24 at 64 KiB, 1.06 at 96 KiB, 0.94 at 128 KiB,
# 0.83 at 192 KiB (the streaming cipher's fixed cost, about 7 us, is paid back from there); decode 1.07 at 16 KiB,
# 1.01 at 24 and 32 KiB, 0.90 at 48 KiB, 0.88 at 64 KiB (an earlier sweep: 0.89 at 32 KiB), so the paths tie at
# 24-32 KiB. Above that both large paths keep winning (freed memory kept: 0.64 round trip at 1 MiB, 0.57 at 4 MiB).
# From this size of its data a payload is encrypted on the large path (see above); below it, the one-shot cipher.
LARGE_ENCODE_BYTES = 128 * 1024
# From this size of its plaintext (the serialized payload) a payload is decrypted on the large path.
LARGE_DECODE_BYTES = 32 * 1024
# The largest scratch buffer a thread keeps between payloads: the memory the copy-lean path holds on to.
SCRATCH_KEPT_BYTES = 64 * 1024 * 1024
_DATA_TAG = b"\x12"  # Payload.data: field 2, length-delimited

logger = logging.getLogger(__name__)


class Plaintext(enum.Enum):
    """What decode does with a payload that is not encrypted."""

    REFUSE = "refuse"
    """Raise PlaintextRefusedError naming the workflow: ENCRYPTION_REQUIRED=true."""
    WARN = "warn"
    """Pass it through, warning once per workflow: ENCRYPTION_REQUIRED=true with ENCRYPTION_ALLOW_PLAINTEXT=true."""
    ACCEPT = "accept"
    """Pass it through silently: encryption not required, and the codec server showing old histories."""


class KeyProvider(Protocol):
    """Where the codec gets its keys: the key to encrypt with now, and any key a payload names."""

    async def current_key(self) -> tuple[str, bytes]:
        """The (key id, AES key of 16, 24 or 32 bytes) that new payloads are encrypted with."""
        ...

    async def key_for(self, key_id: str) -> bytes:
        """The AES key with this id, for decryption; raise if there is none."""
        ...


class PayloadDecryptionError(Exception):
    """A payload that cannot be decrypted; the message names its key id, never its contents."""


class PlaintextRefusedError(PayloadDecryptionError):
    """An unencrypted payload where only encrypted ones are accepted; the message names the workflow."""


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-GCM encryption of whole payloads with keys from a `KeyProvider`."""

    def __init__(self, key_provider: KeyProvider, plaintext: Plaintext = Plaintext.REFUSE) -> None:
        self._key_provider = key_provider
        self._plaintext = plaintext
        self._context: SerializationContext | None = None
        self._warned: OrderedDict[str, None] = OrderedDict()  # shared by the copies with_context makes

    def with_context(self, context: SerializationContext) -> Self:
        """A copy that knows which workflow or activity its payloads belong to (the SDK calls this).

        Shallow: the key provider and the warned workflows stay shared. Made from the instance dictionary
        rather than by `copy.copy` (its __reduce_ex__ round is most of the call), since the SDK asks for one
        about 30 times per workflow."""
        contextual = object.__new__(type(self))
        contextual.__dict__.update(self.__dict__)
        contextual._context = context
        return contextual

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt every payload with the provider's current key."""
        key_id, key = await self._key_provider.current_key()
        encrypting = _encrypting(key_id, key)
        encrypted = []
        for payload in payloads:
            # Its size picks the path, and the large path uses it as its one copy of the data out of the message
            # (no cheaper way to learn the size: ByteSize serializes the payload).
            data = payload.data
            if len(data) < LARGE_ENCODE_BYTES:
                encrypted.append(_encrypt(encrypting, payload))
            else:
                encrypted.append(_encrypt_large(encrypting, key, payload, data))
        return encrypted

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads with the key each one names; others as the `Plaintext` policy says."""
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") == ENCODING:
                decoded.append(await self._decrypt(payload))
            else:
                decoded.append(self._plain(payload))
        return decoded

    def _plain(self, payload: Payload) -> Payload:
        if self._plaintext is Plaintext.ACCEPT:
            return payload
        where = _describe(self._context)
        if self._plaintext is Plaintext.WARN:
            self._warn_once(where)
            return payload
        encoding = shown(payload.metadata.get("encoding", b""))
        raise PlaintextRefusedError(
            f"Refused an unencrypted payload (encoding {encoding}) for {where}: ENCRYPTION_REQUIRED=true accepts "
            "only payloads encrypted with the Key Vault key. It was written without the key (by a client, worker or "
            "`temporal` command without it, or before encryption was switched on); to accept such payloads during a "
            "migration set ENCRYPTION_ALLOW_PLAINTEXT=true (docs/encryption.md)"
        )

    def _warn_once(self, where: str) -> None:
        warned = self._warned
        if where in warned:
            warned.move_to_end(where)
            return
        warned[where] = None
        if len(warned) > WARNED_WORKFLOWS:
            warned.popitem(last=False)
        logger.warning(
            "Accepted an unencrypted payload for %s because ENCRYPTION_ALLOW_PLAINTEXT=true; "
            "switch it off once no running or retained workflow holds unencrypted payloads",
            where,
        )

    async def _decrypt(self, payload: Payload) -> Payload:
        associated_data = payload.metadata.get(KEY_ID_METADATA, b"")
        if not associated_data:
            raise PayloadDecryptionError(
                f"Encrypted payload has no {KEY_ID_METADATA} metadata, so no key can decrypt it"
            )
        data = payload.data  # the one copy of the data out of the message
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadDecryptionError(f"Encrypted payload with key id {shown(associated_data)} is truncated")
        try:
            key = await self._key_provider.key_for(associated_data.decode("utf-8", errors="replace"))
        except Exception as error:  # any provider failure means the same thing here: no key, no plaintext
            raise PayloadDecryptionError(
                f"No key for encrypted payload with key id {shown(associated_data)}: {error}"
            ) from error
        try:
            if len(data) - (NONCE_BYTES + TAG_BYTES) < LARGE_DECODE_BYTES:
                return _decrypt(_cipher(key), associated_data, data)
            return _decrypt_large(_cipher(key), associated_data, data)
        except InvalidTag:
            raise PayloadDecryptionError(
                f"Encrypted payload with key id {shown(associated_data)} failed authentication: the key with that "
                "id is not the one it was encrypted with, or the payload or its key id was altered"
            ) from None


def encrypted_data_converter(key_provider: KeyProvider, plaintext: Plaintext) -> DataConverter:
    """The data converter for worker and client: default conversion, encrypted payloads and failures.

    The failure converter moves failure messages and stack traces into an encoded attribute, so
    they are encrypted too instead of reaching the server in plain text.
    """
    return ContextualDataConverter(
        payload_codec=EncryptionCodec(key_provider, plaintext),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


# The DataConverter fields ContextualDataConverter.with_context looks at, as the SDK's own with_context does.
CONTEXT_COMPONENTS = ("payload_converter", "payload_codec", "failure_converter", "external_storage")


class ContextualDataConverter(DataConverter):
    """`DataConverter` with a `with_context` that does not build converters only to throw them away.

    The SDK calls `with_context` about 30 times per workflow (each workflow task and activity, each
    command's payloads). Because our codec takes the context (it names the workflow of a refused
    payload), the SDK's version cannot return the converter itself and clones it with
    `dataclasses.replace`, which runs `__init__`: a new payload converter and a new failure converter,
    built and then overwritten with the contextual ones. That is 7 of its 8 microseconds (a bare
    worker's converter, whose parts take no context, returns itself). This one clones the instance
    dictionary and sets the contextual parts, the same result.
    """

    def with_context(self, context: SerializationContext) -> Self:
        contextual: dict[str, object] = {}
        for name in CONTEXT_COMPONENTS:
            component = getattr(self, name)
            if isinstance(component, WithSerializationContext):
                with_context = component.with_context(context)
                if with_context is not component:
                    contextual[name] = with_context
        if not contextual:
            return self
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__.update(contextual)  # a frozen dataclass: its fields are set through the dictionary
        return clone


@functools.lru_cache(maxsize=64)
def _cipher(key: bytes) -> AESGCM:
    """One AES-GCM object per key: building it costs about as much as encrypting a small payload."""
    return AESGCM(key)


@dataclasses.dataclass(frozen=True, slots=True)
class _Encrypting:
    """What encoding under one (key id, key) needs, built once: per payload only the nonce and cipher run."""

    cipher: AESGCM
    """The key's one-shot AES-GCM (`_cipher`)."""
    associated_data: bytes
    """The key id as bytes: AES-GCM's associated data."""
    metadata: Payload
    """A payload holding only the encrypted payloads' metadata: copying it is faster than building it."""
    head: bytes
    """That metadata's wire form followed by the data field's tag: the large path's buffer starts with it."""


@functools.lru_cache(maxsize=64)
def _encrypting(key_id: str, key: bytes) -> _Encrypting:
    metadata = Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()})
    return _Encrypting(_cipher(key), key_id.encode(), metadata, metadata.SerializeToString() + _DATA_TAG)


def _describe(context: SerializationContext | None) -> str:
    """Which workflow (or activity, or Nexus operation) a payload belongs to, for a message."""
    if isinstance(context, WorkflowSerializationContext):
        return f"workflow {context.workflow_id!r} in namespace {context.namespace!r}"
    if isinstance(context, ActivitySerializationContext):
        if context.workflow_id:
            return f"an activity of workflow {context.workflow_id!r} in namespace {context.namespace!r}"
        return f"activity {context.activity_id!r} in namespace {context.namespace!r}"
    if isinstance(context, NexusSerializationContext):
        return f"Nexus operation {context.operation!r} of service {context.service!r}"
    return "a payload outside any workflow (no serialization context)"


def _encrypt(encrypting: _Encrypting, payload: Payload) -> Payload:
    nonce = os.urandom(NONCE_BYTES)
    encrypted = Payload()
    encrypted.CopyFrom(encrypting.metadata)
    encrypted.data = nonce + encrypting.cipher.encrypt(nonce, payload.SerializeToString(), encrypting.associated_data)
    return encrypted


def _encrypt_large(encrypting: _Encrypting, key: bytes, payload: Payload, data: bytes) -> Payload:
    """The same encrypted payload as `_encrypt`, with one copy of the data in and one out.

    The plaintext is the payload's wire form, written as its other fields, then its data field (protobuf
    fields may come in any order); it is encrypted piece by piece into a scratch buffer that already holds
    the encrypted payload's metadata and data header, and that buffer is parsed into the result.
    """
    if payload.external_payloads:
        others = Payload(metadata=payload.metadata, external_payloads=payload.external_payloads)
    else:
        others = Payload(metadata=payload.metadata)
    pieces = (others.SerializeToString() + _DATA_TAG + _varint(len(data)), data)
    ciphertext_size = len(pieces[0]) + len(data) + TAG_BYTES
    head = encrypting.head + _varint(NONCE_BYTES + ciphertext_size)
    nonce = os.urandom(NONCE_BYTES)
    view = _scratch(len(head) + NONCE_BYTES + ciphertext_size)
    view[: len(head)] = head
    position = len(head) + NONCE_BYTES
    view[len(head) : position] = nonce
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(encrypting.associated_data)
    for piece in pieces:
        # update_into wants room for one more block than it writes; a GCM stream writes what it reads
        position += encryptor.update_into(piece, view[position : position + len(piece) + 15])
    encryptor.finalize()
    view[position:] = encryptor.tag
    return Payload.FromString(view)


def _decrypt(cipher: AESGCM, associated_data: bytes, data: bytes) -> Payload:
    # slices of small bytes cost less than views of them, and copy only a small payload
    return Payload.FromString(cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], associated_data))


def _decrypt_large(cipher: AESGCM, associated_data: bytes, data: bytes) -> Payload:
    """The same payload as `_decrypt`, decrypted from a view of the data into the scratch buffer it is parsed from."""
    view = memoryview(data)  # slices of the view copy nothing
    plaintext = _scratch(len(view) - NONCE_BYTES - TAG_BYTES)  # this thread's until the parse: no await in between
    cipher.decrypt_into(view[:NONCE_BYTES], view[NONCE_BYTES:], associated_data, plaintext)
    return Payload.FromString(plaintext)


class _ScratchBuffer(threading.local):
    """One reusable buffer per thread for the copy-lean path (a thread's codec calls never overlap in it)."""

    buffer = bytearray()


_SCRATCH = _ScratchBuffer()


def _scratch(size: int) -> memoryview:
    """A writable view of `size` bytes of this thread's scratch buffer, good until this thread's next call.

    Whatever is written here must be parsed (copied into a Payload) before the next call; the buffer is
    reused rather than allocated fresh, which on large payloads saves a zero fill and the page faults of
    new memory. Above SCRATCH_KEPT_BYTES the buffer is a fresh one that is not kept.
    """
    if size > SCRATCH_KEPT_BYTES:
        return memoryview(bytearray(size))
    if len(_SCRATCH.buffer) < size:
        _SCRATCH.buffer = bytearray(size)
    return memoryview(_SCRATCH.buffer)[:size]


def _varint(value: int) -> bytes:
    """A protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
