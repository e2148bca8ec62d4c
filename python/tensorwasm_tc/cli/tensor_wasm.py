"""`tensor-wasm` / `tensor-wasm-cli`: run functions from the command line.

The CLI parses arguments and prints; everything it does goes through the
public `tensorwasm_tc` API.
"""

from __future__ import annotations

import json
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import click

from tensorwasm_tc import Runtime, TensorWasmError, __version__, build_info
from tensorwasm_tc._core import engine_info, module_cache_stats


def _version_text() -> str:
    info = build_info()
    return (
        f"tensor-wasm {__version__}\n"
        f"git_sha: {info['git_sha']}\n"
        f"rustc_version: {info['rustc_version']}\n"
        f"profile: {info['profile']}\n"
        f"target: {info['target']}"
    )


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(_version_text())
    ctx.exit()


# A negative number such as `-1e3` looks to click like a cluster of short
# options (`-1 -e 3`). `_RunCommand` marks such tokens before click parses them
# and `_parse_number` unmarks them.
_NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)
_NEGATIVE_MARK = "\x00neg:"


class _RunCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for param in self.params
            if isinstance(param, click.Option) and not param.is_flag
            for name in param.opts
        }
        marked: list[str] = []
        for i, arg in enumerate(args):
            is_option_value = i > 0 and args[i - 1] in takes_value
            if _NEGATIVE_NUMBER.match(arg) and not is_option_value:
                arg = _NEGATIVE_MARK + arg[1:]
            marked.append(arg)
        return super().parse_args(ctx, marked)


def _parse_number(text: str) -> int | float:
    if text.startswith(_NEGATIVE_MARK):
        text = "-" + text[len(_NEGATIVE_MARK) :]
    for base in (0, 10):  # 0x1f, 0b101, 1_000; then 010 (leading zeros)
        try:
            return int(text, base)
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number", param_hint="ARGS") from None


def _fail(err: TensorWasmError, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"error": {"kind": err.kind, "message": str(err)}}))
    else:
        if err.stdout:
            click.echo(err.stdout, nl=False)
        if err.stderr:
            click.echo(err.stderr, nl=False, err=True)
        click.echo(f"error [{err.kind}]: {err}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version, git sha, rustc version, build profile and target.",
)
def main() -> None:
    """tensor-wasm: sandboxed tensor functions."""


@main.command(cls=_RunCommand, context_settings={"ignore_unknown_options": True})
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--export", "-e", default=None, help="Export to call (default: _start, then main).")
@click.option("--deadline-ms", type=int, default=30_000, show_default=True)
@click.option("--max-memory-bytes", type=int, default=256 << 20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(
    module: Path,
    args: tuple[str, ...],
    export: str | None,
    deadline_ms: int,
    max_memory_bytes: int,
    as_json: bool,
) -> None:
    """Run an export of MODULE (.wasm or .wat) with numeric ARGS."""
    numbers = [_parse_number(a) for a in args]
    rt = Runtime(max_memory_bytes=max_memory_bytes, deadline_ms=deadline_ms)
    try:
        fn = rt.load(module)
        res = fn.invoke(export, numbers)
    except TensorWasmError as err:
        _fail(err, as_json)
        return
    if as_json:
        out: dict[str, Any] = {
            "function_id": fn.id,
            "result": res.values,
            "stdout": res.stdout,
            "stderr": res.stderr,
            "duration_ms": res.duration_ms,
        }
        click.echo(json.dumps(out))
        return
    click.echo(res.stdout, nl=False)
    click.echo(res.stderr, nl=False, err=True)
    if res.values:
        click.echo(" ".join(str(v) for v in res.values))


@main.command()
def demo() -> None:
    """Run the bundled example function."""
    wat = resources.files("tensorwasm_tc._bundled").joinpath("hello.wat").read_text()
    rt = Runtime()
    try:
        fn = rt.load(wat)
        greeting = fn.invoke()
        fib = fn.invoke("fib", [50])
        total = fn.invoke("add", [2, 3])
    except TensorWasmError as err:
        _fail(err, False)
        return
    click.echo(greeting.stdout, nl=False)
    click.echo(f"fib(50) = {fib.values[0]}  ({fib.duration_ms * 1e3:.1f} µs, fresh sandbox)")
    click.echo(f"add(2, 3) = {total.values[0]}")
    click.echo(f"function id: {fn.id}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info(as_json: bool) -> None:
    """Show the build, the engine and the module cache."""
    data = {
        "build": build_info(),
        "engine": engine_info(),
        "module_cache": module_cache_stats(),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(_version_text())
    eng = data["engine"]
    click.echo(f"engine fingerprint: {eng['fingerprint']}")
    on = sorted(k for k, v in eng["features"].items() if v)
    click.echo(f"wasm proposals on: {', '.join(on)}")


@main.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (default $TENSOR_WASM_HOME, else ~/.tensor-wasm).",
)
@click.option(
    "--tensorcast-address",
    metavar="HOST:PORT",
    default=None,
    help="Use the TensorCast Store Daemon at HOST:PORT (default: auto, a daemon under "
    "$TENSORCAST_HOME, started if none runs; env TENSOR_WASM_TENSORCAST_ADDRESS).",
)
@click.option(
    "--no-tensorcast",
    is_flag=True,
    default=False,
    help="Run without TensorCast: functions cannot bind artifacts "
    "(env TENSOR_WASM_TENSORCAST=off).",
)
def serve(
    host: str | None,
    port: int | None,
    home: Path | None,
    tensorcast_address: str | None,
    no_tensorcast: bool,
) -> None:
    """Serve the HTTP API (docs/API.md) until SIGTERM or Ctrl-C.

    Configuration comes from these flags and the TENSOR_WASM_API_* environment
    variables; with none set it serves on 127.0.0.1:8080 in dev mode (no
    tokens) with its registry under ~/.tensor-wasm.
    """
    from tensorwasm_tc.gateway import ConfigError, GatewayConfig
    from tensorwasm_tc.gateway import serve as run_server

    try:
        if no_tensorcast and tensorcast_address:
            raise ConfigError("--no-tensorcast and --tensorcast-address exclude each other")
        config = GatewayConfig.from_env(
            host=host,
            port=port,
            home=home,
            tensorcast_address=tensorcast_address,
            tensorcast=False if no_tensorcast else None,
        )
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    run_server(config)


# The HTTP client commands (deploy, invoke, functions, instances, jobs, observe,
# snapshot).
from tensorwasm_tc.cli.client import register as _register_client  # noqa: E402

_register_client(main)
from tensorwasm_tc.cli.artifacts import artifacts as _artifacts  # noqa: E402

main.add_command(_artifacts)


if __name__ == "__main__":
    main()
