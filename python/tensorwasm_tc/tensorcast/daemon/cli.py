"""`tensorcast-cli daemon start|stop|status|logs`."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import click
from google.protobuf import json_format

from tensorwasm_tc.tensorcast import sessions
from tensorwasm_tc.tensorcast.daemon.config import GLOBAL_STORE_MODES
from tensorwasm_tc.tensorcast.errors import ArtifactError

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def log_path(session_id: str) -> Path:
    return sessions.tensorcast_home() / "logs" / f"daemon-{session_id}.log"


def _daemon_args(
    config: str,
    listen_port: int | None,
    p2p_port: int | None,
    global_store_mode: str | None,
    global_store_address: str | None,
    global_store_config: str | None,
    session_id: str,
) -> list[str]:
    args = ["--config", config, "--session-id", session_id]
    for flag, value in (
        ("--listen-port", listen_port),
        ("--p2p-port", p2p_port),
        ("--global-store-mode", global_store_mode),
        ("--global-store-address", global_store_address),
        ("--global-store-config", global_store_config),
    ):
        if value is not None:
            args += [flag, str(value)]
    return args


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError:
        return ""


def wait_ready(
    session_id: str, proc: subprocess.Popen[bytes] | None, timeout: float
) -> sessions.SessionRecord:
    """Waits for the daemon's session file and a Status answer."""
    from tensorwasm_tc.tensorcast.daemon.client import DaemonClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise click.ClickException(
                f"the daemon exited with status {proc.returncode}:\n"
                + _tail(log_path(session_id), 20)
            )
        for rec in sessions.live_sessions("daemon"):
            if rec.session_id == session_id:
                client = DaemonClient(rec.address)
                try:
                    client.status(timeout=2.0)
                    return rec
                except ArtifactError:
                    pass
                finally:
                    client.close()
        time.sleep(0.05)
    raise click.ClickException(f"the daemon did not become ready within {timeout:.0f} s")


@click.group(name="daemon")
def daemon_group() -> None:
    """Manage the Store Daemon."""


@daemon_group.command("start")
@click.option("--config", "config", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--global-store-mode", type=click.Choice(GLOBAL_STORE_MODES), default=None)
@click.option("--global-store-address", default=None, help="host:port of the Global Store")
@click.option("--global-store-config", default=None, help="Global Store config (mode start)")
@click.option("--listen-port", type=int, default=None, help="gRPC port (0 = any free port)")
@click.option("--p2p-port", type=int, default=None, help="P2P port (0 = any free port)")
@click.option("--session-id", default=None, help="name of the daemon's session record")
@click.option("--blocking", is_flag=True, help="run in the foreground")
def start(
    config: str,
    global_store_mode: str | None,
    global_store_address: str | None,
    global_store_config: str | None,
    listen_port: int | None,
    p2p_port: int | None,
    session_id: str | None,
    blocking: bool,
) -> None:
    """Start a Store Daemon (in the background unless --blocking)."""
    sid = session_id or secrets.token_hex(6)
    args = _daemon_args(
        str(Path(config).resolve()),
        listen_port,
        p2p_port,
        global_store_mode,
        global_store_address,
        global_store_config,
        sid,
    )
    if blocking:
        from tensorwasm_tc.tensorcast.daemon.__main__ import main as daemon_main

        sys.exit(daemon_main(args))
    log = log_path(sid)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tensorwasm_tc.tensorcast.daemon", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    rec = wait_ready(sid, proc, READY_TIMEOUT_S)
    click.echo(f"store daemon {sid} running at {rec.address} (pid {rec.pid}, log {log})")


def _targets(session_id: str | None) -> list[sessions.SessionRecord]:
    recs = sessions.live_sessions("daemon")
    if session_id:
        recs = [r for r in recs if r.session_id == session_id]
    return recs


@daemon_group.command("stop")
@click.option("--session-id", default=None, help="stop only this daemon (default: every daemon)")
def stop(session_id: str | None) -> None:
    """Stop running daemons (SIGTERM, then wait)."""
    recs = _targets(session_id)
    if not recs:
        raise click.ClickException("no running store daemon found")
    for rec in recs:
        try:
            os.kill(rec.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + STOP_TIMEOUT_S
    pending = list(recs)
    while pending and time.monotonic() < deadline:
        pending = [r for r in pending if sessions.pid_alive(r.pid) and not _is_zombie(r.pid)]
        time.sleep(0.05)
    for rec in recs:
        if rec in pending:
            click.echo(f"store daemon {rec.session_id} (pid {rec.pid}) did not stop", err=True)
        else:
            sessions.remove_session(rec.session_id)
            click.echo(f"stopped store daemon {rec.session_id} (pid {rec.pid})")
    if pending:
        sys.exit(1)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _status_dict(rec: sessions.SessionRecord) -> dict[str, Any]:
    from tensorwasm_tc.tensorcast.daemon.client import DaemonClient

    out: dict[str, Any] = {"session": json.loads(rec.to_json())}
    client = DaemonClient(rec.address)
    try:
        st = client.status(timeout=5.0)
        out["status"] = json_format.MessageToDict(
            st, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        out["reachable"] = True
    except ArtifactError as e:
        out["reachable"] = False
        out["error"] = e.message
    finally:
        client.close()
    return out


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


@daemon_group.command("status")
@click.option("--session-id", default=None)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(session_id: str | None, as_json: bool) -> None:
    """Sessions, artifacts, leases, in-flight gets, memory use and build."""
    reports = [_status_dict(r) for r in _targets(session_id)]
    if as_json:
        click.echo(json.dumps({"daemons": reports}, indent=2))
        return
    if not reports:
        click.echo("no running store daemon")
        return
    for rep in reports:
        sess = rep["session"]
        click.echo(f"daemon {sess['session_id']}  pid {sess['pid']}  {sess['address']}")
        if not rep["reachable"]:
            click.echo(f"  unreachable: {rep.get('error', '')}")
            continue
        st = rep["status"]
        click.echo(f"  build        {st['build']}  worker {st['worker_id']}")
        click.echo(f"  p2p          {st['p2p_address']}  socket {st['socket_path']}")
        gs = st["global_store_address"] or "none"
        state = "connected" if st["global_store_connected"] else "not connected"
        click.echo(f"  global store {gs} ({state})")
        used, cap = int(st["stable_bytes_used"]), int(st["stable_bytes_capacity"])
        click.echo(f"  memory       {_human(used)} of {_human(cap)}")
        click.echo(
            f"  sessions {len(st['sessions'])}  leases {st['leases']}  "
            f"in flight {st['in_flight']}  artifacts {len(st['artifacts'])}"
        )
        for a in st["artifacts"]:
            size = _human(int(a["total_bytes"]))
            tiers = ",".join(a["tiers"])
            click.echo(
                f"    {a['artifact_id'][:16]}  {a['policy']:<7} {size:>10}  {tiers:<11} {a['key']}"
            )


@daemon_group.command("logs")
@click.option("--session-id", default=None, help="default: the newest daemon")
@click.option("-n", "--lines", type=int, default=100, show_default=True)
def logs(session_id: str | None, lines: int) -> None:
    """Print the tail of a daemon's log file."""
    sid = session_id
    if sid is None:
        recs = _targets(None)
        if recs:
            sid = recs[0].session_id
        else:
            logs_dir = sessions.tensorcast_home() / "logs"
            files = sorted(logs_dir.glob("daemon-*.log"), key=lambda p: p.stat().st_mtime)
            if not files:
                raise click.ClickException("no daemon log found")
            sid = files[-1].name[len("daemon-") : -len(".log")]
    path = log_path(sid)
    if not path.exists():
        raise click.ClickException(f"no log file {path}")
    click.echo(_tail(path, lines), nl=False)
