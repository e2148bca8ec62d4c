"""An artifact's blob layout, dtypes, chunk checksums and content-derived ids.

Shared by the daemon and its clients. This module computes; it never does I/O
beyond reading the buffers it is handed.

Wire constants (each a part of the artifact-id contract: changing one changes
every id):

* ``ALIGN_BYTES = 64``: every tensor starts at a multiple of 64 bytes inside
  the blob, so any dtype is aligned and SIMD loads never straddle a tensor.
* ``DEFAULT_CHUNK_BYTES = 4 MiB``: the unit of checksums and of P2P transfer;
  large enough that per-chunk overhead is negligible, small enough that a
  corrupted chunk costs little to refetch.
* Checksums are BLAKE3 (32-byte digest) of each chunk, computed natively on
  every core with the GIL released (``_core.blake3_chunks``). A chunk's
  digest does not depend on its neighbours, so each P2P stream verifies its
  own range as it lands (``_core.recv_into``).
* The artifact id is the hex BLAKE3 of the canonical JSON of the tensor
  specs, ``total_bytes``, ``chunk_bytes`` and the concatenated chunk checksums:
  the same tensors in the same order give the same id on every host.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from tensorwasm_tc import _core
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2 as gs_pb2
from tensorwasm_tc.tensorcast.errors import ArtifactError

ALIGN_BYTES: Final = 64
DEFAULT_CHUNK_BYTES: Final = 4 * 1024 * 1024
DIGEST_BYTES: Final = 32

#: manifest dtype name -> numpy dtype. ``bfloat16`` has no numpy dtype without
#: extra packages: its elements are exposed as ``uint16`` (the raw bit
#: pattern; ``(x.astype(np.uint32) << 16).view(np.float32)`` widens them).
NUMPY_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "float64": np.dtype("float64"),
    "float32": np.dtype("float32"),
    "float16": np.dtype("float16"),
    "bfloat16": np.dtype("uint16"),
    "int64": np.dtype("int64"),
    "int32": np.dtype("int32"),
    "int16": np.dtype("int16"),
    "int8": np.dtype("int8"),
    "uint64": np.dtype("uint64"),
    "uint32": np.dtype("uint32"),
    "uint16": np.dtype("uint16"),
    "uint8": np.dtype("uint8"),
    "bool": np.dtype("bool"),
}

#: tensorwasm_tc.Tensor dtype names -> manifest names.
_CORE_DTYPES: Final = {
    "f64": "float64",
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "i64": "int64",
    "i32": "int32",
    "i16": "int16",
    "i8": "int8",
    "u64": "uint64",
    "u32": "uint32",
    "u16": "uint16",
    "u8": "uint8",
    "bool": "bool",
}


def align_up(n: int, align: int = ALIGN_BYTES) -> int:
    return (n + align - 1) // align * align


@dataclass(frozen=True, slots=True)
class Prepared:
    """One input tensor as a C-contiguous byte source plus its spec."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: memoryview  # C-contiguous bytes of the tensor


def _torch_module() -> Any:
    import sys

    return sys.modules.get("torch")


def prepare_tensor(name: str, value: Any) -> Prepared:
    """Turns a numpy array, torch tensor or ``tensorwasm_tc.Tensor`` into bytes
    without copying when it is already contiguous on the host."""
    torch = _torch_module()
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            arr = t.view(torch.int16).numpy().view(np.uint16)
            return Prepared(name, "bfloat16", tuple(arr.shape), _bytes_view(arr))
        arr = t.numpy()
        return _from_numpy(name, arr)
    core_dtype = getattr(value, "dtype", None)
    if isinstance(core_dtype, str) and core_dtype in _CORE_DTYPES:
        dtype = _CORE_DTYPES[core_dtype]
        shape = tuple(int(s) for s in value.shape)
        if dtype == "bfloat16":
            raw = np.frombuffer(value.tobytes(), dtype=np.uint16).reshape(shape)
            return Prepared(name, dtype, shape, _bytes_view(raw))
        return _from_numpy(name, np.asarray(value))
    return _from_numpy(name, np.asarray(value))


def _bytes_view(arr: np.ndarray[Any, Any]) -> memoryview:
    arr = np.ascontiguousarray(arr)
    return arr.reshape(-1).view(np.uint8).data if arr.size else memoryview(b"")


def _from_numpy(name: str, arr: np.ndarray[Any, Any]) -> Prepared:
    for dname, dt in NUMPY_DTYPES.items():
        if dname != "bfloat16" and arr.dtype == dt:
            return Prepared(name, dname, tuple(int(s) for s in arr.shape), _bytes_view(arr))
    raise ArtifactError(
        f"tensor {name!r}: unsupported dtype {arr.dtype}", status_code="INVALID_ARGUMENT"
    )


def prepare_tensors(tensors: Mapping[str, Any]) -> list[Prepared]:
    if not tensors:
        raise ArtifactError("an artifact needs at least one tensor", "INVALID_ARGUMENT")
    out = []
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise ArtifactError(
                f"tensor names must be non-empty strings: {name!r}", "INVALID_ARGUMENT"
            )
        out.append(prepare_tensor(name, value))
    return out


def plan_layout(prepared: Sequence[Prepared]) -> tuple[list[gs_pb2.TensorSpec], int]:
    """Tensor specs with 64-byte aligned offsets, and the blob's total size."""
    specs: list[gs_pb2.TensorSpec] = []
    offset = 0
    for p in prepared:
        offset = align_up(offset)
        specs.append(
            gs_pb2.TensorSpec(
                name=p.name, dtype=p.dtype, shape=list(p.shape), offset=offset, nbytes=p.data.nbytes
            )
        )
        offset += p.data.nbytes
    return specs, offset


def validate_specs(specs: Iterable[gs_pb2.TensorSpec], total_bytes: int) -> None:
    """Checks untrusted specs: known dtypes, sizes that match shapes, in bounds."""
    seen: set[str] = set()
    for s in specs:
        if not s.name or s.name in seen:
            raise ArtifactError(f"bad or duplicate tensor name {s.name!r}", "INVALID_ARGUMENT")
        seen.add(s.name)
        dt = NUMPY_DTYPES.get(s.dtype)
        if dt is None:
            raise ArtifactError(f"tensor {s.name!r}: unknown dtype {s.dtype!r}", "INVALID_ARGUMENT")
        if any(d < 0 for d in s.shape):
            raise ArtifactError(f"tensor {s.name!r}: negative dimension", "INVALID_ARGUMENT")
        count = int(np.prod(s.shape, dtype=np.int64)) if len(s.shape) else 1
        if count * dt.itemsize != s.nbytes:
            raise ArtifactError(
                f"tensor {s.name!r}: nbytes {s.nbytes} does not match shape {list(s.shape)}",
                "INVALID_ARGUMENT",
            )
        if s.offset + s.nbytes > total_bytes:
            raise ArtifactError(f"tensor {s.name!r} lies outside the blob", "INVALID_ARGUMENT")


def chunk_ranges(total_bytes: int, chunk_bytes: int) -> list[tuple[int, int]]:
    return [(o, min(chunk_bytes, total_bytes - o)) for o in range(0, total_bytes, chunk_bytes)]


def chunk_digest(data: memoryview | bytes) -> bytes:
    """BLAKE3 of one chunk."""
    return _core.blake3_digest(data)


def chunk_checksums(buf: Any, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> list[bytes]:
    """BLAKE3 of every ``chunk_bytes`` chunk of ``buf`` (any buffer, e.g. an
    mmap), hashed natively on every core with the GIL released."""
    if chunk_bytes <= 0:
        raise ArtifactError("chunk_bytes must be positive", "INVALID_ARGUMENT")
    return _core.blake3_chunks(buf, chunk_bytes)


def artifact_id(
    specs: Sequence[gs_pb2.TensorSpec],
    total_bytes: int,
    chunk_bytes: int,
    checksums: Sequence[bytes],
) -> str:
    canon = json.dumps(
        {
            "tensors": [[s.name, s.dtype, list(s.shape), s.offset, s.nbytes] for s in specs],
            "total_bytes": total_bytes,
            "chunk_bytes": chunk_bytes,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return _core.blake3_digest(canon + b"".join(checksums)).hex()


def fill(
    dest: memoryview, prepared: Sequence[Prepared], specs: Sequence[gs_pb2.TensorSpec]
) -> None:
    """Copies each tensor's bytes to its offset in ``dest`` (the one copy a
    register makes)."""
    for p, s in zip(prepared, specs, strict=True):
        if s.nbytes:
            dest[s.offset : s.offset + s.nbytes] = p.data.cast("B")


#: Bytes per ``pwrite``: Linux moves at most ~2 GiB per call.
_WRITE_STEP = 1 << 30


def write_fd(fd: int, prepared: Sequence[Prepared], specs: Sequence[gs_pb2.TensorSpec]) -> None:
    """As `fill`, into file ``fd`` with ``pwrite``: the kernel allocates and
    fills the memfd's pages without mapping them in this process, about twice
    as fast as writing through a fresh mapping (whose every page faults)."""
    for p, s in zip(prepared, specs, strict=True):
        data = p.data.cast("B")
        done = 0
        while done < s.nbytes:
            n = os.pwrite(fd, data[done : done + _WRITE_STEP], s.offset + done)
            if n <= 0:
                raise ArtifactError("short write into the upload memfd", "INTERNAL")
            done += n


def array_views(
    buf: Any, specs: Iterable[gs_pb2.TensorSpec], names: Iterable[str] | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """numpy arrays over ``buf`` (zero-copy; read-only when ``buf`` is)."""
    wanted = None if names is None else set(names)
    out: dict[str, np.ndarray[Any, Any]] = {}
    for s in specs:
        if wanted is not None and s.name not in wanted:
            continue
        dt = NUMPY_DTYPES[s.dtype]
        count = s.nbytes // dt.itemsize
        if count == 0:
            arr = np.empty(tuple(s.shape), dtype=dt)
            arr.flags.writeable = False
        else:
            arr = np.frombuffer(buf, dtype=dt, count=count, offset=s.offset).reshape(tuple(s.shape))
        out[s.name] = arr
    if wanted is not None:
        missing = wanted - set(out)
        if missing:
            raise ArtifactError(f"no tensors named {sorted(missing)}", "NOT_FOUND")
    return out
