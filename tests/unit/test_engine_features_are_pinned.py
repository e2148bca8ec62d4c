"""The set of WebAssembly proposals the engine accepts is a public contract:
pinned here as data (``engine_info()``) and as behaviour (which modules load)."""

from __future__ import annotations

import os
import re

import pytest
from tensorwasm_tc import InvalidWasmError, Runtime, _core

EXPECTED_FEATURES = {
    "mutable_global": True,
    "saturating_float_to_int": True,
    "sign_extension": True,
    "multi_value": True,
    "bulk_memory": True,
    "reference_types": True,
    "simd": True,
    "extended_const": True,
    "relaxed_simd": False,
    "threads": False,
    "shared_everything_threads": False,
    "multi_memory": False,
    "memory64": False,
    "tail_call": False,
    "function_references": False,
    "gc": False,
    "gc_types": False,
    "exceptions": False,
    "legacy_exceptions": False,
    "stack_switching": False,
    "wide_arithmetic": False,
    "custom_page_sizes": False,
    "component_model": False,
}


def test_engine_features_are_exactly_the_pinned_set() -> None:
    features = _core.engine_info()["features"]

    assert features == EXPECTED_FEATURES


def test_engine_info_describes_the_engine() -> None:
    info = _core.engine_info()

    assert {"fingerprint", "features", "epoch_tick_ms", "pool_instances"} <= set(info)
    assert re.fullmatch(r"[0-9a-f]{16}", info["fingerprint"])
    assert info["epoch_tick_ms"] == 1.0
    assert info["pool_instances"] == int(os.environ.get("TENSOR_WASM_POOL_INSTANCES", "1000"))


def test_engine_fingerprint_is_stable_within_a_process() -> None:
    assert _core.engine_info()["fingerprint"] == _core.engine_info()["fingerprint"]


# Modules that need a proposal that is off.
DISABLED = {
    "memory64": "(module (memory i64 1))",
    "threads-shared-memory": "(module (memory 1 1 shared))",
    "threads-atomics": "(module (memory 1 1) (func (result i32) (i32.atomic.load (i32.const 0))))",
    "multi_memory": "(module (memory 1) (memory 1))",
    "tail_call": "(module (func $f (return_call $f)))",
    "relaxed_simd": """(module (func (param v128 v128 v128) (result v128)
        (f32x4.relaxed_madd (local.get 0) (local.get 1) (local.get 2))))""",
    "exceptions": "(module (tag $t) (func (throw $t)))",
    "gc": "(module (type (struct (field i32))))",
    "function_references": "(module (type $t (func)) (func (param (ref $t))))",
    "wide_arithmetic": """(module (func (param i64 i64 i64 i64) (result i64 i64)
        (i64.add128 (local.get 0) (local.get 1) (local.get 2) (local.get 3))))""",
    "custom_page_sizes": "(module (memory 1 (pagesize 1)))",
}


@pytest.mark.parametrize("wat", list(DISABLED.values()), ids=list(DISABLED))
def test_module_using_a_disabled_proposal_is_invalid_wasm(rt: Runtime, wat: str) -> None:
    with pytest.raises(InvalidWasmError) as excinfo:
        rt.load(wat)

    # Refused by validation, not because the text failed to parse.
    assert excinfo.value.message.startswith("invalid module:")


def test_component_binary_is_invalid_wasm(rt: Runtime) -> None:
    component_header = b"\0asm\x0d\x00\x01\x00"

    with pytest.raises(InvalidWasmError):
        rt.load(component_header)


# (module, export, expected result) using a proposal that is on.
ENABLED = {
    "simd": (
        """(module (func (export "f") (result i32)
             (i32x4.extract_lane 2
               (i32x4.add (v128.const i32x4 1 2 3 4) (v128.const i32x4 10 20 30 40)))))""",
        [33],
    ),
    "bulk_memory": (
        """(module (memory 1)
             (func (export "f") (result i32)
               (memory.fill (i32.const 0) (i32.const 7) (i32.const 4))
               (memory.copy (i32.const 100) (i32.const 0) (i32.const 4))
               (i32.load (i32.const 100))))""",
        [0x07070707],
    ),
    "reference_types": (
        """(module (table $t 2 funcref) (func $a) (elem (table $t) (i32.const 0) func $a)
             (func (export "f") (result i32 i32)
               (ref.is_null (table.get $t (i32.const 0)))
               (ref.is_null (table.get $t (i32.const 1)))))""",
        [0, 1],
    ),
    "multi_value": (
        """(module (func (export "f") (result i32 i64 f64)
             (i32.const 1) (i64.const 2) (f64.const 3.5)))""",
        [1, 2, 3.5],
    ),
    "sign_extension": (
        """(module (func (export "f") (result i32) (i32.extend8_s (i32.const 0xff))))""",
        [-1],
    ),
    "saturating_float_to_int": (
        """(module (func (export "f") (result i32) (i32.trunc_sat_f64_s (f64.const 1e100))))""",
        [2**31 - 1],
    ),
    "extended_const": (
        """(module (global $g i32 (i32.add (i32.const 40) (i32.const 2)))
             (func (export "f") (result i32) (global.get $g)))""",
        [42],
    ),
    "mutable_global": (
        """(module (global (export "g") (mut i32) (i32.const 5))
             (func (export "f") (result i32) (i32.const 5)))""",
        [5],
    ),
}


@pytest.mark.parametrize(("wat", "expected"), list(ENABLED.values()), ids=list(ENABLED))
def test_module_using_an_enabled_proposal_loads_and_runs(
    rt: Runtime, wat: str, expected: list[int | float]
) -> None:
    fn = rt.load(wat)

    assert fn.invoke("f").values == expected


def test_externref_needs_gc_types_and_is_refused(rt: Runtime) -> None:
    # reference_types gives funcref tables; externref is a GC type, and GC is off.
    with pytest.raises(InvalidWasmError, match="gc"):
        rt.load(
            """(module (table 2 externref)
                 (func (export "f") (result i32) (ref.is_null (ref.null extern))))"""
        )
