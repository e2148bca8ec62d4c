"""Tensors and scalar values in JSON.

A tensor is ``{"dtype": "f32", "shape": [2, 3], "data": [...]}`` (row-major
numbers, flat or nested) or the same with ``"data_b64"``: the row-major
bytes, little-endian, base64. bf16 is written as floats in ``data`` and as
its 2-byte patterns in ``data_b64``. Non-finite floats are the strings
``"nan"``, ``"inf"`` and ``"-inf"`` wherever a number may appear, since
JSON has no literal for them.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from tensorwasm_tc import Tensor, ops
from tensorwasm_tc.gateway.errors import ApiError

NUMPY: Final[dict[str, Any]] = {
    "f32": np.float32,
    "f16": np.float16,
    "f64": np.float64,
    "i32": np.int32,
    "i64": np.int64,
    "u8": np.uint8,
    "i8": np.int8,
    "bool": np.bool_,
}
ITEMSIZE: Final = {
    "f32": 4,
    "f16": 2,
    "bf16": 2,
    "f64": 8,
    "i32": 4,
    "i64": 8,
    "u8": 1,
    "i8": 1,
    "bool": 1,
}
MAX_DIMS: Final = 32
_SPECIAL: Final = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "infinity": math.inf,
    "-infinity": -math.inf,
}


def number_in(value: Any, where: str) -> int | float:
    """One scalar argument: a JSON number or a non-finite float spelled out."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and value.lower() in _SPECIAL:
        return _SPECIAL[value.lower()]
    raise ApiError("invalid_args", f'{where} must be a number (or "nan", "inf", "-inf")')


def number_out(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def decode(name: str, obj: Any, max_bytes: int) -> Any:
    """A JSON tensor → a numpy array or `Tensor` (bf16) the executor accepts."""
    where = f"inputs[{name!r}]"
    if not isinstance(obj, Mapping):
        raise ApiError("invalid_tensor", f"{where} must be an object with dtype, shape and data")
    dtype = obj.get("dtype")
    if dtype not in ITEMSIZE:
        raise ApiError("invalid_tensor", f"{where}.dtype must be one of {', '.join(ITEMSIZE)}")
    shape = obj.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise ApiError(
            "invalid_tensor", f"{where}.shape must be a list of at most {MAX_DIMS} sizes >= 0"
        )
    count = math.prod(shape)
    nbytes = count * ITEMSIZE[dtype]
    if nbytes > max_bytes:
        raise ApiError("invalid_tensor", f"{where} is larger than the request size limit")
    has_data, has_b64 = "data" in obj, "data_b64" in obj
    if has_data == has_b64:
        raise ApiError("invalid_tensor", f"{where} needs exactly one of data and data_b64")
    if has_b64:
        raw = obj["data_b64"]
        if not isinstance(raw, str):
            raise ApiError("invalid_base64", f"{where}.data_b64 must be a base64 string")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError("invalid_base64", f"{where}.data_b64 is not valid base64") from None
        if len(data) != nbytes:
            raise ApiError(
                "invalid_tensor",
                f"{where}.data_b64 holds {len(data)} bytes; "
                f"shape {shape} of {dtype} needs {nbytes}",
            )
        if dtype == "bf16":
            return Tensor.from_bytes("bf16", shape, data)
        arr = np.frombuffer(data, dtype=np.dtype(NUMPY[dtype]).newbyteorder("<"))
        return arr.astype(NUMPY[dtype], copy=False).reshape(shape)
    values = obj["data"]
    if dtype == "bool":
        target: Any = np.bool_
    elif dtype == "bf16":
        target = np.float32
    else:
        target = NUMPY[dtype]
    try:
        arr = _to_array(values, target)
    except (TypeError, ValueError, OverflowError):
        raise ApiError(
            "invalid_tensor", f"{where}.data must be a (nested) list of {dtype} numbers"
        ) from None
    if arr.size != count:
        raise ApiError(
            "invalid_tensor", f"{where}.data has {arr.size} values; shape {shape} needs {count}"
        )
    arr = arr.reshape(shape)
    if dtype == "bf16":
        return ops.cast(arr, "bf16")
    return arr


def _to_array(values: Any, target: Any) -> np.ndarray[Any, Any]:
    if not isinstance(values, list):
        raise TypeError("not a list")
    kind = np.dtype(target).kind
    if kind == "f":
        flat = _flatten(values)
        if any(isinstance(v, str) for v in flat):
            flat = [number_in(v, "data") if isinstance(v, str) else v for v in flat]
        for v in flat:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise TypeError("not a number")
        return np.asarray(flat, dtype=target)
    flat = _flatten(values)
    for v in flat:
        if kind == "b":
            if not isinstance(v, bool | int) or (not isinstance(v, bool) and v not in (0, 1)):
                raise TypeError("not a bool")
        elif isinstance(v, bool) or not isinstance(v, int):
            raise TypeError("not an integer")
    info = np.iinfo(target) if kind != "b" else None
    if info is not None and flat and (min(flat) < info.min or max(flat) > info.max):
        raise OverflowError("out of range")
    return np.asarray(flat, dtype=target)


def _flatten(values: list[Any]) -> list[Any]:
    """Row-major leaves of a nested list, without recursion."""
    out: list[Any] = []
    stack: list[Any] = [iter(values)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def encode(tensor: Tensor, encoding: str) -> dict[str, Any]:
    """A result tensor → JSON (``encoding`` is ``data`` or ``data_b64``)."""
    dtype = tensor.dtype
    shape = list(tensor.shape)
    if encoding == "data_b64":
        return {
            "dtype": dtype,
            "shape": shape,
            "data_b64": base64.b64encode(tensor.contiguous().tobytes()).decode(),
        }
    source = ops.cast(tensor, "f32") if dtype == "bf16" else tensor
    arr = np.from_dlpack(source).reshape(-1)
    values = arr.tolist()
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        values = [number_out(v) for v in values]
    return {"dtype": dtype, "shape": shape, "data": values}
