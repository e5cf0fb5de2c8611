"""Signed-in access to the codec server (codec_auth.py through codec_server.create_app): tokens from a local OIDC
provider (tests/helpers/oidc_provider.py) that verify or not, per-namespace roles in Temporal's and Entra's claim
formats, the bounds on reading the provider's keys, and the audit line.

The real process with the real `temporal` CLI is tests/e2e/test_codec_server_oidc.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from temporalio.api.common.v1 import Payload

import config
import log_format
from bootstrap import StartupError
from codec_auth import MAX_TOKEN_BYTES, Caller, FetchLimits, TokenVerifier, Unauthorized, grants_from_claims
from codec_server import create_app
from crypto_converter import KEY_ID_METADATA, EncryptionCodec, Plaintext

from helpers.codec_requests import PLAINTEXT, Answer, encrypt, payloads_from, payloads_json, plain_payload
from helpers.fake_keyvault import forbid_non_loopback_connections
from helpers.oidc_provider import AUDIENCE, OidcProvider, flipped_signature, new_key
from helpers.static_keys import StaticKeyProvider

UI_ORIGIN = "http://localhost:8233"
STATIC_TOKEN = "static-codec-token-for-tests"
KEYS = StaticKeyProvider.random("3f6c0e7a9b1d4c2e8f5a6b7c8d9e0f1a")
READER = ["default:read"]
WRITER = ["default:write"]


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    with forbid_non_loopback_connections() as refused:
        yield
    assert refused == [], f"a test tried to connect to non-loopback addresses: {refused}"


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def encrypted() -> Payload:
    return encrypt(KEYS, plain_payload())


def oidc_settings(provider: OidcProvider, **overrides: Any) -> config.OidcSettings:
    defaults = {"issuer": provider.issuer, "audience": AUDIENCE, "ca_file": provider.ca_file}
    return config.OidcSettings(**(defaults | overrides))


class Server:
    """The codec server app with a started verifier, and a client for it."""

    def __init__(self, client: TestClient, verifier: TokenVerifier) -> None:
        self.client = client
        self.verifier = verifier

    async def post(
        self,
        path: str,
        token: str | None = None,
        body: str = "",
        headers: dict[str, str] | None = None,
        scheme: str = "Bearer",
    ) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"{scheme} {token}"
        response = await self.client.post(path, data=body, headers=sent)
        return Answer(response.status, dict(response.headers), await response.read())


@contextlib.asynccontextmanager
async def codec_server(
    provider: OidcProvider,
    settings: config.OidcSettings | None = None,
    limits: FetchLimits | None = None,
    token: str | None = None,
    **options: Any,
) -> AsyncIterator[Server]:
    verifier = TokenVerifier(settings or oidc_settings(provider), limits or FetchLimits())
    await verifier.start()
    app = create_app(EncryptionCodec(KEYS, Plaintext.ACCEPT), [UI_ORIGIN], token, verifier=verifier, **options)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield Server(client, verifier)
    finally:
        await verifier.close()


def decode_with(provider: OidcProvider, token: str | None, path: str = "/default/decode", **options: Any) -> Answer:
    body = payloads_json(encrypt(KEYS, plain_payload()))

    async def run() -> Answer:
        async with codec_server(provider, **options) as server:
            return await server.post(path, token, body)

    return asyncio.run(run())


# --- Who may decode and encode ---------------------------------------------------------------------


def test_a_reader_decodes_its_namespace(provider, encrypted) -> None:
    token = provider.token(permissions=READER)

    async def run() -> list[Answer]:
        async with codec_server(provider) as server:
            by_path = await server.post("/default/decode", token, payloads_json(encrypted))
            by_header = await server.post("/decode", token, payloads_json(encrypted), {"X-Namespace": "default"})
            return [by_path, by_header]

    for answer in asyncio.run(run()):
        assert answer.status == 200
        assert payloads_from(answer.body) == [plain_payload()]


def test_a_reader_may_not_encode(provider) -> None:
    answer = decode_with(provider, provider.token(permissions=READER), "/default/encode", encode=True)

    assert answer.status == 403
    assert "no write role" in json.loads(answer.body)["error"]


def test_a_writer_encodes_when_encode_is_on(provider) -> None:
    token = provider.token(permissions=WRITER)

    async def run() -> tuple[Answer, Answer, Answer]:
        async with codec_server(provider, encode=True) as server:
            encoded = await server.post("/default/encode", token, payloads_json(plain_payload()))
            decoded = await server.post("/default/decode", token, encoded.body.decode())
        async with codec_server(provider) as server:
            switched_off = await server.post("/default/encode", token, payloads_json(plain_payload()))
        return encoded, decoded, switched_off

    encoded, decoded, switched_off = asyncio.run(run())

    assert encoded.status == 200
    [ciphertext] = payloads_from(encoded.body)
    assert ciphertext.metadata["encoding"] == b"binary/encrypted" and PLAINTEXT not in ciphertext.data
    assert decoded.status == 200 and payloads_from(decoded.body) == [plain_payload()]  # write includes read
    assert switched_off.status == 403 and "switched off" in json.loads(switched_off.body)["error"]


def test_a_reader_of_another_namespace_is_refused(provider) -> None:
    token = provider.token(permissions=["orders:read", "orders:write"])

    answer = decode_with(provider, token, "/default/decode")

    assert answer.status == 403
    assert "no read role on namespace 'default'" in json.loads(answer.body)["error"]


def test_a_request_naming_no_namespace_needs_the_role_on_every_namespace(provider) -> None:
    reader = decode_with(provider, provider.token(permissions=READER), "/decode")
    system_admin = decode_with(provider, provider.token(permissions=["temporal-system:admin"]), "/decode")

    assert reader.status == 403 and "every namespace" in json.loads(reader.body)["error"]
    assert system_admin.status == 200 and payloads_from(system_admin.body) == [plain_payload()]


def test_an_admin_role_includes_read_and_roles_are_matched_per_namespace() -> None:
    settings = config.OidcSettings(issuer="https://issuer.example/", audience=AUDIENCE)
    claims = {"permissions": ["default:admin", "orders:READ", "*:read", "billing:worker", "no-role", ":read"]}

    grants = grants_from_claims(claims, settings)

    assert grants == {("default", "admin"), ("orders", "read")}
    caller = Caller("user", grants=grants)
    assert caller.may("write", "default") and caller.may("read", "default")
    assert caller.may("read", "orders") and not caller.may("write", "orders")
    assert not caller.may("read", "billing") and not caller.may("read", None)  # a `*` in a token grants nothing


# --- Entra ID: app roles, groups; Temporal Cloud: the email claim ----------------------------------


ROLE_MAP = (
    ("Codec.Read.Default", "default", "read"),
    ("Codec.Write.Orders", "orders", "write"),
    ("Codec.Read.All", "*", "read"),
    ("7d9c2f0e-1111-4a2b-9c3d-000000000001", "default", "read"),
    ("alice@example.com", "default", "read"),
)


@pytest.mark.parametrize(
    ("claim", "claims", "path", "status"),
    [
        ("roles", {"roles": ["Codec.Read.Default"]}, "/default/decode", 200),
        ("roles", {"roles": ["Codec.Read.Default"]}, "/orders/decode", 403),
        ("roles", {"roles": ["Codec.Write.Orders"]}, "/orders/decode", 200),
        ("roles", {"roles": ["Codec.Read.All"]}, "/decode", 200),
        ("roles", {"roles": ["Codec.Read.Default"], "permissions": ["orders:read"]}, "/orders/decode", 403),
        ("groups", {"groups": ["7d9c2f0e-1111-4a2b-9c3d-000000000001"]}, "/default/decode", 200),
        ("groups", {"roles": ["Codec.Read.Default"]}, "/default/decode", 403),  # the claim configured is groups
        (
            "https://saas-api.tmprl.cloud/user/email",
            {"https://saas-api.tmprl.cloud/user/email": "alice@example.com"},
            "/default/decode",
            200,
        ),
        (
            "https://saas-api.tmprl.cloud/user/email",
            {"https://saas-api.tmprl.cloud/user/email": "eve@example.com"},
            "/default/decode",
            403,
        ),
    ],
)
def test_mapped_claims_grant_what_the_role_map_says(provider, claim, claims, path, status) -> None:
    settings = oidc_settings(provider, claim_format="mapped", claim=claim, role_map=ROLE_MAP)

    answer = decode_with(provider, provider.token(**claims), path, settings=settings)

    assert answer.status == status


# --- Tokens that must not verify -------------------------------------------------------------------


def refused_tokens(provider: OidcProvider, other: OidcProvider) -> dict[str, str | None]:
    """A token that would be a reader's of `default`, made invalid one way each."""
    valid = provider.token(permissions=READER)
    public_jwk = json.dumps(provider.current.public_jwk()).encode()
    return {
        "no token": None,
        "expired": provider.token(permissions=READER, expires_in=-120),
        "not yet valid": provider.token(permissions=READER, not_before_in=120),
        "wrong issuer": provider.token(permissions=READER, issuer=provider.origin + "/other-tenant/v2.0"),
        "wrong audience": provider.token(permissions=READER, audience="api://another-app"),
        "alg none": provider.forged("none", permissions=READER),
        "HS256 keyed with the public key (PEM)": provider.forged(
            "HS256", provider.current.public_pem(), permissions=READER
        ),
        "HS256 keyed with the public key (JWK)": provider.forged("HS256", public_jwk, permissions=READER),
        "unknown key id": provider.token(permissions=READER, key=new_key()),
        "flipped signature byte": flipped_signature(valid),
        "another provider's token": other.token(permissions=READER, audience=AUDIENCE),
        "another provider's key with this issuer and key id": other.token(
            permissions=READER, issuer=provider.issuer, kid=provider.current.kid
        ),
        "no exp": provider.token(permissions=READER, omit=("exp",)),
        "an RS256 key named as ES256": _relabelled(valid, "ES256"),
        "an RS256 key named as PS256": _relabelled(valid, "PS256"),
        "not a JWT": "not-a-jwt",
        "bytes that are not text": "caf\udce9.token",
    }


def _relabelled(token: str, algorithm: str) -> str:
    """The token with its header's alg changed (signature left as it was)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    relabelled = base64.urlsafe_b64encode(json.dumps(decoded | {"alg": algorithm}).encode()).rstrip(b"=").decode()
    return f"{relabelled}.{payload}.{signature}"


def test_every_invalid_token_is_refused_with_401(provider, tmp_path, encrypted) -> None:
    with OidcProvider(tmp_path) as other:
        tokens = refused_tokens(provider, other)

        async def run() -> dict[str, Answer]:
            async with codec_server(provider) as server:
                answers = {
                    case: await server.post("/default/decode", token, payloads_json(encrypted))
                    for case, token in tokens.items()
                }
                answers["valid, with scheme Basic"] = await server.post(
                    "/default/decode", provider.token(permissions=READER), payloads_json(encrypted), scheme="Basic"
                )
                answers["valid"] = await server.post(
                    "/default/decode", provider.token(permissions=READER), payloads_json(encrypted)
                )
                return answers

        answers = asyncio.run(run())

    assert answers.pop("valid").status == 200
    assert {case: answer.status for case, answer in answers.items()} == dict.fromkeys(answers, 401)
    for answer in answers.values():
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert PLAINTEXT not in answer.body


def test_clock_skew_within_the_leeway_is_accepted(provider) -> None:
    just_expired = decode_with(provider, provider.token(permissions=READER, expires_in=-20))
    nearly_valid = decode_with(provider, provider.token(permissions=READER, not_before_in=20))

    assert just_expired.status == 200 and nearly_valid.status == 200


def test_ec_keys_verify(tmp_path) -> None:
    with OidcProvider(tmp_path, algorithm="ES256") as provider:
        answer = decode_with(provider, provider.token(permissions=READER))

    assert answer.status == 200


def test_the_static_token_still_opens_decode_for_the_cli(provider, encrypted) -> None:
    async def run() -> tuple[Answer, Answer]:
        async with codec_server(provider, token=STATIC_TOKEN) as server:
            static = await server.post("/decode", STATIC_TOKEN, payloads_json(encrypted))
            wrong = await server.post("/decode", STATIC_TOKEN + "x", payloads_json(encrypted))
            return static, wrong

    static, wrong = asyncio.run(run())

    assert static.status == 200 and payloads_from(static.body) == [plain_payload()]
    assert wrong.status == 401


# --- The provider's keys: rotation, bounded refreshes, bounded reads -------------------------------


def test_a_rotated_key_is_fetched_once_and_a_withdrawn_key_stops_working(provider, encrypted) -> None:
    old_token = provider.token(permissions=READER)

    async def run() -> tuple[list[int], int]:
        limits = FetchLimits(min_refresh_seconds=0.0, max_age_seconds=3600.0)
        async with codec_server(provider, limits=limits) as server:
            body = payloads_json(encrypted)
            statuses = [(await server.post("/default/decode", old_token, body)).status]
            reads_before = provider.jwks_reads
            provider.rotate("ES256", retire_old=True)
            new_token = provider.token(permissions=READER)
            statuses.append((await server.post("/default/decode", new_token, body)).status)
            statuses.append((await server.post("/default/decode", new_token, body)).status)
            rotation_reads = provider.jwks_reads - reads_before
            server.verifier.limits = FetchLimits(min_refresh_seconds=0.0, max_age_seconds=0.0)
            statuses.append((await server.post("/default/decode", old_token, body)).status)
            return statuses, rotation_reads

    statuses, rotation_reads = asyncio.run(run())

    assert statuses == [200, 200, 200, 401]
    assert rotation_reads == 1  # the new key id was fetched once, then held


def test_a_burst_of_unknown_key_ids_reads_the_keys_at_most_once_per_interval(provider, encrypted) -> None:
    async def run() -> tuple[list[int], int]:
        async with codec_server(provider, limits=FetchLimits(min_refresh_seconds=3600.0)) as server:
            reads_before = provider.jwks_reads
            server.verifier._last_attempt = -float("inf")  # as if the last read were long ago  # noqa: SLF001
            tokens = [provider.token(permissions=READER, kid=f"random-{uuid.uuid4().hex}") for _ in range(200)]
            answers = await asyncio.gather(
                *(server.post("/default/decode", token, payloads_json(encrypted)) for token in tokens)
            )
            return [answer.status for answer in answers], provider.jwks_reads - reads_before

    statuses, reads = asyncio.run(run())

    assert statuses == [401] * 200
    assert reads == 1


def limit_failure(provider: OidcProvider, limits: FetchLimits) -> str:
    async def run() -> str:
        verifier = TokenVerifier(oidc_settings(provider), limits)
        try:
            with pytest.raises(StartupError) as raised:
                await verifier.start()
        finally:
            await verifier.close()
        return str(raised.value)

    return asyncio.run(run())


def test_a_jwks_over_the_byte_limit_is_refused(provider) -> None:
    provider.jwks_padding_bytes = 300 * 1024

    declared = limit_failure(provider, FetchLimits(max_document_bytes=256 * 1024))
    provider.jwks_without_length = True
    streamed = limit_failure(provider, FetchLimits(max_document_bytes=256 * 1024))

    for error in (declared, streamed):
        assert "CODEC_SERVER_OIDC_ISSUER" in error and "over 262144 bytes" in error


def test_a_jwks_slower_than_the_time_limit_is_refused(provider) -> None:
    provider.jwks_delay_seconds = 3.0

    error = limit_failure(provider, FetchLimits(timeout_seconds=0.5))

    assert "was not read within 0.5s" in error


def test_redirects_are_not_followed(provider) -> None:
    provider.jwks_redirect_to = provider.jwks_uri + "-elsewhere"

    error = limit_failure(provider, FetchLimits())

    assert "HTTP 302" in error and "redirects are not followed" in error
    assert provider.paths.count("/tenant/v2.0/keys-elsewhere") == 0


def test_the_keys_must_come_over_https(provider) -> None:
    provider.discovery_overrides = {"jwks_uri": provider.jwks_uri.replace("https://", "http://")}

    assert "names no https jwks_uri" in limit_failure(provider, FetchLimits())


def test_the_discovery_document_must_name_the_configured_issuer(provider) -> None:
    provider.discovery_overrides = {"issuer": "https://login.example/attacker"}

    assert "names issuer 'https://login.example/attacker'" in limit_failure(provider, FetchLimits())


def test_an_untrusted_certificate_is_refused(provider, tmp_path) -> None:
    other_ca = OidcProvider(tmp_path).ca_file  # a CA that did not sign the provider's certificate

    async def run() -> str:
        verifier = TokenVerifier(oidc_settings(provider, ca_file=other_ca))
        try:
            with pytest.raises(StartupError) as raised:
                await verifier.start()
        finally:
            await verifier.close()
        return str(raised.value)

    assert "cannot read the discovery document" in asyncio.run(run())


def test_at_most_max_keys_of_a_jwks_are_used_and_long_tokens_are_not_read(tmp_path) -> None:
    with OidcProvider(tmp_path, algorithm="ES256") as provider:
        first = provider.token(permissions=READER)
        for _ in range(5):
            provider.rotate("ES256")
        sixth = provider.token(permissions=READER)

        async def run() -> list[str]:
            verifier = TokenVerifier(oidc_settings(provider), FetchLimits(max_keys=4))
            await verifier.start()
            outcomes = []
            try:
                for token in (first, sixth, first + "A" * MAX_TOKEN_BYTES):
                    try:
                        outcomes.append((await verifier.verify(token)).subject or "")
                    except Unauthorized as error:
                        outcomes.append(str(error))
            finally:
                await verifier.close()
            return outcomes

        outcomes = asyncio.run(run())

    assert outcomes == ["user-1", "unknown key id", f"token longer than {MAX_TOKEN_BYTES} bytes"]


def test_a_failed_refresh_keeps_the_keys_held(provider, encrypted) -> None:
    token = provider.token(permissions=READER)

    async def run() -> list[int]:
        limits = FetchLimits(min_refresh_seconds=0.0, timeout_seconds=0.5)
        async with codec_server(provider, limits=limits) as server:
            provider.jwks_delay_seconds = 3.0
            unknown = provider.token(permissions=READER, key=new_key())
            statuses = [(await server.post("/default/decode", unknown, payloads_json(encrypted))).status]
            provider.jwks_delay_seconds = 0.0
            statuses.append((await server.post("/default/decode", token, payloads_json(encrypted))).status)
            return statuses

    assert asyncio.run(run()) == [401, 200]


# --- The audit line --------------------------------------------------------------------------------


def test_every_request_is_one_audit_line_without_payloads_or_tokens(provider, encrypted, caplog) -> None:
    reader = provider.token(permissions=READER, preferred_username="alice@example.com", subject="sub-alice")
    expired = provider.token(permissions=READER, expires_in=-600)
    caplog.set_level(logging.INFO)

    async def run() -> list[int]:
        async with codec_server(provider, encode=True) as server:
            return [
                (await server.post("/default/decode", reader, payloads_json(encrypted, plain_payload()))).status,
                (await server.post("/default/decode", expired, payloads_json(encrypted))).status,
                (await server.post("/orders/decode", reader, payloads_json(encrypted))).status,
                (await server.post("/default/encode", reader, payloads_json(plain_payload()))).status,
            ]

    statuses = asyncio.run(run())

    assert statuses == [200, 401, 403, 403]
    audit = [record for record in caplog.records if record.name == "codec_server.audit"]
    assert [record.audit["status"] for record in audit] == statuses
    ok, refused, other_namespace, encode = (record.audit for record in audit)
    assert ok == ok | {
        "endpoint": "decode",
        "namespace": "default",
        "auth": "oidc",
        "subject": "sub-alice",
        "user": "alice@example.com",
        "payloads": 2,
        "key_ids": [encrypted.metadata[KEY_ID_METADATA].decode()],
    }
    assert ok["bytes"] == encrypted.ByteSize() + plain_payload().ByteSize()
    assert (
        refused["auth"] == "oidc"
        and refused["subject"] is None
        and refused["reason"] == "expired"
        and refused["payloads"] == 0
    )
    assert other_namespace["namespace"] == "orders" and other_namespace["reason"] == "no read role on the namespace"
    assert encode["endpoint"] == "encode" and encode["reason"] == "no write role on the namespace"
    formatter = log_format.JsonFormatter()
    lines = [formatter.format(record) for record in audit] + [caplog.text]
    for line in lines:
        for secret in (reader, expired, *reader.split("."), *expired.split(".")):
            assert secret not in line
        for payload_bytes in (PLAINTEXT, encrypted.data):
            assert payload_bytes.decode(errors="replace") not in line
            assert base64.b64encode(payload_bytes).decode() not in line
    fields = json.loads(formatter.format(audit[0]))
    assert fields["subject"] == "sub-alice" and fields["namespace"] == "default" and fields["status"] == 200
    assert fields["logger"] == "codec_server.audit" and fields["payloads"] == 2
    assert "subject='sub-alice'" in audit[0].getMessage() and "status=200" in audit[0].getMessage()


def test_an_audited_namespace_cannot_forge_a_log_line(provider, encrypted, caplog) -> None:
    caplog.set_level(logging.INFO)
    token = provider.token(permissions=READER)

    async def run() -> int:
        async with codec_server(provider) as server:
            headers = {"X-Namespace": "default\u2028forged=1"}
            return (await server.post("/decode", token, payloads_json(encrypted), headers)).status

    asyncio.run(run())

    [record] = [record for record in caplog.records if record.name == "codec_server.audit"]
    assert "\n" not in record.getMessage() and "\u2028" not in record.getMessage()


# --- CORS for the Web UI's "pass the user access token" ----------------------------------------------


def test_the_ui_may_send_its_tokens_and_credentials(provider) -> None:
    async def run() -> Answer:
        async with codec_server(provider) as server:
            response = await server.client.options(
                "/default/decode",
                headers={
                    "Origin": UI_ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,authorization-extras,content-type,x-namespace",
                },
            )
            return Answer(response.status, dict(response.headers), await response.read())

    answer = asyncio.run(run())

    assert answer.status == 204
    allowed = {name.strip() for name in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "authorization-extras", "content-type", "x-namespace"} <= allowed
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert answer.headers["Access-Control-Allow-Origin"] == UI_ORIGIN


# --- Configuration ---------------------------------------------------------------------------------


def load(**variables: str) -> config.Settings:
    base = {"CONFIG_ENV_FILE": "/nonexistent/config.env"}
    return config.load_settings(base | variables)


def test_the_oidc_variables_make_the_settings() -> None:
    settings = load(
        CODEC_SERVER_OIDC_ISSUER="https://login.microsoftonline.com/tenant-id/v2.0",
        CODEC_SERVER_OIDC_AUDIENCE="api://temporal-codec",
        CODEC_SERVER_OIDC_CLAIM_FORMAT="mapped",
        CODEC_SERVER_OIDC_ROLE_MAP="Codec.Read.Default=default:read, Codec.Admin=*:admin,a=b=c:write",
    )

    assert settings.codec_server.oidc == config.OidcSettings(
        issuer="https://login.microsoftonline.com/tenant-id/v2.0",
        audience="api://temporal-codec",
        claim_format="mapped",
        claim="roles",
        role_map=(("Codec.Read.Default", "default", "read"), ("Codec.Admin", "*", "admin"), ("a=b", "c", "write")),
    )
    assert load().codec_server.oidc is None
    issuer_only = {"CODEC_SERVER_OIDC_ISSUER": "https://issuer.example/", "CODEC_SERVER_OIDC_AUDIENCE": "aud"}
    assert load(**issuer_only).codec_server.oidc.claim == "permissions"


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"CODEC_SERVER_OIDC_ISSUER": "http://issuer.example/"}, "CODEC_SERVER_OIDC_ISSUER"),
        ({"CODEC_SERVER_OIDC_ISSUER": "https://issuer.example/?x=1", "CODEC_SERVER_OIDC_AUDIENCE": "a"}, "no query"),
        ({"CODEC_SERVER_OIDC_ISSUER": "https://issuer.example/"}, "without CODEC_SERVER_OIDC_AUDIENCE"),
        ({"CODEC_SERVER_OIDC_AUDIENCE": "aud"}, "set without CODEC_SERVER_OIDC_ISSUER"),
        (
            {
                "CODEC_SERVER_OIDC_ISSUER": "https://i.example/",
                "CODEC_SERVER_OIDC_AUDIENCE": "a",
                "CODEC_SERVER_OIDC_CLAIM_FORMAT": "mapped",
            },
            "needs CODEC_SERVER_OIDC_ROLE_MAP",
        ),
        (
            {
                "CODEC_SERVER_OIDC_ISSUER": "https://i.example/",
                "CODEC_SERVER_OIDC_AUDIENCE": "a",
                "CODEC_SERVER_OIDC_ROLE_MAP": "x=default:read",
            },
            "is not mapped",
        ),
        ({"CODEC_SERVER_OIDC_ROLE_MAP": "Codec.Read"}, "is not VALUE=NAMESPACE:ROLE"),
        ({"CODEC_SERVER_OIDC_ROLE_MAP": "Codec.Read=default:owner"}, "the roles are read, write, admin"),
        ({"CODEC_SERVER_OIDC_CLAIM_FORMAT": "entra"}, "must be temporal or mapped"),
    ],
)
def test_oidc_configuration_problems_name_the_variable(variables, problem) -> None:
    with pytest.raises(config.ConfigError) as raised:
        load(**variables)

    assert problem in str(raised.value)
