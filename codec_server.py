"""Codec server: lets the Temporal Web UI and CLI show payloads that the workers encrypted.

Run it with `python codec_server.py` (`./start.sh` does when encryption or payload storage is on). It
reads the same settings as the worker, fetches keys from the same Key Vault secret, reads large payloads
from the same Azure Blob Storage container, and answers Temporal's codec server protocol:

    POST /decode  and  POST /{namespace}/decode     decrypt {"payloads": [...]}
    POST /encode  and  POST /{namespace}/encode     encrypt {"payloads": [...]}  (off unless CODEC_SERVER_ENCODE=true)
    GET  /healthz                                   200 once it listens, which it does only with its keys read:
                                                    the Kubernetes probes' route (no token, no payload)

Bodies are `temporal.api.common.v1.Payloads` in proto3 JSON; answers are compact JSON. Unencrypted
payloads pass through /decode unchanged, so histories written before encryption stay readable.

With payload storage on (PAYLOAD_STORAGE_*), /decode also resolves the references that stand in the
history for large payloads: it fetches each one from the container (the blob's SHA-256 checked), then
decrypts it, so the Web UI and `temporal workflow show --codec-endpoint` show the real value. A reference
to another container or to a blob name the driver does not write is refused (400) before anything is
fetched, and so is one outside the request's namespace (the path's `/{namespace}/decode`, else the
`X-Namespace` header; a request with neither may carry no references); a blob that cannot be fetched is
a 502 naming it; what one request fetches is bounded
(`Limits.max_fetched_bytes`, 413 beyond it), and at most `Limits.max_fetching_requests` requests fetch at
once: a request keeps its turn until its answer is written, since it holds its payloads several times over
while it works and once while it answers.

Who may call it:
  * Browsers only from CODEC_SERVER_CORS_ORIGINS (default the local dev UI): a request with any other
    Origin is refused with 403 and no CORS headers. Allowed origins may send credentials and the
    Authorization-Extras header the Web UI adds (neither is read).
  * When CODEC_SERVER_TOKEN is set, /decode needs `Authorization: Bearer <token>` (the scheme in any
    case; the CLI sends it with `--codec-auth "Bearer <token>"`). A CORS preflight never needs it.
  * /encode encrypts anything with the production key, so it forges payloads that workers trust: it
    answers 403 unless CODEC_SERVER_ENCODE=true, then needs CODEC_SERVER_ENCODE_TOKEN when that is set
    (else CODEC_SERVER_TOKEN), and every encode is logged with its key id and the caller's address.
  * Signed-in users (codec_auth.py): with CODEC_SERVER_OIDC_ISSUER set, any other bearer must be a JWT
    of that issuer for CODEC_SERVER_OIDC_AUDIENCE (401 otherwise, 503 while the issuer's keys cannot be
    read), and its claim must grant read on the request's namespace for /decode, write for /encode (403
    otherwise); a request naming no namespace needs the role on every namespace. The static tokens above
    still open their endpoints, for the CLI and scripts. The issuer's keys are read before listening.

Audit: every POST to /decode or /encode, whatever its outcome, is one line of the `codec_server.audit`
logger (codec_auth.log_audit): endpoint, namespace, how the caller was identified, subject and readable
name, payload count and bytes, key ids, status and the reason for a refusal; never a payload or a token.

What one request may cost (`Limits`, each over-the-cap answer a 413 naming the cap): its body, its
number of payloads (bounded before parsing by counting the body's JSON punctuation, so a million tiny
payloads cost a few milliseconds), and its payload bytes after base64 decoding. Large bodies are
parsed in a small thread pool, off the event loop; at most `max_requests` requests are read, worked on
and answered at once, each within `request_timeout_seconds` (else 503).

Answers: written as they are produced, in chunks of `ANSWER_CHUNK_BYTES` (1 MiB of base64) with an exact
Content-Length, so an answer costs its decoded payloads plus one chunk, never a second copy as one JSON
text; the next chunk is made only when the client has taken the last (the transport buffers at most one
chunk). The request's deadline covers writing its answer: a client that has not read the whole answer
within `request_timeout_seconds` of its request is dropped (the connection aborted, its buffers freed), so
what the answer held is released when the request ends, read or not.

Stopping: on SIGTERM or SIGINT the server stops listening, gives requests in progress
`SHUTDOWN_TIMEOUT_SECONDS` to finish, then cancels them and drops their connections; aiohttp applies
that timeout twice (waiting, then after cancelling), so the process exits within about 2 x 1.5 s,
whatever its clients do.

Errors: a payload that cannot be decrypted is a generic 400; the log says why (key id, Key Vault's
answer), never the caller. Payload contents are never logged; request paths and origins are logged
with %r, so a `%0A` in a path cannot forge a log line.

TLS: with CODEC_SERVER_TLS_CERT_FILE and CODEC_SERVER_TLS_KEY_FILE it serves HTTPS itself; otherwise
keep it on loopback or terminate TLS in front of it (docs/encryption.md has an example).

Public API: `create_app(codec, cors_origins, token, encode=..., encode_token=..., limits=..., storage=...,
verifier=...)` builds
the aiohttp application (tests use it directly); `Limits`; `main()` is the command line entry point.
"""

from __future__ import annotations

# isort: off
import early_signals  # noqa: F401  first: keeps a stop signal that comes during the imports below
# isort: on

import asyncio
import base64
import contextlib
import contextvars
import functools
import hmac
import ipaddress
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec, StorageDriverClaim

import config
from bootstrap import StartupError, Stop, run_program, started_key_provider, started_payload_storage
from codec_auth import AuditRecord, KeysUnavailable, TokenVerifier, Unauthorized, log_audit
from crypto_converter import KEY_ID_METADATA, EncryptionCodec, PayloadDecryptionError, Plaintext
from payload_storage import (
    AzureBlobStorageDriver,
    PayloadStorageError,
    PayloadTooLargeError,
    ReferenceRefusedError,
    check_reference_namespace,
    reference_claim,
)

MIB = 1024 * 1024
ALLOWED_METHODS = "POST, OPTIONS"
# authorization-extras: the Web UI sends the user's ID token in it along with the access token ("pass the user
# access token"); it is not read here, but a preflight that asks for a header not allowed fails the request.
ALLOWED_HEADERS = "content-type, x-namespace, authorization, authorization-extras"
BAD_BODY = 'request body must be JSON {"payloads": [...]}: temporal.api.common.v1.Payloads in proto3 JSON'
CANNOT_DECRYPT = (
    "a payload cannot be decrypted by this codec server (its key is unknown here, or the payload was altered); "
    "the codec server's log says why"
)
# Punctuation ({ [ , :) that a payload with a handful of metadata entries needs in proto3 JSON. The body's
# count of these bounds how many values json.loads would build, so it is checked before parsing.
JSON_TOKENS_PER_PAYLOAD = 16
# Bodies this small are parsed on the event loop: a thread hop would cost more.
INLINE_BYTES = 64 * 1024
# Payload bytes base64-encoded into one chunk of an answer: 1 MiB of base64 (a multiple of 3, so the chunks
# join into one valid base64 text). Encoding one takes about a millisecond, on the event loop.
ANSWER_CHUNK_BYTES = 3 * 256 * 1024
# The longest namespace an audit line shows (a namespace comes from the request, so from the caller).
MAX_AUDITED_NAMESPACE = 256
# The Kubernetes probes' route (deploy/manifests.py renders the probes): answered without a token.
HEALTH_PATH = "/healthz"
# How long a stop waits for requests in progress before cancelling them (aiohttp waits twice this at most).
SHUTDOWN_TIMEOUT_SECONDS = 1.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
T = TypeVar("T")
# The namespace of the request being answered (its path's, else its X-Namespace header), set by
# _namespace_middleware: a payload storage reference is resolved only under it.
_request_namespace: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_namespace", default=None)

logger = logging.getLogger("codec_server")  # the same name whether imported or run as a script


@dataclass(frozen=True)
class Limits:
    """What one request may cost the codec server; a request over a cap gets a 413 naming the cap."""

    max_request_bytes: int = 6 * MIB
    """Largest body read: the decoded cap in base64 (4/3 of it) plus room for the JSON around it."""
    max_payloads: int = 1000
    """Payloads in one request. The Web UI and the CLI send one event field's payloads at a time: a handful."""
    max_decoded_bytes: int = 4 * MIB
    """Payload bytes in one request after base64 decoding. Temporal refuses payloads over 2 MiB by default
    (limit.blobSize.error), so this is twice what the server stores for one field."""
    max_requests: int = 16
    """Requests being read or worked on at once; more wait for a turn, within the timeout."""
    worker_threads: int = 2
    """Threads that parse large bodies, off the event loop."""
    request_timeout_seconds: float = 15.0
    """Longest a request may take, from its wait for a turn to the last byte of its answer; then 503, or,
    once the answer has begun, the connection is dropped (a client must take a 50 MiB payload's 67 MiB
    answer at about 5 MB/s). A Key Vault read for an unknown key id goes on in the background, so asking
    again later finds the key."""
    max_fetched_bytes: int = 64 * MIB
    """Payload bytes one /decode request may fetch from payload storage, all its references together: one
    payload of up to PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES (50 MiB by default), with room to spare."""
    max_fetching_requests: int = 2
    """Requests that fetch from payload storage at once (others wait for a turn): each holds its payloads
    a few times over while it fetches and decrypts (the blob, the payload, the decrypted payload) and once
    while its answer is written, and keeps its turn until the answer is written or dropped."""

    @property
    def max_json_tokens(self) -> int:
        return JSON_TOKENS_PER_PAYLOAD * (self.max_payloads + 1)


class RequestTooLarge(Exception):
    """A request over one of the `Limits`; the message names the cap."""


def create_app(
    codec: PayloadCodec,
    cors_origins: Iterable[str],
    token: str | None,
    *,
    encode: bool = False,
    encode_token: str | None = None,
    limits: Limits = Limits(),
    storage: AzureBlobStorageDriver | None = None,
    verifier: TokenVerifier | None = None,
) -> web.Application:
    """The codec server application: /decode (resolving payload storage references when `storage` is
    given), /encode when switched on, CORS, bearer tokens (signed-in users' JWTs when `verifier` is given),
    limits, and one audit line per request."""
    app = web.Application(
        middlewares=[_audit_middleware, _cors_middleware(frozenset(cors_origins)), _namespace_middleware],
        client_max_size=limits.max_request_bytes,
    )
    app.on_response_prepare.append(_add_cors_headers)
    work = _Work(limits)
    app.on_cleanup.append(work.close)
    decode = codec.decode if storage is None else _decode_through_storage(codec, storage, work)
    decode_handler = _codec_endpoint("decode", decode, _expected_authorization(token), work, verifier)
    if encode:
        encode_handler = _codec_endpoint(
            "encode", codec.encode, _expected_authorization(encode_token or token), work, verifier
        )
    else:
        encode_handler = _encode_switched_off
    for prefix in ("", "/{namespace}"):
        for name, handler in (("encode", encode_handler), ("decode", decode_handler)):
            app.router.add_post(f"{prefix}/{name}", handler)
            app.router.add_route("OPTIONS", f"{prefix}/{name}", _preflight)
    app.router.add_get(HEALTH_PATH, _healthz)
    return app


# What a request holds until its answer is written or dropped (its fetching turn): released by the endpoint.
_held_until_answered: ContextVar[list[Callable[[], None]] | None] = ContextVar("held_until_answered", default=None)


class _Work:
    """What every request shares: the limits, the turns (a semaphore) and the thread pool."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.turns = asyncio.Semaphore(limits.max_requests)
        self.fetching_turns = asyncio.Semaphore(limits.max_fetching_requests)
        self._threads = ThreadPoolExecutor(max_workers=limits.worker_threads, thread_name_prefix="codec-json")

    async def run(self, size: int, function: Callable[..., T], *arguments: Any) -> T:
        """`function(*arguments)` on the event loop when `size` bytes are few, else in the thread pool."""
        if size <= INLINE_BYTES:
            return function(*arguments)
        return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(function, *arguments))

    @contextlib.asynccontextmanager
    async def fetching_turn(self) -> AsyncIterator[None]:
        """A turn to fetch from payload storage, kept after the block until the request's answer is written
        (or dropped) when called within an endpoint; released at the block's end otherwise or on an error."""
        await self.fetching_turns.acquire()
        try:
            yield
        except BaseException:
            self.fetching_turns.release()
            raise
        held = _held_until_answered.get()
        if held is None:
            self.fetching_turns.release()
        else:
            held.append(self.fetching_turns.release)

    async def close(self, app: web.Application) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def _decode_through_storage(codec: PayloadCodec, storage: AzureBlobStorageDriver, work: _Work) -> Transform:
    """Decode that first replaces payload storage references with the payloads they name, within the limits."""

    async def decode(payloads: Sequence[Payload]) -> list[Payload]:
        found = [reference_claim(payload) for payload in payloads]
        if not any(found):
            return await codec.decode(payloads)
        for reference in found:  # every reference checked before any is fetched
            if reference is not None:
                _check_reference(storage, *reference)
        async with work.fetching_turn():
            budget = work.limits.max_fetched_bytes
            resolved = []
            for payload, reference in zip(payloads, found, strict=True):
                if reference is None:
                    resolved.append(payload)
                    continue
                fetched = await storage.fetch(reference[1], max_bytes=budget)
                budget -= fetched.ByteSize()
                resolved.append(fetched)
            return await codec.decode(resolved)

    return decode


AUDIT = web.RequestKey("audit", AuditRecord)


@web.middleware
async def _audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One audit line for every POST to /decode or /encode, whatever its outcome (codec_auth.log_audit); the
    handlers fill in who called and what the request held."""
    endpoint = request.path.rsplit("/", 1)[-1]
    if request.method != "POST" or endpoint not in ("decode", "encode"):
        return await handler(request)
    namespace = request.match_info.get("namespace") or request.headers.get("X-Namespace") or None
    record = AuditRecord(
        endpoint=endpoint,
        path=request.path[: MAX_AUDITED_NAMESPACE + 16],
        remote=request.remote,
        namespace=namespace[:MAX_AUDITED_NAMESPACE] if namespace else None,
    )
    request[AUDIT] = record
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        record.reason = record.reason or "cancelled (the server is stopping)"
        raise
    except web.HTTPException as error:
        record.status = error.status
        raise
    except Exception:
        record.status = 500
        raise
    else:
        record.status = response.status
        return response
    finally:
        log_audit(record)


@web.middleware
async def _namespace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request's namespace, from its path (/{namespace}/decode) or else its X-Namespace header; both
    naming different namespaces is a 400. References are resolved only under it (check_reference_namespace)."""
    from_path, from_header = request.match_info.get("namespace"), request.headers.get("X-Namespace")
    if from_path and from_header and from_path != from_header:
        return _error(400, "the path and the X-Namespace header name different namespaces")
    token = _request_namespace.set(from_path or from_header or None)
    try:
        return await handler(request)
    finally:
        _request_namespace.reset(token)


def _check_reference(storage: AzureBlobStorageDriver, driver_name: str, claim: StorageDriverClaim) -> None:
    """ReferenceRefusedError unless the reference is of this driver, to its container and a name it writes,
    under the request's namespace (check_reference_namespace)."""
    if driver_name != storage.name():
        raise ReferenceRefusedError(
            f"Refused a payload reference of storage driver {driver_name[:64]!r}: only "
            f"{storage.name()!r} is configured here",
            f"the reference is of storage driver {driver_name[:64]!r}, not {storage.name()!r}",
        )
    storage.check(claim)
    namespace = _request_namespace.get()
    if not namespace:
        raise ReferenceRefusedError(
            "Refused payload storage references in a request that names no namespace",
            "the request names no namespace: call /{namespace}/decode or send X-Namespace",
        )
    check_reference_namespace(claim, namespace)


def _cors_middleware(allowed_origins: frozenset[str]) -> Middleware:
    """Refuse browsers from other origins; tell allowed ones (preflight and response) that they may call."""

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser request from a page: the CLI, curl
            return await handler(request)
        if origin not in allowed_origins:
            logger.warning("Refused a request from origin %r: not in CODEC_SERVER_CORS_ORIGINS", origin)
            return _error(403, "origin not allowed; add it to CODEC_SERVER_CORS_ORIGINS")
        request[CORS_ORIGIN] = origin  # the headers are added as the answer is prepared (_add_cors_headers)
        return await handler(request)

    return cors


CORS_ORIGIN = web.RequestKey("cors_origin", str)


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Tell an allowed origin that it may read the answer; before the headers are sent, so also for an answer
    that is written in chunks."""
    origin = request.get(CORS_ORIGIN)
    if origin is not None:
        response.headers.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                # The UI's "include cross-origin credentials" needs it; no cookie is ever read here, so a
                # credentialed request can do no more than any other.
                "Access-Control-Allow-Credentials": "true",
                "Vary": "Origin",
            }
        )


def _expected_authorization(token: str | None) -> bytes | None:
    return token.encode() if token else None


def _authorized(request: web.Request, expected: bytes | None) -> bool:
    """Whether the request carries `Authorization: Bearer <token>`, the scheme in any case (RFC 9110).

    Header bytes that are not UTF-8 reach us as surrogate escapes; they are compared as the bytes they
    were, so they are refused like any wrong token instead of failing the request.
    """
    if expected is None:
        return True
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    given = credentials.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, expected) and scheme.lower() == "bearer"


async def _healthz(request: web.Request) -> web.Response:
    """The probes' route: the server is up, so its keys were read (it listens only then); nothing else is asked."""
    return web.json_response({"status": "ok"})


async def _preflight(request: web.Request) -> web.Response:
    """CORS preflight: the CORS middleware adds the headers for allowed origins."""
    return web.Response(status=204)


async def _encode_switched_off(request: web.Request) -> web.Response:
    request[AUDIT].reason = "/encode is switched off"
    logger.warning("Refused an /encode request to %r from %s: /encode is switched off", request.path, request.remote)
    return _error(403, "/encode is switched off on this codec server (CODEC_SERVER_ENCODE)")


async def _refused_caller(
    request: web.Request, name: str, expected: bytes | None, verifier: TokenVerifier | None
) -> web.Response | None:
    """Why the caller may not make this request (401, 403, 503), or None when it may; the audit record learns who.

    Without a verifier: the static token when one is set (else anyone). With one: the static token still opens
    the endpoint (the CLI and scripts), any other bearer must be a valid JWT of the issuer whose claim grants
    read (decode) or write (encode) on the request's namespace, or on every namespace when it names none."""
    record = request[AUDIT]
    if verifier is None or (expected is not None and _authorized(request, expected)):
        if _authorized(request, expected):
            record.method = "token" if expected is not None else "none"
            return None
        logger.warning("Refused a request to %r from %s without the right bearer token", request.path, request.remote)
        record.reason = "missing or wrong bearer token"
        return _error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    record.method = "oidc"
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    try:
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthorized("no bearer token")
        caller = await verifier.verify(credentials.strip())
    except Unauthorized as error:
        record.reason = str(error)
        return _error(
            401,
            f"a valid bearer token of the configured issuer is needed: {error}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    except KeysUnavailable as error:
        logger.warning("Could not check a token for %r: %s", request.path, error)
        record.reason = "issuer's keys unavailable"
        return _error(503, "the codec server cannot read its identity provider's keys now; try again")
    record.method, record.subject, record.name = "oidc", caller.subject, caller.name
    role = "read" if name == "decode" else "write"
    namespace = _request_namespace.get()
    if not caller.may(role, namespace):
        where = f"namespace {namespace!r}" if namespace else "every namespace (the request names none)"
        record.reason = f"no {role} role on {'the namespace' if namespace else 'every namespace'}"
        return _error(403, f"your token grants no {role} role on {where}")
    return None


def _codec_endpoint(
    name: str, transform: Transform, expected_authorization: bytes | None, work: _Work, verifier: TokenVerifier | None
) -> Handler:
    """A POST handler that runs the codec's encode or decode over a Payloads JSON body, within the limits."""
    timeout = work.limits.request_timeout_seconds

    async def endpoint(request: web.Request) -> web.StreamResponse:
        refused = await _refused_caller(request, name, expected_authorization, verifier)
        if refused is not None:
            return refused
        held: list[Callable[[], None]] = []
        holding = _held_until_answered.set(held)
        answer: _JsonAnswer | None = None
        try:
            async with asyncio.timeout(timeout):
                async with work.turns:
                    worked = await _answer(request, name, transform, work)
                    if isinstance(worked, web.Response):
                        return worked
                    answer = worked
                    return await answer.send(request)
        except TimeoutError:
            if answer is not None and answer.started:
                request[AUDIT].reason = f"answer dropped: not read within {timeout:g}s"
                logger.warning(
                    "Dropped the answer to a %s request to %r from %s: not read within %gs",
                    name,
                    request.path,
                    request.remote,
                    timeout,
                )
                return answer.response
            logger.warning(
                "Gave up on a %s request to %r from %s after %gs", name, request.path, request.remote, timeout
            )
            request[AUDIT].reason = f"not finished within {timeout:g}s"
            return _error(503, f"the codec server did not finish this request within {timeout:g}s; try again")
        finally:
            _held_until_answered.reset(holding)
            for release in held:
                release()

    return endpoint


async def _answer(request: web.Request, name: str, transform: Transform, work: _Work) -> web.Response | _JsonAnswer:
    limits = work.limits
    try:
        if (request.content_length or 0) > limits.max_request_bytes:
            raise RequestTooLarge(_body_cap(limits))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RequestTooLarge(_body_cap(limits)) from None
        payloads = await work.run(len(body), _parse, body, limits)
        record = request[AUDIT]
        record.payloads, record.bytes = len(payloads.payloads), sum(payload.ByteSize() for payload in payloads.payloads)
        if name == "decode":
            record.add_key_ids(_key_ids(payloads.payloads))
    except RequestTooLarge as error:
        logger.warning("Refused a %s request to %r from %s: %s", name, request.path, request.remote, error)
        return _error(413, str(error))
    except (json_format.ParseError, ValueError, RecursionError):
        logger.warning("Refused a malformed %s request body from %s", name, request.remote)
        return _error(400, BAD_BODY)
    try:
        result = await transform(payloads.payloads)
    except PayloadDecryptionError as error:
        logger.warning("Could not %s payloads for %s: %s", name, request.remote, error)
        return _error(400, CANNOT_DECRYPT)
    except PayloadStorageError as error:
        logger.warning("Could not %s payloads for %s: %s", name, request.remote, error)
        return _storage_error(error)
    if name == "encode" and result:
        request[AUDIT].add_key_ids(_key_ids(result))
        key_id = result[0].metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        logger.info(
            "Encoded %d payload(s) with key id %s for %s (%r)", len(result), key_id, request.remote, request.path
        )
    return _JsonAnswer(result)


def _key_ids(payloads: Sequence[Payload]) -> Iterator[str]:
    """The key ids the payloads name (encrypted ones), as text."""
    for payload in payloads:
        key_id = payload.metadata.get(KEY_ID_METADATA)
        if key_id:
            yield key_id.decode(errors="replace")


def _storage_error(error: PayloadStorageError) -> web.Response:
    """A reference this server refuses (400), one over the fetch cap (413), or a blob it could not fetch (502)."""
    if isinstance(error, ReferenceRefusedError):
        return _error(400, f"refused a payload storage reference: {error.reason}")
    if isinstance(error, PayloadTooLargeError):
        return _error(413, f"a payload in payload storage is too large to show here: {error.reason}")
    return _error(
        502, f"a payload in payload storage could not be fetched: {error.reason}; the codec server's log says more"
    )


def _body_cap(limits: Limits) -> str:
    return f"request body over {limits.max_request_bytes} bytes; send fewer or smaller payloads per request"


def _parse(body: bytes, limits: Limits) -> Payloads:
    """The body as Payloads, or RequestTooLarge before any parsing when its JSON could hold too many values."""
    tokens = sum(body.count(punctuation) for punctuation in (b"{", b"[", b",", b":"))
    if tokens > limits.max_json_tokens:
        raise RequestTooLarge(
            f"more than {limits.max_payloads} payloads (or more JSON than {limits.max_payloads} payloads need) "
            "in one request; send fewer payloads per request"
        )
    payloads = json_format.Parse(body, Payloads())
    if len(payloads.payloads) > limits.max_payloads:
        raise RequestTooLarge(f"more than {limits.max_payloads} payloads in one request; send fewer per request")
    size = payloads.ByteSize()
    if size > limits.max_decoded_bytes:
        raise RequestTooLarge(
            f"{size} bytes of payloads after base64 decoding, over the {limits.max_decoded_bytes} one request may "
            "carry; send fewer or smaller payloads per request"
        )
    return payloads


def _to_json(payloads: list[Payload]) -> str:
    """Compact proto3 JSON: no indentation, no spaces (what `_JsonAnswer` writes, in one piece)."""
    return _compact(json_format.MessageToDict(Payloads(payloads=payloads)))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _JsonAnswer:
    """Payloads as compact proto3 JSON, the JSON `_to_json` makes (metadata in its map's order), in chunks.

    Each payload's `data` (nearly all of its size) is base64-encoded `ANSWER_CHUNK_BYTES` at a time as the
    answer is written; the JSON around it (metadata, external payloads) is made up front, so the length is
    known exactly before the first byte. Only the payloads' data is kept, not the payloads.
    """

    def __init__(self, payloads: Sequence[Payload]) -> None:
        # Per payload: the JSON before its data, the data, and the JSON after it. Proto3 JSON orders the
        # fields as declared: metadata, data, externalPayloads; an empty data is left out.
        self._parts: list[tuple[bytes, bytes, bytes]] = []
        for payload in payloads:
            fields = json_format.MessageToDict(
                Payload(metadata=payload.metadata, external_payloads=payload.external_payloads)
            )
            metadata = _compact({"metadata": fields.pop("metadata")})[1:-1] if "metadata" in fields else ""
            rest = _compact(fields)[1:-1]
            data = payload.data
            if not data:
                self._parts.append((("{" + ",".join(filter(None, [metadata, rest])) + "}").encode(), b"", b""))
                continue
            before = "{" + (metadata + "," if metadata else "") + '"data":"'
            self._parts.append((before.encode(), data, ('"' + ("," + rest if rest else "") + "}").encode()))
        self.response = web.StreamResponse(status=200)
        self.response.content_type = "application/json"
        self.response.charset = "utf-8"
        self.started = False
        """Whether the answer's first bytes (its headers) were sent: from then on it can only be dropped."""

    @property
    def length(self) -> int:
        """The answer's exact length in bytes."""
        if not self._parts:
            return 2  # {}
        inner = sum(len(before) + 4 * ((len(data) + 2) // 3) + len(after) for before, data, after in self._parts)
        return len(b'{"payloads":[]}') + inner + len(self._parts) - 1

    def chunks(self) -> Iterator[bytes]:
        """The answer, at most about `ANSWER_CHUNK_BYTES` * 4/3 bytes at a time (the JSON around data aside)."""
        if not self._parts:
            yield b"{}"
            return
        yield b'{"payloads":['
        for index, (before, data, after) in enumerate(self._parts):
            yield (b"," if index else b"") + before
            view = memoryview(data)
            for start in range(0, len(data), ANSWER_CHUNK_BYTES):
                yield base64.b64encode(view[start : start + ANSWER_CHUNK_BYTES])
            yield after
        yield b"]}"

    async def send(self, request: web.Request) -> web.StreamResponse:
        """Write the answer, waiting for the client to take each chunk; a client that goes away ends it quietly.
        Cancelled (the request's deadline, a stop), it aborts the connection so its buffers are freed at once."""
        response = self.response
        response.content_length = self.length
        try:
            self.started = True
            await response.prepare(request)
            for chunk in self.chunks():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            logger.info("The client of %r from %s went away before reading its answer", request.path, request.remote)
        except asyncio.CancelledError:
            if request.transport is not None:
                request.transport.abort()
            raise
        finally:
            self._parts = []  # the payloads' data is released with the request, whatever became of the answer
        return response


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def _serve(settings: config.Settings, stop: Stop) -> int:
    """Keys from Key Vault and the payload storage container (each as configured), then answer on
    CODEC_SERVER_HOST:PORT until SIGTERM or SIGINT (in start-up too)."""
    if not (settings.encryption.enabled or settings.payload_storage.enabled):
        raise StartupError(
            "Codec server: neither payload encryption nor payload storage is configured; set KEYVAULT_URL and "
            "KEYVAULT_SECRET_NAME, or PAYLOAD_STORAGE_ACCOUNT_URL (or PAYLOAD_STORAGE_CONNECTION_STRING)"
        )
    server = settings.codec_server
    tls = _tls_context(server)
    _warn_if_exposed(server)
    keys = await started_key_provider(settings.encryption, stop) if settings.encryption.enabled else None
    try:
        # The codec passes unencrypted payloads through, so histories from before encryption still show.
        codec = EncryptionCodec(keys, Plaintext.ACCEPT) if keys is not None else _Unencrypted()
        async with (
            started_payload_storage(settings.payload_storage, stop) as storage,
            _started_verifier(server.oidc) as verifier,
        ):
            driver = storage.driver if storage is not None else None
            runner = web.AppRunner(
                _application(server, codec, driver, verifier), shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS
            )
            await runner.setup()
            try:
                await _listen(runner, server.host, server.port, tls)
                await stop.wait()
            finally:
                await runner.cleanup()
    finally:
        if keys is not None:
            await keys.close()
    logger.info("Codec server stopped")
    return 0


@contextlib.asynccontextmanager
async def _started_verifier(oidc: config.OidcSettings | None) -> AsyncIterator[TokenVerifier | None]:
    """The token verifier with the issuer's keys read (StartupError when they cannot be), or None without an issuer."""
    if oidc is None:
        yield None
        return
    verifier = TokenVerifier(oidc)
    try:
        await verifier.start()
        yield verifier
    finally:
        await verifier.close()


class _Unencrypted(PayloadCodec):
    """The codec of a codec server without encryption (payload storage only): payloads pass as they are."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


def _application(
    server: config.CodecServerSettings,
    codec: PayloadCodec,
    storage: AzureBlobStorageDriver | None,
    verifier: TokenVerifier | None = None,
) -> web.Application:
    """The application as configured; it fetches at most one largest stored payload per request, 64 MiB at least."""
    limits = Limits()
    if storage is not None:
        limits = Limits(max_fetched_bytes=max(limits.max_fetched_bytes, storage.max_payload_bytes))
    return create_app(
        codec,
        server.cors_origins,
        server.token,
        encode=server.encode,
        encode_token=server.encode_token,
        limits=limits,
        storage=storage,
        verifier=verifier,
    )


async def _listen(runner: web.AppRunner, host: str, port: int, tls: ssl.SSLContext | None) -> None:
    try:
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
    except OSError as error:
        raise StartupError(
            f"Codec server cannot listen on {host}:{port}: {error.strerror or error}; "
            "set CODEC_SERVER_HOST and CODEC_SERVER_PORT to a free local address"
        ) from None
    logger.info("Codec server listening on %s", _url(host, port, tls is not None))


def _url(host: str, port: int, tls: bool) -> str:
    shown_host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown_host}:{port}"


def _tls_context(server: config.CodecServerSettings) -> ssl.SSLContext | None:
    """The TLS context from CODEC_SERVER_TLS_CERT_FILE and _KEY_FILE, or None to serve plain HTTP."""
    if not (server.tls_cert_file and server.tls_key_file):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # TLS 1.2 or later
    try:
        # A key protected by a passphrase fails here instead of prompting on a terminal nobody watches.
        context.load_cert_chain(server.tls_cert_file, server.tls_key_file, password=lambda: b"")
    except (ssl.SSLError, OSError) as error:
        raise StartupError(
            f"Codec server cannot use CODEC_SERVER_TLS_CERT_FILE {server.tls_cert_file} and "
            f"CODEC_SERVER_TLS_KEY_FILE {server.tls_key_file}: {error}. "
            "Give a PEM certificate (chain) and its unencrypted PEM private key"
        ) from None
    return context


def _warn_if_exposed(server: config.CodecServerSettings) -> None:
    """Anyone who reaches an open codec server can decrypt (or, with /encode, forge) payloads: say so."""
    if server.encode:
        guard = "CODEC_SERVER_ENCODE_TOKEN" if server.encode_token else "CODEC_SERVER_TOKEN" if server.token else None
        if server.oidc is not None:
            guard = " and ".join(filter(None, ["signed-in users with the write role", guard]))
        logger.info("Codec server serves /encode (CODEC_SERVER_ENCODE=true), guarded by %s", guard or "no token")
    try:
        loopback = ipaddress.ip_address(server.host).is_loopback
    except ValueError:
        loopback = server.host == "localhost"
    if loopback:
        return
    if not server.token and server.oidc is None:
        logger.warning(
            "Codec server on %s without CODEC_SERVER_TOKEN or CODEC_SERVER_OIDC_ISSUER: anyone who can reach it can "
            "decrypt payloads",
            server.host,
        )
    if server.encode and not server.encode_token and server.oidc is None:
        logger.warning(
            "Codec server on %s serves /encode without CODEC_SERVER_ENCODE_TOKEN: anyone who can call it can forge "
            "payloads that workers trust",
            server.host,
        )
    if not server.tls_cert_file:
        logger.warning(
            "Codec server on %s serves plain HTTP: tokens and decrypted payloads cross the network in clear "
            "unless TLS is terminated in front of it (else set CODEC_SERVER_TLS_CERT_FILE and _KEY_FILE)",
            server.host,
        )


def main() -> NoReturn:
    """`python codec_server.py`: exit 0 when stopped by a signal (in start-up too), 1 when it cannot start."""
    run_program("codec server", _serve)


if __name__ == "__main__":
    main()
