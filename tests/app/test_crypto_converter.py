"""The AES-GCM codec and the encrypted data converter, with keys held in memory."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError

import crypto_converter
from crypto_converter import (
    CONTEXT_COMPONENTS,
    LARGE_DECODE_BYTES,
    LARGE_ENCODE_BYTES,
    ContextualDataConverter,
    EncryptionCodec,
    PayloadDecryptionError,
    Plaintext,
    PlaintextRefusedError,
    encrypted_data_converter,
)

from helpers.processes import REPO_DIR
from helpers.static_keys import StaticKeyProvider

PLAINTEXT = b'"card number 4111 1111 1111 1111"'


def plain_payload(data: bytes = PLAINTEXT) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def encode(provider: StaticKeyProvider, payloads: list[Payload]) -> list[Payload]:
    return asyncio.run(EncryptionCodec(provider).encode(payloads))


def decode(
    provider: StaticKeyProvider, payloads: list[Payload], plaintext: Plaintext = Plaintext.REFUSE
) -> list[Payload]:
    return asyncio.run(EncryptionCodec(provider, plaintext).decode(payloads))


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


@pytest.mark.parametrize("plaintext", [Plaintext.ACCEPT, Plaintext.WARN])
def test_unencrypted_payloads_pass_through_in_order_when_accepted(plaintext: Plaintext) -> None:
    provider = StaticKeyProvider.random()
    written_before_encryption = plain_payload(b'"old"')
    [encrypted] = encode(provider, [plain_payload(b'"new"')])

    decoded = decode(provider, [written_before_encryption, encrypted, written_before_encryption], plaintext)

    assert decoded == [written_before_encryption, plain_payload(b'"new"'), written_before_encryption]


WORKFLOW = WorkflowSerializationContext(namespace="payments", workflow_id="order-4711")
ACTIVITY = ActivitySerializationContext(
    namespace="payments",
    activity_id="1",
    activity_type="charge",
    activity_task_queue="q",
    workflow_id="order-4711",
    workflow_type="OrderWorkflow",
    is_local=False,
)


def refusal(codec: EncryptionCodec, payload: Payload) -> str:
    with pytest.raises(PlaintextRefusedError) as raised:
        asyncio.run(codec.decode([payload]))
    return str(raised.value)


@pytest.mark.parametrize(
    ("context", "named"),
    [
        (WORKFLOW, "workflow 'order-4711' in namespace 'payments'"),
        (ACTIVITY, "an activity of workflow 'order-4711' in namespace 'payments'"),
        (None, "outside any workflow"),
    ],
    ids=["workflow", "activity", "no-context"],
)
def test_unencrypted_payload_is_refused_by_default_naming_the_workflow(
    context: SerializationContext | None, named: str
) -> None:
    codec = EncryptionCodec(StaticKeyProvider.random())
    if context is not None:
        codec = codec.with_context(context)

    message = refusal(codec, plain_payload())

    assert named in message and "'json/plain'" in message
    assert "ENCRYPTION_REQUIRED=true" in message and "ENCRYPTION_ALLOW_PLAINTEXT=true" in message
    assert "4111" not in message  # never the payload's contents


def test_refusal_comes_before_any_payload_is_decrypted() -> None:
    provider = StaticKeyProvider.random()
    [encrypted] = encode(provider, [plain_payload()])

    with pytest.raises(PlaintextRefusedError):
        decode(provider, [encrypted, plain_payload(b'"forged"')])


def test_payload_without_metadata_is_unencrypted_too() -> None:
    message = refusal(EncryptionCodec(StaticKeyProvider.random()).with_context(WORKFLOW), Payload(data=b"x"))

    assert "encoding ''" in message and "order-4711" in message


def test_with_context_returns_a_copy_and_leaves_the_codec_as_it_was() -> None:
    codec = EncryptionCodec(StaticKeyProvider.random())

    contextual = codec.with_context(WORKFLOW)

    assert contextual is not codec
    assert "order-4711" in refusal(contextual, plain_payload())
    assert "outside any workflow" in refusal(codec, plain_payload())


def test_the_data_converter_hands_the_workflow_to_the_codec() -> None:
    """The SDK calls DataConverter.with_context for every workflow task; the codec must see that context."""
    converter = encrypted_data_converter(StaticKeyProvider.random(), Plaintext.REFUSE).with_context(WORKFLOW)

    with pytest.raises(PlaintextRefusedError, match="workflow 'order-4711'"):
        asyncio.run(converter.decode([plain_payload()], [str]))


class _ContextRecordingStorage(WithSerializationContext):
    """Stands in for payload storage's external storage: a component that takes the context."""

    def __init__(self, context: SerializationContext | None = None) -> None:
        self.context = context

    def with_context(self, context: SerializationContext) -> _ContextRecordingStorage:
        return _ContextRecordingStorage(context)


@pytest.mark.parametrize("with_storage", [False, True], ids=["encryption", "encryption-and-storage"])
def test_the_data_converter_with_context_is_the_sdks_without_rebuilding_converters(with_storage: bool) -> None:
    """ContextualDataConverter.with_context gives what the SDK's DataConverter.with_context gives: every part the
    same, the contextual ones given the context, the original left as it was."""
    converter = encrypted_data_converter(StaticKeyProvider.random(), Plaintext.REFUSE)
    if with_storage:  # as bootstrap.data_converter adds payload storage
        converter = dataclasses.replace(converter, external_storage=_ContextRecordingStorage())
    assert isinstance(converter, ContextualDataConverter)

    ours, sdks = converter.with_context(WORKFLOW), DataConverter.with_context(converter, WORKFLOW)

    assert type(ours) is type(sdks) is ContextualDataConverter and ours is not converter
    assert ours.payload_converter is sdks.payload_converter is converter.payload_converter
    assert ours.failure_converter is sdks.failure_converter is converter.failure_converter
    assert type(ours.payload_codec) is type(sdks.payload_codec) is EncryptionCodec
    assert ours.payload_codec._context == sdks.payload_codec._context == WORKFLOW
    assert converter.payload_codec._context is None
    if with_storage:
        assert ours.external_storage.context == sdks.external_storage.context == WORKFLOW
        assert converter.external_storage.context is None
    else:  # the stand-in storage stores nothing
        with pytest.raises(PlaintextRefusedError, match="workflow 'order-4711'"):
            asyncio.run(ours.decode([plain_payload()], [str]))


def test_the_data_converter_with_context_returns_itself_when_no_part_takes_the_context() -> None:
    converter = ContextualDataConverter()

    assert converter.with_context(WORKFLOW) is converter


def test_the_data_converter_with_context_knows_every_part_of_the_sdks_data_converter() -> None:
    """The parts the SDK's with_context gives the context are CONTEXT_COMPONENTS; an SDK release that adds a field
    to DataConverter fails here, so that someone checks whether ContextualDataConverter must pass it on too."""
    fields = {field.name for field in dataclasses.fields(DataConverter)}

    assert fields - set(CONTEXT_COMPONENTS) == {"payload_converter_class", "failure_converter_class"}
    assert set(CONTEXT_COMPONENTS) <= fields


def test_migration_opt_in_warns_once_per_workflow(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="crypto_converter")
    codec = EncryptionCodec(StaticKeyProvider.random(), Plaintext.WARN)
    other = WorkflowSerializationContext(namespace="payments", workflow_id="order-4712")

    for context in (WORKFLOW, WORKFLOW, other, WORKFLOW):
        assert asyncio.run(codec.with_context(context).decode([plain_payload()])) == [plain_payload()]

    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert "order-4711" in warnings[0] and "order-4712" in warnings[1]
    assert all("ENCRYPTION_ALLOW_PLAINTEXT=true" in warning and "4111" not in warning for warning in warnings)


def test_accepting_plaintext_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    decode(StaticKeyProvider.random(), [plain_payload()], Plaintext.ACCEPT)

    assert not [record for record in caplog.records if record.name == "crypto_converter"]


def test_key_ids_from_payloads_are_shown_escaped_and_cut_short() -> None:
    forged_key_id = "forged\nline" + "x" * 10_000
    provider = StaticKeyProvider.random(forged_key_id)
    [encrypted] = encode(provider, [plain_payload()])
    encrypted.data = encrypted.data[:-1] + bytes([encrypted.data[-1] ^ 1])

    message = decryption_error(provider, encrypted)

    assert "failed authentication" in message and "'forged\\nline" in message
    assert "\n" not in message and len(message) < 500


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
    converter = encrypted_data_converter(StaticKeyProvider.random(), Plaintext.REFUSE)

    async def round_trip() -> tuple[list[Payload], list[object]]:
        payloads = await converter.encode(["card number 4111 1111 1111 1111"])
        return payloads, await converter.decode(payloads, [str])

    payloads, values = asyncio.run(round_trip())

    assert [payload.metadata["encoding"] for payload in payloads] == [b"binary/encrypted"]
    assert b"4111" not in payloads[0].SerializeToString()
    assert values == ["card number 4111 1111 1111 1111"]


def test_data_converter_encrypts_failure_messages_and_stack_traces() -> None:
    converter = encrypted_data_converter(StaticKeyProvider.random(), Plaintext.REFUSE)

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


# --- large payloads: encrypted into and decrypted into a reused scratch buffer ----------------------

MIB = 1024 * 1024


def large_payload(size: int) -> Payload:
    payload = Payload(metadata={"encoding": b"binary/plain", "note": b"large"}, data=os.urandom(size))
    payload.external_payloads.add(size_bytes=size)  # every field of the payload must survive
    return payload


def decrypted_by_hand(key: bytes, key_id: str, encrypted: Payload) -> Payload:
    """The documented format, read without the codec: nonce || AES-GCM(serialized payload) || tag."""
    data = encrypted.data
    return Payload.FromString(AESGCM(key).decrypt(data[:12], data[12:], key_id.encode()))


@pytest.mark.parametrize(
    "size",
    [LARGE_DECODE_BYTES - 1, LARGE_ENCODE_BYTES - 1, LARGE_ENCODE_BYTES, LARGE_ENCODE_BYTES + 1, 3 * MIB],
    ids=["small-both-ways", "just-small", "threshold", "just-large", "3MiB"],
)
def test_payloads_of_every_size_round_trip_in_the_documented_format(size: int) -> None:
    provider = StaticKeyProvider.random("v1")
    original = large_payload(size)

    [encrypted] = encode(provider, [original])

    assert dict(encrypted.metadata) == {"encoding": b"binary/encrypted", "encryption-key-id": b"v1"}
    assert len(encrypted.data) == 12 + original.ByteSize() + 16
    assert decrypted_by_hand(provider.keys["v1"], "v1", encrypted) == original
    assert decode(provider, [encrypted]) == [original]


# --- the crossover: each direction's small and large paths, and which one a size takes --------------

SMALL, LARGE = "small", "large"
# Per direction: the constant that decides, and the functions of its two paths.
PATHS = {
    "encode": ("LARGE_ENCODE_BYTES", {SMALL: "_encrypt", LARGE: "_encrypt_large"}),
    "decode": ("LARGE_DECODE_BYTES", {SMALL: "_decrypt", LARGE: "_decrypt_large"}),
}


def payload_measuring(direction: str, size: int) -> Payload:
    """A large_payload whose size as `direction` measures it is `size`: its data for encode, its serialized
    form (the plaintext) for decode."""
    if direction == "encode":
        return large_payload(size)
    for data_size in range(size, 0, -1):  # the fields around the data take a few bytes
        payload = large_payload(data_size)
        if payload.ByteSize() == size:
            return payload
    raise AssertionError(f"no payload serializes to {size} bytes")


def force_path(monkeypatch: pytest.MonkeyPatch, direction: str, path: str) -> None:
    constant, _ = PATHS[direction]
    monkeypatch.setattr(crypto_converter, constant, 0 if path == LARGE else sys.maxsize)


def paths_taken(monkeypatch: pytest.MonkeyPatch, direction: str) -> list[str]:
    """Records which of `direction`'s paths each payload takes from now on (the functions still run)."""
    taken: list[str] = []
    for path, name in PATHS[direction][1].items():
        function = getattr(crypto_converter, name)

        def recording(*arguments: object, path: str = path, function: Callable[..., Payload] = function) -> Payload:
            taken.append(path)
            return function(*arguments)

        monkeypatch.setattr(crypto_converter, name, recording)
    return taken


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["threshold-1", "threshold", "threshold+1"])
@pytest.mark.parametrize("direction", ["encode", "decode"])
def test_each_direction_takes_its_large_path_from_its_constant(
    monkeypatch: pytest.MonkeyPatch, direction: str, offset: int
) -> None:
    provider = StaticKeyProvider.random("v1")
    original = payload_measuring(direction, getattr(crypto_converter, PATHS[direction][0]) + offset)
    taken = {each: paths_taken(monkeypatch, each) for each in PATHS}

    [encrypted] = encode(provider, [original])
    decoded = decode(provider, [encrypted])

    assert taken[direction] == [LARGE if offset >= 0 else SMALL]
    assert decrypted_by_hand(provider.keys["v1"], "v1", encrypted) == original
    assert decoded == [original]


@pytest.mark.parametrize("decode_path", [SMALL, LARGE])
@pytest.mark.parametrize("encode_path", [SMALL, LARGE])
@pytest.mark.parametrize(
    "size",
    sorted({size + offset for size in (LARGE_ENCODE_BYTES, LARGE_DECODE_BYTES) for offset in (-1, 0, 1)}),
)
def test_either_path_decodes_what_the_other_encoded(
    monkeypatch: pytest.MonkeyPatch, size: int, encode_path: str, decode_path: str
) -> None:
    provider = StaticKeyProvider.random("v1")
    original = large_payload(size)
    force_path(monkeypatch, "encode", encode_path)
    force_path(monkeypatch, "decode", decode_path)
    encoded, decoded = paths_taken(monkeypatch, "encode"), paths_taken(monkeypatch, "decode")

    [encrypted] = encode(provider, [original])

    assert dict(encrypted.metadata) == {"encoding": b"binary/encrypted", "encryption-key-id": b"v1"}
    assert len(encrypted.data) == 12 + original.ByteSize() + 16
    assert decrypted_by_hand(provider.keys["v1"], "v1", encrypted) == original
    assert decode(provider, [encrypted]) == [original]
    assert (encoded, decoded) == ([encode_path], [decode_path])


def test_large_payloads_encoded_and_decoded_together_keep_their_own_bytes() -> None:
    provider = StaticKeyProvider.random("v1")
    originals = [large_payload(MIB) for _ in range(3)]  # one size: each would fit the same buffer

    encrypted = encode(provider, originals)
    decoded = decode(provider, encrypted)
    decode(provider, encode(provider, [large_payload(MIB) for _ in range(3)]))  # reuses any buffer again

    assert [decrypted_by_hand(provider.keys["v1"], "v1", payload) for payload in encrypted] == originals
    assert decoded == originals


def test_a_tampered_large_payload_is_rejected_and_the_next_one_decodes() -> None:
    provider = StaticKeyProvider.random("v1")
    original = large_payload(MIB)
    [encrypted] = encode(provider, [original])
    tampered = Payload()
    tampered.CopyFrom(encrypted)
    data = bytearray(encrypted.data)
    data[len(data) // 2] ^= 0x01
    tampered.data = bytes(data)

    message = decryption_error(provider, tampered)

    assert "'v1'" in message and "failed authentication" in message
    assert decode(provider, [encrypted]) == [original]


def test_threads_encoding_and_decoding_at_once_each_get_their_own_payloads() -> None:
    provider = StaticKeyProvider.random("v1")
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as Python can, inside the codec too

    def round_trips(_: int) -> bool:
        originals = [large_payload(256 * 1024 + 1) for _ in range(2)]
        return all(decode(provider, encode(provider, originals)) == originals for _ in range(20))

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(round_trips, range(8)))
    finally:
        sys.setswitchinterval(switch_interval)

    assert results == [True] * 8


def memory_the_codec_keeps(work: Callable[[], object]) -> int:
    """Bytes still allocated by crypto_converter.py after `work()` ran (in a new thread) and its results went."""

    kept: list[int] = []

    def in_new_thread() -> None:
        work()
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, crypto_converter.__file__)])
        kept.append(sum(stat.size for stat in snapshot.statistics("filename")))

    tracemalloc.start()
    try:
        thread = threading.Thread(target=in_new_thread)
        thread.start()
        thread.join(timeout=120)
    finally:
        tracemalloc.stop()
    return kept[0]


def test_the_scratch_buffer_kept_between_payloads_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = StaticKeyProvider.random("v1")

    def round_trip(size: int) -> Callable[[], object]:
        return lambda: decode(provider, encode(provider, [large_payload(size)]))

    kept_after_one_mib = memory_the_codec_keeps(round_trip(MIB))
    monkeypatch.setattr(crypto_converter, "SCRATCH_KEPT_BYTES", 256 * 1024)
    kept_over_the_bound = memory_the_codec_keeps(lambda: (round_trip(128 * 1024)(), round_trip(MIB)()))

    assert kept_after_one_mib > MIB  # a buffer is kept for the next payload...
    assert 128 * 1024 < kept_over_the_bound < 256 * 1024  # ...but not one over SCRATCH_KEPT_BYTES


def test_module_knows_nothing_of_key_vault_or_configuration() -> None:
    probe = "import sys, crypto_converter; print(sorted({'keyvault', 'config', 'azure'} & set(sys.modules)))"

    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_DIR, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"
