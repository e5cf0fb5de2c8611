"""Azurite, Microsoft's Azure Storage emulator (npm package `azurite`), as the tests' storage account.

    with Azurite(tmp_path) as azurite:            # blob service on a free 127.0.0.1 port, data in tmp_path
        azurite.connection_string                 # PAYLOAD_STORAGE_CONNECTION_STRING for it
        azurite.blob_names(), azurite.read(name), azurite.write(name, data)
        azurite.stop(); azurite.start()           # down and back on the same port, the data kept

    with Azurite(tmp_path, oauth=True) as azurite:    # HTTPS (a trustme CA) and bearer tokens checked
        azurite.account_url, azurite.ca_file      # PAYLOAD_STORAGE_ACCOUNT_URL and _CA_FILE for it
        storage_token()                           # a token its OAuth mode accepts (the stub az prints it)

The executable is $AZURITE_BLOB, else the one start.sh and .ci/run install (.azurite/node in the
repository, see scripts/azurite.sh), else `azurite-blob` on PATH; `AZURITE_MISSING` says how to get it,
for a skip. Telemetry is off, so the emulator contacts nothing. Azurite accepts the newest API version
the SDK speaks only with --skipApiVersionCheck. Its OAuth mode ("basic") checks a token's issuer,
audience and lifetime, not its signature.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Self

import trustme
from azure.storage.blob import BlobServiceClient, ContainerClient

from helpers.processes import REPO_DIR, free_port, terminate, wait_for_port

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key, published by Microsoft: not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "temporal-payloads"
TENANT_ID = "00000000-0000-0000-0000-000000000001"


def azurite_executable() -> str | None:
    candidates = [
        os.environ.get("AZURITE_BLOB", ""),
        str(REPO_DIR / ".azurite" / "node" / "node_modules" / ".bin" / "azurite-blob"),
        shutil.which("azurite-blob") or "",
    ]
    return next((candidate for candidate in candidates if candidate and os.access(candidate, os.X_OK)), None)


AZURITE_BLOB = azurite_executable()
AZURITE_MISSING = (
    "Azurite is not installed: run `bash .ci/run` once, or `source scripts/azurite.sh && ensure_azurite .azurite/node` "
    "(needs Node.js 18+ with npm), or set AZURITE_BLOB"
)


def storage_token(lifetime_seconds: int = 3600) -> str:
    """An unsigned JWT with what Azurite's OAuth mode checks: issuer, audience and lifetime (like Entra ID's)."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": f"https://sts.windows.net/{TENANT_ID}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + lifetime_seconds,
        "tid": TENANT_ID,
        "oid": "11111111-1111-1111-1111-111111111111",
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


class Azurite:
    """azurite-blob on a free loopback port, with its data in `directory`; the container is created at start."""

    def __init__(self, directory: Path, oauth: bool = False, container: str = CONTAINER) -> None:
        if AZURITE_BLOB is None:
            raise RuntimeError(AZURITE_MISSING)
        self.directory = directory / f"azurite-{free_port()}"
        self.directory.mkdir(parents=True)
        self.port = free_port()
        self.oauth = oauth
        self.container = container
        self.log = self.directory / "azurite.log"
        self.process: subprocess.Popen | None = None
        self.ca_file: str | None = None
        self._tls_files: tuple[str, str] | None = None
        if oauth:
            ca = trustme.CA()
            self.ca_file = str(self.directory / "ca.pem")
            ca.cert_pem.write_to_path(self.ca_file)
            issued = ca.issue_cert("127.0.0.1", "localhost")
            cert, key = self.directory / "cert.pem", self.directory / "key.pem"
            cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
            issued.private_key_pem.write_to_path(str(key))
            self._tls_files = (str(cert), str(key))

    def __enter__(self) -> Self:
        self.start()
        self.admin().get_container_client(self.container).create_container()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def blob_endpoint(self) -> str:
        scheme = "https" if self.oauth else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={'https' if self.oauth else 'http'};AccountName={ACCOUNT};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.blob_endpoint};"
        )

    @property
    def account_url(self) -> str:
        return self.blob_endpoint

    def start(self) -> None:
        arguments = [
            str(AZURITE_BLOB),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--location",
            str(self.directory / "data"),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ]
        if self._tls_files:
            arguments += ["--cert", self._tls_files[0], "--key", self._tls_files[1], "--oauth", "basic"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        terminate(self.process)

    def admin(self) -> BlobServiceClient:
        """A client with the account key, for the test's own look at the blobs."""
        return BlobServiceClient.from_connection_string(self.connection_string, connection_verify=self.ca_file or True)

    def container_client(self) -> ContainerClient:
        return self.admin().get_container_client(self.container)

    def blob_names(self) -> list[str]:
        return sorted(blob.name for blob in self.container_client().list_blobs())

    def read(self, name: str) -> bytes:
        return self.container_client().download_blob(name).readall()

    def write(self, name: str, data: bytes) -> None:
        self.container_client().upload_blob(name, data, overwrite=True)
