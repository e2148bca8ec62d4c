"""The startup guide's patterns with the real Store Daemon process: connect
to a running daemon found through its session, create (owner start/stop,
zero-copy get over the Unix socket), auto from 20 processes at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorwasm_tc.tensorcast as tc
from tensorwasm_tc.tensorcast import sessions, startup

from tests.tensorcast.test_sdk_startup_modes import REPO, run_auto

READY_TIMEOUT_S = 60.0


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    h = tmp_path / "tc-home"
    monkeypatch.setenv("TENSORCAST_HOME", str(h))
    monkeypatch.delenv(startup.DAEMON_MODULE_ENV, raising=False)
    monkeypatch.delenv(startup.DAEMON_CONFIG_ENV, raising=False)
    yield h
    tc.shutdown()
    for rec in sessions.live_sessions(home=h):  # nothing may outlive the test
        os.kill(rec.pid, signal.SIGKILL)


@pytest.fixture
def daemon_config(tmp_path: Path) -> Path:
    p = tmp_path / "daemon.yaml"
    p.write_text("listen_port: 0\np2p_port: 0\nmemory_tiers:\n  stable_bytes: 67108864\n")
    return p


@pytest.fixture
def running_daemon(home: Path, daemon_config: Path, tmp_path: Path) -> Iterator[str]:
    """A daemon started the way an operator does (its own process, not
    owned by the SDK); yields its session id."""
    sid = "operator-daemon"
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            startup.DAEMON_MODULE,
            "--config",
            str(daemon_config),
            "--session-id",
            sid,
            "--global-store-mode",
            "none",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TENSORCAST_HOME": str(home)},
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not any(r.session_id == sid for r in sessions.live_sessions("daemon", home=home)):
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            assert time.monotonic() < deadline, "daemon not ready"
            time.sleep(0.05)
        yield sid
    finally:
        tc.shutdown()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


TENSORS = {
    "w": np.arange(64 * 1024, dtype=np.float32).reshape(256, 256),
    "b": np.arange(7, dtype=np.int64),
}


def test_connect_to_an_operator_started_daemon(running_daemon: str) -> None:
    ctx = tc.init(mode="connect", show_daemon_logs=False)
    assert ctx.daemon_session_id == running_daemon
    assert ctx.is_owner is False
    assert ctx.socket_path  # same host: the fd channel is used
    artifact_id = tc.put(TENSORS, key="model:latest")
    got = tc.get("model:latest")
    np.testing.assert_array_equal(got["w"], TENSORS["w"])
    assert tc.get(artifact_id)["b"].tolist() == list(range(7))
    assert not got["w"].flags.writeable  # a read-only view of the daemon's memory
    tc.shutdown()
    # A non-owner leaves the daemon running.
    assert any(r.session_id == running_daemon for r in sessions.live_sessions("daemon"))


def test_create_owns_the_daemon_and_shutdown_stops_it(home: Path, daemon_config: Path) -> None:
    ctx = tc.init(
        mode="create",
        daemon_config_path=daemon_config,
        port_config=tc.PortConfig(daemon_listen_port=0, daemon_p2p_port=0),
        show_daemon_logs=False,
    )
    assert ctx.is_owner
    [rec] = sessions.live_sessions("daemon", home=home)
    assert rec.address == ctx.address
    assert rec.owner_pid == os.getpid()
    tc.register(TENSORS, key="k")
    target = {"w": np.empty((256, 256), dtype=np.float32)}
    tc.get_into("k", target)
    np.testing.assert_array_equal(target["w"], TENSORS["w"])
    tc.shutdown()
    assert not sessions.pid_alive(rec.pid)
    assert sessions.live_sessions("daemon", home=home) == []


@pytest.mark.slow
def test_twenty_auto_processes_share_one_real_daemon(home: Path, daemon_config: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    out = run_auto(home, daemon_config, [0] * 20, daemon_module=None)
    assert [r for r in out if r[0] != "ok"] == []
    assert len({r[1] for r in out}) == 1
    assert sum(1 for r in out if r[2]) == 1
    deadline = time.monotonic() + 15
    while sessions.live_sessions("daemon", home=home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sessions.live_sessions("daemon", home=home) == []


def test_create_with_global_store_start_wires_the_daemon_to_it(
    home: Path, daemon_config: Path
) -> None:
    ctx = tc.init(
        mode="create",
        daemon_config_path=daemon_config,
        global_store_mode="start",
        port_config=tc.PortConfig(0, 0, global_store_listen_port=0, global_store_metrics_port=0),
        show_daemon_logs=False,
    )
    [gs] = sessions.live_sessions("global_store", home=home)
    status = ctx.client.status()
    assert status.global_store_connected
    assert status.global_store_address == gs.address
    tc.put(TENSORS, key="model:latest")
    assert tc.get("model:latest")["b"].tolist() == list(range(7))
    tc.shutdown()
    assert sessions.live_sessions(home=home) == []
