"""Differential tests: every corpus case must behave identically under
wasmtime-py (the reference) and tensorwasm_tc.

* ``test_case_matches_wasmtime`` - one fresh instance per call (``fn.invoke``)
  for every entry of ``tests/corpus/cases.py``.
* ``test_persistent_instance_matches_wasmtime`` - a sequence of calls on one
  instance (``fn.instantiate()``) against one wasmtime-py Store/Instance, showing
  that globals, memory, memory size and dropped data segments survive between
  invokes (also across a trapping invoke).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("wasmtime")

from tensorwasm_tc import Function, Instance, Runtime

from ._differential import (
    Number,
    ReferenceInstance,
    assert_same_outcome,
    call_id,
    load_cases,
    read_wat,
    run_ours,
    run_reference,
)

I32_MIN = -(2**31)
I32_MAX = 2**31 - 1

CASES = load_cases()

Step = tuple[str, list[Number]]
Loader = Callable[[str], Function]

# (wat file, [(export, args), ...]) executed in order on a single instance.
SEQUENCES: dict[str, tuple[str, list[Step]]] = {
    "counter-global": (
        "stateful_counter.wat",
        [
            ("get", []),
            ("inc", []),
            ("inc", []),
            ("add", [40]),
            ("get", []),
            ("inc_then_trap", []),  # traps, but its increment is kept
            ("get", []),
            ("reset", []),
            ("get", []),
            ("add", [I32_MAX]),
            ("inc", []),  # wraps to INT32_MIN
            ("get", []),
        ],
    ),
    "f64-accumulator-global": (
        "stateful_counter.wat",
        [
            ("accumulate", [0.1]),
            ("accumulate", [0.2]),
            ("accumulate", [-0.30000000000000004]),
            ("accumulate", [float("inf")]),
            ("accumulate", [float("-inf")]),  # inf + -inf = NaN, sticks
            ("accumulate", [1.0]),
        ],
    ),
    "memory-store-then-load": (
        "stateful_memory.wat",
        [
            ("load", [16]),  # from the data segment
            ("load", [0]),
            ("store", [0, 123]),
            ("load", [0]),
            ("store64", [8, -2]),
            ("load64", [8]),
            ("load", [12]),
            ("storef64", [24, -0.0]),
            ("loadf64", [24]),
            ("load", [65533]),  # trap: out of bounds
            ("load", [0]),  # still 123 after the trap
            ("store", [16, I32_MIN]),
            ("load", [16]),
        ],
    ),
    "memory-grow-persists": (
        "stateful_memory.wat",
        [
            ("size", []),
            ("store", [65536, 5]),  # trap: page 2 not there yet
            ("grow", [1]),
            ("size", []),
            ("store", [65536, 5]),
            ("load", [65536]),
            ("grow", [3]),  # would exceed max 4: -1
            ("size", []),
            ("grow", [2]),
            ("load", [262140]),
            ("load", [262141]),  # trap
            ("fill", [0, 255, 4]),
            ("load", [0]),
            ("load", [65536]),
        ],
    ),
    "globals-persist": (
        "globals.wat",
        [
            ("bump_exported", [1]),
            ("bump_exported", [2]),
            ("initial_mutables", []),
            ("set_all", [7, -7, 2.5, -0.0]),
            ("initial_mutables", []),
            ("consts", []),
        ],
    ),
    "data-drop-persists": (
        "data_segments.wat",
        [
            ("init", [200, 0, 8]),
            ("init_after_drop", [0]),
            ("init", [300, 0, 8]),  # trap: segment was dropped by the previous invoke
            ("init", [300, 0, 0]),
            ("load64", [200]),
        ],
    ),
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    return Runtime(cache_dir=tmp_path_factory.mktemp("tensorwasm-cache"))


@pytest.fixture(scope="module")
def load_ours(runtime: Runtime) -> Loader:
    """Return a loader that compiles each corpus file once per test module."""
    loaded: dict[str, Function] = {}

    def load(wat_name: str) -> Function:
        if wat_name not in loaded:
            loaded[wat_name] = runtime.load(read_wat(wat_name))
        return loaded[wat_name]

    return load


@pytest.mark.parametrize(
    ("wat_name", "export", "args"),
    [pytest.param(wat, export, args, id=call_id(wat, export, args)) for wat, export, args in CASES],
)
def test_case_matches_wasmtime(
    load_ours: Loader, wat_name: str, export: str, args: list[Number]
) -> None:
    reference = run_reference(wat_name, export, args)
    fn = load_ours(wat_name)
    ours = run_ours(fn.invoke, export, args)
    assert_same_outcome(reference, ours, call_id(wat_name, export, args))


@pytest.mark.parametrize("sequence_name", list(SEQUENCES))
def test_persistent_instance_matches_wasmtime(load_ours: Loader, sequence_name: str) -> None:
    wat_name, steps = SEQUENCES[sequence_name]
    reference = ReferenceInstance(wat_name)
    inst = load_ours(wat_name).instantiate()
    try:
        for index, (export, args) in enumerate(steps):
            expected = reference.invoke(export, args)
            actual = run_ours(inst.invoke, export, args)
            assert_same_outcome(
                expected, actual, f"{sequence_name} step {index}: {call_id(wat_name, export, args)}"
            )
    finally:
        inst.close()


def test_invoke_does_not_leak_state_between_calls(load_ours: Loader) -> None:
    """``fn.invoke`` matches wasmtime-py's fresh-instance-per-call semantics."""
    fn = load_ours("stateful_counter.wat")
    for _ in range(3):
        assert_same_outcome(
            run_reference("stateful_counter.wat", "inc", []),
            run_ours(fn.invoke, "inc", []),
            "stateful_counter.inc() via fn.invoke",
        )


def test_instances_are_isolated(load_ours: Loader) -> None:
    """Two live instances of one module do not share globals or memory."""
    fn = load_ours("stateful_memory.wat")
    ref_a, ref_b = (
        ReferenceInstance("stateful_memory.wat"),
        ReferenceInstance("stateful_memory.wat"),
    )
    ours_a, ours_b = fn.instantiate(), fn.instantiate()
    try:
        steps: list[tuple[str, ReferenceInstance, Instance, str, list[Number]]] = [
            ("a", ref_a, ours_a, "store", [0, 77]),
            ("a", ref_a, ours_a, "grow", [1]),
            ("b", ref_b, ours_b, "load", [0]),
            ("b", ref_b, ours_b, "size", []),
            ("a", ref_a, ours_a, "load", [0]),
            ("a", ref_a, ours_a, "size", []),
        ]
        for label, ref, ours, export, args in steps:
            assert_same_outcome(
                ref.invoke(export, args),
                run_ours(ours.invoke, export, args),
                f"instance {label}: {call_id('stateful_memory.wat', export, args)}",
            )
    finally:
        ours_a.close()
        ours_b.close()
