"""A Temporal that enforces credentials, as Temporal Cloud does: a gRPC proxy in front of the dev server.

    with AuthProxy(dev_server.address, tmp_path, api_keys={"key-1"}) as proxy:
        # TEMPORAL_ADDRESS=proxy.address, TEMPORAL_TLS_SERVER_CA_CERT_PATH=proxy.ca_file
        proxy.accept_only(api_keys={"key-2"})              # the old key is refused from now on
        probe(proxy, api_key="key-1")                       # -> grpc.StatusCode.UNAUTHENTICATED

It serves TLS on a free 127.0.0.1 port (a `trustme` CA, `ca_file`) and accepts a call only when its
credentials are the current ones: with `api_keys`, the `authorization: Bearer <key>` header must hold
one of them; with `client_ca`, the client must present a certificate that CA signed (mutual TLS) whose
common name is one of `common_names`. Anything else gets UNAUTHENTICATED, as Temporal Cloud answers.
An accepted call is forwarded to the dev server unchanged: the method, the request bytes and the
metadata, and the answer comes back unchanged (an error with its status, details and trailing metadata,
where Temporal puts its error details). Temporal's RPCs are unary (long polls included), so a generic
bytes passthrough of unary calls is the whole proxy.

Every call is recorded (`calls`): when it came, its method, the credential it carried and whether it was
accepted, so tests can see which key or certificate each call used and that none was refused.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import grpc
import trustme

GET_SYSTEM_INFO = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo"
# Headers that belong to one HTTP/2 hop; gRPC sets them again on the forwarded call.
_HOP_HEADERS = frozenset({"user-agent", "content-type", "te", "grpc-timeout", "grpc-accept-encoding", "grpc-encoding"})


@dataclass(frozen=True)
class Call:
    """One call the proxy answered."""

    at: float
    """When it arrived (time.monotonic)."""
    method: str
    credential: str | None
    """The API key it carried (API key mode) or its client certificate's common name (mTLS mode)."""
    accepted: bool


class AuthProxy:
    """A TLS gRPC proxy that forwards only calls with the current credentials to `upstream`."""

    def __init__(
        self,
        upstream: str,
        directory: Path,
        api_keys: Iterable[str] = (),
        client_ca: trustme.CA | None = None,
        common_names: Iterable[str] = (),
    ) -> None:
        self.upstream = upstream
        self._ca = trustme.CA()
        self.ca_file = str(directory / "auth-proxy-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)
        self._client_ca = client_ca
        self._api_keys = frozenset(api_keys)
        self._common_names = frozenset(common_names)
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="auth-proxy", daemon=True)
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def accept_only(self, api_keys: Iterable[str] = (), common_names: Iterable[str] = ()) -> None:
        """From now on accept only these credentials (calls in flight go on: their check was at their start)."""
        with self._lock:
            self._api_keys = frozenset(api_keys)
            self._common_names = frozenset(common_names)

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def first_call_with(self, credential: str) -> Call | None:
        return next((call for call in self.calls if call.credential == credential), None)

    async def _start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.upstream)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((_Forwarder(self),))
        server_certificate = self._ca.issue_cert("127.0.0.1", "localhost")
        credentials = grpc.ssl_server_credentials(
            [
                (
                    server_certificate.private_key_pem.bytes(),
                    b"".join(pem.bytes() for pem in server_certificate.cert_chain_pems),
                )
            ],
            root_certificates=self._client_ca.cert_pem.bytes() if self._client_ca else None,
            require_client_auth=self._client_ca is not None,
        )
        self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        await self._server.start()

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0)
        if self._channel is not None:
            await self._channel.close()

    def _check(self, method: str, context: grpc.aio.ServicerContext) -> bool:
        """Whether the call carries the current credentials; recorded either way."""
        with self._lock:
            if self._client_ca is not None:
                names = context.auth_context().get("x509_common_name", [])
                credential = names[0].decode() if names else None
                accepted = credential in self._common_names
            else:
                header = dict(context.invocation_metadata()).get("authorization", "")
                credential = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
                accepted = credential in self._api_keys
            self._calls.append(Call(time.monotonic(), method, credential, accepted))
        return accepted

    async def forward(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if not self._check(method, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Request unauthorized.")
        assert self._channel is not None
        metadata = [
            (key, value)
            for key, value in context.invocation_metadata()
            if not key.startswith(":") and key not in _HOP_HEADERS
        ]
        try:
            return await self._channel.unary_unary(method)(request, metadata=metadata, timeout=context.time_remaining())
        except grpc.aio.AioRpcError as error:
            await context.abort(error.code(), error.details() or "", tuple(error.trailing_metadata() or ()))
            raise  # abort raises; never reached


class _Forwarder(grpc.GenericRpcHandler):
    """Every method, as raw bytes (no serializers), to the proxy's forward."""

    def __init__(self, proxy: AuthProxy) -> None:
        self._proxy = proxy

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._proxy.forward(method, request, context)

        return grpc.unary_unary_rpc_method_handler(forward)


def probe(proxy: AuthProxy, api_key: str | None = None, certificate: trustme.LeafCert | None = None) -> grpc.StatusCode:
    """The status of one GetSystemInfo call through the proxy with these credentials."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(proxy.ca_file).read_bytes(),
        private_key=certificate.private_key_pem.bytes() if certificate else None,
        certificate_chain=b"".join(pem.bytes() for pem in certificate.cert_chain_pems) if certificate else None,
    )
    metadata = [("authorization", f"Bearer {api_key}")] if api_key is not None else []
    with grpc.secure_channel(proxy.address, credentials) as channel:
        try:
            channel.unary_unary(GET_SYSTEM_INFO)(b"", metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK
