"""Kernel benchmarks: ``tensorwasm_tc`` ops and guests against numpy.

Four benchmarks run in one invocation, ours and numpy alternating in the same
process (medians of several rounds after a warm-up):

1. ``sgemm``       -- f32 matrix product at 512, 1024 and 2048 cubed:
   ``ops.matmul(a, b)`` vs ``a @ b``, in GFLOP/s; ratio ours/numpy.
2. ``elementwise`` -- ``ops.add`` / ``ops.mul`` on 16M f32 against ``np.add`` /
   ``np.multiply`` (both allocate their output), and row softmax and
   layernorm (no gamma/beta) of a 4096x4096 f32 matrix against the plain
   numpy formulas; ratio numpy time / our time (higher: ours faster).
3. ``abi``         -- the cost of one ``op`` call through the guest ABI: a WAT
   export ``loop(n)`` calls ``op("add", a, a)`` and ``tensor_drop`` on a
   4-element input ``n`` times; per call = (invoke time for ``n`` minus the
   same invoke with ``n = 0``) / ``n``. numpy's ``np.add(a, a)`` in a Python
   loop is shown for context.
4. ``mlp``         -- a WAT guest computing ``linear(gelu(linear(x, w1, b1)),
   w2, b2)`` with bound weights, invoked end to end (fresh instance per call),
   against the same math in numpy. ``examples/guests/mlp.wasm`` is timed the
   same way when it exists.

Run from the repository root::

    python -m bench.kernels                  # full run (under 3 min on 2 cores)
    python -m bench.kernels --quick          # smoke run (a few seconds)
    python -m bench.kernels --json out.json  # also write machine-readable results

Targets are informational: the exit status is 1 only for errors, or for a
missed target with ``--check``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

try:
    from bench._common import (
        BenchResult,
        Series,
        Stats,
        Target,
        add_output_options,
        environment_info,
        finish,
        format_duration,
        format_table,
        import_package,
        interleaved_rounds,
        non_negative_int,
        positive_int,
        progress,
        safe_ratio,
        timer_overhead_ns,
    )
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from _common import (  # type: ignore[no-redef, import-not-found, unused-ignore]
        BenchResult,
        Series,
        Stats,
        Target,
        add_output_options,
        environment_info,
        finish,
        format_duration,
        format_table,
        import_package,
        interleaved_rounds,
        non_negative_int,
        positive_int,
        progress,
        safe_ratio,
        timer_overhead_ns,
    )

PACKAGE = "tensorwasm_tc"
PEER_NAME = "numpy"
BENCHMARKS = ("sgemm", "elementwise", "abi", "mlp")

F32Array = npt.NDArray[np.float32]
Log = Callable[[str], None]

REPO_ROOT = Path(__file__).resolve().parent.parent
MLP_WASM = REPO_ROOT / "examples" / "guests" / "mlp.wasm"

LAYERNORM_EPS = 1e-5
# sgemm rounds repeat a product until it has done about this many FLOPs
# (2 * 2048^3), so that small sizes are not timed on one short call.
# OpenBLAS worker threads busy-wait for a while after each call; a pause
# before each contender's block keeps them from running against the next one.
SETTLE_S = 0.25
SGEMM_ROUND_FLOPS = 2 * 2048**3
SGEMM_MAX_ITERATIONS = 64
# abi and mlp rounds: each contender makes one untimed call, then this many
# timed ones: the first invoke after other work was measured a few hundred us
# slower (cold caches, deferred clean-up), enough to swamp the per-op figure.
CALLS_PER_ROUND = 3
# Warn when other processes kept at least this many CPUs busy during the run.
OTHER_LOAD_WARN_CPUS = 0.2
# Agreement checks against numpy (done once per benchmark, untimed).
RTOL = 1e-3

# --------------------------------------------------------------------------
# Guests
# --------------------------------------------------------------------------

_IMPORTS = """\
  (import "tensorwasm" "tensor_input" (func $input (param i32 i32) (result i32)))
  (import "tensorwasm" "tensor_bound" (func $bound (param i32 i32) (result i32)))
  (import "tensorwasm" "op" (func $op (param i32 i32 i32 i32) (result i32)))
  (import "tensorwasm" "output_set" (func $output (param i32 i32 i32) (result i32)))
  (import "tensorwasm" "tensor_drop" (func $drop (param i32) (result i32)))
  (memory (export "memory") 1)
"""

# loop(n): n times { h = op("add", a, a); tensor_drop(h) }. Returns n, or the
# first negative ABI code. argv at 64: [0x08, a][0x08, a] (10 bytes).
ABI_WAT = f"""\
(module
{_IMPORTS}\
  (data (i32.const 0) "a")
  (data (i32.const 8) "add")
  (func (export "loop") (param $n i32) (result i32)
    (local $a i32) (local $h i32) (local $i i32) (local $rc i32)
    (local.set $a (call $input (i32.const 0) (i32.const 1)))
    (if (i32.lt_s (local.get $a) (i32.const 0)) (then (return (local.get $a))))
    (i32.store8 (i32.const 64) (i32.const 8))
    (i32.store align=1 (i32.const 65) (local.get $a))
    (i32.store8 (i32.const 69) (i32.const 8))
    (i32.store align=1 (i32.const 70) (local.get $a))
    (block $done
      (loop $top
        (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
        (local.set $h (call $op (i32.const 8) (i32.const 3) (i32.const 64) (i32.const 10)))
        (if (i32.lt_s (local.get $h) (i32.const 0)) (then (return (local.get $h))))
        (local.set $rc (call $drop (local.get $h)))
        (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $top)))
    (local.get $i)))
"""


def _checked(local: str, expr: str) -> str:
    """Set ``local`` to ``expr`` and return it from the export when negative."""
    return (
        f"    (local.set {local} {expr})\n"
        f"    (if (i32.lt_s (local.get {local}) (i32.const 0)) "
        f"(then (return (local.get {local}))))\n"
    )


# run(): y = linear(gelu(linear(x, w1, b1)), w2, b2), the exact (erf) gelu.
# Returns 0, or the first negative ABI code. argv is built at 256.
MLP_WAT = (
    f"""\
(module
{_IMPORTS}\
  (data (i32.const 0) "x")
  (data (i32.const 16) "weights/w1")
  (data (i32.const 32) "weights/b1")
  (data (i32.const 48) "weights/w2")
  (data (i32.const 64) "weights/b2")
  (data (i32.const 80) "linear")
  (data (i32.const 96) "gelu")
  (data (i32.const 112) "y")
  (func $tensor_arg (param $at i32) (param $h i32)
    (i32.store8 (local.get $at) (i32.const 8))
    (i32.store offset=1 align=1 (local.get $at) (local.get $h)))
  (func $linear (param $x i32) (param $w i32) (param $b i32) (result i32)
    (call $tensor_arg (i32.const 256) (local.get $x))
    (call $tensor_arg (i32.const 261) (local.get $w))
    (call $tensor_arg (i32.const 266) (local.get $b))
    (call $op (i32.const 80) (i32.const 6) (i32.const 256) (i32.const 15)))
  (func $gelu (param $h i32) (result i32)
    (call $tensor_arg (i32.const 256) (local.get $h))
    (i32.store8 (i32.const 261) (i32.const 1))
    (i32.store align=1 (i32.const 262) (i32.const 0))
    (call $op (i32.const 96) (i32.const 4) (i32.const 256) (i32.const 10)))
  (func (export "run") (result i32)
    (local $x i32) (local $w1 i32) (local $b1 i32) (local $w2 i32) (local $b2 i32)
    (local $h i32) (local $g i32) (local $y i32) (local $rc i32)
"""
    + _checked("$w1", "(call $bound (i32.const 16) (i32.const 10))")
    + _checked("$b1", "(call $bound (i32.const 32) (i32.const 10))")
    + _checked("$w2", "(call $bound (i32.const 48) (i32.const 10))")
    + _checked("$b2", "(call $bound (i32.const 64) (i32.const 10))")
    + _checked("$x", "(call $input (i32.const 0) (i32.const 1))")
    + _checked("$h", "(call $linear (local.get $x) (local.get $w1) (local.get $b1))")
    + _checked("$g", "(call $gelu (local.get $h))")
    + _checked("$rc", "(call $drop (local.get $h))")
    + _checked("$y", "(call $linear (local.get $g) (local.get $w2) (local.get $b2))")
    + _checked("$rc", "(call $drop (local.get $g))")
    + _checked("$rc", "(call $output (i32.const 112) (i32.const 1) (local.get $y))")
    + "    (i32.const 0)))\n"
)


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    sgemm_sizes: tuple[int, ...]
    elem_n: int
    rows: int
    cols: int
    abi_n: int
    mlp_batch: int
    mlp_in: int
    mlp_hidden: int
    mlp_out: int
    repeat: int
    abi_repeat: int
    mlp_repeat: int
    warmup: int
    seed: int
    quick: bool
    benchmarks: tuple[str, ...]


# (full run, --quick); explicit flags override either.
DEFAULTS: dict[str, tuple[int, int]] = {
    "elem_n": (16 << 20, 1 << 20),
    "rows": (4096, 512),
    "cols": (4096, 512),
    "abi_n": (100_000, 10_000),
    "repeat": (7, 3),
    "abi_repeat": (9, 3),
    "mlp_repeat": (15, 3),
    "warmup": (2, 1),
}
SGEMM_SIZES: tuple[tuple[int, ...], tuple[int, ...]] = ((512, 1024, 2048), (128, 256))
# batch, in, hidden, out
MLP_DIMS: tuple[tuple[int, int, int, int], tuple[int, int, int, int]] = (
    (32, 1024, 4096, 1024),
    (8, 256, 1024, 256),
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _randn(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> F32Array:
    out: F32Array = rng.standard_normal(shape, dtype=np.float32)
    if scale != 1.0:
        out *= np.float32(scale)
    return out


def _as_array(tensor: Any) -> F32Array:
    out: F32Array = np.asarray(np.from_dlpack(tensor), dtype=np.float32)
    return out


def _check_close(name: str, got: Any, want: F32Array, rtol: float = RTOL) -> float:
    """Raise unless ``got`` matches ``want``; return ``max|got - want| / max|want|``.

    Each entry must be within ``rtol * |want| + rtol * 1e-2 * max|want|``: the
    absolute floor keeps entries near zero (where summation order dominates)
    from failing a purely relative test.
    """
    arr = _as_array(got)
    if arr.shape != want.shape:
        raise RuntimeError(f"{name}: shape {arr.shape} != numpy's {want.shape}")
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    atol = rtol * 1e-2 * scale
    diff = np.abs(arr.astype(np.float64) - want.astype(np.float64))
    bound = atol + rtol * np.abs(want.astype(np.float64))
    if not bool(np.all(diff <= bound)):
        worst = int(np.argmax(diff - bound))
        raise RuntimeError(
            f"{name}: disagrees with numpy (rtol {rtol}): max |diff| {float(diff.max()):.3g} "
            f"at flat index {worst} (ours {arr.flat[worst]!r}, numpy {want.flat[worst]!r})"
        )
    return float(diff.max()) / scale if scale > 0 else float(diff.max())


def _prewarm(contenders: dict[str, Callable[[], object]], warmup: int) -> None:
    for _ in range(warmup):
        for fn in contenders.values():
            fn()


def _round_logger(log: Log, label: str, rounds: int, detail: str = "") -> Callable[[int], None]:
    """An ``on_round`` callback logging ``label: round i/rounds (detail)``."""
    suffix = f" ({detail})" if detail else ""
    return lambda r: log(f"{label}: round {r + 1}/{rounds}{suffix}")


def _spread(series: dict[str, Series]) -> dict[str, dict[str, float]]:
    return {name: s.spread() for name, s in series.items()}


def blas_summary() -> str:
    """numpy's BLAS in one line (name, version, OpenBLAS config when known)."""
    try:
        config: Any = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
    except Exception:  # numpy < 1.25 or an unexpected layout
        return "unknown (np.show_config(mode='dicts') unavailable)"
    parts = [str(blas.get("name", "?")), str(blas.get("version", ""))]
    extra = blas.get("openblas configuration")
    if extra:
        parts.append(f"({' '.join(str(extra).split())})")
    return " ".join(p for p in parts if p)


def thread_env() -> str:
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")
    set_ = [f"{k}={os.environ[k]}" for k in keys if k in os.environ]
    return ", ".join(set_) if set_ else "none of OMP/OPENBLAS/MKL/RAYON_NUM_THREADS set"


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


@dataclasses.dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide busy CPU seconds (``/proc/stat``), this process's CPU
    seconds (all threads) and the wall clock, taken together."""

    machine_busy_s: float
    own_s: float
    wall_s: float

    @classmethod
    def take(cls) -> CpuSnapshot | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = f.readline().split()
            ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            hz = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
        if fields[0] != "cpu" or len(ticks) < 8 or hz <= 0:
            return None
        busy = sum(ticks) - ticks[3] - ticks[4]
        t = os.times()
        return cls(busy / hz, t.user + t.system, time.perf_counter())


def other_cpu_load(before: CpuSnapshot | None, after: CpuSnapshot | None) -> float | None:
    """CPUs kept busy on average by everything but this process between two snapshots."""
    if before is None or after is None or after.wall_s <= before.wall_s:
        return None
    other = (after.machine_busy_s - before.machine_busy_s) - (after.own_s - before.own_s)
    return max(0.0, other) / (after.wall_s - before.wall_s)


def erf_as(x: F32Array) -> F32Array:
    """``erf(x)`` in numpy alone: Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7."""
    ax = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * ax)
    poly = t * np.float32(1.061405429) + np.float32(-1.453152027)
    poly = poly * t + np.float32(1.421413741)
    poly = poly * t + np.float32(-0.284496736)
    poly = poly * t + np.float32(0.254829592)
    poly *= t
    out: F32Array = np.copysign(np.float32(1.0) - poly * np.exp(-ax * ax), x)
    return out


def pick_erf() -> tuple[Callable[[F32Array], F32Array], str]:
    """scipy's ``erf`` when importable, else :func:`erf_as`; and a description."""
    try:
        from scipy.special import erf  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return erf_as, "a numpy erf (Abramowitz-Stegun 7.1.26, |err| <= 1.5e-7; no scipy)"
    return erf, "scipy.special.erf"


# --------------------------------------------------------------------------
# 1. sgemm
# --------------------------------------------------------------------------


def bench_sgemm(cfg: Settings, ours: ModuleType, log: Log) -> list[BenchResult]:
    rng = np.random.default_rng(cfg.seed)
    results = []
    for n in cfg.sgemm_sizes:
        a = _randn(rng, (n, n))
        b = _randn(rng, (n, n))
        flops = 2.0 * n**3
        _check_close(f"matmul {n}", ours.ops.matmul(a, b), a @ b)
        iterations = max(1, min(SGEMM_MAX_ITERATIONS, round(SGEMM_ROUND_FLOPS / flops)))
        contenders: dict[str, Callable[[], object]] = {
            "ours": functools.partial(ours.ops.matmul, a, b),
            "peer": functools.partial(np.matmul, a, b),
        }
        _prewarm(contenders, cfg.warmup)
        series = interleaved_rounds(
            contenders,
            cfg.repeat,
            iterations=iterations,
            settle_s=SETTLE_S,
            on_round=_round_logger(log, f"sgemm {n}^3", cfg.repeat, f"{iterations} calls x 2"),
        )
        o, p = series["ours"].stats(), series["peer"].stats()
        ours_gf = safe_ratio(flops, o.median)
        peer_gf = safe_ratio(flops, p.median)
        results.append(
            BenchResult(
                name=f"sgemm f32 {n}^3",
                unit="GFLOP/s",
                ours=None if ours_gf is None else ours_gf * 1e-9,
                peer=None if peer_gf is None else peer_gf * 1e-9,
                ratio=safe_ratio(ours_gf, peer_gf),
                ratio_def="ours/peer",
                targets=[Target("ratio", ">=", 0.8, "ratio >= 0.8")],
                ours_stats=o,
                peer_stats=p,
                extra={
                    "n": n,
                    "flops": flops,
                    "stats_unit": "seconds per call",
                    "calls_per_round": iterations,
                    "spread_s": _spread(series),
                },
            )
        )
    results[-1].note = "ours ops.matmul(a, b) vs numpy a @ b; GFLOP/s = 2n^3 / median time"
    return results


# --------------------------------------------------------------------------
# 2. elementwise and row-wise kernels
# --------------------------------------------------------------------------


def np_softmax(x: F32Array) -> F32Array:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    out: F32Array = e / e.sum(axis=-1, keepdims=True)
    return out


def np_layernorm(x: F32Array, eps: float = LAYERNORM_EPS) -> F32Array:
    m = x.mean(axis=-1, keepdims=True)
    v = x.var(axis=-1, keepdims=True)
    out: F32Array = (x - m) / np.sqrt(v + np.float32(eps))
    return out


def _time_pair(
    name: str,
    ours_fn: Callable[[], object],
    peer_fn: Callable[[], object],
    cfg: Settings,
    log: Log,
    note: str,
    extra: dict[str, Any],
) -> BenchResult:
    contenders: dict[str, Callable[[], object]] = {"ours": ours_fn, "peer": peer_fn}
    _prewarm(contenders, cfg.warmup)
    series = interleaved_rounds(
        contenders,
        cfg.repeat,
        settle_s=SETTLE_S,
        on_round=_round_logger(log, name, cfg.repeat),
    )
    o, p = series["ours"].stats(), series["peer"].stats()
    return BenchResult(
        name=name,
        unit="s",
        ours=o.median,
        peer=p.median,
        ratio=safe_ratio(p.median, o.median),
        ratio_def="peer/ours",
        targets=[Target("ratio", ">=", 0.9, "ratio >= 0.9")],
        ours_stats=o,
        peer_stats=p,
        note=note,
        extra={**extra, "spread_s": _spread(series)},
    )


def bench_elementwise(cfg: Settings, ours: ModuleType, log: Log) -> list[BenchResult]:
    rng = np.random.default_rng(cfg.seed + 1)
    ops = ours.ops
    results = []

    a = _randn(rng, (cfg.elem_n,))
    b = _randn(rng, (cfg.elem_n,))
    label = f"{cfg.elem_n / (1 << 20):g}M" if cfg.elem_n % (1 << 20) == 0 else str(cfg.elem_n)
    for op_name, ours_op, peer_op in (
        ("add", ops.add, np.add),
        ("mul", ops.mul, np.multiply),
    ):
        _check_close(op_name, ours_op(a, b), peer_op(a, b), rtol=1e-6)
        results.append(
            _time_pair(
                f"{op_name} f32 {label}",
                functools.partial(ours_op, a, b),
                functools.partial(peer_op, a, b),
                cfg,
                log,
                note="",
                extra={"elements": cfg.elem_n, "bytes_moved": 3 * 4 * cfg.elem_n},
            )
        )
    results[-1].note = (
        f"ops.add/mul vs np.add/np.multiply; both allocate (and free) a fresh "
        f"{format_bytes(4 * cfg.elem_n)} output per call"
    )

    x = _randn(rng, (cfg.rows, cfg.cols))
    shape = f"{cfg.rows}x{cfg.cols}"
    _check_close("softmax", ops.softmax(x, axis=-1), np_softmax(x))
    results.append(
        _time_pair(
            f"softmax rows f32 {shape}",
            functools.partial(ops.softmax, x, axis=-1),
            functools.partial(np_softmax, x),
            cfg,
            log,
            note="numpy: e = exp(x - max); e / sum(e), over the last axis",
            extra={"shape": [cfg.rows, cfg.cols]},
        )
    )
    _check_close("layernorm", ops.layernorm(x, eps=LAYERNORM_EPS), np_layernorm(x))
    results.append(
        _time_pair(
            f"layernorm rows f32 {shape}",
            functools.partial(ops.layernorm, x, eps=LAYERNORM_EPS),
            functools.partial(np_layernorm, x),
            cfg,
            log,
            note=(
                f"no gamma/beta, eps {LAYERNORM_EPS:g}; numpy: (x - mean) / sqrt(var + eps) "
                "over the last axis"
            ),
            extra={"shape": [cfg.rows, cfg.cols], "eps": LAYERNORM_EPS},
        )
    )
    return results


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"


# --------------------------------------------------------------------------
# 3. guest ABI overhead
# --------------------------------------------------------------------------


def bench_abi(cfg: Settings, ours: ModuleType, log: Log) -> list[BenchResult]:
    n = cfg.abi_n
    a = np.arange(1, 5, dtype=np.float32)
    fn = ours.Runtime(cache_dir=False).load(ABI_WAT)
    inputs = {"a": a}
    for count in (0, 3, n):  # correctness and warm-up
        got = list(fn.invoke("loop", [count], inputs=inputs).values)
        if got != [count]:
            raise RuntimeError(f"guest loop({count}) returned {got!r} (negative: an ABI code)")

    def numpy_loop(count: int = n, add: Any = np.add) -> None:
        for _ in range(count):
            add(a, a)

    contenders: dict[str, Callable[[], object]] = {
        "loop_n": functools.partial(fn.invoke, "loop", [n], inputs=inputs),
        "loop_0": functools.partial(fn.invoke, "loop", [0], inputs=inputs),
        "peer": numpy_loop,
    }
    _prewarm(contenders, cfg.warmup)
    overhead_ns = timer_overhead_ns()
    series = interleaved_rounds(
        contenders,
        cfg.abi_repeat,
        settle_s=SETTLE_S,
        iterations=CALLS_PER_ROUND,
        warmup=1,
        overhead_ns=overhead_ns,
        on_round=_round_logger(
            log, "abi", cfg.abi_repeat, f"1 + {CALLS_PER_ROUND} calls of loop({n}), loop(0), numpy"
        ),
    )
    full, empty, peer = (series[k].stats() for k in ("loop_n", "loop_0", "peer"))
    per_op = max(0.0, full.median - empty.median) / n
    per_round = [
        max(0.0, f - e) / n
        for f, e in zip(series["loop_n"].round_medians, series["loop_0"].round_medians, strict=True)
    ]
    peer_per_call = peer.median / n
    return [
        BenchResult(
            name="abi: op('add') + tensor_drop per call",
            unit="s",
            ours=per_op,
            peer=peer_per_call,
            ratio=safe_ratio(peer_per_call, per_op),
            ratio_def="peer/ours",
            targets=[Target("ours", "<", 2e-6, "ours < 2 us")],
            ours_stats=Stats.of(per_round),
            peer_stats=Stats.of([s / n for s in series["peer"].samples]),
            note=(
                f"ours: (invoke loop({n}) - invoke loop(0)) / {n}, 4-element f32 input; "
                f"invoke of loop(0) alone {format_duration(empty.median)}; peer (context only): "
                "np.add(a, a) on 4 elements in a Python loop"
            ),
            extra={
                "n": n,
                "invoke_loop_n_s": full.median,
                "invoke_loop_0_s": empty.median,
                "ours_stats_are": "per-round estimates (seconds per op call)",
                "timer_overhead_ns_subtracted": overhead_ns,
                "spread_s": _spread(series),
            },
        )
    ]


# --------------------------------------------------------------------------
# 4. mlp end to end
# --------------------------------------------------------------------------


def bench_mlp(cfg: Settings, ours: ModuleType, log: Log) -> list[BenchResult]:
    rng = np.random.default_rng(cfg.seed + 2)
    batch, d_in, d_hidden, d_out = cfg.mlp_batch, cfg.mlp_in, cfg.mlp_hidden, cfg.mlp_out
    x = _randn(rng, (batch, d_in))
    w1 = _randn(rng, (d_hidden, d_in), 1.0 / math.sqrt(d_in))
    b1 = _randn(rng, (d_hidden,), 0.1)
    w2 = _randn(rng, (d_out, d_hidden), 1.0 / math.sqrt(d_hidden))
    b2 = _randn(rng, (d_out,), 0.1)
    weights = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    erf, erf_source = pick_erf()
    inv_sqrt2 = np.float32(1.0 / math.sqrt(2.0))

    def numpy_mlp() -> F32Array:
        h = x @ w1.T + b1
        g = np.float32(0.5) * h * (np.float32(1.0) + erf(h * inv_sqrt2))
        y: F32Array = g @ w2.T + b2
        return y

    want = numpy_mlp()
    inputs = {"x": x}
    guests: dict[str, Any] = {}
    guests["wat"] = ours.Runtime(cache_dir=False).load(MLP_WAT, bindings={"weights": weights})
    if MLP_WASM.is_file():
        guests["mlp.wasm"] = ours.Runtime(cache_dir=False).load(
            MLP_WASM, bindings={"weights": weights}
        )

    def invoke(fn: Any) -> Any:
        res = fn.invoke("run", inputs=inputs)
        return res

    errors: dict[str, float] = {}
    for label, fn in guests.items():
        res = invoke(fn)
        if list(res.values) != [0]:
            stderr = res.stderr.strip()
            raise RuntimeError(f"{label}: run returned {res.values!r} {stderr}".rstrip())
        errors[label] = _check_close(f"mlp ({label})", res.outputs["y"], want)

    contenders: dict[str, Callable[[], object]] = {
        label: functools.partial(invoke, fn) for label, fn in guests.items()
    }
    contenders["peer"] = numpy_mlp
    _prewarm(contenders, cfg.warmup)
    series = interleaved_rounds(
        contenders,
        cfg.mlp_repeat,
        settle_s=SETTLE_S,
        iterations=CALLS_PER_ROUND,
        warmup=1,
        on_round=_round_logger(
            log, "mlp", cfg.mlp_repeat, f"1 + {CALLS_PER_ROUND} calls x {len(contenders)}"
        ),
    )
    p = series["peer"].stats()
    dims = f"[{batch},{d_in}] -> {d_hidden} -> {d_out}"
    flops = 2.0 * batch * d_hidden * (d_in + d_out)
    results = []
    for label in guests:
        o = series[label].stats()
        results.append(
            BenchResult(
                name=f"mlp {dims} ({'WAT guest' if label == 'wat' else label})",
                unit="s",
                ours=o.median,
                peer=p.median,
                ratio=safe_ratio(p.median, o.median),
                ratio_def="peer/ours",
                targets=[Target("ratio", ">=", 0.8, "ratio >= 0.8")],
                ours_stats=o,
                peer_stats=p,
                extra={
                    "dims": [batch, d_in, d_hidden, d_out],
                    "flops": flops,
                    "max_abs_err_over_max_abs_numpy": errors[label],
                    "calls_per_round": CALLS_PER_ROUND,
                    "spread_s": _spread({label: series[label], "peer": series["peer"]}),
                },
            )
        )
    results[0].note = (
        "ours: Function.invoke('run', inputs={'x': x}) on a fresh instance, weights bound "
        f"at load; numpy: x @ w1.T + b1, exact gelu via {erf_source}, @ w2.T + b2; outputs "
        f"agree within rtol {RTOL:g}"
    )
    if "mlp.wasm" not in guests:
        results[0].note += f"; {MLP_WASM.relative_to(REPO_ROOT)} absent: not timed"
    return results


BENCH_FUNCS: dict[str, Callable[[Settings, ModuleType, Log], list[BenchResult]]] = {
    "sgemm": bench_sgemm,
    "elementwise": bench_elementwise,
    "abi": bench_abi,
    "mlp": bench_mlp,
}

_FAILED_ROW = {
    "sgemm": "sgemm",
    "elementwise": "elementwise",
    "abi": "abi: op('add') + tensor_drop per call",
    "mlp": "mlp",
}


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _size_list(text: str) -> tuple[int, ...]:
    return tuple(positive_int(part) for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    def dflt(key: str) -> str:
        full, quick = DEFAULTS[key]
        return f"(default {full}; {quick} with --quick)"

    parser = argparse.ArgumentParser(
        prog="python -m bench.kernels",
        description=(
            "Benchmark tensorwasm_tc kernels against numpy: sgemm, elementwise and "
            "row-wise ops, the guest op-call overhead and an MLP guest end to end."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-run sizes (a few seconds); targets are not meaningful",
    )
    parser.add_argument(
        "--sgemm-sizes",
        type=_size_list,
        metavar="N,N,...",
        help=(
            f"square sgemm sizes (default {','.join(map(str, SGEMM_SIZES[0]))}; "
            f"{','.join(map(str, SGEMM_SIZES[1]))} with --quick)"
        ),
    )
    parser.add_argument(
        "--elem-n",
        type=positive_int,
        help=f"elements of the add/mul operands, e.g. 16e6 {dflt('elem_n')}",
    )
    parser.add_argument("--rows", type=positive_int, help=f"softmax/layernorm rows {dflt('rows')}")
    parser.add_argument("--cols", type=positive_int, help=f"softmax/layernorm cols {dflt('cols')}")
    parser.add_argument(
        "--abi-n", type=positive_int, help=f"op calls per guest invoke {dflt('abi_n')}"
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        help=f"timed rounds per sgemm/elementwise contender {dflt('repeat')}",
    )
    parser.add_argument(
        "--abi-repeat",
        type=positive_int,
        help=f"timed rounds of the abi benchmark {dflt('abi_repeat')}",
    )
    parser.add_argument(
        "--mlp-repeat",
        type=positive_int,
        help=f"timed rounds of the mlp benchmark {dflt('mlp_repeat')}",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        help=f"untimed calls of every contender before timing {dflt('warmup')}",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed for the inputs (default 0)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        help="run only this benchmark (repeatable; default: all)",
    )
    add_output_options(parser)
    return parser


def resolve_settings(args: argparse.Namespace) -> Settings:
    pick = 1 if args.quick else 0

    def value(key: str) -> int:
        given = getattr(args, key)
        return int(given) if given is not None else DEFAULTS[key][pick]

    batch, d_in, d_hidden, d_out = MLP_DIMS[pick]
    return Settings(
        sgemm_sizes=tuple(args.sgemm_sizes) if args.sgemm_sizes else SGEMM_SIZES[pick],
        elem_n=value("elem_n"),
        rows=value("rows"),
        cols=value("cols"),
        abi_n=value("abi_n"),
        mlp_batch=batch,
        mlp_in=d_in,
        mlp_hidden=d_hidden,
        mlp_out=d_out,
        repeat=value("repeat"),
        abi_repeat=value("abi_repeat"),
        mlp_repeat=value("mlp_repeat"),
        warmup=value("warmup"),
        seed=int(args.seed),
        quick=bool(args.quick),
        benchmarks=tuple(b for b in BENCHMARKS if not args.only or b in args.only),
    )


def _format_load(load: tuple[float, float, float] | None) -> str:
    return "n/a" if load is None else " ".join(f"{v:.2f}" for v in load)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    log = progress(args.quiet)

    ours = import_package(PACKAGE)
    if ours is None:
        return 2

    cfg = resolve_settings(args)
    env = environment_info(PACKAGE)
    env["peer"] = PEER_NAME
    env["peer_version"] = np.__version__
    env["numpy_blas"] = blas_summary()
    env["thread_env"] = thread_env()
    load_before = load_average()
    cpu_before = CpuSnapshot.take()
    log(
        f"{PACKAGE} {env['package_version'] or '?'} vs numpy {np.__version__}; "
        f"python {env['python_version']}, {env['cpu_count_usable']} usable CPUs, "
        f"load average {_format_load(load_before)}"
    )

    results: list[BenchResult] = []
    for name in cfg.benchmarks:
        try:
            results.extend(BENCH_FUNCS[name](cfg, ours, log))
        except Exception as exc:  # report and go on with the other benchmarks
            results.append(
                BenchResult(name=_FAILED_ROW[name], unit="s", error=f"{type(exc).__name__}: {exc}")
            )
    load_after = load_average()
    others = other_cpu_load(cpu_before, CpuSnapshot.take())
    env["load_average_before"] = load_before
    env["load_average_after"] = load_after
    env["other_processes_cpus_busy"] = others

    title = f"tensorwasm_tc kernels vs numpy {np.__version__}"
    if cfg.quick:
        title += " [quick]"
    print(title)
    print(f"  numpy BLAS: {env['numpy_blas']}")
    print(f"  threads: {env['cpu_count_usable']} usable CPUs; {env['thread_env']}")
    print(
        f"  load average (1/5/15 min): {_format_load(load_before)} before, "
        f"{_format_load(load_after)} after"
    )
    if others is not None:
        print(f"  other processes kept {others:.2f} CPUs busy on average during the run")
        if others >= OTHER_LOAD_WARN_CPUS:
            print("  (the machine was shared: figures are pessimistic and noisy)")
    print()
    print(format_table(results, peer_name=PEER_NAME))
    footers = ["--quick: sizes are too small for the targets to mean anything"] if cfg.quick else []
    return finish(
        results,
        benchmark="kernels",
        json_path=args.json,
        environment=env,
        settings=dataclasses.asdict(cfg),
        check=args.check,
        log=log,
        footers=footers,
    )


if __name__ == "__main__":
    sys.exit(main())
