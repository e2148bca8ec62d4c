"""Reads a safetensors file into a new memfd laid out as an artifact blob.

Format: an 8-byte little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``,
offsets relative to the byte after the header), then the data. Every length
is checked before anything is allocated. The data moves once, file to memfd
(``preadv`` straight into the memfd's mapping, re-aligning tensors to 64
bytes on the way), and every chunk is hashed (BLAKE3) right after it lands,
while it is still in the cache, chunks spread over the cores.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2 as gs_pb2
from tensorwasm_tc.tensorcast.daemon import layout, reserve
from tensorwasm_tc.tensorcast.errors import ArtifactError

#: safetensors dtype -> manifest dtype (safetensors spec names).
DTYPES: Final = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}

#: The spec caps the header at 100 MB; larger is hostile.
MAX_HEADER_BYTES: Final = 100_000_000


def _bad(path: Path, why: str) -> ArtifactError:
    return ArtifactError(f"{path}: not a valid safetensors file: {why}", "INVALID_ARGUMENT")


def parse_header(
    path: Path, f: Any, file_size: int
) -> tuple[list[tuple[str, str, list[int], int, int]], int]:
    """[(name, dtype, shape, begin, end)] sorted by begin, and the data start."""
    head = f.read(8)
    if len(head) != 8:
        raise _bad(path, "shorter than 8 bytes")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER_BYTES or 8 + n > file_size:
        raise _bad(path, f"header length {n} out of range")
    try:
        meta = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(path, f"header is not JSON ({e})") from e
    if not isinstance(meta, dict):
        raise _bad(path, "header is not an object")
    data_start = 8 + n
    data_len = file_size - data_start
    out = []
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise _bad(path, f"entry {name!r} is not an object")
        dtype = DTYPES.get(str(info.get("dtype")))
        if dtype is None:
            raise _bad(path, f"tensor {name!r}: unsupported dtype {info.get('dtype')!r}")
        shape = info.get("shape")
        offs = info.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise _bad(path, f"tensor {name!r}: bad shape")
        if not (
            isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)
        ):
            raise _bad(path, f"tensor {name!r}: bad data_offsets")
        begin, end = offs
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if (
            not (0 <= begin <= end <= data_len)
            or end - begin != count * layout.NUMPY_DTYPES[dtype].itemsize
        ):
            raise _bad(path, f"tensor {name!r}: data_offsets do not match shape and file size")
        out.append((str(name), dtype, [int(d) for d in shape], begin, end))
    out.sort(key=lambda t: t[3])
    return out, data_start


def read_into_memfd(
    path: str | Path,
    acquire: Callable[[int, str], reserve.Buffer] = reserve.fresh,
    chunk_bytes: int = layout.DEFAULT_CHUNK_BYTES,
) -> tuple[list[gs_pb2.TensorSpec], int, int, list[bytes]]:
    """(specs, total_bytes, sealed memfd, chunk checksums) of a safetensors
    file; ``acquire`` gives the memfd to fill (the daemon's warm reserve)."""
    p = Path(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 - kept open across the copy below
    except FileNotFoundError as e:
        raise ArtifactError(f"{p}: no such file", "NOT_FOUND") from e
    except OSError as e:
        raise ArtifactError(f"{p}: {e.strerror}", "FAILED_PRECONDITION") from e
    with f:
        size = os.fstat(f.fileno()).st_size
        entries, data_start = parse_header(p, f, size)
        specs = []
        offset = 0
        for name, dtype, shape, begin, end in entries:
            offset = layout.align_up(offset)
            specs.append(
                gs_pb2.TensorSpec(
                    name=name, dtype=dtype, shape=shape, offset=offset, nbytes=end - begin
                )
            )
            offset += end - begin
        if not specs:
            raise _bad(p, "no tensors")
        total = offset
        pieces = [
            (data_start + begin, spec.offset, end - begin)
            for (_n, _d, _s, begin, end), spec in zip(entries, specs, strict=True)
        ]
        buf = acquire(total, f"tc-import-{p.name[:32]}")
        try:
            sums = reserve.fill_hashed(f.fileno(), pieces, buf, chunk_bytes)
            fd = buf.seal()
        except BaseException:
            buf.close()
            raise
    return specs, total, fd, sums
