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
from typing import Any, BinaryIO, Final, Literal

from tensorwasm_tc import _core

DEFAULT_MAX_MEMORY_BYTES: Final = 256 << 20
DEFAULT_DEADLINE_MS: Final = 30_000
DEFAULT_MAX_MODULE_BYTES: Final = 64 << 20
DEFAULT_MAX_TABLE_ELEMENTS: Final = 10_000
DEFAULT_MAX_OUTPUT_BYTES: Final = 1 << 20

Number = int | float
SnapshotSource = str | os.PathLike[str] | bytes | bytearray | BinaryIO
SnapshotDest = str | os.PathLike[str] | BinaryIO

SNAPSHOT_VERSION: Final = _core.SNAPSHOT_VERSION


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """`$TENSOR_WASM_HOME`, or `~/.tensor-wasm` when unset."""
    env = os.environ if environ is None else environ
    raw = env.get("TENSOR_WASM_HOME", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".tensor-wasm"


def snapshot_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The snapshot signing key: the contents of ``$TENSOR_WASM_SNAPSHOT_KEY_FILE``
    (trailing whitespace removed), else the UTF-8 of ``$TENSOR_WASM_SNAPSHOT_KEY``,
    else ``None``."""
    env = os.environ if environ is None else environ
    path = env.get("TENSOR_WASM_SNAPSHOT_KEY_FILE", "").strip()
    if path:
        return read_key_file(path)
    value = env.get("TENSOR_WASM_SNAPSHOT_KEY", "")
    return value.encode() if value else None


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """A signing key file's bytes with trailing ASCII whitespace removed."""
    try:
        return Path(path).read_bytes().rstrip(b" \t\r\n")
    except OSError as e:
        raise _core.InvalidArgsError(f"cannot read snapshot key file {path}: {e.strerror}") from e


def inspect_snapshot(
    source: SnapshotSource,
    *,
    signing_key: bytes | None = None,
    require_signature: bool = False,
) -> dict[str, Any]:
    """Reads a whole snapshot offline, checking every checksum (and the
    signature when a key is given), and describes it: metadata, sections,
    memory size and whether the module is embedded. Nothing is restored."""
    return _core.snapshot_inspect(
        _fspath(source), signing_key=signing_key, require_signature=require_signature
    )


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("", "0", "false", "no", "off"):
        return False
    raise _core.InvalidArgsError(f"{name} must be 1/true/yes/on or 0/false/no/off, not {raw!r}")


def _fspath(x: Any) -> Any:
    return os.fspath(x) if isinstance(x, os.PathLike) else x


class Runtime:
    """Loads functions and sets the limits their instances run under.

    ``cache_dir`` is where compiled modules are kept on disk: ``None`` means
    ``$TENSOR_WASM_HOME/modules``; ``False`` turns the disk cache off. All
    runtimes of a process share one engine and one in-memory module cache.

    ``snapshot_key`` signs every snapshot this runtime's instances write and
    checks the signature of every snapshot it restores; ``None`` (the
    default) reads it from ``$TENSOR_WASM_SNAPSHOT_KEY_FILE`` or
    ``$TENSOR_WASM_SNAPSHOT_KEY``, ``False`` means no key. ``require_signature``
    refuses unsigned snapshots on restore and needs a key (default:
    ``$TENSOR_WASM_SNAPSHOT_REQUIRE_SIGNATURE``, one of 1/true/yes/on or
    0/false/no/off).
    """

    __slots__ = (
        "cache_dir",
        "deadline_ms",
        "device",
        "max_memory_bytes",
        "max_module_bytes",
        "max_output_bytes",
        "max_table_elements",
        "require_signature",
        "snapshot_key",
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
        snapshot_key: bytes | Literal[False] | None = None,
        require_signature: bool | None = None,
        device: str | None = None,
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
        if snapshot_key is None:
            snapshot_key = snapshot_key_from_env()
        self.snapshot_key: bytes | None = snapshot_key or None
        if require_signature is None:
            require_signature = _env_flag("TENSOR_WASM_SNAPSHOT_REQUIRE_SIGNATURE")
        if require_signature and self.snapshot_key is None:
            raise _core.InvalidArgsError(
                "require_signature needs a snapshot key (TENSOR_WASM_SNAPSHOT_KEY_FILE or "
                "TENSOR_WASM_SNAPSHOT_KEY) to check signatures with"
            )
        self.require_signature = require_signature
        # Where instances run ops: "cpu" or "cuda:N", resolved now
        # (None: TENSOR_WASM_DEVICE, default auto; see docs/DEVICES.md).
        self.device: str = _core.resolve_device(
            device if device is not None else os.environ.get("TENSOR_WASM_DEVICE", "auto")
        )

    def load(
        self,
        wasm: bytes | bytearray | memoryview | str | Path,
        *,
        bindings: Mapping[str, Mapping[str, Any]] | None = None,
        init_export: str | None = None,
    ) -> Function:
        """Compiles `wasm` (binary bytes, WAT text, or a path to either).

        Compiled once per process and cached on disk; loading the same bytes
        again costs a hash and a lookup. ``bindings`` maps an alias to named
        tensors (numpy arrays, torch tensors, `Tensor`s: anything with
        ``__dlpack__``); guests read them, without a copy and read-only,
        through ``tensor_bound("alias/name")``.

        ``init_export`` pre-initialises the function: that export runs once,
        now, in a fresh instance, and the memory, globals, tables and kept
        tensors it leaves become the starting state of every later instance
        (mapped copy-on-write, so instantiation stays in microseconds).
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
            **self._limits(),
            bindings=None if bindings is None else {k: dict(v) for k, v in bindings.items()},
            init_export=init_export,
        )
        return Function(inner, self)

    def _limits(self) -> dict[str, Any]:
        """The module cache and limits every function this runtime loads gets."""
        return {
            "cache_dir": self.cache_dir,
            "max_module_bytes": self.max_module_bytes,
            "max_memory_bytes": self.max_memory_bytes,
            "max_table_elements": self.max_table_elements,
            "deadline_ms": self.deadline_ms,
            "max_output_bytes": self.max_output_bytes,
            "device": self.device,
        }

    def restore(
        self,
        source: SnapshotSource,
        *,
        function: Function | None = None,
    ) -> Instance:
        """Resumes an instance from a snapshot (a path, bytes or a binary file).

        With ``function``, the snapshot must be of that function (else
        `SnapshotIncompatibleError`). Without it, the snapshot must embed its
        module (``inst.snapshot(..., embed_module=True)``), which is loaded
        under this runtime's limits. The instance is returned only once every
        checksum (and the signature, when this runtime has a key) has passed.
        """
        inner, meta = _core.restore(
            _fspath(source),
            None if function is None else function._inner,
            **self._limits(),
            signing_key=self.snapshot_key,
            require_signature=self.require_signature,
        )
        inst = Instance(inner, self)
        inst.restored_from = meta
        return inst

    def __repr__(self) -> str:
        return (
            f"Runtime(max_memory_bytes={self.max_memory_bytes}, deadline_ms={self.deadline_ms}, "
            f"cache_dir={str(self.cache_dir) if self.cache_dir else None!r})"
        )


class Function:
    """Deployed code: a compiled module plus its limits. Thread-safe."""

    __slots__ = ("_inner", "_runtime")

    def __init__(self, inner: _core.Function, runtime: Runtime | None = None) -> None:
        self._inner = inner
        self._runtime = runtime

    @property
    def id(self) -> str:
        """Hex BLAKE3 of the module's binary bytes."""
        return self._inner.id

    @property
    def exports(self) -> dict[str, tuple[list[str], list[str]]]:
        """``{name: ([param types], [result types])}`` of exported functions."""
        return self._inner.exports

    @property
    def device(self) -> str:
        """Where its instances run ops: ``"cpu"`` or ``"cuda:N"`` (the runtime's)."""
        return self._inner.device

    @property
    def limits(self) -> dict[str, int]:
        return self._inner.limits

    @property
    def init_export(self) -> str | None:
        """The initialiser run once at load time (pre-initialised functions)."""
        return self._inner.init_export

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
        return Instance(self._inner.instantiate(), self._runtime)

    def __repr__(self) -> str:
        return f"Function(id={self.id[:16]}…, exports={sorted(self.exports)})"


class Instance:
    """A live sandbox of a function. Use as a context manager or `close()` it."""

    __slots__ = ("_inner", "_runtime", "restored_from")

    def __init__(self, inner: _core.Instance, runtime: Runtime | None = None) -> None:
        self._inner = inner
        self._runtime = runtime
        #: For a restored instance, the snapshot's metadata (tenant_id,
        #: instance_id, created_unix_ms, function_hash, ..., verification).
        self.restored_from: dict[str, Any] | None = None

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

    def snapshot(
        self,
        dest: SnapshotDest,
        *,
        embed_module: bool = False,
        compression: str | None = None,
        level: int = 3,
        tenant_id: int = 0,
        instance_id: str = "",
    ) -> dict[str, int]:
        """Freezes the instance to ``dest`` (a path or a binary file object).

        Memory (all-zero pages skipped), every global, the tables and the
        tensors it keeps are written; ``embed_module`` adds the function's
        bytes so the file alone restores on any host; ``compression="zstd"``
        compresses at ``level``. A path is written beside and renamed into
        place, so it never holds half a snapshot. Signed when the runtime
        has a snapshot key. Returns ``{file_bytes, sections, zero_pages_skipped}``.
        """
        key = None if self._runtime is None else self._runtime.snapshot_key
        return self._inner.snapshot(
            _fspath(dest),
            tenant_id=tenant_id,
            instance_id=instance_id,
            embed_module=embed_module,
            compression=compression,
            level=level,
            signing_key=key,
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
