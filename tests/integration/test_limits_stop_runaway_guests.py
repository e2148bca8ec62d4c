"""Deadlines, memory and table caps, stack exhaustion and traps stop a guest
with the right error kind, and the runtime keeps working afterwards. Invalid
limit values are refused as ``invalid_args``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tensorwasm_tc import (
    InvalidArgsError,
    InvokeTimeoutError,
    MemoryLimitError,
    Runtime,
    TrapError,
)

from ._helpers import SPIN_WAT, assert_still_works

CAP = 16 << 20
PAGE = 65536

MEMORY_WAT = """
(module
  (memory 1)
  ;; Grows one page at a time until refused, then aborts like an allocator would.
  (func (export "bomb")
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable)
  ;; Grows until refused, then reports how much memory it got.
  (func (export "grow_all") (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (i32.mul (memory.size) (i32.const 65536))))
"""

TRAPS_WAT = """
(module
  (memory 1)
  (func $recurse (export "recurse") (param i32) (result i32)
    (i32.add (call $recurse (local.get 0)) (i32.const 1)))
  (func (export "div") (param i32 i32) (result i32)
    (i32.div_s (local.get 0) (local.get 1)))
  (func (export "load") (param i32) (result i32)
    (i32.load (local.get 0)))
  (func (export "crash") unreachable))
"""


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1e3


# ----------------------------------------------------------------------------- deadlines


def test_infinite_loop_times_out_at_the_call_deadline(rt: Runtime) -> None:
    fn = rt.load(SPIN_WAT)

    started = time.perf_counter()
    with pytest.raises(InvokeTimeoutError) as excinfo:
        fn.invoke("spin", deadline_ms=200)
    elapsed = _elapsed_ms(started)

    assert excinfo.value.kind == "invoke_timeout"
    assert "200 ms" in excinfo.value.message
    assert 200 <= elapsed < 300
    assert_still_works(rt)


def test_runtime_deadline_is_the_default_for_every_call() -> None:
    rt = Runtime(cache_dir=False, deadline_ms=200)
    fn = rt.load(SPIN_WAT)

    started = time.perf_counter()
    with pytest.raises(InvokeTimeoutError):
        fn.invoke("spin")
    elapsed = _elapsed_ms(started)

    assert fn.limits["deadline_ms"] == 200
    assert 200 <= elapsed < 300
    assert_still_works(rt)


def test_call_deadline_overrides_the_runtime_default() -> None:
    rt = Runtime(cache_dir=False, deadline_ms=30_000)
    fn = rt.load(SPIN_WAT)

    started = time.perf_counter()
    with pytest.raises(InvokeTimeoutError):
        fn.invoke("spin", deadline_ms=50)

    assert _elapsed_ms(started) < 1_000


def test_persistent_instance_call_times_out(rt: Runtime) -> None:
    fn = rt.load(SPIN_WAT)

    with fn.instantiate() as inst:
        started = time.perf_counter()
        with pytest.raises(InvokeTimeoutError):
            inst.invoke("spin", deadline_ms=200)
        elapsed = _elapsed_ms(started)

    assert 200 <= elapsed < 300


# ----------------------------------------------------------------------------- memory


def test_memory_bomb_is_memory_limit() -> None:
    rt = Runtime(cache_dir=False, max_memory_bytes=CAP)
    fn = rt.load(MEMORY_WAT)

    with pytest.raises(MemoryLimitError) as excinfo:
        fn.invoke("bomb")

    assert excinfo.value.kind == "memory_limit"
    assert excinfo.value.trap_code == "unreachable_code_reached"
    assert_still_works(rt)


def test_guest_can_grow_exactly_up_to_the_cap() -> None:
    rt = Runtime(cache_dir=False, max_memory_bytes=CAP)
    fn = rt.load(MEMORY_WAT)

    result = fn.invoke("grow_all")

    assert result.values == [CAP]


def test_unaligned_cap_rounds_down_to_whole_pages() -> None:
    rt = Runtime(cache_dir=False, max_memory_bytes=CAP + PAGE // 2)

    result = rt.load(MEMORY_WAT).invoke("grow_all")

    assert result.values == [CAP]


def test_initial_memory_above_the_cap_is_memory_limit() -> None:
    rt = Runtime(cache_dir=False, max_memory_bytes=CAP)
    fn = rt.load('(module (memory 512) (func (export "f")))')  # 32 MiB

    with pytest.raises(MemoryLimitError) as excinfo:
        fn.invoke("f")
    with pytest.raises(MemoryLimitError):
        fn.instantiate()

    assert "512 pages" in excinfo.value.message
    assert_still_works(rt)


def test_initial_memory_at_the_cap_is_fine() -> None:
    rt = Runtime(cache_dir=False, max_memory_bytes=CAP)
    fn = rt.load('(module (memory 256) (func (export "size") (result i32) (memory.size)))')

    assert fn.invoke("size").values == [256]


def test_table_above_max_table_elements_is_memory_limit() -> None:
    rt = Runtime(cache_dir=False, max_table_elements=100)
    fn = rt.load('(module (table 101 funcref) (func (export "f")))')

    with pytest.raises(MemoryLimitError, match="table"):
        fn.invoke("f")

    assert_still_works(rt)


def test_table_growth_beyond_the_cap_is_refused() -> None:
    rt = Runtime(cache_dir=False, max_table_elements=100)
    fn = rt.load(
        """(module (table 1 funcref)
             (func (export "grow") (param i32) (result i32)
               (table.grow (ref.null func) (local.get 0))))"""
    )

    assert fn.invoke("grow", [99]).values == [1]
    assert fn.invoke("grow", [100]).values == [-1]


# ----------------------------------------------------------------------------- traps


def test_deep_recursion_is_a_stack_overflow_trap(rt: Runtime) -> None:
    fn = rt.load(TRAPS_WAT)

    with pytest.raises(TrapError) as excinfo:
        fn.invoke("recurse", [1])

    assert excinfo.value.kind == "trap"
    assert excinfo.value.trap_code == "stack_overflow"
    assert_still_works(rt)


@pytest.mark.parametrize(
    ("export", "args", "trap_code"),
    [
        ("div", [1, 0], "integer_division_by_zero"),
        ("div", [-(2**31), -1], "integer_overflow"),
        ("load", [65534], "memory_out_of_bounds"),
        ("load", [-1], "memory_out_of_bounds"),
        ("crash", [], "unreachable_code_reached"),
    ],
)
def test_trap_reports_its_trap_code(
    rt: Runtime, export: str, args: list[int], trap_code: str
) -> None:
    fn = rt.load(TRAPS_WAT)

    with pytest.raises(TrapError) as excinfo:
        fn.invoke(export, args)

    assert excinfo.value.trap_code == trap_code
    assert excinfo.value.exit_code is None
    assert f"export '{export}' trapped" in excinfo.value.message
    assert fn.invoke("div", [7, 2]).values == [3]
    assert_still_works(rt)


# ----------------------------------------------------------------------------- invalid limits


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"max_memory_bytes": 0}, id="max_memory_bytes=0"),
        pytest.param({"max_memory_bytes": 5 << 30}, id="max_memory_bytes=5GiB"),
        pytest.param({"max_memory_bytes": (4 << 30) + 1}, id="max_memory_bytes=4GiB+1"),
        pytest.param({"deadline_ms": 0}, id="deadline_ms=0"),
        pytest.param({"deadline_ms": 24 * 3600 * 1000 + 1}, id="deadline_ms=1day+1"),
    ],
)
def test_out_of_range_runtime_limit_is_invalid_args(limits: dict[str, Any]) -> None:
    rt = Runtime(cache_dir=False, **limits)

    with pytest.raises(InvalidArgsError) as excinfo:
        rt.load(SPIN_WAT)

    assert excinfo.value.kind == "invalid_args"
    assert next(iter(limits)) in excinfo.value.message


def test_largest_valid_limits_are_accepted() -> None:
    rt = Runtime(cache_dir=False, max_memory_bytes=4 << 30, deadline_ms=24 * 3600 * 1000)

    fn = rt.load(MEMORY_WAT)

    assert fn.limits["max_memory_bytes"] == 4 << 30


@pytest.mark.parametrize("deadline_ms", [0, 24 * 3600 * 1000 + 1])
def test_out_of_range_call_deadline_is_invalid_args(rt: Runtime, deadline_ms: int) -> None:
    fn = rt.load(SPIN_WAT)

    with pytest.raises(InvalidArgsError, match="deadline_ms"):
        fn.invoke("spin", deadline_ms=deadline_ms)
    with fn.instantiate() as inst, pytest.raises(InvalidArgsError, match="deadline_ms"):
        inst.invoke("spin", deadline_ms=deadline_ms)

    assert_still_works(rt)


@pytest.mark.parametrize("field", ["max_memory_bytes", "deadline_ms"])
def test_negative_runtime_limit_is_invalid_args(field: str) -> None:
    rt = Runtime(cache_dir=False, **{field: -1})

    with pytest.raises(InvalidArgsError):
        rt.load(SPIN_WAT)


def test_negative_call_deadline_is_invalid_args(rt: Runtime) -> None:
    fn = rt.load(SPIN_WAT)

    with pytest.raises(InvalidArgsError):
        fn.invoke("spin", deadline_ms=-1)
