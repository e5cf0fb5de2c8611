"""A small OpenID Connect provider for tests: HTTPS discovery and JWKS on loopback, keys that rotate, and tokens.

    with OidcProvider(tmp_path) as provider:
        provider.issuer, provider.ca_file                     # CODEC_SERVER_OIDC_ISSUER, CODEC_SERVER_OIDC_CA_FILE
        token = provider.token(permissions=["default:read"])  # signed with the current key, for AUDIENCE
        provider.rotate()                                     # a new current key (the old one stays published)
        provider.jwks_reads                                   # how often the JWKS was served

It serves `<issuer>/.well-known/openid-configuration` (naming `issuer` and `jwks_uri`) and the JWKS at
`<issuer>/keys`, as Entra ID and other providers do, over HTTPS with a certificate from its own `trustme` CA
(`ca_file`). Its issuer has a path, like Entra's (`https://127.0.0.1:PORT/tenant/v2.0`).

What a hostile or broken provider does, for the codec server's limits: `jwks_delay_seconds` (answer late),
`jwks_padding_bytes` (a document that large; with `jwks_without_length` it comes without a
Content-Length, ending when the connection closes), `jwks_redirect_to` (answer 302 to another URL),
`discovery_overrides` (other values in the discovery document, e.g. an http `jwks_uri`).

`token()` signs claims with a key (RS256 by default; `rotate("ES256")` for an EC key): `iss`, `aud`, `sub`,
`iat`, `exp` and `nbf` come from its arguments, anything else is passed as claims. `forged()` builds the
tokens no library would sign: `alg: none`, HS256 keyed with the provider's public key.
It runs in a thread inside pytest; processes under test reach it like any provider.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

AUDIENCE = "api://temporal-codec-tests"
TENANT_PATH = "/tenant/v2.0"


@dataclass(frozen=True)
class SigningKey:
    """One key the provider signs with: its key id, algorithm and private key."""

    kid: str
    algorithm: str
    private_key: Any

    def public_jwk(self) -> dict[str, Any]:
        """The public key as the JWKS publishes it."""
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk = json.loads(algorithm.to_jwk(self.private_key.public_key()))
        return jwk | {"kid": self.kid, "use": "sig", "alg": self.algorithm}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_key(algorithm: str = "RS256") -> SigningKey:
    if algorithm.startswith(("RS", "PS")):
        private_key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[algorithm]
        private_key = ec.generate_private_key(curve)
    return SigningKey(f"key-{uuid.uuid4().hex[:12]}", algorithm, private_key)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcProvider:
    """An HTTPS OIDC provider on a free 127.0.0.1 port, serving one thread per connection."""

    def __init__(self, directory: Path, algorithm: str = "RS256") -> None:
        self._ca = trustme.CA()
        self.ca_file = str(directory / f"oidc-ca-{uuid.uuid4().hex[:8]}.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)
        self._lock = threading.Lock()
        self.keys: list[SigningKey] = [new_key(algorithm)]
        """Published keys, the current (signing) one last."""
        self.paths: list[str] = []
        self.jwks_delay_seconds = 0.0
        self.jwks_padding_bytes = 0
        self.jwks_without_length = False
        self.jwks_redirect_to: str | None = None
        self.discovery_overrides: dict[str, Any] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.provider = self  # type: ignore[attr-defined]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.origin = f"https://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = self.origin + TENANT_PATH
        self.jwks_uri = self.issuer + "/keys"
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    @property
    def current(self) -> SigningKey:
        with self._lock:
            return self.keys[-1]

    @property
    def jwks_reads(self) -> int:
        """How many times the JWKS was asked for."""
        with self._lock:
            return sum(1 for path in self.paths if path == TENANT_PATH + "/keys")

    def rotate(self, algorithm: str = "RS256", retire_old: bool = False) -> SigningKey:
        """A new current key; the old ones stay published unless `retire_old`."""
        key = new_key(algorithm)
        with self._lock:
            self.keys = ([] if retire_old else self.keys) + [key]
        return key

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [key.public_jwk() for key in self.keys]}

    def token(
        self,
        *,
        subject: str = "user-1",
        audience: str | list[str] = AUDIENCE,
        issuer: str | None = None,
        expires_in: float = 300,
        not_before_in: float | None = None,
        key: SigningKey | None = None,
        kid: str | None = None,
        header: dict[str, Any] | None = None,
        omit: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        """A token signed with `key` (the current one by default); `kid` names another key id in the header."""
        key = key or self.current
        now = time.time()
        payload = {
            "iss": issuer or self.issuer,
            "aud": audience,
            "sub": subject,
            "iat": int(now),
            "exp": int(now + expires_in),
            **({"nbf": int(now + not_before_in)} if not_before_in is not None else {}),
            **claims,
        }
        for name in omit:
            payload.pop(name, None)
        headers = {"kid": kid or key.kid, **(header or {})}
        return jwt.encode(payload, key.private_key, algorithm=key.algorithm, headers=headers)

    def forged(self, algorithm: str, secret: bytes | None = None, **claims: Any) -> str:
        """A token no library signs: `none` (empty signature) or an HMAC keyed with `secret` (say, the public key)."""
        now = int(time.time())
        header = {"alg": algorithm, "typ": "JWT", "kid": self.current.kid}
        payload = {"iss": self.issuer, "aud": AUDIENCE, "sub": "forger", "iat": now, "exp": now + 300, **claims}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        if algorithm == "none":
            return signing_input + "."
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[algorithm]
        assert secret is not None
        return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), digest).digest())


def flipped_signature(token: str) -> str:
    """The token with one byte of its signature changed."""
    signing_input, _, signature = token.rpartition(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return signing_input + "." + b64url(bytes(raw))


class _Handler(BaseHTTPRequestHandler):
    server_version = "OidcProvider/1.0"

    @property
    def provider(self) -> OidcProvider:
        return self.server.provider  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        provider = self.provider
        path = self.path.split("?", 1)[0]
        with provider._lock:  # noqa: SLF001
            provider.paths.append(path)
        if path == TENANT_PATH + "/.well-known/openid-configuration":
            document = {
                "issuer": provider.issuer,
                "jwks_uri": provider.jwks_uri,
                "authorization_endpoint": provider.issuer + "/authorize",
                "token_endpoint": provider.issuer + "/token",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            } | provider.discovery_overrides
            self._send(200, json.dumps(document).encode())
        elif path == TENANT_PATH + "/keys":
            if provider.jwks_redirect_to:
                self.send_response(302)
                self.send_header("Location", provider.jwks_redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if provider.jwks_delay_seconds:
                time.sleep(provider.jwks_delay_seconds)
            document = provider.jwks()
            if provider.jwks_padding_bytes:
                document["padding"] = "x" * provider.jwks_padding_bytes
            self._send(200, json.dumps(document).encode(), with_length=not provider.jwks_without_length)
        else:
            self._send(404, b'{"error": "not found"}')

    def _send(self, status: int, body: bytes, with_length: bool = True) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if with_length:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
        except (ConnectionError, OSError):
            pass  # the client gave up (a test of the time limit)
