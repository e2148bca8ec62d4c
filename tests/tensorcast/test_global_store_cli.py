"""`tensorcast-cli global start|status|stop` and the Global Store process
(``python -m tensorwasm_tc.tensorcast.global_store``): real processes on
loopback, each test under its own TENSORCAST_HOME, every process stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tensorwasm_tc.tensorcast.global_store import find_running
from tensorwasm_tc.tensorcast.global_store.client import GlobalStoreClient
from tensorwasm_tc.tensorcast.global_store.schema import SCHEMA_VERSION, open_database
from tensorwasm_tc.tensorcast.sessions import SessionRecord, live_sessions

READY_TIMEOUT_S = 30.0
CLI = [sys.executable, "-c", "from tensorwasm_tc.cli.tensorcast import main; main()"]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    # whatever a test left running under its home is killed
    for rec in live_sessions("global_store", home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, signal.SIGKILL)


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {**os.environ, "TENSORCAST_HOME": str(home)}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "global_store_config.yaml"
    path.write_text(
        "global_store:\n"
        "  listen: {host: 127.0.0.1, port: 0}\n"
        "  metrics: {port: 0}\n"
        f"  database: {{path: {tmp_path / 'metadata.db'}}}\n"
        "  server: {shutdown_grace_ms: 500}\n"
    )
    return path


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited process its parent has not reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "global", *args], env=env, capture_output=True, text=True, timeout=60
    )


def wait_for_session(home: Path, session_id: str, proc: subprocess.Popen[bytes]) -> SessionRecord:
    path = home / "store_sessions" / f"{session_id}.json"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the Global Store exited during startup"
        if path.exists():
            return SessionRecord.from_json(json.loads(path.read_text()))
        time.sleep(0.05)
    raise AssertionError("the Global Store wrote no session record")


@pytest.fixture
def spawn(env: dict[str, str], config: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def run(session_id: str, *extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorwasm_tc.tensorcast.global_store",
                "--config",
                str(config),
                "--session-id",
                session_id,
                *extra,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield run
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def test_cli_start_status_stop(env: dict[str, str], home: Path, config: Path) -> None:
    started = cli(env, "start", f"--config={config}")
    assert started.returncode == 0, started.stderr
    address = started.stdout.strip()
    assert address.startswith("127.0.0.1:")

    rec = find_running(home)
    assert rec is not None and rec.address == address and rec.kind == "global_store"
    assert rec.metrics_address and rec.build and rec.config_hash

    st = cli(env, "status", "--json")
    assert st.returncode == 0, st.stderr
    body = json.loads(st.stdout)
    assert body["running"] is True
    (store,) = body["stores"]
    assert (store["address"], store["healthy"], store["schema_version"]) == (
        address,
        True,
        SCHEMA_VERSION,
    )
    metrics = httpx.get(f"http://{rec.metrics_address}/metrics", timeout=5).text
    assert "tc_global_store_workers_alive" in metrics

    again = cli(env, "start", f"--config={config}")
    assert again.returncode != 0
    assert f"a Global Store is already running at {address}" in again.stderr

    stopped = cli(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert find_running(home) is None
    assert not list((home / "store_sessions").glob("*.json"))
    assert not running(rec.pid)
    gone = cli(env, "status")
    assert gone.returncode == 1
    assert "no Global Store is running" in gone.stdout


def test_process_stops_on_sigterm_and_a_restart_keeps_the_data(
    home: Path, config: Path, spawn: object
) -> None:
    proc = spawn("gs", "--listen-port", "0")  # type: ignore[operator]
    rec = wait_for_session(home, "gs", proc)
    assert rec.pid == proc.pid
    c = GlobalStoreClient(rec.address)
    c.register_worker(worker_id="w1", address="h:1")
    c.register_artifact(manifest={"artifact_id": "a1", "total_bytes": 4}, worker_id="w1")
    c.put_key(key="model:latest", artifact_id="a1")
    c.close()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert not (home / "store_sessions" / "gs.json").exists()

    proc = spawn("gs2")  # type: ignore[operator]
    rec = wait_for_session(home, "gs2", proc)
    c = GlobalStoreClient(rec.address)
    assert c.get_key(key="model:latest").artifact_id == "a1"
    assert c.get_status().artifacts == 1
    c.close()


def test_process_exits_when_its_owner_is_gone(home: Path, config: Path, spawn: object) -> None:
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = spawn("owned", "--owner-pid", str(owner.pid))  # type: ignore[operator]
        wait_for_session(home, "owned", proc)
    finally:
        owner.kill()
        owner.wait(10)
    assert proc.wait(15) == 0
    assert not (home / "store_sessions" / "owned.json").exists()


def test_start_reports_a_database_from_a_newer_store(
    env: dict[str, str], tmp_path: Path, config: Path
) -> None:
    open_database(tmp_path / "metadata.db").close()
    conn = sqlite3.connect(tmp_path / "metadata.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    res = cli(env, "start", f"--config={config}")
    assert res.returncode != 0
    assert "newer than this Global Store supports" in res.stderr


def test_start_rejects_a_bad_config(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("global_store:\n  listen: {port: 70000}\n")
    res = cli(env, "start", f"--config={bad}")
    assert res.returncode != 0
    assert "listen_port must be in [0, 65535]" in res.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("global_store:\n  heartbeat_timeout: 5\n")
    res = cli(env, "start", f"--config={typo}")
    assert "unknown config key heartbeat_timeout" in res.stderr
