"""The codec server's health route (GET /healthz), which the deployed codec server's Kubernetes probes ask: it
answers without a token, touches no payload, and is no way around the token for anything else."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from codec_server import HEALTH_PATH, create_app
from crypto_converter import EncryptionCodec, Plaintext

from helpers.codec_requests import PLAINTEXT, Answer, encrypt, payloads_json, plain_payload
from helpers.fake_keyvault import forbid_non_loopback_connections
from helpers.static_keys import StaticKeyProvider

TOKEN = "codec-token-for-health-tests"


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    with forbid_non_loopback_connections() as refused:
        yield
    assert refused == [], f"a test tried to connect to non-loopback addresses: {refused}"


def calls(*requests: tuple[str, str, bytes | None]) -> list[Answer]:
    """The requests, in turn, to one app with a token set (CODEC_SERVER_TOKEN)."""
    provider = StaticKeyProvider.random()
    app = create_app(EncryptionCodec(provider, Plaintext.ACCEPT), ["http://localhost:8233"], TOKEN)

    async def run() -> list[Answer]:
        answers = []
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for method, path, body in requests:
                response = await client.request(method, path, data=body)
                answers.append(Answer(response.status, dict(response.headers), await response.read()))
        return answers

    return asyncio.run(run())


def test_the_probes_route_answers_without_a_token() -> None:
    [answer] = calls(("GET", HEALTH_PATH, None))
    assert answer.status == 200
    assert json.loads(answer.body) == {"status": "ok"}


def test_the_health_route_opens_nothing_else() -> None:
    provider = StaticKeyProvider.random()
    body = payloads_json(encrypt(provider, plain_payload())).encode()
    decode, posted_health, healthz_decode = calls(
        ("POST", "/decode", body), ("POST", HEALTH_PATH, body), ("POST", f"{HEALTH_PATH}/decode", body)
    )
    assert decode.status == 401, "the token still guards /decode"
    assert posted_health.status == 405, "GET only"
    assert healthz_decode.status == 401, "a namespace called healthz is a namespace like any other"
    for answer in (decode, posted_health, healthz_decode):
        assert PLAINTEXT not in answer.body
