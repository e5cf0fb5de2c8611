"""A small HTTPS Key Vault that speaks enough of the real REST protocol for `azure-keyvault-secrets`.

Tests point the real SDK (and so our `keyvault.py`) at it through configuration only:
`KEYVAULT_URL=vault.url`, `KEYVAULT_CA_FILE=vault.ca_file` (a `trustme` CA that signed the
server's certificate) and `KEYVAULT_VERIFY_CHALLENGE_RESOURCE=false` (the SDK otherwise insists
that the challenge's resource domain matches the vault's host, which 127.0.0.1 never does).

The protocol, as Key Vault speaks it:
  * a request without a bearer token gets 401 with the challenge
    `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"`;
    the SDK then asks its credential for a token and repeats the request with `Authorization: Bearer <token>`;
  * `GET /secrets/{name}/` (or without the slash) is the current version, `GET /secrets/{name}/{version}` a given one;
    both answer `{"value", "id": "https://HOST/secrets/NAME/VERSION", "attributes"}`, unknown ones 404 with Key Vault's
    error JSON.

`add_version(value)` is a rotation: it returns the new version, which becomes current (`content_type` is
what a Key Vault certificate's secret carries: application/x-pem-file or application/x-pkcs12);
`delete(name)` removes a secret with all its versions. Every request is recorded so tests can count how
often each version was fetched. `unavailable = True` answers 503 (`fail_next = n`: the next n requests);
`rejected_status = 401 or 403` refuses the token; `stop()` closes the port.

It is also the Entra ID token endpoint of AKS workload identity (`POST /<tenant>/oauth2/v2.0/token`, the
client credentials grant with the projected service account token as client assertion), which keyvault.py's
lean reader asks: `workload_identity_environment(vault, directory)` is a pod's environment pointing at it
(AZURE_AUTHORITY_HOST = the vault's address, the token file written with `vault.federated_token`). Each exchange
is recorded in `vault.token_requests` (the form as sent); `identity_refused = True` answers Entra's 400
`invalid_client`; a wrong client id, tenant, assertion, scope or grant is refused the same way.

`azure_cli_environment()` is the environment that makes `DefaultAzureCredential` use only the stub `az`
(tests/helpers/stubs, which prints `STUB_AZ_ACCESS_TOKEN`), so no test ever probes the managed-identity
endpoint. `forbid_non_loopback_connections()` proves it: an audit hook refuses any other address.

It runs in a thread inside pytest (`with FakeKeyVault(tmp_path) as vault:`); processes under test
reach it over HTTPS like any vault.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl, urlsplit

import trustme

TENANT_ID = "00000000-0000-0000-0000-000000000001"
ACCESS_TOKEN = "fake-keyvault-access-token"
WORKLOAD_CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", resource="https://vault.azure.net"'
# A PATH directory holding only the stub `az` (links to stubs/az and the stub.py it runs): the stub docker and
# kubectl of the deploy tests never stand in front of the real ones here.
AZURE_CLI_STUB_DIR = Path(__file__).resolve().parent / "stubs" / "azure-cli"

# Variables that would send DefaultAzureCredential to a real identity endpoint, or the SDK through a proxy.
_IDENTITY_AND_PROXY_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the vault answered: which secret and version (None = current), with what status,
    and which version it served (None when it served none)."""

    method: str
    path: str
    secret_name: str | None
    version: str | None
    status: int
    served_version: str | None = None


@functools.cache
def _ca_and_certificate() -> tuple[trustme.CA, trustme.LeafCert]:
    """One test CA and server certificate per process: making keys is most of a vault's start-up time."""
    ca = trustme.CA()
    return ca, ca.issue_cert("127.0.0.1", "localhost")


class FakeKeyVault:
    """An HTTPS Key Vault on a free 127.0.0.1 port, serving one thread per connection."""

    def __init__(self, directory: Path) -> None:
        self._ca, self._certificate = _ca_and_certificate()
        self.ca_file = str(directory / "fake-keyvault-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)
        self._secrets: dict[
            str, list[tuple[str, str, str | None]]
        ] = {}  # name -> [(version, value, type)], newest last
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self.unavailable = False
        self.rejected_status: int | None = None
        self.identity_refused = False
        self.fail_next = 0
        """How many of the next secret requests (with or without a token) answer 503: a passing outage."""
        self.federated_token = f"eyJhbGciOiJSUzI1NiJ9.{uuid.uuid4().hex}.{uuid.uuid4().hex}"
        self.token_requests: list[dict[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.vault = self  # type: ignore[attr-defined]
        self._server.socket = self._tls_context().wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for the loop's next look: 0.5 s by default
            name="fake-keyvault",
            daemon=True,
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close the port: from now on connections are refused."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def add_version(
        self, secret_name: str, value: str, version: str | None = None, content_type: str | None = None
    ) -> str:
        """Store a new version of the secret (a rotation: it becomes current) and return its version."""
        version = version or uuid.uuid4().hex
        with self._lock:
            self._secrets.setdefault(secret_name, []).append((version, value, content_type))
        return version

    def delete(self, secret_name: str) -> None:
        """Delete the secret and every version of it: from now on it is not found."""
        with self._lock:
            del self._secrets[secret_name]

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def fetches(self, version: str | None) -> int:
        """How many times a version (None = the current one) was served successfully."""
        return sum(1 for request in self.requests if request.version == version and request.status == 200)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._certificate.configure_cert(context)
        return context

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _lookup(self, secret_name: str, version: str | None) -> tuple[str, str, str | None] | None:
        with self._lock:
            versions = self._secrets.get(secret_name, [])
            if version is None:
                return versions[-1] if versions else None
            return next((entry for entry in versions if entry[0] == version), None)


class _Handler(BaseHTTPRequestHandler):
    """Answers one request the way Key Vault does."""

    server_version = "FakeKeyVault/1.0"

    @property
    def vault(self) -> FakeKeyVault:
        return self.server.vault  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        """Entra ID's token endpoint, for the workload identity's client credentials grant."""
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(min(length, 65536)).decode()))
        vault = self.vault
        with vault._lock:
            vault.token_requests.append(form)
        path = urlsplit(self.path).path
        expected = {
            "client_id": WORKLOAD_CLIENT_ID,
            "scope": "https://vault.azure.net/.default",
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": vault.federated_token,
        }
        if vault.identity_refused or path != f"/{TENANT_ID}/oauth2/v2.0/token" or form != expected:
            status, body = (
                400,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS700213: No matching federated identity record found for presented "
                    "assertion subject.\r\nTrace ID: 0000 Correlation ID: 0000 Timestamp: 2026-12-04 00:00:00Z",
                    "error_codes": [700213],
                },
            )
        else:
            status, body = 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": ACCESS_TOKEN}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        parts = [part for part in path.split("/") if part]
        if len(parts) not in (2, 3) or parts[0] != "secrets":
            self._answer(path, None, None, 404, _error("NotFound", f"{path} is not a Key Vault secrets path"))
            return
        secret_name = parts[1]
        version = parts[2] if len(parts) == 3 else None
        self._answer(path, secret_name, version, *self._secret_response(secret_name, version))

    def _secret_response(self, secret_name: str, version: str | None) -> tuple[int, dict, dict[str, str]]:
        vault = self.vault
        with vault._lock:
            passing_outage, vault.fail_next = vault.fail_next > 0, max(vault.fail_next - 1, 0)
        if vault.unavailable or passing_outage:
            return 503, _error("ServiceUnavailable", "The vault is unavailable."), {}
        if self.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return (
                401,
                _error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."),
                {"WWW-Authenticate": CHALLENGE},
            )
        if vault.rejected_status == 401:
            return 401, _error("Unauthorized", "AKV10032: Invalid issuer."), {"WWW-Authenticate": CHALLENGE}
        if vault.rejected_status == 403:
            return 403, _error("Forbidden", "Caller is not authorized to perform action on resource."), {}
        found = vault._lookup(secret_name, version)
        if found is None:
            shown = f"{secret_name}/{version}" if version else secret_name
            return (
                404,
                _error("SecretNotFound", f"A secret with (name/id) {shown} was not found in this key vault."),
                {},
            )
        found_version, value, content_type = found
        host = self.headers.get("Host", "127.0.0.1")
        now = int(time.time())
        body = {
            "value": value,
            "id": f"https://{host}/secrets/{secret_name}/{found_version}",
            "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable"},
            "tags": {},
        }
        if content_type:
            body["contentType"] = content_type
        return 200, body, {}

    def _answer(
        self,
        path: str,
        secret_name: str | None,
        version: str | None,
        status: int,
        body: dict,
        headers: dict[str, str] | None = None,
    ) -> None:
        served_version = body["id"].rsplit("/", 1)[-1] if status == 200 else None
        self.vault._record(RecordedRequest("GET", path, secret_name, version, status, served_version))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read `vault.requests` instead."""


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def azure_cli_environment(base: dict[str, str] | None = None, access_token: str = ACCESS_TOKEN) -> dict[str, str]:
    """An environment in which DefaultAzureCredential uses only the stub `az`, which prints `access_token`.

    `AZURE_TOKEN_CREDENTIALS=AzureCliCredential` is azure-identity's own switch to a single credential,
    so neither the managed-identity endpoint nor any other identity service is ever asked.
    """
    environment = dict(os.environ if base is None else base)
    for name in _IDENTITY_AND_PROXY_VARIABLES:
        environment.pop(name, None)
    environment["PATH"] = f"{AZURE_CLI_STUB_DIR}{os.pathsep}{environment.get('PATH', '')}"
    environment["AZURE_TOKEN_CREDENTIALS"] = "AzureCliCredential"
    environment["STUB_PYTHON"] = sys.executable  # what the stub's `#!/bin/sh` wrapper runs stub.py with
    environment["STUB_AZ_ACCESS_TOKEN"] = access_token
    environment["NO_PROXY"] = "127.0.0.1,localhost"
    return environment


def workload_identity_environment(
    vault: FakeKeyVault, directory: Path, base: dict[str, str] | None = None
) -> dict[str, str]:
    """A pod's environment under AKS workload identity whose Entra ID is this vault: keyvault.py reads the vault
    with its lean reader. No `az` is on PATH, so the Azure SDK would find no identity."""
    environment = dict(os.environ if base is None else base)
    for name in (*_IDENTITY_AND_PROXY_VARIABLES, "AZURE_TOKEN_CREDENTIALS"):
        environment.pop(name, None)
    token_file = directory / "azure-identity-token"
    token_file.write_text(vault.federated_token)
    environment |= {
        "AZURE_CLIENT_ID": WORKLOAD_CLIENT_ID,
        "AZURE_TENANT_ID": TENANT_ID,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_AUTHORITY_HOST": vault.url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return environment


def keyvault_environment(vault: FakeKeyVault, secret_name: str) -> dict[str, str]:
    """The configuration variables that point our code at this vault."""
    return {
        "KEYVAULT_URL": vault.url,
        "KEYVAULT_SECRET_NAME": secret_name,
        "KEYVAULT_CA_FILE": vault.ca_file,
        "KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false",
    }


# --- Proof that only loopback addresses are contacted -------------------------------------------

_refused_addresses: list[str] = []
_loopback_only = threading.Event()
_hook_installed = False


def _refuse_non_loopback(event: str, args: tuple) -> None:
    if event != "socket.connect" or not _loopback_only.is_set():
        return
    address = args[1]
    if not isinstance(address, tuple):  # Unix sockets
        return
    host = str(address[0])
    try:
        is_loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        is_loopback = host == "localhost"
    if not is_loopback:
        _refused_addresses.append(host)
        raise PermissionError(f"tests may only connect to loopback addresses, not {host}")


@contextlib.contextmanager
def forbid_non_loopback_connections() -> Iterator[list[str]]:
    """Within the block, connecting to a non-loopback address raises; yields the addresses refused."""
    global _hook_installed
    if not _hook_installed:  # audit hooks cannot be removed, so one hook is armed and disarmed
        sys.addaudithook(_refuse_non_loopback)
        _hook_installed = True
    del _refused_addresses[:]
    _loopback_only.set()
    try:
        yield _refused_addresses
    finally:
        _loopback_only.clear()
