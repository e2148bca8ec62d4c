"""The ``tensor-wasm`` command line: ``--version``, ``run``, ``demo`` and
``info``, driven as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tensorwasm_tc
from tensorwasm_tc import Runtime, _core

from ._helpers import SPIN_WAT, run_cli

CLI_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\\10\\00\\00\\00\\06\\00\\00\\00")
  (data (i32.const 16) "hello\\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "fail") (param i32)
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (local.get 0)))
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "neg") (param i32) (result i32)
    (i32.sub (i32.const 0) (local.get 0)))
  (func (export "id_f64") (param f64) (result f64) (local.get 0))
  (func (export "pair") (result i32 i64) (i32.const -1) (i64.const 7)))
"""


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "cli.wat"
    path.write_text(CLI_WAT)
    return path


def _expected_version_text() -> str:
    info = tensorwasm_tc.build_info()
    return (
        f"tensor-wasm {tensorwasm_tc.__version__}\n"
        f"git_sha: {info['git_sha']}\n"
        f"rustc_version: {info['rustc_version']}\n"
        f"profile: {info['profile']}\n"
        f"target: {info['target']}\n"
    )


# ----------------------------------------------------------------------------- --version


def test_version_prints_build_identity() -> None:
    proc = run_cli("--version")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _expected_version_text()
    assert proc.stdout.splitlines()[0] == f"tensor-wasm {tensorwasm_tc.build_info()['version']}"


@pytest.mark.parametrize("script", ["tensor-wasm", "tensor-wasm-cli"])
def test_console_scripts_are_installed(script: str) -> None:
    path = shutil.which(script)
    if path is None:
        pytest.skip(f"{script} is not on PATH (package not installed with scripts)")

    proc = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=60, check=False
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _expected_version_text()


# ----------------------------------------------------------------------------- run


def test_run_prints_the_result(module: Path) -> None:
    proc = run_cli("run", str(module), "--export", "add", "2", "3")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "5\n"


def test_run_prints_multiple_results_space_separated(module: Path) -> None:
    proc = run_cli("run", str(module), "-e", "pair")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "-1 7\n"


def test_run_default_export_prints_guest_stdout(module: Path) -> None:
    proc = run_cli("run", str(module))

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\n"


def test_run_json_prints_the_result_list(module: Path) -> None:
    proc = run_cli("run", str(module), "-e", "add", "40", "2", "--json")

    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["result"] == [42]
    assert out["stdout"] == ""
    assert out["stderr"] == ""
    assert out["function_id"] == Runtime(cache_dir=False).load(module).id
    assert out["duration_ms"] >= 0


def test_run_json_includes_guest_stdout(module: Path) -> None:
    proc = run_cli("run", "--json", str(module))

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stdout"] == "hello\n"
    assert json.loads(proc.stdout)["result"] == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["-e", "neg", "--", "-5"], "5\n", id="after-double-dash"),
        pytest.param(["-e", "neg", "-5"], "5\n", id="bare-negative-int"),
        pytest.param(["-e", "add", "-2", "-3"], "-5\n", id="two-negative-ints"),
        pytest.param(["-e", "id_f64", "-1.5"], "-1.5\n", id="bare-negative-float"),
        pytest.param(["-e", "id_f64", "--", "-1e3"], "-1000.0\n", id="exponent-after-dash"),
        pytest.param(["-e", "add", "0x10", "1"], "17\n", id="hex-int"),
        pytest.param(["-e", "id_f64", "7"], "7.0\n", id="int-for-float"),
    ],
)
def test_run_parses_numeric_args(module: Path, args: list[str], expected: str) -> None:
    proc = run_cli("run", str(module), *args)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected


def test_run_accepts_negative_exponent_float_without_double_dash(module: Path) -> None:
    proc = run_cli("run", str(module), "-e", "id_f64", "-1e3")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "-1000.0\n"


def test_run_non_numeric_arg_is_a_usage_error(module: Path) -> None:
    proc = run_cli("run", str(module), "-e", "add", "two", "3")

    assert proc.returncode == 2
    assert "is not a number" in proc.stderr


def test_run_bad_module_exits_1_with_the_error_kind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wat"
    bad.write_text("(module (func")

    proc = run_cli("run", str(bad))

    assert proc.returncode == 1
    assert "error [invalid_wasm]" in proc.stderr
    assert proc.stdout == ""


def test_run_bad_module_json_reports_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wat"
    bad.write_text("(module (func")

    proc = run_cli("run", "--json", str(bad))

    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["kind"] == "invalid_wasm"


def test_run_garbage_binary_exits_1_with_invalid_wasm(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.wasm"
    bad.write_bytes(b"\xff\xfe\x00\x01 not a module")

    proc = run_cli("run", str(bad))

    assert proc.returncode == 1
    assert "error [invalid_wasm]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_missing_export_exits_1(module: Path) -> None:
    proc = run_cli("run", str(module), "-e", "nope")

    assert proc.returncode == 1
    assert "error [missing_export]" in proc.stderr
    assert "add" in proc.stderr


def test_run_wrong_arg_count_exits_1(module: Path) -> None:
    proc = run_cli("run", str(module), "-e", "add", "1")

    assert proc.returncode == 1
    assert "error [invalid_args]" in proc.stderr


def test_run_deadline_stops_a_spinning_guest(tmp_path: Path) -> None:
    spin = tmp_path / "spin.wat"
    spin.write_text(SPIN_WAT)

    proc = run_cli("run", str(spin), "-e", "spin", "--deadline-ms", "100")

    assert proc.returncode == 1
    assert "error [invoke_timeout]" in proc.stderr


def test_run_guest_exit_status_is_an_error_with_its_output(module: Path) -> None:
    proc = run_cli("run", str(module), "-e", "fail", "3")

    assert proc.returncode == 1
    assert proc.stdout == "hello\n"
    assert "error [trap]" in proc.stderr
    assert "status 3" in proc.stderr


def test_run_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("run", str(tmp_path / "absent.wasm"))

    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


def test_run_caches_under_tensor_wasm_home(module: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = dict(os.environ, TENSOR_WASM_HOME=str(home))

    proc = run_cli("run", str(module), "-e", "add", "1", "1", env=env)

    assert proc.returncode == 0, proc.stderr
    fn_id = Runtime(cache_dir=False).load(module).id
    assert [p.name for p in home.glob("modules/*/*.cwasm")] == [f"{fn_id}.cwasm"]


# ----------------------------------------------------------------------------- demo, info


def test_demo_prints_the_greeting_and_results() -> None:
    proc = run_cli("demo")

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "hello from a tensorwasm sandbox!"
    assert lines[1].startswith("fib(50) = 12586269025 ")
    assert lines[2] == "add(2, 3) = 5"
    assert lines[3].startswith("function id: ")
    assert len(lines[3].removeprefix("function id: ")) == 64


def test_info_json_describes_build_engine_and_cache() -> None:
    proc = run_cli("info", "--json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["build"] == tensorwasm_tc.build_info()
    assert data["engine"]["features"] == _core.engine_info()["features"]
    assert data["engine"]["fingerprint"] == _core.engine_info()["fingerprint"]
    assert set(data["module_cache"]) == {
        "memory_hits",
        "disk_hits",
        "compiles",
        "disk_rejects",
        "disk_writes",
        "memory_entries",
    }


def test_info_text_lists_version_fingerprint_and_proposals() -> None:
    proc = run_cli("info")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(_expected_version_text())
    assert f"engine fingerprint: {_core.engine_info()['fingerprint']}" in proc.stdout
    on = sorted(k for k, v in _core.engine_info()["features"].items() if v)
    assert f"wasm proposals on: {', '.join(on)}" in proc.stdout


@pytest.mark.parametrize(
    "deadline",
    [
        "0",
        "-1",
    ],
)
def test_run_invalid_deadline_is_invalid_args(module: Path, deadline: str) -> None:
    proc = run_cli("run", str(module), "-e", "add", "--deadline-ms", deadline, "1", "2")

    assert proc.returncode == 1
    assert "error [invalid_args]" in proc.stderr
    assert "Traceback" not in proc.stderr
