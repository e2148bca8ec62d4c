"""One Function serves many Python threads at once, and a running invoke does
not hold the GIL: other Python threads keep making progress meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tensorwasm_tc import InvokeTimeoutError, Runtime

from ._helpers import SPIN_WAT

MATH_WAT = """
(module
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "fib") (param $n i32) (result i64)
    (local $a i64) (local $b i64) (local $t i64)
    (local.set $b (i64.const 1))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $t (i64.add (local.get $a) (local.get $b)))
        (local.set $a (local.get $b))
        (local.set $b (local.get $t))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $a)))
"""

COUNTER_WAT = """
(module
  (global $n (mut i32) (i32.const 0))
  (func (export "inc") (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (global.get $n))
  (func (export "get") (result i32) (global.get $n)))
"""

THREADS = 8
CALLS_PER_THREAD = 200


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    """Runs `target(i)` in `count` threads released together; returns their errors."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(index: int) -> None:
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # collected and asserted on by the caller
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_eight_threads_share_one_function_and_get_their_own_results(rt: Runtime) -> None:
    fn = rt.load(MATH_WAT)
    results: dict[int, list[tuple[int, int]]] = {i: [] for i in range(THREADS)}

    def work(index: int) -> None:
        for call in range(CALLS_PER_THREAD):
            added = fn.invoke("add", [index * 1_000_000, call]).values[0]
            fib = fn.invoke("fib", [index * 10 + call % 7]).values[0]
            results[index].append((added, fib))

    errors = _run_threads(THREADS, work)

    assert errors == []
    for index in range(THREADS):
        expected = [
            (index * 1_000_000 + call, _fib(index * 10 + call % 7))
            for call in range(CALLS_PER_THREAD)
        ]
        assert results[index] == expected


def test_calls_on_one_instance_from_many_threads_are_serialised(rt: Runtime) -> None:
    fn = rt.load(COUNTER_WAT)
    seen: list[int] = []
    lock = threading.Lock()

    with fn.instantiate() as inst:

        def work(_index: int) -> None:
            for _ in range(250):
                value = inst.invoke("inc").values[0]
                with lock:
                    seen.append(value)

        errors = _run_threads(4, work)
        final = inst.invoke("get").values

    assert errors == []
    assert final == [1000]
    assert sorted(seen) == list(range(1, 1001))


def test_main_thread_keeps_running_python_while_wasm_spins(rt: Runtime) -> None:
    fn = rt.load(SPIN_WAT)
    outcome: list[str] = []

    def spin() -> None:
        try:
            fn.invoke("spin", deadline_ms=1_000)
        except InvokeTimeoutError as exc:
            outcome.append(exc.kind)

    worker = threading.Thread(target=spin)
    wall_started = time.perf_counter()
    cpu_started = time.thread_time()
    worker.start()
    iterations = 0
    while worker.is_alive():
        iterations += 1
    cpu = time.thread_time() - cpu_started
    wall = time.perf_counter() - wall_started
    worker.join()

    # Had the invoke held the GIL, this thread would have been blocked for the
    # whole second: next to no CPU time and a few thousand iterations at most.
    assert outcome == ["invoke_timeout"]
    assert wall >= 1.0
    assert cpu / wall > 0.1, f"main thread ran {cpu:.3f}s of CPU in {wall:.3f}s"
    assert iterations > 100_000
