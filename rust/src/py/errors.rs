//! `CoreError` → Python exceptions: one base class, one subclass per kind.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::error::{CoreError, ErrorKind};

create_exception!(
    _core,
    TensorWasmError,
    PyException,
    "Every failure of tensorwasm_tc; `.kind` says which."
);
create_exception!(
    _core,
    InvalidWasmError,
    TensorWasmError,
    "The bytes are not a valid module."
);
create_exception!(
    _core,
    ModuleTooLargeError,
    TensorWasmError,
    "The module exceeds the size cap."
);
create_exception!(
    _core,
    MissingExportError,
    TensorWasmError,
    "No such exported function."
);
create_exception!(
    _core,
    InvalidArgsError,
    TensorWasmError,
    "Arguments do not match the signature."
);
create_exception!(
    _core,
    UnknownImportError,
    TensorWasmError,
    "The module imports something not provided."
);
create_exception!(
    _core,
    TrapError,
    TensorWasmError,
    "The guest trapped or exited non-zero."
);
create_exception!(
    _core,
    InvokeTimeoutError,
    TensorWasmError,
    "The call ran past its deadline."
);
create_exception!(
    _core,
    MemoryLimitError,
    TensorWasmError,
    "The guest hit its memory or table cap."
);
create_exception!(
    _core,
    ResourceExhaustedError,
    TensorWasmError,
    "A process-wide pool is full."
);
create_exception!(
    _core,
    InstanceClosedError,
    TensorWasmError,
    "The instance was closed."
);
create_exception!(
    _core,
    DtypeMismatchError,
    TensorWasmError,
    "A tensor has the wrong dtype."
);
create_exception!(
    _core,
    ShapeMismatchError,
    TensorWasmError,
    "Tensor shapes do not fit."
);
create_exception!(
    _core,
    UnknownOpError,
    TensorWasmError,
    "No operation of that name."
);
create_exception!(
    _core,
    ReadOnlyError,
    TensorWasmError,
    "A write to a read-only tensor."
);
create_exception!(
    _core,
    InternalError,
    TensorWasmError,
    "A bug or an environment failure."
);

create_exception!(
    _core,
    SnapshotInvalidError,
    TensorWasmError,
    "A snapshot is corrupt, truncated or over a limit."
);
create_exception!(
    _core,
    SnapshotIncompatibleError,
    TensorWasmError,
    "A snapshot of another format version or function."
);
create_exception!(
    _core,
    SnapshotSignatureInvalidError,
    TensorWasmError,
    "A snapshot signature is missing or does not match."
);

fn class_of(py: Python<'_>, kind: ErrorKind) -> Bound<'_, pyo3::types::PyType> {
    match kind {
        ErrorKind::InvalidWasm => py.get_type::<InvalidWasmError>(),
        ErrorKind::ModuleTooLarge => py.get_type::<ModuleTooLargeError>(),
        ErrorKind::MissingExport => py.get_type::<MissingExportError>(),
        ErrorKind::InvalidArgs => py.get_type::<InvalidArgsError>(),
        ErrorKind::UnknownImport => py.get_type::<UnknownImportError>(),
        ErrorKind::Trap => py.get_type::<TrapError>(),
        ErrorKind::InvokeTimeout => py.get_type::<InvokeTimeoutError>(),
        ErrorKind::MemoryLimit => py.get_type::<MemoryLimitError>(),
        ErrorKind::ResourceExhausted => py.get_type::<ResourceExhaustedError>(),
        ErrorKind::InstanceClosed => py.get_type::<InstanceClosedError>(),
        ErrorKind::DtypeMismatch => py.get_type::<DtypeMismatchError>(),
        ErrorKind::ShapeMismatch => py.get_type::<ShapeMismatchError>(),
        ErrorKind::UnknownOp => py.get_type::<UnknownOpError>(),
        ErrorKind::ReadOnly => py.get_type::<ReadOnlyError>(),
        ErrorKind::Internal => py.get_type::<InternalError>(),
        ErrorKind::SnapshotInvalid => py.get_type::<SnapshotInvalidError>(),
        ErrorKind::SnapshotIncompatible => py.get_type::<SnapshotIncompatibleError>(),
        ErrorKind::SnapshotSignatureInvalid => py.get_type::<SnapshotSignatureInvalidError>(),
    }
}

/// Adds the classes to the module and gives each its `kind` (and `None`
/// defaults for the optional attributes, so they always exist).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = py.get_type::<TensorWasmError>();
    base.setattr("kind", ErrorKind::Internal.as_str())?;
    for attr in ["trap_code", "exit_code", "stdout", "stderr"] {
        base.setattr(attr, py.None())?;
    }
    m.add("TensorWasmError", &base)?;
    for kind in ErrorKind::ALL {
        let cls = class_of(py, kind);
        cls.setattr("kind", kind.as_str())?;
        m.add(cls.name()?, &cls)?;
    }
    Ok(())
}

/// Builds the Python exception for `e`.
pub fn to_pyerr(py: Python<'_>, e: CoreError) -> PyErr {
    let cls = class_of(py, e.kind);
    let err = PyErr::from_type(cls, e.message.clone());
    let value = err.value(py);
    // Attribute setting on a fresh exception instance cannot fail short of
    // memory exhaustion; the exception is still worth raising if it does.
    let _ = value.setattr("message", &e.message);
    if let Some(code) = e.trap_code {
        let _ = value.setattr("trap_code", code);
    }
    if let Some(code) = e.exit_code {
        let _ = value.setattr("exit_code", code);
    }
    if let Some(out) = &e.stdout {
        let _ = value.setattr("stdout", out);
    }
    if let Some(err_text) = &e.stderr {
        let _ = value.setattr("stderr", err_text);
    }
    err
}
