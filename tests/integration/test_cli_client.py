"""The command-line client (`deploy`, `invoke`, `functions`, `instances`,
`jobs`, `observe`) against a real `tensor-wasm serve` on a loopback port."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tensorwasm_tc
from click.testing import CliRunner, Result
from tensorwasm_tc.cli.client import (
    ApiClient,
    ClientError,
    ServerError,
    default_name,
    normalize_server,
    summarize_metrics,
)
from tensorwasm_tc.cli.tensor_wasm import main

from ._gateway import CORPUS, GUESTS, GatewayServer, free_port, running_gateway
from ._helpers import run_cli

TOKEN = "tok"
CLIENT_ENV_VARS = ("TENSOR_WASM_SERVER", "TENSOR_WASM_API_TOKEN", "TENSOR_WASM_TENANT")
FUNCTION_ID = re.compile(r"^fn_[0-9a-f]+$")
JOB_ID = re.compile(r"^job_[0-9a-f]+$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    home = tmp_path_factory.mktemp("cli-client") / "home"
    env = {"TENSOR_WASM_API_TOKENS": f"{TOKEN}:tenant=*", "TENSOR_WASM_API_AUDIT_LOG": "none"}
    with running_gateway(home, env) as srv:
        yield srv


def cli(
    server: GatewayServer | str | None,
    *args: str,
    token: str | None = TOKEN,
    tenant: int | None = None,
) -> Result:
    """Runs `tensor-wasm ARGS` in-process with the client's env vars set."""
    env: dict[str, str | None] = dict.fromkeys(CLIENT_ENV_VARS)
    if server is not None:
        env["TENSOR_WASM_SERVER"] = server if isinstance(server, str) else server.url
    if token is not None:
        env["TENSOR_WASM_API_TOKEN"] = token
    if tenant is not None:
        env["TENSOR_WASM_TENANT"] = str(tenant)
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def failed(result: Result, kind: str) -> str:
    """Exit status 1 and `error [kind]: ...` on stderr; returns stderr."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert re.search(rf"^error \[{re.escape(kind)}\]: \S", result.stderr, re.M), result.stderr
    return result.stderr


def deploy(server: GatewayServer, path: Path, *extra: str, tenant: int | None = None) -> str:
    fid = ok(cli(server, "deploy", str(path), *extra, tenant=tenant)).strip()
    assert FUNCTION_ID.match(fid), fid
    return fid


@pytest.fixture(scope="module")
def vector_add(server: GatewayServer) -> str:
    return deploy(server, GUESTS / "vector_add.wasm", "--name", "vector_add")


@pytest.fixture(scope="module")
def arith(server: GatewayServer) -> str:
    """tests/corpus/i32_arith.wat: WAT text, converted by the client."""
    return deploy(server, CORPUS / "i32_arith.wat")


def save(path: Path, array: Any) -> Path:
    np.save(path, array)
    return path


# --------------------------------------------------------------------------- deploy


def test_deploy_prints_the_function_id_and_the_server_has_it(
    server: GatewayServer, vector_add: str
) -> None:
    fn = server.client(TOKEN).get(f"/functions/{vector_add}").json()
    assert fn["name"] == "vector_add"
    assert set(fn["exports"]) >= {"run"}


def test_deploy_json_sends_name_and_limits(server: GatewayServer) -> None:
    out = ok(
        cli(
            server,
            "deploy",
            str(GUESTS / "vector_add.wasm"),
            "--name",
            "va-limited",
            "--max-memory-bytes",
            str(64 << 20),
            "--deadline-ms",
            "1234",
            "--json",
        )
    )
    fn = json.loads(out)
    assert FUNCTION_ID.match(fn["id"])
    assert fn["name"] == "va-limited"
    assert fn["limits"]["max_memory_bytes"] == 64 << 20
    assert fn["limits"]["deadline_ms"] == 1234


def test_deploy_wat_names_the_function_after_the_file(server: GatewayServer, arith: str) -> None:
    fn = json.loads(ok(cli(server, "functions", "show", arith, "--json")))
    assert fn["name"] == "i32_arith"
    assert {"add", "sub", "neg"} <= set(fn["exports"])


def test_deploy_init_export_must_be_an_export(server: GatewayServer) -> None:
    result = cli(server, "deploy", str(CORPUS / "stateful_counter.wat"), "--init-export", "nope")
    failed(result, "missing_export")


def test_deploy_artifacts_are_sent(server: GatewayServer) -> None:
    # This server has no TensorCast store, so binding an artifact is refused:
    # the refusal shows the artifacts reached it.
    result = cli(server, "deploy", str(GUESTS / "mlp.wasm"), "--artifact", "weights=mlp/v1")
    failed(result, "artifact_store_unavailable")


def test_deploy_bad_artifact_pair_is_a_usage_error(server: GatewayServer) -> None:
    result = cli(server, "deploy", str(GUESTS / "vector_add.wasm"), "--artifact", "weights")
    assert result.exit_code == 2
    assert "ALIAS=KEY" in result.stderr


def test_deploy_invalid_wat_is_refused_locally(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wat"
    bad.write_text('(module (func (export "f") (result i32) i32.bogus))')
    stderr = failed(cli(f"http://127.0.0.1:{free_port()}", "deploy", str(bad)), "invalid_wasm")
    assert "not valid WAT" in stderr


def test_deploy_wat_needs_no_other_package(
    server: GatewayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wasmtime", None)  # not installed
    result = cli(server, "deploy", str(CORPUS / "i32_arith.wat"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["id"].startswith("fn_")


def test_deploy_garbage_is_rejected_by_the_server(server: GatewayServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\x01\0\0\0\xff\xff")
    failed(cli(server, "deploy", str(bad)), "invalid_wasm")


def test_default_name_fits_the_servers_rule() -> None:
    assert default_name(Path("vector_add.wasm")) == "vector_add"
    assert default_name(Path("my model (v2).wat")) == "my-model-v2-"
    assert default_name(Path("__.wasm")) == "function"
    assert len(default_name(Path("x" * 300 + ".wasm"))) == 128


# --------------------------------------------------------------------------- invoke


def test_invoke_with_npy_inputs_prints_result_and_outputs(
    server: GatewayServer, vector_add: str, tmp_path: Path
) -> None:
    a = save(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    b = save(tmp_path / "b.npy", np.full(3, 0.5, dtype=np.float32))
    out = ok(cli(server, "invoke", vector_add, "-e", "run", "--input", f"a={a}", "-i", f"b={b}"))
    lines = out.splitlines()
    assert "result: 0" in lines
    (c_line,) = [line for line in lines if line.startswith("output c: ")]
    c = json.loads(c_line.removeprefix("output c: "))
    assert c["dtype"] == "f32" and c["shape"] == [2, 3]
    np.testing.assert_array_equal(
        np.asarray(c["data"], dtype=np.float32).reshape(2, 3),
        np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5,
    )


def test_invoke_json_with_integer_npy_inputs(
    server: GatewayServer, vector_add: str, tmp_path: Path
) -> None:
    a = save(tmp_path / "a.npy", np.array([[1], [2]], dtype=np.int64))
    b = save(tmp_path / "b.npy", np.array([10, 20, -30], dtype=np.int64))
    res = json.loads(
        ok(cli(server, "invoke", vector_add, "-e", "run", "-i", f"a={a}", "-i", f"b={b}", "--json"))
    )
    assert res["function_id"] == vector_add
    assert res["result"] == [0]
    assert res["outputs"]["c"] == {
        "dtype": "i64",
        "shape": [2, 3],
        "data": [11, 21, -29, 12, 22, -28],
    }


def test_invoke_big_endian_npy_is_sent_little_endian(
    server: GatewayServer, vector_add: str, tmp_path: Path
) -> None:
    a = save(tmp_path / "a.npy", np.array([1.5, -2.0], dtype=">f8"))
    b = save(tmp_path / "b.npy", np.array([1.0, 1.0], dtype="<f8"))
    res = json.loads(
        ok(cli(server, "invoke", vector_add, "-e", "run", "-i", f"a={a}", "-i", f"b={b}", "--json"))
    )
    assert res["outputs"]["c"]["data"] == [2.5, -1.0]


def test_invoke_parses_numbers_like_run(server: GatewayServer, arith: str) -> None:
    assert "result: 11" in ok(
        cli(server, "invoke", arith, "-e", "add", "--arg", "-5", "-a", "0x10")
    )
    assert "result: -7" in ok(cli(server, "invoke", arith, "-e", "neg", "--arg", "7"))
    res = json.loads(
        ok(cli(server, "invoke", arith, "-e", "sub", "-a", "010", "-a", "1_000", "--json"))
    )
    assert res["result"] == [10 - 1000]


def test_invoke_float_args_including_non_finite(server: GatewayServer) -> None:
    fid = deploy(server, CORPUS / "f64_arith.wat")
    res = json.loads(
        ok(cli(server, "invoke", fid, "-e", "add", "-a", "-1e3", "-a", ".5", "--json"))
    )
    assert res["result"] == [-999.5]
    res = json.loads(ok(cli(server, "invoke", fid, "-e", "add", "-a", "-inf", "-a", "1", "--json")))
    assert res["result"] == ["-inf"]
    out = ok(cli(server, "invoke", fid, "-e", "add", "-a", "nan", "-a", "1"))
    assert "result: nan" in out.splitlines()


def test_invoke_non_numeric_arg_is_a_usage_error(server: GatewayServer, arith: str) -> None:
    result = cli(server, "invoke", arith, "-e", "add", "-a", "two", "-a", "3")
    assert result.exit_code == 2
    assert "is not a number" in result.stderr


def test_invoke_server_errors_print_kind_and_exit_1(server: GatewayServer, arith: str) -> None:
    failed(cli(server, "invoke", arith, "-e", "add", "-a", "1.5", "-a", "2"), "invalid_args")
    failed(cli(server, "invoke", arith, "-e", "missing"), "missing_export")
    failed(cli(server, "invoke", "fn_0000", "-e", "add"), "not_found")


def test_invoke_error_with_json_prints_the_envelope(server: GatewayServer) -> None:
    result = cli(server, "invoke", "fn_0000", "--json")
    failed(result, "not_found")
    assert json.loads(result.stdout)["error"]["kind"] == "not_found"


def test_invoke_bad_inputs_are_refused_before_sending(
    server: GatewayServer, vector_add: str, tmp_path: Path
) -> None:
    result = cli(server, "invoke", vector_add, "-i", str(tmp_path / "a.npy"))
    assert result.exit_code == 2 and "NAME=FILE.npy" in result.stderr
    stderr = failed(
        cli(server, "invoke", vector_add, "-i", f"a={tmp_path}/nope.npy"), "invalid_input"
    )
    assert "no such file" in stderr
    text = tmp_path / "a.txt"
    text.write_text("1 2 3")
    failed(cli(server, "invoke", vector_add, "-i", f"a={text}"), "invalid_input")
    u16 = save(tmp_path / "u16.npy", np.arange(3, dtype=np.uint16))
    stderr = failed(cli(server, "invoke", vector_add, "-i", f"a={u16}"), "invalid_input")
    assert "uint16" in stderr


def test_invoke_prints_guest_stdout(server: GatewayServer, tmp_path: Path) -> None:
    hello = tmp_path / "hello.wat"
    hello.write_text(
        """
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\\10\\00\\00\\00\\06\\00\\00\\00")
  (data (i32.const 16) "hello\\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""
    )
    fid = deploy(server, hello)
    out = ok(cli(server, "invoke", fid))
    assert out.splitlines()[0] == "hello"
    assert json.loads(ok(cli(server, "invoke", fid, "--json")))["stdout"] == "hello\n"


# --------------------------------------------------------------------------- jobs


def test_async_invoke_then_jobs_get_wait(server: GatewayServer, arith: str) -> None:
    job_id = ok(cli(server, "invoke", arith, "-e", "mul", "-a", "6", "-a", "-7", "--async")).strip()
    assert JOB_ID.match(job_id), job_id
    out = ok(cli(server, "jobs", "get", job_id, "--wait", "--timeout", "30"))
    assert out.splitlines()[0] == "status: completed"
    assert "result: -42" in out.splitlines()
    job = json.loads(ok(cli(server, "jobs", "get", job_id, "--json")))
    assert job["id"] == job_id and job["status"] == "completed" and job["result"] == [-42]


def test_async_invoke_json_and_tensor_outputs(
    server: GatewayServer, vector_add: str, tmp_path: Path
) -> None:
    a = save(tmp_path / "a.npy", np.ones(2, dtype=np.float64))
    out = ok(
        cli(
            server,
            "invoke",
            vector_add,
            "-e",
            "run",
            "-i",
            f"a={a}",
            "-i",
            f"b={a}",
            "--async",
            "--json",
        )
    )
    job_id = json.loads(out)["job_id"]
    job = json.loads(ok(cli(server, "jobs", "get", job_id, "--wait", "--json")))
    assert job["status"] == "completed"
    assert job["outputs"]["c"]["data"] == [2.0, 2.0]


def test_failed_job_exits_1_with_its_error(server: GatewayServer, arith: str) -> None:
    job_id = ok(
        cli(server, "invoke", arith, "-e", "add", "-a", "1.5", "-a", "1", "--async")
    ).strip()
    result = cli(server, "jobs", "get", job_id, "--wait")
    assert result.stdout.splitlines()[0] == "status: failed"
    failed(result, "invalid_args")
    result = cli(server, "jobs", "get", job_id, "--json")
    failed(result, "invalid_args")
    assert json.loads(result.stdout)["error"]["kind"] == "invalid_args"


def test_jobs_get_unknown_job(server: GatewayServer) -> None:
    failed(cli(server, "jobs", "get", "job_0000"), "not_found")


# --------------------------------------------------------------------------- functions


def test_functions_list_show_delete(server: GatewayServer) -> None:
    fid = deploy(server, CORPUS / "i32_arith.wat", "--name", "to-delete")
    listing = ok(cli(server, "functions", "list"))
    (line,) = [line for line in listing.splitlines() if line.startswith(fid)]
    assert "to-delete" in line and "exports=" in line and "add" in line
    ids = {f["id"] for f in json.loads(ok(cli(server, "functions", "list", "--json")))["functions"]}
    assert fid in ids

    shown = ok(cli(server, "functions", "show", fid)).splitlines()
    assert f"id: {fid}" in shown
    assert "name: to-delete" in shown
    assert "  add(i32, i32) -> i32" in shown
    assert "  neg(i32) -> i32" in shown

    assert ok(cli(server, "functions", "delete", fid)).strip() == f"deleted {fid}"
    failed(cli(server, "functions", "show", fid), "not_found")
    failed(cli(server, "functions", "delete", fid), "not_found")
    assert fid not in ok(cli(server, "functions", "list"))


def test_tenant_option_and_env_scope_the_calls(server: GatewayServer) -> None:
    fid = deploy(server, CORPUS / "i32_arith.wat", "--name", "t7", tenant=7)
    assert (
        json.loads(ok(cli(server, "functions", "show", fid, "--json", tenant=7)))["tenant_id"] == 7
    )
    assert fid in ok(cli(server, "functions", "list", "--tenant", "7"))
    assert fid not in ok(cli(server, "functions", "list", "--tenant", "8"))
    failed(cli(server, "functions", "show", fid), "tenant_scope_denied")  # tenant 0
    failed(cli(server, "invoke", fid, "-e", "add", "--tenant", "8"), "tenant_scope_denied")
    assert "result: 3" in ok(
        cli(server, "invoke", fid, "-e", "add", "-a", "1", "-a", "2", tenant=7)
    )


def test_tenant_must_be_an_unsigned_integer(server: GatewayServer) -> None:
    assert cli(server, "functions", "list", "--tenant", "-1").exit_code == 2
    assert cli(server, "functions", "list", "--tenant", "abc").exit_code == 2


# --------------------------------------------------------------------------- instances


def test_instances_create_invoke_list_delete(server: GatewayServer) -> None:
    fid = deploy(server, CORPUS / "stateful_counter.wat")
    iid = ok(cli(server, "instances", "create", fid)).strip()
    assert iid.startswith("in_")
    assert "result: 1" in ok(cli(server, "instances", "invoke", iid, "-e", "inc"))
    assert "result: 11" in ok(cli(server, "instances", "invoke", iid, "-e", "add", "-a", "10"))
    res = json.loads(ok(cli(server, "instances", "invoke", iid, "-e", "get", "--json")))
    assert res["result"] == [11] and res["instance_id"] == iid
    assert any(line.startswith(iid) for line in ok(cli(server, "instances", "list")).splitlines())
    listed = json.loads(ok(cli(server, "instances", "list", "--json")))["instances"]
    assert iid in {i["instance_id"] for i in listed}
    assert ok(cli(server, "instances", "delete", iid)).strip() == f"deleted {iid}"
    failed(cli(server, "instances", "invoke", iid, "-e", "get"), "not_found")


# --------------------------------------------------------------------------- observe


def test_observe_once_json(server: GatewayServer, vector_add: str, tmp_path: Path) -> None:
    a = save(tmp_path / "a.npy", np.ones(3, dtype=np.float32))
    ok(cli(server, "invoke", vector_add, "-e", "run", "-i", f"a={a}", "-i", f"b={a}"))
    report = json.loads(ok(cli(server, "observe", "--once", "--json", "--interval", "0.2")))
    assert report["build"]["version"] == tensorwasm_tc.__version__
    assert report["active_instances"] >= 0
    assert report["jobs_in_flight"] == 0
    assert report["kernel_dispatches_by_op"].get("add", 0) >= 1
    assert report["kernel_dispatches_total"] == sum(report["kernel_dispatches_by_op"].values())
    assert report["http_requests_total"] >= 1
    assert report["requests_per_second"] >= 0
    assert report["rate_limited_total"] == 0
    assert report["server"] == server.url


def test_observe_once_lines_are_greppable(server: GatewayServer) -> None:
    out = ok(cli(server, "observe", "--once", "--interval", "0.1"))
    for name in (
        "active_instances",
        "jobs_in_flight",
        "kernel_dispatches_total",
        "http_requests_total",
        "rate_limited_total",
    ):
        assert re.search(rf"^{name} \d+$", out, re.M), (name, out)
    assert re.search(r"^requests_per_second \d+\.\d\d$", out, re.M), out
    assert f"build_version {tensorwasm_tc.__version__}" in out.splitlines()


def test_observe_measures_the_request_rate(server: GatewayServer) -> None:
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            while not stop.is_set():
                c.get("/functions")
                stop.wait(0.01)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        result = cli(server, "observe", "--json", "--count", "2", "--interval", "0.3")
    finally:
        stop.set()
        worker.join()
    reports = [json.loads(line) for line in ok(result).splitlines()]
    assert len(reports) == 2
    assert all(r["requests_per_second"] > 0 for r in reports)


def test_summarize_metrics_parses_the_exposition_format() -> None:
    text = """\
# TYPE tensor_wasm_http_requests_total counter
tensor_wasm_http_requests_total{method="GET",route="/functions",status="200"} 3.0
tensor_wasm_http_requests_total{method="GET",route="/metrics",status="200"} 9.0
tensor_wasm_http_requests_total{method="POST",route="/functions/{id}/invoke",status="422"} 2.0
# TYPE tensor_wasm_kernel_dispatches_total counter
tensor_wasm_kernel_dispatches_total{device="cpu",op="add"} 4.0
tensor_wasm_kernel_dispatches_total{device="cuda",op="add"} 1.0
tensor_wasm_kernel_dispatches_total{device="cpu",op="matmul"} 2.0
# TYPE tensor_wasm_active_instances gauge
tensor_wasm_active_instances 5.0
# TYPE tensor_wasm_jobs_in_flight gauge
tensor_wasm_jobs_in_flight 1.0
# TYPE tensor_wasm_rate_limited_total counter
tensor_wasm_rate_limited_total 7.0
# TYPE tensor_wasm_build_info gauge
tensor_wasm_build_info{git_sha="abc",profile="release",rustc_version="r",target="t",\
version="9.9"} 1.0
"""
    s = summarize_metrics(text)
    assert s["http_requests_total"] == 5
    assert s["kernel_dispatches_total"] == 7
    assert s["kernel_dispatches_by_op"] == {"add": 5, "matmul": 2}
    assert s["active_instances"] == 5 and s["jobs_in_flight"] == 1
    assert s["rate_limited_total"] == 7
    assert s["build"]["version"] == "9.9"
    with pytest.raises(ClientError):
        summarize_metrics("not { prometheus")


# --------------------------------------------------------------------------- auth and transport


@pytest.mark.parametrize("token", ["wrong", None])
def test_bad_or_missing_token_is_unauthorized(server: GatewayServer, token: str | None) -> None:
    failed(cli(server, "functions", "list", token=token), "unauthorized")


def test_token_and_server_flags_override_the_environment(server: GatewayServer) -> None:
    args = ("functions", "list", "--json")
    failed(cli(server, *args, "--token", "wrong"), "unauthorized")
    ok(cli(server, *args, "--token", TOKEN, token="wrong"))
    ok(cli("http://127.0.0.1:1", *args, "--server", server.url))


def test_server_given_without_scheme(server: GatewayServer) -> None:
    ok(cli(f"127.0.0.1:{server.port}/", "functions", "list"))


def test_server_down_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    stderr = failed(cli(url, "functions", "list"), "connection_failed")
    assert f"cannot connect to the tensor-wasm server at {url}" in stderr
    assert "Traceback" not in stderr
    result = cli(url, "observe", "--once", "--json")
    failed(result, "connection_failed")
    assert json.loads(result.stdout)["error"]["kind"] == "connection_failed"


def test_api_client_raises_server_errors(server: GatewayServer) -> None:
    with ApiClient(server.url, token=TOKEN) as api:
        assert isinstance(api.list_functions(), list)
        with pytest.raises(ServerError) as info:
            api.get_function("fn_0000")
    assert (info.value.kind, info.value.status) == ("not_found", 404)


def test_normalize_server() -> None:
    assert normalize_server("localhost:8080/") == "http://localhost:8080"
    assert normalize_server(" https://gw.example/api/ ") == "https://gw.example/api"
    with pytest.raises(ClientError):
        normalize_server("  ")


# --------------------------------------------------------------------------- the real programs


def test_python_dash_m_runs_the_client_commands(server: GatewayServer) -> None:
    env = {**_clean_env(), "TENSOR_WASM_SERVER": server.url, "TENSOR_WASM_API_TOKEN": TOKEN}
    proc = run_cli("functions", "list", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "functions" in json.loads(proc.stdout)


@pytest.mark.skipif(shutil.which("tensor-wasm-cli") is None, reason="console script not on PATH")
def test_tensor_wasm_cli_console_script(server: GatewayServer, arith: str) -> None:
    exe = shutil.which("tensor-wasm-cli")
    assert exe is not None
    env = {**_clean_env(), "TENSOR_WASM_API_TOKEN": TOKEN}
    proc = subprocess.run(
        [exe, "invoke", arith, "-e", "add", "-a", "-1", "-a", "-2", "--server", server.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["result: -3"]
    proc = subprocess.run(
        [exe, "functions", "list", "--server", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error [connection_failed]: cannot connect")


def _clean_env() -> Mapping[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_VARS}
