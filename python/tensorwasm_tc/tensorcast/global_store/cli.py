"""`tensorcast-cli global start|stop|status`: run and inspect the Global Store.

``start`` launches ``python -m tensorwasm_tc.tensorcast.global_store`` in the
background (or in the foreground with ``--blocking``) and returns once the
process has written its session record and answers GetStatus. It refuses to
start a second Global Store under the same ``$TENSORCAST_HOME``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click

from tensorwasm_tc.tensorcast.global_store import find_running, probe
from tensorwasm_tc.tensorcast.global_store.config import (
    ConfigError,
    GlobalStoreConfig,
    bundled_config_path,
    load_config,
)
from tensorwasm_tc.tensorcast.sessions import (
    SessionRecord,
    live_sessions,
    pid_alive,
    remove_session,
    session_dir,
    tensorcast_home,
)

_MODULE = "tensorwasm_tc.tensorcast.global_store"


def _load(config: str | None) -> tuple[Path, GlobalStoreConfig]:
    path = Path(config).expanduser().resolve() if config else bundled_config_path()
    try:
        return path, load_config(path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@click.group(name="global")
def global_group() -> None:
    """Manage the Global Store (cluster metadata: workers, keys, replicas)."""


@global_group.command("start")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Global Store config YAML (default: the packaged global_store_config.yaml).",
)
@click.option("--listen-port", type=int, default=None, help="gRPC port; 0 picks a free port.")
@click.option(
    "--metrics-port", type=int, default=None, help="Metrics port; 0 picks one, -1 disables."
)
@click.option("--session-id", default=None, help="Name of the session record.")
@click.option("--blocking", is_flag=True, help="Run in the foreground until Ctrl-C / SIGTERM.")
@click.option(
    "--startup-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for a background start.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the session record as JSON.")
def start(
    config: str | None,
    listen_port: int | None,
    metrics_port: int | None,
    session_id: str | None,
    blocking: bool,
    startup_timeout: float,
    as_json: bool,
) -> None:
    """Start a Global Store; print its address once it serves."""
    path, cfg = _load(config)
    try:
        cfg = cfg.with_overrides(listen_port=listen_port, metrics_port=metrics_port)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    running = find_running()
    if running is not None:
        raise click.ClickException(
            f"a Global Store is already running at {running.address} (pid {running.pid}, "
            f"session {running.session_id}) under {tensorcast_home()}; stop it with "
            "`tensorcast-cli global stop` or connect to it"
        )
    sid = session_id or f"global_store-{uuid.uuid4().hex[:12]}"
    if blocking:
        from tensorwasm_tc.tensorcast.global_store.schema import SchemaError
        from tensorwasm_tc.tensorcast.global_store.server import serve

        logging.basicConfig(
            level=cfg.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        try:
            sys.exit(serve(cfg, session_id=sid))
        except (SchemaError, OSError) as e:
            raise click.ClickException(str(e)) from e

    argv = [sys.executable, "-m", _MODULE, "--config", str(path), "--session-id", sid]
    if listen_port is not None:
        argv += ["--listen-port", str(listen_port)]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    log_dir = tensorcast_home() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{sid}.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record_path = session_dir() / f"{sid}.json"
    deadline = time.monotonic() + startup_timeout
    rec: SessionRecord | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(
                f"the Global Store exited with status {proc.returncode} during startup; "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        if record_path.exists():
            with contextlib.suppress(OSError, ValueError, TypeError):
                rec = SessionRecord.from_json(json.loads(record_path.read_text()))
            if rec is not None and probe(rec.address, timeout=1.0):
                break
            rec = None
        time.sleep(0.05)
    if rec is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        raise click.ClickException(
            f"the Global Store did not become ready within {startup_timeout:g} s; "
            f"log {log_path}:\n{_log_tail(log_path)}"
        )
    if as_json:
        click.echo(rec.to_json())
    else:
        click.echo(rec.address)
        click.echo(
            f"Global Store running at {rec.address} (pid {rec.pid}, metrics "
            f"{rec.metrics_address or 'off'}, log {log_path})",
            err=True,
        )


@global_group.command("stop")
@click.option("--session-id", default=None, help="Stop only this session (default: all).")
@click.option("--timeout", type=float, default=15.0, show_default=True)
def stop(session_id: str | None, timeout: float) -> None:
    """Stop the Global Store(s) recorded under $TENSORCAST_HOME (SIGTERM, then wait)."""
    records = [r for r in live_sessions("global_store") if session_id in (None, r.session_id)]
    if not records:
        click.echo("no Global Store is running", err=True)
        return
    for rec in records:
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for rec in records:
        while pid_alive(rec.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(rec.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.pid, signal.SIGKILL)
            click.echo(
                f"Global Store pid {rec.pid} ignored SIGTERM for {timeout:g} s; killed", err=True
            )
        remove_session(rec.session_id)
        click.echo(f"stopped Global Store {rec.session_id} at {rec.address} (pid {rec.pid})")


def _status_of(rec: SessionRecord | None, address: str, token: str | None) -> dict[str, Any]:
    from tensorwasm_tc.tensorcast.global_store.client import GlobalStoreClient, GlobalStoreError

    out: dict[str, Any] = {"address": address}
    if rec is not None:
        out.update(
            session_id=rec.session_id,
            pid=rec.pid,
            metrics_address=rec.metrics_address,
            config_hash=rec.config_hash,
            started_unix_ms=rec.started_unix_ms,
        )
    client = GlobalStoreClient(address, cluster_token=token, timeout=2.0)
    try:
        st = client.get_status()
    except GlobalStoreError as e:
        out.update(healthy=False, error=e.message, status_code=e.status_code)
        return out
    finally:
        client.close()
    out.update(
        healthy=True,
        build=st.build,
        schema_version=st.schema_version,
        workers_alive=st.workers_alive,
        artifacts=st.artifacts,
        keys=st.keys,
    )
    return out


@global_group.command("status")
@click.option("--address", default=None, help="Ask this Global Store instead of the local ones.")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Config whose cluster_token to send.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(address: str | None, config: str | None, as_json: bool) -> None:
    """Show the Global Store(s): address, pid, schema, build, counts."""
    token = _load(config)[1].cluster_token or None if config else None
    if address:
        stores = [_status_of(None, address, token)]
    else:
        stores = [_status_of(r, r.address, token) for r in live_sessions("global_store")]
    running = any(s["healthy"] for s in stores)
    if as_json:
        click.echo(json.dumps({"running": running, "stores": stores}, indent=2, sort_keys=True))
    elif not stores:
        click.echo(f"no Global Store is running under {tensorcast_home()}")
    else:
        for s in stores:
            head = f"Global Store {s.get('session_id', '')} at {s['address']}".replace("  ", " ")
            if s.get("pid"):
                head += f" (pid {s['pid']})"
            click.echo(head)
            if s["healthy"]:
                click.echo(f"  build:          {s['build']}")
                click.echo(f"  schema version: {s['schema_version']}")
                click.echo(f"  workers alive:  {s['workers_alive']}")
                click.echo(f"  artifacts:      {s['artifacts']}")
                click.echo(f"  keys:           {s['keys']}")
                if s.get("metrics_address"):
                    click.echo(f"  metrics:        http://{s['metrics_address']}/metrics")
            else:
                click.echo(f"  unhealthy: {s['status_code']}: {s['error']}")
    if not running:
        sys.exit(1)
