"""Type stubs for the native core `tensorwasm_tc._core`."""

from collections.abc import Iterable
from os import PathLike
from typing import Any, ClassVar, final

__version__: str

class TensorWasmError(Exception):
    """Every failure of tensorwasm_tc; ``kind`` is a stable machine-readable name."""

    kind: ClassVar[str]
    message: str
    trap_code: str | None
    """For traps: wasmtime's trap code, lower case (``"integer_division_by_zero"``)."""
    exit_code: int | None
    """For a guest that called ``proc_exit`` with a non-zero status."""
    stdout: str | None
    """What the guest wrote to stdout before failing."""
    stderr: str | None

class InvalidWasmError(TensorWasmError): ...
class ModuleTooLargeError(TensorWasmError): ...
class MissingExportError(TensorWasmError): ...
class InvalidArgsError(TensorWasmError): ...
class UnknownImportError(TensorWasmError): ...
class TrapError(TensorWasmError): ...
class InvokeTimeoutError(TensorWasmError): ...
class MemoryLimitError(TensorWasmError): ...
class ResourceExhaustedError(TensorWasmError): ...
class InstanceClosedError(TensorWasmError): ...
class InternalError(TensorWasmError): ...

@final
class InvokeResult:
    """The outcome of a successful call."""

    @property
    def values(self) -> list[Any]:
        """The export's results: ints for i32/i64 (signed), floats for f32/f64."""
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...
    @property
    def output_truncated(self) -> bool:
        """True when stdout or stderr reached ``max_output_bytes`` and was cut."""
    @property
    def duration_ms(self) -> float:
        """Wall-clock time of instantiate + call."""

@final
class Function:
    """A compiled module bound to its limits; thread-safe."""

    @property
    def id(self) -> str:
        """Hex BLAKE3 of the module's binary bytes."""
    @property
    def exports(self) -> dict[str, tuple[list[str], list[str]]]: ...
    @property
    def limits(self) -> dict[str, int]: ...
    def invoke(
        self,
        export: str | None = None,
        args: Iterable[int | float] | None = None,
        deadline_ms: int | None = None,
    ) -> InvokeResult:
        """Calls ``export`` on a fresh instance, with the GIL released."""
    def instantiate(self) -> Instance:
        """A persistent instance whose state survives between invokes."""

@final
class Instance:
    """A live sandbox of a function; calls on one instance are serialised."""

    @property
    def function_id(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def invoke(
        self,
        export: str | None = None,
        args: Iterable[int | float] | None = None,
        deadline_ms: int | None = None,
    ) -> InvokeResult: ...
    def close(self) -> None:
        """Frees the instance's memory and pool slot. Idempotent."""

def load(
    wasm: bytes | bytearray | str,
    *,
    cache_dir: str | PathLike[str] | None = None,
    max_module_bytes: int = ...,
    max_memory_bytes: int = ...,
    max_table_elements: int = ...,
    deadline_ms: int = ...,
    max_output_bytes: int = ...,
) -> Function:
    """Compiles (or fetches from the module cache) ``wasm`` and binds limits."""

def build_info() -> dict[str, str]:
    """``{version, git_sha, rustc_version, profile, target}`` of this build."""

def engine_info() -> dict[str, Any]:
    """Engine fingerprint, enabled WebAssembly proposals, epoch tick, pool size, allocator."""

def module_cache_stats() -> dict[str, int]:
    """Process-wide counters: memory_hits, disk_hits, compiles, disk_rejects, ..."""

def module_cache_clear() -> None:
    """Empties the in-memory level of the module cache (disk is untouched)."""
