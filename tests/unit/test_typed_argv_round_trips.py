"""Host numbers are lowered by the export's signature and results raised back:
ints for i32/i64 (signed), floats for f32/f64, with every edge value intact."""

from __future__ import annotations

import math
import struct

import pytest
from tensorwasm_tc import Function, InvalidArgsError, Runtime

IDENTITY_WAT = """
(module
  (func (export "id_i32") (param i32) (result i32) (local.get 0))
  (func (export "id_i64") (param i64) (result i64) (local.get 0))
  (func (export "id_f32") (param f32) (result f32) (local.get 0))
  (func (export "id_f64") (param f64) (result f64) (local.get 0))
  (func (export "mixed") (param i32 i64 f32 f64) (result f64 f32 i64 i32)
    (local.get 3) (local.get 2) (local.get 1) (local.get 0))
  (func (export "add_i32") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "u32_max") (result i32) (i32.const 0xffffffff))
  (func (export "i32_min") (result i32) (i32.const 0x80000000))
  (func (export "u64_max") (result i64) (i64.const 0xffffffffffffffff))
  (func (export "f64_sign_bit") (param f64) (result i32)
    (i32.wrap_i64 (i64.shr_u (i64.reinterpret_f64 (local.get 0)) (i64.const 63))))
  (func (export "v128") (result v128) (v128.const i32x4 1 2 3 4))
  (func (export "takes_v128") (param v128))
  (func (export "funcref") (result funcref) (ref.null func))
  (func (export "nothing"))
  (memory (export "memory") 1)
  (global (export "g") i32 (i32.const 0)))
"""

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


@pytest.fixture(scope="module")
def fn() -> Function:
    return Runtime(cache_dir=False).load(IDENTITY_WAT)


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


@pytest.mark.parametrize("value", [0, 1, -1, 42, -42, I32_MAX, I32_MIN])
def test_i32_round_trips(fn: Function, value: int) -> None:
    assert fn.invoke("id_i32", [value]).values == [value]


@pytest.mark.parametrize("value", [0, 1, -1, 2**40, -(2**40), I64_MAX, I64_MIN])
def test_i64_round_trips(fn: Function, value: int) -> None:
    assert fn.invoke("id_i64", [value]).values == [value]


@pytest.mark.parametrize(
    "value",
    [0.0, 1.5, -2.25, 1e300, -1e-300, 5e-324, 1.7976931348623157e308, math.inf, -math.inf],
)
def test_f64_round_trips(fn: Function, value: float) -> None:
    result = fn.invoke("id_f64", [value]).values

    assert result == [value]
    assert type(result[0]) is float


@pytest.mark.parametrize("value", [0.0, 1.5, -2.25, 0.1, -1e-30, 3.4028234663852886e38])
def test_f32_round_trips_at_f32_precision(fn: Function, value: float) -> None:
    result = fn.invoke("id_f32", [value]).values

    assert result == [_f32(value)]


@pytest.mark.parametrize("export", ["id_f32", "id_f64"])
@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinities_round_trip(fn: Function, export: str, value: float) -> None:
    assert fn.invoke(export, [value]).values == [value]


@pytest.mark.parametrize("export", ["id_f32", "id_f64"])
def test_negative_zero_keeps_its_sign(fn: Function, export: str) -> None:
    [result] = fn.invoke(export, [-0.0]).values

    assert result == 0.0
    assert math.copysign(1.0, result) == -1.0


def test_negative_zero_reaches_the_guest_with_its_sign(fn: Function) -> None:
    assert fn.invoke("f64_sign_bit", [-0.0]).values == [1]
    assert fn.invoke("f64_sign_bit", [0.0]).values == [0]


@pytest.mark.parametrize("export", ["id_f32", "id_f64"])
def test_nan_round_trips(fn: Function, export: str) -> None:
    [result] = fn.invoke(export, [math.nan]).values

    assert math.isnan(result)


def test_f64_too_large_for_f32_is_invalid_args(fn: Function) -> None:
    with pytest.raises(InvalidArgsError, match="out of range for f32"):
        fn.invoke("id_f32", [1e300])


@pytest.mark.parametrize(("export", "value"), [("id_f64", 3), ("id_f64", -7), ("id_f32", 5)])
def test_int_is_accepted_for_a_float_parameter(fn: Function, export: str, value: int) -> None:
    result = fn.invoke(export, [value]).values

    assert result == [float(value)]
    assert type(result[0]) is float


def test_bool_is_accepted_as_an_int(fn: Function) -> None:
    assert fn.invoke("id_i32", [True]).values == [1]
    assert fn.invoke("id_i64", [False]).values == [0]
    assert fn.invoke("add_i32", [True, True]).values == [2]


def test_mixed_signature_lowers_each_argument_by_its_type(fn: Function) -> None:
    result = fn.invoke("mixed", [-5, I64_MIN, 0.5, -1.25]).values

    assert result == [-1.25, 0.5, I64_MIN, -5]
    assert [type(v) for v in result] == [float, float, int, int]


def test_i32_results_are_signed(fn: Function) -> None:
    assert fn.invoke("u32_max").values == [-1]
    assert fn.invoke("i32_min").values == [I32_MIN]
    assert fn.invoke("u64_max").values == [-1]


def test_i32_arithmetic_wraps(fn: Function) -> None:
    assert fn.invoke("add_i32", [I32_MAX, 1]).values == [I32_MIN]


def test_args_may_be_any_iterable(fn: Function) -> None:
    assert fn.invoke("add_i32", (1, 2)).values == [3]
    assert fn.invoke("add_i32", iter([3, 4])).values == [7]
    assert fn.invoke("add_i32", args=range(5, 7)).values == [11]


def test_export_with_no_results_returns_an_empty_list(fn: Function) -> None:
    assert fn.invoke("nothing").values == []
    assert fn.invoke("nothing", []).values == []


def test_v128_result_is_an_unsigned_128_bit_int(fn: Function) -> None:
    expected = 1 | (2 << 32) | (3 << 64) | (4 << 96)

    assert fn.invoke("v128").values == [expected]


def test_v128_parameter_cannot_be_passed_from_the_host(fn: Function) -> None:
    with pytest.raises(InvalidArgsError, match="cannot be passed from the host"):
        fn.invoke("takes_v128", [0])


def test_null_funcref_result_is_none(fn: Function) -> None:
    assert fn.invoke("funcref").values == [None]


def test_exports_show_function_signatures_only(fn: Function) -> None:
    exports = fn.exports

    assert exports["id_i32"] == (["i32"], ["i32"])
    assert exports["id_i64"] == (["i64"], ["i64"])
    assert exports["id_f32"] == (["f32"], ["f32"])
    assert exports["id_f64"] == (["f64"], ["f64"])
    assert exports["mixed"] == (["i32", "i64", "f32", "f64"], ["f64", "f32", "i64", "i32"])
    assert exports["v128"] == ([], ["v128"])
    assert exports["funcref"] == ([], ["funcref"])
    assert exports["nothing"] == ([], [])
    assert "memory" not in exports
    assert "g" not in exports
    assert len(exports) == 14
