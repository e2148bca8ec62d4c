"""`DaemonClient`: one process's connection to its Store Daemon.

gRPC for control, plus the Unix-socket fd channel when the daemon is on this
host: registers upload a memfd the client filled, gets map the daemon's
sealed memfd read-only (zero-copy). Without the socket, bytes travel inline
over gRPC. Every failure is raised as `ArtifactError`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tensorwasm_tc.tensorcast._proto.tensorcast.daemon.v1 import daemon_pb2, daemon_pb2_grpc
from tensorwasm_tc.tensorcast.daemon import layout
from tensorwasm_tc.tensorcast.daemon.fdchannel import FdChannelClient
from tensorwasm_tc.tensorcast.errors import ArtifactError, from_rpc_error
from tensorwasm_tc.tensorcast.options import SOURCES

_SOURCES = {
    "auto": daemon_pb2.SOURCE_AUTO,
    "local_only": daemon_pb2.SOURCE_LOCAL_ONLY,
    "disk_first": daemon_pb2.SOURCE_DISK_FIRST,
    "disk_only": daemon_pb2.SOURCE_DISK_ONLY,
    "prefer_p2p": daemon_pb2.SOURCE_PREFER_P2P,
}

#: Largest gRPC message the client accepts (inline gets on another host).
MAX_MESSAGE_BYTES = 1 << 30

_T = TypeVar("_T")


class DaemonClient:
    def __init__(
        self,
        address: str,
        socket_path: str | None = None,
        session_id: str | None = None,
        *,
        timeout: float = 60.0,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = daemon_pb2_grpc.StoreDaemonStub(self._channel)  # type: ignore[no-untyped-call]
        self._fd: FdChannelClient | None = None
        self._fd_lock = threading.Lock()
        self.socket_path = socket_path if socket_path and Path(socket_path).exists() else None
        self.session_id = ""
        if session_id is not None:
            resp = self._call(
                "OpenSession",
                lambda: self._stub.OpenSession(
                    daemon_pb2.OpenSessionRequest(session_id=session_id, pid=os.getpid()),
                    timeout=self.timeout,
                ),
            )
            self.session_id = resp.session_id

    # ------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except grpc.RpcError as e:
            raise from_rpc_error(e, f"{what} on daemon {self.address}") from e

    def _fdchan(self) -> FdChannelClient | None:
        if self.socket_path is None:
            return None
        with self._fd_lock:
            if self._fd is None:
                self._fd = FdChannelClient(self.socket_path, timeout=self.timeout)
            return self._fd

    def _drop_fdchan(self, chan: FdChannelClient) -> None:
        """Forgets a broken fd channel (daemon restarted); the next call reconnects."""
        with self._fd_lock:
            if self._fd is chan:
                self._fd = None
        chan.close()

    def _fd_call(self, chan: FdChannelClient, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except ArtifactError as e:
            if e.status_code == "UNAVAILABLE":
                self._drop_fdchan(chan)
            raise

    @property
    def same_host(self) -> bool:
        return self.socket_path is not None

    # ------------------------------------------------------------------
    def register(
        self, tensors: Mapping[str, Any], key: str | None = None, policy: str = "cache"
    ) -> daemon_pb2.RegisterResponse:
        prepared = layout.prepare_tensors(tensors)
        specs, total = layout.plan_layout(prepared)
        req = daemon_pb2.RegisterRequest(
            key=key or "",
            policy=policy,
            tensors=specs,
            total_bytes=total,
            session_id=self.session_id,
        )
        chan = self._fdchan()
        if chan is not None:
            fd = os.memfd_create("tc-upload", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            try:
                if total:
                    os.ftruncate(fd, total)
                    layout.write_fd(fd, prepared, specs)
                req.upload_token = self._fd_call(chan, lambda: chan.upload(fd, total))
            finally:
                os.close(fd)
        else:
            buf = bytearray(total)
            layout.fill(memoryview(buf), prepared, specs)
            req.inline_data = bytes(buf)
        resp: daemon_pb2.RegisterResponse = self._call(
            "register", lambda: self._stub.Register(req, timeout=self.timeout)
        )
        return resp

    def get(
        self,
        key: str | None = None,
        artifact_id: str | None = None,
        source: str = "auto",
        want_inline: bool = False,
    ) -> tuple[daemon_pb2.GetResponse, mmap.mmap | memoryview | None]:
        """The manifest and the blob: a read-only mapping of the daemon's memfd
        (same host), the inline bytes, or None for an empty artifact."""
        if source not in SOURCES:
            raise ArtifactError(
                f"source must be one of {SOURCES}, not {source!r}", "INVALID_ARGUMENT"
            )
        if (key is None) == (artifact_id is None):
            raise ArtifactError("get needs exactly one of key and artifact_id", "INVALID_ARGUMENT")
        chan = None if want_inline else self._fdchan()
        req = daemon_pb2.GetRequest(
            source=_SOURCES[source], session_id=self.session_id, want_inline=chan is None
        )
        if key is not None:
            req.key = key
        else:
            req.artifact_id = artifact_id or ""
        resp = self._call("get", lambda: self._stub.Get(req, timeout=self.timeout))
        try:
            if chan is None:
                data = resp.inline_data
                return resp, (memoryview(data) if data else None)
            fd, size = self._fd_call(chan, lambda: chan.open(resp.lease_id))
            try:
                if size == 0:
                    return resp, None
                mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            return resp, mm
        finally:
            # The mapping (or the inline copy) keeps the bytes alive; the lease
            # only had to last until the descriptor was handed over.
            self.release(resp.lease_id)

    def release(self, lease_id: str) -> None:
        if lease_id:
            with contextlib.suppress(ArtifactError):
                self._call(
                    "release",
                    lambda: self._stub.Release(
                        daemon_pb2.ReleaseRequest(lease_id=lease_id), timeout=self.timeout
                    ),
                )

    def info(
        self, key: str | None = None, artifact_id: str | None = None
    ) -> daemon_pb2.InfoResponse:
        if (key is None) == (artifact_id is None):
            raise ArtifactError("info needs exactly one of key and artifact_id", "INVALID_ARGUMENT")
        req = (
            daemon_pb2.InfoRequest(key=key)
            if key is not None
            else daemon_pb2.InfoRequest(artifact_id=artifact_id)
        )
        resp: daemon_pb2.InfoResponse = self._call(
            "info", lambda: self._stub.Info(req, timeout=self.timeout)
        )
        return resp

    def delete(self, key: str) -> bool:
        req = daemon_pb2.DeleteRequest(key=key)
        return bool(
            self._call("delete", lambda: self._stub.Delete(req, timeout=self.timeout)).deleted
        )

    def import_safetensors(
        self, path: str | os.PathLike[str], key: str | None = None, policy: str = "cache"
    ) -> daemon_pb2.ImportSafetensorsResponse:
        req = daemon_pb2.ImportSafetensorsRequest(
            path=str(Path(path).resolve()), key=key or "", policy=policy, session_id=self.session_id
        )
        resp: daemon_pb2.ImportSafetensorsResponse = self._call(
            "import_safetensors", lambda: self._stub.ImportSafetensors(req, timeout=self.timeout)
        )
        return resp

    def status(self, timeout: float | None = None) -> daemon_pb2.StatusResponse:
        resp: daemon_pb2.StatusResponse = self._call(
            "status",
            lambda: self._stub.Status(daemon_pb2.StatusRequest(), timeout=timeout or self.timeout),
        )
        return resp

    def close(self) -> None:
        if self.session_id:
            with contextlib.suppress(ArtifactError):
                sid = self.session_id
                self._call(
                    "close_session",
                    lambda: self._stub.CloseSession(
                        daemon_pb2.CloseSessionRequest(session_id=sid), timeout=5.0
                    ),
                )
            self.session_id = ""
        with self._fd_lock:
            if self._fd is not None:
                self._fd.close()
                self._fd = None
        self._channel.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
