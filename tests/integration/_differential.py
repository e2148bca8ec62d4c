"""Shared helpers for the wasmtime-py differential tests.

The reference side runs a module through wasmtime-py; the "ours" side runs it
through ``tensorwasm_tc``.  Both are reduced to an :class:`Outcome` which is then
compared with :func:`assert_same_outcome`.

This module deliberately does not import ``wasmtime`` or ``tensorwasm_tc`` at
import time: the test module decides whether to skip first, and the functions
below import lazily.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import wasmtime

CORPUS_DIR: Path = Path(__file__).resolve().parent.parent / "corpus"

Number = int | float
Case = tuple[str, str, list[Number]]

# wasmtime-py's ``TrapCode`` enum names do not all match wasmtime's own trap code
# names (which is what tensorwasm_tc reports): the Python enum calls
# WASMTIME_TRAP_CODE_UNREACHABLE_CODE_REACHED just ``UNREACHABLE``.  Normalise the
# reference side to the canonical (Rust ``wasmtime::Trap`` / C API) spelling.
_WASMTIME_PY_TRAP_ALIASES: dict[str, str] = {
    "unreachable": "unreachable_code_reached",
}


@dataclass(frozen=True)
class Outcome:
    """Result of invoking one export: values, a trap, or some other error."""

    kind: str  # "ok" | "trap" | "error"
    values: list[Number] = field(default_factory=list)
    trap_code: str | None = None
    message: str = ""

    def describe(self) -> str:
        if self.kind == "ok":
            return f"ok {format_values(self.values)}"
        if self.kind == "trap":
            return f"trap {self.trap_code!r}"
        return f"error {self.message}"


# ----------------------------------------------------------------------------- corpus


def load_cases() -> list[Case]:
    """Load ``CASES`` from ``tests/corpus/cases.py`` (not a package, so by path)."""
    path = CORPUS_DIR / "cases.py"
    spec = importlib.util.spec_from_file_location("tensorwasm_tc_corpus_cases", path)
    if spec is None or spec.loader is None:  # pragma: no cover - defensive
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases: list[Case] = [(wat, export, list(args)) for wat, export, args in module.CASES]
    return cases


@functools.cache
def read_wat(name: str) -> str:
    return (CORPUS_DIR / name).read_text(encoding="utf-8")


def format_arg(value: Number) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def format_values(values: Sequence[Number]) -> str:
    return "[" + ", ".join(format_arg(v) for v in values) + "]"


def call_id(wat: str, export: str, args: Sequence[Number]) -> str:
    """Readable pytest id, e.g. ``i32_divrem.div_s(-2147483648,-1)``."""
    stem = wat[:-4] if wat.endswith(".wat") else wat
    return f"{stem}.{export}({','.join(format_arg(a) for a in args)})"


def normalize_results(raw: Any) -> list[Number]:
    """None -> [], scalar -> [scalar], tuple/list -> list."""
    if raw is None:
        return []
    if isinstance(raw, (tuple, list)):
        return list(raw)
    return [raw]


# -------------------------------------------------------------------------- reference


@functools.cache
def _engine() -> wasmtime.Engine:
    import wasmtime

    return wasmtime.Engine()


@functools.cache
def _reference_module(name: str) -> wasmtime.Module:
    import wasmtime

    return wasmtime.Module(_engine(), read_wat(name))


def _reference_trap_code(trap: wasmtime.Trap) -> str | None:
    code = trap.trap_code
    if code is None:
        return None
    name = str(code.name).lower()
    return _WASMTIME_PY_TRAP_ALIASES.get(name, name)


class ReferenceInstance:
    """One wasmtime-py Store + Instance; state persists across :meth:`invoke`."""

    def __init__(self, wat_name: str) -> None:
        import wasmtime

        self.store = wasmtime.Store(_engine())
        self.instance = wasmtime.Instance(self.store, _reference_module(wat_name), [])

    def invoke(self, export: str, args: Sequence[Number]) -> Outcome:
        import wasmtime

        func = self.instance.exports(self.store)[export]
        if not isinstance(func, wasmtime.Func):
            return Outcome("error", message=f"export {export!r} is not a function")
        try:
            raw = func(self.store, *args)
        except wasmtime.Trap as trap:
            return Outcome("trap", trap_code=_reference_trap_code(trap), message=str(trap))
        except wasmtime.WasmtimeError as err:
            return Outcome("error", message=f"{type(err).__name__}: {err}")
        return Outcome("ok", values=normalize_results(raw))


def run_reference(wat_name: str, export: str, args: Sequence[Number]) -> Outcome:
    """Run one export on a fresh wasmtime-py instance."""
    return ReferenceInstance(wat_name).invoke(export, args)


# ------------------------------------------------------------------------------- ours


def run_ours(
    invoke: Callable[[str, list[Number]], Any], export: str, args: Sequence[Number]
) -> Outcome:
    """Run ``invoke(export, args)`` (``fn.invoke`` or ``inst.invoke``) and classify it."""
    from tensorwasm_tc import TensorWasmError

    try:
        res = invoke(export, list(args))
    except TensorWasmError as err:
        kind = getattr(err, "kind", None)
        if kind == "trap":
            return Outcome("trap", trap_code=getattr(err, "trap_code", None), message=str(err))
        return Outcome("error", message=f"TensorWasmError(kind={kind!r}): {err}")
    return Outcome("ok", values=normalize_results(res.values))


# ---------------------------------------------------------------------------- compare


def _f64_bits(value: float) -> bytes:
    return struct.pack("<d", value)


def values_equal(expected: Number, actual: Number) -> bool:
    """Exact equality; floats by f64 bit pattern, except that any NaN equals any NaN."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return False
    if isinstance(expected, float) or isinstance(actual, float):
        if not (isinstance(expected, float) and isinstance(actual, float)):
            return False  # int vs float: wrong value type
        if math.isnan(expected) and math.isnan(actual):
            return True
        return _f64_bits(expected) == _f64_bits(actual)
    return int(expected) == int(actual)


def assert_same_outcome(reference: Outcome, ours: Outcome, where: str) -> None:
    if reference.kind == "error":
        raise AssertionError(
            f"{where}: the reference run itself failed (corpus bug?): {reference.message}"
        )
    header = f"{where}: reference {reference.describe()} != ours {ours.describe()}"
    assert ours.kind == reference.kind, header + (f" ({ours.message})" if ours.message else "")
    if reference.kind == "trap":
        if reference.trap_code is not None:
            assert ours.trap_code == reference.trap_code, header
        return
    assert len(ours.values) == len(reference.values), header + " (result arity differs)"
    for index, (exp, act) in enumerate(zip(reference.values, ours.values, strict=True)):
        assert values_equal(exp, act), (
            f"{header} (result #{index}: {exp!r} vs {act!r}, "
            f"types {type(exp).__name__}/{type(act).__name__})"
        )
