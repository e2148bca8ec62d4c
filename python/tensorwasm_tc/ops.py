"""Tensor ops: the same kernels guests reach through ``op(...)``.

Every function takes `Tensor`s or anything with ``__dlpack__`` (numpy arrays,
torch tensors) without copying, runs in the native registry with the GIL
released, and returns a `Tensor` (``numpy.from_dlpack(t)`` views it). Integer
arguments follow the ABI's argv order documented in ``docs/ABI.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tensorwasm_tc._core import Tensor, op, op_names

TensorLike = Any

__all__ = [
    "add",
    "argmax",
    "cast",
    "concat",
    "div",
    "embedding",
    "exp",
    "gelu",
    "layernorm",
    "linear",
    "matmul",
    "max",
    "mean",
    "mul",
    "names",
    "relu",
    "reshape",
    "rmsnorm",
    "scale",
    "sigmoid",
    "silu",
    "slice",
    "softmax",
    "sub",
    "sum",
    "tanh",
    "transpose",
]

_DTYPE_CODES = {
    "f32": 0,
    "f16": 1,
    "bf16": 2,
    "f64": 3,
    "i32": 4,
    "i64": 5,
    "u8": 6,
    "i8": 7,
    "bool": 8,
}


def names() -> list[str]:
    """Every op of ABI v1."""
    return op_names()


def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """Matrix product with numpy's rules (batch dims broadcast; 1-D operands)."""
    return op("matmul", a, b)


def linear(x: TensorLike, weight: TensorLike, bias: TensorLike | None = None) -> Tensor:
    """``x @ weight.T + bias``; weight is ``[out, in]``."""
    return op("linear", x, weight) if bias is None else op("linear", x, weight, bias)


def add(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise sum, broadcasting."""
    return op("add", a, b)


def sub(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise difference, broadcasting."""
    return op("sub", a, b)


def mul(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise product, broadcasting."""
    return op("mul", a, b)


def div(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise quotient, broadcasting (integer division by zero gives 0)."""
    return op("div", a, b)


def scale(x: TensorLike, factor: float) -> Tensor:
    """``x * factor``."""
    return op("scale", x, float(factor))


def relu(x: TensorLike) -> Tensor:
    return op("relu", x)


def gelu(x: TensorLike, approximate: bool = False) -> Tensor:
    """GELU; exact (erf) by default, the tanh approximation when asked."""
    return op("gelu", x, int(approximate))


def silu(x: TensorLike) -> Tensor:
    return op("silu", x)


def sigmoid(x: TensorLike) -> Tensor:
    return op("sigmoid", x)


def tanh(x: TensorLike) -> Tensor:
    return op("tanh", x)


def exp(x: TensorLike) -> Tensor:
    return op("exp", x)


def softmax(x: TensorLike, axis: int = -1) -> Tensor:
    return op("softmax", x, axis)


def layernorm(
    x: TensorLike,
    gamma: TensorLike | None = None,
    beta: TensorLike | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalises the last axis; ``beta`` needs ``gamma``."""
    if gamma is None and beta is not None:
        raise ValueError("layernorm: beta needs gamma")
    args = [a for a in (gamma, beta) if a is not None]
    return op("layernorm", x, *args, float(eps))


def rmsnorm(x: TensorLike, gamma: TensorLike | None = None, eps: float = 1e-6) -> Tensor:
    """Root-mean-square normalisation of the last axis."""
    args = [] if gamma is None else [gamma]
    return op("rmsnorm", x, *args, float(eps))


def _reduce(name: str, x: TensorLike, axis: int | None, keepdim: bool) -> Tensor:
    if axis is not None:
        return op(name, x, axis, int(keepdim))
    if not keepdim:
        return op(name, x)
    t = x if isinstance(x, Tensor) else Tensor.from_dlpack(x)
    return op("reshape", op(name, t), *([1] * t.ndim))


def sum(x: TensorLike, axis: int | None = None, keepdim: bool = False) -> Tensor:
    return _reduce("sum", x, axis, keepdim)


def mean(x: TensorLike, axis: int | None = None, keepdim: bool = False) -> Tensor:
    return _reduce("mean", x, axis, keepdim)


def max(x: TensorLike, axis: int | None = None, keepdim: bool = False) -> Tensor:
    return _reduce("max", x, axis, keepdim)


def argmax(x: TensorLike, axis: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the first maximum (i64); over all elements when axis is None."""
    return _reduce("argmax", x, axis, keepdim)


def transpose(x: TensorLike, perm: Sequence[int] | None = None) -> Tensor:
    """A view with axes permuted (reversed when perm is None)."""
    return op("transpose", x, *(perm or ()))


def reshape(x: TensorLike, shape: Sequence[int]) -> Tensor:
    """A view when the layout allows, else a copy; one dimension may be -1."""
    return op("reshape", x, *shape)


def cast(x: TensorLike, dtype: str) -> Tensor:
    """Converts to ``dtype`` (``"f32"``, ``"i64"``, ...)."""
    try:
        code = _DTYPE_CODES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; one of {sorted(_DTYPE_CODES)}") from None
    return op("cast", x, code)


def embedding(table: TensorLike, ids: TensorLike) -> Tensor:
    """Rows of ``table`` ([rows, dim]) at integer ``ids``: shape ids.shape + [dim]."""
    return op("embedding", table, ids)


def concat(tensors: Sequence[TensorLike], axis: int = 0) -> Tensor:
    return op("concat", *tensors, axis)


def slice(x: TensorLike, axis: int, start: int, end: int, step: int = 1) -> Tensor:
    """A view of ``start:end:step`` along ``axis`` (Python index rules)."""
    return op("slice", x, axis, start, end, step)
