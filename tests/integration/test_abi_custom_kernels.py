"""`cuda_load` / `cuda_launch`: custom kernels for advanced guests.

On an instance that runs on the CPU (or on the fake backend, which cannot run
CUDA code) both answer NotAvailable (-1) with a message, after checking what
they were given: the source size cap and bounds, the kernel name, the launch
bounds (at most 1024 threads per block, block and grid within CUDA's limits),
and the argv records. Each guest writes its arguments with data segments and
returns the codes it got, packed in an i64.
"""

from __future__ import annotations

import struct

import pytest
from tensorwasm_tc import Runtime

NOT_AVAILABLE = -1
INVALID_POINTER = -2
INVALID_ARGS = -9
KERNEL_ARGS_UNSUPPORTED = -10


def dims(x: int, y: int, z: int) -> str:
    return "".join(f"\\{b:02x}" for b in struct.pack("<3I", x, y, z))


def guest(grid: tuple[int, int, int], block: tuple[int, int, int], *, src_len: int = 5,
          argv_len: int = 0, name_len: int = 6, src_ptr: int = 0) -> str:  # fmt: skip
    return f"""
(module
  (import "tensorwasm" "cuda_load" (func $load (param i32 i32) (result i32)))
  (import "tensorwasm" "cuda_launch"
    (func $launch (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "tensorwasm" "last_error" (func $err (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "extern")
  (data (i32.const 64) "{dims(*grid)}")
  (data (i32.const 80) "{dims(*block)}")
  (func (export "load") (result i32) (call $load (i32.const {src_ptr}) (i32.const {src_len})))
  (func (export "launch") (result i32)
    (call $launch (i32.const 1) (i32.const 0) (i32.const {name_len}) (i32.const 64)
                  (i32.const 80) (i32.const 1024) (i32.const {argv_len})))
  (func (export "err_len") (result i32) (call $err (i32.const 0) (i32.const 0))))
"""


def call(wat: str, export: str) -> int:
    fn = Runtime(cache_dir=False).load(wat)
    [code] = fn.invoke(export).values
    return int(code)


def test_load_on_the_cpu_is_not_available() -> None:
    assert call(guest((1, 1, 1), (1, 1, 1)), "load") == NOT_AVAILABLE
    assert call(guest((1, 1, 1), (1, 1, 1), src_len=0), "load") == INVALID_ARGS
    assert call(guest((1, 1, 1), (1, 1, 1), src_len=(1 << 20) + 1), "load") == INVALID_ARGS
    assert call(guest((1, 1, 1), (1, 1, 1), src_ptr=65530, src_len=100), "load") == INVALID_POINTER


@pytest.mark.parametrize(
    ("grid", "block", "want"),
    [
        ((1, 1, 1), (256, 1, 1), NOT_AVAILABLE),
        ((2**31 - 1, 65535, 65535), (32, 32, 1), NOT_AVAILABLE),
        ((1, 1, 1), (1024, 2, 1), INVALID_ARGS),  # 2048 threads
        ((1, 1, 1), (1, 1, 65), INVALID_ARGS),  # z > 64
        ((1, 1, 1), (0, 1, 1), INVALID_ARGS),
        ((2**31, 1, 1), (1, 1, 1), INVALID_ARGS),
        ((1, 65536, 1), (1, 1, 1), INVALID_ARGS),
    ],
)
def test_launch_bounds_are_checked_before_anything_runs(
    grid: tuple[int, int, int], block: tuple[int, int, int], want: int
) -> None:
    assert call(guest(grid, block), "launch") == want


def test_launch_checks_the_name_and_argv() -> None:
    assert call(guest((1, 1, 1), (1, 1, 1), argv_len=5000), "launch") == KERNEL_ARGS_UNSUPPORTED
    assert call(guest((1, 1, 1), (1, 1, 1), name_len=0), "launch") == INVALID_ARGS


def test_the_message_says_why() -> None:
    wat = guest((1, 1, 1), (1, 1, 1)).replace(
        '(func (export "err_len")',
        '(func (export "both") (result i32) (drop (call $load (i32.const 0) (i32.const 5)))'
        ' (call $err (i32.const 0) (i32.const 0)))\n  (func (export "err_len")',
    )
    fn = Runtime(cache_dir=False).load(wat)
    [length] = fn.invoke("both").values
    assert length > len("NotAvailable: ")
