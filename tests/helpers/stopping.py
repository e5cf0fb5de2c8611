"""Servers that make our programs wait, and how to measure that they stop anyway.

`SilentServer` accepts TCP connections on a free loopback port and never sends a byte: as
TEMPORAL_ADDRESS the connection never completes, as KEYVAULT_URL the TLS handshake never does.
`FirstCallOnlyProxy` stands in front of the dev server and passes each connection's first gRPC call
(the SDK's GetSystemInfo when it connects) but holds every later one, so a client connects and then
waits forever: for the worker's namespace check, for a workflow start.

`stop_and_time(program, signal)` sends the signal and returns the exit status and the seconds to
exit; `processes_in_session(session)` lists what a program left running (AppProcess starts each
program as a session leader, so everything it started shares its session id).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Self

from helpers.processes import AppProcess

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_BYTES = 9
CONNECTION_STREAM = 0  # SETTINGS, PING, WINDOW_UPDATE, GOAWAY
FIRST_CALL_STREAM = 1  # client streams are odd and increasing: 1 is the first call


def stop_and_time(program: AppProcess, signal_number: int, timeout: float = 60) -> tuple[int, float]:
    """Send a signal; the exit status and how many seconds the program took to exit."""
    started = time.monotonic()
    program.signal(signal_number)
    code = program.process.wait(timeout=timeout)
    elapsed = time.monotonic() - started
    program.wait()  # collect the last output lines
    return code, elapsed


def processes_in_session(session: int) -> list[str]:
    """The command lines of the processes still running in a session."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp session ...
            if int(fields[3]) == session and fields[0] != "Z":
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
    return found


class _Listener:
    """A listening socket on a free 127.0.0.1 port, served by one thread per connection until closed."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        self._socket.close()
        for connection in connections:
            _close(connection)

    def _keep(self, connection: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._connections.append(connection)
            return True

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed
                return
            if not self._keep(connection):
                _close(connection)
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        raise NotImplementedError


class SilentServer(_Listener):
    """Accepts every connection and never answers (until closed)."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def _serve(self, connection: socket.socket) -> None:
        """Hold the connection open, reading and discarding what the client sends."""
        try:
            while connection.recv(65536):
                pass
        except OSError:
            pass


class FirstCallOnlyProxy(_Listener):
    """A gRPC (HTTP/2 without TLS) proxy to `upstream` that lets only each connection's first call through.

    Everything the server sends is passed on; of what the client sends, the connection preface,
    the connection-level frames (stream 0) and the frames of stream 1 are passed, every other
    stream's frames are held back for good. The call on stream 1 is the SDK's GetSystemInfo when
    it connects, so connecting works and every later call waits.
    """

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        super().__init__()

    def _serve(self, connection: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._upstream)
        except OSError:
            _close(connection)
            return
        if not self._keep(upstream):
            _close(upstream)
            return
        threading.Thread(target=_copy, args=(upstream, connection), daemon=True).start()
        try:
            if _read_exactly(connection, len(HTTP2_PREFACE)) != HTTP2_PREFACE:
                return
            upstream.sendall(HTTP2_PREFACE)
            while True:
                header = _read_exactly(connection, FRAME_HEADER_BYTES)
                payload = _read_exactly(connection, int.from_bytes(header[:3], "big"))
                stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                if stream in (CONNECTION_STREAM, FIRST_CALL_STREAM):
                    upstream.sendall(header + payload)
        except OSError:
            pass
        finally:
            _close(connection)
            _close(upstream)


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the peer closed the connection")
        data += chunk
    return data


def _copy(source: socket.socket, destination: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            destination.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(source)
        _close(destination)


def _close(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()
