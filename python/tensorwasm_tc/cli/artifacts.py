"""`tensor-wasm artifacts list|show|import`: the artifacts a TensorCast Store
Daemon holds, from the command line.

A convenience over the TensorCast SDK (`docs/tensorcast-sdk.md`): every
command attaches with ``tc.init(mode="connect")`` (to ``--tensorcast-address
HOST:PORT``, else to the newest live daemon session under
``$TENSORCAST_HOME``), does one thing, and calls ``tc.shutdown()``.

* ``list``: the artifacts in the daemon's tiers (its Status RPC).
* ``show KEY_OR_ID``: one artifact's manifest (its Info RPC): id, key and key
  version, policy, bytes, local tiers, every tensor.
* ``import FILE.safetensors --key K``: the daemon's ImportSafetensors; the
  daemon reads the file itself, so it must be on the daemon's host (the
  path is sent absolute).

A failure prints ``error [kind]: message`` on stderr (``kind``: the SDK's
status code in lower case, e.g. ``not_found``, ``unavailable``) and exits with
status 1; with ``--json`` the same error is also printed on stdout as
``{"error": {"kind": ..., "message": ...}}``. Usage errors (a bad option, a
missing file) exit with 2 (click's own).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from tensorwasm_tc.cli.client import ClientError, _json_option, _report_error

if TYPE_CHECKING:
    from tensorwasm_tc.tensorcast.errors import ArtifactError
    from tensorwasm_tc.tensorcast.startup import Context

# The SDK is imported when a command runs, not with the CLI: it pulls in grpc,
# which would slow every `tensor-wasm` command down.
_ARTIFACT_ID: Final = re.compile(r"^[0-9a-f]{64}$")
#: `tensorwasm_tc.tensorcast.options.POLICIES` (a test keeps them equal).
POLICIES: Final = ("cache", "pinned", "durable")


# --------------------------------------------------------------------------- plumbing


def _check_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``HOST:PORT`` with a port in 1..65535 (a usage error otherwise)."""
    if value is None:
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return value.strip()


def _check_key(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("the key is empty")
    return value


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _error(err: ArtifactError, address: str | None, connecting: bool) -> ClientError:
    message = _one_line(err.message)
    if connecting and err.status_code == "UNAVAILABLE":
        if address is not None:
            message += (
                " (--tensorcast-address); is a Store Daemon running there? "
                "Start one with `tensorcast-cli daemon start`"
            )
        else:
            message += (
                " (the newest daemon session under $TENSORCAST_HOME); is it running? "
                "Pass --tensorcast-address HOST:PORT to use another daemon"
            )
    return ClientError(err.status_code.lower(), message)


def tensorcast_command(f: Callable[..., None]) -> Callable[..., None]:
    """Adds ``--tensorcast-address``, attaches to the daemon, passes the SDK's
    `Context` as the first argument, detaches afterwards, and turns
    `ArtifactError` (and `ClientError`) into ``error [kind]: message`` and
    exit status 1.

    Apply it below ``@group.command()`` and above the command's own options.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, tensorcast_address: str | None, **kwargs: Any) -> None:
        import tensorwasm_tc.tensorcast as tc
        from tensorwasm_tc.tensorcast.errors import ArtifactError

        as_json = bool(kwargs.get("as_json", False))
        connecting = True
        try:
            try:
                ctx = tc.init(mode="connect", address=tensorcast_address, show_daemon_logs=False)
                connecting = False
                f(ctx, *args, **kwargs)
            finally:
                tc.shutdown()
        except ArtifactError as err:
            _report_error(_error(err, tensorcast_address, connecting), as_json)
        except ClientError as err:
            _report_error(err, as_json)

    option = click.Option(
        ["--tensorcast-address"],
        default=None,
        metavar="HOST:PORT",
        callback=_check_address,
        help="The Store Daemon's gRPC address (default: the newest live daemon "
        "session under $TENSORCAST_HOME).",
    )
    # click reverses the list when it builds the command: inserting at the
    # front puts the option after the command's own in --help.
    params: list[click.Parameter] = wrapper.__dict__.setdefault("__click_params__", [])
    params.insert(0, option)
    return wrapper


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns two spaces apart (the last one unpadded)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


# --------------------------------------------------------------------------- commands


@click.group()
def artifacts() -> None:
    """List, show and import TensorCast artifacts (through a Store Daemon)."""


@artifacts.command("list")
@tensorcast_command
@_json_option
def artifacts_list(ctx: Context, as_json: bool) -> None:
    """The artifacts the daemon holds: id, key, policy, bytes, tiers, leases."""
    status = ctx.client.status()
    # Keyed artifacts first, by key; then the others, by id.
    arts = sorted(status.artifacts, key=lambda a: (a.key == "", a.key, a.artifact_id))
    if as_json:
        items = [
            {
                "artifact_id": a.artifact_id,
                "key": a.key,
                "policy": a.policy,
                "total_bytes": int(a.total_bytes),
                "tiers": list(a.tiers),
                "leases": int(a.leases),
                "last_used_unix_ms": int(a.last_used_unix_ms),
            }
            for a in arts
        ]
        daemon = {"address": ctx.address, "worker_id": status.worker_id, "build": status.build}
        click.echo(json.dumps({"daemon": daemon, "artifacts": items}))
        return
    if not arts:
        click.echo(f"no artifacts (daemon {ctx.address})")
        return
    rows = [
        [
            a.artifact_id,
            a.key or "-",
            a.policy,
            str(a.total_bytes),
            ",".join(a.tiers) or "-",
            str(a.leases),
        ]
        for a in arts
    ]
    for line in _table(["ARTIFACT_ID", "KEY", "POLICY", "BYTES", "TIERS", "LEASES"], rows):
        click.echo(line)


@artifacts.command("show")
@tensorcast_command
@click.argument("key_or_id", metavar="KEY_OR_ID")
@_json_option
def artifacts_show(ctx: Context, key_or_id: str, as_json: bool) -> None:
    """Show one artifact (by key, or by its 64-hex-digit id): id, key and key
    version, policy, bytes, local tiers and its tensors."""
    import tensorwasm_tc.tensorcast as tc

    by_id = bool(_ARTIFACT_ID.match(key_or_id))
    handle = tc.artifact(artifact_id=key_or_id) if by_id else tc.artifact(key=key_or_id)
    info = handle.info()
    if not info.exists:
        what = f"artifact {key_or_id}" if by_id else f"key {key_or_id!r}"
        raise ClientError("not_found", f"no artifact under {what} (daemon {ctx.address})")
    out = {
        "artifact_id": info.artifact_id,
        "key": info.key,
        "key_version": info.key_version,
        "policy": info.policy,
        "total_bytes": info.total_bytes,
        "local_tiers": list(info.local_tiers),
        "tensors": [
            {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "nbytes": t.nbytes}
            for t in info.tensors
        ],
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"artifact_id: {info.artifact_id}")
    click.echo(f"key: {info.key or '-'}")
    if info.key:
        click.echo(f"key_version: {info.key_version}")
    click.echo(f"policy: {info.policy}")
    click.echo(f"total_bytes: {info.total_bytes}")
    click.echo(f"local_tiers: {','.join(info.local_tiers) or '-'}")
    click.echo(f"tensors: {len(info.tensors)}")
    rows = [
        [t.name, t.dtype, "[" + ", ".join(str(d) for d in t.shape) + "]", str(t.nbytes)]
        for t in info.tensors
    ]
    if rows:
        for line in _table(["NAME", "DTYPE", "SHAPE", "BYTES"], rows, indent="  "):
            click.echo(line)


@artifacts.command("import")
@tensorcast_command
@click.argument(
    "path",
    metavar="FILE.safetensors",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--key",
    "-k",
    required=True,
    callback=_check_key,
    help="The key to map to the imported artifact.",
)
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default="cache",
    show_default=True,
    help="cache (evicted LRU), pinned (never evicted) or durable (also on disk).",
)
@_json_option
def artifacts_import(ctx: Context, path: Path, key: str, policy: str, as_json: bool) -> None:
    """Import FILE.safetensors as an artifact under KEY; print its id.

    The daemon reads the file itself: it must be on the daemon's host."""
    import tensorwasm_tc.tensorcast as tc

    resolved = path.resolve()
    # Store.import_safetensors returns the id alone; its client's call returns
    # the whole ImportSafetensors answer (the key version too).
    store = tc.store()
    resp = store.client.import_safetensors(str(resolved), key=key, policy=policy)
    out = {
        "artifact_id": str(resp.artifact_id),
        "key": key,
        "key_version": int(resp.key_version),
        "policy": policy,
        "path": str(resolved),
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(out["artifact_id"])
    if out["key_version"]:
        click.echo(f"key {key} version {out['key_version']}", err=True)
