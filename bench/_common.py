"""Small helpers shared by the benchmark scripts under ``bench/``.

Nothing here prints: functions return values or formatted strings, and the
scripts decide what to report in their ``main`` path.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import importlib
import importlib.metadata
import json
import math
import operator
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeVar

T = TypeVar("T")

#: Version of the layout written by :func:`write_json`.
JSON_SCHEMA_VERSION = 1

# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic GC for the duration of a timed region (as timeit does)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def timer_overhead_ns(samples: int = 20_000) -> float:
    """Median cost, in ns, of the ``t0 = clock(); t1 = clock()`` pair itself.

    :func:`sample_calls` subtracts it from every per-call sample so that
    microsecond-scale calls are not inflated by the timer.
    """
    clock = time.perf_counter_ns
    deltas = [0] * samples
    with gc_paused():
        for i in range(samples):
            t0 = clock()
            t1 = clock()
            deltas[i] = t1 - t0
    return float(statistics.median(deltas))


def sample_calls(
    fn: Callable[[], object],
    iterations: int,
    *,
    warmup: int = 0,
    overhead_ns: float = 0.0,
) -> list[float]:
    """Call ``fn`` ``iterations`` times and return each call's duration in seconds.

    Every call is timed on its own with :func:`time.perf_counter_ns`; the
    timer's own cost (``overhead_ns``, see :func:`timer_overhead_ns`) is
    subtracted, clamped at zero. The GC is paused while sampling.
    """
    if iterations <= 0:
        raise ValueError("iterations must be positive")
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    raw = [0] * iterations
    with gc_paused():
        for i in range(iterations):
            t0 = clock()
            fn()
            t1 = clock()
            raw[i] = t1 - t0
    return [max(0.0, d - overhead_ns) * 1e-9 for d in raw]


def time_call(fn: Callable[[], T]) -> tuple[float, T]:
    """Run ``fn`` once and return ``(elapsed_seconds, result)``."""
    with gc_paused():
        t0 = time.perf_counter_ns()
        result = fn()
        t1 = time.perf_counter_ns()
    return (t1 - t0) * 1e-9, result


@dataclass
class Series:
    """Samples (seconds) of one contender, gathered over several rounds."""

    samples: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)

    def stats(self) -> Stats:
        return Stats.of(self.samples)

    def spread(self) -> dict[str, float]:
        """Lowest and highest per-round median: a quick stability check."""
        return {
            "rounds": len(self.round_medians),
            "round_median_min": min(self.round_medians),
            "round_median_max": max(self.round_medians),
        }


def interleaved_rounds(
    contenders: dict[str, Callable[[], object]],
    rounds: int,
    *,
    iterations: int = 1,
    warmup: int = 0,
    overhead_ns: float = 0.0,
    on_round: Callable[[int], None] | None = None,
    settle_s: float = 0.0,
) -> dict[str, Series]:
    """Time several contenders in alternation so that drifting background load
    hits all of them alike.

    Each round runs every contender for ``warmup`` untimed then ``iterations``
    timed calls (see :func:`sample_calls`); the order of the contenders is
    rotated from one round to the next. ``settle_s`` pauses before each
    contender's block, so that worker threads a previous contender left
    spinning (OpenBLAS busy-waits after every call) do not run against it.
    """
    if rounds <= 0:
        raise ValueError("rounds must be positive")
    names = list(contenders)
    out = {name: Series() for name in names}
    for r in range(rounds):
        if on_round is not None:
            on_round(r)
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if settle_s > 0:
                time.sleep(settle_s)
            xs = sample_calls(contenders[name], iterations, warmup=warmup, overhead_ns=overhead_ns)
            out[name].samples.extend(xs)
            out[name].round_medians.append(median(xs))
    return out


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of an empty sequence")
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between ranks."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError("q must be within [0, 100]")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(ordered[lo])
    frac = pos - lo
    return float(ordered[lo] * (1.0 - frac) + ordered[hi] * frac)


@dataclass(frozen=True)
class Stats:
    """Summary of a list of samples (all in the same unit, usually seconds)."""

    n: int
    median: float
    mean: float
    min: float
    max: float
    p10: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        return cls(
            n=len(values),
            median=median(values),
            mean=float(statistics.fmean(values)),
            min=float(min(values)),
            max=float(max(values)),
            p10=percentile(values, 10),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
        )


def safe_ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either side is missing or zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


# --------------------------------------------------------------------------
# Result records
# --------------------------------------------------------------------------

Field = Literal["ours", "peer", "ratio"]
Op = Literal["<", "<=", ">", ">="]
Unit = Literal["s", "x", "GFLOP/s", "req/s"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Target:
    """A goal on one field of a :class:`BenchResult`, e.g. ``ratio >= 10``."""

    field: Field
    op: Op
    value: float
    label: str

    def check(self, result: BenchResult) -> bool | None:
        """True/False when the field is known, None when it could not be measured."""
        actual = getattr(result, self.field)
        if actual is None:
            return None
        return _OPS[self.op](float(actual), self.value)


@dataclass
class BenchResult:
    """One row of a benchmark report: ours vs the peer, and their ratio.

    ``ours``/``peer`` are the headline numbers (medians) in ``unit``: ``"s"``
    for durations (always seconds; the table picks a readable scale) or
    ``"x"`` for dimensionless factors or ``"GFLOP/s"`` / ``"req/s"`` for
    throughput.
    ``ratio_def`` says how ``ratio`` was formed, e.g. ``"peer/ours"``.
    """

    name: str
    unit: Unit
    ours: float | None = None
    peer: float | None = None
    ratio: float | None = None
    ratio_def: str = ""
    targets: list[Target] = field(default_factory=list)
    ours_stats: Stats | None = None
    peer_stats: Stats | None = None
    note: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def target_outcomes(self) -> list[tuple[Target, bool | None]]:
        return [(t, t.check(self)) for t in self.targets]

    def status(self) -> str:
        """``ERROR``, ``MISS``, ``ok``, ``n/a`` (a target could not be checked) or ``-``."""
        if self.error is not None:
            return "ERROR"
        outcomes = [ok for _, ok in self.target_outcomes()]
        if not outcomes:
            return "-"
        if any(ok is False for ok in outcomes):
            return "MISS"
        if any(ok is None for ok in outcomes):
            return "n/a"
        return "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "ours": self.ours,
            "peer": self.peer,
            "ratio": self.ratio,
            "ratio_def": self.ratio_def,
            "targets": [
                {"label": t.label, "field": t.field, "op": t.op, "value": t.value, "met": ok}
                for t, ok in self.target_outcomes()
            ],
            "status": self.status(),
            "ours_stats": asdict(self.ours_stats) if self.ours_stats else None,
            "peer_stats": asdict(self.peer_stats) if self.peer_stats else None,
            "note": self.note,
            "error": self.error,
            "extra": self.extra,
        }


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """Seconds as a human-readable string with an adaptive unit."""
    if seconds is None or math.isnan(seconds):
        return "n/a"
    mag = abs(seconds)
    if mag >= 1.0:
        return f"{seconds:.3f} s"
    if mag >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if mag >= 1e-6:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e9:.0f} ns"


def format_value(value: float | None, unit: Unit) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return format_duration(value)
    if unit == "GFLOP/s":
        return f"{value:.1f} GFLOP/s"
    if unit == "req/s":
        return f"{value:.0f} req/s"
    return f"{value:.1f}x" if abs(value) >= 10 else f"{value:.2f}x"


def format_ratio(result: BenchResult) -> str:
    if result.ratio is None:
        return "n/a" if result.ratio_def else "-"
    text = format_value(result.ratio, "x")
    return f"{text} ({result.ratio_def})" if result.ratio_def else text


def format_table(results: Sequence[BenchResult], *, peer_name: str = "peer") -> str:
    """A plain-text table: benchmark | ours | peer | ratio | target | status."""
    header = ("benchmark", "ours", peer_name, "ratio", "target", "status")
    rows: list[tuple[str, ...]] = [header]
    for r in results:
        if r.error is not None:
            rows.append((r.name, "error", "", "", "", "ERROR"))
            continue
        rows.append(
            (
                r.name,
                format_value(r.ours, r.unit),
                format_value(r.peer, r.unit),
                format_ratio(r),
                ", ".join(t.label for t in r.targets) or "-",
                r.status(),
            )
        )
    return layout_rows(rows)


def layout_rows(rows: Sequence[Sequence[str]]) -> str:
    """Aligns ``rows`` (the first one a header, underlined) as plain text: the
    first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for idx, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if idx == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_notes(results: Sequence[BenchResult]) -> str:
    """Notes and errors attached to the results, one bullet each ('' if none)."""
    lines = []
    for r in results:
        if r.error is not None:
            lines.append(f"- {r.name}: ERROR: {r.error}")
        if r.note:
            lines.append(f"- {r.name}: {r.note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Environment and JSON output
# --------------------------------------------------------------------------


def distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_version(module_name: str) -> str | None:
    """``module.__version__`` when the module imports, else its dist version."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return distribution_version(module_name)
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    return distribution_version(module_name)


def usable_cpu_count() -> int | None:
    """CPUs this process may run on (affinity-aware where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return len(os.sched_getaffinity(0))
        except OSError:
            pass
    return os.cpu_count()


def environment_info(package: str = "tensorwasm_tc") -> dict[str, Any]:
    return {
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": usable_cpu_count(),
        "package": package,
        "package_version": package_version(package),
        "timestamp_utc": _dt.datetime.now(_dt.UTC).isoformat(),
    }


def write_json(
    path: str | os.PathLike[str],
    *,
    benchmark: str,
    results: Sequence[BenchResult],
    environment: dict[str, Any],
    settings: dict[str, Any],
) -> None:
    """Write a machine-readable report to ``path`` (parent dirs are created)."""
    doc = {
        "schema_version": JSON_SCHEMA_VERSION,
        "benchmark": benchmark,
        "environment": environment,
        "settings": settings,
        "results": [r.to_json() for r in results],
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def finish(
    results: Sequence[BenchResult],
    *,
    benchmark: str,
    json_path: str | None,
    environment: dict[str, Any],
    settings: dict[str, Any],
    check: bool,
    log: Callable[[str], None],
    footers: Sequence[str] = (),
) -> int:
    """Print the notes and footers, write ``--json``, and return the exit
    code: 1 when a benchmark errored, or (with ``check``) missed its target."""
    notes = format_notes(results)
    if notes:
        print("\nnotes:")
        print(notes)
    for footer in footers:
        print(f"\n({footer})")
    if json_path:
        write_json(
            json_path,
            benchmark=benchmark,
            results=results,
            environment=environment,
            settings=settings,
        )
        log(f"wrote {json_path}")
    if any(r.error is not None for r in results):
        return 1
    if check and any(r.status() == "MISS" for r in results):
        return 1
    return 0


def positive_int(text: str) -> int:
    """argparse type: a positive integer (``1e8`` accepted)."""
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``--check`` and ``-q``: the same on every benchmark."""
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 when a target is missed (errors always do)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def progress(quiet: bool) -> Callable[[str], None]:
    """A logger of ``[bench]`` progress lines on stderr (silent when quiet)."""

    def log(msg: str) -> None:
        if not quiet:
            print(f"[bench] {msg}", file=sys.stderr, flush=True)

    return log


def import_package(package: str = "tensorwasm_tc") -> ModuleType | None:
    """The package under test, or None after saying how to build it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        print(
            f"error: cannot import {package!r} ({exc}). Build and install the "
            "extension first (e.g. `maturin develop --release`).",
            file=sys.stderr,
        )
        return None
