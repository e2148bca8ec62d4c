"""The Global Store's state: workers, artifacts, replicas and keys over one
SQLite connection (``schema.py``), plus worker liveness kept in memory.

Owns the rules; knows nothing of gRPC transport beyond the status codes its
`StoreError` carries. Every method is thread-safe (one lock around the one
connection: SQLite serialises writers anyway, and the Global Store's calls are
small).

Liveness: heartbeats update memory only (``_Liveness``), not the database, so
they cost no fsync. A worker is alive while its last heartbeat is younger than
``heartbeat_timeout_ms``. After a Global Store restart every persisted worker
is dead until its next heartbeat (its record, replicas and keys are kept).

Dead workers' replicas are hidden from `get_artifact` and `pick_source` but
kept: a worker that comes back (heartbeats again) serves them again. They are
deleted when the worker unregisters; when a worker registers again under the
same id (a daemon restart) its memory-tier replicas are dropped, since shared
memory does not survive a restart, and its disk-tier replicas are kept; the
daemon then re-announces what it holds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2 as pb
from tensorwasm_tc.tensorcast.global_store.schema import open_database
from tensorwasm_tc.tensorcast.options import POLICIES

_MAX_ID_LEN = 1024


class StoreError(Exception):
    """A request the store refuses, with the gRPC status it maps to."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(msg: str) -> StoreError:
    return StoreError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def _require_id(value: str, what: str) -> str:
    if not value:
        raise _invalid(f"{what} is required")
    if len(value) > _MAX_ID_LEN:
        raise _invalid(f"{what} is longer than {_MAX_ID_LEN} characters")
    if "\x00" in value:
        raise _invalid(f"{what} contains a NUL character")
    return value


def _tier(tier: int, what: str = "tier") -> int:
    """TIER_UNSPECIFIED means memory (the tier a daemon registers into)."""
    if tier == pb.TIER_UNSPECIFIED:
        return pb.TIER_MEMORY
    if tier not in (pb.TIER_MEMORY, pb.TIER_DISK):
        raise _invalid(f"{what} {tier} is not a known tier")
    return tier


def validate_manifest(m: pb.ArtifactManifest) -> None:
    """Structural checks only: the store never sees the bytes."""
    _require_id(m.artifact_id, "manifest.artifact_id")
    if m.policy and m.policy not in POLICIES:
        raise _invalid(f"manifest.policy {m.policy!r} is not one of {', '.join(POLICIES)}")
    names: set[str] = set()
    for t in m.tensors:
        if not t.name:
            raise _invalid("manifest has a tensor without a name")
        if t.name in names:
            raise _invalid(f"manifest names tensor {t.name!r} twice")
        names.add(t.name)
        if any(d < 0 for d in t.shape):
            raise _invalid(f"tensor {t.name!r} has a negative dimension")
        if t.offset + t.nbytes > m.total_bytes:
            raise _invalid(
                f"tensor {t.name!r} ends at byte {t.offset + t.nbytes}, past "
                f"total_bytes {m.total_bytes}"
            )
    if m.chunk_checksums:
        if m.chunk_bytes == 0:
            raise _invalid("manifest has chunk_checksums but chunk_bytes is 0")
        expected = -(-m.total_bytes // m.chunk_bytes)
        if len(m.chunk_checksums) != expected:
            raise _invalid(
                f"manifest has {len(m.chunk_checksums)} chunk checksums, expected {expected} "
                f"({m.total_bytes} bytes in chunks of {m.chunk_bytes})"
            )


@dataclass(slots=True)
class _Liveness:
    last_heartbeat_unix_ms: int = 0
    last_heartbeat_mono: float | None = None
    stable_bytes_used: int = 0
    active_transfers: int = 0
    #: Sources handed out since the last heartbeat: spreads concurrent pulls
    #: before the worker's next report of its load.
    picks: int = 0


class MetadataStore:
    def __init__(
        self,
        path: str,
        *,
        heartbeat_interval_ms: int = 2_000,
        heartbeat_timeout_ms: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self._clock = clock
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_database(path)
        self._live: dict[str, _Liveness] = {}

    # -- plumbing ---------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(grpc.StatusCode.UNAVAILABLE, "the Global Store is shutting down")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self.conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _alive(self, worker_id: str) -> bool:
        live = self._live.get(worker_id)
        if live is None or live.last_heartbeat_mono is None:
            return False
        return (self._clock() - live.last_heartbeat_mono) * 1000 <= self.heartbeat_timeout_ms

    def _mark_heartbeat(self, worker_id: str, used: int = 0, transfers: int = 0) -> None:
        live = self._live.setdefault(worker_id, _Liveness())
        live.last_heartbeat_mono = self._clock()
        live.last_heartbeat_unix_ms = self._wall_ms()
        live.stable_bytes_used = used
        live.active_transfers = transfers
        live.picks = 0

    @staticmethod
    def _worker_exists(conn: sqlite3.Connection, worker_id: str) -> bool:
        row = conn.execute("SELECT 1 FROM workers WHERE worker_id = ?", (worker_id,)).fetchone()
        return row is not None

    # -- workers ----------------------------------------------------------

    def register_worker(self, req: pb.RegisterWorkerRequest) -> pb.RegisterWorkerResponse:
        _require_id(req.worker_id, "worker_id")
        if not req.address:
            raise _invalid("address is required")
        now = self._wall_ms()
        with self._tx() as conn:
            existed = self._worker_exists(conn, req.worker_id)
            conn.execute(
                """INSERT INTO workers (worker_id, address, p2p_address, build,
                       stable_bytes_capacity, registered_unix_ms, last_heartbeat_unix_ms)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (worker_id) DO UPDATE SET
                       address = excluded.address, p2p_address = excluded.p2p_address,
                       build = excluded.build,
                       stable_bytes_capacity = excluded.stable_bytes_capacity,
                       last_heartbeat_unix_ms = excluded.last_heartbeat_unix_ms""",
                (
                    req.worker_id,
                    req.address,
                    req.p2p_address,
                    req.build,
                    req.stable_bytes_capacity,
                    now,
                    now,
                ),
            )
            if existed:
                conn.execute(
                    "DELETE FROM replicas WHERE worker_id = ? AND tier = ?",
                    (req.worker_id, pb.TIER_MEMORY),
                )
            self._mark_heartbeat(req.worker_id)
        return pb.RegisterWorkerResponse(
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            heartbeat_timeout_ms=self.heartbeat_timeout_ms,
        )

    def heartbeat(self, req: pb.HeartbeatRequest) -> pb.HeartbeatResponse:
        _require_id(req.worker_id, "worker_id")
        with self._read() as conn:
            if not self._worker_exists(conn, req.worker_id):
                return pb.HeartbeatResponse(known=False)
            self._mark_heartbeat(req.worker_id, req.stable_bytes_used, req.active_transfers)
        return pb.HeartbeatResponse(known=True)

    def unregister_worker(self, req: pb.UnregisterWorkerRequest) -> pb.UnregisterWorkerResponse:
        _require_id(req.worker_id, "worker_id")
        with self._tx() as conn:
            conn.execute("DELETE FROM replicas WHERE worker_id = ?", (req.worker_id,))
            conn.execute("DELETE FROM workers WHERE worker_id = ?", (req.worker_id,))
            self._live.pop(req.worker_id, None)
        return pb.UnregisterWorkerResponse()

    def list_workers(self, req: pb.ListWorkersRequest) -> pb.ListWorkersResponse:
        out = pb.ListWorkersResponse()
        with self._read() as conn:
            rows = conn.execute(
                """SELECT worker_id, address, p2p_address, build, registered_unix_ms,
                          last_heartbeat_unix_ms, stable_bytes_capacity
                   FROM workers ORDER BY worker_id"""
            ).fetchall()
            for wid, addr, p2p, build, reg_ms, hb_ms, cap in rows:
                alive = self._alive(wid)
                if not alive and not req.include_dead:
                    continue
                live = self._live.get(wid, _Liveness())
                out.workers.append(
                    pb.Worker(
                        worker_id=wid,
                        address=addr,
                        p2p_address=p2p,
                        build=build,
                        registered_unix_ms=reg_ms,
                        last_heartbeat_unix_ms=max(hb_ms, live.last_heartbeat_unix_ms),
                        stable_bytes_used=live.stable_bytes_used,
                        stable_bytes_capacity=cap,
                        active_transfers=live.active_transfers,
                        alive=alive,
                    )
                )
        return out

    def workers_alive(self) -> int:
        with self._read() as conn:
            ids = [r[0] for r in conn.execute("SELECT worker_id FROM workers")]
            return sum(1 for w in ids if self._alive(w))

    # -- artifacts and replicas ------------------------------------------

    def register_artifact(self, req: pb.RegisterArtifactRequest) -> pb.RegisterArtifactResponse:
        if not req.HasField("manifest"):
            raise _invalid("manifest is required")
        m = req.manifest
        validate_manifest(m)
        tier = _tier(req.tier)
        created_ms = m.created_unix_ms or self._wall_ms()
        with self._tx() as conn:
            if req.worker_id and not self._worker_exists(conn, req.worker_id):
                raise StoreError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"worker {req.worker_id} is not registered; call RegisterWorker first",
                )
            cur = conn.execute(
                """INSERT INTO artifacts (artifact_id, manifest, total_bytes, policy,
                       created_unix_ms) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (artifact_id) DO NOTHING""",
                (m.artifact_id, m.SerializeToString(), m.total_bytes, m.policy, created_ms),
            )
            created = cur.rowcount == 1
            if req.worker_id:
                self._add_replica(conn, m.artifact_id, req.worker_id, tier)
        return pb.RegisterArtifactResponse(created=created)

    def _add_replica(
        self, conn: sqlite3.Connection, artifact_id: str, worker_id: str, tier: int
    ) -> None:
        conn.execute(
            """INSERT INTO replicas (artifact_id, worker_id, tier, added_unix_ms)
               VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (artifact_id, worker_id, tier, self._wall_ms()),
        )

    def _manifest(self, conn: sqlite3.Connection, artifact_id: str) -> pb.ArtifactManifest:
        row = conn.execute(
            "SELECT manifest FROM artifacts WHERE artifact_id = ?", (artifact_id,)
        ).fetchone()
        if row is None:
            raise StoreError(grpc.StatusCode.NOT_FOUND, f"artifact {artifact_id} not found")
        return pb.ArtifactManifest.FromString(row[0])

    def _live_replicas(self, conn: sqlite3.Connection, artifact_id: str) -> list[pb.Replica]:
        rows = conn.execute(
            """SELECT r.worker_id, r.tier, w.p2p_address FROM replicas r
               JOIN workers w ON w.worker_id = r.worker_id
               WHERE r.artifact_id = ? ORDER BY r.tier, r.worker_id""",
            (artifact_id,),
        ).fetchall()
        out = []
        for wid, tier, p2p in rows:
            if not self._alive(wid):
                continue
            live = self._live.get(wid, _Liveness())
            out.append(
                pb.Replica(worker_id=wid, tier=tier, p2p_address=p2p, load=live.active_transfers)
            )
        return out

    def get_artifact(self, req: pb.GetArtifactRequest) -> pb.GetArtifactResponse:
        _require_id(req.artifact_id, "artifact_id")
        with self._read() as conn:
            manifest = self._manifest(conn, req.artifact_id)
            replicas = self._live_replicas(conn, req.artifact_id)
        return pb.GetArtifactResponse(manifest=manifest, replicas=replicas)

    def add_replica(self, req: pb.AddReplicaRequest) -> pb.AddReplicaResponse:
        _require_id(req.artifact_id, "artifact_id")
        _require_id(req.worker_id, "worker_id")
        tier = _tier(req.tier)
        with self._tx() as conn:
            self._manifest(conn, req.artifact_id)
            if not self._worker_exists(conn, req.worker_id):
                raise StoreError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"worker {req.worker_id} is not registered; call RegisterWorker first",
                )
            self._add_replica(conn, req.artifact_id, req.worker_id, tier)
        return pb.AddReplicaResponse()

    def remove_replica(self, req: pb.RemoveReplicaRequest) -> pb.RemoveReplicaResponse:
        _require_id(req.artifact_id, "artifact_id")
        _require_id(req.worker_id, "worker_id")
        with self._tx() as conn:
            if req.tier == pb.TIER_UNSPECIFIED:
                conn.execute(
                    "DELETE FROM replicas WHERE artifact_id = ? AND worker_id = ?",
                    (req.artifact_id, req.worker_id),
                )
            else:
                conn.execute(
                    "DELETE FROM replicas WHERE artifact_id = ? AND worker_id = ? AND tier = ?",
                    (req.artifact_id, req.worker_id, _tier(req.tier)),
                )
        return pb.RemoveReplicaResponse()

    def pick_source(self, req: pb.PickSourceRequest) -> pb.PickSourceResponse:
        _require_id(req.artifact_id, "artifact_id")
        with self._read() as conn:
            self._manifest(conn, req.artifact_id)
            replicas = self._live_replicas(conn, req.artifact_id)
            candidates = [r for r in replicas if r.worker_id != req.worker_id]
            if not candidates:
                who = f" other than worker {req.worker_id}" if req.worker_id else ""
                raise StoreError(
                    grpc.StatusCode.NOT_FOUND,
                    f"no live replica of artifact {req.artifact_id}{who}",
                )
            first = pb.TIER_DISK if req.prefer_disk else pb.TIER_MEMORY

            def rank(r: pb.Replica) -> tuple[int, int, str]:
                live = self._live.get(r.worker_id, _Liveness())
                return (0 if r.tier == first else 1, r.load + live.picks, r.worker_id)

            best = min(candidates, key=rank)
            self._live.setdefault(best.worker_id, _Liveness()).picks += 1
        return pb.PickSourceResponse(source=best)

    # -- keys -------------------------------------------------------------

    def put_key(self, req: pb.PutKeyRequest) -> pb.PutKeyResponse:
        _require_id(req.key, "key")
        _require_id(req.artifact_id, "artifact_id")
        now = self._wall_ms()
        with self._tx() as conn:
            if (
                conn.execute(
                    "SELECT 1 FROM artifacts WHERE artifact_id = ?", (req.artifact_id,)
                ).fetchone()
                is None
            ):
                raise StoreError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"artifact {req.artifact_id} is not registered; register it before "
                    f"mapping key {req.key!r} to it",
                )
            row = conn.execute("SELECT version FROM keys WHERE key = ?", (req.key,)).fetchone()
            current = 0 if row is None else int(row[0])
            if req.HasField("expected_version") and req.expected_version != current:
                raise StoreError(
                    grpc.StatusCode.ABORTED,
                    f"key {req.key!r} is at version {current}, expected {req.expected_version}",
                )
            last = conn.execute(
                "SELECT MAX(version) FROM key_history WHERE key = ?", (req.key,)
            ).fetchone()[0]
            version = max(current, int(last or 0)) + 1
            conn.execute(
                """INSERT INTO keys (key, version, artifact_id, updated_unix_ms)
                   VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET
                   version = excluded.version, artifact_id = excluded.artifact_id,
                   updated_unix_ms = excluded.updated_unix_ms""",
                (req.key, version, req.artifact_id, now),
            )
            conn.execute(
                "INSERT INTO key_history (key, version, artifact_id, updated_unix_ms) "
                "VALUES (?, ?, ?, ?)",
                (req.key, version, req.artifact_id, now),
            )
        return pb.PutKeyResponse(version=version)

    def get_key(self, req: pb.GetKeyRequest) -> pb.GetKeyResponse:
        _require_id(req.key, "key")
        with self._read() as conn:
            row = conn.execute(
                "SELECT version, artifact_id, updated_unix_ms FROM keys WHERE key = ?",
                (req.key,),
            ).fetchone()
            if row is None:
                raise StoreError(grpc.StatusCode.NOT_FOUND, f"key {req.key!r} not found")
            if req.version and req.version != row[0]:
                row = conn.execute(
                    "SELECT version, artifact_id, updated_unix_ms FROM key_history "
                    "WHERE key = ? AND version = ?",
                    (req.key, req.version),
                ).fetchone()
                if row is None:
                    raise StoreError(
                        grpc.StatusCode.NOT_FOUND,
                        f"key {req.key!r} has no version {req.version}",
                    )
        return pb.GetKeyResponse(
            key=req.key, version=row[0], artifact_id=row[1], updated_unix_ms=row[2]
        )

    def delete_key(self, req: pb.DeleteKeyRequest) -> pb.DeleteKeyResponse:
        _require_id(req.key, "key")
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM keys WHERE key = ?", (req.key,))
        return pb.DeleteKeyResponse(deleted=cur.rowcount > 0)

    def list_keys(self, req: pb.ListKeysRequest) -> pb.ListKeysResponse:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT key, version, artifact_id, updated_unix_ms FROM keys "
                "WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(req.prefix), req.prefix),
            ).fetchall()
        return pb.ListKeysResponse(
            keys=[
                pb.GetKeyResponse(key=k, version=v, artifact_id=a, updated_unix_ms=u)
                for k, v, a, u in rows
            ]
        )

    # -- status -----------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """(workers alive, artifacts, keys)."""
        with self._read() as conn:
            ids = [r[0] for r in conn.execute("SELECT worker_id FROM workers")]
            alive = sum(1 for w in ids if self._alive(w))
            artifacts = int(conn.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0])
            keys = int(conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0])
        return alive, artifacts, keys
