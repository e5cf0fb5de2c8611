"""Codec server: lets the Temporal Web UI and CLI show payloads that the workers encrypted.

Run it with `python codec_server.py` (`./start.sh` does when encryption is on). It reads the same
settings as the worker, fetches keys from the same Key Vault secret, and answers Temporal's codec
server protocol:

    POST /decode  and  POST /{namespace}/decode     decrypt {"payloads": [...]}
    POST /encode  and  POST /{namespace}/encode     encrypt {"payloads": [...]}

Bodies are `temporal.api.common.v1.Payloads` in proto3 JSON. Any payload it cannot decrypt, or a
malformed body, is a 400 whose message names at most a key id, never payload contents; payload
contents are never logged either.

Browsers may call it only from CODEC_SERVER_CORS_ORIGINS (default the local dev UI): a request with
any other Origin is refused with 403 and no CORS headers. When CODEC_SERVER_TOKEN is set, every
request but a CORS preflight needs `Authorization: Bearer <token>` (the CLI sends it with
`--codec-auth "Bearer <token>"`); anyone who can call the server can decrypt payloads, so outside
a laptop keep it on a private address and set a token.

Public API: `create_app(codec, cors_origins, token)` builds the aiohttp application (tests use it
directly); `main()` is the command line entry point.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import NoReturn

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

import config
from bootstrap import StartupError, Stop, run_program, started_key_provider
from crypto_converter import EncryptionCodec, PayloadDecryptionError

# Temporal limits a payload to 2 MiB by default; base64 adds a third, and one request may carry several.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
ALLOWED_METHODS = "POST, OPTIONS"
ALLOWED_HEADERS = "content-type, x-namespace, authorization"
BAD_BODY = 'request body must be JSON {"payloads": [...]}: temporal.api.common.v1.Payloads in proto3 JSON'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]

logger = logging.getLogger("codec_server")  # the same name whether imported or run as a script


def create_app(codec: PayloadCodec, cors_origins: Iterable[str], token: str | None) -> web.Application:
    """The codec server application: encode/decode routes behind CORS and optional bearer-token checks."""
    app = web.Application(
        middlewares=[_cors_middleware(frozenset(cors_origins)), _authorization_middleware(token)],
        client_max_size=MAX_REQUEST_BYTES,
    )
    for prefix in ("", "/{namespace}"):
        for name, transform in (("encode", codec.encode), ("decode", codec.decode)):
            app.router.add_post(f"{prefix}/{name}", _codec_endpoint(name, transform))
            app.router.add_route("OPTIONS", f"{prefix}/{name}", _preflight)
    return app


def _cors_middleware(allowed_origins: frozenset[str]) -> Middleware:
    """Refuse browsers from other origins; tell allowed ones (preflight and response) that they may call."""

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser request from a page: the CLI, curl
            return await handler(request)
        if origin not in allowed_origins:
            logger.warning("Refused a request from origin %s: not in CODEC_SERVER_CORS_ORIGINS", origin)
            return _error(403, "origin not allowed; add it to CODEC_SERVER_CORS_ORIGINS")
        response = await handler(request)
        response.headers.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Vary": "Origin",
            }
        )
        return response

    return cors


def _authorization_middleware(token: str | None) -> Middleware:
    """Require `Authorization: Bearer <token>` when a token is configured; preflights never carry one."""
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def authorization(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None and request.method != "OPTIONS":
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                logger.warning("Refused a request to %s without the right bearer token", request.path)
                return _error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return authorization


async def _preflight(request: web.Request) -> web.Response:
    """CORS preflight: the CORS middleware adds the headers for allowed origins."""
    return web.Response(status=204)


def _codec_endpoint(name: str, transform: Transform) -> Handler:
    """A POST handler that runs the codec's encode or decode over a Payloads JSON body."""

    async def endpoint(request: web.Request) -> web.Response:
        try:
            payloads = json_format.Parse(await request.read(), Payloads())
        except (json_format.ParseError, ValueError):
            logger.warning("Refused a malformed %s request body", name)
            return _error(400, BAD_BODY)
        try:
            result = await transform(payloads.payloads)
        except PayloadDecryptionError as error:
            logger.warning("Could not %s payloads: %s", name, error)
            return _error(400, str(error))
        return web.Response(text=json_format.MessageToJson(Payloads(payloads=result)), content_type="application/json")

    return endpoint


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def _serve(settings: config.Settings, stop: Stop) -> int:
    """Keys from Key Vault, then answer on CODEC_SERVER_HOST:PORT until SIGTERM or SIGINT (in start-up too)."""
    if not settings.encryption.enabled:
        raise StartupError(
            "Codec server: payload encryption is not configured; set KEYVAULT_URL and KEYVAULT_SECRET_NAME"
        )
    server = settings.codec_server
    _warn_if_exposed(server)
    keys = await started_key_provider(settings.encryption, stop)
    try:
        runner = web.AppRunner(create_app(EncryptionCodec(keys), server.cors_origins, server.token))
        await runner.setup()
        try:
            await _listen(runner, server.host, server.port)
            await stop.wait()
        finally:
            await runner.cleanup()
    finally:
        await keys.close()
    logger.info("Codec server stopped")
    return 0


async def _listen(runner: web.AppRunner, host: str, port: int) -> None:
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        raise StartupError(
            f"Codec server cannot listen on {host}:{port}: {error.strerror or error}; "
            "set CODEC_SERVER_HOST and CODEC_SERVER_PORT to a free local address"
        ) from None
    logger.info("Codec server listening on %s", _url(host, port))


def _url(host: str, port: int) -> str:
    shown_host = f"[{host}]" if ":" in host else host
    return f"http://{shown_host}:{port}"


def _warn_if_exposed(server: config.CodecServerSettings) -> None:
    """Anyone who reaches an open codec server can decrypt every payload: say so when that is likely."""
    if server.token:
        return
    try:
        loopback = ipaddress.ip_address(server.host).is_loopback
    except ValueError:
        loopback = server.host == "localhost"
    if not loopback:
        logger.warning(
            "Codec server on %s without CODEC_SERVER_TOKEN: anyone who can reach it can decrypt payloads",
            server.host,
        )


def main() -> NoReturn:
    """`python codec_server.py`: exit 0 when stopped by a signal (in start-up too), 1 when it cannot start."""
    run_program("codec server", _serve)


if __name__ == "__main__":
    main()
