"""Differential test cases for the WAT corpus in this directory.

``CASES`` is a list of ``(wat_filename, export_name, args)`` tuples.  Arguments are
plain Python numbers matching the export's parameter types: ``int`` for i32/i64
(given as *signed* values), ``float`` for f32/f64 (f32 arguments are chosen to be
exactly representable in single precision so no host-side rounding is involved).

No expected values live here: every case is run through wasmtime-py (the
reference) and through tensorwasm_tc, and the two outcomes must agree.
"""

from __future__ import annotations

import math

Case = tuple[str, str, list[int | float]]

I32_MIN = -(2**31)
I32_MAX = 2**31 - 1
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1

INF = math.inf
NAN = math.nan

F32_MAX = 3.4028234663852886e38  # largest finite f32
F32_MIN_NORMAL = 1.1754943508222875e-38
F32_MIN_SUBNORMAL = 1.401298464324817e-45
F64_MAX = 1.7976931348623157e308
F64_MIN_SUBNORMAL = 5e-324
TWO_31 = 2147483648.0
TWO_32 = 4294967296.0
TWO_63 = 9.223372036854775808e18
TWO_64 = 1.8446744073709552e19

I32_EDGES: list[int] = [0, 1, -1, 2, I32_MIN, I32_MAX, I32_MIN + 1, 0x55555555, -0x55555556]
I64_EDGES: list[int] = [0, 1, -1, I64_MIN, I64_MAX, 0x0123456789ABCDEF, -0x0123456789ABCDF0]

F32_SPECIALS: list[float] = [0.0, -0.0, 1.0, -1.0, INF, -INF, NAN, F32_MAX, F32_MIN_SUBNORMAL]
F64_SPECIALS: list[float] = [0.0, -0.0, 1.0, -1.0, INF, -INF, NAN, F64_MAX, F64_MIN_SUBNORMAL]


def _each(wat: str, export: str, arg_lists: list[list[int | float]]) -> list[Case]:
    """One case per argument list."""
    return [(wat, export, list(args)) for args in arg_lists]


def _unary(wat: str, export: str, values: list[int | float]) -> list[Case]:
    """One case per value, for single-parameter exports."""
    return [(wat, export, [value]) for value in values]


CASES: list[Case] = [
    # ------------------------------------------------------------------ i32 arith
    ("i32_arith.wat", "add", [1, 2]),
    ("i32_arith.wat", "add", [I32_MAX, 1]),
    ("i32_arith.wat", "add", [I32_MIN, -1]),
    ("i32_arith.wat", "add", [-1, -1]),
    ("i32_arith.wat", "sub", [I32_MIN, 1]),
    ("i32_arith.wat", "sub", [0, I32_MIN]),
    ("i32_arith.wat", "mul", [I32_MAX, 2]),
    ("i32_arith.wat", "mul", [0x10000, 0x10000]),
    ("i32_arith.wat", "mul", [I32_MIN, -1]),
    ("i32_arith.wat", "mul", [0x12345678, 0x9ABCDEF]),
    ("i32_arith.wat", "mul", [-7, 6]),
    ("i32_arith.wat", "neg", [I32_MIN]),
    ("i32_arith.wat", "neg", [I32_MAX]),
    ("i32_arith.wat", "and_or_xor", [0x0F0F0F0F, -0x0F0F0F10]),
    ("i32_arith.wat", "and_or_xor", [-1, 0x12345678]),
    # ----------------------------------------------------------------- i32 divrem
    ("i32_divrem.wat", "div_s", [7, 2]),
    ("i32_divrem.wat", "div_s", [-7, 2]),
    ("i32_divrem.wat", "div_s", [7, -2]),
    ("i32_divrem.wat", "div_s", [I32_MIN, -1]),  # trap: integer_overflow
    ("i32_divrem.wat", "div_s", [I32_MIN, 1]),
    ("i32_divrem.wat", "div_s", [1, 0]),  # trap: integer_division_by_zero
    ("i32_divrem.wat", "div_s", [0, 0]),
    ("i32_divrem.wat", "div_u", [-1, 2]),
    ("i32_divrem.wat", "div_u", [I32_MIN, -1]),
    ("i32_divrem.wat", "div_u", [-7, 2]),
    ("i32_divrem.wat", "div_u", [5, 0]),
    ("i32_divrem.wat", "rem_s", [-7, 2]),
    ("i32_divrem.wat", "rem_s", [7, -2]),
    ("i32_divrem.wat", "rem_s", [I32_MIN, -1]),  # 0, no trap
    ("i32_divrem.wat", "rem_s", [I32_MIN, 3]),
    ("i32_divrem.wat", "rem_s", [1, 0]),
    ("i32_divrem.wat", "rem_u", [-1, 10]),
    ("i32_divrem.wat", "rem_u", [I32_MIN, -1]),
    ("i32_divrem.wat", "rem_u", [1, 0]),
    # ---------------------------------------------------------- i32 shift/rotate
    ("i32_shift_rotate.wat", "shl", [1, 31]),
    ("i32_shift_rotate.wat", "shl", [1, 32]),
    ("i32_shift_rotate.wat", "shl", [1, 33]),
    ("i32_shift_rotate.wat", "shl", [-1, -1]),
    ("i32_shift_rotate.wat", "shl", [0x12345678, 100]),
    ("i32_shift_rotate.wat", "shr_s", [I32_MIN, 31]),
    ("i32_shift_rotate.wat", "shr_s", [I32_MIN, 32]),
    ("i32_shift_rotate.wat", "shr_s", [-8, 1]),
    ("i32_shift_rotate.wat", "shr_s", [I32_MAX, 63]),
    ("i32_shift_rotate.wat", "shr_u", [-1, 31]),
    ("i32_shift_rotate.wat", "shr_u", [-1, 32]),
    ("i32_shift_rotate.wat", "shr_u", [I32_MIN, -1]),
    ("i32_shift_rotate.wat", "rotl", [I32_MIN + 1, 1]),
    ("i32_shift_rotate.wat", "rotl", [0x12345678, 32]),
    ("i32_shift_rotate.wat", "rotl", [0x12345678, 36]),
    ("i32_shift_rotate.wat", "rotl", [0x12345678, -4]),
    ("i32_shift_rotate.wat", "rotr", [1, 1]),
    ("i32_shift_rotate.wat", "rotr", [0x12345678, 4]),
    ("i32_shift_rotate.wat", "rotr", [0x12345678, 68]),
    # ------------------------------------------------------------ i32 bit counts
    *_unary("i32_bitcount.wat", "clz", [0, 1, -1, I32_MIN, I32_MAX, 0x00008000]),
    *_unary("i32_bitcount.wat", "ctz", [0, 1, -1, I32_MIN, 0x00008000, 0x7FFF0000]),
    *_unary("i32_bitcount.wat", "popcnt", [0, 1, -1, I32_MIN, I32_MAX, 0x55555555]),
    *_unary("i32_bitcount.wat", "eqz", [0, 1, I32_MIN]),
    # -------------------------------------------------------- i32 sign extension
    *_unary("i32_sign_extend.wat", "extend8_s", [0, 0x7F, 0x80, 0xFF, 0x12345680, -1]),
    *_unary("i32_sign_extend.wat", "extend16_s", [0x7FFF, 0x8000, 0xFFFF, 0x12348000, I32_MIN]),
    *_unary("i32_sign_extend.wat", "wrap_i64", [0, -1, 0x100000000, 0x180000000, I64_MIN, I64_MAX]),
    # ------------------------------------------------------------ i32 compare
    ("i32_compare.wat", "lt_s", [-1, 0]),
    ("i32_compare.wat", "lt_u", [-1, 0]),
    *_each(
        "i32_compare.wat",
        "all",
        [
            [0, 0],
            [-1, 0],
            [0, -1],
            [I32_MIN, I32_MAX],
            [I32_MAX, I32_MIN],
            [I32_MIN, I32_MIN],
            [1, 2],
        ],
    ),
    # ------------------------------------------------------------------ i64 arith
    ("i64_arith.wat", "add", [I64_MAX, 1]),
    ("i64_arith.wat", "add", [I64_MIN, -1]),
    ("i64_arith.wat", "add", [0xFFFFFFFF, 1]),
    ("i64_arith.wat", "sub", [I64_MIN, 1]),
    ("i64_arith.wat", "sub", [0, I64_MIN]),
    ("i64_arith.wat", "mul", [I64_MAX, 2]),
    ("i64_arith.wat", "mul", [0x100000000, 0x100000000]),
    ("i64_arith.wat", "mul", [I64_MIN, -1]),
    ("i64_arith.wat", "mul", [0x0123456789ABCDEF, 0x0FEDCBA987654321]),
    ("i64_arith.wat", "mul", [-3, 5]),
    ("i64_arith.wat", "and_or_xor", [0x0123456789ABCDEF, -1]),
    # ---------------------------------------------------------------- i64 divrem
    ("i64_divrem.wat", "div_s", [-7, 2]),
    ("i64_divrem.wat", "div_s", [I64_MIN, -1]),  # trap: integer_overflow
    ("i64_divrem.wat", "div_s", [I64_MIN, 2]),
    ("i64_divrem.wat", "div_s", [1, 0]),
    ("i64_divrem.wat", "div_u", [-1, 2]),
    ("i64_divrem.wat", "div_u", [I64_MIN, -1]),
    ("i64_divrem.wat", "div_u", [-1, 0]),
    ("i64_divrem.wat", "rem_s", [-7, 2]),
    ("i64_divrem.wat", "rem_s", [I64_MIN, -1]),
    ("i64_divrem.wat", "rem_s", [I64_MAX, -10]),
    ("i64_divrem.wat", "rem_s", [5, 0]),
    ("i64_divrem.wat", "rem_u", [-1, 10]),
    ("i64_divrem.wat", "rem_u", [I64_MIN, 3]),
    ("i64_divrem.wat", "rem_u", [0, 0]),
    # ------------------------------------------------------------------ i64 bits
    ("i64_bits.wat", "shl", [1, 63]),
    ("i64_bits.wat", "shl", [1, 64]),
    ("i64_bits.wat", "shl", [1, 65]),
    ("i64_bits.wat", "shl", [1, 32]),
    ("i64_bits.wat", "shr_s", [I64_MIN, 63]),
    ("i64_bits.wat", "shr_s", [I64_MIN, 64]),
    ("i64_bits.wat", "shr_s", [-2, -1]),
    ("i64_bits.wat", "shr_u", [-1, 63]),
    ("i64_bits.wat", "shr_u", [-1, 32]),
    ("i64_bits.wat", "shr_u", [I64_MIN, 128]),
    ("i64_bits.wat", "rotl", [I64_MIN + 1, 1]),
    ("i64_bits.wat", "rotl", [0x0123456789ABCDEF, 64]),
    ("i64_bits.wat", "rotl", [0x0123456789ABCDEF, 68]),
    ("i64_bits.wat", "rotr", [1, 1]),
    ("i64_bits.wat", "rotr", [0x0123456789ABCDEF, -4]),
    *_unary("i64_bits.wat", "clz", [0, 1, -1, I64_MIN, 0xFFFFFFFF, 0x100000000]),
    *_unary("i64_bits.wat", "ctz", [0, 1, -1, I64_MIN, 0x100000000]),
    *_unary("i64_bits.wat", "popcnt", [0, -1, I64_MAX, I64_MIN, 0x0123456789ABCDEF]),
    *_unary("i64_bits.wat", "eqz", [0, 0x100000000, I64_MIN]),
    # ------------------------------------------------------------- i64 extension
    *_unary("i64_extend.wat", "extend8_s", [0x7F, 0x80, 0x1234567890ABCDFF, -1]),
    *_unary("i64_extend.wat", "extend16_s", [0x7FFF, 0x8000, 0x123456789ABC8001]),
    *_unary("i64_extend.wat", "extend32_s", [0x7FFFFFFF, 0x80000000, 0x1234567880000001, I64_MIN]),
    *_unary("i64_extend.wat", "extend_i32_s", [-1, I32_MIN, I32_MAX]),
    *_unary("i64_extend.wat", "extend_i32_u", [-1, I32_MIN, I32_MAX, 0]),
    # ------------------------------------------------------------- i64 compare
    *_each(
        "i64_compare.wat",
        "all",
        [
            [0, 0],
            [-1, 0],
            [0, -1],
            [I64_MIN, I64_MAX],
            [I64_MAX, I64_MIN],
            [0xFFFFFFFF, 0x100000000],
            [-0x100000000, 0xFFFFFFFF],
        ],
    ),
    # ------------------------------------------------------------------ f32 arith
    ("f32_arith.wat", "add", [16777216.0, 1.0]),  # 2^24 + 1 rounds back to 2^24
    ("f32_arith.wat", "add", [F32_MAX, F32_MAX]),
    ("f32_arith.wat", "add", [INF, -INF]),
    ("f32_arith.wat", "add", [-0.0, -0.0]),
    ("f32_arith.wat", "add", [-0.0, 0.0]),
    ("f32_arith.wat", "add", [NAN, 1.0]),
    ("f32_arith.wat", "add", [F32_MIN_SUBNORMAL, F32_MIN_SUBNORMAL]),
    ("f32_arith.wat", "sub", [1.0, 1.0]),
    ("f32_arith.wat", "sub", [INF, INF]),
    ("f32_arith.wat", "mul", [F32_MAX, 2.0]),
    ("f32_arith.wat", "mul", [0.0, -INF]),
    ("f32_arith.wat", "mul", [-0.0, 5.0]),
    ("f32_arith.wat", "mul", [F32_MIN_NORMAL, 0.5]),  # result is subnormal
    ("f32_arith.wat", "mul", [F32_MIN_SUBNORMAL, 0.5]),  # underflows to 0
    ("f32_arith.wat", "mul", [1.0000001192092896, 1.0000001192092896]),
    ("f32_arith.wat", "div", [1.0, 0.0]),
    ("f32_arith.wat", "div", [-1.0, 0.0]),
    ("f32_arith.wat", "div", [1.0, -0.0]),
    ("f32_arith.wat", "div", [0.0, 0.0]),
    ("f32_arith.wat", "div", [1.0, 3.0]),
    ("f32_arith.wat", "div", [INF, INF]),
    *_unary("f32_arith.wat", "sqrt", [4.0, 2.0, -0.0, -1.0, INF, NAN, F32_MIN_SUBNORMAL]),
    ("f32_arith.wat", "min", [-0.0, 0.0]),
    ("f32_arith.wat", "min", [0.0, -0.0]),
    ("f32_arith.wat", "min", [NAN, 1.0]),
    ("f32_arith.wat", "min", [1.0, NAN]),
    ("f32_arith.wat", "min", [-INF, F32_MAX]),
    ("f32_arith.wat", "max", [-0.0, 0.0]),
    ("f32_arith.wat", "max", [0.0, -0.0]),
    ("f32_arith.wat", "max", [NAN, -INF]),
    ("f32_arith.wat", "max", [INF, 1.0]),
    *_unary("f32_arith.wat", "abs", [-0.0, -INF, -1.5, NAN]),
    *_unary("f32_arith.wat", "neg", [0.0, -0.0, INF, 1.5]),
    ("f32_arith.wat", "copysign", [1.0, -0.0]),
    ("f32_arith.wat", "copysign", [-1.0, 0.0]),
    ("f32_arith.wat", "copysign", [INF, -2.0]),
    ("f32_arith.wat", "copysign", [0.0, -INF]),
    ("f32_arith.wat", "copysign_nan_bits", [-1.0]),
    ("f32_arith.wat", "copysign_nan_bits", [0.0]),
    ("f32_arith.wat", "copysign_nan_bits", [-0.0]),
    ("f32_arith.wat", "neg_nan_bits", []),
    ("f32_arith.wat", "abs_nan_bits", []),
    # --------------------------------------------------------------- f32 rounding
    *_unary(
        "f32_rounding.wat",
        "nearest",
        [0.5, 1.5, 2.5, -0.5, -2.5, 3.5, -0.0, 8388609.0, 0.4999999701976776, INF, NAN],
    ),
    *_unary("f32_rounding.wat", "trunc", [-0.75, 0.75, -1.5, 16777216.0, -INF, NAN]),
    *_unary("f32_rounding.wat", "ceil", [-0.5, 0.5, -1.5, 1.0000001192092896, -0.0, INF]),
    *_unary(
        "f32_rounding.wat", "floor", [-0.5, 0.5, -0.0, -1.0000001192092896, F32_MIN_SUBNORMAL, -INF]
    ),
    # ---------------------------------------------------------------- f32 compare
    *_each(
        "f32_compare.wat",
        "all",
        [
            [1.0, 2.0],
            [2.0, 1.0],
            [1.0, 1.0],
            [-0.0, 0.0],
            [NAN, NAN],
            [NAN, 1.0],
            [1.0, NAN],
            [-INF, INF],
            [INF, INF],
            [F32_MIN_SUBNORMAL, 0.0],
        ],
    ),
    # ------------------------------------------------------------------ f64 arith
    ("f64_arith.wat", "add", [0.1, 0.2]),
    ("f64_arith.wat", "add", [9007199254740992.0, 1.0]),
    ("f64_arith.wat", "add", [F64_MAX, F64_MAX]),
    ("f64_arith.wat", "add", [-0.0, -0.0]),
    ("f64_arith.wat", "add", [-0.0, 0.0]),
    ("f64_arith.wat", "add", [INF, -INF]),
    ("f64_arith.wat", "add", [NAN, 0.0]),
    ("f64_arith.wat", "sub", [0.3, 0.1]),
    ("f64_arith.wat", "sub", [-0.0, 0.0]),
    ("f64_arith.wat", "sub", [0.0, 0.0]),
    ("f64_arith.wat", "mul", [1e308, 10.0]),
    ("f64_arith.wat", "mul", [F64_MIN_SUBNORMAL, 0.5]),
    ("f64_arith.wat", "mul", [2.2250738585072014e-308, 0.5]),
    ("f64_arith.wat", "mul", [-0.0, -0.0]),
    ("f64_arith.wat", "mul", [INF, 0.0]),
    ("f64_arith.wat", "div", [1.0, 3.0]),
    ("f64_arith.wat", "div", [-1.0, 0.0]),
    ("f64_arith.wat", "div", [0.0, -0.0]),
    ("f64_arith.wat", "div", [F64_MIN_SUBNORMAL, F64_MAX]),
    ("f64_arith.wat", "div", [-INF, 2.0]),
    *_unary("f64_arith.wat", "sqrt", [2.0, -0.0, -F64_MIN_SUBNORMAL, INF, NAN, F64_MIN_SUBNORMAL]),
    ("f64_arith.wat", "min", [-0.0, 0.0]),
    ("f64_arith.wat", "min", [0.0, -0.0]),
    ("f64_arith.wat", "min", [NAN, -INF]),
    ("f64_arith.wat", "min", [3.0, 2.0]),
    ("f64_arith.wat", "max", [-0.0, 0.0]),
    ("f64_arith.wat", "max", [0.0, -0.0]),
    ("f64_arith.wat", "max", [1.0, NAN]),
    ("f64_arith.wat", "max", [-INF, -F64_MAX]),
    *_unary("f64_arith.wat", "abs", [-0.0, -INF, -F64_MIN_SUBNORMAL, NAN]),
    *_unary("f64_arith.wat", "neg", [0.0, -0.0, -INF, F64_MAX]),
    ("f64_arith.wat", "copysign", [1.0, -0.0]),
    ("f64_arith.wat", "copysign", [-2.5, 0.0]),
    ("f64_arith.wat", "copysign", [INF, -1.0]),
    ("f64_arith.wat", "copysign", [-0.0, INF]),
    ("f64_arith.wat", "copysign_nan_bits", [-1.0]),
    ("f64_arith.wat", "copysign_nan_bits", [1.0]),
    ("f64_arith.wat", "neg_nan_bits", []),
    # --------------------------------------------------------------- f64 rounding
    *_unary(
        "f64_rounding.wat",
        "nearest",
        [0.5, 1.5, 2.5, -0.5, -1.5, 4.5, -0.0, 4503599627370497.0, 0.49999999999999994, -INF, NAN],
    ),
    *_unary("f64_rounding.wat", "trunc", [-0.9, 0.9, -1e300, 4503599627370495.5, NAN]),
    *_unary("f64_rounding.wat", "ceil", [-0.5, 0.5, -0.0, 1.0000000000000002, -INF]),
    *_unary(
        "f64_rounding.wat", "floor", [-0.5, 0.5, -0.0, -1.0000000000000002, F64_MIN_SUBNORMAL, INF]
    ),
    # ---------------------------------------------------------------- f64 compare
    *_each(
        "f64_compare.wat",
        "all",
        [
            [1.0, 2.0],
            [-0.0, 0.0],
            [NAN, NAN],
            [NAN, 0.0],
            [INF, -INF],
            [1.0, 1.0000000000000002],
            [F64_MIN_SUBNORMAL, -F64_MIN_SUBNORMAL],
        ],
    ),
    # ------------------------------------------------- trapping float->int trunc
    *_unary(
        "conv_trunc_trapping.wat",
        "i32_trunc_f32_s",
        [-1.5, 1.75, -TWO_31, TWO_31, -2147483904.0, 2147483520.0, NAN, INF, -INF, -0.0],
    ),
    *_unary(
        "conv_trunc_trapping.wat",
        "i32_trunc_f32_u",
        [-0.75, -1.0, 4294967040.0, TWO_32, 3000000000.0, NAN],
    ),
    *_unary(
        "conv_trunc_trapping.wat",
        "i32_trunc_f64_s",
        [2147483647.9, 2147483648.0, -2147483648.9, -2147483649.0, NAN, -INF],
    ),
    *_unary(
        "conv_trunc_trapping.wat",
        "i32_trunc_f64_u",
        [4294967295.9, 4294967296.0, -0.99999, -1.0, 3e9, NAN],
    ),
    *_unary(
        "conv_trunc_trapping.wat",
        "i64_trunc_f32_s",
        [-TWO_63, TWO_63, 9.223371487098962e18, -1.5, NAN, INF],
    ),
    *_unary(
        "conv_trunc_trapping.wat",
        "i64_trunc_f32_u",
        [1.8446742974197924e19, TWO_64, -0.5, -1.0, NAN],
    ),
    *_unary(
        "conv_trunc_trapping.wat",
        "i64_trunc_f64_s",
        [9.223372036854775e18, TWO_63, -TWO_63, -9.223372036854778e18, NAN, INF, -123.999],
    ),
    *_unary(
        "conv_trunc_trapping.wat",
        "i64_trunc_f64_u",
        [1.844674407370955e19, TWO_64, -0.999, -1.0, TWO_63, NAN, -INF],
    ),
    # --------------------------------------------------- saturating trunc_sat
    *_unary(
        "conv_trunc_sat.wat", "i32_trunc_sat_f32_s", [NAN, INF, -INF, TWO_31, -TWO_31, -1.5, 1e10]
    ),
    *_unary(
        "conv_trunc_sat.wat", "i32_trunc_sat_f32_u", [NAN, INF, -1.0, -INF, TWO_32, 4294967040.0]
    ),
    *_unary("conv_trunc_sat.wat", "i32_trunc_sat_f64_s", [NAN, 2147483647.9, 2147483648.0, -3e9]),
    *_unary("conv_trunc_sat.wat", "i32_trunc_sat_f64_u", [NAN, 4294967295.9, 5e9, -5e9, -0.0]),
    *_unary("conv_trunc_sat.wat", "i64_trunc_sat_f32_s", [NAN, INF, -INF, TWO_63, -TWO_63]),
    *_unary(
        "conv_trunc_sat.wat", "i64_trunc_sat_f64_s", [NAN, TWO_63, -1e300, 9.223372036854775e18]
    ),
    *_unary(
        "conv_trunc_sat.wat", "i64_trunc_sat_f64_u", [NAN, TWO_64, -1.0, 1.844674407370955e19, INF]
    ),
    # ---------------------------------------------- int->float, demote, promote
    *_unary("conv_float.wat", "f32_convert_i32_s", [16777217, -16777217, I32_MIN, I32_MAX, -1]),
    *_unary("conv_float.wat", "f32_convert_i32_u", [-1, I32_MIN, 16777217, -129]),
    *_unary(
        "conv_float.wat",
        "f32_convert_i64_s",
        [I64_MIN, I64_MAX, 0x20000020000001, -0x20000020000001],
    ),
    *_unary(
        "conv_float.wat", "f32_convert_i64_u", [-1, I64_MIN, 0x20000020000001, 0x0020000020000000]
    ),
    *_unary("conv_float.wat", "f64_convert_i32_u", [-1, I32_MIN, 0]),
    *_unary(
        "conv_float.wat",
        "f64_convert_i64_s",
        [I64_MIN, I64_MAX, 9007199254740993, -9007199254740993],
    ),
    *_unary("conv_float.wat", "f64_convert_i64_u", [-1, I64_MIN, 9007199254740993, -0x400]),
    *_unary(
        "conv_float.wat",
        "demote",
        [
            1e40,
            -1e40,
            F64_MAX,
            1e-50,
            -1e-50,
            0.1,
            1.0000000596046448,
            3.4028235677973366e38,
            NAN,
            -0.0,
        ],
    ),
    *_unary(
        "conv_float.wat",
        "promote",
        [F32_MAX, F32_MIN_SUBNORMAL, -0.0, INF, NAN, 0.10000000149011612],
    ),
    *_unary("conv_float.wat", "i32_reinterpret_f32", [-0.0, 1.0, -INF, F32_MIN_SUBNORMAL]),
    *_unary("conv_float.wat", "f32_reinterpret_i32", [I32_MIN, 0x3F800000, 0x7F800000, 1, -1]),
    *_unary("conv_float.wat", "i64_reinterpret_f64", [-0.0, 1.0, INF, F64_MIN_SUBNORMAL]),
    *_unary(
        "conv_float.wat", "f64_reinterpret_i64", [I64_MIN, 0x3FF0000000000000, -0x10000000000000, 1]
    ),
    *_unary("conv_float.wat", "roundtrip_i32", [0x7FC00001, 0x7F800001, -1, 0x7FA00000]),
    *_unary("conv_float.wat", "roundtrip_i64", [0x7FF8000000000001, 0x7FF0000000000001, -1]),
    # ------------------------------------------------------- memory load/store
    ("memory_load_store.wat", "store32_load_bytes", [0, 0x04030201]),
    ("memory_load_store.wat", "store32_load_bytes", [65532, -2]),
    ("memory_load_store.wat", "store32_load_bytes", [65533, 1]),  # trap: OOB store
    ("memory_load_store.wat", "store32_load_bytes", [3, I32_MIN]),  # unaligned
    ("memory_load_store.wat", "load8", [7, 0x80]),
    ("memory_load_store.wat", "load8", [65535, 0x17F]),
    ("memory_load_store.wat", "load8", [65536, 1]),
    ("memory_load_store.wat", "load16", [1, 0x8001]),
    ("memory_load_store.wat", "load16", [65534, 0x12347FFF]),
    ("memory_load_store.wat", "load16", [65535, 1]),
    ("memory_load_store.wat", "i64_widths", [0, -2]),
    ("memory_load_store.wat", "i64_widths", [5, 0x0123456789ABCDEF]),
    ("memory_load_store.wat", "i64_widths", [65528, 0x7F80FF8000008080]),
    ("memory_load_store.wat", "i64_widths", [65529, 1]),
    ("memory_load_store.wat", "i64_narrow_stores", [16, 0x1122334455667788]),
    ("memory_load_store.wat", "f32_roundtrip", [0, -0.0]),
    ("memory_load_store.wat", "f32_roundtrip", [2, INF]),
    ("memory_load_store.wat", "f32_roundtrip", [65532, 1.5]),
    ("memory_load_store.wat", "f64_roundtrip", [0, -0.0]),
    ("memory_load_store.wat", "f64_roundtrip", [1, F64_MIN_SUBNORMAL]),
    ("memory_load_store.wat", "f64_roundtrip", [65520, 2.5]),
    ("memory_load_store.wat", "f64_roundtrip", [65521, 2.5]),  # trap via offset=8
    ("memory_load_store.wat", "load_i32", [0]),
    ("memory_load_store.wat", "load_i32", [65532]),
    ("memory_load_store.wat", "load_i32", [65533]),
    ("memory_load_store.wat", "load_i32", [-1]),
    ("memory_load_store.wat", "load_i32_off", [0]),
    ("memory_load_store.wat", "load_i32_off", [1]),
    ("memory_load_store.wat", "load_i32_off", [-65532]),  # addr+offset wraps past 2^32: still OOB
    ("memory_load_store.wat", "load_i64", [65528]),
    ("memory_load_store.wat", "load_i64", [65529]),
    ("memory_load_store.wat", "load8_u", [65535]),
    ("memory_load_store.wat", "load8_u", [65536]),
    ("memory_load_store.wat", "load8_u", [I32_MIN]),
    ("memory_load_store.wat", "store_i64", [65528, -1]),
    ("memory_load_store.wat", "store_i64", [65530, -1]),
    ("memory_load_store.wat", "store_f32_off", [65528, 1.0]),
    ("memory_load_store.wat", "store_f32_off", [65529, 1.0]),
    # ----------------------------------------------------------- memory.grow
    ("memory_grow.wat", "size", []),
    *_unary("memory_grow.wat", "grow", [0, 1, 2, 3, 100, -1, 65536]),
    *_unary("memory_grow.wat", "grow_then_size", [0, 2, 3]),
    ("memory_grow.wat", "grow_twice", [1, 1]),
    ("memory_grow.wat", "grow_twice", [2, 1]),
    ("memory_grow.wat", "grow_twice", [1, 2]),
    ("memory_grow.wat", "grow_store_load", [1, 65536, 1]),
    ("memory_grow.wat", "grow_store_load", [2, 196604, 1]),
    ("memory_grow.wat", "grow_store_load", [1, 131072, 1]),  # trap: just past page 2
    ("memory_grow.wat", "grow_store_load", [0, 65536, 1]),  # trap: not grown
    ("memory_grow.wat", "grow_store_load", [5, 65536, 1]),  # grow fails -> trap
    ("memory_grow.wat", "grown_page_is_zero", []),
    # ---------------------------------------------------------- data segments
    *_unary("data_segments.wat", "load8_u", [0, 3, 4, 5, 6, 7, 8, 100, 65535]),
    ("data_segments.wat", "load32", [0]),
    ("data_segments.wat", "load32", [65532]),
    ("data_segments.wat", "load64", [0]),
    ("data_segments.wat", "load64", [100]),
    ("data_segments.wat", "strlen", [100]),
    ("data_segments.wat", "strlen", [104]),
    ("data_segments.wat", "init", [200, 0, 8]),
    ("data_segments.wat", "init", [200, 2, 4]),
    ("data_segments.wat", "init", [0, 0, 0]),
    ("data_segments.wat", "init", [200, 4, 5]),  # trap: past end of segment
    ("data_segments.wat", "init", [65530, 0, 8]),  # trap: past end of memory
    ("data_segments.wat", "init", [200, 8, 0]),  # zero length at segment end: ok
    ("data_segments.wat", "init_after_drop", [0]),
    ("data_segments.wat", "init_after_drop", [1]),  # trap: dropped segment
    # ----------------------------------------------------------------- globals
    ("globals.wat", "consts", []),
    ("globals.wat", "initial_mutables", []),
    ("globals.wat", "set_all", [I32_MIN, I64_MAX, -0.0, -INF]),
    ("globals.wat", "set_all", [7, -7, F32_MIN_SUBNORMAL, 0.1]),
    ("globals.wat", "bump_exported", [0]),
    ("globals.wat", "bump_exported", [5]),
    ("globals.wat", "mix", [0]),
    ("globals.wat", "mix", [3]),
    ("globals.wat", "mix", [-1]),
    # ---------------------------------------------------------- call_indirect
    ("call_indirect.wat", "call_i2i", [0, 21]),
    ("call_indirect.wat", "call_i2i", [1, -9]),
    ("call_indirect.wat", "call_i2i", [1, 65536]),
    ("call_indirect.wat", "call_i2i", [3, I32_MIN]),
    ("call_indirect.wat", "call_i2i", [2, 1]),  # trap: bad_signature
    ("call_indirect.wat", "call_i2i", [4, 1]),  # trap: indirect_call_to_null
    ("call_indirect.wat", "call_i2i", [5, 1]),  # trap: table_out_of_bounds
    ("call_indirect.wat", "call_i2i", [-1, 1]),  # trap: table_out_of_bounds
    ("call_indirect.wat", "call_v2l", [2]),
    ("call_indirect.wat", "call_v2l", [0]),  # trap: bad_signature
    ("call_indirect.wat", "call_v2l", [4]),  # trap: indirect_call_to_null
    ("call_indirect.wat", "call_t2_i2i", [2, 12]),
    ("call_indirect.wat", "call_t2_i2i", [0, 12]),  # null slot of table 2
    ("call_indirect.wat", "call_t2_i2i", [1, 12]),  # bad_signature in table 2
    ("call_indirect.wat", "call_t2_i2i", [3, 12]),  # oob in table 2
    ("call_indirect.wat", "table_sizes", []),
    # ------------------------------------------------------------ bulk memory
    ("bulk_memory.wat", "fill", [0, 0xAB, 4]),
    ("bulk_memory.wat", "fill", [3, 0x1FF, 10]),  # value truncated to 0xFF
    ("bulk_memory.wat", "fill", [0, 0, 0]),
    ("bulk_memory.wat", "copy", [2, 0, 8]),  # overlapping, dst > src
    ("bulk_memory.wat", "copy", [0, 2, 8]),  # overlapping, dst < src
    ("bulk_memory.wat", "copy", [8, 0, 8]),
    ("bulk_memory.wat", "copy", [5, 5, 4]),
    ("bulk_memory.wat", "fill_at", [65535, 7, 1]),
    ("bulk_memory.wat", "fill_at", [65536, 7, 0]),  # zero length at end: ok
    ("bulk_memory.wat", "fill_at", [65537, 7, 0]),  # trap
    ("bulk_memory.wat", "fill_at", [65530, 7, 7]),  # trap, nothing written
    ("bulk_memory.wat", "fill_at", [0, 7, -1]),  # trap: length 2^32-1
    ("bulk_memory.wat", "copy_at", [65535, 15, 1]),
    ("bulk_memory.wat", "copy_at", [65536, 0, 0]),
    ("bulk_memory.wat", "copy_at", [0, 65537, 0]),  # trap
    ("bulk_memory.wat", "copy_at", [65530, 0, 7]),  # trap: dst range
    ("bulk_memory.wat", "copy_at", [0, 65530, 7]),  # trap: src range
    # ------------------------------------------------------------ multi-value
    ("multi_value.wat", "divmod", [17, 5]),
    ("multi_value.wat", "divmod", [-1, 10]),
    ("multi_value.wat", "divmod", [1, 0]),  # trap from inside callee
    ("multi_value.wat", "swap", [I64_MIN, -0.0]),
    ("multi_value.wat", "swap", [42, NAN]),
    ("multi_value.wat", "mixed", [-16777217]),
    ("multi_value.wat", "mixed", [I32_MAX]),
    ("multi_value.wat", "sum_of_divmod", [17, 5]),
    ("multi_value.wat", "block_params", [3, 4]),
    ("multi_value.wat", "block_params", [I32_MAX, 1]),
    ("multi_value.wat", "if_multi", [0]),
    ("multi_value.wat", "if_multi", [-5]),
    ("multi_value.wat", "loop_fib_pair", [1]),
    ("multi_value.wat", "loop_fib_pair", [10]),
    ("multi_value.wat", "loop_fib_pair", [92]),
    ("multi_value.wat", "loop_fib_pair", [100]),  # wraps
    ("multi_value.wat", "nothing", []),
    # -------------------------------------------------------------- recursion
    *_unary("recursion.wat", "fact", [0, 1, 5, 20, 21, 25, -3]),
    *_unary("recursion.wat", "fib", [0, 1, 2, 10, 20, 25]),
    *_unary("recursion.wat", "is_even", [0, 7, 1000]),
    ("recursion.wat", "ackermann", [2, 3]),
    ("recursion.wat", "ackermann", [3, 3]),
    ("recursion.wat", "forever", [0]),  # trap: stack_overflow
    # ------------------------------------------------------------ control flow
    *_unary("control_flow.wat", "sum_to", [0, 1, 10, 100000, -5]),
    *_unary("control_flow.wat", "br_table", [0, 1, 2, 3, 4, 5, -1, I32_MAX]),
    *_unary("control_flow.wat", "br_table_value", [0, 1, 2, 3, -1]),
    *_unary("control_flow.wat", "collatz_steps", [1, 27, 97, 0x7FFFFFFF]),
    *_unary("control_flow.wat", "early_return", [-3, 0, 9]),
    *_unary("control_flow.wat", "nested_br_if", [1, 2, 3, 4]),
    # -------------------------------------------------------------- unreachable
    ("unreachable.wat", "always", []),
    ("unreachable.wat", "if_negative", [5]),
    ("unreachable.wat", "if_negative", [-5]),
    ("unreachable.wat", "deep", [0]),
    ("unreachable.wat", "deep", [50]),
    ("unreachable.wat", "in_loop", [3]),
    ("unreachable.wat", "in_loop", [6]),
    ("unreachable.wat", "br_table_default", [1]),
    ("unreachable.wat", "br_table_default", [2]),
    # ------------------------------------------------------- select & locals
    ("select_locals.wat", "select_i32", [10, 20, 1]),
    ("select_locals.wat", "select_i32", [10, 20, 0]),
    ("select_locals.wat", "select_i32", [10, 20, I32_MIN]),  # any non-zero selects first
    ("select_locals.wat", "select_i64", [I64_MIN, I64_MAX, -1]),
    ("select_locals.wat", "select_i64", [I64_MIN, I64_MAX, 0]),
    ("select_locals.wat", "select_f32", [-0.0, 0.0, 1]),
    ("select_locals.wat", "select_f32", [NAN, INF, 0]),
    ("select_locals.wat", "select_f64", [-0.0, 0.0, 2]),
    ("select_locals.wat", "select_f64", [NAN, -INF, 0]),
    ("select_locals.wat", "zero_locals", []),
    ("select_locals.wat", "tee", [7]),
    ("select_locals.wat", "tee", [I32_MAX]),
    *_unary("select_locals.wat", "many_locals", [0, 1, -1, I64_MAX, 0x0123456789ABCDEF]),
    ("select_locals.wat", "param_mutation", [-1]),
    ("select_locals.wat", "param_mutation", [65535]),
    # ----------------------- stateful modules, stateless invoke (fresh instance)
    ("stateful_counter.wat", "get", []),
    ("stateful_counter.wat", "inc", []),
    ("stateful_counter.wat", "add", [I32_MAX]),
    ("stateful_counter.wat", "reset", []),
    ("stateful_counter.wat", "accumulate", [0.1]),
    ("stateful_counter.wat", "inc_then_trap", []),
    ("stateful_memory.wat", "load", [16]),
    ("stateful_memory.wat", "load", [65533]),
    ("stateful_memory.wat", "size", []),
    ("stateful_memory.wat", "store", [0, 1]),
    ("stateful_memory.wat", "grow", [3]),
    ("stateful_memory.wat", "grow", [4]),
]
