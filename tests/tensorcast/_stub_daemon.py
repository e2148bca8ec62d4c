"""A stand-in Store Daemon for SDK tests: a real gRPC server speaking
``tensorcast.daemon.v1.StoreDaemon`` on loopback whose data RPCs can be told
to fail with a chosen status code for the next K calls.

In-process (``StubDaemon().start()``) for error-table and retry tests; as a
process (``python -m tests.tensorcast._stub_daemon``, the same flags as the
real daemon) for the startup tests, where it writes and removes its session
file like the real one. It keeps artifacts in a dict and answers inline only
(no shared memory, no Unix socket).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from tensorwasm_tc.tensorcast import sessions
from tensorwasm_tc.tensorcast._proto.tensorcast.daemon.v1 import daemon_pb2, daemon_pb2_grpc
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2

#: Every code the daemon's contract lists (daemon.proto header).
DAEMON_CODES = (
    "INVALID_ARGUMENT",
    "FAILED_PRECONDITION",
    "NOT_FOUND",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "ABORTED",
    "DATA_LOSS",
)

#: RPCs that failure injection applies to (health and session RPCs always work,
#: so a test can inject failures and still attach).
DATA_METHODS = frozenset({"Register", "Get", "Info", "Delete", "ImportSafetensors"})

BUILD = "stub-daemon"


@dataclass
class _Failures:
    code: grpc.StatusCode | None = None
    remaining: int = 0
    methods: frozenset[str] = DATA_METHODS
    message: str = ""


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: _Failures = field(default_factory=_Failures)
    calls: dict[str, int] = field(default_factory=dict)
    blobs: dict[str, tuple[Any, bytes]] = field(default_factory=dict)  # id -> (manifest, blob)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (id, version)


class _Servicer(daemon_pb2_grpc.StoreDaemonServicer):  # type: ignore[misc]
    def __init__(self, state: _State, address: str) -> None:
        self.s = state
        self.address = address

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        with self.s.lock:
            self.s.calls[method] = self.s.calls.get(method, 0) + 1
            f = self.s.failures
            if f.code is not None and f.remaining > 0 and method in f.methods:
                f.remaining -= 1
                code, msg = f.code, f.message or f"stub: injected {f.code.name}"
            else:
                return
        context.abort(code, msg)

    def OpenSession(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("OpenSession", context)
        return daemon_pb2.OpenSessionResponse(session_id=request.session_id)

    def CloseSession(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("CloseSession", context)
        return daemon_pb2.CloseSessionResponse()

    def Release(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Release", context)
        return daemon_pb2.ReleaseResponse()

    def Register(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Register", context)
        if request.WhichOneof("data") != "inline_data":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "stub: inline data only")
        blob = bytes(request.inline_data)
        h = hashlib.blake2b(digest_size=32)
        for t in request.tensors:
            h.update(f"{t.name}|{t.dtype}|{list(t.shape)}|{t.offset}|{t.nbytes};".encode())
        h.update(hashlib.blake2b(blob, digest_size=32).digest())
        artifact_id = h.hexdigest()
        manifest = global_store_pb2.ArtifactManifest(
            artifact_id=artifact_id,
            tensors=list(request.tensors),
            total_bytes=len(blob),
            chunk_bytes=len(blob) or 1,
            chunk_checksums=[hashlib.blake2b(blob, digest_size=32).digest()],
            policy=request.policy or "cache",
            created_unix_ms=int(time.time() * 1000),
        )
        with self.s.lock:
            present = artifact_id in self.s.blobs
            self.s.blobs[artifact_id] = (manifest, blob)
            version = 0
            if request.key:
                version = self.s.keys.get(request.key, ("", 0))[1] + 1
                self.s.keys[request.key] = (artifact_id, version)
        return daemon_pb2.RegisterResponse(
            artifact_id=artifact_id, key_version=version, already_present=present
        )

    def _lookup(self, request: Any, context: grpc.ServicerContext) -> tuple[Any, bytes, str, int]:
        with self.s.lock:
            key, version = "", 0
            if request.WhichOneof("target") == "key":
                key = request.key
                if key not in self.s.keys:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"stub: no key {key!r}")
                artifact_id, version = self.s.keys[key]
            else:
                artifact_id = request.artifact_id
            if artifact_id not in self.s.blobs:
                context.abort(grpc.StatusCode.NOT_FOUND, f"stub: no artifact {artifact_id!r}")
            manifest, blob = self.s.blobs[artifact_id]
        return manifest, blob, key, version

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Get", context)
        manifest, blob, key, version = self._lookup(request, context)
        return daemon_pb2.GetResponse(
            manifest=manifest,
            key=key,
            key_version=version,
            served_from="memory",
            inline_data=blob if request.want_inline else b"",
        )

    def Info(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Info", context)
        manifest, _, key, version = self._lookup(request, context)
        return daemon_pb2.InfoResponse(
            exists=True, manifest=manifest, local_tiers=["memory"], key=key, key_version=version
        )

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Delete", context)
        with self.s.lock:
            deleted = self.s.keys.pop(request.key, None) is not None
        return daemon_pb2.DeleteResponse(deleted=deleted)

    def ImportSafetensors(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("ImportSafetensors", context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "stub: no safetensors import")

    def Status(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("Status", context)
        return daemon_pb2.StatusResponse(build=BUILD, address=self.address, pid=os.getpid())


class StubDaemon:
    """An in-process stub daemon on ``127.0.0.1:<port>`` (0 = a free port)."""

    def __init__(self, port: int = 0) -> None:
        self.state = _State()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self.address = f"127.0.0.1:{self.port}"
        daemon_pb2_grpc.add_StoreDaemonServicer_to_server(
            _Servicer(self.state, self.address), self._server
        )

    def start(self) -> StubDaemon:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None).wait()

    def fail(
        self, code: str, times: int, methods: frozenset[str] = DATA_METHODS, message: str = ""
    ) -> None:
        """The next ``times`` calls of ``methods`` fail with ``code``."""
        with self.state.lock:
            self.state.failures = _Failures(grpc.StatusCode[code], times, methods, message)

    def calls(self, method: str) -> int:
        with self.state.lock:
            return self.state.calls.get(method, 0)

    def reset(self) -> None:
        with self.state.lock:
            self.state.failures = _Failures()
            self.state.calls.clear()


def running(port: int = 0) -> Iterator[StubDaemon]:
    """A fixture body: a started stub, always stopped."""
    stub = StubDaemon(port).start()
    try:
        yield stub
    finally:
        stub.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.tensorcast._stub_daemon``: the real daemon's flags;
    writes a SessionRecord when serving, removes it on SIGTERM/SIGINT, and
    exits when its owner process is gone."""
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--listen-port", type=int, default=0)
    p.add_argument("--p2p-port", type=int, default=0)
    p.add_argument("--global-store-mode", default="none")
    p.add_argument("--global-store-address", default="")
    p.add_argument("--session-id", default=f"daemon-stub-{os.getpid()}")
    p.add_argument("--owner-pid", type=int, default=0)
    args = p.parse_args(argv)
    # Test knobs travel in the environment: a slow start widens the window in
    # which concurrent `auto` processes race; a failing start checks the
    # error's log tail.
    if os.environ.get("TC_STUB_FAIL_STARTUP"):
        print("stub daemon: refusing to start (TC_STUB_FAIL_STARTUP)", flush=True)
        return 3
    time.sleep(float(os.environ.get("TC_STUB_STARTUP_DELAY_S", "0")))
    if not Path(args.config).is_file():
        print(f"stub daemon: no config {args.config}", flush=True)
        return 2
    stub = StubDaemon(args.listen_port).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rec = sessions.SessionRecord(
        session_id=args.session_id,
        kind="daemon",
        address=stub.address,
        pid=os.getpid(),
        build=BUILD,
        global_store_address=args.global_store_address,
        owner_pid=args.owner_pid,
    )
    sessions.write_session(rec)
    print(f"stub daemon serving at {stub.address} (session {args.session_id})", flush=True)
    try:
        while not stop.wait(0.2):
            if args.owner_pid and not sessions.pid_alive(args.owner_pid):
                break
    finally:
        sessions.remove_session(args.session_id)
        stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
