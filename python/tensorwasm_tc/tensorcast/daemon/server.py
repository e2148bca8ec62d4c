"""The Store Daemon: the StoreDaemon gRPC service, its fd channel, its P2P
server and its link to the Global Store.

It owns the host's stable tier (``tier.py``); clients never write into it
after a register is sealed. Every failure leaves as a gRPC status with a
canonical code (the SDK maps it to ``ArtifactError``). It never trusts a
client's or a peer's bytes: ids and checksums are computed here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import mmap
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import Counter, Gauge

from tensorwasm_tc import _core
from tensorwasm_tc.tensorcast import sessions
from tensorwasm_tc.tensorcast._metrics_http import start_metrics_http
from tensorwasm_tc.tensorcast._proto.tensorcast.daemon.v1 import daemon_pb2, daemon_pb2_grpc
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2 as gs_pb2
from tensorwasm_tc.tensorcast.daemon import layout, p2p, reserve, safetensors, tier
from tensorwasm_tc.tensorcast.daemon.config import DaemonConfig
from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.options import POLICIES
from tensorwasm_tc.tensorcast.version import build_string

log = logging.getLogger(__name__)

STABLE_TIER_OPS = Counter("tc_local_stable_tier_total", "Stable tier operations", ["op", "status"])
BUILD_INFO = Gauge(
    "tc_daemon_build_info",
    "Build of the running Store Daemon (value is always 1)",
    ["version", "build"],
)
STABLE_BYTES = Gauge("tc_local_stable_tier_bytes", "Bytes of the stable tier, by state", ["state"])
PERSIST_ERRORS = Counter(
    "tc_persist_errors_total", "Durable writes that failed", ["stage", "reason"]
)

NEEDS_GLOBAL_STORE = "Materialization requires a Global Store connection"

#: Seconds an unclaimed upload or a session-less lease lives.
UPLOAD_TTL_S = 120.0
LEASE_TTL_S = 600.0

_SOURCE_NAMES = {
    daemon_pb2.SOURCE_AUTO: "auto",
    daemon_pb2.SOURCE_LOCAL_ONLY: "local_only",
    daemon_pb2.SOURCE_DISK_FIRST: "disk_first",
    daemon_pb2.SOURCE_DISK_ONLY: "disk_only",
    daemon_pb2.SOURCE_PREFER_P2P: "prefer_p2p",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Lease:
    lease_id: str
    session_id: str
    artifact_id: str
    blob: tier.Blob
    created: float = field(default_factory=time.monotonic)


@dataclass
class Session:
    session_id: str
    pid: int
    opened_ms: int = field(default_factory=_now_ms)


_F = TypeVar("_F", bound=Callable[..., Any])


def _rpc(fn: _F) -> _F:
    """Turns ArtifactError (and bugs) into gRPC statuses."""

    @functools.wraps(fn)
    def wrapper(self: StoreDaemonService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except ArtifactError as e:
            code = getattr(grpc.StatusCode, e.status_code, grpc.StatusCode.UNKNOWN)
            context.abort(code, e.message)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNAVAILABLE
            details = e.details() if isinstance(e, grpc.Call) else str(e)
            if code == grpc.StatusCode.NOT_FOUND:
                context.abort(code, details or "not found")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"Global Store: {details}")
        except Exception as e:
            log.exception("%s failed", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

    return wrapper  # type: ignore[return-value]


class StoreDaemonService(daemon_pb2_grpc.StoreDaemonServicer):
    def __init__(self, cfg: DaemonConfig, session_id: str, home: Path | None = None) -> None:
        self.cfg = cfg
        self.session_id = session_id
        self.home = home or sessions.tensorcast_home()
        storage = Path(cfg.storage_path) if cfg.storage_path else self.home / "storage" / "default"
        self.tier = tier.StableTier(cfg.stable_bytes, storage)
        self.reserve = reserve.Reserve(min(cfg.reserve_bytes, cfg.stable_bytes))
        self.worker_id = cfg.worker_id  # set in serve() once the address is known
        self.socket_path = (
            Path(cfg.socket_path) if cfg.socket_path else default_socket_path(self.home, session_id)
        )
        self._lock = threading.RLock()
        self._keys: dict[str, tuple[str, int]] = {}
        self._sessions: dict[str, Session] = {}
        self._leases: dict[str, Lease] = {}
        self._uploads: dict[str, tuple[int, int, float]] = {}  # token -> (fd, size, created)
        self._in_flight = 0
        self._pulls: dict[str, threading.Lock] = {}
        self.gs: Any = None  # GlobalStoreClient when connected
        self.gs_address = ""
        self.gs_connected = False
        self.address = ""
        self.p2p_address = ""
        self._stop = threading.Event()
        self._hb_thread: threading.Thread | None = None

        for e in self.tier.scan_disk():
            log.info("durable artifact %s found on disk", e.artifact_id)
        self._keys = self.tier.load_keys()

    def default_worker_id(self) -> str:
        """``<host>-<hash of storage path and gRPC address>``: stable across
        restarts on the same port, distinct for daemons sharing a host."""
        digest = hashlib.sha256(f"{self.tier.storage_path}|{self.address}".encode()).hexdigest()
        return f"{socket.gethostname()}-{digest[:10]}"

    # ------------------------------------------------------------------ GS
    def connect_global_store(self, address: str) -> None:
        from tensorwasm_tc.tensorcast.global_store.client import GlobalStoreClient

        self.gs_address = address
        self.gs = GlobalStoreClient(
            address,
            cluster_token=self.cfg.global_store.cluster_token or None,
            timeout=self.cfg.global_store.timeout_seconds,
        )
        interval = self._register_worker()
        self._hb_thread = threading.Thread(
            target=self._heartbeat_loop, args=(interval,), name="tc-heartbeat", daemon=True
        )
        self._hb_thread.start()

    def _register_worker(self) -> float:
        resp = self.gs.register_worker(
            gs_pb2.RegisterWorkerRequest(
                worker_id=self.worker_id,
                address=self.address,
                p2p_address=self.p2p_address,
                build=build_string(),
                stable_bytes_capacity=self.cfg.stable_bytes,
            )
        )
        self.gs_connected = True
        for e in self.tier.entries():
            self._announce(e)
        return max(0.2, (resp.heartbeat_interval_ms or 2000) / 1000.0)

    def _announce(self, e: tier.Entry) -> None:
        if self.gs is None:
            return
        for t in e.tiers():
            gs_tier = gs_pb2.TIER_MEMORY if t == "memory" else gs_pb2.TIER_DISK
            self.gs.register_artifact(
                gs_pb2.RegisterArtifactRequest(
                    manifest=e.manifest, worker_id=self.worker_id, tier=gs_tier
                )
            )

    def _heartbeat_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                resp = self.gs.heartbeat(
                    gs_pb2.HeartbeatRequest(
                        worker_id=self.worker_id,
                        stable_bytes_used=self.tier.used,
                        active_transfers=self._p2p_active(),
                    )
                )
                if not resp.known:
                    interval = self._register_worker()
                self.gs_connected = True
            except grpc.RpcError as e:
                if self.gs_connected:
                    log.warning("Global Store heartbeat failed: %s", e)
                self.gs_connected = False
            except Exception:
                log.exception("heartbeat failed")
            self._sweep()

    def _p2p_active(self) -> int:
        srv = getattr(self, "p2p_server", None)
        return int(srv.active) if srv is not None else 0

    def _gs_call(self, name: str, request: Any) -> Any:
        if self.gs is None:
            raise ArtifactError(NEEDS_GLOBAL_STORE, "FAILED_PRECONDITION")
        return getattr(self.gs, name)(request)

    def _gs_quiet(self, name: str, request: Any) -> None:
        """A best-effort Global Store update (replica bookkeeping)."""
        if self.gs is None:
            return
        try:
            getattr(self.gs, name)(request)
        except grpc.RpcError as e:
            log.warning("Global Store %s failed: %s", name, e)

    def _on_evicted(self, ids: list[str]) -> None:
        if ids:
            STABLE_TIER_OPS.labels("evict", "OK").inc(len(ids))
        for aid in ids:
            log.info("evicted %s from the stable tier", aid, extra={"tc.store.artifact_id": aid})
            self._gs_quiet(
                "remove_replica",
                gs_pb2.RemoveReplicaRequest(
                    artifact_id=aid, worker_id=self.worker_id, tier=gs_pb2.TIER_MEMORY
                ),
            )

    # ---------------------------------------------------------------- keys
    def _put_key(self, key: str, artifact_id: str) -> int:
        if self.gs is not None:
            version = int(
                self.gs.put_key(gs_pb2.PutKeyRequest(key=key, artifact_id=artifact_id)).version
            )
        else:
            with self._lock:
                version = self._keys.get(key, ("", 0))[1] + 1
        with self._lock:
            self._keys[key] = (artifact_id, version)
            self._save_keys()
        return version

    def _save_keys(self) -> None:
        try:
            self.tier.save_keys(self._keys)
        except OSError as e:
            PERSIST_ERRORS.labels("keys", "io").inc()
            log.warning("cannot save keys: %s", e)

    def _resolve_key(self, key: str) -> tuple[str, int]:
        if self.gs is not None:
            try:
                r = self.gs.get_key(gs_pb2.GetKeyRequest(key=key))
                with self._lock:
                    self._keys[key] = (r.artifact_id, int(r.version))
                return r.artifact_id, int(r.version)
            except grpc.RpcError as e:
                if isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.NOT_FOUND:
                    raise ArtifactError(f"no artifact under key {key!r}", "NOT_FOUND") from e
                raise
        with self._lock:
            hit = self._keys.get(key)
        if hit is None:
            raise ArtifactError(f"no artifact under key {key!r}", "NOT_FOUND")
        return hit

    def _key_of(self, artifact_id: str) -> str:
        with self._lock:
            for k, (aid, _v) in self._keys.items():
                if aid == artifact_id:
                    return k
        return ""

    # ------------------------------------------------------------ ingest
    def _ingest(
        self,
        fd: int,
        specs: list[gs_pb2.TensorSpec],
        total: int,
        policy: str,
        sums: list[bytes] | None = None,
    ) -> tuple[tier.Entry, bool]:
        """Takes ownership of a sealed memfd: checksums it (natively, over a
        read-only mapping: no copy) unless the daemon itself just wrote it and
        passes ``sums``, derives the id, puts it in the tier (and on disk for
        durable)."""
        try:
            if policy not in POLICIES:
                raise ArtifactError(
                    f"policy must be one of {POLICIES}, not {policy!r}", "INVALID_ARGUMENT"
                )
            layout.validate_specs(specs, total)
            if total > self.cfg.stable_bytes:
                raise ArtifactError(
                    f"artifact of {total} bytes exceeds the stable tier ({self.cfg.stable_bytes})",
                    "RESOURCE_EXHAUSTED",
                )
            chunk = self.cfg.p2p.chunk_bytes
            if sums is not None:
                pass
            elif total:
                mm = mmap.mmap(fd, total, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
                try:
                    sums = layout.chunk_checksums(mm, chunk)
                finally:
                    mm.close()
            else:
                sums = []
            aid = layout.artifact_id(specs, total, chunk, sums)
            manifest = gs_pb2.ArtifactManifest(
                artifact_id=aid,
                tensors=specs,
                total_bytes=total,
                chunk_bytes=chunk,
                chunk_checksums=sums,
                policy=policy,
                created_unix_ms=_now_ms(),
            )
            blob = tier.Blob(fd, total)
        except BaseException:
            os.close(fd)
            raise
        try:
            entry, present, evicted = self.tier.insert(manifest, policy, blob)
        except ArtifactError as e:
            STABLE_TIER_OPS.labels("register", e.status_code).inc()
            raise
        STABLE_TIER_OPS.labels("register", "OK").inc()
        self._on_evicted(evicted)
        if policy == "durable" and not entry.on_disk:
            try:
                self.tier.persist(entry)
            except OSError as e:
                PERSIST_ERRORS.labels("write", "io").inc()
                raise ArtifactError(f"cannot persist durable artifact: {e}", "UNAVAILABLE") from e
        if not present or policy == "durable":
            self._announce(entry)
        return entry, present

    # --------------------------------------------------------- fd channel
    def handle_fd_request(
        self, req: dict[str, Any], fd: int | None
    ) -> tuple[dict[str, Any], int | None]:
        op = req.get("op")
        if op == "upload":
            if fd is None:
                raise ArtifactError("upload carries no descriptor", "INVALID_ARGUMENT")
            size = int(req.get("size", -1))
            try:
                if os.fstat(fd).st_size != size:
                    raise ArtifactError("upload size does not match the memfd", "INVALID_ARGUMENT")
            except BaseException:
                os.close(fd)
                raise
            token = secrets.token_hex(16)
            with self._lock:
                self._uploads[token] = (fd, size, time.monotonic())
            return {"token": token}, None
        if fd is not None:
            os.close(fd)
        if op == "open":
            lease_id = str(req.get("lease_id", ""))
            with self._lock:
                lease = self._leases.get(lease_id)
            if lease is None or lease.blob.fd < 0:
                raise ArtifactError(f"no lease {lease_id!r}", "NOT_FOUND")
            return {"size": lease.blob.size, "artifact_id": lease.artifact_id}, lease.blob.dup()
        raise ArtifactError(f"unknown op {op!r}", "INVALID_ARGUMENT")

    def _sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            for token, (fd, _s, t0) in list(self._uploads.items()):
                if now - t0 > UPLOAD_TTL_S:
                    del self._uploads[token]
                    os.close(fd)
            for lid, lease in list(self._leases.items()):
                if not lease.session_id and now - lease.created > LEASE_TTL_S:
                    del self._leases[lid]

    # ---------------------------------------------------------------- RPCs
    @_rpc
    def OpenSession(self, request: Any, context: grpc.ServicerContext) -> Any:
        sid = request.session_id or secrets.token_hex(8)
        with self._lock:
            self._sessions.setdefault(sid, Session(sid, int(request.pid)))
        return daemon_pb2.OpenSessionResponse(session_id=sid)

    @_rpc
    def CloseSession(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self._sessions.pop(request.session_id, None)
            for lid, lease in list(self._leases.items()):
                if lease.session_id == request.session_id:
                    del self._leases[lid]
        return daemon_pb2.CloseSessionResponse()

    @_rpc
    def Register(self, request: Any, context: grpc.ServicerContext) -> Any:
        total = int(request.total_bytes)
        which = request.WhichOneof("data")
        sums: list[bytes] | None = None
        if which == "upload_token":
            with self._lock:
                up = self._uploads.pop(request.upload_token, None)
            if up is None:
                raise ArtifactError("unknown or expired upload token", "NOT_FOUND")
            fd, size, _t = up
            if size != total:
                os.close(fd)
                raise ArtifactError(
                    "total_bytes does not match the uploaded memfd", "INVALID_ARGUMENT"
                )
            if not tier.is_sealed(fd):
                try:
                    tier.seal(fd)
                except OSError as e:
                    os.close(fd)
                    raise ArtifactError(
                        "upload memfd cannot be sealed (created without MFD_ALLOW_SEALING, or "
                        f"still mapped writable): {e}",
                        "FAILED_PRECONDITION",
                    ) from e
        elif which == "inline_data":
            data = request.inline_data
            if len(data) > self.cfg.max_inline_bytes:
                raise ArtifactError("inline data exceeds max_inline_bytes", "RESOURCE_EXHAUSTED")
            if len(data) != total:
                raise ArtifactError("total_bytes does not match inline_data", "INVALID_ARGUMENT")
            buf = self.reserve.acquire(total, "tc-inline")
            try:
                view = buf.view()
                try:
                    view[:] = data
                    sums = layout.chunk_checksums(view, self.cfg.p2p.chunk_bytes) if total else []
                finally:
                    view.release()
                fd = buf.seal()
            except BaseException:
                buf.close()
                raise
        else:
            raise ArtifactError("register needs upload_token or inline_data", "INVALID_ARGUMENT")
        entry, present = self._ingest(
            fd, list(request.tensors), total, request.policy or "cache", sums
        )
        version = self._put_key(request.key, entry.artifact_id) if request.key else 0
        log.info(
            "registered %s (%d bytes, %s)",
            entry.artifact_id,
            total,
            entry.policy,
            extra={"tc.store.key": request.key, "tc.store.artifact_id": entry.artifact_id},
        )
        return daemon_pb2.RegisterResponse(
            artifact_id=entry.artifact_id, key_version=version, already_present=present
        )

    @_rpc
    def ImportSafetensors(self, request: Any, context: grpc.ServicerContext) -> Any:
        specs, total, fd, sums = safetensors.read_into_memfd(
            request.path, self.reserve.acquire, self.cfg.p2p.chunk_bytes
        )
        entry, _present = self._ingest(fd, specs, total, request.policy or "cache", sums)
        version = self._put_key(request.key, entry.artifact_id) if request.key else 0
        return daemon_pb2.ImportSafetensorsResponse(
            artifact_id=entry.artifact_id, key_version=version
        )

    def _materialize(self, artifact_id: str, source: str) -> tuple[tier.Blob, str, tier.Entry]:
        e = self.tier.get(artifact_id)
        in_mem = e is not None and e.blob is not None
        on_disk = e is not None and e.on_disk
        order = {
            "auto": ["memory", "disk", "p2p"],
            "local_only": ["memory", "disk"],
            "disk_first": ["disk", "memory", "p2p"],
            "disk_only": ["disk"],
            "prefer_p2p": ["memory", "p2p", "disk"],
        }[source]
        last_err: ArtifactError | None = None
        for step in order:
            if step == "memory" and in_mem:
                assert e is not None and e.blob is not None
                blob = e.blob
                self.tier.touch(artifact_id)
                STABLE_TIER_OPS.labels("get", "OK").inc()
                return blob, "memory", e
            if step == "disk" and on_disk:
                assert e is not None
                return self._load_disk(e), "disk", e
            if step == "p2p":
                if self.gs is None:
                    if source == "prefer_p2p":
                        raise ArtifactError(NEEDS_GLOBAL_STORE, "FAILED_PRECONDITION")
                    continue
                try:
                    return self._pull(artifact_id)
                except ArtifactError as err:
                    if err.status_code == "DATA_LOSS":
                        raise
                    last_err = err
        if last_err is not None:
            raise last_err
        raise ArtifactError(f"artifact {artifact_id} is not available ({source})", "NOT_FOUND")

    def _load_disk(self, e: tier.Entry) -> tier.Blob:
        blob = self.tier.load_from_disk(e.artifact_id, acquire=self.reserve.acquire)
        entry, present, evicted = self.tier.insert(e.manifest, e.policy, blob)
        self._on_evicted(evicted)
        if not present:
            self._gs_quiet(
                "add_replica",
                gs_pb2.AddReplicaRequest(
                    artifact_id=e.artifact_id, worker_id=self.worker_id, tier=gs_pb2.TIER_MEMORY
                ),
            )
        assert entry.blob is not None
        return entry.blob

    def _pull(self, artifact_id: str) -> tuple[tier.Blob, str, tier.Entry]:
        with self._lock:
            lock = self._pulls.setdefault(artifact_id, threading.Lock())
        with lock:  # concurrent gets of one artifact share a single pull
            e = self.tier.get(artifact_id)
            if e is not None and e.blob is not None:
                return e.blob, "p2p", e
            try:
                art = self.gs.get_artifact(gs_pb2.GetArtifactRequest(artifact_id=artifact_id))
            except grpc.RpcError as err:
                if isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.NOT_FOUND:
                    raise ArtifactError(f"artifact {artifact_id} is unknown", "NOT_FOUND") from err
                raise
            manifest = art.manifest
            try:
                src = self.gs.pick_source(
                    gs_pb2.PickSourceRequest(artifact_id=artifact_id, worker_id=self.worker_id)
                ).source
            except grpc.RpcError as err:
                if isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.NOT_FOUND:
                    raise ArtifactError(
                        f"artifact {artifact_id} has no live replica", "NOT_FOUND"
                    ) from err
                raise
            if not src.p2p_address:
                raise ArtifactError(f"artifact {artifact_id} has no live replica", "NOT_FOUND")
            layout.validate_specs(manifest.tensors, manifest.total_bytes)
            total = int(manifest.total_bytes)
            buf = self.reserve.acquire(total, f"tc-{artifact_id[:16]}")
            try:
                view = buf.view()
                try:
                    p2p.pull(
                        src.p2p_address,
                        manifest,
                        view,
                        streams=self.cfg.p2p.streams,
                        timeout=self.cfg.p2p.timeout_seconds,
                    )
                finally:
                    view.release()
                fd = buf.seal()
            except BaseException as err:
                buf.close()
                if isinstance(err, ArtifactError) and err.status_code == "DATA_LOSS":
                    log.error("discarded pull of %s from %s: %s", artifact_id, src.p2p_address, err)
                raise
            blob = tier.Blob(fd, total)
            entry, _present, evicted = self.tier.insert(manifest, "cache", blob)
            self._on_evicted(evicted)
            self._gs_quiet(
                "add_replica",
                gs_pb2.AddReplicaRequest(
                    artifact_id=artifact_id, worker_id=self.worker_id, tier=gs_pb2.TIER_MEMORY
                ),
            )
            assert entry.blob is not None
            return entry.blob, "p2p", entry

    @_rpc
    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        source = _SOURCE_NAMES.get(request.source)
        if source is None:
            raise ArtifactError(f"unknown source {request.source}", "INVALID_ARGUMENT")
        key, version = "", 0
        if request.WhichOneof("target") == "key":
            key = request.key
            aid, version = self._resolve_key(key)
        elif request.WhichOneof("target") == "artifact_id":
            aid = request.artifact_id
        else:
            raise ArtifactError("get needs a key or an artifact_id", "INVALID_ARGUMENT")
        with self._lock:
            self._in_flight += 1
        try:
            blob, served, entry = self._materialize(aid, source)
        finally:
            with self._lock:
                self._in_flight -= 1
        if request.want_inline and blob.size > self.cfg.max_inline_bytes:
            raise ArtifactError(
                "artifact exceeds max_inline_bytes for inline transfer", "RESOURCE_EXHAUSTED"
            )
        lease_id = secrets.token_hex(16)
        with self._lock:
            self._leases[lease_id] = Lease(lease_id, request.session_id, aid, blob)
            entry.leases += 1
        resp = daemon_pb2.GetResponse(
            manifest=entry.manifest,
            lease_id=lease_id,
            key=key,
            key_version=version,
            served_from=served,
        )
        if request.want_inline:
            resp.inline_data = os.pread(blob.fd, blob.size, 0) if blob.size else b""
        return resp

    @_rpc
    def Release(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            lease = self._leases.pop(request.lease_id, None)
            if lease is not None:
                e = self.tier.get(lease.artifact_id)
                if e is not None and e.leases > 0:
                    e.leases -= 1
        return daemon_pb2.ReleaseResponse()

    @_rpc
    def Info(self, request: Any, context: grpc.ServicerContext) -> Any:
        key, version = "", 0
        if request.WhichOneof("target") == "key":
            key = request.key
            try:
                aid, version = self._resolve_key(key)
            except ArtifactError as e:
                if e.status_code == "NOT_FOUND":
                    return daemon_pb2.InfoResponse(exists=False, key=key)
                raise
        elif request.WhichOneof("target") == "artifact_id":
            aid = request.artifact_id
        else:
            raise ArtifactError("info needs a key or an artifact_id", "INVALID_ARGUMENT")
        entry = self.tier.get(aid)
        if entry is not None:
            return daemon_pb2.InfoResponse(
                exists=True,
                manifest=entry.manifest,
                local_tiers=entry.tiers(),
                key=key,
                key_version=version,
            )
        if self.gs is not None:
            try:
                art = self.gs.get_artifact(gs_pb2.GetArtifactRequest(artifact_id=aid))
                return daemon_pb2.InfoResponse(
                    exists=True, manifest=art.manifest, key=key, key_version=version
                )
            except grpc.RpcError as err:
                if not (isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.NOT_FOUND):
                    raise
        return daemon_pb2.InfoResponse(exists=False, key=key, key_version=version)

    @_rpc
    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.key:
            raise ArtifactError("delete needs a key", "INVALID_ARGUMENT")
        with self._lock:
            deleted = self._keys.pop(request.key, None) is not None
            self._save_keys()
        if self.gs is not None:
            deleted = (
                bool(self.gs.delete_key(gs_pb2.DeleteKeyRequest(key=request.key)).deleted)
                or deleted
            )
        return daemon_pb2.DeleteResponse(deleted=deleted)

    @_rpc
    def Status(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            lease_counts: dict[str, int] = {}
            for lease in self._leases.values():
                lease_counts[lease.session_id] = lease_counts.get(lease.session_id, 0) + 1
            sess = [
                daemon_pb2.SessionInfo(
                    session_id=s.session_id,
                    opened_unix_ms=s.opened_ms,
                    leases=lease_counts.get(s.session_id, 0),
                    pid=s.pid,
                )
                for s in self._sessions.values()
            ]
            n_leases = len(self._leases)
            in_flight = self._in_flight
        arts = [
            daemon_pb2.ArtifactStatus(
                artifact_id=e.artifact_id,
                key=self._key_of(e.artifact_id),
                policy=e.policy,
                total_bytes=e.manifest.total_bytes,
                tiers=e.tiers(),
                leases=e.leases,
                last_used_unix_ms=int(e.last_used * 1000),
            )
            for e in self.tier.entries()
        ]
        return daemon_pb2.StatusResponse(
            build=build_string(),
            worker_id=self.worker_id,
            address=self.address,
            p2p_address=self.p2p_address,
            socket_path=str(self.socket_path),
            stable_bytes_used=self.tier.used,
            stable_bytes_capacity=self.tier.capacity,
            sessions=sess,
            artifacts=arts,
            leases=n_leases,
            in_flight=in_flight,
            global_store_address=self.gs_address,
            global_store_connected=self.gs_connected,
            pid=os.getpid(),
            reserve_bytes=self.reserve.size,
            reserve_ready_bytes=self.reserve.ready_bytes,
        )

    def p2p_lookup(self, artifact_id: str) -> tuple[int, bool] | None:
        e = self.tier.get(artifact_id)
        if e is None:
            return None
        if e.blob is not None and e.blob.fd >= 0:
            return e.blob.dup(), True
        if e.on_disk:
            blob_path = self.tier.storage_path / f"{artifact_id}.blob"
            with contextlib.suppress(OSError):
                return os.open(blob_path, os.O_RDONLY | os.O_CLOEXEC), True
        return None

    def stop(self) -> None:
        self._stop.set()
        if self.gs is not None:
            with contextlib.suppress(Exception):
                self.gs.unregister_worker(gs_pb2.UnregisterWorkerRequest(worker_id=self.worker_id))
            with contextlib.suppress(Exception):
                self.gs.close()
        with self._lock:
            for fd, _s, _t in self._uploads.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._uploads.clear()
        self.reserve.close()


#: Longest Unix socket path the kernel takes (sun_path is 108 bytes with its NUL).
MAX_SOCKET_PATH: Final = 107


def default_socket_path(home: Path, session_id: str) -> Path:
    """``$TENSORCAST_HOME/run/daemon-<session>.sock``, or, when that is too
    long for a Unix socket (a deep home), a short path in the system temp
    directory named after it (the session file records whichever is used)."""
    path = home / "run" / f"daemon-{session_id}.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    short_dir = Path(tempfile.gettempdir()) / f"tensorcast-{os.getuid()}"
    short_dir.mkdir(mode=0o700, exist_ok=True)
    st = short_dir.lstat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not short_dir.is_dir():
        raise ArtifactError(
            f"{path} is too long for a Unix socket and {short_dir} is not a private "
            "directory of this user; set socket_path in the daemon config",
            "FAILED_PRECONDITION",
        )
    return short_dir / f"{digest}.sock"


# ---------------------------------------------------------------------- process
def _start_global_store(cfg: DaemonConfig, session_id: str) -> tuple[subprocess.Popen[bytes], str]:
    """Starts a Global Store (mode ``start``) owned by this daemon."""
    if sessions.live_sessions("global_store"):
        raise ArtifactError(
            "global_store_mode=start: a Global Store is already running under this "
            "TENSORCAST_HOME; stop it or use global_store_mode=connect",
            "FAILED_PRECONDITION",
        )
    gs_config = cfg.global_store.config_path or _default_gs_config()
    gs_sid = f"gs-{session_id}"
    logs = sessions.tensorcast_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"global_store-{gs_sid}.log", "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorwasm_tc.tensorcast.global_store",
                "--config",
                gs_config,
                "--listen-port",
                "0",
                "--metrics-port",
                "0",
                "--session-id",
                gs_sid,
                "--owner-pid",
                str(os.getpid()),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        for rec in sessions.live_sessions("global_store"):
            if rec.session_id == gs_sid:
                return proc, rec.address
        if proc.poll() is not None:
            raise ArtifactError(f"the Global Store exited with {proc.returncode}", "UNAVAILABLE")
        time.sleep(0.05)
    proc.terminate()
    raise ArtifactError("the Global Store did not become ready in 30 s", "DEADLINE_EXCEEDED")


def _default_gs_config() -> str:
    from importlib import resources

    packaged = Path(
        str(resources.files("tensorwasm_tc._bundled").joinpath("global_store_config.yaml"))
    )
    if packaged.exists():
        return str(packaged)
    return "examples/config/global_store_config.yaml"


def serve(cfg: DaemonConfig, session_id: str, owner_pid: int = 0) -> int:
    """Runs a daemon in this process until SIGTERM/SIGINT (or its owner dies)."""
    from tensorwasm_tc import _tracing

    # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set (a span per RPC);
    # flushed at exit by the provider itself.
    _tracing.setup_from_env("tensorcast-daemon")
    try:
        svc = StoreDaemonService(cfg, session_id)
    except ArtifactError as e:
        log.error("daemon failed to start: %s", e.message)
        return 1
    BUILD_INFO.labels(_core.__version__, build_string()).set(1)
    STABLE_BYTES.labels("used").set_function(lambda: svc.tier.used)
    STABLE_BYTES.labels("capacity").set_function(lambda: svc.tier.capacity)
    max_msg = cfg.max_inline_bytes + (16 << 20)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="tc-rpc"),
        interceptors=_tracing.grpc_server_interceptors(),
        options=[
            ("grpc.max_receive_message_length", max_msg),
            ("grpc.max_send_message_length", max_msg),
            ("grpc.so_reuseport", 0),
        ],
    )
    daemon_pb2_grpc.add_StoreDaemonServicer_to_server(svc, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(f"{cfg.host}:{cfg.listen_port}")
    if port == 0:
        log.error("cannot listen on %s:%d", cfg.host, cfg.listen_port)
        return 2
    svc.address = f"{cfg.host}:{port}"
    svc.worker_id = cfg.worker_id or svc.default_worker_id()
    p2p_server = p2p.P2PServer(
        cfg.host,
        cfg.p2p_port,
        svc.p2p_lookup,
        chunk_bytes=cfg.p2p.chunk_bytes,
        corrupt_chunks=cfg.p2p_corrupt_chunks,
    )
    svc.p2p_server = p2p_server  # type: ignore[attr-defined]
    svc.p2p_address = f"{cfg.host}:{p2p_server.port}"
    from tensorwasm_tc.tensorcast.daemon.fdchannel import FdChannelServer

    try:
        fdchan = FdChannelServer(svc.socket_path, svc.handle_fd_request)
    except ArtifactError as e:
        log.error("daemon failed to start: %s", e.message)
        p2p_server.close()
        svc.stop()
        return 1
    gs_proc: subprocess.Popen[bytes] | None = None
    metrics_http: WSGIServer | None = None
    metrics_address = ""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        mode = cfg.global_store.mode
        if mode == "start":
            gs_proc, gs_addr = _start_global_store(cfg, session_id)
            svc.connect_global_store(gs_addr)
        elif mode == "connect":
            if not cfg.global_store.address:
                log.error("global_store_mode=connect needs a Global Store address")
                return 2
            svc.connect_global_store(cfg.global_store.address)
        server.start()
        p2p_server.start()
        fdchan.start()
        svc.reserve.start()
        if cfg.metrics_port >= 0:
            import prometheus_client

            metrics_http = start_metrics_http(
                cfg.host, cfg.metrics_port, prometheus_client.REGISTRY, "tc-daemon-metrics"
            )
            metrics_address = f"{cfg.host}:{metrics_http.server_port}"
        record = sessions.SessionRecord(
            session_id=session_id,
            kind="daemon",
            address=svc.address,
            pid=os.getpid(),
            config_hash=cfg.config_hash(),
            build=build_string(),
            p2p_address=svc.p2p_address,
            socket_path=str(svc.socket_path),
            global_store_address=svc.gs_address,
            metrics_address=metrics_address,
            owner_pid=owner_pid,
        )
        session_file = sessions.write_session(record)
        log.info(
            "store daemon %s ready: grpc %s, p2p %s, socket %s, global store %s",
            session_id,
            svc.address,
            svc.p2p_address,
            svc.socket_path,
            svc.gs_address or "none",
        )
        while not stop.wait(1.0):
            if owner_pid and not sessions.pid_alive(owner_pid):
                log.info("owner process %d is gone; stopping", owner_pid)
                break
            if svc.gs is None:
                svc._sweep()
            if not session_file.exists():  # deleting session files is safe: they come back
                session_file = sessions.write_session(record)
        return 0
    except ArtifactError as e:
        log.error("daemon failed to start: %s", e.message)
        return 1
    except grpc.RpcError as e:
        log.error("cannot reach the Global Store: %s", e)
        return 1
    finally:
        sessions.remove_session(session_id)
        server.stop(grace=1.0).wait(2.0)
        p2p_server.close()
        fdchan.close()
        if metrics_http is not None:
            metrics_http.shutdown()
            metrics_http.server_close()
        svc.stop()
        if gs_proc is not None:
            gs_proc.terminate()
            try:
                gs_proc.wait(10)
            except subprocess.TimeoutExpired:
                gs_proc.kill()
        log.info("store daemon %s stopped", session_id)
