"""Type stubs for the native core `tensorwasm_tc._core`."""

from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from typing import Any, BinaryIO, ClassVar, final

from typing_extensions import Buffer

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
class DtypeMismatchError(TensorWasmError): ...
class ShapeMismatchError(TensorWasmError): ...
class UnknownOpError(TensorWasmError): ...
class ReadOnlyError(TensorWasmError): ...
class InternalError(TensorWasmError): ...
class SnapshotInvalidError(TensorWasmError): ...
class SnapshotIncompatibleError(TensorWasmError): ...
class SnapshotSignatureInvalidError(TensorWasmError): ...

@final
class Tensor:
    """An n-dimensional array on the host: owned, shared (memfd) or borrowed.

    Zero-copy with numpy/torch through DLPack and the buffer protocol.
    """

    @staticmethod
    def zeros(dtype: str, shape: int | Sequence[int], *, shared: bool = False) -> Tensor:
        """A zero-filled tensor; ``shared=True`` puts it in a memfd another process can map."""
    @staticmethod
    def from_bytes(dtype: str, shape: int | Sequence[int], data: bytes) -> Tensor:
        """A tensor holding a copy of row-major ``data``."""
    @staticmethod
    def from_numpy(array: Any) -> Tensor:
        """Wraps a numpy array without copying; read-only arrays stay read-only."""
    @staticmethod
    def from_dlpack(obj: Any) -> Tensor:
        """Wraps a DLPack producer (numpy, torch, Tensor) without copying."""
    @staticmethod
    def from_shm_fd(
        fd: int, dtype: str, shape: int | Sequence[int], *, writable: bool = False
    ) -> Tensor:
        """Maps a shared-memory region received from another process."""
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def strides(self) -> tuple[int, ...]:
        """Strides in elements (numpy's are in bytes)."""
    @property
    def ndim(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:N"``."""
    @property
    def read_only(self) -> bool: ...
    @property
    def is_contiguous(self) -> bool: ...
    @property
    def storage_kind(self) -> str:
        """``"host"``, ``"shm"``, ``"external"`` or ``"device"``."""
    def shm_fd(self) -> int: ...
    def tobytes(self) -> bytes:
        """Row-major bytes (a copy; from a device tensor, after its stream's work)."""
    def contiguous(self) -> Tensor:
        """A contiguous copy on the same device (itself when already contiguous)."""
    def to(self, device: str) -> Tensor:
        """The tensor on ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (itself when it
        is there): explicit, stream-ordered copies. Device memory needs a CUDA
        backend (`device_info`); in this build, the fake one."""
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __len__(self) -> int: ...

def op(name: str, *args: Any) -> Tensor:
    """Runs op ``name`` of ABI v1 on tensors/numbers (GIL released)."""

def wat_to_wasm(text: str, max_module_bytes: int = ...) -> bytes:
    """WebAssembly text to a binary module; ``InvalidWasmError`` on bad text."""

def write_all(fd: int, data: bytes) -> None:
    """Writes all of ``data`` to ``fd`` without releasing the GIL (short appends)."""

def op_names() -> list[str]:
    """Every op of ABI v1."""

def kernel_dispatch_counts() -> list[tuple[str, str, int]]:
    """``[(op, device, count)]`` of dispatches so far in this process."""

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
    @property
    def outputs(self) -> dict[str, Tensor]:
        """Tensors the guest named with ``output_set``."""

@final
class Function:
    """A compiled module bound to its limits; thread-safe."""

    @property
    def id(self) -> str:
        """Hex BLAKE3 of the module's binary bytes."""
    @property
    def exports(self) -> dict[str, tuple[list[str], list[str]]]: ...
    @property
    def device(self) -> str: ...
    @property
    def limits(self) -> dict[str, int]: ...
    @property
    def init_export(self) -> str | None:
        """The export run once at load time for a pre-initialised function."""
    def invoke(
        self,
        export: str | None = None,
        args: Iterable[int | float] | None = None,
        deadline_ms: int | None = None,
        inputs: Mapping[str, Any] | None = None,
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
        inputs: Mapping[str, Any] | None = None,
    ) -> InvokeResult: ...
    def snapshot(
        self,
        dest: str | PathLike[str] | BinaryIO,
        *,
        tenant_id: int = 0,
        instance_id: str = "",
        embed_module: bool = False,
        compression: str | None = None,
        level: int = 3,
        signing_key: bytes | None = None,
    ) -> dict[str, int]:
        """Writes a snapshot; returns ``{file_bytes, sections, zero_pages_skipped}``."""
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
    bindings: Mapping[str, Mapping[str, Any]] | None = None,
    init_export: str | None = None,
    device: str | None = None,
) -> Function:
    """Compiles (or fetches from the module cache) ``wasm`` and binds limits."""

SNAPSHOT_VERSION: int

def restore(
    source: str | PathLike[str] | bytes | bytearray | BinaryIO,
    function: Function | None = None,
    *,
    cache_dir: str | PathLike[str] | None = None,
    max_module_bytes: int = ...,
    max_memory_bytes: int = ...,
    max_table_elements: int = ...,
    deadline_ms: int = ...,
    max_output_bytes: int = ...,
    signing_key: bytes | None = None,
    require_signature: bool = False,
    device: str | None = None,
) -> tuple[Instance, dict[str, Any]]:
    """Restores an instance; returns it and the snapshot's metadata."""

def snapshot_inspect(
    source: str | PathLike[str] | bytes | bytearray | BinaryIO,
    *,
    signing_key: bytes | None = None,
    require_signature: bool = False,
) -> dict[str, Any]:
    """Reads and checks a whole snapshot; describes its metadata and sections."""

def build_info() -> dict[str, str]:
    """``{version, git_sha, rustc_version, profile, target}`` of this build."""

def device_info() -> dict[str, Any]:
    """What this process can compute on (probed once): ``backend`` (``"cuda"``,
    ``"fake"`` or None), ``devices`` (``index``, ``device``, ``name``,
    ``total_memory``, ``compute_capability``), ``driver_version``,
    ``bindings_cuda_version``, ``libraries`` (each CUDA library and the file
    loaded, or None), ``reason`` (why there is no device) and ``default``
    (what ``TENSOR_WASM_DEVICE`` resolves to)."""

def device_memory() -> list[dict[str, Any]]:
    """``[{device, live, cached, capacity}]`` (bytes) of each device in use."""

def resolve_device(spec: str) -> str:
    """``auto | cpu | cuda | cuda:N`` resolved here: ``"cpu"`` or ``"cuda:N"``;
    `InvalidArgsError` when the device cannot be had."""

def engine_info() -> dict[str, Any]:
    """Engine fingerprint, enabled WebAssembly proposals, epoch tick, pool size, allocator."""

def module_cache_stats() -> dict[str, int]:
    """Process-wide counters: memory_hits, disk_hits, compiles, disk_rejects, ..."""

def module_cache_clear() -> None:
    """Empties the in-memory level of the module cache (disk is untouched)."""

def blake3_digest(data: Buffer) -> bytes:
    """BLAKE3 (32 bytes) of a buffer, on every core for large ones; GIL released."""

def blake3_chunks(data: Buffer, chunk_bytes: int) -> list[bytes]:
    """BLAKE3 of every ``chunk_bytes`` piece of a buffer (the last may be shorter)."""

def send_all(fd: int, data: Buffer, offset: int = 0, length: int | None = None) -> None:
    """Sends ``length`` bytes of ``data`` from ``offset`` on socket ``fd``; GIL released."""

def recv_into(
    fd: int,
    buffer: Buffer,
    offset: int,
    length: int,
    chunk_bytes: int = 0,
    digests: Sequence[bytes] | None = None,
) -> int:
    """Receives exactly ``length`` bytes into ``buffer[offset:]``; with ``digests``
    checks each ``chunk_bytes`` chunk and returns the first bad chunk's index, else -1."""

# --- the native HTTP front of `tensor-wasm serve` and what it shares ----------

HTTP_BUCKETS: list[float]

def front_status_table() -> list[tuple[str, int]]:
    """``[(kind, status)]`` of the error kinds the native front answers with."""

@final
class RateLimiter:
    """Per-token token buckets, shared by the native front and the app."""

    def __init__(
        self, qps: float, burst: float, limit_text: str, max_buckets: int = 100_000
    ) -> None: ...
    def check(self, key: str, now: float | None = None) -> tuple[bool, int, list[tuple[str, str]]]:
        """``(allowed, retry_after, headers)``; ``now`` in ``time.monotonic`` seconds."""
    def __len__(self) -> int: ...

@final
class HttpStats:
    """HTTP counters, duration histogram, in-flight gauges, spawns, refusals."""

    def __init__(self) -> None: ...
    def begin(self, method: str, route: str) -> None: ...
    def end(self, method: str, route: str, status: int, seconds: float) -> None: ...
    def spawned(self) -> None: ...
    def limited(self) -> None: ...
    @property
    def spawns(self) -> int: ...
    @property
    def rate_limited(self) -> int: ...
    @property
    def front_requests(self) -> tuple[int, int]:
        """``(answered by the native front, handed to the app)``."""
    def snapshot(
        self,
    ) -> list[tuple[str, str, int, list[tuple[int, int]], list[int], float, int]]:
        """``[(method, route, in_flight, [(status, count)], per-bucket counts
        (last +Inf), sum, count)]``."""

@final
class Slots:
    """A concurrency cap shared by the native front and the app."""

    def __init__(self, cap: int) -> None: ...
    def try_acquire(self) -> bool: ...
    def release(self) -> None: ...
    @property
    def used(self) -> int: ...
    @property
    def cap(self) -> int: ...

@final
class AuditSink:
    """Whole-line appends to a descriptor under one lock."""

    def __init__(self, fd: int) -> None: ...
    def write(self, line: bytes) -> None: ...
    def close(self) -> None: ...

@final
class FunctionTable:
    """The functions the native front invokes itself, by id."""

    def __init__(self) -> None: ...
    def insert(self, id: str, tenant: int, function: Function) -> None: ...
    def remove(self, id: str) -> bool: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: str) -> bool: ...

@final
class Front:
    """Serves function invokes on ``host:port`` and forwards every other
    request to the app on the Unix socket ``upstream``."""

    def __init__(
        self,
        host: str,
        port: int,
        upstream: str,
        *,
        tokens: list[tuple[str, str, list[int] | None]],
        dev: bool,
        require_tenant: bool,
        limiter: RateLimiter | None,
        stats: HttpStats,
        invoke_slots: Slots,
        audit: AuditSink | None,
        table: FunctionTable,
        max_body_bytes: int,
        max_args: int,
        request_timeout_s: float,
        workers: int,
        blocking_threads: int,
        serve_invokes: bool,
    ) -> None: ...
    @property
    def address(self) -> tuple[str, int]: ...
    def stop_accepting(self) -> None: ...
    def drain(self, timeout_s: float) -> bool: ...
    def close(self) -> None: ...

def cuda_kernels_check(major: int, minor: int) -> int:
    """Compiles every CUDA kernel module with NVRTC for compute capability
    ``major.minor`` and checks its entry points; the number of modules."""

def nvrtc_version() -> tuple[int, int] | None:
    """NVRTC's version, or None when libnvrtc cannot be loaded."""

def device_synchronize(device: str) -> None:
    """Waits until every copy and op queued on ``device`` (``"cuda:N"``) is done."""
