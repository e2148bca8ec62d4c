"""The fd channel: a Unix socket over which memfds travel (SCM_RIGHTS).

Framing (documented in docs/tensorcast-daemon.md): every message is one line
of UTF-8 JSON ending in ``\\n``, sent in one ``sendmsg``; a file descriptor,
when the message carries one, rides as SCM_RIGHTS ancillary data of that
same ``sendmsg``. Requests and replies alternate on a connection.

* ``{"op":"upload","size":N}`` + memfd  →  ``{"token":"..."}``
* ``{"op":"open","lease_id":"..."}``     →  ``{"size":N}`` + sealed memfd
* any failure                           →  ``{"error":"...","code":"NOT_FOUND"}``

The server side never reads a blob's bytes; it only moves descriptors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from tensorwasm_tc.tensorcast.daemon._listener import Listener
from tensorwasm_tc.tensorcast.errors import ArtifactError

log = logging.getLogger(__name__)

#: Longest request or reply line; JSON control messages are tiny.
MAX_LINE_BYTES: Final = 64 * 1024

#: (request, received fd or None) -> (reply, fd to send or None)
Handler = Callable[[dict[str, Any], int | None], tuple[dict[str, Any], int | None]]


def _recv_message(sock: socket.socket) -> tuple[dict[str, Any], int | None] | None:
    """One JSON line and at most one fd; None at end of stream."""
    buf = bytearray()
    fds: list[int] = []
    while not buf.endswith(b"\n"):
        data, got, _flags, _addr = socket.recv_fds(sock, MAX_LINE_BYTES, 4)
        fds.extend(got)
        if not data:
            for fd in fds:
                os.close(fd)
            if buf:
                raise ArtifactError("fd channel: truncated message", "UNAVAILABLE")
            return None
        buf += data
        if len(buf) > MAX_LINE_BYTES:
            for fd in fds:
                os.close(fd)
            raise ArtifactError("fd channel: message too long", "INVALID_ARGUMENT")
    for extra in fds[1:]:
        os.close(extra)
    try:
        msg = json.loads(buf)
    except ValueError as e:
        for fd in fds[:1]:
            os.close(fd)
        raise ArtifactError(f"fd channel: bad JSON: {e}", "INVALID_ARGUMENT") from e
    if not isinstance(msg, dict):
        for fd in fds[:1]:
            os.close(fd)
        raise ArtifactError("fd channel: a message is a JSON object", "INVALID_ARGUMENT")
    return msg, (fds[0] if fds else None)


def _send_message(sock: socket.socket, msg: dict[str, Any], fd: int | None = None) -> None:
    data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
    if fd is None:
        sock.sendall(data)
    else:
        socket.send_fds(sock, [data], [fd])


class FdChannelServer(Listener):
    """Accepts connections on a Unix socket; one thread per connection."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
        except OSError as e:
            sock.close()
            raise ArtifactError(
                f"cannot listen on {path}: {e.strerror}", "FAILED_PRECONDITION"
            ) from e
        os.chmod(path, 0o600)
        sock.listen(64)
        super().__init__(sock, "tc-fdchan")

    def serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    got = _recv_message(conn)
                except ArtifactError as e:
                    with contextlib.suppress(OSError):
                        _send_message(conn, {"error": e.message, "code": e.status_code})
                    return
                except OSError:
                    return
                if got is None:
                    return
                req, fd = got
                try:
                    reply, out_fd = self._handler(req, fd)
                except ArtifactError as e:
                    reply, out_fd = {"error": e.message, "code": e.status_code}, None
                except Exception as e:  # a handler bug must not kill the channel
                    log.exception("fd channel handler failed")
                    reply, out_fd = {"error": str(e), "code": "INTERNAL"}, None
                try:
                    _send_message(conn, reply, out_fd)
                except OSError:
                    return
                finally:
                    if out_fd is not None:
                        os.close(out_fd)

    def close(self) -> None:
        super().close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class FdChannelClient:
    """One connection to a daemon's fd channel; calls are serialized."""

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as e:
            self._sock.close()
            raise ArtifactError(f"fd channel {path}: {e}", "UNAVAILABLE") from e
        self._lock = threading.Lock()

    def call(self, req: dict[str, Any], fd: int | None = None) -> tuple[dict[str, Any], int | None]:
        with self._lock:
            try:
                _send_message(self._sock, req, fd)
                got = _recv_message(self._sock)
            except OSError as e:
                raise ArtifactError(f"fd channel: {e}", "UNAVAILABLE") from e
        if got is None:
            raise ArtifactError("fd channel closed by the daemon", "UNAVAILABLE")
        reply, out_fd = got
        if "error" in reply:
            if out_fd is not None:
                os.close(out_fd)
            raise ArtifactError(str(reply["error"]), str(reply.get("code", "UNKNOWN")))
        return reply, out_fd

    def upload(self, fd: int, size: int) -> str:
        reply, extra = self.call({"op": "upload", "size": size}, fd)
        if extra is not None:
            os.close(extra)
        return str(reply["token"])

    def open(self, lease_id: str) -> tuple[int, int]:
        """(fd, size) of a leased blob; the caller owns the fd."""
        reply, fd = self.call({"op": "open", "lease_id": lease_id})
        if fd is None:
            raise ArtifactError("fd channel: the daemon sent no descriptor", "INTERNAL")
        return fd, int(reply["size"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
