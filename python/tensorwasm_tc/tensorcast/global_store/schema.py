"""The Global Store's SQLite schema and its migrations.

The schema version lives in ``PRAGMA user_version``. `MIGRATIONS` is an
ordered, append-only list: migration *n* takes a database from version
*n - 1* to *n*. Opening a database applies every missing migration in one
transaction, so a crash mid-upgrade leaves the old version intact.

Policy (backward compatible): a released migration is never edited or
removed; a new release only appends. A newer Global Store therefore opens any
older database; a database written by a newer Global Store (version greater
than `SCHEMA_VERSION`) is refused with `SchemaTooNewError` instead of being
misread.

Durability: WAL journal with ``synchronous=FULL``: every acknowledged write
(a key put, a replica) survives a power loss. Heartbeats are not written to
the database (see ``store.py``), so the fsync per commit stays off the
hottest path.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

#: v1: workers, artifacts, replicas, keys (latest mapping only).
_V1: Final = """
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
"""

#: v2: every put of a key is kept (GetKey(version=N)); versions are never
#: reused, even after a delete. Existing mappings become their own history.
_V2: Final = """
CREATE TABLE key_history (
    key             TEXT NOT NULL,
    version         INTEGER NOT NULL,
    artifact_id     TEXT NOT NULL,
    updated_unix_ms INTEGER NOT NULL,
    PRIMARY KEY (key, version)
);
INSERT INTO key_history (key, version, artifact_id, updated_unix_ms)
    SELECT key, version, artifact_id, updated_unix_ms FROM keys;
CREATE INDEX replicas_by_worker ON replicas (worker_id);
"""

#: Append-only. Index i holds the migration to version i + 1.
MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2)

SCHEMA_VERSION: Final = len(MIGRATIONS)


class SchemaError(RuntimeError):
    """The database cannot be used by this Global Store."""


class SchemaTooNewError(SchemaError):
    """The database was written by a newer Global Store."""


def database_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def migrate(conn: sqlite3.Connection) -> int:
    """Brings ``conn``'s database to `SCHEMA_VERSION`; returns the version it
    had before. Refuses a database newer than this code."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = database_version(conn)
        if current > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"metadata database schema version {current} is newer than this Global "
                f"Store supports ({SCHEMA_VERSION}); upgrade tensorwasm_tc or point "
                "database.path at another file"
            )
        if current < 0:
            raise SchemaError(f"metadata database has an invalid schema version {current}")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for stmt in _split(MIGRATIONS[version - 1]):
                conn.execute(stmt)
            # PRAGMA takes no parameters; the value is our own integer.
            conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current


def open_database(path: str | Path) -> sqlite3.Connection:
    """Opens (creating if needed) and migrates the metadata database.

    The connection is in autocommit mode (``isolation_level=None``): callers
    open transactions explicitly with ``BEGIN IMMEDIATE``.
    """
    p = str(path)
    if p != ":memory:":
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(p, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn)
    except sqlite3.DatabaseError as e:
        conn.close()
        raise SchemaError(f"cannot open metadata database {p}: {e}") from e
    except BaseException:
        conn.close()
        raise
    return conn
