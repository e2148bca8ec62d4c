"""Persistent instances keep memory and globals between invokes, survive traps
and timeouts, and refuse calls once closed; fresh invokes never see that state."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from tensorwasm_tc import (
    Instance,
    InstanceClosedError,
    InvokeTimeoutError,
    Runtime,
    TrapError,
)

STATEFUL_WAT = """
(module
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))
  (func (export "inc") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (global.get $count))
  (func (export "get") (result i32) (global.get $count))
  (func (export "store") (param i32 i64) (i64.store (local.get 0) (local.get 1)))
  (func (export "load") (param i32) (result i64) (i64.load (local.get 0)))
  ;; Keeps its increment, then traps.
  (func (export "inc_then_trap")
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    unreachable)
  ;; Keeps its increment, then spins until the deadline stops it.
  (func (export "inc_then_spin")
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (loop $forever (br $forever)))
  (func (export "main") (result i32) (i32.const 7)))
"""


@pytest.fixture
def inst(rt: Runtime) -> Iterator[Instance]:
    instance = rt.load(STATEFUL_WAT).instantiate()
    yield instance
    instance.close()


def test_globals_survive_between_invokes(inst: Instance) -> None:
    inst.invoke("inc")
    inst.invoke("inc")

    result = inst.invoke("inc")

    assert result.values == [3]
    assert inst.invoke("get").values == [3]


def test_memory_survives_between_invokes(inst: Instance) -> None:
    inst.invoke("store", [128, -1234567890123])

    result = inst.invoke("load", [128])

    assert result.values == [-1234567890123]


def test_fresh_invoke_does_not_see_instance_state(rt: Runtime) -> None:
    fn = rt.load(STATEFUL_WAT)
    with fn.instantiate() as inst:
        inst.invoke("inc")
        inst.invoke("store", [0, 99])

        assert fn.invoke("get").values == [0]
        assert fn.invoke("load", [0]).values == [0]
        assert fn.invoke("inc").values == [1]
        assert fn.invoke("inc").values == [1]
        assert inst.invoke("get").values == [1]


def test_two_instances_do_not_share_state(rt: Runtime) -> None:
    fn = rt.load(STATEFUL_WAT)
    with fn.instantiate() as first, fn.instantiate() as second:
        first.invoke("inc")
        first.invoke("inc")
        first.invoke("store", [8, 5])

        assert second.invoke("get").values == [0]
        assert second.invoke("load", [8]).values == [0]
        assert first.invoke("get").values == [2]


def test_instance_knows_its_function(rt: Runtime) -> None:
    fn = rt.load(STATEFUL_WAT)

    with fn.instantiate() as inst:
        assert inst.function_id == fn.id
        assert inst.invoke().values == [7]  # default export: `main`


def test_invoke_after_close_is_instance_closed(rt: Runtime) -> None:
    fn = rt.load(STATEFUL_WAT)
    inst = fn.instantiate()
    inst.invoke("inc")

    inst.close()

    assert inst.closed
    with pytest.raises(InstanceClosedError) as excinfo:
        inst.invoke("get")
    assert excinfo.value.kind == "instance_closed"
    assert fn.invoke("inc").values == [1]


def test_close_is_idempotent(rt: Runtime) -> None:
    inst = rt.load(STATEFUL_WAT).instantiate()

    inst.close()
    inst.close()

    assert inst.closed
    with pytest.raises(InstanceClosedError):
        inst.invoke("get")


def test_context_manager_closes_the_instance(rt: Runtime) -> None:
    fn = rt.load(STATEFUL_WAT)

    with fn.instantiate() as inst:
        assert not inst.closed
        assert inst.invoke("inc").values == [1]

    assert inst.closed
    with pytest.raises(InstanceClosedError):
        inst.invoke("get")


def test_context_manager_closes_the_instance_on_error(rt: Runtime) -> None:
    fn = rt.load(STATEFUL_WAT)

    with pytest.raises(TrapError), fn.instantiate() as inst:
        inst.invoke("inc_then_trap")

    assert inst.closed


def test_instance_survives_a_trap_and_keeps_its_state(inst: Instance) -> None:
    inst.invoke("inc")
    inst.invoke("store", [16, 42])

    with pytest.raises(TrapError) as excinfo:
        inst.invoke("inc_then_trap")

    assert excinfo.value.trap_code == "unreachable_code_reached"
    assert not inst.closed
    assert inst.invoke("get").values == [2]
    assert inst.invoke("load", [16]).values == [42]
    assert inst.invoke("inc").values == [3]


def test_instance_survives_a_timeout_and_keeps_its_state(inst: Instance) -> None:
    inst.invoke("inc")
    inst.invoke("store", [24, 7])

    with pytest.raises(InvokeTimeoutError):
        inst.invoke("inc_then_spin", deadline_ms=50)

    assert not inst.closed
    assert inst.invoke("get").values == [2]
    assert inst.invoke("load", [24]).values == [7]
    assert inst.invoke("inc").values == [3]


def test_closing_instances_frees_pool_slots() -> None:
    """With a pool of 4 slots, the fifth live instance is refused as
    resource_exhausted; closing (or dropping) one makes room again."""
    script = textwrap.dedent(
        """
        import gc, json
        from tensorwasm_tc import ResourceExhaustedError, Runtime
        from tensorwasm_tc._core import engine_info

        fn = Runtime(cache_dir=False).load(
            '(module (memory 1) (func (export "f") (result i32) i32.const 1))')
        out = {"pool": engine_info()["pool_instances"]}
        live = [fn.instantiate() for _ in range(4)]
        for name, attempt in [("instantiate", fn.instantiate),
                              ("invoke", lambda: fn.invoke("f"))]:
            try:
                attempt()
                out[name] = "ok"
            except ResourceExhaustedError as exc:
                out[name] = exc.kind
        live[0].close()
        out["after_close"] = fn.invoke("f").values
        del live[1]
        gc.collect()
        extra = [fn.instantiate(), fn.instantiate()]
        out["after_drop"] = [i.invoke("f").values[0] for i in extra]
        for i in extra:
            i.close()
        for _ in range(20):
            fn.instantiate().close()
        out["churn"] = fn.invoke("f").values
        print(json.dumps(out))
        """
    )
    env = dict(os.environ, TENSOR_WASM_POOL_INSTANCES="4")

    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        '{"pool": 4, "instantiate": "resource_exhausted", "invoke": "resource_exhausted", '
        '"after_close": [1], "after_drop": [1, 1], "churn": [1]}'
    )
