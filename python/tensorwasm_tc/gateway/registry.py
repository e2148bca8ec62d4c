"""Gateway state: deployed functions and async jobs in SQLite (WAL) under
``$TENSOR_WASM_HOME/gateway/registry.db``, plus what lives only in this
process (compiled functions, persistent instances).

Every write is one committed transaction before the response goes out, so a
restart (or a crash) loses no deployed function and no finished job. Jobs
that were pending or running when the process died are marked failed with
kind ``interrupted`` when the registry opens. Tenant ids are u64 and stored
as text (SQLite integers are signed 64-bit).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from tensorwasm_tc import Function, Instance, _core

log = logging.getLogger("tensorwasm_tc.gateway")

SCHEMA_VERSION: Final = 1
_MIGRATIONS: Final = {
    1: [
        """CREATE TABLE functions (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            module_hash TEXT NOT NULL,
            wasm BLOB NOT NULL,
            limits TEXT NOT NULL,
            artifacts TEXT NOT NULL,
            init_export TEXT,
            exports TEXT NOT NULL,
            created_unix_ms INTEGER NOT NULL
        )""",
        "CREATE INDEX functions_tenant ON functions (tenant_id)",
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            function_id TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            status TEXT NOT NULL,
            response TEXT,
            error TEXT,
            created_unix_ms INTEGER NOT NULL,
            finished_unix_ms INTEGER
        )""",
        "CREATE INDEX jobs_status ON jobs (status)",
    ],
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(slots=True)
class FunctionRecord:
    id: str
    name: str
    tenant_id: int
    module_hash: str
    limits: dict[str, int]
    artifacts: dict[str, str]
    init_export: str | None
    exports: dict[str, Any]
    created_unix_ms: int
    fn: Function | None = None
    # Kept in memory for functions bound to artifacts: they are loaded again
    # whenever a key moves to another artifact.
    wasm: bytes | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tenant_id": self.tenant_id,
            "module_hash": self.module_hash,
            "exports": self.exports,
            "limits": self.limits,
            "artifacts": self.artifacts,
            "init_export": self.init_export,
            "created_unix_ms": self.created_unix_ms,
        }


@dataclass(slots=True)
class InstanceRecord:
    id: str
    function_id: str
    tenant_id: int
    instance: Instance
    created_unix_ms: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    def public(self) -> dict[str, Any]:
        return {
            "instance_id": self.id,
            "function_id": self.function_id,
            "tenant_id": self.tenant_id,
            "created_unix_ms": self.created_unix_ms,
        }


class Registry:
    def __init__(self, home: Path, table: _core.FunctionTable | None = None) -> None:
        directory = home / "gateway"
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "registry.db"
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self.functions: dict[str, FunctionRecord] = {}
        # The functions the native front may invoke itself (see `publish`).
        self.table = table
        self.instances: dict[str, InstanceRecord] = {}
        self.jobs_in_flight = 0
        self.interrupted_at_open = self._interrupt_unfinished()

    # --- schema -----------------------------------------------------------

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path.name} has schema version {version}, newer than this "
                    f"release's {SCHEMA_VERSION}; run the newer release or restore a backup"
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[v]:
                    db.execute(stmt)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _interrupt_unfinished(self) -> int:
        error = orjson.dumps(
            {"kind": "interrupted", "message": "the server stopped before this job finished"}
        ).decode()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished_unix_ms = ? "
                "WHERE status IN ('pending', 'running')",
                (error, now_ms()),
            )
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()

    # --- functions --------------------------------------------------------

    def stored_functions(self) -> Iterator[tuple[FunctionRecord, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, tenant_id, module_hash, limits, artifacts, init_export, "
                "exports, created_unix_ms, wasm FROM functions ORDER BY created_unix_ms"
            ).fetchall()
        for row in rows:
            yield (
                FunctionRecord(
                    id=row[0],
                    name=row[1],
                    tenant_id=int(row[2]),
                    module_hash=row[3],
                    limits=orjson.loads(row[4]),
                    artifacts=orjson.loads(row[5]),
                    init_export=row[6],
                    exports=orjson.loads(row[7]),
                    created_unix_ms=row[8],
                ),
                bytes(row[9]),
            )

    def add_function(self, rec: FunctionRecord, wasm: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO functions (id, name, tenant_id, module_hash, wasm, limits, "
                "artifacts, init_export, exports, created_unix_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.id,
                    rec.name,
                    str(rec.tenant_id),
                    rec.module_hash,
                    wasm,
                    orjson.dumps(rec.limits).decode(),
                    orjson.dumps(rec.artifacts).decode(),
                    rec.init_export,
                    orjson.dumps(rec.exports).decode(),
                    rec.created_unix_ms,
                ),
            )
        self.publish(rec)

    def publish(self, rec: FunctionRecord) -> None:
        """Makes a stored (or just loaded) function servable. One bound to
        artifacts stays out of the front's table: it is loaded against the
        artifacts of the moment on every invoke, which only the app does."""
        self.functions[rec.id] = rec
        if self.table is not None and rec.fn is not None and not rec.artifacts:
            self.table.insert(rec.id, rec.tenant_id, rec.fn._inner)

    def remove_function(self, function_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM functions WHERE id = ?", (function_id,))
        if self.table is not None:
            self.table.remove(function_id)
        self.functions.pop(function_id, None)
        for iid in [i.id for i in self.instances.values() if i.function_id == function_id]:
            rec = self.instances.pop(iid)
            rec.instance.close()

    # --- jobs -------------------------------------------------------------

    def add_job(self, job_id: str, function_id: str, tenant_id: int, created: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, function_id, tenant_id, status, created_unix_ms) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (job_id, function_id, str(tenant_id), created),
            )

    def job_running(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET status = 'running' WHERE id = ? AND status = 'pending'",
                (job_id,),
            )

    def finish_job(
        self, job_id: str, response: dict[str, Any] | None, error: dict[str, str] | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET status = ?, response = ?, error = ?, finished_unix_ms = ? "
                "WHERE id = ?",
                (
                    "failed" if error else "completed",
                    None if response is None else orjson.dumps(response).decode(),
                    None if error is None else orjson.dumps(error).decode(),
                    now_ms(),
                    job_id,
                ),
            )

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, function_id, tenant_id, status, response, error, created_unix_ms, "
                "finished_unix_ms FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
        if row is None:
            return None
        job: dict[str, Any] = {
            "id": row[0],
            "function_id": row[1],
            "tenant_id": int(row[2]),
            "status": row[3],
            "created_unix_ms": row[6],
        }
        if row[4] is not None:
            response = orjson.loads(row[4])
            job["result"] = response["result"]
            job["outputs"] = response["outputs"]
            job["stdout"] = response["stdout"]
            job["duration_ms"] = response["duration_ms"]
        if row[5] is not None:
            job["error"] = orjson.loads(row[5])
        if row[7] is not None:
            job["finished_unix_ms"] = row[7]
        return job

    def unfinished_jobs(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE status IN ('pending', 'running')"
            ).fetchall()
        return [r[0] for r in rows]

    def interrupt_jobs(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self.finish_job(
                job_id,
                None,
                {"kind": "interrupted", "message": "the server stopped before this job finished"},
            )
