"""Snapshot benchmarks: save/restore throughput and pre-initialised cold starts.

Two benchmarks, each timing our code and a peer in the same process, in
interleaved rounds (the order rotates every round), reporting medians:

1. ``io`` -- an instance whose linear memory is ``--sizes`` big (default
   64 MiB and 1 GiB), the first half filled by the guest with a cheap
   counter-based PRNG (the splitmix64 finaliser of the word index), the
   second half left zero.

   * save: ``inst.snapshot(path)`` (stored, unsigned, module not embedded;
     the path API writes a temp file, fsyncs it and renames it into place)
     vs the peer ``open(path, "wb").write(buf)`` + ``flush`` + ``os.fsync``
     of a bytearray of the same size with the same content;
   * restore: ``rt.restore(path, function=fn)`` vs ``open(path, "rb")
     .readinto(buf)`` into that preallocated bytearray.

   Both are reported in MB/s (10^6 bytes per second) of memory size and as
   the ratio ours/raw (target >= 0.7x). Before every write the target file
   is deleted on both sides (untimed). Reads come from the page cache (the
   file was just written) on both sides; ``--drop-cache`` evicts the file's
   pages with ``posix_fadvise(DONTNEED)`` before every read, on both sides,
   so that reads come from the device instead. For the smallest size a zstd
   (level 3) save and restore are timed in the same rounds: an extra row with
   the file size and no target (the random half does not compress; zstd
   stores those chunks raw). For context the restore rows also note a raw
   read into a fresh bytearray, which pays the first-touch page faults that
   a restored instance's new memory pays and the preallocated buffer does
   not. Peak RSS is about 2.5 times the largest size.

2. ``coldstart`` -- a guest whose ``init`` export spins a loop calibrated to
   about 200 ms on this machine and leaves its results in memory and
   globals. Pre-initialised: ``rt.load(wasm, init_export="init")`` once,
   then ``fn.invoke("run")`` (a fresh instance per call, mapped from the
   initialised image); peer: ``fn.invoke("run_with_init")`` on the same
   module loaded without ``init_export`` (every fresh instance runs ``init``
   first). Per-cold-start latency of each; ratio peer/ours (target >= 50x).

Run from the repository root::

    python -m bench.snapshot                   # full run (about a minute)
    python -m bench.snapshot --quick           # smoke run (a few seconds)
    python -m bench.snapshot --sizes 256M      # other memory sizes
    python -m bench.snapshot --json out.json   # also write machine-readable results

Targets are informational: the exit status is 1 only for errors, or for a
missed target with ``--check``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import os
import re
import resource
import sys
import tempfile
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
        Target,
        add_output_options,
        environment_info,
        finish,
        format_duration,
        format_table,
        import_package,
        layout_rows,
        median,
        non_negative_int,
        positive_int,
        progress,
        safe_ratio,
        time_call,
    )
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from _common import (  # type: ignore[no-redef, import-not-found, unused-ignore]
        BenchResult,
        Series,
        Target,
        add_output_options,
        environment_info,
        finish,
        format_duration,
        format_table,
        import_package,
        layout_rows,
        median,
        non_negative_int,
        positive_int,
        progress,
        safe_ratio,
        time_call,
    )

PACKAGE = "tensorwasm_tc"
PEER_NAME = "raw file I/O"
BENCHMARKS = ("coldstart", "io")
Log = Callable[[str], None]
U64Array = npt.NDArray[np.uint64]

PAGE = 65536
MB = 1_000_000
IO_TARGET = 0.7
# Warn when other processes kept at least this many CPUs busy during the run.
OTHER_LOAD_WARN_CPUS = 0.2
COLDSTART_TARGET = 50.0
ZSTD_LEVEL = 3
# Headroom over the largest memory for the runtime's cap (the guest's own
# page, rounding).
MEMORY_HEADROOM = 64 << 20
# The peer's buffer is filled this many 8-byte words at a time, so numpy's
# temporaries stay small next to a 1 GiB buffer.
FILL_CHUNK_WORDS = 4 << 20

# --------------------------------------------------------------------------
# Guests
# --------------------------------------------------------------------------

SPLITMIX_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX_M1 = 0xBF58476D1CE4E5B9
SPLITMIX_M2 = 0x94D049BB133111EB

# fill(start, end): every 8-byte word w in [start, end) gets mix(w / 8 + 1),
# the splitmix64 finaliser: a stateless PRNG, so numpy builds the same bytes.
IO_WAT = f"""\
(module
  (memory (export "memory") 1)
  (func (export "grow_to") (param $pages i32) (result i32)
    (memory.grow (i32.sub (local.get $pages) (memory.size))))
  (func (export "fill") (param $start i32) (param $end i32)
    (local $p i32) (local $z i64)
    (local.set $p (local.get $start))
    (block $done
      (loop $top
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $z
          (i64.mul
            (i64.add (i64.shr_u (i64.extend_i32_u (local.get $p)) (i64.const 3)) (i64.const 1))
            (i64.const {SPLITMIX_GAMMA:#x})))
        (local.set $z
          (i64.mul (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 30)))
            (i64.const {SPLITMIX_M1:#x})))
        (local.set $z
          (i64.mul (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 27)))
            (i64.const {SPLITMIX_M2:#x})))
        (i64.store (local.get $p)
          (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 31))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $top))))
  (func (export "peek") (param $addr i32) (result i64)
    (i64.load (local.get $addr))))
"""


def splitmix_words(first: int, count: int) -> U64Array:
    """The words ``fill`` writes at word indices ``first .. first + count``."""
    z = np.arange(first + 1, first + 1 + count, dtype=np.uint64)
    z *= np.uint64(SPLITMIX_GAMMA)
    z ^= z >> np.uint64(30)
    z *= np.uint64(SPLITMIX_M1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(SPLITMIX_M2)
    z ^= z >> np.uint64(31)
    return z


def peer_buffer(size: int) -> bytearray:
    """``size`` bytes: the first half as ``fill`` leaves it, the rest zero."""
    buf = bytearray(size)
    words = np.frombuffer(buf, dtype=np.uint64)
    half = size // 16
    for first in range(0, half, FILL_CHUNK_WORDS):
        n = min(FILL_CHUNK_WORDS, half - first)
        words[first : first + n] = splitmix_words(first, n)
    del words
    return buf


# work(n): n xorshift64 steps, each stored into an 8192-word (64 KiB) table
# in memory; returns the last state. init() runs work(INIT_ITERATIONS) and
# records the result in globals; run() needs them.
COLDSTART_TABLE_WORDS = 8192
COLDSTART_WAT_TEMPLATE = """\
(module
  (memory (export "memory") 2)
  (global $ready (mut i32) (i32.const 0))
  (global $state (mut i64) (i64.const 0))
  (func $work (export "work") (param $n i64) (result i64)
    (local $i i64) (local $x i64)
    (local.set $x (i64.const 0x2545F4914F6CDD1D))
    (block $done
      (loop $top
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
        (i64.store
          (i32.wrap_i64 (i64.shl (i64.and (local.get $i) (i64.const {mask})) (i64.const 3)))
          (local.get $x))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $top)))
    (local.get $x))
  (func $init (export "init")
    (global.set $state (call $work (i64.const {iterations})))
    (global.set $ready (i32.const 1)))
  (func $run (export "run") (result i64)
    (if (i32.eqz (global.get $ready)) (then (unreachable)))
    (i64.xor (global.get $state) (i64.load (i32.const 4096))))
  (func (export "run_with_init") (result i64)
    (call $init)
    (call $run)))
"""


def coldstart_wat(iterations: int) -> str:
    return COLDSTART_WAT_TEMPLATE.format(iterations=iterations, mask=COLDSTART_TABLE_WORDS - 1)


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

DEFAULT_SIZES = (64 << 20, 1 << 30)
QUICK_SIZES = (16 << 20,)
# Rounds per memory size: more for small sizes, whose rounds are short.
ROUNDS_SMALL = 5
ROUNDS_LARGE = 3
LARGE_BYTES = 256 << 20
INIT_TARGET_S = 0.2
# Cold starts per round (pre-initialised, init per instance); --quick: fewer.
COLDSTART_CALLS = (20, 2)
COLDSTART_ROUNDS = 5
CALIBRATION_RUNS = 5
# run_with_init() calls that check the calibration.
CHECK_RUNS = 3


@dataclasses.dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    rounds: int | None
    coldstart_rounds: int
    coldstart_calls: tuple[int, int]
    init_target_s: float
    drop_cache: bool
    directory: str | None
    quick: bool
    benchmarks: tuple[str, ...]

    def rounds_for(self, size: int) -> int:
        if self.rounds is not None:
            return self.rounds
        if self.quick:
            return 1
        return ROUNDS_SMALL if size <= LARGE_BYTES else ROUNDS_LARGE


_SIZE = re.compile(r"^\s*([0-9]+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``64M``, ``1G``, ``65536``: a size in bytes, a multiple of 128 KiB."""
    m = _SIZE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64M, 1G)")
    n = int(m[1]) << {"": 0, "k": 10, "m": 20, "g": 30}[m[2].lower()]
    if n <= 0 or n % (2 * PAGE):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive multiple of 128 KiB")
    if n > 4 << 30:
        raise argparse.ArgumentTypeError(f"{text!r}: at most 4G (32-bit linear memory)")
    return n


def parse_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(parse_size(part) for part in text.split(",") if part.strip())
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.2f} {unit}"
    return f"{n} B"


def mb_s(size: int, seconds: float | None) -> float | None:
    return None if not seconds else size / seconds / MB


def machine_cpu_s() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine, this process's CPU seconds, wall)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        ticks = [int(v) for v in fields[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    if fields[0] != "cpu" or len(ticks) < 8 or hz <= 0:
        return None
    t = os.times()
    busy = (sum(ticks) - ticks[3] - ticks[4]) / hz  # all but idle and iowait
    return busy, t.user + t.system, time.perf_counter()


def other_cpus_busy(
    before: tuple[float, float, float] | None, after: tuple[float, float, float] | None
) -> float | None:
    """CPUs that other processes kept busy, on average, between two readings."""
    if before is None or after is None or after[2] <= before[2]:
        return None
    other = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, other) / (after[2] - before[2])


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# --------------------------------------------------------------------------
# 1. save / restore throughput
# --------------------------------------------------------------------------


def _drop_cached_pages(path: Path) -> None:
    """Evicts ``path``'s clean pages from the page cache (no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def raw_write(path: Path, buf: bytearray) -> None:
    with open(path, "wb") as f:
        f.write(buf)
        f.flush()
        os.fsync(f.fileno())


def raw_read(path: Path, buf: bytearray) -> None:
    with open(path, "rb") as f:
        n = f.readinto(buf)
    if n != len(buf):
        raise RuntimeError(f"short read of {path}: {n} of {len(buf)} bytes")


def raw_read_fresh(path: Path, size: int) -> bytearray:
    """``raw_read`` into a new buffer, returned so that freeing it is not timed."""
    buf = bytearray(size)
    raw_read(path, buf)
    return buf


def _rotated(names: list[str], r: int) -> list[str]:
    shift = r % len(names)
    return names[shift:] + names[:shift]


def _check_restored(inst: Any, size: int) -> None:
    """Spot-checks a restored instance against the PRNG and the zero half."""
    half = size // 2
    for addr in (0, 8, half // 2, half - 8):
        got = int(inst.invoke("peek", [addr]).values[0]) & ((1 << 64) - 1)
        want = int(splitmix_words(addr // 8, 1)[0])
        if got != want:
            raise RuntimeError(f"restored memory differs at {addr}: {got:#x} != {want:#x}")
    for addr in (half, half + size // 4, size - 8):
        if int(inst.invoke("peek", [addr]).values[0]) != 0:
            raise RuntimeError(f"restored memory is not zero at {addr}")


def bench_io_size(
    cfg: Settings, ours: ModuleType, size: int, workdir: Path, log: Log, *, zstd: bool
) -> list[BenchResult]:
    rounds = cfg.rounds_for(size)
    label = format_bytes(size)
    rt = ours.Runtime(max_memory_bytes=size + MEMORY_HEADROOM, cache_dir=False)
    rt.snapshot_key = None  # an unsigned snapshot on both runs, whatever the environment
    rt.require_signature = False
    fn = rt.load(IO_WAT)
    inst = fn.instantiate()
    try:
        if list(inst.invoke("grow_to", [size // PAGE]).values) == [-1]:
            raise RuntimeError(f"memory.grow to {label} failed")
        fill_s, _ = time_call(lambda: inst.invoke("fill", [0, size // 2]))
        log(f"io {label}: guest filled {format_bytes(size // 2)} in {format_duration(fill_s)}")
        buf = peer_buffer(size)
        for addr in (0, size // 2 - 8):
            got = int(inst.invoke("peek", [addr]).values[0]) & ((1 << 64) - 1)
            if got != int.from_bytes(buf[addr : addr + 8], "little"):
                raise RuntimeError(f"peer buffer differs from guest memory at {addr}")

        paths = {
            "ours": workdir / f"snap-{label.replace(' ', '')}.twsnap",
            "ours_zstd": workdir / f"snap-{label.replace(' ', '')}-zstd.twsnap",
            "raw": workdir / f"raw-{label.replace(' ', '')}.bin",
        }
        stats: dict[str, dict[str, int]] = {}

        def save(kind: str) -> Callable[[], object]:
            compression = "zstd" if kind == "ours_zstd" else None

            def run() -> object:
                stats[kind] = dict(
                    inst.snapshot(paths[kind], compression=compression, level=ZSTD_LEVEL)
                )
                return None

            return run

        def restore(kind: str) -> Callable[[], Any]:
            return lambda: rt.restore(paths[kind], function=fn)

        writers: dict[str, Callable[[], object]] = {
            "ours": save("ours"),
            "raw": lambda: raw_write(paths["raw"], buf),
        }
        readers: dict[str, Callable[[], Any]] = {
            "ours": restore("ours"),
            "raw": lambda: raw_read(paths["raw"], buf),
            # Context only: the same read into memory never touched before,
            # which pays the page faults a restored instance's memory pays.
            "raw_fresh": lambda: raw_read_fresh(paths["raw"], size),
        }
        if zstd:
            writers["ours_zstd"] = save("ours_zstd")
            readers["ours_zstd"] = restore("ours_zstd")

        save_s = {k: Series() for k in writers}
        load_s = {k: Series() for k in readers}
        checked: set[str] = set()
        for r in range(rounds):
            log(f"io {label}: round {r + 1}/{rounds} ({', '.join(writers)})")
            for kind in _rotated(list(writers), r):
                _unlink(paths[kind])
                gc.collect()
                dt, _ = time_call(writers[kind])
                save_s[kind].samples.append(dt)
                save_s[kind].round_medians.append(dt)
            for kind in _rotated(list(readers), r):
                path = paths["raw" if kind == "raw_fresh" else kind]
                if cfg.drop_cache:
                    _drop_cached_pages(path)
                gc.collect()
                dt, restored = time_call(readers[kind])
                load_s[kind].samples.append(dt)
                load_s[kind].round_medians.append(dt)
                if kind.startswith("ours"):
                    if kind not in checked:  # untimed, once per kind
                        _check_restored(restored, size)
                        checked.add(kind)
                    restored.close()
                del restored
        file_bytes = {k: int(v["file_bytes"]) for k, v in stats.items()}
        zero_pages = int(stats["ours"]["zero_pages_skipped"])
    finally:
        inst.close()
    buf = bytearray()  # release the peer's buffer before the next size
    for p in paths.values():
        _unlink(p)
    gc.collect()

    cache = "evicted before each read" if cfg.drop_cache else "page cache (just written)"
    raw_w, raw_r = save_s["raw"].stats(), load_s["raw"].stats()
    fresh_s = load_s["raw_fresh"].stats().median
    results = []
    for kind, what in (("ours", "stored"), ("ours_zstd", f"zstd {ZSTD_LEVEL}")):
        if kind not in writers:
            continue
        target = [Target("ratio", ">=", IO_TARGET, f"ratio >= {IO_TARGET}")]
        for op, series, raw, raw_desc in (
            ("save", save_s, raw_w, "write+fsync"),
            ("restore", load_s, raw_r, "readinto"),
        ):
            o = series[kind].stats()
            results.append(
                BenchResult(
                    name=f"{op} {label} ({what})",
                    unit="s",
                    ours=o.median,
                    peer=raw.median,
                    ratio=safe_ratio(raw.median, o.median),
                    ratio_def="ours/raw MB/s",
                    targets=target if kind == "ours" else [],
                    ours_stats=o,
                    peer_stats=raw,
                    extra={
                        "memory_bytes": size,
                        "file_bytes": file_bytes[kind],
                        "zero_pages_skipped": zero_pages,
                        "ours_mb_s": mb_s(size, o.median),
                        "peer_mb_s": mb_s(size, raw.median),
                        "peer": f"raw {raw_desc} of {label}",
                        "rounds": rounds,
                        "reads": cache,
                        **(
                            {
                                "raw_readinto_fresh_buffer_s": fresh_s,
                                "raw_readinto_fresh_buffer_mb_s": mb_s(size, fresh_s),
                            }
                            if op == "restore"
                            else {}
                        ),
                        "spread_s": {
                            "ours": series[kind].spread(),
                            "raw": (save_s if op == "save" else load_s)["raw"].spread(),
                        },
                    },
                )
            )
    results[0].note = (
        f"{label} memory, first half PRNG, second half zero; snapshot file "
        f"{format_bytes(file_bytes['ours'])}"
        + (f" (zstd {format_bytes(file_bytes['ours_zstd'])})" if zstd else "")
        + f"; raw peer writes/reads all {label}; reads: {cache}"
    )
    results[1].note = (
        f"context: raw readinto a fresh (never touched) {label} bytearray: "
        f"{format_duration(fresh_s)} ({mb_s(size, fresh_s) or 0:.0f} MB/s); a restore "
        "writes into fresh instance memory too"
    )
    return results


def bench_io(cfg: Settings, ours: ModuleType, workdir: Path, log: Log) -> list[BenchResult]:
    results = []
    smallest = min(cfg.sizes)
    for size in cfg.sizes:
        try:
            results.extend(bench_io_size(cfg, ours, size, workdir, log, zstd=size == smallest))
        except Exception as exc:  # report and go on with the other sizes
            results.append(
                BenchResult(
                    name=f"save/restore {format_bytes(size)}",
                    unit="s",
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
        log(f"peak RSS so far {format_bytes(peak_rss_bytes())}")
    return results


# --------------------------------------------------------------------------
# 2. cold start of a pre-initialised function
# --------------------------------------------------------------------------


def calibrate_iterations(ours: ModuleType, target_s: float, log: Log) -> tuple[int, float]:
    """Loop iterations of ``work`` that take about ``target_s``; and the
    measured seconds per iteration (the median of a few ~50 ms runs)."""
    fn = ours.Runtime(cache_dir=False).load(coldstart_wat(1))
    fn.invoke("work", [1000])  # compile and warm up

    def seconds(n: int) -> float:
        return time_call(lambda: fn.invoke("work", [n]))[0]

    n = 1_000_000
    while seconds(n) < 0.05 and n < 1 << 34:
        n *= 2
    per_iter = median([seconds(n) / n for _ in range(CALIBRATION_RUNS)])
    return max(1, round(target_s / per_iter)), per_iter


def bench_coldstart(cfg: Settings, ours: ModuleType, log: Log) -> list[BenchResult]:
    target = cfg.init_target_s
    iterations, per_iter = calibrate_iterations(ours, target, log)
    rt = ours.Runtime(cache_dir=False)
    for attempt in range(2):
        plain = rt.load(coldstart_wat(iterations))
        init_s = median(
            [
                time_call(functools.partial(plain.invoke, "run_with_init"))[0]
                for _ in range(CHECK_RUNS)
            ]
        )
        log(
            f"coldstart: {per_iter * 1e9:.2f} ns per loop iteration -> init runs "
            f"{iterations:,} iterations: {format_duration(init_s)} per instance"
        )
        if attempt == 1 or abs(init_s / target - 1) <= 0.25:
            break
        # The loop ran at another speed inside init than alone: scale once.
        iterations = max(1, round(iterations * target / init_s))
        per_iter = init_s / iterations
    wat = coldstart_wat(iterations)
    load_s, pre = time_call(lambda: rt.load(wat, init_export="init"))
    got, want = pre.invoke("run"), plain.invoke("run_with_init")
    if list(got.values) != list(want.values):
        raise RuntimeError(f"run() {got.values} != run_with_init() {want.values}")
    log(f"coldstart: load(..., init_export='init') took {format_duration(load_s)}")

    n_pre, n_init = cfg.coldstart_calls
    contenders: dict[str, tuple[Callable[[], object], int]] = {
        "pre": (lambda: pre.invoke("run"), n_pre),
        "init": (lambda: plain.invoke("run_with_init"), n_init),
    }
    series = {k: Series() for k in contenders}
    for r in range(cfg.coldstart_rounds):
        log(
            f"coldstart: round {r + 1}/{cfg.coldstart_rounds} "
            f"(1 + {n_pre} pre-initialised, {n_init} init per instance)"
        )
        for name in _rotated(list(contenders), r):
            call, count = contenders[name]
            call()  # untimed: caches warm after the other contender
            xs = [time_call(call)[0] for _ in range(count)]
            series[name].samples.extend(xs)
            series[name].round_medians.append(median(xs))
    o, p = series["pre"].stats(), series["init"].stats()
    return [
        BenchResult(
            name="cold start, ~200 ms init",
            unit="s",
            ours=o.median,
            peer=p.median,
            ratio=safe_ratio(p.median, o.median),
            ratio_def="init/pre",
            targets=[Target("ratio", ">=", COLDSTART_TARGET, f"ratio >= {COLDSTART_TARGET:g}")],
            ours_stats=o,
            peer_stats=p,
            note=(
                f"ours: load(wasm, init_export='init') once ({format_duration(load_s)}), then "
                "invoke('run') on a fresh instance; peer: invoke('run_with_init') on a fresh "
                f"instance (init = {iterations:,} loop iterations, calibrated to "
                f"{format_duration(cfg.init_target_s)})"
            ),
            extra={
                "init_iterations": iterations,
                "seconds_per_iteration": per_iter,
                "load_with_init_export_s": load_s,
                "calls_per_round": {"pre": n_pre, "init": n_init},
                "spread_s": {k: s.spread() for k, s in series.items()},
            },
        )
    ]


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def throughput_table(results: Sequence[BenchResult]) -> str:
    """The save/restore rows again, in MB/s of memory size."""
    header = ("benchmark", "ours MB/s", "raw MB/s", "ours/raw", "file")
    rows: list[tuple[str, ...]] = [header]
    for r in results:
        if r.error is not None or "ours_mb_s" not in r.extra:
            continue
        ours_mb, peer_mb = r.extra["ours_mb_s"], r.extra["peer_mb_s"]
        rows.append(
            (
                r.name,
                "n/a" if ours_mb is None else f"{ours_mb:.0f}",
                "n/a" if peer_mb is None else f"{peer_mb:.0f}",
                "n/a" if r.ratio is None else f"{r.ratio:.2f}x",
                format_bytes(int(r.extra["file_bytes"])),
            )
        )
    if len(rows) == 1:
        return ""
    return layout_rows(rows)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.snapshot",
        description=(
            "Benchmark tensorwasm_tc snapshots: save/restore throughput against raw "
            "file I/O, and cold starts of a pre-initialised function against running "
            "its init in every instance."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (16M, 1 round, fewer cold starts); targets are not meaningful",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        metavar="SIZE,...",
        help="linear memory sizes, e.g. 64M,1G (default 64M,1G; 16M with --quick)",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        help=(
            f"rounds per size (default {ROUNDS_SMALL} up to {format_bytes(LARGE_BYTES)}, "
            f"{ROUNDS_LARGE} above; 1 with --quick)"
        ),
    )
    parser.add_argument(
        "--coldstart-rounds",
        type=positive_int,
        help=f"rounds of the cold-start benchmark (default {COLDSTART_ROUNDS}; 1 with --quick)",
    )
    parser.add_argument(
        "--init-ms",
        type=non_negative_int,
        default=int(INIT_TARGET_S * 1000),
        help=f"what init should take, in ms (default {int(INIT_TARGET_S * 1000)})",
    )
    parser.add_argument(
        "--drop-cache",
        action="store_true",
        help="evict each file from the page cache before reading it (both sides)",
    )
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="where the files are written (default: the system temp directory)",
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
    quick = bool(args.quick)
    sizes = tuple(args.sizes) if args.sizes else (QUICK_SIZES if quick else DEFAULT_SIZES)
    return Settings(
        sizes=sizes,
        rounds=args.rounds,
        coldstart_rounds=args.coldstart_rounds or (1 if quick else COLDSTART_ROUNDS),
        coldstart_calls=(5, 1) if quick else COLDSTART_CALLS,
        init_target_s=max(1, args.init_ms) / 1000,
        drop_cache=bool(args.drop_cache),
        directory=args.dir,
        quick=quick,
        benchmarks=tuple(b for b in BENCHMARKS if not args.only or b in args.only),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = progress(args.quiet)
    ours = import_package(PACKAGE)
    if ours is None:
        return 2
    cfg = resolve_settings(args)
    env = environment_info(PACKAGE)
    env["peer"] = PEER_NAME
    env["numpy_version"] = np.__version__
    log(
        f"{PACKAGE} {env['package_version'] or '?'}; python {env['python_version']}, "
        f"{env['cpu_count_usable']} usable CPUs; sizes "
        f"{', '.join(format_bytes(s) for s in cfg.sizes)}"
    )

    results: list[BenchResult] = []
    started = time.perf_counter()
    cpu_before = machine_cpu_s()
    with tempfile.TemporaryDirectory(prefix="tw-bench-snapshot-", dir=cfg.directory) as tmp:
        workdir = Path(tmp)
        env["files_in"] = str(workdir)
        for name in cfg.benchmarks:
            try:
                if name == "coldstart":
                    results.extend(bench_coldstart(cfg, ours, log))
                else:
                    results.extend(bench_io(cfg, ours, workdir, log))
            except Exception as exc:  # report and go on with the other benchmark
                row = "cold start" if name == "coldstart" else "save/restore"
                results.append(
                    BenchResult(name=row, unit="s", error=f"{type(exc).__name__}: {exc}")
                )
    env["wall_s"] = time.perf_counter() - started
    env["other_processes_cpus_busy"] = others = other_cpus_busy(cpu_before, machine_cpu_s())
    env["peak_rss_bytes"] = peak_rss_bytes()

    title = f"tensorwasm_tc snapshots vs {PEER_NAME}"
    if cfg.quick:
        title += " [quick]"
    print(title)
    print(
        f"  files in {env['files_in']}; reads "
        + (
            "evicted from the page cache first (both sides)"
            if cfg.drop_cache
            else "from the page cache (both sides)"
        )
    )
    print(
        f"  targets: save and restore >= {IO_TARGET}x raw file I/O (MB/s of memory size); "
        f"cold start >= {COLDSTART_TARGET:g}x faster pre-initialised"
    )
    print(f"  wall {env['wall_s']:.1f} s; peak RSS {format_bytes(env['peak_rss_bytes'])}")
    if others is not None:
        print(f"  other processes kept {others:.2f} CPUs busy on average during the run")
        if others >= OTHER_LOAD_WARN_CPUS:
            print("  (the machine was shared: figures are pessimistic and noisy)")
    print()
    print(format_table(results, peer_name="peer"))
    table = throughput_table(results)
    if table:
        print("\nthroughput (MB = 10^6 bytes of linear memory per second):")
        print(table)
    footers = ["--quick: sizes are too small for the targets to mean anything"] if cfg.quick else []
    return finish(
        results,
        benchmark="snapshot",
        json_path=args.json,
        environment=env,
        settings=dataclasses.asdict(cfg),
        check=args.check,
        log=log,
        footers=footers,
    )


if __name__ == "__main__":
    sys.exit(main())
