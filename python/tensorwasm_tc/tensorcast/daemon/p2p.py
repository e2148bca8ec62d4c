"""The P2P data plane: daemons pull artifact byte ranges from each other.

Wire format (one TCP connection per stream, one request per connection):

* request: one JSON line ``{"artifact_id":"...","offset":O,"length":L}\\n``
* reply: one JSON line ``{"length":L}\\n`` followed by exactly L raw bytes, or
  ``{"error":"...","code":"NOT_FOUND"}\\n`` and the connection closes.

The server sends with ``os.sendfile`` straight from the memfd (or the durable
file); the puller receives with the native ``_core.recv_into`` (GIL released)
straight into the destination mapping, checking every chunk against the
manifest's BLAKE3 checksum as it lands. This module never decides *where* to
pull from; the server does.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from prometheus_client import Counter

from tensorwasm_tc import _core
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2 as gs_pb2
from tensorwasm_tc.tensorcast.daemon._listener import Listener
from tensorwasm_tc.tensorcast.errors import ArtifactError

log = logging.getLogger(__name__)

MAX_HEADER_BYTES: Final = 4096

P2P_BYTES = Counter("tc_p2p_bytes_total", "Bytes moved over the P2P data plane", ["direction"])

#: artifact_id -> (fd to read from, whether the caller must close it), or None.
SourceLookup = Callable[[str], tuple[int, bool] | None]


def _read_line(sock: socket.socket) -> dict[str, Any]:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        b = sock.recv(1)
        if not b:
            raise ArtifactError("p2p: connection closed during header", "UNAVAILABLE")
        buf += b
        if len(buf) > MAX_HEADER_BYTES:
            raise ArtifactError("p2p: header too long", "INVALID_ARGUMENT")
    try:
        msg = json.loads(buf)
    except ValueError as e:
        raise ArtifactError(f"p2p: bad header: {e}", "INVALID_ARGUMENT") from e
    if not isinstance(msg, dict):
        raise ArtifactError("p2p: header is not an object", "INVALID_ARGUMENT")
    return msg


def _send_line(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")


class P2PServer(Listener):
    def __init__(
        self,
        host: str,
        port: int,
        lookup: SourceLookup,
        *,
        chunk_bytes: int,
        corrupt_chunks: bool = False,
    ) -> None:
        self._lookup = lookup
        self._chunk_bytes = chunk_bytes
        self._corrupt = corrupt_chunks
        sock = socket.create_server((host, port), backlog=128, reuse_port=False)
        super().__init__(sock, "tc-p2p")
        self.port = int(sock.getsockname()[1])
        self.active = 0
        self._lock = threading.Lock()

    def serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.active += 1
        try:
            with conn:
                conn.settimeout(60.0)
                self._serve_one(conn)
        except (OSError, ArtifactError) as e:
            log.debug("p2p serve failed: %s", e)
        finally:
            with self._lock:
                self.active -= 1

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            req = _read_line(conn)
            aid = str(req["artifact_id"])
            offset = int(req["offset"])
            length = int(req["length"])
        except (ArtifactError, KeyError, ValueError, TypeError) as e:
            _send_line(conn, {"error": f"bad request: {e}", "code": "INVALID_ARGUMENT"})
            return
        src = self._lookup(aid)
        if src is None:
            _send_line(conn, {"error": f"artifact {aid} is not here", "code": "NOT_FOUND"})
            return
        fd, owned = src
        try:
            size = os.fstat(fd).st_size
            if offset < 0 or length < 0 or offset + length > size:
                _send_line(conn, {"error": "range out of bounds", "code": "OUT_OF_RANGE"})
                return
            _send_line(conn, {"length": length})
            # os.sendfile needs a blocking socket (a Python timeout makes it
            # non-blocking); the kernel send timeout bounds a stalled peer.
            conn.settimeout(None)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 60, 0))
            if self._corrupt:
                self._send_corrupted(conn, fd, offset, length)
            else:
                sent = 0
                while sent < length:
                    n = os.sendfile(conn.fileno(), fd, offset + sent, length - sent)
                    if n == 0:
                        raise OSError("sendfile returned 0")
                    sent += n
            P2P_BYTES.labels("out").inc(length)
        finally:
            if owned:
                os.close(fd)

    def _send_corrupted(self, conn: socket.socket, fd: int, offset: int, length: int) -> None:
        """Fault injection for tests: one flipped byte per chunk."""
        end = offset + length
        pos = offset
        while pos < end:
            n = min(self._chunk_bytes - (pos % self._chunk_bytes), end - pos)
            data = bytearray(os.pread(fd, n, pos))
            if data:
                data[0] ^= 0xFF
            conn.sendall(data)
            pos += n


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ArtifactError(f"bad p2p address {address!r}", "INVALID_ARGUMENT")
    return host.strip("[]"), int(port)


def _pull_range(
    address: str,
    manifest: gs_pb2.ArtifactManifest,
    dest: memoryview,
    first_chunk: int,
    last_chunk: int,
    timeout: float,
) -> None:
    chunk = manifest.chunk_bytes
    total = manifest.total_bytes
    start = first_chunk * chunk
    end = min(last_chunk * chunk, total)
    host, port = _split_host_port(address)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise ArtifactError(f"p2p: cannot reach {address}: {e}", "UNAVAILABLE") from e
    with sock:
        try:
            _send_line(
                sock,
                {"artifact_id": manifest.artifact_id, "offset": start, "length": end - start},
            )
            head = _read_line(sock)
            if "error" in head:
                raise ArtifactError(
                    f"p2p {address}: {head['error']}", str(head.get("code", "UNKNOWN"))
                )
            if int(head.get("length", -1)) != end - start:
                raise ArtifactError(f"p2p {address}: wrong length in reply", "DATA_LOSS")
            # The native receive loop needs a blocking descriptor (a Python
            # timeout makes it non-blocking); the kernel timeout bounds a stall.
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            bad = _core.recv_into(
                sock.fileno(),
                dest,
                start,
                end - start,
                chunk,
                list(manifest.chunk_checksums[first_chunk:last_chunk]),
            )
            if bad >= 0:
                raise ArtifactError(
                    f"p2p {address}: checksum mismatch in chunk {first_chunk + bad} of "
                    f"{manifest.artifact_id}",
                    "DATA_LOSS",
                )
        except OSError as e:
            raise ArtifactError(f"p2p {address}: {e}", "UNAVAILABLE") from e
    P2P_BYTES.labels("in").inc(end - start)


def pull(
    address: str,
    manifest: gs_pb2.ArtifactManifest,
    dest: memoryview,
    *,
    streams: int = 4,
    timeout: float = 30.0,
) -> None:
    """Fills ``dest`` (``total_bytes`` long) with the artifact's bytes from the
    peer at ``address`` over up to ``streams`` parallel connections, each a
    contiguous run of chunks. Raises DATA_LOSS on any checksum mismatch."""
    total = manifest.total_bytes
    if dest.nbytes != total:
        raise ArtifactError("p2p: destination has the wrong size", "INTERNAL")
    n_chunks = len(manifest.chunk_checksums)
    if total == 0:
        return
    if manifest.chunk_bytes <= 0 or n_chunks != -(-total // manifest.chunk_bytes):
        raise ArtifactError("p2p: manifest chunk table does not match its size", "DATA_LOSS")
    streams = max(1, min(streams, n_chunks))
    per, extra = divmod(n_chunks, streams)
    bounds = []
    c = 0
    for s in range(streams):
        n = per + (1 if s < extra else 0)
        bounds.append((c, c + n))
        c += n
    if streams == 1:
        _pull_range(address, manifest, dest, 0, n_chunks, timeout)
        return
    with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="tc-pull") as ex:
        futs = [ex.submit(_pull_range, address, manifest, dest, a, b, timeout) for a, b in bounds]
        errors = [f.exception() for f in futs]
    for e in errors:
        if isinstance(e, ArtifactError) and e.status_code == "DATA_LOSS":
            raise e
    for e in errors:
        if e is not None:
            raise e
