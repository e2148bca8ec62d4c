//! The one error type of the core and its stable `kind` strings.
//!
//! Every failure the core reports carries an [`ErrorKind`]; its string form is a
//! public contract (Python's `TensorWasmError.kind`, the HTTP envelope's
//! `kind`). Kinds are only ever added, never renamed.

use std::fmt;

/// What went wrong, in a form callers can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The bytes are not a valid module (or not valid WAT text).
    InvalidWasm,
    /// The module is larger than `max_module_bytes`.
    ModuleTooLarge,
    /// The named export does not exist or is not a function.
    MissingExport,
    /// Arguments do not match the export's signature.
    InvalidArgs,
    /// The module imports something the runtime does not provide.
    UnknownImport,
    /// The guest trapped (or exited with a non-zero status).
    Trap,
    /// The call ran past its wall-clock deadline.
    InvokeTimeout,
    /// The guest asked for more linear memory or table space than its cap.
    MemoryLimit,
    /// A process-wide pool (instance slots) is full.
    ResourceExhausted,
    /// The instance was closed.
    InstanceClosed,
    /// A tensor's dtype is not one the operation accepts.
    DtypeMismatch,
    /// Tensor shapes do not fit the operation (or do not broadcast).
    ShapeMismatch,
    /// No operation of that name.
    UnknownOp,
    /// A write to a read-only tensor (a bound artifact, a read-only borrow).
    ReadOnly,
    /// A bug or an environment failure; never caused by the guest.
    Internal,
    /// A snapshot file is corrupt, truncated, fails a checksum or exceeds a limit.
    SnapshotInvalid,
    /// A snapshot of another format version, or of another function.
    SnapshotIncompatible,
    /// A snapshot's signature is missing (when required) or does not match.
    SnapshotSignatureInvalid,
}

impl ErrorKind {
    /// Every kind, in declaration order (for tests and bindings).
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::InvalidWasm,
        ErrorKind::ModuleTooLarge,
        ErrorKind::MissingExport,
        ErrorKind::InvalidArgs,
        ErrorKind::UnknownImport,
        ErrorKind::Trap,
        ErrorKind::InvokeTimeout,
        ErrorKind::MemoryLimit,
        ErrorKind::ResourceExhausted,
        ErrorKind::InstanceClosed,
        ErrorKind::DtypeMismatch,
        ErrorKind::ShapeMismatch,
        ErrorKind::UnknownOp,
        ErrorKind::ReadOnly,
        ErrorKind::Internal,
        ErrorKind::SnapshotInvalid,
        ErrorKind::SnapshotIncompatible,
        ErrorKind::SnapshotSignatureInvalid,
    ];

    /// The stable machine-readable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidWasm => "invalid_wasm",
            ErrorKind::ModuleTooLarge => "module_too_large",
            ErrorKind::MissingExport => "missing_export",
            ErrorKind::InvalidArgs => "invalid_args",
            ErrorKind::UnknownImport => "unknown_import",
            ErrorKind::Trap => "trap",
            ErrorKind::InvokeTimeout => "invoke_timeout",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::InstanceClosed => "instance_closed",
            ErrorKind::DtypeMismatch => "dtype_mismatch",
            ErrorKind::ShapeMismatch => "shape_mismatch",
            ErrorKind::UnknownOp => "unknown_op",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::Internal => "internal",
            ErrorKind::SnapshotInvalid => "snapshot_invalid",
            ErrorKind::SnapshotIncompatible => "snapshot_incompatible",
            ErrorKind::SnapshotSignatureInvalid => "snapshot_signature_invalid",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of the core, with everything a caller may want to show.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CoreError {
    pub kind: ErrorKind,
    pub message: String,
    /// For traps: the trap code (`"integer_division_by_zero"`, ...).
    pub trap_code: Option<&'static str>,
    /// For a guest that called `proc_exit` with a non-zero status.
    pub exit_code: Option<i32>,
    /// What the guest wrote before failing.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

impl CoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CoreError {
            kind,
            message: message.into(),
            trap_code: None,
            exit_code: None,
            stdout: None,
            stderr: None,
        }
    }

    pub fn invalid_args(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgs, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_strings_are_pinned() {
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "invalid_wasm",
                "module_too_large",
                "missing_export",
                "invalid_args",
                "unknown_import",
                "trap",
                "invoke_timeout",
                "memory_limit",
                "resource_exhausted",
                "instance_closed",
                "dtype_mismatch",
                "shape_mismatch",
                "unknown_op",
                "read_only",
                "internal",
                "snapshot_invalid",
                "snapshot_incompatible",
                "snapshot_signature_invalid",
            ]
        );
    }
}
