"""Executor benchmarks: ``tensorwasm_tc`` against wasmtime-py.

Three benchmarks run in one invocation:

1. ``invoke``  -- instantiate + call of a trivial export, per call. Ours:
   ``Function.invoke`` (a fresh instance per call). Peer: a new
   ``wasmtime.Store`` + ``wasmtime.Instance`` + call per iteration, the engine
   and module made once. Also, as extra information, repeated calls into one
   persistent instance on both sides.
2. ``compute`` -- a tight integer loop of ~1e8 operations (xorshift32 plus an
   add). Our runtime compiles with epoch interruption on; wasmtime-py's
   default engine has none, which is the point of the comparison. A peer run
   with epoch interruption enabled is reported as extra information.
3. ``cache``   -- load time of a large module in fresh subprocesses: first
   with an empty on-disk cache (cold compile), then with the same cache dir
   (warm). wasmtime-py's compile and ``Module.deserialize`` times are shown
   for context.

Run from the repository root::

    python -m bench.executor                  # full run (well under 2 min)
    python -m bench.executor --quick          # CI smoke run (a few seconds)
    python -m bench.executor --json out.json  # also write machine-readable results

wasmtime-py (``pip install wasmtime``) is optional: without it the peer
columns read ``n/a`` and only our side runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

try:
    from bench._common import (
        BenchResult,
        Stats,
        Target,
        add_output_options,
        distribution_version,
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
        time_call,
        timer_overhead_ns,
    )
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from _common import (  # type: ignore[no-redef, import-not-found, unused-ignore]
        BenchResult,
        Stats,
        Target,
        add_output_options,
        distribution_version,
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
        time_call,
        timer_overhead_ns,
    )

PACKAGE = "tensorwasm_tc"
PEER_NAME = "wasmtime-py"
BENCHMARKS = ("invoke", "compute", "cache")

# Runtime limits used for every Runtime the benchmark creates.
MAX_MEMORY_BYTES = 256 << 20
DEADLINE_MS = 30_000

U32 = 0xFFFF_FFFF

ADD_WAT = """\
(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add))
"""

# One loop iteration is SPIN_OPS_PER_ITER integer ops: xorshift32 (3 shifts,
# 3 xors), the accumulator add, the counter decrement and its zero test
# (the two branches are not counted).
SPIN_OPS_PER_ITER = 9
SPIN_SEED = 0x2545F491
SPIN_WAT = f"""\
(module
  (func (export "spin") (param $n i32) (result i32)
    (local $x i32) (local $acc i32)
    (local.set $x (i32.const {SPIN_SEED:#x}))
    (block $done
      (loop $top
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
        (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
        (local.set $acc (i32.add (local.get $acc) (local.get $x)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $top)))
    (i32.xor (local.get $acc) (local.get $x))))
"""

_BIG_OPS = ("i32.add", "i32.mul", "i32.xor", "i32.sub", "i32.rotl", "i32.or")
BIG_STEPS_PER_FUNC = 8  # 6 instructions per step: ~50 instructions a function


def spin_reference(n: int) -> int:
    """What ``spin(n)`` returns, as an unsigned 32-bit value (slow: small n only)."""
    x, acc = SPIN_SEED, 0
    for _ in range(n):
        x ^= (x << 13) & U32
        x ^= x >> 17
        x ^= (x << 5) & U32
        acc = (acc + x) & U32
    return acc ^ x


def big_module_wat(n_funcs: int, steps: int = BIG_STEPS_PER_FUNC) -> str:
    """A module of ``n_funcs`` exported ``(i32, i32) -> i32`` arithmetic functions.

    Constants and operators vary per function so no two bodies are identical.
    """
    lines = ["(module"]
    for i in range(n_funcs):
        body = []
        for j in range(steps):
            k = (i * 131 + j * 17) % 97 + 3
            op = _BIG_OPS[(i + j) % len(_BIG_OPS)]
            a, b = j % 2, (j + 1) % 2
            body.append(f"local.get {a} i32.const {k} {op} local.get {b} i32.add local.set {a}")
        lines.append(
            f'  (func $f{i} (export "f{i}") (param i32 i32) (result i32)\n    '
            + "\n    ".join(body)
            + "\n    local.get 0 local.get 1 i32.xor)"
        )
    lines.append(")")
    return "\n".join(lines) + "\n"


# Child process for the cache benchmark: times only ``rt.load``.
_CACHE_CHILD = """\
import json, sys, time
from pathlib import Path
from tensorwasm_tc import Runtime

path, cache_dir, fmt, max_mem, deadline = sys.argv[1:6]
data = Path(path).read_bytes()
module = data if fmt == "wasm" else data.decode("utf-8")
rt = Runtime(max_memory_bytes=int(max_mem), deadline_ms=int(deadline),
             cache_dir=cache_dir)
t0 = time.perf_counter_ns()
fn = rt.load(module)
t1 = time.perf_counter_ns()
f0 = [int(v) for v in fn.invoke("f0", [3, 4]).values]
print(json.dumps({"load_s": (t1 - t0) * 1e-9, "id": fn.id, "f0": f0}))
"""


@dataclasses.dataclass(frozen=True)
class Settings:
    iterations: int
    repeat: int
    compute_repeat: int
    warmup: int
    spin_ops: int
    cache_funcs: int
    child_timeout_s: float
    quick: bool
    benchmarks: tuple[str, ...]
    peer: bool

    @property
    def spin_n(self) -> int:
        return max(1, self.spin_ops // SPIN_OPS_PER_ITER)


Log = Callable[[str], None]


@dataclasses.dataclass
class Modules:
    """Wasm inputs: binary when wasmtime-py can assemble WAT, else WAT text."""

    add: bytes | str
    spin: bytes | str


def _assemble(wasmtime: ModuleType | None, wat: str) -> bytes | str:
    return bytes(wasmtime.wat2wasm(wat)) if wasmtime is not None else wat


def _new_runtime(ours: ModuleType, cache_dir: str | os.PathLike[str]) -> Any:
    return ours.Runtime(
        max_memory_bytes=MAX_MEMORY_BYTES,
        deadline_ms=DEADLINE_MS,
        cache_dir=str(cache_dir),
    )


# --------------------------------------------------------------------------
# 1. instantiate + call of a trivial export
# --------------------------------------------------------------------------


def bench_invoke(
    cfg: Settings,
    ours: ModuleType,
    wasmtime: ModuleType | None,
    mods: Modules,
    workdir: Path,
    log: Log,
) -> list[BenchResult]:
    rt = _new_runtime(ours, workdir / "invoke-cache")
    fn = rt.load(mods.add)
    got = list(fn.invoke("add", [2, 3]).values)
    if got != [5]:
        raise RuntimeError(f"ours: add(2, 3) returned {got!r}, expected [5]")

    inst = fn.instantiate()
    try:
        got = list(inst.invoke("add", [2, 3]).values)
        if got != [5]:
            raise RuntimeError(f"ours: inst.invoke add(2, 3) returned {got!r}")
        contenders: dict[str, Callable[[], object]] = {
            # Function.invoke makes a fresh instance on every call.
            "ours_fresh": functools.partial(fn.invoke, "add", [2, 3]),
            "ours_warm": functools.partial(inst.invoke, "add", [2, 3]),
        }
        if wasmtime is not None:
            engine = wasmtime.Engine()
            module = wasmtime.Module(engine, mods.add)

            def peer_fresh() -> Any:
                store = wasmtime.Store(engine)
                instance = wasmtime.Instance(store, module, [])
                return instance.exports(store)["add"](store, 2, 3)

            store = wasmtime.Store(engine)
            add = wasmtime.Instance(store, module, []).exports(store)["add"]
            if peer_fresh() != 5 or add(store, 2, 3) != 5:
                raise RuntimeError("wasmtime-py: add(2, 3) != 5")
            contenders["peer_fresh"] = peer_fresh
            contenders["peer_warm"] = functools.partial(add, store, 2, 3)

        overhead_ns = timer_overhead_ns()
        series = interleaved_rounds(
            contenders,
            cfg.repeat,
            iterations=cfg.iterations,
            warmup=cfg.warmup,
            overhead_ns=overhead_ns,
            on_round=lambda r: log(
                f"invoke: round {r + 1}/{cfg.repeat} "
                f"({cfg.iterations} calls x {len(contenders)} variants)"
            ),
        )
    finally:
        inst.close()

    def row(kind: str) -> tuple[Stats, Stats | None, dict[str, Any]]:
        o = series[f"ours_{kind}"]
        p = series.get(f"peer_{kind}")
        spread = {"ours": o.spread(), "peer": p.spread() if p else None}
        return o.stats(), p.stats() if p else None, spread

    ours_fresh, peer_fresh_stats, fresh_spread = row("fresh")
    ours_warm, peer_warm_stats, warm_spread = row("warm")
    fresh = BenchResult(
        name="invoke: instantiate+call (fresh instance)",
        unit="s",
        ours=ours_fresh.median,
        peer=peer_fresh_stats.median if peer_fresh_stats else None,
        ratio=safe_ratio(peer_fresh_stats.median if peer_fresh_stats else None, ours_fresh.median),
        ratio_def="peer/ours",
        targets=[
            Target("ratio", ">=", 10.0, "ratio >= 10"),
            Target("ours", "<", 20e-6, "ours < 20 us"),
        ],
        ours_stats=ours_fresh,
        peer_stats=peer_fresh_stats,
        note=(
            "per call: ours Function.invoke; peer Store + Instance + exports lookup + call "
            "(engine and module made once)"
        ),
        extra={"timer_overhead_ns_subtracted": overhead_ns, "spread_s": fresh_spread},
    )
    warm = BenchResult(
        name="invoke: call (persistent instance)",
        unit="s",
        ours=ours_warm.median,
        peer=peer_warm_stats.median if peer_warm_stats else None,
        ratio=safe_ratio(peer_warm_stats.median if peer_warm_stats else None, ours_warm.median),
        ratio_def="peer/ours",
        ours_stats=ours_warm,
        peer_stats=peer_warm_stats,
        note=(
            "extra info: ours resolves the export by name on every inst.invoke; "
            "the peer calls a Func looked up once"
        ),
        extra={"timer_overhead_ns_subtracted": overhead_ns, "spread_s": warm_spread},
    )
    return [fresh, warm]


# --------------------------------------------------------------------------
# 2. compute-bound loop
# --------------------------------------------------------------------------


def bench_compute(
    cfg: Settings,
    ours: ModuleType,
    wasmtime: ModuleType | None,
    mods: Modules,
    workdir: Path,
    log: Log,
) -> list[BenchResult]:
    n = cfg.spin_n
    if n > 0x7FFF_FFFF:
        raise ValueError("--spin-ops too large: the loop count must fit an i32")
    small = 1000
    expect_small = spin_reference(small)

    rt = _new_runtime(ours, workdir / "compute-cache")
    fn = rt.load(mods.spin)
    got = int(fn.invoke("spin", [small]).values[0]) & U32
    if got != expect_small:
        raise RuntimeError(f"ours: spin({small}) = {got:#x}, expected {expect_small:#x}")

    ours_value = int(fn.invoke("spin", [n]).values[0]) & U32  # also a warm-up
    contenders: dict[str, Callable[[], object]] = {
        "ours": functools.partial(fn.invoke, "spin", [n]),
    }

    def peer_caller(epoch: bool) -> Callable[[int], int]:
        assert wasmtime is not None
        config = wasmtime.Config()
        config.epoch_interruption = epoch
        engine = wasmtime.Engine(config)
        module = wasmtime.Module(engine, mods.spin)

        def call(count: int) -> int:
            store = wasmtime.Store(engine)
            if epoch:
                store.set_epoch_deadline(1 << 62)  # nobody bumps the epoch
            instance = wasmtime.Instance(store, module, [])
            return int(instance.exports(store)["spin"](store, count)) & U32

        if call(small) != expect_small:
            raise RuntimeError(f"wasmtime-py: spin({small}) mismatch")
        return call

    if wasmtime is not None:
        for label, epoch in (("peer", False), ("peer_epoch", True)):
            call = peer_caller(epoch)
            peer_value = call(n)  # also a warm-up
            if peer_value != ours_value:
                raise RuntimeError(
                    f"spin({n}) results differ: ours {ours_value:#x}, {label} {peer_value:#x}"
                )
            contenders[label] = functools.partial(call, n)

    series = interleaved_rounds(
        contenders,
        cfg.compute_repeat,
        on_round=lambda r: log(
            f"compute: round {r + 1}/{cfg.compute_repeat}: spin({n}) x {len(contenders)}"
        ),
    )
    ours_stats = series["ours"].stats()
    peer_stats = series["peer"].stats() if "peer" in series else None
    peer_epoch = series["peer_epoch"].stats() if "peer_epoch" in series else None
    extra: dict[str, Any] = {
        "n": n,
        "ops": n * SPIN_OPS_PER_ITER,
        "result": ours_value,
        "spread_s": {k: v.spread() for k, v in series.items()},
    }
    if peer_epoch is not None:
        extra["peer_epoch_interruption_median_s"] = peer_epoch.median
        extra["peer_epoch_interruption_stats"] = dataclasses.asdict(peer_epoch)
        extra["ratio_ours_over_peer_epoch"] = safe_ratio(ours_stats.median, peer_epoch.median)

    note = (
        "ours runs with epoch interruption on; the wasmtime-py peer uses its default "
        "config (no epoch checks, no fuel)"
    )
    if peer_epoch is not None:
        note += f"; wasmtime-py with epoch interruption: {format_duration(peer_epoch.median)}"
    return [
        BenchResult(
            name=f"compute: spin loop (~{n * SPIN_OPS_PER_ITER:.1e} int ops)",
            unit="s",
            ours=ours_stats.median,
            peer=peer_stats.median if peer_stats else None,
            ratio=safe_ratio(ours_stats.median, peer_stats.median if peer_stats else None),
            ratio_def="ours/peer",
            targets=[Target("ratio", "<=", 1.1, "ratio <= 1.1")],
            ours_stats=ours_stats,
            peer_stats=peer_stats,
            note=note,
            extra=extra,
        )
    ]


# --------------------------------------------------------------------------
# 3. on-disk module cache
# --------------------------------------------------------------------------


def _count_files(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for p in path.rglob("*") if p.is_file())


def _import_root(module: ModuleType) -> str | None:
    """The sys.path entry ``module`` was imported from, for the child's PYTHONPATH."""
    origin = getattr(module, "__file__", None)
    if not origin:
        return None
    path = Path(origin).resolve()
    return str(path.parent.parent if path.stem == "__init__" else path.parent)


def _child_load(
    module_path: Path,
    fmt: str,
    home: Path,
    cache_dir: Path,
    cfg: Settings,
    import_root: str | None,
) -> dict[str, Any]:
    env = dict(os.environ)
    env["TENSOR_WASM_HOME"] = str(home)
    if import_root:  # import the same tensorwasm_tc as this process did
        parts = [import_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(parts)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CACHE_CHILD,
            str(module_path),
            str(cache_dir),
            fmt,
            str(MAX_MEMORY_BYTES),
            str(DEADLINE_MS),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=cfg.child_timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"cache child exited with {proc.returncode}: " + " | ".join(tail))
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError("cache child printed nothing")
    doc: dict[str, Any] = json.loads(lines[-1])
    return doc


def bench_cache(
    cfg: Settings,
    ours: ModuleType,
    wasmtime: ModuleType | None,
    mods: Modules,
    workdir: Path,
    log: Log,
) -> list[BenchResult]:
    wat = big_module_wat(cfg.cache_funcs)
    if wasmtime is not None:
        blob: bytes = bytes(wasmtime.wat2wasm(wat))
        fmt, module_path = "wasm", workdir / "big.wasm"
    else:
        blob = wat.encode("utf-8")
        fmt, module_path = "wat", workdir / "big.wat"
    module_path.write_bytes(blob)

    import_root = _import_root(ours)
    cold: list[float] = []
    warm: list[float] = []
    runs: list[dict[str, Any]] = []
    for i in range(cfg.repeat):
        home = Path(tempfile.mkdtemp(prefix=f"home{i}-", dir=workdir))
        cache_dir = home / "explicit-cache"  # not the default <home>/modules
        log(f"cache: round {i + 1}/{cfg.repeat}: cold load in a fresh process")
        first = _child_load(module_path, fmt, home, cache_dir, cfg, import_root)
        files_after_cold = _count_files(cache_dir)
        log(f"cache: round {i + 1}/{cfg.repeat}: warm load in a fresh process")
        second = _child_load(module_path, fmt, home, cache_dir, cfg, import_root)
        if first["id"] != second["id"] or first["f0"] != second["f0"]:
            raise RuntimeError(f"cold and warm loads disagree: {first} vs {second}")
        cold.append(float(first["load_s"]))
        warm.append(float(second["load_s"]))
        runs.append(
            {
                "cold_s": first["load_s"],
                "warm_s": second["load_s"],
                "cache_files_after_cold": files_after_cold,
                "default_dir_files": _count_files(home / "modules"),
                "id": first["id"],
                "f0": first["f0"],
            }
        )

    peer_compile = peer_deser = None
    peer_info: dict[str, Any] = {}
    if wasmtime is not None:
        log(f"cache: wasmtime-py Module() and Module.deserialize() x {cfg.repeat}")
        engine = wasmtime.Engine()
        compile_times: list[float] = []
        deser_times: list[float] = []
        for _ in range(cfg.repeat):
            elapsed, module = time_call(functools.partial(wasmtime.Module, engine, blob))
            compile_times.append(elapsed)
            serialized = module.serialize()
            elapsed, _ = time_call(
                functools.partial(wasmtime.Module.deserialize, engine, serialized)
            )
            deser_times.append(elapsed)
        peer_compile = Stats.of(compile_times)
        peer_deser = Stats.of(deser_times)
        peer_info = {"serialized_bytes": len(serialized)}

    ours_cold, ours_warm = Stats.of(cold), Stats.of(warm)
    speedup = safe_ratio(ours_cold.median, ours_warm.median)
    peer_speedup = (
        safe_ratio(peer_compile.median, peer_deser.median) if peer_compile and peer_deser else None
    )
    common = {
        "module_format": fmt,
        "module_bytes": len(blob),
        "functions": cfg.cache_funcs,
        "runs": runs,
    }
    cold_notes = []
    if fmt == "wat":
        cold_notes.append("module passed as WAT text (no wasmtime-py): parsing is included")
    if any(r["cache_files_after_cold"] == 0 for r in runs):
        cold_notes.append("the explicit cache_dir was still empty after a cold load")
    note_cold = "; ".join(cold_notes)
    return [
        BenchResult(
            name="cache: cold load (compile)",
            unit="s",
            ours=ours_cold.median,
            peer=peer_compile.median if peer_compile else None,
            ratio=safe_ratio(peer_compile.median if peer_compile else None, ours_cold.median),
            ratio_def="peer/ours",
            ours_stats=ours_cold,
            peer_stats=peer_compile,
            note=note_cold,
            extra=common,
        ),
        BenchResult(
            name="cache: warm load (disk cache)",
            unit="s",
            ours=ours_warm.median,
            peer=peer_deser.median if peer_deser else None,
            ratio=safe_ratio(peer_deser.median if peer_deser else None, ours_warm.median),
            ratio_def="peer/ours",
            ours_stats=ours_warm,
            peer_stats=peer_deser,
            note="peer column: wasmtime-py Module.deserialize of Module.serialize()",
            extra=peer_info,
        ),
        BenchResult(
            name="cache: speedup cold/warm",
            unit="x",
            ours=speedup,
            peer=peer_speedup,
            targets=[Target("ours", ">=", 20.0, "ours >= 20")],
            note=(
                "ours: fresh processes with explicit cache_dir; peer: compile time / "
                "deserialize time, in this process"
            ),
        ),
    ]


BENCH_FUNCS: dict[
    str,
    Callable[[Settings, ModuleType, ModuleType | None, Modules, Path, Log], list[BenchResult]],
] = {
    "invoke": bench_invoke,
    "compute": bench_compute,
    "cache": bench_cache,
}

_FAILED_ROW = {
    "invoke": "invoke: instantiate+call (fresh instance)",
    "compute": "compute: spin loop",
    "cache": "cache",
}


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

# (full run, --quick); explicit flags override either.
DEFAULTS: dict[str, tuple[int, int]] = {
    "iterations": (2000, 200),
    "repeat": (5, 2),
    "compute_repeat": (15, 3),
    "warmup": (200, 20),
    "spin_ops": (100_000_000, 10_000_000),
    "cache_funcs": (1500, 150),
}


def build_parser() -> argparse.ArgumentParser:
    def dflt(key: str) -> str:
        full, quick = DEFAULTS[key]
        return f"(default {full}; {quick} with --quick)"

    parser = argparse.ArgumentParser(
        prog="python -m bench.executor",
        description=(
            "Benchmark the tensorwasm_tc executor against wasmtime-py: "
            "instantiate+call latency, compute-bound throughput and the "
            "on-disk module cache."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-run sizes for CI (a few seconds); targets are not meaningful",
    )
    parser.add_argument(
        "--iterations",
        type=positive_int,
        help=f"timed calls per round in the invoke benchmark {dflt('iterations')}",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        help=(
            "rounds of --iterations calls (invoke) and fresh cache dirs with a cold "
            f"and a warm load each (cache) {dflt('repeat')}"
        ),
    )
    parser.add_argument(
        "--compute-repeat",
        type=positive_int,
        help=f"timed calls per contender in the compute benchmark {dflt('compute_repeat')}",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        help=f"untimed calls before each timed invoke round {dflt('warmup')}",
    )
    parser.add_argument(
        "--spin-ops",
        type=positive_int,
        help=f"integer ops per compute call, e.g. 1e8 {dflt('spin_ops')}",
    )
    parser.add_argument(
        "--cache-funcs",
        type=positive_int,
        help=f"functions in the generated cache-benchmark module {dflt('cache_funcs')}",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        help="run only this benchmark (repeatable; default: all)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip wasmtime-py even if installed")
    parser.add_argument(
        "--child-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="time limit for each cache-benchmark subprocess (default 300)",
    )
    add_output_options(parser)
    return parser


def resolve_settings(args: argparse.Namespace, peer: bool) -> Settings:
    pick = 1 if args.quick else 0

    def value(key: str) -> int:
        given = getattr(args, key)
        return int(given) if given is not None else DEFAULTS[key][pick]

    return Settings(
        iterations=value("iterations"),
        repeat=value("repeat"),
        compute_repeat=value("compute_repeat"),
        warmup=value("warmup"),
        spin_ops=value("spin_ops"),
        cache_funcs=value("cache_funcs"),
        child_timeout_s=float(args.child_timeout),
        quick=bool(args.quick),
        benchmarks=tuple(b for b in BENCHMARKS if not args.only or b in args.only),
        peer=peer,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    log = progress(args.quiet)

    ours = import_package(PACKAGE)
    if ours is None:
        return 2

    wasmtime: ModuleType | None = None
    if not args.no_peer:
        try:
            import wasmtime as _wasmtime
        except ImportError:
            print(
                "note: wasmtime-py is not installed (`pip install wasmtime`); "
                "peer columns are skipped and ratios read n/a.",
                file=sys.stderr,
            )
        else:
            wasmtime = _wasmtime

    cfg = resolve_settings(args, peer=wasmtime is not None)
    env = environment_info(PACKAGE)
    env["peer"] = PEER_NAME if wasmtime is not None else None
    env["peer_version"] = distribution_version("wasmtime") if wasmtime else None
    log(
        f"{PACKAGE} {env['package_version'] or '?'} vs "
        f"{PEER_NAME} {env['peer_version'] or '(absent)'}; "
        f"python {env['python_version']}, {env['cpu_count_usable']} usable CPUs"
    )

    results: list[BenchResult] = []
    with tempfile.TemporaryDirectory(prefix="tw-bench-executor-") as tmp:
        workdir = Path(tmp)
        mods = Modules(add=_assemble(wasmtime, ADD_WAT), spin=_assemble(wasmtime, SPIN_WAT))
        for name in cfg.benchmarks:
            try:
                results.extend(BENCH_FUNCS[name](cfg, ours, wasmtime, mods, workdir, log))
            except Exception as exc:  # report and go on with the other benchmarks
                results.append(
                    BenchResult(
                        name=_FAILED_ROW[name],
                        unit="s",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                )

    title = f"tensorwasm_tc executor vs {PEER_NAME}"
    if wasmtime is None:
        title += " (peer skipped)"
    if cfg.quick:
        title += " [quick]"
    print(title)
    print(format_table(results, peer_name=PEER_NAME if wasmtime else "peer (absent)"))
    footers = []
    if wasmtime is None:
        reason = "--no-peer" if args.no_peer else "wasmtime-py is not installed"
        footers.append(f"{reason}: peer columns skipped, ratios n/a")
    if cfg.quick:
        footers.append("--quick: sizes are too small for the targets to mean anything")
    return finish(
        results,
        benchmark="executor",
        json_path=args.json,
        environment=env,
        settings=dataclasses.asdict(cfg),
        check=args.check,
        log=log,
        footers=footers,
    )


if __name__ == "__main__":
    sys.exit(main())
