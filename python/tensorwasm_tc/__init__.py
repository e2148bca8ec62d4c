"""tensorwasm_tc: a runtime for sandboxed tensor functions.

Public API (re-exports only)::

    from tensorwasm_tc import Runtime
    rt = Runtime()
    fn = rt.load(wasm)                 # bytes (binary) or str (WAT text)
    fn.invoke("add", [2, 3]).values    # [5]
"""

from __future__ import annotations

from tensorwasm_tc import ops
from tensorwasm_tc._core import (
    DtypeMismatchError,
    InstanceClosedError,
    InternalError,
    InvalidArgsError,
    InvalidWasmError,
    InvokeResult,
    InvokeTimeoutError,
    MemoryLimitError,
    MissingExportError,
    ModuleTooLargeError,
    ReadOnlyError,
    ResourceExhaustedError,
    ShapeMismatchError,
    SnapshotIncompatibleError,
    SnapshotInvalidError,
    SnapshotSignatureInvalidError,
    Tensor,
    TensorWasmError,
    TrapError,
    UnknownImportError,
    UnknownOpError,
    __version__,
    build_info,
    device_info,
    resolve_device,
)
from tensorwasm_tc.runtime import (
    SNAPSHOT_VERSION,
    Function,
    Instance,
    Runtime,
    default_home,
    inspect_snapshot,
)

__all__ = [
    "SNAPSHOT_VERSION",
    "DtypeMismatchError",
    "Function",
    "Instance",
    "InstanceClosedError",
    "InternalError",
    "InvalidArgsError",
    "InvalidWasmError",
    "InvokeResult",
    "InvokeTimeoutError",
    "MemoryLimitError",
    "MissingExportError",
    "ModuleTooLargeError",
    "ReadOnlyError",
    "ResourceExhaustedError",
    "Runtime",
    "ShapeMismatchError",
    "SnapshotIncompatibleError",
    "SnapshotInvalidError",
    "SnapshotSignatureInvalidError",
    "Tensor",
    "TensorWasmError",
    "TrapError",
    "UnknownImportError",
    "UnknownOpError",
    "__version__",
    "build_info",
    "default_home",
    "device_info",
    "inspect_snapshot",
    "ops",
    "resolve_device",
]
