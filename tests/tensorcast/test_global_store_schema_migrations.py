"""The Global Store's metadata database: versioned migrations (an older
database opens and keeps its data; a newer one is refused) and durability
across a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2 as pb
from tensorwasm_tc.tensorcast.global_store.client import GlobalStoreClient, GlobalStoreError
from tensorwasm_tc.tensorcast.global_store.config import GlobalStoreConfig
from tensorwasm_tc.tensorcast.global_store.schema import (
    SCHEMA_VERSION,
    SchemaTooNewError,
    database_version,
    open_database,
)
from tensorwasm_tc.tensorcast.global_store.server import GlobalStoreServer
from tensorwasm_tc.tensorcast.global_store.store import MetadataStore

# A frozen copy of the version-1 schema as it shipped. Never edit it: it stands
# for databases already on disk.
V1_DDL = """
CREATE TABLE workers (
    worker_id             TEXT PRIMARY KEY,
    address               TEXT NOT NULL,
    p2p_address           TEXT NOT NULL,
    build                 TEXT NOT NULL,
    stable_bytes_capacity INTEGER NOT NULL DEFAULT 0,
    registered_unix_ms    INTEGER NOT NULL,
    last_heartbeat_unix_ms INTEGER NOT NULL
);
CREATE TABLE artifacts (
    artifact_id     TEXT PRIMARY KEY,
    manifest        BLOB NOT NULL,
    total_bytes     INTEGER NOT NULL,
    policy          TEXT NOT NULL,
    created_unix_ms INTEGER NOT NULL
);
CREATE TABLE replicas (
    artifact_id TEXT NOT NULL REFERENCES artifacts(artifact_id) ON DELETE CASCADE,
    worker_id   TEXT NOT NULL REFERENCES workers(worker_id) ON DELETE CASCADE,
    tier        INTEGER NOT NULL,
    added_unix_ms INTEGER NOT NULL,
    PRIMARY KEY (artifact_id, worker_id, tier)
);
CREATE TABLE keys (
    key             TEXT PRIMARY KEY,
    version         INTEGER NOT NULL,
    artifact_id     TEXT NOT NULL,
    updated_unix_ms INTEGER NOT NULL
);
PRAGMA user_version = 1;
"""


def make_v1_database(path: Path) -> None:
    m = pb.ArtifactManifest(artifact_id="a1", total_bytes=16, policy="durable")
    conn = sqlite3.connect(path)
    conn.executescript(V1_DDL)
    conn.execute("INSERT INTO workers VALUES ('w1', 'h1:50052', 'h1:50053', 'old-build', 0, 1, 1)")
    conn.execute(
        "INSERT INTO artifacts VALUES ('a1', ?, 16, 'durable', 1)", (m.SerializeToString(),)
    )
    conn.execute("INSERT INTO replicas VALUES ('a1', 'w1', 2, 1)")
    conn.execute("INSERT INTO keys VALUES ('model:latest', 3, 'a1', 1234)")
    conn.commit()
    conn.close()


def test_current_store_opens_a_version_1_database_and_keeps_its_data(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    make_v1_database(db)
    store = MetadataStore(str(db))
    try:
        assert database_version(store.conn) == SCHEMA_VERSION
        key = store.get_key(pb.GetKeyRequest(key="model:latest"))
        assert (key.artifact_id, key.version, key.updated_unix_ms) == ("a1", 3, 1234)
        # the mapping that predates key history is its own history entry
        assert store.get_key(pb.GetKeyRequest(key="model:latest", version=3)).artifact_id == "a1"
        assert store.put_key(pb.PutKeyRequest(key="model:latest", artifact_id="a1")).version == 4
        assert store.get_artifact(pb.GetArtifactRequest(artifact_id="a1")).manifest.policy == (
            "durable"
        )
        # the worker is known (its heartbeat says so) and its disk replica comes back
        assert store.heartbeat(pb.HeartbeatRequest(worker_id="w1")).known is True
        (rep,) = store.get_artifact(pb.GetArtifactRequest(artifact_id="a1")).replicas
        assert (rep.worker_id, rep.tier) == ("w1", pb.TIER_DISK)
    finally:
        store.close()


def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    open_database(db).close()
    conn = open_database(db)
    assert database_version(conn) == SCHEMA_VERSION
    conn.close()


def test_a_database_from_a_newer_global_store_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    open_database(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNewError, match=r"newer than this Global Store supports"):
        open_database(db)
    # refusing must not touch the database
    conn = sqlite3.connect(db)
    assert database_version(conn) == SCHEMA_VERSION + 1
    conn.close()


def test_database_uses_wal(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "w.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_restart_keeps_workers_artifacts_replicas_and_keys(tmp_path: Path) -> None:
    cfg = GlobalStoreConfig(
        listen_port=0, metrics_port=-1, database_path=str(tmp_path / "db"), shutdown_grace_ms=0
    )
    first = GlobalStoreServer(cfg, build="b")
    first.start()
    try:
        c = GlobalStoreClient(first.address)
        c.register_worker(worker_id="w1", address="h:1", p2p_address="h:2")
        c.register_artifact(
            manifest=pb.ArtifactManifest(artifact_id="a1", total_bytes=8),
            worker_id="w1",
            tier=pb.TIER_DISK,
        )
        c.put_key(key="k", artifact_id="a1")
        c.put_key(key="k", artifact_id="a1")
        c.close()
    finally:
        first.stop(0)

    second = GlobalStoreServer(cfg, build="b")
    second.start()
    try:
        c = GlobalStoreClient(second.address)
        assert c.get_key(key="k").version == 2
        assert c.get_key(key="k", version=1).artifact_id == "a1"
        # after a restart a worker is dead until it heartbeats again
        assert list(c.get_artifact(artifact_id="a1").replicas) == []
        with pytest.raises(GlobalStoreError):
            c.pick_source(artifact_id="a1", worker_id="w9")
        assert c.heartbeat(worker_id="w1").known is True
        assert c.pick_source(artifact_id="a1", worker_id="w9").source.worker_id == "w1"
        st = c.get_status()
        assert (st.workers_alive, st.artifacts, st.keys) == (1, 1, 1)
        c.close()
    finally:
        second.stop(0)
