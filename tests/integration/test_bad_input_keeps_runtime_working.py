"""Malformed modules, bad imports, bad arguments and missing exports are
refused with the right error kind, and the runtime that refused them keeps
loading and running good modules afterwards."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tensorwasm_tc import (
    InvalidArgsError,
    InvalidWasmError,
    MissingExportError,
    ModuleTooLargeError,
    Runtime,
    TensorWasmError,
    TrapError,
    UnknownImportError,
)

from ._helpers import GOOD_WAT, assert_still_works

# `GOOD_WAT` assembled by hand: type (i32, i32) -> i32, one function, export
# "add", body `local.get 0; local.get 1; i32.add`.
GOOD_WASM = bytes.fromhex(
    "0061736d01000000"  # magic, version 1
    "01070160027f7f017f"  # type section
    "03020100"  # function section
    "070701036164640000"  # export section: "add" -> func 0
    "0a09010700200020016a0b"  # code section
)

TWO_EXPORTS_WAT = """
(module
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "wide") (param i64) (result i64) (local.get 0))
  (memory (export "memory") 1))
"""


def test_hand_assembled_binary_is_the_good_module(rt: Runtime) -> None:
    fn = rt.load(GOOD_WASM)

    assert fn.invoke("add", [40, 2]).values == [42]
    assert fn.id == rt.load(GOOD_WAT).id


# ----------------------------------------------------------------------------- bad modules


@pytest.mark.parametrize(
    "wasm",
    [
        pytest.param(b"this is not wasm at all \x13\x37\xff", id="garbage-bytes"),
        pytest.param(b"\0asm\x01\0\0\0" + b"\xff" * 64, id="garbage-after-header"),
        pytest.param(b"\0asm\x02\0\0\0", id="unknown-binary-version"),
        pytest.param(GOOD_WASM[: len(GOOD_WASM) // 2], id="truncated-in-half"),
        pytest.param(GOOD_WASM[:-1], id="truncated-last-byte"),
        pytest.param(b"", id="empty-bytes"),
        pytest.param(b"\0asm", id="magic-only"),
        pytest.param("", id="empty-wat-text"),
        pytest.param('(module (func (export "f") (result i32)', id="wat-syntax-error"),
        pytest.param("(module (func (result i32) (i64.const 1)))", id="wat-type-error"),
        pytest.param(GOOD_WAT.encode(), id="wat-text-passed-as-bytes"),
    ],
)
def test_invalid_module_is_invalid_wasm(rt: Runtime, wasm: bytes | str) -> None:
    with pytest.raises(InvalidWasmError) as excinfo:
        rt.load(wasm)

    assert excinfo.value.kind == "invalid_wasm"
    assert excinfo.value.message
    assert_still_works(rt)


def test_wat_text_passed_as_bytes_is_told_to_pass_text(rt: Runtime) -> None:
    with pytest.raises(InvalidWasmError, match="pass WAT as text"):
        rt.load(GOOD_WAT.encode())

    assert_still_works(rt)


def test_invalid_module_error_is_a_tensor_wasm_error(rt: Runtime) -> None:
    with pytest.raises(TensorWasmError) as excinfo:
        rt.load(b"garbage")

    assert isinstance(excinfo.value, InvalidWasmError)
    assert excinfo.value.trap_code is None
    assert excinfo.value.exit_code is None
    assert_still_works(rt)


def test_garbage_file_path_is_invalid_wasm(rt: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "garbage.wasm"
    path.write_bytes(b"\xff\xfe\x00\x01 not a module")

    with pytest.raises(InvalidWasmError):
        rt.load(path)


def test_truncated_module_file_is_invalid_wasm(rt: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "truncated.wasm"
    path.write_bytes(GOOD_WASM[: len(GOOD_WASM) // 2])

    with pytest.raises(InvalidWasmError):
        rt.load(path)

    assert_still_works(rt)


def test_65_mib_binary_is_refused_before_parsing(rt: Runtime) -> None:
    huge = b"\0asm\x01\0\0\0" + bytes(65 << 20)

    started = time.perf_counter()
    with pytest.raises(ModuleTooLargeError) as excinfo:
        rt.load(huge)
    elapsed = time.perf_counter() - started

    assert excinfo.value.kind == "module_too_large"
    assert str(len(huge)) in excinfo.value.message
    assert str(64 << 20) in excinfo.value.message
    assert elapsed < 1.0
    assert_still_works(rt)


def test_65_mib_wat_text_is_refused_before_parsing(rt: Runtime) -> None:
    huge = "(module" + " " * (65 << 20) + ")"

    started = time.perf_counter()
    with pytest.raises(ModuleTooLargeError):
        rt.load(huge)

    assert time.perf_counter() - started < 1.0
    assert_still_works(rt)


def test_max_module_bytes_is_configurable() -> None:
    small = Runtime(cache_dir=False, max_module_bytes=len(GOOD_WASM) - 1)
    exact = Runtime(cache_dir=False, max_module_bytes=len(GOOD_WASM))

    with pytest.raises(ModuleTooLargeError, match=f"the limit is {len(GOOD_WASM) - 1} bytes"):
        small.load(GOOD_WASM)

    assert exact.load(GOOD_WASM).invoke("add", [1, 1]).values == [2]


# ----------------------------------------------------------------------------- imports


def test_unknown_function_import_names_the_import(rt: Runtime) -> None:
    wat = '(module (import "env" "foo" (func $foo)) (func (export "f") (call $foo)))'

    with pytest.raises(UnknownImportError) as excinfo:
        rt.load(wat)

    assert excinfo.value.kind == "unknown_import"
    assert "env.foo" in excinfo.value.message
    assert "function" in excinfo.value.message
    assert_still_works(rt)


def test_memory_import_from_env_is_unknown_import(rt: Runtime) -> None:
    wat = '(module (import "env" "memory" (memory 1)) (func (export "f")))'

    with pytest.raises(UnknownImportError) as excinfo:
        rt.load(wat)

    assert "memory 'env.memory'" in excinfo.value.message
    assert_still_works(rt)


@pytest.mark.parametrize(
    "wat",
    [
        pytest.param(
            '(module (import "wasi_snapshot_preview1" "no_such_call" (func)))',
            id="unknown-wasi-function",
        ),
        pytest.param(
            '(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32))))',
            id="wasi-function-with-wrong-signature",
        ),
        pytest.param(
            '(module (import "wasi_snapshot_preview1" "memory" (memory 1)))',
            id="wasi-memory",
        ),
        pytest.param('(module (import "env" "g" (global i32)))', id="global"),
        pytest.param('(module (import "env" "t" (table 1 funcref)))', id="table"),
    ],
)
def test_imports_the_runtime_does_not_provide_are_refused(rt: Runtime, wat: str) -> None:
    with pytest.raises(UnknownImportError):
        rt.load(wat)

    assert_still_works(rt)


# ----------------------------------------------------------------------------- arguments


def test_wrong_argument_count_names_the_signature(rt: Runtime) -> None:
    fn = rt.load(GOOD_WAT)

    with pytest.raises(InvalidArgsError) as excinfo:
        fn.invoke("add", [1])

    assert excinfo.value.kind == "invalid_args"
    assert "takes 2 argument(s) (i32, i32), got 1" in excinfo.value.message
    with pytest.raises(InvalidArgsError):
        fn.invoke("add", [1, 2, 3])
    with pytest.raises(InvalidArgsError):
        fn.invoke("add")
    assert_still_works(rt)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("1", id="str"),
        pytest.param(None, id="None"),
        pytest.param([1], id="list"),
        pytest.param(b"1", id="bytes"),
        pytest.param(1 + 2j, id="complex"),
    ],
)
def test_non_numeric_argument_is_invalid_args(rt: Runtime, bad: Any) -> None:
    fn = rt.load(GOOD_WAT)

    with pytest.raises(InvalidArgsError) as excinfo:
        fn.invoke("add", [1, bad])

    assert "argument 1" in excinfo.value.message
    assert fn.invoke("add", [1, 2]).values == [3]
    assert_still_works(rt)


@pytest.mark.parametrize(
    ("export", "value"),
    [
        pytest.param("add", 2**31, id="i32-above-max"),
        pytest.param("add", -(2**31) - 1, id="i32-below-min"),
        pytest.param("add", 2**32 - 1, id="i32-unsigned-max"),
        pytest.param("wide", 2**63, id="i64-above-max"),
        pytest.param("wide", -(2**63) - 1, id="i64-below-min"),
        pytest.param("wide", 2**200, id="i64-huge"),
    ],
)
def test_integer_out_of_range_is_invalid_args(rt: Runtime, export: str, value: int) -> None:
    fn = rt.load(TWO_EXPORTS_WAT)
    args = [value, 0] if export == "add" else [value]

    with pytest.raises(InvalidArgsError, match="out of range"):
        fn.invoke(export, args)

    assert_still_works(rt)


@pytest.mark.parametrize("value", [1.5, 2.0, float("nan"), float("inf")])
def test_float_for_integer_parameter_is_invalid_args(rt: Runtime, value: float) -> None:
    fn = rt.load(TWO_EXPORTS_WAT)

    with pytest.raises(InvalidArgsError, match="expected an integer"):
        fn.invoke("add", [value, 1])
    with pytest.raises(InvalidArgsError, match="expected an integer"):
        fn.invoke("wide", [value])

    assert_still_works(rt)


# ----------------------------------------------------------------------------- exports


def test_missing_export_lists_available_exports(rt: Runtime) -> None:
    fn = rt.load(TWO_EXPORTS_WAT)

    with pytest.raises(MissingExportError) as excinfo:
        fn.invoke("nope", [])

    message = excinfo.value.message
    assert excinfo.value.kind == "missing_export"
    assert "'nope'" in message
    assert "add" in message
    assert "wide" in message
    assert_still_works(rt)


def test_memory_export_is_not_callable(rt: Runtime) -> None:
    fn = rt.load(TWO_EXPORTS_WAT)

    with pytest.raises(MissingExportError):
        fn.invoke("memory")

    assert_still_works(rt)


def test_no_default_export_is_missing_export(rt: Runtime) -> None:
    fn = rt.load(TWO_EXPORTS_WAT)

    with pytest.raises(MissingExportError) as excinfo:
        fn.invoke()

    assert "_start" in excinfo.value.message
    assert "main" in excinfo.value.message
    with pytest.raises(MissingExportError):
        fn.instantiate().invoke()
    assert_still_works(rt)


# ----------------------------------------------------------------------------- instantiation


def test_trapping_start_function_is_a_trap_at_invoke(rt: Runtime) -> None:
    fn = rt.load('(module (func $boom unreachable) (start $boom) (func (export "f")))')

    with pytest.raises(TrapError) as excinfo:
        fn.invoke("f")

    assert excinfo.value.trap_code == "unreachable_code_reached"
    with pytest.raises(TrapError):
        fn.instantiate()
    assert_still_works(rt)


def test_out_of_bounds_data_segment_is_a_trap_at_invoke(rt: Runtime) -> None:
    fn = rt.load('(module (memory 1) (data (i32.const 65535) "ab") (func (export "f")))')

    with pytest.raises(TrapError) as excinfo:
        fn.invoke("f")

    assert excinfo.value.trap_code == "memory_out_of_bounds"
    assert_still_works(rt)
