"""`init` modes connect / create / auto, config resolution, one client per
process, and owner cleanup, against stand-in daemons (in-process gRPC stubs,
or ``tests.tensorcast._stub_daemon`` launched the way the real daemon is)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import tensorwasm_tc.tensorcast as tc
from tensorwasm_tc.tensorcast import sessions, startup
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import (
    global_store_pb2,
    global_store_pb2_grpc,
)

from tests.tensorcast._stub_daemon import StubDaemon

REPO = Path(__file__).resolve().parents[2]
STUB_MODULE = "tests.tensorcast._stub_daemon"
FREE_PORTS = tc.PortConfig(daemon_listen_port=0, daemon_p2p_port=0)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TENSORCAST_HOME of this test only; the stub daemon stands in for the
    real one; whatever init did is undone."""
    h = tmp_path / "tc-home"
    monkeypatch.setenv("TENSORCAST_HOME", str(h))
    monkeypatch.setenv(startup.DAEMON_MODULE_ENV, STUB_MODULE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv(startup.DAEMON_CONFIG_ENV, raising=False)
    yield h
    tc.shutdown()


@pytest.fixture
def stub() -> Iterator[StubDaemon]:
    s = StubDaemon().start()
    yield s
    s.stop()


@pytest.fixture
def daemon_config(tmp_path: Path) -> Path:
    p = tmp_path / "daemon.yaml"
    p.write_text("listen_port: 0\np2p_port: 0\n")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record_for(stub: StubDaemon, session_id: str, started_ms: int = 0) -> sessions.SessionRecord:
    rec = sessions.SessionRecord(
        session_id=session_id, kind="daemon", address=stub.address, pid=os.getpid()
    )
    if started_ms:
        rec.started_unix_ms = started_ms
    return rec


# --------------------------------------------------------------------------- connect


def test_connect_without_a_session_fails_with_no_local_daemon(home: Path) -> None:
    with pytest.raises(tc.ArtifactError, match="No local daemon session found") as info:
        tc.init(mode="connect")
    assert info.value.status_code == "FAILED_PRECONDITION"
    assert info.value.retryable is False


def test_connect_to_an_address_attaches_without_owning(stub: StubDaemon) -> None:
    ctx = tc.init(mode="connect", address=stub.address, show_daemon_logs=False)
    assert ctx.address == stub.address
    assert ctx.is_owner is False
    assert ctx.session_id
    assert tc.current() is ctx


def test_connect_finds_the_newest_live_session(home: Path, stub: StubDaemon) -> None:
    other = StubDaemon().start()
    try:
        sessions.write_session(record_for(other, "older", started_ms=1000), home)
        sessions.write_session(record_for(stub, "newer", started_ms=2000), home)
        dead = sessions.SessionRecord(
            session_id="dead", kind="daemon", address="127.0.0.1:1", pid=2**22 + 7
        )
        dead.started_unix_ms = 3000
        sessions.write_session(dead, home)
        ctx = tc.init(mode="connect")
        assert ctx.address == stub.address
        assert ctx.daemon_session_id == "newer"
        # The dead process's record was dropped on the way.
        assert not (sessions.session_dir(home) / "dead.json").exists()
    finally:
        other.stop()


def test_connect_to_an_unreachable_address_is_unavailable() -> None:
    with pytest.raises(tc.ArtifactError) as info:
        tc.init(mode="connect", address="127.0.0.1:1")
    assert info.value.status_code == "UNAVAILABLE"
    assert info.value.retryable is True


def test_connect_ignores_ports_and_global_store_arguments_with_a_log_line(
    stub: StubDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tensorwasm_tc.tensorcast.startup"):
        tc.init(
            mode="connect",
            address=stub.address,
            port_config=tc.PortConfig(daemon_listen_port=1234),
            global_store_mode="connect",
            global_store_address="127.0.0.1:50051",
        )
    text = caplog.text
    assert "port_config is ignored in connect mode" in text
    assert "global_store_* arguments are ignored in connect mode" in text


def test_second_init_same_address_returns_the_same_context(stub: StubDaemon) -> None:
    first = tc.init(mode="connect", address=stub.address)
    assert tc.init(mode="connect", address=stub.address) is first
    assert tc.init(mode="connect") is first


def test_second_client_to_another_address_is_refused(stub: StubDaemon) -> None:
    other = StubDaemon().start()
    try:
        tc.init(mode="connect", address=stub.address)
        with pytest.raises(tc.ArtifactError) as info:
            tc.init(mode="connect", address=other.address)
        assert "client already initialized for address" in str(info.value)
        assert "refusing second client" in str(info.value)
        assert info.value.status_code == "FAILED_PRECONDITION"
        tc.shutdown()  # after shutdown, switching is allowed
        assert tc.init(mode="connect", address=other.address).address == other.address
    finally:
        tc.shutdown()
        other.stop()


def test_verbs_before_init_fail_with_failed_precondition() -> None:
    tc.shutdown()
    with pytest.raises(tc.ArtifactError, match="not initialized") as info:
        tc.get("model:v1")
    assert info.value.status_code == "FAILED_PRECONDITION"


def test_invalid_mode_is_an_invalid_argument() -> None:
    with pytest.raises(tc.ArtifactError) as info:
        tc.init(mode="sideways")  # type: ignore[arg-type]
    assert info.value.status_code == "INVALID_ARGUMENT"
    with pytest.raises(tc.ArtifactError):
        tc.init(mode="connect", global_store_mode="maybe")  # type: ignore[arg-type]


# ------------------------------------------------------------------ config resolution


def test_config_resolution_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemon_config: Path
) -> None:
    from_env = tmp_path / "env.yaml"
    from_env.write_text("listen_port: 0\n")
    monkeypatch.setenv(startup.DAEMON_CONFIG_ENV, str(from_env))
    assert startup.find_daemon_config(daemon_config) == daemon_config.resolve()
    assert startup.find_daemon_config() == from_env.resolve()
    monkeypatch.delenv(startup.DAEMON_CONFIG_ENV)
    packaged = startup.find_daemon_config()
    assert packaged.name == "store_daemon_config.yaml"
    assert packaged.is_file()


def test_packaged_config_is_found_outside_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert startup.find_daemon_config().is_file()
    assert startup.find_global_store_config().is_file()


def test_bundled_copy_is_a_candidate() -> None:
    candidates = [str(p) for p in startup._config_candidates("store_daemon_config.yaml")]
    assert any("_bundled" in c for c in candidates), candidates


def test_missing_explicit_config_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(tc.ArtifactError) as info:
        tc.init(mode="create", daemon_config_path=tmp_path / "nope.yaml")
    assert info.value.status_code == "NOT_FOUND"


def test_no_config_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "_config_candidates", lambda name: iter(()))
    with pytest.raises(tc.ArtifactError, match="no Store Daemon config found") as info:
        tc.init(mode="create")
    assert info.value.status_code == "FAILED_PRECONDITION"
    assert "TENSORCAST_DAEMON_CONFIG" in str(info.value)


# --------------------------------------------------------------------------- create


def test_create_starts_owns_and_stops_a_daemon(home: Path, daemon_config: Path) -> None:
    ctx = tc.init(
        mode="create",
        daemon_config_path=daemon_config,
        port_config=FREE_PORTS,
        show_daemon_logs=False,
    )
    assert ctx.is_owner is True
    recs = sessions.live_sessions("daemon", home=home)
    assert [r.address for r in recs] == [ctx.address]
    assert recs[0].owner_pid == os.getpid()
    pid = recs[0].pid
    # Output went to a log file under TENSORCAST_HOME/logs/.
    logs = list((home / "logs").glob("*.log"))
    assert logs and "stub daemon serving" in logs[0].read_text()
    tc.shutdown()
    assert not sessions.pid_alive(pid)
    assert sessions.live_sessions("daemon", home=home) == []


def test_create_passes_ports_to_the_daemon(daemon_config: Path) -> None:
    port = free_port()
    ctx = tc.init(
        mode="create",
        daemon_config_path=daemon_config,
        port_config=tc.PortConfig(daemon_listen_port=port, daemon_p2p_port=0),
        show_daemon_logs=False,
    )
    assert ctx.address == f"127.0.0.1:{port}"


def test_create_failure_reports_the_tail_of_the_daemon_log(
    daemon_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TC_STUB_FAIL_STARTUP", "1")
    with pytest.raises(tc.ArtifactError) as info:
        tc.init(
            mode="create",
            daemon_config_path=daemon_config,
            port_config=FREE_PORTS,
            show_daemon_logs=False,
        )
    assert info.value.status_code == "UNAVAILABLE"
    assert "did not start" in str(info.value)
    assert "refusing to start" in str(info.value)
    # show_daemon_logs=True keeps the tail too (it streams through this process).
    with pytest.raises(tc.ArtifactError, match="refusing to start"):
        tc.init(mode="create", daemon_config_path=daemon_config, port_config=FREE_PORTS)


def test_create_ignores_global_store_ports_unless_start(
    daemon_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tensorwasm_tc.tensorcast.startup"):
        tc.init(
            mode="create",
            daemon_config_path=daemon_config,
            port_config=tc.PortConfig(
                0, 0, global_store_listen_port=1, global_store_metrics_port=2
            ),
            show_daemon_logs=False,
        )
    assert "Global Store ports in port_config are ignored" in caplog.text


class _HealthyGlobalStore(global_store_pb2_grpc.GlobalStoreServicer):  # type: ignore[misc]
    def GetStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        return global_store_pb2.GetStatusResponse(schema_version=1, build="test")


def test_global_store_start_refuses_when_one_is_already_recorded(
    home: Path, daemon_config: Path
) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    global_store_pb2_grpc.add_GlobalStoreServicer_to_server(_HealthyGlobalStore(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        sessions.write_session(
            sessions.SessionRecord(
                session_id="gs-existing",
                kind="global_store",
                address=f"127.0.0.1:{port}",
                pid=os.getpid(),
            ),
            home,
        )
        with pytest.raises(tc.ArtifactError, match="already running") as info:
            tc.init(
                mode="create",
                daemon_config_path=daemon_config,
                global_store_mode="start",
                port_config=FREE_PORTS,
                show_daemon_logs=False,
            )
        assert info.value.status_code == "FAILED_PRECONDITION"
        # Nothing was started.
        assert sessions.live_sessions("daemon", home=home) == []
    finally:
        server.stop(None).wait()


def test_create_with_global_store_start_launches_both_and_stops_both(
    home: Path, daemon_config: Path, tmp_path: Path
) -> None:
    gs_config = tmp_path / "gs.yaml"
    gs_config.write_text(startup.find_global_store_config().read_text())
    ctx = tc.init(
        mode="create",
        daemon_config_path=daemon_config,
        global_store_mode="start",
        global_store_config_path=gs_config,
        port_config=tc.PortConfig(0, 0, global_store_listen_port=0, global_store_metrics_port=0),
        show_daemon_logs=False,
    )
    gs = sessions.live_sessions("global_store", home=home)
    assert len(gs) == 1
    # The daemon was pointed at the Global Store this init started.
    assert ctx.global_store_address == gs[0].address
    daemon = sessions.live_sessions("daemon", home=home)[0]
    assert daemon.global_store_address == gs[0].address
    tc.shutdown()
    assert sessions.live_sessions(home=home) == []
    assert not sessions.pid_alive(gs[0].pid)


# ----------------------------------------------------------------------------- auto


def _auto_worker(
    home: str,
    config: str,
    barrier: Any,
    results: Any,
    p2p_port: int,
    daemon_module: str | None,
) -> None:
    """One of N processes booting together: init(auto), report, wait for all
    (so no owner leaves early), shut down. The environment is set here: the
    forkserver these run from kept the one it started with."""
    os.environ["TENSORCAST_HOME"] = home
    os.environ["PYTHONPATH"] = str(REPO)
    os.environ["TC_STUB_STARTUP_DELAY_S"] = "0.3"
    if daemon_module:
        os.environ[startup.DAEMON_MODULE_ENV] = daemon_module
    else:
        os.environ.pop(startup.DAEMON_MODULE_ENV, None)
    import tensorwasm_tc.tensorcast as tc_

    try:
        ctx = tc_.init(
            mode="auto",
            daemon_config_path=config,
            port_config=tc_.PortConfig(daemon_listen_port=0, daemon_p2p_port=p2p_port),
            show_daemon_logs=False,
        )
        results.put(("ok", ctx.address, ctx.is_owner, os.getpid()))
    except tc_.ArtifactError as err:
        results.put(("error", str(err), err.status_code, os.getpid()))
    try:
        barrier.wait(timeout=120)
    finally:
        tc_.shutdown()


def run_auto(
    home: Path, config: Path, p2p_ports: list[int], daemon_module: str | None = STUB_MODULE
) -> list[tuple[Any, ...]]:
    """Starts one process per entry of ``p2p_ports`` at once, each calling
    init(mode="auto"); returns what each reported."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["tensorwasm_tc.tensorcast"])
    barrier = ctx.Barrier(len(p2p_ports))
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_auto_worker,
            args=(str(home), str(config), barrier, results, port, daemon_module),
        )
        for port in p2p_ports
    ]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=150) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    return out


@pytest.mark.slow
def test_twenty_processes_in_auto_mode_end_with_one_daemon(home: Path, daemon_config: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    out = run_auto(home, daemon_config, [0] * 20)
    assert [r for r in out if r[0] != "ok"] == []
    addresses = {r[1] for r in out}
    owners = [r for r in out if r[2]]
    assert len(addresses) == 1
    assert len(owners) == 1
    # Every process has left; the owner stopped the daemon on its way out.
    deadline = time.monotonic() + 10
    while sessions.live_sessions("daemon", home=home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sessions.live_sessions("daemon", home=home) == []


def test_auto_with_mismatched_parameters_fails(home: Path, daemon_config: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    # This process becomes the owner with p2p port 0 ...
    ctx = tc.init(
        mode="auto",
        daemon_config_path=daemon_config,
        port_config=FREE_PORTS,
        show_daemon_logs=False,
    )
    assert ctx.is_owner
    # ... another process asks for a different daemon.
    [result] = run_auto(home, daemon_config, [free_port()])
    assert result[0] == "error"
    assert "AUTO_CONFIG_MISMATCH" in result[1]
    assert result[2] == "FAILED_PRECONDITION"
    # Same parameters connect to the same daemon without owning it.
    [same] = run_auto(home, daemon_config, [0])
    assert same[:3] == ("ok", ctx.address, False)


def test_auto_refuses_a_daemon_it_did_not_start(
    home: Path, stub: StubDaemon, daemon_config: Path
) -> None:
    sessions.write_session(record_for(stub, "cli-started"), home)
    with pytest.raises(tc.ArtifactError, match="AUTO_CONFIG_MISMATCH"):
        tc.init(mode="auto", daemon_config_path=daemon_config, port_config=FREE_PORTS)


def test_auto_config_hash_ignores_cosmetic_parameters(daemon_config: Path) -> None:
    def h(**kw: Any) -> str:
        base: dict[str, Any] = {
            "daemon_config_path": daemon_config,
            "global_store_mode": "none",
            "global_store_address": None,
            "global_store_config_path": None,
            "ports": FREE_PORTS,
            "show_daemon_logs": True,
            "session_id": None,
        }
        base.update(kw)
        return startup.init_config_hash(startup._LaunchParams.resolve(**base))

    assert h() == h(show_daemon_logs=False)
    assert h() != h(session_id="rank-group-2")
    assert h() != h(ports=tc.PortConfig(daemon_listen_port=50052))
    assert h() != h(global_store_mode="connect", global_store_address="127.0.0.1:50051")
    before = h()
    daemon_config.write_text("listen_port: 0\np2p_port: 0\nmax_inline_bytes: 1024\n")
    assert h() != before  # the file's content counts, not only its path


# ------------------------------------------------------------------- owner cleanup

_OWNER_SCRIPT = """
import sys
import tensorwasm_tc.tensorcast as tc
from tensorwasm_tc.tensorcast import sessions
tc.init(mode="create", daemon_config_path=sys.argv[1], port_config=tc.PortConfig(0, 0),
        show_daemon_logs=False)
print(sessions.live_sessions("daemon")[0].pid, flush=True)
# No shutdown(): the interpreter's exit must stop the daemon.
"""


def test_owner_stops_its_daemon_at_interpreter_exit(home: Path, daemon_config: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _OWNER_SCRIPT, str(daemon_config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        assert proc.returncode == 0, proc.stderr
        daemon_pid = int(proc.stdout.split()[0])
        assert not sessions.pid_alive(daemon_pid)
        assert sessions.live_sessions(home=home) == []
    finally:
        # Never leave a daemon behind, even when the test fails.
        for rec in sessions.live_sessions(home=home):
            os.kill(rec.pid, signal.SIGKILL)
