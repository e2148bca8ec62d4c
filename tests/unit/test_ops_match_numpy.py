"""Every op of ABI v1 agrees with a numpy reference.

Hypothesis draws shapes (size-1 and size-0 dimensions included), broadcasting
pairs, memory layouts (C order, transposed, strided, offset) and values; each
op runs through `tensorwasm_tc.ops` and is compared with numpy, dtype and shape
included. bf16 has no numpy dtype: bf16 operands are made with ``ops.cast`` and
compared after casting back to f32.

Integer semantics follow the kernels' documentation: add/sub/mul/sum wrap,
integer division truncates toward zero and ``x / 0`` is 0, float → int casts
truncate toward zero and saturate (NaN → 0).
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorwasm_tc import (
    DtypeMismatchError,
    InvalidArgsError,
    ShapeMismatchError,
    Tensor,
    TensorWasmError,
    UnknownOpError,
    _core,
    ops,
)

Array = npt.NDArray[Any]

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NP_DTYPES: dict[str, Any] = {
    "f32": np.float32,
    "f64": np.float64,
    "f16": np.float16,
    "i32": np.int32,
    "i64": np.int64,
    "u8": np.uint8,
    "i8": np.int8,
    "bool": np.bool_,
}
FLOATS = ["f32", "f64", "f16", "bf16"]
INTS = ["i32", "i64", "u8", "i8"]
ALL_DTYPES = [*FLOATS, *INTS, "bool"]
LAYOUTS = ["c", "f", "strided", "offset"]

# (rtol, atol) per dtype for results computed once and rounded.
TOL: dict[str, tuple[float, float]] = {
    "f32": (1e-5, 1e-6),
    "f64": (1e-12, 1e-12),
    "f16": (1e-3, 1e-3),
    "bf16": (1e-2, 1e-2),
}

# Ops each test below covers; `test_every_op_is_covered` keeps this honest.
COVERED = {
    "add",
    "sub",
    "mul",
    "div",
    "scale",
    "relu",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "exp",
    "softmax",
    "layernorm",
    "rmsnorm",
    "sum",
    "mean",
    "max",
    "argmax",
    "transpose",
    "reshape",
    "slice",
    "concat",
    "embedding",
    "cast",
    "matmul",
    "linear",
}


# ---------------------------------------------------------------------------
# On a device: with TENSORWASM_TEST_DEVICE=cuda[:N] every op runs on that
# device (tests/unit/test_fake_cuda_op_suite.py runs this file so with the
# fake backend): tensor arguments are copied there, the result must come
# back on it, and is copied to the host for the comparisons.
# ---------------------------------------------------------------------------

TEST_DEVICE = os.environ.get("TENSORWASM_TEST_DEVICE", "")


def _on_device(x: Any, device: str) -> Any:
    if isinstance(x, (list, tuple)):
        return type(x)(_on_device(v, device) for v in x)
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, np.ndarray):
        return Tensor.from_numpy(x).to(device)
    return x


@pytest.fixture(autouse=True, scope="module")
def _ops_on_test_device() -> Iterator[None]:
    if not TEST_DEVICE:
        yield
        return
    device = _core.resolve_device(TEST_DEVICE)
    host_op = ops.op

    def device_op(name: str, *args: Any) -> Tensor:
        out = host_op(name, *_on_device(args, device))
        assert out.device == device, f"{name} answered on {out.device}, not {device}"
        return out.to("cpu")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ops, "op", device_op)
        yield


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def storage_dtype(dtype: str) -> Any:
    """The numpy dtype that holds values of `dtype` (f32 for bf16)."""
    return np.float32 if dtype == "bf16" else NP_DTYPES[dtype]


def bf16_round(x: Array) -> Array:
    """f32 values rounded to the nearest bf16 (ties to even), as f32."""
    x = np.asarray(x, np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32)
    return np.where(np.isnan(x), x, r.view(np.float32))


def round_to(x: Array, dtype: str) -> Array:
    """Reference values (any float dtype) rounded to `dtype`'s precision."""
    if dtype == "bf16":
        return bf16_round(np.asarray(x, np.float64).astype(np.float32))
    return np.asarray(x).astype(NP_DTYPES[dtype])


def to_np(t: Tensor) -> Array:
    """The values of `t` as numpy (bf16 through f32)."""
    assert isinstance(t, Tensor)
    if t.dtype == "bf16":
        return np.from_dlpack(ops.cast(t, "f32"))
    return np.from_dlpack(t)


def with_layout(a: Array, layout: str) -> Array:
    """`a`'s values in another memory layout (never negative strides)."""
    a = np.array(a, order="C")  # (np.ascontiguousarray makes 0-d arrays 1-d)
    if layout == "f" and a.ndim >= 2:
        out = np.asfortranarray(a)
    elif layout == "strided" and a.ndim >= 1:
        big = np.zeros(tuple(2 * d + 1 for d in a.shape), a.dtype)
        out = big[tuple(slice(1, None, 2) for _ in a.shape)]
        out[...] = a
    elif layout == "offset":
        flat = np.zeros(a.size + 1, a.dtype)
        flat[1:] = a.ravel()
        out = flat[1:].reshape(a.shape)
    else:
        return a
    np.testing.assert_array_equal(out, a)
    return out


def make_operand(a: Array, dtype: str, layout: str) -> tuple[Any, Array]:
    """An op operand of `dtype` holding `a`'s values in `layout`, and its exact values."""
    if dtype != "bf16":
        arr = np.array(a, dtype=NP_DTYPES[dtype], order="C")
        return with_layout(arr, layout), arr
    a32 = np.array(a, dtype=np.float32, order="C")
    if layout == "f" and a32.ndim >= 2:
        t = ops.transpose(ops.cast(np.array(a32.T, order="C"), "bf16"))
    elif layout == "strided" and a32.ndim >= 1:
        t = ops.cast(with_layout(a32, "strided"), "bf16")
    else:
        t = ops.cast(a32, "bf16")
    assert t.dtype == "bf16"
    return t, to_np(t)


def elements(
    dtype: str, lo: float = -100.0, hi: float = 100.0, nan: bool = False
) -> st.SearchStrategy[Any]:
    if dtype == "bool":
        return st.booleans()
    if dtype in INTS:
        return hnp.from_dtype(np.dtype(NP_DTYPES[dtype]))
    width: Literal[16, 32, 64] = 16 if dtype == "f16" else 32 if dtype in ("f32", "bf16") else 64
    finite = st.floats(lo, hi, width=width)
    # Small integers make ties (argmax, max) and exact cancellations likely.
    small = st.integers(max(-3, math.ceil(lo)), min(3, math.floor(hi))).map(float)
    strat = st.one_of(finite, small)
    return st.one_of(strat, st.just(math.nan)) if nan else strat


@st.composite
def operands(
    draw: st.DrawFn,
    dtype: str,
    shape: tuple[int, ...],
    lo: float = -100.0,
    hi: float = 100.0,
    nan: bool = False,
) -> tuple[Any, Array]:
    a = draw(hnp.arrays(storage_dtype(dtype), shape, elements=elements(dtype, lo, hi, nan)))
    layout = draw(st.sampled_from(LAYOUTS))
    return make_operand(a, dtype, layout)


def shapes(min_dims: int = 0, max_dims: int = 4, max_side: int = 5) -> st.SearchStrategy[Any]:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side)


def broadcast_pairs(max_dims: int) -> st.SearchStrategy[Any]:
    return hnp.mutually_broadcastable_shapes(
        num_shapes=2, max_dims=max_dims, min_side=0, max_side=4
    )


def check_float(
    got: Tensor,
    expected: npt.ArrayLike,
    dtype: str,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """`got` has `dtype`, `expected`'s shape, and values within tolerance."""
    assert got.dtype == dtype
    expected = np.asarray(expected)
    assert got.shape == expected.shape
    r, a = TOL[dtype]
    values = to_np(got).astype(np.float64)
    np.testing.assert_allclose(
        values,
        expected.astype(np.float64),
        rtol=r if rtol is None else rtol,
        atol=a if atol is None else atol,
        equal_nan=True,
    )


def check_exact(got: Tensor, expected: npt.ArrayLike, dtype: str) -> None:
    """`got` has `dtype`, `expected`'s shape and exactly its values."""
    assert got.dtype == dtype
    expected = np.asarray(expected)
    assert got.shape == expected.shape
    values = to_np(got)
    if dtype != "bf16":
        assert values.dtype == np.dtype(NP_DTYPES[dtype])
    np.testing.assert_array_equal(values, expected.astype(values.dtype))


def int_info(dtype: str) -> tuple[int, int, int]:
    info = np.iinfo(NP_DTYPES[dtype])
    return int(info.min), int(info.max), info.bits


def wrap(values: Any, dtype: str) -> Array:
    """Python ints (an object array or scalar) wrapped into `dtype` (two's complement)."""
    lo, _, bits = int_info(dtype)
    arr = np.asarray(values, dtype=object)
    flat = [((int(v) - lo) % (1 << bits)) + lo for v in arr.ravel()]
    return np.array(flat, dtype=NP_DTYPES[dtype]).reshape(arr.shape)


def trunc_div(x: int, y: int) -> int:
    if y == 0:
        return 0
    q = abs(x) // abs(y)
    return q if (x < 0) == (y < 0) else -q


def saturate_trunc(v: float, dtype: str) -> int:
    """float → int as documented: truncate toward zero, saturate, NaN → 0."""
    lo, hi, _ = int_info(dtype)
    if math.isnan(v):
        return 0
    if math.isinf(v):
        return hi if v > 0 else lo
    return min(hi, max(lo, math.trunc(v)))


def ref_cast(values: Array, src: str, dst: str) -> Array:
    """What `cast` documents, computed in numpy/Python."""
    if dst == "bool":
        return np.asarray(values != 0)
    if dst in INTS:
        if src in FLOATS:
            flat = [saturate_trunc(float(v), dst) for v in values.ravel()]
            return np.array(flat, dtype=object).reshape(values.shape)
        return wrap(values.astype(object), dst)
    if dst == "bf16":
        # Through f32: may differ from a direct rounding by one bf16 step.
        with np.errstate(over="ignore"):
            return bf16_round(values.astype(np.float32)).astype(np.float64)
    with np.errstate(over="ignore"):
        return values.astype(NP_DTYPES[dst])


def reshape_target(draw: Callable[[st.SearchStrategy[Any]], Any], n: int) -> list[int]:
    """A shape of `n` elements, maybe with one -1."""
    if n == 0:
        dims = draw(st.lists(st.integers(0, 3), max_size=3))
        return [*dims, 0] if draw(st.booleans()) else [0, *dims]
    dims: list[int] = []
    rem = n
    for _ in range(draw(st.integers(0, 3))):
        d = draw(st.sampled_from([k for k in range(1, rem + 1) if rem % k == 0]))
        dims.append(d)
        rem //= d
    dims.append(rem)
    dims = draw(st.permutations(dims))
    if draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return dims


def test_every_op_is_covered() -> None:
    assert set(ops.names()) == COVERED
    assert len(ops.names()) == len(set(ops.names()))


# ---------------------------------------------------------------------------
# Elementwise binary: add, sub, mul, div
# ---------------------------------------------------------------------------

BINARY_F: dict[str, Callable[[Array, Array], Array]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
}
BINARY_OPS: dict[str, Callable[[Any, Any], Tensor]] = {
    "add": ops.add,
    "sub": ops.sub,
    "mul": ops.mul,
    "div": ops.div,
}


@SETTINGS
@given(
    data=st.data(),
    name=st.sampled_from(sorted(BINARY_OPS)),
    dtype=st.sampled_from(FLOATS),
    bshapes=broadcast_pairs(4),
)
def test_binary_float_broadcasts_like_numpy(
    data: st.DataObject, name: str, dtype: str, bshapes: Any
) -> None:
    sa, sb = bshapes.input_shapes
    a, av = data.draw(operands(dtype, sa))
    b, bv = data.draw(operands(dtype, sb))
    with np.errstate(all="ignore"):
        if dtype in ("f16", "bf16"):
            # f16/bf16 compute in f32 and round once.
            expected = round_to(BINARY_F[name](av.astype(np.float32), bv.astype(np.float32)), dtype)
        else:
            expected = BINARY_F[name](av, bv)
    assert expected.shape == bshapes.result_shape
    got = BINARY_OPS[name](a, b)
    check_float(got, expected, dtype)


@SETTINGS
@given(
    data=st.data(),
    name=st.sampled_from(sorted(BINARY_OPS)),
    dtype=st.sampled_from(INTS),
    bshapes=broadcast_pairs(3),
)
def test_binary_int_wraps_and_div_truncates(
    data: st.DataObject, name: str, dtype: str, bshapes: Any
) -> None:
    sa, sb = bshapes.input_shapes
    a, av = data.draw(operands(dtype, sa))
    b, bv = data.draw(operands(dtype, sb))
    ao, bo = av.astype(object), bv.astype(object)
    if name == "div":
        raw = np.frompyfunc(trunc_div, 2, 1)(ao, bo)
    else:
        raw = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[name](ao, bo)
    expected = wrap(np.broadcast_to(np.asarray(raw, dtype=object), bshapes.result_shape), dtype)
    check_exact(BINARY_OPS[name](a, b), expected, dtype)


@pytest.mark.parametrize("dtype", INTS)
def test_int_division_edge_cases(dtype: str) -> None:
    lo, hi, _ = int_info(dtype)
    pairs = [(7, 2), (7, 0), (0, 0), (hi, 1), (lo, 1), (hi, hi), (lo, 0)]
    if lo < 0:
        pairs += [(-7, 2), (7, -2), (-7, -2), (lo, -1), (-1, 3)]
    x = np.array([p[0] for p in pairs], NP_DTYPES[dtype])
    y = np.array([p[1] for p in pairs], NP_DTYPES[dtype])
    expected = wrap([trunc_div(int(p), int(q)) for p, q in zip(x, y, strict=True)], dtype)
    check_exact(ops.div(x, y), expected, dtype)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_float_division_by_zero_follows_ieee(dtype: str) -> None:
    x = np.array([1.0, -1.0, 0.0, 2.0], NP_DTYPES[dtype])
    y = np.array([0.0, 0.0, 0.0, -0.0], NP_DTYPES[dtype])
    got = to_np(ops.div(x, y))
    assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2]) and got[3] == -np.inf


def test_binary_large_broadcast_runs_parallel_path() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((96, 1024)).astype(np.float32)
    b = rng.standard_normal((1, 1024)).astype(np.float32)
    strided = with_layout(a, "strided")
    for name, f in BINARY_F.items():
        with np.errstate(all="ignore"):
            check_float(BINARY_OPS[name](strided, b), f(a, b), "f32")
            check_float(BINARY_OPS[name](a, a), f(a, a), "f32")
    ints = rng.integers(-(2**31), 2**31, (64, 1024)).astype(np.int32)
    expected = wrap(ints.astype(object) * ints.astype(object), "i32")
    check_exact(ops.mul(ints, ints), expected, "i32")


def test_binary_rejects_bool() -> None:
    x = np.array([True, False])
    for f in BINARY_OPS.values():
        with pytest.raises(DtypeMismatchError):
            f(x, x)


# ---------------------------------------------------------------------------
# scale and unary activations
# ---------------------------------------------------------------------------


@SETTINGS
@given(
    data=st.data(),
    dtype=st.sampled_from([*FLOATS, "i32", "i64"]),
    shape=shapes(),
    factor=st.one_of(st.floats(-4, 4), st.sampled_from([0.0, 1.0, -1.0, 0.5])),
)
def test_scale(data: st.DataObject, dtype: str, shape: tuple[int, ...], factor: float) -> None:
    x, xv = data.draw(operands(dtype, shape))
    got = ops.scale(x, factor)
    if dtype in INTS:
        flat = [saturate_trunc(float(v) * factor, dtype) for v in xv.ravel()]
        check_exact(got, np.array(flat, dtype=object).reshape(xv.shape), dtype)
    elif dtype == "f64":
        check_float(got, xv * factor, dtype)
    else:
        # f32 (and f16/bf16 through f32) multiply by the factor rounded to f32.
        expected = xv.astype(np.float32) * np.float32(factor)
        check_float(got, round_to(expected, dtype), dtype)


def _gelu_exact(x: Array) -> Array:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return np.asarray(0.5 * x * (1.0 + erf(x / math.sqrt(2.0))))


def _gelu_tanh(x: Array) -> Array:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


UNARY_REF: dict[str, Callable[[Array], Array]] = {
    "relu": lambda x: np.where(x < 0, 0.0, x),
    "gelu": _gelu_exact,
    "gelu_tanh": _gelu_tanh,
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "exp": np.exp,
}
UNARY_OPS: dict[str, Callable[[Any], Tensor]] = {
    "relu": ops.relu,
    "gelu": ops.gelu,
    "gelu_tanh": lambda x: ops.gelu(x, approximate=True),
    "silu": ops.silu,
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "exp": ops.exp,
}


@SETTINGS
@given(
    data=st.data(),
    name=st.sampled_from(sorted(UNARY_OPS)),
    dtype=st.sampled_from(FLOATS),
    shape=shapes(),
)
def test_unary_float(data: st.DataObject, name: str, dtype: str, shape: tuple[int, ...]) -> None:
    x, xv = data.draw(operands(dtype, shape, -10.0, 10.0))
    with np.errstate(all="ignore"):
        expected = UNARY_REF[name](xv.astype(np.float64))
    rtol, atol = TOL[dtype]
    if dtype == "f32" and name.startswith("gelu"):
        # 1 + erf(x/√2) cancels for x ≪ 0: f32 erf's last bit shows up absolutely.
        atol = 2e-6
    check_float(UNARY_OPS[name](x), round_to(expected, dtype), dtype, rtol, atol)


@pytest.mark.parametrize("name", sorted(UNARY_OPS))
def test_unary_keeps_nan_and_handles_infinities(name: str) -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    got = to_np(UNARY_OPS[name](x))
    with np.errstate(all="ignore"):
        expected = UNARY_REF[name](x.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-6, atol=0)


@SETTINGS
@given(data=st.data(), dtype=st.sampled_from(INTS), shape=shapes())
def test_relu_int_keeps_dtype(data: st.DataObject, dtype: str, shape: tuple[int, ...]) -> None:
    x, xv = data.draw(operands(dtype, shape))
    check_exact(ops.relu(x), np.maximum(xv, 0), dtype)


def test_unary_large_runs_parallel_path() -> None:
    x = np.linspace(-8, 8, 70_000, dtype=np.float32).reshape(70, 1000)
    for name in ("gelu", "silu", "exp", "tanh"):
        expected = UNARY_REF[name](x.astype(np.float64))
        atol = 2e-6 if name == "gelu" else 1e-6
        check_float(UNARY_OPS[name](with_layout(x, "f")), expected, "f32", 1e-5, atol)


@pytest.mark.parametrize("name", ["gelu", "silu", "sigmoid", "tanh", "exp"])
@pytest.mark.parametrize("dtype", [*INTS, "bool"])
def test_float_activations_reject_ints(name: str, dtype: str) -> None:
    with pytest.raises(DtypeMismatchError):
        UNARY_OPS[name](np.ones(3, NP_DTYPES[dtype]))


def test_relu_rejects_bool_and_scale_rejects_small_ints() -> None:
    with pytest.raises(DtypeMismatchError):
        ops.relu(np.ones(3, np.bool_))
    with pytest.raises(DtypeMismatchError):
        ops.scale(np.ones(3, np.uint8), 2.0)


# ---------------------------------------------------------------------------
# softmax, layernorm, rmsnorm
# ---------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), dtype=st.sampled_from(FLOATS), shape=shapes(min_dims=1))
def test_softmax_on_each_axis(data: st.DataObject, dtype: str, shape: tuple[int, ...]) -> None:
    ndim = len(shape)
    axis = data.draw(st.integers(-ndim, ndim - 1))
    x, xv = data.draw(operands(dtype, shape, -20.0, 20.0))
    xd = xv.astype(np.float64)
    if xd.size == 0:
        expected = xd
    else:
        e = np.exp(xd - xd.max(axis=axis, keepdims=True))
        expected = e / e.sum(axis=axis, keepdims=True)
    got = ops.softmax(x, axis=axis)
    check_float(got, round_to(expected, dtype), dtype)


def test_softmax_default_axis_is_last() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(to_np(ops.softmax(x)), to_np(ops.softmax(x, axis=1)))
    np.testing.assert_allclose(to_np(ops.softmax(x)).sum(axis=-1), 1.0, rtol=1e-6)


def _norm_ref(x: Array, gamma: Array | None, beta: Array | None, eps: float, rms: bool) -> Array:
    xd = x.astype(np.float64)
    if xd.size == 0:
        return xd
    mean = 0.0 if rms else xd.mean(axis=-1, keepdims=True)
    var = ((xd - mean) ** 2).mean(axis=-1, keepdims=True)
    out = (xd - mean) / np.sqrt(var + eps)
    if gamma is not None:
        out = out * gamma.astype(np.float64)
    if beta is not None:
        out = out + beta.astype(np.float64)
    return np.asarray(out)


@SETTINGS
@given(
    data=st.data(),
    dtype=st.sampled_from(FLOATS),
    shape=shapes(min_dims=1, max_dims=3, max_side=6),
    rms=st.booleans(),
    params=st.sampled_from(["none", "gamma", "gamma+beta"]),
    eps=st.sampled_from([None, 1e-6, 1e-3, 0.5]),
)
def test_norms(
    data: st.DataObject,
    dtype: str,
    shape: tuple[int, ...],
    rms: bool,
    params: str,
    eps: float | None,
) -> None:
    if rms and params == "gamma+beta":
        params = "gamma"
    x, xv = data.draw(operands(dtype, shape, -10.0, 10.0))
    width = shape[-1]
    gamma = beta = None
    gv = bv = None
    if params != "none":
        gamma, gv = data.draw(operands(dtype, (width,), -2.0, 2.0))
    if params == "gamma+beta":
        beta, bv = data.draw(operands(dtype, (width,), -2.0, 2.0))
    default_eps = 1e-6 if rms else 1e-5
    used_eps = default_eps if eps is None else eps
    if rms:
        got = ops.rmsnorm(x, gamma) if eps is None else ops.rmsnorm(x, gamma, eps=eps)
    elif eps is None:
        got = ops.layernorm(x, gamma, beta)
    else:
        got = ops.layernorm(x, gamma, beta, eps=eps)
    # f16/bf16 normalise in f32 (statistics in f64), then round once.
    xs = xv if dtype in ("f32", "f64") else xv.astype(np.float32)
    expected = _norm_ref(xs, gv, bv, used_eps, rms)
    rtol, atol = TOL[dtype]
    if dtype == "f32":
        atol = 1e-5
    check_float(got, round_to(expected, dtype), dtype, rtol, atol)


def test_norm_errors() -> None:
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ShapeMismatchError):
        ops.layernorm(x, np.ones(2, np.float32))
    with pytest.raises(ShapeMismatchError):
        ops.rmsnorm(x, np.ones((1, 3), np.float32))
    with pytest.raises(DtypeMismatchError):
        ops.layernorm(x, np.ones(3, np.float64))
    with pytest.raises(DtypeMismatchError):
        ops.rmsnorm(np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match="beta needs gamma"):
        ops.layernorm(x, beta=np.ones(3, np.float32))


# ---------------------------------------------------------------------------
# Reductions: sum, mean, max, argmax
# ---------------------------------------------------------------------------

REDUCE_OPS: dict[str, Callable[..., Tensor]] = {
    "sum": ops.sum,
    "mean": ops.mean,
    "max": ops.max,
    "argmax": ops.argmax,
}


def _reduce_ref(name: str, xv: Array, dtype: str, axis: int | None, keepdim: bool) -> Any:
    if name == "argmax":
        return np.argmax(xv, axis=axis, keepdims=keepdim)
    if name == "max":
        return np.max(xv, axis=axis, keepdims=keepdim)
    if dtype in INTS:
        return wrap(np.sum(xv.astype(object), axis=axis, keepdims=keepdim), dtype)
    total = np.sum(xv.astype(np.float64), axis=axis, keepdims=keepdim)
    if name == "sum":
        return total
    count = xv.size if axis is None else xv.shape[axis]
    with np.errstate(all="ignore"):
        return np.asarray(total) / np.float64(count)


@SETTINGS
@given(
    data=st.data(),
    name=st.sampled_from(sorted(REDUCE_OPS)),
    dtype=st.sampled_from(ALL_DTYPES),
    shape=shapes(max_dims=3),
    keepdim=st.booleans(),
)
def test_reductions(
    data: st.DataObject, name: str, dtype: str, shape: tuple[int, ...], keepdim: bool
) -> None:
    ndim = len(shape)
    axis = data.draw(st.none() | st.integers(-ndim, ndim - 1)) if ndim else None
    nan = name in ("max", "argmax") and data.draw(st.booleans())
    lo, hi = (-10.0, 10.0) if dtype == "f16" else (-100.0, 100.0)
    x, xv = data.draw(operands(dtype, shape, lo, hi, nan=nan))
    f = REDUCE_OPS[name]
    if (name == "mean" and dtype in INTS) or (name in ("sum", "mean") and dtype == "bool"):
        with pytest.raises(DtypeMismatchError):
            f(x, axis=axis, keepdim=keepdim)
        return
    reduced_len = xv.size if axis is None else xv.shape[axis]
    out_shape = np.sum(np.zeros(shape), axis=axis, keepdims=keepdim).shape
    if name in ("max", "argmax") and reduced_len == 0:
        if math.prod(out_shape) > 0:
            with pytest.raises(InvalidArgsError):
                f(x, axis=axis, keepdim=keepdim)
            return
        # No output element: an empty result (or a refusal, as numpy's) is fine.
        try:
            got = f(x, axis=axis, keepdim=keepdim)
        except InvalidArgsError:
            return
        assert got.shape == out_shape
        return
    got = f(x, axis=axis, keepdim=keepdim)
    expected = np.asarray(_reduce_ref(name, xv, dtype, axis, keepdim))
    if name == "argmax":
        check_exact(got, expected, "i64")
    elif name == "max" or dtype in INTS:
        check_exact(got, expected, dtype)
    elif dtype == "f64":
        scale = np.sum(np.abs(xv), axis=axis, keepdims=keepdim)
        check_float(got, expected, dtype, 1e-12, 1e-12 * float(np.max(scale, initial=1.0)))
    else:
        # Accumulated in f64, rounded once (f16/bf16 through f32).
        rtol = {"f32": 1e-6, "f16": 2e-3, "bf16": 1e-2}[dtype]
        check_float(got, round_to(expected, dtype), dtype, rtol, 1e-6)


def test_reductions_on_large_inputs_run_parallel_path() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 200)).astype(np.float32)
    xs = with_layout(x, "f")
    for axis in (None, 0, 1, -1):
        check_float(ops.sum(xs, axis=axis), np.sum(x.astype(np.float64), axis=axis), "f32")
        check_float(ops.mean(xs, axis=axis), np.mean(x.astype(np.float64), axis=axis), "f32")
        check_exact(ops.max(xs, axis=axis), np.max(x, axis=axis), "f32")
        check_exact(ops.argmax(xs, axis=axis), np.argmax(x, axis=axis), "i64")


def test_argmax_returns_the_first_maximum_and_first_nan() -> None:
    x = np.array([[1, 3, 3, 0], [2, 2, 2, 2]], np.int32)
    check_exact(ops.argmax(x, axis=1), np.array([1, 0]), "i64")
    y = np.array([1.0, np.nan, 5.0, np.nan], np.float32)
    check_exact(ops.argmax(y), np.array(1), "i64")
    assert np.isnan(to_np(ops.max(y)))


def test_reduction_bad_axis_is_invalid_args() -> None:
    x = np.ones((2, 3), np.float32)
    for f in REDUCE_OPS.values():
        for axis in (2, -3, 100):
            with pytest.raises(InvalidArgsError):
                f(x, axis=axis)


# ---------------------------------------------------------------------------
# Shape ops: transpose, reshape, slice, concat, embedding
# ---------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), dtype=st.sampled_from(ALL_DTYPES), shape=shapes())
def test_transpose(data: st.DataObject, dtype: str, shape: tuple[int, ...]) -> None:
    x, xv = data.draw(operands(dtype, shape))
    ndim = len(shape)
    perm: list[int] | None = None
    if data.draw(st.booleans()):
        perm = list(data.draw(st.permutations(range(ndim))))
        perm = [p - ndim if data.draw(st.booleans()) else p for p in perm]
    got = ops.transpose(x, perm)
    check_exact(got, np.transpose(xv, perm), dtype)
    if not TEST_DEVICE and isinstance(x, np.ndarray) and x.size > 0:
        assert np.shares_memory(np.from_dlpack(got), x), "transpose must be a view"


@SETTINGS
@given(data=st.data(), dtype=st.sampled_from(ALL_DTYPES), shape=shapes())
def test_reshape(data: st.DataObject, dtype: str, shape: tuple[int, ...]) -> None:
    x, xv = data.draw(operands(dtype, shape))
    target = reshape_target(data.draw, xv.size)
    got = ops.reshape(x, target)
    check_exact(got, xv.reshape(target), dtype)
    if not TEST_DEVICE and isinstance(x, np.ndarray) and x.flags.c_contiguous and x.size > 0:
        assert np.shares_memory(np.from_dlpack(got), x), "reshape of contiguous data is a view"


def test_reshape_errors() -> None:
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ShapeMismatchError):
        ops.reshape(x, [4, 2])
    with pytest.raises(ShapeMismatchError):
        ops.reshape(x, [-1, 4])
    with pytest.raises(InvalidArgsError):
        ops.reshape(x, [-1, -1])
    with pytest.raises(InvalidArgsError):
        ops.reshape(x, [-2, -3])


@SETTINGS
@given(data=st.data(), dtype=st.sampled_from(ALL_DTYPES), shape=shapes(min_dims=1))
def test_slice(data: st.DataObject, dtype: str, shape: tuple[int, ...]) -> None:
    x, xv = data.draw(operands(dtype, shape))
    ndim = len(shape)
    axis = data.draw(st.integers(-ndim, ndim - 1))
    n = shape[axis]
    start = data.draw(st.integers(-2 * n - 2, 2 * n + 2))
    end = data.draw(st.integers(-2 * n - 2, 2 * n + 2))
    step = data.draw(st.integers(1, 4))
    index: list[slice] = [slice(None)] * ndim
    index[axis] = slice(start, end, step)
    expected = xv[tuple(index)]
    got = ops.slice(x, axis, start, end, step)
    check_exact(got, expected, dtype)
    if not TEST_DEVICE and isinstance(x, np.ndarray) and expected.size > 0:
        assert np.shares_memory(np.from_dlpack(got), x), "slice must be a view"


def test_slice_clamps_and_rejects_bad_steps_and_axes() -> None:
    x = np.arange(10, dtype=np.int64)
    check_exact(ops.slice(x, 0, -3, 100), x[-3:100], "i64")
    check_exact(ops.slice(x, 0, -100, 3), x[-100:3], "i64")
    check_exact(ops.slice(x, 0, 7, 2), x[7:2], "i64")
    check_exact(ops.slice(x, 0, -(2**63), 2**63 - 1, 3), x[::3], "i64")
    check_exact(ops.slice(x, -1, 1, 9, 4), x[1:9:4], "i64")
    for step in (0, -1):
        with pytest.raises(InvalidArgsError):
            ops.slice(x, 0, 0, 5, step)
    for axis in (1, -2):
        with pytest.raises(InvalidArgsError):
            ops.slice(x, axis, 0, 5)


def test_slice_of_a_0d_tensor_is_invalid_args() -> None:
    x = np.array(1.0, np.float32)
    try:
        ops.slice(x, 0, 0, 1)
    except InvalidArgsError:
        return
    except BaseException as e:  # a Rust panic surfaces as pyo3's PanicException
        pytest.fail(f"expected InvalidArgsError, got {type(e).__name__}: {e}")
    pytest.fail("slice of a 0-d tensor succeeded")


def _empty(shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
    return np.zeros(shape, dtype)


# (op on an empty tensor with a 0 after a dimension other than 1, expected).
# Regression cases: such fresh tensors used to read as non-contiguous and typed
# kernels failed with InternalError("typed access to a non-contiguous tensor").
EMPTY_CASES: dict[str, tuple[Callable[[], Tensor], Array]] = {
    "relu f32 [2, 0]": (lambda: ops.relu(_empty((2, 0))), _empty((2, 0))),
    "exp f64 [0, 0]": (lambda: ops.exp(_empty((0, 0), np.float64)), _empty((0, 0), np.float64)),
    "scale i32 [3, 2, 0]": (
        lambda: ops.scale(_empty((3, 2, 0), np.int32), 2.0),
        _empty((3, 2, 0), np.int32),
    ),
    "sum f32 [2, 0] axis -1": (lambda: ops.sum(_empty((2, 0)), axis=-1), _empty((2,))),
    "cast f64 [2, 0] to f32": (lambda: ops.cast(_empty((2, 0), np.float64), "f32"), _empty((2, 0))),
    "add f16 [2, 0]": (
        lambda: ops.add(_empty((2, 0), np.float16), _empty((2, 0), np.float16)),
        _empty((2, 0), np.float16),
    ),
    "matmul f16 [2, 0] @ [0, 3]": (
        lambda: ops.matmul(_empty((2, 0), np.float16), _empty((0, 3), np.float16)),
        _empty((2, 3), np.float16),
    ),
    "embedding ids [2, 0]": (
        lambda: ops.embedding(np.ones((3, 2), np.float32), _empty((2, 0), np.int64)),
        _empty((2, 0, 2)),
    ),
    "softmax f16 [0, 2] axis 0": (
        lambda: ops.softmax(_empty((0, 2), np.float16), 0),
        _empty((0, 2), np.float16),
    ),
}


@pytest.mark.parametrize("case", sorted(EMPTY_CASES))
def test_empty_tensors_with_inner_zero_dims(case: str) -> None:
    run, expected = EMPTY_CASES[case]
    got = run()
    assert got.shape == expected.shape
    np.testing.assert_array_equal(to_np(got), expected)


@SETTINGS
@given(
    data=st.data(),
    dtype=st.sampled_from(ALL_DTYPES),
    base=shapes(min_dims=1, max_dims=3, max_side=4),
    count=st.integers(1, 4),
)
def test_concat_along_each_axis(
    data: st.DataObject, dtype: str, base: tuple[int, ...], count: int
) -> None:
    ndim = len(base)
    axis = data.draw(st.integers(-ndim, ndim - 1))
    parts = []
    values = []
    for _ in range(count):
        shape = list(base)
        shape[axis] = data.draw(st.integers(0, 3))
        t, v = data.draw(operands(dtype, tuple(shape)))
        parts.append(t)
        values.append(v)
    expected = np.concatenate(values, axis=axis)
    got = ops.concat(parts, axis=axis)
    check_exact(got, expected, dtype)


def test_concat_errors() -> None:
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(ShapeMismatchError):
        ops.concat([a, np.zeros((3, 2), np.float32)], axis=0)
    with pytest.raises(ShapeMismatchError):
        ops.concat([a, np.zeros((2, 3, 1), np.float32)], axis=0)
    with pytest.raises(DtypeMismatchError):
        ops.concat([a, np.zeros((2, 3), np.float64)])
    with pytest.raises(InvalidArgsError):
        ops.concat([a, a], axis=2)
    with pytest.raises(InvalidArgsError):
        ops.concat([])


@SETTINGS
@given(
    data=st.data(),
    dtype=st.sampled_from(ALL_DTYPES),
    ids_dtype=st.sampled_from(["i32", "i64"]),
    rows=st.integers(1, 6),
    dim=st.integers(0, 4),
    ids_shape=shapes(max_dims=3, max_side=4),
)
def test_embedding(
    data: st.DataObject,
    dtype: str,
    ids_dtype: str,
    rows: int,
    dim: int,
    ids_shape: tuple[int, ...],
) -> None:
    table, tv = data.draw(operands(dtype, (rows, dim)))
    ids_v = data.draw(
        hnp.arrays(NP_DTYPES[ids_dtype], ids_shape, elements=st.integers(0, rows - 1))
    )
    ids = with_layout(ids_v, data.draw(st.sampled_from(LAYOUTS)))
    got = ops.embedding(table, ids)
    check_exact(got, tv[ids_v], dtype)


@pytest.mark.parametrize("ids_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("bad", [-1, 4, 2**31 - 1])
def test_embedding_out_of_range_id_is_an_error(ids_dtype: Any, bad: int) -> None:
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    with pytest.raises(InvalidArgsError, match="out of range"):
        ops.embedding(table, np.array([0, bad], ids_dtype))


def test_embedding_errors() -> None:
    table = np.zeros((4, 3), np.float32)
    with pytest.raises(DtypeMismatchError):
        ops.embedding(table, np.array([0, 1], np.float32))
    with pytest.raises(DtypeMismatchError):
        ops.embedding(table, np.array([0, 1], np.uint8))
    with pytest.raises(ShapeMismatchError):
        ops.embedding(np.zeros(4, np.float32), np.array([0], np.int64))


# ---------------------------------------------------------------------------
# cast
# ---------------------------------------------------------------------------

CAST_TOL: dict[str, tuple[float, float]] = {
    "f32": (1e-7, 0.0),
    "f64": (0.0, 0.0),
    "f16": (1e-3, 0.0),
    "bf16": (1e-2, 1e-38),
}


def _cast_values(src: str) -> Array:
    """Values of `src` that every target represents or documents (truncation, wrapping)."""
    if src == "bool":
        return np.array([True, False, True])
    if src in INTS:
        lo, hi, _ = int_info(src)
        ints = [0, 1, -1, 2, 127, -128, 255, 1000, -1000, lo, hi, lo + 1, hi - 1]
        return np.array([v for v in ints if lo <= v <= hi], NP_DTYPES[src])
    floats = [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 0.49, -0.51, 100.75, -100.75, 127.9, -128.9, 255.5]
    return np.array(floats, storage_dtype(src))


@pytest.mark.parametrize("dst", ALL_DTYPES)
@pytest.mark.parametrize("src", ALL_DTYPES)
def test_cast_every_pair(src: str, dst: str) -> None:
    x, xv = make_operand(_cast_values(src), src, "c")
    got = ops.cast(x, dst)
    expected = ref_cast(xv, src, dst)
    if dst in FLOATS:
        rtol, atol = CAST_TOL[dst]
        check_float(got, expected, dst, rtol, atol)
        if dst == "bf16" and src in ("f32", "bf16"):
            check_exact(got, bf16_round(xv.astype(np.float32)), "bf16")
    else:
        check_exact(got, expected, dst)


@SETTINGS
@given(
    data=st.data(),
    src=st.sampled_from(ALL_DTYPES),
    dst=st.sampled_from(ALL_DTYPES),
    shape=shapes(max_dims=3),
)
def test_cast_random_values_and_layouts(
    data: st.DataObject, src: str, dst: str, shape: tuple[int, ...]
) -> None:
    # Floats stay where every integer target is defined without saturation.
    lo, hi = (-128.0, 127.0) if dst in INTS else (-1e4, 1e4)
    if dst == "u8":
        lo, hi = 0.0, 255.0
    x, xv = data.draw(operands(src, shape, lo, hi))
    got = ops.cast(x, dst)
    assert got.is_contiguous
    expected = ref_cast(xv, src, dst)
    if dst in FLOATS:
        rtol, atol = CAST_TOL[dst]
        check_float(got, np.asarray(expected, np.float64), dst, max(rtol, 1e-7), atol)
    else:
        check_exact(got, expected, dst)


@pytest.mark.parametrize("dst", INTS)
@pytest.mark.parametrize("src", ["f32", "f64"])
def test_float_to_int_saturates_and_nan_is_zero(src: str, dst: str) -> None:
    lo, hi, _ = int_info(dst)
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 2.9, -2.9], NP_DTYPES[src])
    expected = [0, hi, lo, hi, lo, 2 if hi >= 2 else hi, max(lo, -2)]
    check_exact(ops.cast(x, dst), np.array(expected, NP_DTYPES[dst]), dst)


def test_cast_bad_dtype() -> None:
    x = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="unknown dtype"):
        ops.cast(x, "c64")
    for code in (9, -1, 2**40):
        with pytest.raises(InvalidArgsError):
            _core.op("cast", x, code)


def test_bf16_round_trip_matches_reference_rounding() -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(50_000) * 1e3).astype(np.float32)
    x[:6] = [0.0, -0.0, np.inf, -np.inf, 3.4e38, 1.00390625]  # 1 + 2^-8: a tie, rounds to even
    back = to_np(ops.cast(x, "bf16"))
    np.testing.assert_array_equal(back, bf16_round(x))
    assert back[5] == 1.0


# ---------------------------------------------------------------------------
# matmul and linear
# ---------------------------------------------------------------------------

MATMUL_DTYPES = ["f32", "f64", "f16", "bf16", "i32", "i64"]


def _wrap_matmul(av: Array, bv: Array, dtype: str) -> Array:
    raw = np.matmul(av.astype(object), bv.astype(object))
    return wrap(np.asarray(raw, dtype=object), dtype)


@SETTINGS
@given(
    data=st.data(),
    dtype=st.sampled_from(MATMUL_DTYPES),
    mshapes=hnp.mutually_broadcastable_shapes(
        signature=np.matmul.signature, max_dims=2, min_side=0, max_side=5
    ),
)
def test_matmul_batched_broadcasting_and_1d(data: st.DataObject, dtype: str, mshapes: Any) -> None:
    sa, sb = mshapes.input_shapes
    a, av = data.draw(operands(dtype, sa, -2.0, 2.0))
    b, bv = data.draw(operands(dtype, sb, -2.0, 2.0))
    got = ops.matmul(a, b)
    if dtype in INTS:
        check_exact(got, _wrap_matmul(av, bv, dtype), dtype)
        return
    k = sa[-1]
    expected = np.matmul(av.astype(np.float64), bv.astype(np.float64))
    assert expected.shape == mshapes.result_shape
    rtol, atol = TOL[dtype]
    check_float(got, round_to(expected, dtype), dtype, rtol, atol * max(k, 1) * 4)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_matmul_large_k_and_parallel_paths(dtype: str) -> None:
    rng = np.random.default_rng(4)
    np_dtype = NP_DTYPES[dtype]
    a = rng.uniform(-1, 1, (96, 700)).astype(np_dtype)
    b = rng.uniform(-1, 1, (700, 80)).astype(np_dtype)
    k = a.shape[1]
    rtol, atol = TOL[dtype]
    expected = a.astype(np.float64) @ b.astype(np.float64)
    check_float(ops.matmul(a, b), expected, dtype, rtol, atol * k)
    check_float(
        ops.matmul(with_layout(a, "f"), with_layout(b, "strided")), expected, dtype, rtol, atol * k
    )
    # Many small batches, one operand broadcast over the batch.
    xa = rng.uniform(-1, 1, (6, 1, 16, 24)).astype(np_dtype)
    xb = rng.uniform(-1, 1, (5, 24, 8)).astype(np_dtype)
    expected = np.matmul(xa.astype(np.float64), xb.astype(np.float64))
    check_float(ops.matmul(xa, with_layout(xb, "f")), expected, dtype, rtol, atol * 24)


@pytest.mark.parametrize(
    ("m", "n", "k"),
    [(97, 33, 300), (200, 17, 513), (7, 4100, 40), (300, 300, 300)],
)
def test_matmul_f32_packed_kernel_edges(m: int, n: int, k: int) -> None:
    # Ragged sizes across the packed f32 kernel's tile (6x16) and block
    # (96 rows, depth 256, 4096 columns) boundaries, in every layout.
    rng = np.random.default_rng(m * n + k)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    for la, lb in [("c", "c"), ("f", "f"), ("strided", "c"), ("c", "strided")]:
        got = ops.matmul(with_layout(a, la), with_layout(b, lb))
        check_float(got, expected, "f32", 1e-5, 1e-6 * k)
    # linear past the few-row kernel: x·Wᵀ reads W transposed in place.
    w = np.ascontiguousarray(b.T)
    bias = rng.uniform(-1, 1, n).astype(np.float32)
    check_float(ops.linear(a, w, bias), expected + bias, "f32", 1e-5, 1e-6 * k)


def test_matmul_errors() -> None:
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ShapeMismatchError):
        ops.matmul(a, np.ones((4, 2), np.float32))
    with pytest.raises(ShapeMismatchError):
        ops.matmul(np.ones((2, 2, 3), np.float32), np.ones((3, 3, 4), np.float32))
    with pytest.raises(ShapeMismatchError):
        ops.matmul(np.array(1.0, np.float32), a)
    with pytest.raises(DtypeMismatchError):
        ops.matmul(a, np.ones((3, 2), np.float64))
    with pytest.raises(DtypeMismatchError):
        ops.matmul(np.ones((2, 2), np.uint8), np.ones((2, 2), np.uint8))


@SETTINGS
@given(
    data=st.data(),
    dtype=st.sampled_from(MATMUL_DTYPES),
    lead=st.lists(st.integers(0, 3), max_size=2),
    in_f=st.integers(0, 6),
    out_f=st.integers(0, 5),
    with_bias=st.booleans(),
)
def test_linear(
    data: st.DataObject,
    dtype: str,
    lead: list[int],
    in_f: int,
    out_f: int,
    with_bias: bool,
) -> None:
    x, xv = data.draw(operands(dtype, (*lead, in_f), -2.0, 2.0))
    w, wv = data.draw(operands(dtype, (out_f, in_f), -2.0, 2.0))
    bias, bv = data.draw(operands(dtype, (out_f,), -2.0, 2.0)) if with_bias else (None, None)
    got = ops.linear(x, w, bias)
    if dtype in INTS:
        raw = np.matmul(xv.astype(object), wv.T.astype(object))
        if bv is not None:
            raw = raw + bv.astype(object)
        check_exact(got, wrap(np.asarray(raw, dtype=object), dtype), dtype)
        return
    expected = xv.astype(np.float64) @ wv.T.astype(np.float64)
    if bv is not None:
        expected = expected + bv.astype(np.float64)
    rtol, atol = TOL[dtype]
    check_float(got, round_to(expected, dtype), dtype, rtol, atol * max(in_f, 1) * 4)


def test_linear_large_parallel_path() -> None:
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (4, 64, 256)).astype(np.float32)
    w = rng.uniform(-1, 1, (128, 256)).astype(np.float32)
    b = rng.uniform(-1, 1, 128).astype(np.float32)
    expected = x.astype(np.float64) @ w.T.astype(np.float64) + b
    check_float(ops.linear(x, with_layout(w, "f"), b), expected, "f32", 1e-5, 1e-6 * 256)


def test_linear_errors() -> None:
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ShapeMismatchError):
        ops.linear(x, np.ones((4, 2), np.float32))
    with pytest.raises(ShapeMismatchError):
        ops.linear(x, np.ones((4, 3), np.float32), np.ones(3, np.float32))
    with pytest.raises(ShapeMismatchError):
        ops.linear(x, np.ones(3, np.float32))
    with pytest.raises(ShapeMismatchError):
        ops.linear(np.array(1.0, np.float32), np.ones((4, 1), np.float32))
    with pytest.raises(DtypeMismatchError):
        ops.linear(x, np.ones((4, 3), np.float64))
    with pytest.raises(DtypeMismatchError):
        ops.linear(x, np.ones((4, 3), np.float32), np.ones(4, np.float64))


# ---------------------------------------------------------------------------
# Errors, views and read-only inputs
# ---------------------------------------------------------------------------


def test_error_kinds() -> None:
    f32 = np.ones((2, 3), np.float32)
    with pytest.raises(ShapeMismatchError):
        ops.add(f32, np.ones((4,), np.float32))
    with pytest.raises(ShapeMismatchError):
        ops.mul(f32, np.ones((3, 2), np.float32))
    with pytest.raises(DtypeMismatchError):
        ops.add(f32, np.ones((2, 3), np.float64))
    with pytest.raises(DtypeMismatchError):
        ops.sub(f32, np.ones((2, 3), np.int32))
    with pytest.raises(UnknownOpError):
        _core.op("nope")
    with pytest.raises(UnknownOpError, match="nope"):
        _core.op("nope", f32)
    invalid: list[Callable[[], Tensor]] = [
        lambda: ops.softmax(f32, axis=2),
        lambda: ops.softmax(f32, axis=-3),
        lambda: ops.sum(f32, axis=5),
        lambda: ops.argmax(f32, axis=-3),
        lambda: ops.transpose(f32, [0, 2]),
        lambda: ops.transpose(f32, [0, 0]),
        lambda: ops.transpose(f32, [0]),
        lambda: ops.slice(f32, 2, 0, 1),
        lambda: ops.concat([f32], axis=-3),
        lambda: _core.op("add", f32, 1),
        lambda: _core.op("add", f32, f32, f32),
        lambda: _core.op("relu"),
    ]
    for bad in invalid:
        with pytest.raises(InvalidArgsError):
            bad()
    for exc in (ShapeMismatchError, DtypeMismatchError, UnknownOpError, InvalidArgsError):
        assert issubclass(exc, TensorWasmError)


@pytest.mark.skipif(bool(TEST_DEVICE), reason="zero-copy views of host memory")
def test_views_share_memory_with_their_source() -> None:
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = np.from_dlpack(ops.transpose(a))
    r = np.from_dlpack(ops.reshape(a, [6, -1]))
    s = np.from_dlpack(ops.slice(a, 2, 1, 4, 2))
    tt = np.from_dlpack(ops.transpose(ops.transpose(a, [1, 0, 2]), [1, 0, 2]))
    a[1, 2, 3] = -5.0
    assert t[3, 2, 1] == -5.0
    assert r[5, 3] == -5.0
    assert s[1, 2, 1] == -5.0
    assert tt[1, 2, 3] == -5.0
    # Computing ops copy: their results do not follow the source.
    added = np.from_dlpack(ops.add(a, np.zeros_like(a)))
    copied = np.from_dlpack(ops.reshape(with_layout(a, "f"), [24]))
    a[0, 0, 0] = 99.0
    assert added[0, 0, 0] == 0.0
    assert copied[0] == 0.0
    # A view keeps its source alive.
    b = np.arange(6, dtype=np.int64).reshape(2, 3)
    view = ops.transpose(b)
    del b
    gc.collect()
    np.testing.assert_array_equal(np.from_dlpack(view), [[0, 3], [1, 4], [2, 5]])


@pytest.mark.skipif(bool(TEST_DEVICE), reason="zero-copy views of host memory")
def test_ops_on_read_only_inputs() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    a.setflags(write=False)
    view = ops.transpose(a)
    assert view.read_only
    v = np.from_dlpack(view)
    np.testing.assert_array_equal(v, a.T)
    assert not v.flags.writeable
    s = np.from_dlpack(ops.slice(a, 1, 0, 2))
    np.testing.assert_array_equal(s, a[:, :2])
    out = ops.add(a, a)
    assert not out.read_only
    o = np.from_dlpack(out)
    np.testing.assert_array_equal(o, a + a)
    assert o.flags.writeable
    np.testing.assert_array_equal(np.from_dlpack(ops.matmul(a, view)), a @ a.T)
    np.testing.assert_array_equal(np.from_dlpack(ops.cast(view, "i32")), a.T.astype(np.int32))


def test_results_are_plain_tensors_and_op_names_are_stable() -> None:
    names: Sequence[str] = ops.names()
    assert names == _core.op_names()
    assert names[:3] == ["matmul", "linear", "add"]
    t = ops.add(np.ones(3, np.float32), np.ones(3, np.float32))
    assert isinstance(t, Tensor)
    assert t.device == "cpu"
    assert t.is_contiguous
