"""Signed-in access to the codec server: OIDC bearer tokens, per-namespace roles, and the audit line.

With CODEC_SERVER_OIDC_ISSUER set, codec_server.py asks this module who is calling and what they may do:

    verifier = TokenVerifier(settings.codec_server.oidc)   # config.OidcSettings
    await verifier.start()           # discovery and the first key set; StartupError when the issuer cannot be read
    caller = await verifier.verify(token)   # a Caller, or Unauthorized (401) / KeysUnavailable (503)
    caller.may("read", namespace)    # decode needs read on the request's namespace, encode needs write
    await verifier.close()

Tokens. A token is a JWT signed by the issuer: its header names a key id (`kid`) and an algorithm, which must be
asymmetric (RS256/384/512, PS256/384/512, ES256/384/512; never `none` nor HS*, so a token "signed" with the
issuer's public key as an HMAC secret is refused before any key is looked at). The key comes from the issuer's
published JSON Web Key Set (JWKS) and must fit the algorithm (an RSA key for RS*/PS*, the curve for ES*).
PyJWT checks the signature, `exp` and `nbf` (with `LEEWAY_SECONDS` for clock skew; `exp` is required), `iss`
and `aud`; both are then compared again exactly here (`iss` equal to the issuer, `aud` equal to or, as a list,
containing the audience). A token longer than `MAX_TOKEN_BYTES` is refused unread. Why a token was refused
goes to the log as a fixed phrase ("expired", "wrong audience"), never with any of the token's bytes.

Keys. `start()` reads `<issuer>/.well-known/openid-configuration`, whose `issuer` must equal the configured
one, and the JWKS at its `jwks_uri`. The keys are kept; a token naming a key id not among them makes the
verifier read the JWKS again, at most once per `FetchLimits.min_refresh_seconds` (a burst of tokens with
made-up key ids costs one read per interval, all concurrent requests waiting for the same read), and the
keys are re-read anyway when older than `FetchLimits.max_age_seconds` (so a key the issuer withdrew stops
working). A failed re-read keeps the keys held. Every read is bounded (`FetchLimits`): https only (the
issuer, the `jwks_uri`), no redirect followed, `max_document_bytes` read at most, `timeout_seconds` in all,
at most `max_keys` keys used. CODEC_SERVER_OIDC_CA_FILE (tests only) is the CA the issuer's certificate is
checked against instead of the system's.

Access. `Caller.grants` are (namespace, role) pairs from one claim (CODEC_SERVER_OIDC_CLAIM):
  * claim format `temporal` (default claim `permissions`): each value is `<namespace>:<role>`, as Temporal's
    default JWT claim mapper reads it; `temporal-system:admin` (Temporal's system admin) grants admin on all.
  * claim format `mapped` (default claim `roles`, Entra app roles; or `groups`, an email claim...): each value
    is looked up in CODEC_SERVER_OIDC_ROLE_MAP, `VALUE=NAMESPACE:ROLE` entries, `*` for every namespace.
The claim may be one string or a list of strings. Roles are read < write < admin, each including those
before it. A request that names no namespace needs the role on every namespace (`*`).

Audit. `AuditRecord` is what one request did (who, namespace, endpoint, payloads, bytes, key ids, status);
`log_audit` writes it as one line of the `codec_server.audit` logger: `key=value` text, or JSON fields when
LOG_FORMAT=json (log_format.AUDIT_FIELDS). It never holds a payload or a token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

import config
from bootstrap import StartupError
from log_format import AUDIT_FIELDS, shown

# The asymmetric algorithms accepted, and the key each needs (kty, and the curve for EC).
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}
# Clock skew allowed on exp and nbf: a minute, what Entra ID and most libraries use.
LEEWAY_SECONDS = 60
# The longest token read: Entra access tokens are 1 to 3 kB (more with many groups); aiohttp refuses a header line
# over 8190 bytes before this is asked.
MAX_TOKEN_BYTES = 8 * 1024
# Temporal's system namespace: `temporal-system:admin` is Temporal's system admin, admin on every namespace.
TEMPORAL_SYSTEM_NAMESPACE = "temporal-system"
# The claims that name a person in the audit line, first found wins (Temporal Cloud's UI token carries the email
# under its own claim name).
NAME_CLAIMS = ("preferred_username", "name", "email", "upn", "https://saas-api.tmprl.cloud/user/email")
ROLE_RANK = {role: rank for rank, role in enumerate(config.CODEC_ROLES)}
# Key ids shown per audit line, at most.
MAX_AUDITED_KEY_IDS = 8

logger = logging.getLogger("codec_auth")
audit_logger = logging.getLogger("codec_server.audit")


@dataclass(frozen=True)
class FetchLimits:
    """What reading the issuer's discovery document and keys may cost, and how often it may happen."""

    max_document_bytes: int = 256 * 1024
    """Largest discovery document or JWKS read (Entra's are a few kB); more is refused."""
    timeout_seconds: float = 10.0
    """Each read, from connecting to the last byte."""
    max_keys: int = 64
    """Keys used from one JWKS (Entra publishes a handful); more are ignored."""
    min_refresh_seconds: float = 30.0
    """Least time between two reads of the JWKS for an unknown key id: a burst of made-up key ids costs one."""
    max_age_seconds: float = 3600.0
    """Keys older than this are re-read at the next token (rate-limited the same way), so withdrawn keys stop."""


class Unauthorized(Exception):
    """A token that does not verify (401); the message is a fixed phrase that never holds the token."""


class KeysUnavailable(Exception):
    """The issuer's keys could not be read and none are held (503)."""


class FetchError(Exception):
    """A discovery document or JWKS that could not be read within the limits; the message says why."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, and which roles on which namespaces they hold."""

    subject: str | None
    """The token's `sub`; None for the static token."""
    name: str | None = None
    """A readable name from the token (NAME_CLAIMS), when it has one."""
    grants: frozenset[tuple[str, str]] = frozenset()
    """(namespace or `*`, role) pairs."""
    method: str = "oidc"
    """How the caller proved who it is: oidc, token (CODEC_SERVER_TOKEN or _ENCODE_TOKEN), none (no check)."""

    def may(self, role: str, namespace: str | None) -> bool:
        """Whether a grant gives `role` (or a stronger one) on `namespace`; no namespace needs it on `*`."""
        needed = ROLE_RANK[role]
        return any(
            ROLE_RANK.get(granted, -1) >= needed
            and (granted_namespace == config.ALL_NAMESPACES or granted_namespace == namespace)
            for granted_namespace, granted in self.grants
        )


def grants_from_claims(claims: Mapping[str, Any], settings: config.OidcSettings) -> frozenset[tuple[str, str]]:
    """The (namespace, role) pairs a verified token's claim grants under the configured format."""
    values = _claim_values(claims.get(settings.claim))
    grants: set[tuple[str, str]] = set()
    if settings.claim_format == "temporal":
        for value in values:
            namespace, colon, role = value.rpartition(":")
            role = role.strip().lower()
            if not colon or not namespace or role not in ROLE_RANK:
                continue
            if namespace == TEMPORAL_SYSTEM_NAMESPACE and role == "admin":
                grants.add((config.ALL_NAMESPACES, "admin"))
            elif namespace != config.ALL_NAMESPACES:  # a `*` in a token is a namespace name, not a wildcard
                grants.add((namespace, role))
        return frozenset(grants)
    given = set(values)
    return frozenset((namespace, role) for value, namespace, role in settings.role_map if value in given)


def _claim_values(raw: Any) -> list[str]:
    """A claim's text values: one string, or the strings of a list; anything else holds none."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        return [value for value in raw if isinstance(value, str)]
    return []


def readable_name(claims: Mapping[str, Any]) -> str | None:
    for claim in NAME_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    return None


class TokenVerifier:
    """Verifies bearer JWTs against the issuer's published keys (see the module docstring)."""

    def __init__(self, settings: config.OidcSettings, limits: FetchLimits = FetchLimits()) -> None:
        self.settings = settings
        self.limits = limits
        self._keys: dict[str, jwt.PyJWK] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None
        self._last_attempt = -float("inf")
        self._refreshing = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.jwks_reads = 0
        """How many times the JWKS was read (tests and the benchmark count them)."""

    async def start(self) -> None:
        """Read the discovery document and the keys; StartupError naming the issuer when that fails."""
        try:
            await self._refresh(force=True)
        except FetchError as error:
            raise StartupError(
                f"Codec server cannot read the signing keys of CODEC_SERVER_OIDC_ISSUER {self.settings.issuer}: "
                f"{error}. Check the issuer URL (it must be exactly the tokens' iss) and the network path to it"
            ) from None
        logger.info(
            "Codec server accepts tokens of %s for audience %s (%d signing keys)",
            self.settings.issuer,
            self.settings.audience,
            len(self._keys),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify(self, token: str) -> Caller:
        """The caller a valid token names; Unauthorized with a fixed reason otherwise, KeysUnavailable (503)
        when no keys could be read at all."""
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized(f"token longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("malformed token") from None
        algorithm, key_id = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise Unauthorized("algorithm not accepted (only RS*, PS*, ES*)")
        if not isinstance(key_id, str) or not key_id:
            raise Unauthorized("token names no key id")
        key = await self._key(key_id)
        if key is None:
            raise Unauthorized("unknown key id")
        if not _fits(key, algorithm):
            raise Unauthorized("key does not fit the token's algorithm")
        claims = self._decode(token, key, algorithm)
        return Caller(
            subject=claims.get("sub") if isinstance(claims.get("sub"), str) else None,
            name=readable_name(claims),
            grants=grants_from_claims(claims, self.settings),
        )

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        settings = self.settings
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("not yet valid") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("bad signature") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthorized(f"missing claim {error.claim}") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("invalid token") from None
        # Exactly, again: the library's checks are the first line, these the second.
        audience = claims.get("aud")
        if claims.get("iss") != settings.issuer:
            raise Unauthorized("wrong issuer")
        if not (audience == settings.audience or (isinstance(audience, list) and settings.audience in audience)):
            raise Unauthorized("wrong audience")
        return claims

    async def _key(self, key_id: str) -> jwt.PyJWK | None:
        key = self._keys.get(key_id)
        stale = self._fetched_at is None or time.monotonic() - self._fetched_at > self.limits.max_age_seconds
        if key is not None and not stale:
            return key
        try:
            await self._refresh()
        except FetchError as error:
            logger.warning(
                "Could not re-read the signing keys of %s: %s; keeping the keys held", self.settings.issuer, error
            )
        if not self._keys:
            raise KeysUnavailable(f"the signing keys of {self.settings.issuer} could not be read")
        return self._keys.get(key_id)

    async def _refresh(self, force: bool = False) -> None:
        """Read the keys again unless they were read (or tried) less than min_refresh_seconds ago; concurrent
        callers wait for one read."""
        async with self._refreshing:
            now = time.monotonic()
            if not force and now - self._last_attempt < self.limits.min_refresh_seconds:
                return
            self._last_attempt = now
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            self.jwks_reads += 1
            keys = self._usable_keys(await self._fetch_json(self._jwks_uri, "JWKS"))
            if not keys:
                raise FetchError(f"the JWKS at {self._jwks_uri} holds no usable signing key (RSA or EC)")
            self._keys = keys
            self._fetched_at = time.monotonic()

    async def _discover(self) -> str:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._fetch_json(url, "discovery document")
        if document.get("issuer") != self.settings.issuer:
            raise FetchError(
                f"the discovery document at {url} names issuer {shown(str(document.get('issuer')))}, not "
                f"{self.settings.issuer!r}; set CODEC_SERVER_OIDC_ISSUER to exactly the issuer it names"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise FetchError(f"the discovery document at {url} names no https jwks_uri")
        return jwks_uri

    def _usable_keys(self, document: dict[str, Any]) -> dict[str, jwt.PyJWK]:
        """The signing keys of a JWKS: RSA and EC keys with a key id, at most max_keys; others are skipped."""
        keys: dict[str, jwt.PyJWK] = {}
        found = document.get("keys")
        for entry in found if isinstance(found, list) else []:
            if len(keys) >= self.limits.max_keys:
                break
            if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC") or entry.get("use", "sig") != "sig":
                continue
            key_id = entry.get("kid")
            if not isinstance(key_id, str) or not key_id:
                continue
            try:
                keys[key_id] = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
        return keys

    async def _fetch_json(self, url: str, what: str) -> dict[str, Any]:
        """GET an https URL's JSON object within FetchLimits; FetchError saying why not."""
        if not url.startswith("https://"):
            raise FetchError(f"the {what} URL {url} is not https")
        limits = self.limits
        try:
            async with asyncio.timeout(limits.timeout_seconds):
                async with self._client().get(url, allow_redirects=False) as response:
                    if response.status != 200:
                        raise FetchError(
                            f"the {what} at {url} answered HTTP {response.status} (redirects are not followed)"
                        )
                    if (response.content_length or 0) > limits.max_document_bytes:
                        raise FetchError(f"the {what} at {url} is over {limits.max_document_bytes} bytes")
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        body += chunk
                        if len(body) > limits.max_document_bytes:
                            raise FetchError(f"the {what} at {url} is over {limits.max_document_bytes} bytes")
        except TimeoutError:
            raise FetchError(f"the {what} at {url} was not read within {limits.timeout_seconds:g}s") from None
        except aiohttp.ClientError as error:
            raise FetchError(f"cannot read the {what} at {url}: {type(error).__name__}: {error}") from None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise FetchError(f"the {what} at {url} is not JSON") from None
        if not isinstance(document, dict):
            raise FetchError(f"the {what} at {url} is not a JSON object")
        return document

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            context = ssl.create_default_context(cafile=self.settings.ca_file)  # the system's CAs when None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=2),
                trust_env=False,  # no proxy from the environment: the issuer is reached directly
            )
        return self._session


def _fits(key: jwt.PyJWK, algorithm: str) -> bool:
    """Whether a published key may check a token of `algorithm`: its type (and curve), and its own `alg` if it
    names one."""
    kty, curve = ALGORITHMS[algorithm]
    data = key._jwk_data  # noqa: SLF001  (PyJWK keeps the JWK as published)
    if data.get("kty") != kty or (curve is not None and data.get("crv") != curve):
        return False
    return data.get("alg") in (None, algorithm)


@dataclass
class AuditRecord:
    """What one /decode or /encode request did, for its audit line; never a payload or a token."""

    endpoint: str
    path: str
    remote: str | None
    namespace: str | None = None
    method: str = "none"
    """How the caller was identified: oidc, token, none."""
    subject: str | None = None
    name: str | None = None
    payloads: int = 0
    bytes: int = 0
    """Payload bytes of the request after base64 decoding."""
    key_ids: list[str] = field(default_factory=list)
    status: int | None = None
    reason: str | None = None
    """Why it was refused, a fixed phrase (401/403), or what became of the answer (dropped)."""

    def add_key_ids(self, key_ids: Iterable[str]) -> None:
        for key_id in key_ids:
            if key_id not in self.key_ids and len(self.key_ids) < MAX_AUDITED_KEY_IDS:
                self.key_ids.append(key_id[:64])

    def fields(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "namespace": self.namespace,
            "auth": self.method,
            "subject": self.subject,
            "user": self.name,
            "payloads": self.payloads,
            "bytes": self.bytes,
            "key_ids": list(self.key_ids),
            "status": self.status,
            "reason": self.reason,
            "remote": self.remote,
            "path": self.path,
        }


def log_audit(record: AuditRecord) -> None:
    """The request's one audit line: `key=value` pairs (values quoted, so none can forge a line), and the same
    as JSON fields when LOG_FORMAT=json."""
    fields = {name: value for name, value in record.fields().items() if name in AUDIT_FIELDS}
    text = " ".join(f"{name}={_shown_value(value)}" for name, value in fields.items() if value not in (None, []))
    audit_logger.info("Codec request %s", text, extra={"audit": fields})


def _shown_value(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return ",".join(shown(item) for item in value)
    return shown(str(value))
