"""The command-line client of the HTTP gateway (`docs/API.md`).

`ApiClient` speaks the gateway's JSON API over httpx; the click commands
below (`deploy`, `invoke`, `functions`, `instances`, `jobs`, `observe`) are
registered onto the `tensor-wasm` group by `register`. Every command takes
``--server`` (env ``TENSOR_WASM_SERVER``), ``--token`` (env
``TENSOR_WASM_API_TOKEN``, sent as ``Authorization: Bearer``) and
``--tenant`` (env ``TENSOR_WASM_TENANT``, sent as ``X-TensorWasm-Tenant``).

A failure prints ``error [kind]: message`` on stderr and exits with status 1:
the server's error envelope as it came, or one of the client's own kinds
(`connection_failed`, `timeout`, `invalid_response`, `invalid_wasm`,
`invalid_input`).
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import click
import httpx

from tensorwasm_tc import TensorWasmError, __version__, _core

DEFAULT_SERVER: Final = "http://127.0.0.1:8080"
SERVER_ENV: Final = "TENSOR_WASM_SERVER"
TOKEN_ENV: Final = "TENSOR_WASM_API_TOKEN"
TENANT_ENV: Final = "TENSOR_WASM_TENANT"
METRICS_TOKEN_ENV: Final = "TENSOR_WASM_API_METRICS_TOKEN"
TENANT_HEADER: Final = "X-TensorWasm-Tenant"
U64_MAX: Final = (1 << 64) - 1

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
        try:
            resp = self._http.request(method, path, json=json_body, headers=headers)
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
        if resp.is_success:
            return resp
        raise _server_error(resp)

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


def _report_error(err: ClientError, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": {"kind": err.kind, "message": err.message}}))
    click.echo(f"error [{err.kind}]: {err.message}", err=True)
    sys.exit(1)


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


def client_command(f: Callable[..., None]) -> Callable[..., None]:
    """Adds ``--server/--token/--tenant``, passes an `ApiClient` as the first
    argument, and turns `ClientError` into ``error [kind]: message`` + exit 1.

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
            _report_error(err, as_json)

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
@click.option("--init-export", default=None, help="Export run before every invoke's export.")
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


CLIENT_COMMANDS: Final[tuple[click.Command, ...]] = (
    deploy,
    invoke,
    functions,
    instances,
    jobs,
    observe,
)


def register(group: click.Group) -> None:
    """Adds the client commands to `group` (the `tensor-wasm` CLI)."""
    for command in CLIENT_COMMANDS:
        group.add_command(command)
