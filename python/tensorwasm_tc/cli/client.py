"""The command-line client of the HTTP gateway (`docs/API.md`).

`ApiClient` speaks the gateway's JSON API over httpx; the click commands
below (`deploy`, `invoke`, `functions`, `instances`, `jobs`, `observe`,
`snapshot`) are registered onto the `tensor-wasm` group by `register`.
Every command that talks to a server takes
``--server`` (env ``TENSOR_WASM_SERVER``), ``--token`` (env
``TENSOR_WASM_API_TOKEN``, sent as ``Authorization: Bearer``) and
``--tenant`` (env ``TENSOR_WASM_TENANT``, sent as ``X-TensorWasm-Tenant``).

A failure prints ``error [kind]: message`` on stderr and exits with status 1:
the server's error envelope as it came, or one of the client's own kinds
(`connection_failed`, `timeout`, `invalid_response`, `invalid_wasm`,
`invalid_input`). Usage errors exit with 2 (click's own).

The `snapshot` commands (`save`, `restore`, `inspect`, `verify`) tell
failures apart by exit status: 1 an error (network, a server fault, a
corrupt or badly signed snapshot), 2 bad local input (a missing or
unreadable file or key, bad arguments), 3 the server refused the request
(a 4xx answer: unknown instance, another tenant's, snapshot of another
function, ...). `inspect` and `verify` run offline.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, NoReturn

import click
import httpx

from tensorwasm_tc import TensorWasmError, __version__, _core, inspect_snapshot
from tensorwasm_tc.runtime import read_key_file

DEFAULT_SERVER: Final = "http://127.0.0.1:8080"
SERVER_ENV: Final = "TENSOR_WASM_SERVER"
TOKEN_ENV: Final = "TENSOR_WASM_API_TOKEN"
TENANT_ENV: Final = "TENSOR_WASM_TENANT"
METRICS_TOKEN_ENV: Final = "TENSOR_WASM_API_METRICS_TOKEN"
TENANT_HEADER: Final = "X-TensorWasm-Tenant"
U64_MAX: Final = (1 << 64) - 1
SNAPSHOT_KEY_FILE_ENV: Final = "TENSOR_WASM_SNAPSHOT_KEY_FILE"
# Exit statuses of the snapshot commands (see the module docstring).
EXIT_ERROR: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_REFUSED: Final = 3
# Bytes per read and write when a snapshot is moved.
TRANSFER_CHUNK_BYTES: Final = 1 << 20
# Transfers at least this large get a progress bar (when stderr is a terminal).
PROGRESS_MIN_BYTES: Final = 8 << 20

# numpy dtype name -> wire dtype (`TensorJSON.dtype`). bf16 has no numpy dtype.
WIRE_DTYPES: Final[dict[str, str]] = {
    "float32": "f32",
    "float16": "f16",
    "float64": "f64",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "int8": "i8",
    "bool": "bool",
}

_NAME_BAD = re.compile(r"[^A-Za-z0-9._-]+")


# --------------------------------------------------------------------------- errors


class ClientError(Exception):
    """A failure to report as ``error [kind]: message``."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


class ServerError(ClientError):
    """The server answered with an error (its envelope, or a bare status)."""


# --------------------------------------------------------------------------- client


def normalize_server(url: str) -> str:
    """``host:port`` → ``http://host:port``; no trailing slash."""
    url = url.strip()
    if not url:
        raise ClientError("invalid_server", "the server URL is empty")
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


class ApiClient:
    """A keep-alive client of one gateway, acting with one token and tenant.

    Methods return the decoded JSON body and raise `ServerError` for an
    error response and `ClientError` when the server cannot be reached.
    """

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        token: str | None = None,
        tenant: int | None = None,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = normalize_server(server)
        headers = {"User-Agent": f"tensor-wasm-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if tenant is not None:
            headers[TENANT_HEADER] = str(tenant)
        try:
            self._http = httpx.Client(
                base_url=self.server,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=10.0),
                transport=transport,
            )
        except (httpx.InvalidURL, ValueError) as err:
            raise ClientError("invalid_server", f"bad server URL {server!r}: {err}") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- transport ----------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Sends one request; raises unless the status is 2xx."""
        with self._transport():
            resp = self._http.request(method, path, json=json_body, headers=headers)
        if resp.is_success:
            return resp
        raise _server_error(resp)

    @contextlib.contextmanager
    def _transport(self) -> Iterator[None]:
        """Turns httpx's failures into `ClientError`s."""
        try:
            yield
        except httpx.TimeoutException:
            raise ClientError(
                "timeout", f"the server at {self.server} did not answer in time"
            ) from None
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as err:
            raise ClientError(
                "connection_failed",
                f"cannot connect to the tensor-wasm server at {self.server} ({_reason(err)}); "
                f"is `tensor-wasm serve` running? Set --server or {SERVER_ENV}",
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            raise ClientError(
                "connection_failed",
                f"request to {self.server} failed: {_reason(err)}",
            ) from None

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.request(method, path, json_body=body)
        try:
            return resp.json()
        except ValueError:
            raise ClientError(
                "invalid_response",
                f"{method} {path} answered {resp.status_code} with a body that is not JSON",
                resp.status_code,
            ) from None

    # --- functions ----------------------------------------------------------

    def deploy(
        self,
        name: str,
        wasm: bytes,
        *,
        artifacts: Mapping[str, str] | None = None,
        max_memory_bytes: int | None = None,
        deadline_ms: int | None = None,
        init_export: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "wasm_b64": base64.b64encode(wasm).decode()}
        if artifacts:
            body["artifacts"] = dict(artifacts)
        limits = {
            k: v
            for k, v in (("max_memory_bytes", max_memory_bytes), ("deadline_ms", deadline_ms))
            if v is not None
        }
        if limits:
            body["limits"] = limits
        if init_export is not None:
            body["init_export"] = init_export
        out: dict[str, Any] = self._json("POST", "/functions", body)
        return out

    def list_functions(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._json("GET", "/functions")["functions"]
        return out

    def get_function(self, function_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._json("GET", f"/functions/{_seg(function_id)}")
        return out

    def delete_function(self, function_id: str) -> None:
        self.request("DELETE", f"/functions/{_seg(function_id)}")

    def invoke(
        self,
        function_id: str,
        export: str | None = None,
        args: Sequence[int | float | str] | None = None,
        inputs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body = invoke_body(export, args, inputs)
        out: dict[str, Any] = self._json("POST", f"/functions/{_seg(function_id)}/invoke", body)
        return out

    def invoke_async(
        self,
        function_id: str,
        export: str | None = None,
        args: Sequence[int | float | str] | None = None,
        inputs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> str:
        body = invoke_body(export, args, inputs)
        out = self._json("POST", f"/functions/{_seg(function_id)}/invoke-async", body)
        return str(out["job_id"])

    # --- jobs ---------------------------------------------------------------

    def get_job(self, job_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._json("GET", f"/jobs/{_seg(job_id)}")
        return out

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Polls until the job is completed or failed; `ClientError` after `timeout` s."""
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            job = self.get_job(job_id)
            if job.get("status") in ("completed", "failed"):
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientError(
                    "timeout", f"job {job_id} is still {job.get('status')} after {timeout:g} s"
                )
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)

    # --- instances ----------------------------------------------------------

    def create_instance(self, function_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._json("POST", "/instances", {"function_id": function_id})
        return out

    def list_instances(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._json("GET", "/instances")["instances"]
        return out

    def invoke_instance(
        self,
        instance_id: str,
        export: str | None = None,
        args: Sequence[int | float | str] | None = None,
        inputs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body = invoke_body(export, args, inputs)
        out: dict[str, Any] = self._json("POST", f"/instances/{_seg(instance_id)}/invoke", body)
        return out

    def delete_instance(self, instance_id: str) -> None:
        self.request("DELETE", f"/instances/{_seg(instance_id)}")

    # --- snapshots ----------------------------------------------------------

    def save_snapshot(
        self,
        instance_id: str,
        dest: BinaryIO,
        *,
        compression: str | None = None,
        level: int | None = None,
        progress: Callable[[int | None], Callable[[int], None]] | None = None,
    ) -> dict[str, Any]:
        """Streams a snapshot of `instance_id` into `dest`.

        `progress`, if given, is called once with the announced size (or
        ``None``) and returns a function called with each chunk's length.
        Returns what the response headers say about the file.
        """
        params: dict[str, str | int] = {}
        if compression is not None:
            params["compression"] = compression
        if level is not None:
            params["level"] = level
        path = f"/instances/{_seg(instance_id)}/snapshot"
        with self._transport(), self._http.stream("POST", path, params=params) as resp:
            if not resp.is_success:
                resp.read()
                raise _server_error(resp)
            length = resp.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            advance = progress(total) if progress is not None else None
            written = 0
            for chunk in resp.iter_bytes(TRANSFER_CHUNK_BYTES):
                dest.write(chunk)
                written += len(chunk)
                if advance is not None:
                    advance(len(chunk))
        if total is not None and written != total:
            raise ClientError(
                "invalid_response", f"the snapshot ended after {written} of {total} bytes"
            )
        return {
            "instance_id": instance_id,
            "file_bytes": written,
            "function_id": resp.headers.get("x-snapshot-function-id"),
            "module_hash": resp.headers.get("x-snapshot-module-hash"),
            "signed": resp.headers.get("x-snapshot-signed") == "true",
        }

    def restore_snapshot(
        self,
        source: BinaryIO,
        size: int,
        *,
        instance_id: str | None = None,
        function_id: str | None = None,
        progress: Callable[[int | None], Callable[[int], None]] | None = None,
    ) -> dict[str, Any]:
        """Uploads `size` bytes of snapshot from `source` (streamed, never
        held whole) and returns the new instance."""
        params = {
            k: v for k, v in (("instance_id", instance_id), ("function_id", function_id)) if v
        }
        advance = progress(size) if progress is not None else None

        def body() -> Iterator[bytes]:
            while chunk := source.read(TRANSFER_CHUNK_BYTES):
                if advance is not None:
                    advance(len(chunk))
                yield chunk

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with self._transport():
            resp = self._http.post(
                "/instances/restore", params=params, content=body(), headers=headers
            )
        if not resp.is_success:
            raise _server_error(resp)
        try:
            out: dict[str, Any] = resp.json()
        except ValueError:
            raise ClientError(
                "invalid_response",
                "POST /instances/restore answered with a body that is not JSON",
                resp.status_code,
            ) from None
        return out

    # --- system -------------------------------------------------------------

    def metrics(self, token: str | None = None) -> str:
        """The Prometheus text of ``/metrics`` (`token` overrides the bearer)."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return self.request("GET", "/metrics", headers=headers).text


def _seg(value: str) -> str:
    """One path segment (ids never need escaping; anything else is quoted)."""
    from urllib.parse import quote

    return quote(value, safe="")


def _reason(err: Exception) -> str:
    text = str(err).strip()
    return text or type(err).__name__


def _server_error(resp: httpx.Response) -> ServerError:
    kind, message = f"http_{resp.status_code}", resp.reason_phrase or "error"
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        kind = str(err.get("kind", kind))
        message = str(err.get("message", message))
    elif resp.text.strip():
        message = f"{message}: {resp.text.strip()[:200]}"
    retry = resp.headers.get("retry-after")
    if resp.status_code == 429 and retry:
        message = f"{message} (retry after {retry} s)"
    return ServerError(kind, message, resp.status_code)


def invoke_body(
    export: str | None,
    args: Sequence[int | float | str] | None,
    inputs: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if export is not None:
        body["export"] = export
    if args:
        body["args"] = [json_number(a) for a in args]
    if inputs:
        body["inputs"] = {k: dict(v) for k, v in inputs.items()}
    return body


def json_number(value: int | float | str) -> int | float | str:
    """Non-finite floats as the API spells them (``"nan"``, ``"inf"``, ``"-inf"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def tensor_json(array: Any) -> dict[str, Any]:
    """A numpy array → ``{"dtype", "shape", "data_b64"}`` (little-endian bytes)."""
    import numpy as np

    arr = np.asarray(array)
    wire = WIRE_DTYPES.get(arr.dtype.name)
    if wire is None:
        raise ClientError(
            "invalid_input",
            f"dtype {arr.dtype.name} is not supported; use one of {', '.join(WIRE_DTYPES)}",
        )
    little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return {
        "dtype": wire,
        "shape": list(arr.shape),
        "data_b64": base64.b64encode(little.tobytes()).decode(),
    }


def load_npy(path: Path) -> dict[str, Any]:
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ClientError("invalid_input", f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise ClientError("invalid_input", f"{path} is not a .npy array: {err}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise ClientError("invalid_input", f"{path} is not a .npy array")
    return tensor_json(arr)


def wasm_bytes(path: Path) -> bytes:
    """The binary module at `path`; WebAssembly text is converted locally.

    The server accepts binary modules only, so WAT text is converted here
    (`tensorwasm_tc._core.wat_to_wasm`, the same parser `Runtime.load` uses).
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ClientError("invalid_wasm", f"cannot read {path}: {err.strerror}") from None
    if data.startswith(b"\0asm"):
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ClientError(
            "invalid_wasm", f"{path} is neither a binary module (\\0asm) nor WAT text"
        ) from None
    try:
        return _core.wat_to_wasm(text)
    except TensorWasmError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "parse error"
        raise ClientError("invalid_wasm", f"{path} is not valid WAT: {first}") from None


def default_name(path: Path) -> str:
    """A function name from a file name (``[A-Za-z0-9._-]``, ≤ 128 characters)."""
    name = _NAME_BAD.sub("-", path.stem).lstrip("._-")[:128]
    return name or "function"


# --------------------------------------------------------------------------- metrics


def summarize_metrics(text: str) -> dict[str, Any]:
    """The numbers `observe` prints, from one scrape of ``/metrics``.

    ``http_requests_total`` leaves out the ``/metrics`` route, so scrapes
    (this command's own included) do not count as traffic.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {
        "build": {},
        "active_instances": 0,
        "jobs_in_flight": 0,
        "kernel_dispatches_total": 0,
        "kernel_dispatches_by_op": {},
        "instance_spawns_total": 0,
        "http_requests_total": 0,
        "http_requests_in_flight": 0,
        "rate_limited_total": 0,
    }
    by_op: dict[str, int] = out["kernel_dispatches_by_op"]
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as err:
        raise ClientError("invalid_response", f"/metrics is not Prometheus text: {err}") from None
    for family in families:
        for s in family.samples:
            name, labels, value = s.name, s.labels, s.value
            if name == "tensor_wasm_active_instances":
                out["active_instances"] = int(value)
            elif name == "tensor_wasm_jobs_in_flight":
                out["jobs_in_flight"] = int(value)
            elif name == "tensor_wasm_kernel_dispatches_total":
                op = labels.get("op", "?")
                by_op[op] = by_op.get(op, 0) + int(value)
                out["kernel_dispatches_total"] += int(value)
            elif name == "tensor_wasm_instance_spawns_total":
                out["instance_spawns_total"] = int(value)
            elif name == "tensor_wasm_http_requests_total":
                if labels.get("route") != "/metrics":
                    out["http_requests_total"] += int(value)
            elif name == "tensor_wasm_http_requests_in_flight":
                if labels.get("route") != "/metrics":
                    out["http_requests_in_flight"] += int(value)
            elif name == "tensor_wasm_rate_limited_total":
                out["rate_limited_total"] = int(value)
            elif name == "tensor_wasm_build_info":
                out["build"] = dict(labels)
    out["kernel_dispatches_by_op"] = dict(sorted(by_op.items()))
    return out


def _observe_lines(report: Mapping[str, Any]) -> Iterator[str]:
    build = report.get("build") or {}
    yield f"build_version {build.get('version', 'unknown')}"
    if build.get("git_sha"):
        yield f"build_git_sha {build['git_sha']}"
    yield f"active_instances {report['active_instances']}"
    yield f"jobs_in_flight {report['jobs_in_flight']}"
    yield f"kernel_dispatches_total {report['kernel_dispatches_total']}"
    for op, count in report["kernel_dispatches_by_op"].items():
        yield f'kernel_dispatches_total{{op="{op}"}} {count}'
    yield f"instance_spawns_total {report['instance_spawns_total']}"
    yield f"http_requests_total {report['http_requests_total']}"
    yield f"http_requests_in_flight {report['http_requests_in_flight']}"
    rate = report.get("requests_per_second")
    if rate is not None:
        yield f"requests_per_second {rate:.2f}"
    yield f"rate_limited_total {report['rate_limited_total']}"


# --------------------------------------------------------------------------- click plumbing


def _report_error(err: ClientError, as_json: bool, code: int = EXIT_ERROR) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": {"kind": err.kind, "message": err.message}}))
    click.echo(f"error [{err.kind}]: {err.message}", err=True)
    sys.exit(code)


class LocalInputError(ClientError):
    """A local file or key the command cannot use (exit status 2 in the
    snapshot commands)."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_input", message)


def snapshot_exit_code(err: ClientError) -> int:
    """The snapshot commands' exit status for a failure (module docstring)."""
    if isinstance(err, LocalInputError):
        return EXIT_BAD_INPUT
    if isinstance(err, ServerError) and err.status is not None and 400 <= err.status < 500:
        return EXIT_REFUSED
    return EXIT_ERROR


def _global_options() -> list[click.Option]:
    return [
        click.Option(
            ["--server"],
            envvar=SERVER_ENV,
            default=DEFAULT_SERVER,
            show_default=True,
            show_envvar=True,
            metavar="URL",
            help="The gateway's base URL.",
        ),
        click.Option(
            ["--token"],
            envvar=TOKEN_ENV,
            default=None,
            show_envvar=True,
            help="Bearer token (prefer the environment variable: flags show up in `ps`).",
        ),
        click.Option(
            ["--tenant"],
            envvar=TENANT_ENV,
            type=click.IntRange(0, U64_MAX),
            default=None,
            metavar="N",
            show_envvar=True,
            help="Acting tenant (X-TensorWasm-Tenant; the server's default is 0).",
        ),
    ]


def client_command(
    f: Callable[..., None], exit_code: Callable[[ClientError], int] = lambda _err: EXIT_ERROR
) -> Callable[..., None]:
    """Adds ``--server/--token/--tenant``, passes an `ApiClient` as the first
    argument, and turns `ClientError` into ``error [kind]: message`` and
    exit status `exit_code(err)` (1 for every failure by default).

    Apply it below ``@group.command()`` and above the command's own options.
    """

    @functools.wraps(f)
    def wrapper(
        *args: Any, server: str, token: str | None, tenant: int | None, **kwargs: Any
    ) -> None:
        as_json = bool(kwargs.get("as_json", False))
        try:
            with ApiClient(server, token=token, tenant=tenant) as api:
                f(api, *args, **kwargs)
        except ClientError as err:
            _report_error(err, as_json, exit_code(err))

    # click reverses the list when it builds the command: inserting at the
    # front puts the global options after the command's own in --help.
    params: list[click.Parameter] = wrapper.__dict__.setdefault("__click_params__", [])
    params[:0] = reversed(_global_options())
    return wrapper


def _json_option(f: Callable[..., None]) -> Callable[..., None]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def _invoke_options(f: Callable[..., None]) -> Callable[..., None]:
    f = _json_option(f)
    f = click.option(
        "--input",
        "-i",
        "inputs",
        multiple=True,
        metavar="NAME=FILE.npy",
        help="Input tensor NAME from a .npy file (repeatable).",
    )(f)
    f = click.option(
        "--arg",
        "-a",
        "args",
        multiple=True,
        metavar="N",
        help="Numeric argument, in order (repeatable; -5, 0x1f, 1e3, inf work).",
    )(f)
    f = click.option(
        "--export", "-e", default=None, help="Export to call (default: _start, then main)."
    )(f)
    return f


def _parse_pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"{item!r} is not {what}")
        out[key] = value
    return out


def _numbers(args: Sequence[str]) -> list[int | float | str]:
    from tensorwasm_tc.cli.tensor_wasm import _parse_number

    return [json_number(_parse_number(a)) for a in args]


def _inputs(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    files = _parse_pairs(pairs, "NAME=FILE.npy")
    return {name: load_npy(Path(path)) for name, path in files.items()}


def _print_invoke(out: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(out))
        return
    stdout = out.get("stdout") or ""
    stderr = out.get("stderr") or ""
    click.echo(stdout, nl=False)
    if stdout and not stdout.endswith("\n"):
        click.echo()
    click.echo(stderr, nl=False, err=True)
    result = out.get("result") or []
    click.echo("result: " + " ".join(str(v) for v in result))
    for name, tensor in (out.get("outputs") or {}).items():
        click.echo(f"output {name}: {json.dumps(tensor)}")


def _exports_text(exports: Mapping[str, Any]) -> list[str]:
    lines = []
    for name, sig in sorted(exports.items()):
        try:
            params, results = sig
            text = f"{name}({', '.join(params)})"
            if results:
                text += " -> " + ", ".join(results)
        except (TypeError, ValueError):
            text = name
        lines.append(text)
    return lines


# --------------------------------------------------------------------------- commands


@click.command()
@client_command
@click.argument("module", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", "-n", default=None, help="Function name (default: from the file name).")
@click.option(
    "--artifact",
    "artifacts",
    multiple=True,
    metavar="ALIAS=KEY",
    help="Bind a TensorCast artifact (repeatable).",
)
@click.option("--max-memory-bytes", type=click.IntRange(min=1), default=None)
@click.option("--deadline-ms", type=click.IntRange(min=1), default=None)
@click.option(
    "--init-export",
    default=None,
    help="Pre-initialise: this export runs once, at deploy, and every instance starts "
    "from the state it leaves.",
)
@_json_option
def deploy(
    api: ApiClient,
    module: Path,
    name: str | None,
    artifacts: tuple[str, ...],
    max_memory_bytes: int | None,
    deadline_ms: int | None,
    init_export: str | None,
    as_json: bool,
) -> None:
    """Deploy MODULE (.wasm, or .wat text) to the server; print its function id."""
    bound = _parse_pairs(artifacts, "ALIAS=KEY")
    wasm = wasm_bytes(module)
    out = api.deploy(
        name or default_name(module),
        wasm,
        artifacts=bound,
        max_memory_bytes=max_memory_bytes,
        deadline_ms=deadline_ms,
        init_export=init_export,
    )
    click.echo(json.dumps(out) if as_json else out["id"])


@click.command()
@client_command
@click.argument("function_id", metavar="ID")
@_invoke_options
@click.option(
    "--async",
    "run_async",
    is_flag=True,
    help="Queue the invoke and print the job id (see `jobs get`).",
)
def invoke(
    api: ApiClient,
    function_id: str,
    export: str | None,
    args: tuple[str, ...],
    inputs: tuple[str, ...],
    as_json: bool,
    run_async: bool,
) -> None:
    """Invoke an export of function ID on a fresh instance."""
    numbers = _numbers(args)
    tensors = _inputs(inputs)
    if run_async:
        job_id = api.invoke_async(function_id, export, numbers, tensors)
        click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)
        return
    _print_invoke(api.invoke(function_id, export, numbers, tensors), as_json)


# --- functions ---------------------------------------------------------------


@click.group()
def functions() -> None:
    """List, show and delete deployed functions."""


@functions.command("list")
@client_command
@_json_option
def functions_list(api: ApiClient, as_json: bool) -> None:
    """Functions of the acting tenant (every tenant the token may act for
    when no --tenant is given)."""
    items = api.list_functions()
    if as_json:
        click.echo(json.dumps({"functions": items}))
        return
    for fn in items:
        exports = ",".join(sorted(fn.get("exports", {})))
        click.echo(f"{fn['id']}  {fn['name']}  tenant={fn['tenant_id']}  exports={exports}")


@functions.command("show")
@client_command
@click.argument("function_id", metavar="ID")
@_json_option
def functions_show(api: ApiClient, function_id: str, as_json: bool) -> None:
    """Show function ID: exports, limits, artifacts."""
    fn = api.get_function(function_id)
    if as_json:
        click.echo(json.dumps(fn))
        return
    click.echo(f"id: {fn['id']}")
    click.echo(f"name: {fn['name']}")
    click.echo(f"tenant_id: {fn['tenant_id']}")
    click.echo(f"module_hash: {fn.get('module_hash', '')}")
    click.echo("exports:")
    for line in _exports_text(fn.get("exports", {})):
        click.echo(f"  {line}")
    limits = fn.get("limits") or {}
    click.echo("limits: " + ", ".join(f"{k}={v}" for k, v in sorted(limits.items())))
    artifacts = fn.get("artifacts") or {}
    click.echo("artifacts: " + (", ".join(f"{k}={v}" for k, v in artifacts.items()) or "-"))
    click.echo(f"init_export: {fn.get('init_export') or '-'}")
    click.echo(f"created_unix_ms: {fn.get('created_unix_ms')}")


@functions.command("delete")
@client_command
@click.argument("function_id", metavar="ID")
@_json_option
def functions_delete(api: ApiClient, function_id: str, as_json: bool) -> None:
    """Delete function ID (and close its instances)."""
    api.delete_function(function_id)
    click.echo(json.dumps({"deleted": function_id}) if as_json else f"deleted {function_id}")


# --- instances ---------------------------------------------------------------


@click.group()
def instances() -> None:
    """Persistent instances: their state carries over between invokes."""


@instances.command("list")
@client_command
@_json_option
def instances_list(api: ApiClient, as_json: bool) -> None:
    """Live instances of the acting tenant."""
    items = api.list_instances()
    if as_json:
        click.echo(json.dumps({"instances": items}))
        return
    for inst in items:
        click.echo(
            f"{inst['instance_id']}  function={inst['function_id']}  tenant={inst['tenant_id']}"
        )


@instances.command("create")
@client_command
@click.argument("function_id", metavar="FUNCTION_ID")
@_json_option
def instances_create(api: ApiClient, function_id: str, as_json: bool) -> None:
    """Start an instance of FUNCTION_ID; print its id."""
    out = api.create_instance(function_id)
    click.echo(json.dumps(out) if as_json else out["instance_id"])


@instances.command("invoke")
@client_command
@click.argument("instance_id", metavar="ID")
@_invoke_options
def instances_invoke(
    api: ApiClient,
    instance_id: str,
    export: str | None,
    args: tuple[str, ...],
    inputs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Invoke an export on instance ID."""
    out = api.invoke_instance(instance_id, export, _numbers(args), _inputs(inputs))
    _print_invoke(out, as_json)


@instances.command("delete")
@client_command
@click.argument("instance_id", metavar="ID")
@_json_option
def instances_delete(api: ApiClient, instance_id: str, as_json: bool) -> None:
    """Close instance ID."""
    api.delete_instance(instance_id)
    click.echo(json.dumps({"deleted": instance_id}) if as_json else f"deleted {instance_id}")


# --- jobs --------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """Async invokes (`invoke --async`)."""


@jobs.command("get")
@client_command
@click.argument("job_id", metavar="ID")
@click.option("--wait", is_flag=True, help="Poll until the job is completed or failed.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="With --wait: give up after this many seconds.",
)
@_json_option
def jobs_get(api: ApiClient, job_id: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Show job ID; exits 1 if the job failed."""
    job = api.wait_job(job_id, timeout) if wait else api.get_job(job_id)
    status = job.get("status")
    error = job.get("error") or {}
    if as_json:
        click.echo(json.dumps(job))
    else:
        click.echo(f"status: {status}")
        if status == "completed":
            _print_invoke(job, False)
    if status == "failed":
        kind = error.get("kind", "internal")
        click.echo(f"error [{kind}]: {error.get('message', 'the job failed')}", err=True)
        sys.exit(1)


# --- observe -----------------------------------------------------------------


@click.command()
@client_command
@click.option("--once", is_flag=True, help="One report (two scrapes --interval apart), then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between scrapes.",
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N reports.")
@click.option(
    "--metrics-token",
    envvar=METRICS_TOKEN_ENV,
    default=None,
    show_envvar=True,
    help="Bearer for /metrics when the server sets one (default: --token).",
)
@_json_option
def observe(
    api: ApiClient,
    once: bool,
    interval: float,
    count: int | None,
    metrics_token: str | None,
    as_json: bool,
) -> None:
    """Watch the server's /metrics: instances, jobs, kernel dispatches, request rate.

    Prints `name value` lines (one JSON object per report with --json) every
    --interval seconds until Ctrl-C. The request rate counts every route
    but /metrics, from the difference between two scrapes.
    """
    limit = 1 if once else count
    done = 0
    prev = summarize_metrics(api.metrics(metrics_token))
    prev_t = time.monotonic()
    try:
        while limit is None or done < limit:
            time.sleep(interval)
            report = summarize_metrics(api.metrics(metrics_token))
            now = time.monotonic()
            delta = report["http_requests_total"] - prev["http_requests_total"]
            report["requests_per_second"] = round(max(delta, 0) / max(now - prev_t, 1e-9), 3)
            report["interval_s"] = round(now - prev_t, 3)
            report["server"] = api.server
            prev, prev_t = report, now
            done += 1
            if as_json:
                click.echo(json.dumps(report))
            else:
                if done > 1:
                    click.echo()
                for line in _observe_lines(report):
                    click.echo(line)
    except KeyboardInterrupt:
        return


# --- snapshots ---------------------------------------------------------------


@click.group()
def snapshot() -> None:
    """Save instances to files, restore them (on this server or another one
    that has the function deployed), and check snapshot files offline.

    \b
    Exit status:
      0  ok
      1  error: network, a server fault, a corrupt or badly signed snapshot
      2  bad local input: a missing or unreadable file or key, bad arguments
      3  the server refused the request (a 4xx answer: unknown instance,
         another tenant's, snapshot of another function, ...)
    """


def _snapshot_command(f: Callable[..., None]) -> Callable[..., None]:
    return client_command(f, snapshot_exit_code)


class _Progress:
    """A progress bar on stderr for a transfer of at least
    `PROGRESS_MIN_BYTES`, shown only when stderr is a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None

    def start(self, total: int | None) -> Callable[[int], None]:
        if total is None or total < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
            return lambda _n: None
        self._bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
        self._bar.__enter__()
        update: Callable[[int], None] = self._bar.update
        return update

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _open_snapshot(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as err:
        raise LocalInputError(f"cannot read {path}: {err.strerror}") from None


def read_snapshot(path: Path, key: bytes | None) -> dict[str, Any]:
    """`inspect_snapshot` of a local file, failures as `ClientError`s: with
    a key, the snapshot must carry a signature made with it."""
    with _open_snapshot(path):
        pass
    try:
        meta = inspect_snapshot(path, signing_key=key, require_signature=key is not None)
    except TensorWasmError as err:
        if err.kind == "invalid_args":  # the file or the key, not the snapshot
            raise LocalInputError(str(err)) from None
        raise ClientError(err.kind, str(err)) from None
    meta["file_bytes"] = path.stat().st_size
    return meta


def _snapshot_lines(meta: Mapping[str, Any]) -> Iterator[str]:
    created = int(meta["created_unix_ms"])
    when = datetime.fromtimestamp(created / 1000, UTC).isoformat(timespec="milliseconds")
    signature = {
        "unsigned": "unsigned",
        "signed_unverified": "signed (not verified: no key given)",
        "verified": "signed, verified",
    }.get(meta["verification"], meta["verification"])
    yield f"snapshot_version: {meta['snapshot_version']}"
    yield f"function_hash: {meta['function_hash']}"
    yield f"tenant_id: {meta['tenant_id']}"
    yield f"instance_id: {meta['instance_id'] or '-'}"
    yield f"created: {when.replace('+00:00', 'Z')} ({created})"
    yield f"runtime_version: {meta['runtime_version']}"
    yield f"signature: {signature}"
    yield f"module_embedded: {'yes' if meta['module_embedded'] else 'no'}"
    memory = meta.get("memory")
    if memory:
        yield (
            f"memory: {memory['byte_len']} bytes, {memory['stored_bytes']} stored "
            f"in {memory['runs']} run(s)"
        )
    else:
        yield "memory: none"
    yield f"file_bytes: {meta['file_bytes']}"
    yield "sections:"
    for section in meta["sections"]:
        yield f"  {section['kind']:<10} {section['raw_len']} bytes"


@snapshot.command("save")
@_snapshot_command
@click.argument("instance_id", metavar="INSTANCE_ID")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--compression",
    type=click.Choice(["none", "zstd"]),
    default="none",
    show_default=True,
    help="Compress the file's memory and module.",
)
@click.option(
    "--level", type=click.IntRange(1, 19), default=None, help="zstd level (server default: 3)."
)
@_json_option
def snapshot_save(
    api: ApiClient,
    instance_id: str,
    path: Path,
    compression: str,
    level: int | None,
    as_json: bool,
) -> None:
    """Save a snapshot of instance INSTANCE_ID to PATH (a file; in a
    directory, INSTANCE_ID.twsnap).

    The file embeds the function's module and is signed when the server has
    a snapshot key. It is written beside PATH and renamed into place, so PATH
    never holds half a snapshot.
    """
    if path.is_dir():
        path = path / f"{_NAME_BAD.sub('-', instance_id)}.twsnap"
    parent = path.parent
    if not parent.is_dir():
        raise LocalInputError(f"{parent}: no such directory")
    try:
        fd, part = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as err:
        raise LocalInputError(f"cannot write in {parent}: {err.strerror}") from None
    done = False
    try:
        with os.fdopen(fd, "wb") as dest, _Progress("saving") as progress:
            info = api.save_snapshot(
                instance_id,
                dest,
                compression=None if compression == "none" else compression,
                level=level,
                progress=progress.start,
            )
            dest.flush()
            os.fsync(dest.fileno())
        os.replace(part, path)
        done = True
    except OSError as err:
        raise LocalInputError(f"cannot write {path}: {err.strerror}") from None
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(part)
    info["path"] = str(path)
    if as_json:
        click.echo(json.dumps(info))
        return
    signed = "signed" if info["signed"] else "unsigned"
    click.echo(f"saved {instance_id} to {path} ({info['file_bytes']} bytes, {signed})")


@snapshot.command("restore")
@_snapshot_command
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--as-instance",
    "as_instance",
    default=None,
    metavar="ID",
    help="Id of the new instance (default: a new in_... id); refused if taken.",
)
@click.option(
    "--function",
    "function_id",
    default=None,
    metavar="FUNCTION_ID",
    help="Restore onto this function (default: the acting tenant's newest function "
    "with the snapshot's module_hash).",
)
@_json_option
def snapshot_restore(
    api: ApiClient,
    path: Path,
    as_instance: str | None,
    function_id: str | None,
    as_json: bool,
) -> None:
    """Restore the snapshot at PATH as a new instance; print its id.

    The server must have the snapshot's function deployed for the acting
    tenant (deploy it first on a new server).
    """
    source = _open_snapshot(path)
    with source, _Progress("restoring") as progress:
        size = os.fstat(source.fileno()).st_size
        out = api.restore_snapshot(
            source,
            size,
            instance_id=as_instance,
            function_id=function_id,
            progress=progress.start,
        )
    click.echo(json.dumps(out) if as_json else out["instance_id"])


@snapshot.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_json_option
def snapshot_inspect(path: Path, as_json: bool) -> None:
    """Describe the snapshot at PATH, offline: metadata, sections, memory.

    Reads the whole file and checks every checksum (exit 1 if one fails);
    the signature is only checked by `verify`.
    """
    try:
        meta = read_snapshot(path, None)
    except ClientError as err:
        _report_error(err, as_json, snapshot_exit_code(err))
    if as_json:
        click.echo(json.dumps(meta))
        return
    for line in _snapshot_lines(meta):
        click.echo(line)


@snapshot.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--hmac-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=SNAPSHOT_KEY_FILE_ENV,
    show_envvar=True,
    default=None,
    help="The signing key (its bytes, trailing whitespace removed). With a key, the "
    "snapshot must be signed with it; an unsigned one fails.",
)
@_json_option
def snapshot_verify(path: Path, hmac_key_file: Path | None, as_json: bool) -> None:
    """Check the snapshot at PATH offline: every checksum, and with a key
    its signature. Prints `ok: unsigned`, `ok: signed_unverified` (no key)
    or `ok: verified`; exits 1 when the file fails a check."""
    try:
        key = None
        if hmac_key_file is not None:
            try:
                key = read_key_file(hmac_key_file)
            except TensorWasmError as err:
                raise LocalInputError(str(err)) from None
        meta = read_snapshot(path, key)
    except ClientError as err:
        _report_error(err, as_json, snapshot_exit_code(err))
    verification = meta["verification"]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "path": str(path),
                    "verification": verification,
                    "function_hash": meta["function_hash"],
                    "file_bytes": meta["file_bytes"],
                }
            )
        )
        return
    click.echo(f"ok: {verification}")


CLIENT_COMMANDS: Final[tuple[click.Command, ...]] = (
    deploy,
    invoke,
    functions,
    instances,
    jobs,
    observe,
    snapshot,
)


def register(group: click.Group) -> None:
    """Adds the client commands to `group` (the `tensor-wasm` CLI)."""
    for command in CLIENT_COMMANDS:
        group.add_command(command)
