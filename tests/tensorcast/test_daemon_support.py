"""Real Store Daemon and Global Store processes for the daemon tests: each
on free loopback ports, under its own TENSORCAST_HOME, always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tensorwasm_tc.tensorcast.daemon.client import DaemonClient
from tensorwasm_tc.tensorcast.sessions import SessionRecord

READY_TIMEOUT_S = 30.0


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    rec: SessionRecord
    log_path: Path
    home: Path
    clients: list[DaemonClient] = field(default_factory=list)

    def client(self, session_id: str | None = "test") -> DaemonClient:
        c = DaemonClient(self.rec.address, self.rec.socket_path, session_id=session_id)
        self.clients.append(c)
        return c

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        for c in self.clients:
            with contextlib.suppress(Exception):
                c.close()
        self.clients.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def _wait_session(
    home: Path, session_id: str, proc: subprocess.Popen[bytes], log: Path
) -> SessionRecord:
    path = home / "store_sessions" / f"{session_id}.json"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists():
            with contextlib.suppress(ValueError, OSError):
                return SessionRecord.from_json(json.loads(path.read_text()))
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"not ready within {READY_TIMEOUT_S} s:\n{log.read_text()}")


class Cluster:
    """Starts processes and stops every one of them at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: list[Proc] = []
        self._n = 0

    def env(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["TENSORCAST_HOME"] = str(home)
        return env

    def global_store(self, home: Path | None = None) -> Proc:
        self._n += 1
        home = home or self.tmp / "home"
        cfg = self.tmp / f"gs{self._n}.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "global_store": {
                        "listen": {"host": "127.0.0.1", "port": 0},
                        "metrics": {"port": -1},
                        "database": {"path": str(self.tmp / f"gs{self._n}.db")},
                        "heartbeat": {"interval_ms": 500, "timeout_ms": 5000},
                    }
                }
            )
        )
        sid = f"gs{self._n}"
        log = self.tmp / f"{sid}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tensorwasm_tc.tensorcast.global_store",
                 "--config", str(cfg),
                 "--listen-port", "0", "--metrics-port", "-1", "--session-id", sid],
                stdout=out, stderr=subprocess.STDOUT, env=self.env(home),
            )  # fmt: skip
        p = Proc(proc, _wait_session(home, sid, proc, log), log, home)
        self.procs.append(p)
        return p

    def daemon(
        self,
        *,
        name: str | None = None,
        home: Path | None = None,
        config: dict[str, Any] | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        self._n += 1
        name = name or f"d{self._n}"
        home = home or self.tmp / "home"
        raw: dict[str, Any] = {
            "listen_port": 0,
            "p2p_port": 0,
            "storage_path": str(self.tmp / f"storage-{name}"),
            "worker_id": f"worker-{name}",
            "memory_tiers": {"stable_bytes": 64 << 20},
        }
        raw.update(config or {})
        cfg = self.tmp / f"{name}-{self._n}.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        log = self.tmp / f"{name}-{self._n}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tensorwasm_tc.tensorcast.daemon", "--config", str(cfg),
                 "--session-id", name, *(args or [])],
                stdout=out, stderr=subprocess.STDOUT, env={**self.env(home), **(env or {})},
            )  # fmt: skip
        p = Proc(proc, _wait_session(home, name, proc, log), log, home)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
