"""Session files: how processes on one host find their Store Daemon and
Global Store.

``$TENSORCAST_HOME`` (default ``~/.tensorcast``) holds
``store_sessions/<session_id>.json``, one file per running daemon or Global
Store, written by that process when it is ready to serve and removed when it
stops. Entries whose process is gone are removed by the next reader, so
deleting the directory is always safe: running processes' files come back
when they next refresh them (on their next heartbeat tick).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["daemon", "global_store"]


def tensorcast_home(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    raw = env.get("TENSORCAST_HOME", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".tensorcast"


def session_dir(home: Path | None = None) -> Path:
    return (home or tensorcast_home()) / "store_sessions"


@dataclass(slots=True)
class SessionRecord:
    session_id: str
    kind: Kind
    address: str  # gRPC host:port
    pid: int
    config_hash: str = ""
    build: str = ""
    p2p_address: str = ""  # daemons only
    socket_path: str = ""  # daemons only: the Unix socket for fd passing
    metrics_address: str = ""  # Global Store only
    global_store_address: str = ""  # daemons: the store they are connected to
    started_unix_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    owner_pid: int = 0  # the SDK process that started it (create/auto), else 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def pid_alive(pid: int) -> bool:
    """Running and not a zombie (a zombie has exited; only its parent's wait
    is due)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def write_session(rec: SessionRecord, home: Path | None = None) -> Path:
    """Writes (atomically) the record of a process that is ready to serve."""
    d = session_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{rec.session_id}.json"
    tmp = d / f".{rec.session_id}.json.tmp-{os.getpid()}"
    tmp.write_text(rec.to_json())
    os.replace(tmp, path)
    return path


def remove_session(session_id: str, home: Path | None = None) -> None:
    with contextlib.suppress(FileNotFoundError):
        (session_dir(home) / f"{session_id}.json").unlink()


def live_sessions(kind: Kind | None = None, home: Path | None = None) -> list[SessionRecord]:
    """Records of running processes, newest first; stale files are removed."""
    d = session_dir(home)
    out: list[SessionRecord] = []
    if not d.is_dir():
        return out
    for path in d.glob("*.json"):
        try:
            rec = SessionRecord.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if not pid_alive(rec.pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if kind is None or rec.kind == kind:
            out.append(rec)
    out.sort(key=lambda r: r.started_unix_ms, reverse=True)
    return out
