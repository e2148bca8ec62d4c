"""Runtime, Function and Instance: the Python face of the executor.

This module owns argument defaults and where configuration comes from (the
environment is read here, once per `Runtime`); the work itself happens in
`tensorwasm_tc._core` with the GIL released. It must never add per-call
overhead beyond forwarding.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from tensorwasm_tc import _core

DEFAULT_MAX_MEMORY_BYTES: Final = 256 << 20
DEFAULT_DEADLINE_MS: Final = 30_000
DEFAULT_MAX_MODULE_BYTES: Final = 64 << 20
DEFAULT_MAX_TABLE_ELEMENTS: Final = 10_000
DEFAULT_MAX_OUTPUT_BYTES: Final = 1 << 20

Number = int | float


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """`$TENSOR_WASM_HOME`, or `~/.tensor-wasm` when unset."""
    env = os.environ if environ is None else environ
    raw = env.get("TENSOR_WASM_HOME", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".tensor-wasm"


class Runtime:
    """Loads functions and sets the limits their instances run under.

    ``cache_dir`` is where compiled modules are kept on disk: ``None`` means
    ``$TENSOR_WASM_HOME/modules``; ``False`` turns the disk cache off. All
    runtimes of a process share one engine and one in-memory module cache.
    """

    __slots__ = (
        "cache_dir",
        "deadline_ms",
        "max_memory_bytes",
        "max_module_bytes",
        "max_output_bytes",
        "max_table_elements",
    )

    def __init__(
        self,
        max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
        deadline_ms: int = DEFAULT_DEADLINE_MS,
        cache_dir: str | os.PathLike[str] | bool | None = None,
        *,
        max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
        max_table_elements: int = DEFAULT_MAX_TABLE_ELEMENTS,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        if cache_dir is None or cache_dir is True:
            self.cache_dir: Path | None = default_home() / "modules"
        elif cache_dir is False:
            self.cache_dir = None
        else:
            self.cache_dir = Path(cache_dir)
        self.max_memory_bytes = max_memory_bytes
        self.deadline_ms = deadline_ms
        self.max_module_bytes = max_module_bytes
        self.max_table_elements = max_table_elements
        self.max_output_bytes = max_output_bytes

    def load(
        self,
        wasm: bytes | bytearray | memoryview | str | Path,
        *,
        bindings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Function:
        """Compiles `wasm` (binary bytes, WAT text, or a path to either).

        Compiled once per process and cached on disk; loading the same bytes
        again costs a hash and a lookup. ``bindings`` maps an alias to named
        tensors (numpy arrays, torch tensors, `Tensor`s: anything with
        ``__dlpack__``); guests read them, without a copy and read-only,
        through ``tensor_bound("alias/name")``.
        """
        if isinstance(wasm, Path):
            data = wasm.read_bytes()
            wasm = data
            if not data.startswith(b"\0asm"):
                # WAT text; bytes that are not UTF-8 go on as a binary and are
                # refused as invalid_wasm by the core.
                with contextlib.suppress(UnicodeDecodeError):
                    wasm = data.decode("utf-8")
        if isinstance(wasm, memoryview):
            wasm = wasm.tobytes()
        inner = _core.load(
            wasm,
            cache_dir=self.cache_dir,
            max_module_bytes=self.max_module_bytes,
            max_memory_bytes=self.max_memory_bytes,
            max_table_elements=self.max_table_elements,
            deadline_ms=self.deadline_ms,
            max_output_bytes=self.max_output_bytes,
            bindings=None if bindings is None else {k: dict(v) for k, v in bindings.items()},
        )
        return Function(inner)

    def __repr__(self) -> str:
        return (
            f"Runtime(max_memory_bytes={self.max_memory_bytes}, deadline_ms={self.deadline_ms}, "
            f"cache_dir={str(self.cache_dir) if self.cache_dir else None!r})"
        )


class Function:
    """Deployed code: a compiled module plus its limits. Thread-safe."""

    __slots__ = ("_inner",)

    def __init__(self, inner: _core.Function) -> None:
        self._inner = inner

    @property
    def id(self) -> str:
        """Hex BLAKE3 of the module's binary bytes."""
        return self._inner.id

    @property
    def exports(self) -> dict[str, tuple[list[str], list[str]]]:
        """``{name: ([param types], [result types])}`` of exported functions."""
        return self._inner.exports

    @property
    def limits(self) -> dict[str, int]:
        return self._inner.limits

    def invoke(
        self,
        export: str | None = None,
        args: Iterable[Number] | None = None,
        deadline_ms: int | None = None,
        *,
        inputs: Mapping[str, Any] | None = None,
    ) -> _core.InvokeResult:
        """Calls `export` (default ``_start``, then ``main``) on a fresh instance.

        ``inputs`` are tensors the guest reads with ``tensor_input(name)``
        (zero-copy, read-only); tensors it names with ``output_set`` come back
        in ``result.outputs``.
        """
        return self._inner.invoke(
            export, args, deadline_ms, None if inputs is None else dict(inputs)
        )

    def instantiate(self) -> Instance:
        """A persistent instance whose state survives between invokes."""
        return Instance(self._inner.instantiate())

    def __repr__(self) -> str:
        return f"Function(id={self.id[:16]}…, exports={sorted(self.exports)})"


class Instance:
    """A live sandbox of a function. Use as a context manager or `close()` it."""

    __slots__ = ("_inner",)

    def __init__(self, inner: _core.Instance) -> None:
        self._inner = inner

    @property
    def function_id(self) -> str:
        return self._inner.function_id

    @property
    def closed(self) -> bool:
        return self._inner.closed

    def invoke(
        self,
        export: str | None = None,
        args: Iterable[Number] | None = None,
        deadline_ms: int | None = None,
        *,
        inputs: Mapping[str, Any] | None = None,
    ) -> _core.InvokeResult:
        """Calls `export`; memory and globals persist from earlier calls."""
        return self._inner.invoke(
            export, args, deadline_ms, None if inputs is None else dict(inputs)
        )

    def close(self) -> None:
        """Frees the instance's memory and pool slot. Idempotent."""
        self._inner.close()

    def __enter__(self) -> Instance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
