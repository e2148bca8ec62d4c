//! Return codes of the ABI. Values are a public contract; never renumber.

use crate::error::ErrorKind;

/// A negative result of an ABI call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum AbiCode {
    /// The import exists but this host cannot do it (e.g. CUDA on a CPU host).
    NotAvailable = -1,
    /// A (ptr, len) reaches outside the guest's memory, or the module exports
    /// no memory named `memory`.
    InvalidPointer = -2,
    /// A handle that is not live in this invoke.
    InvalidHandle = -3,
    /// A tensor's dtype is not one the call accepts.
    DtypeMismatch = -4,
    /// Shapes do not fit (or a buffer's size does not match a shape).
    ShapeMismatch = -5,
    /// The memory cap or the handle limit was reached.
    ResourceExhausted = -6,
    /// No op of that name in ABI v1.
    UnknownOp = -7,
    /// A write to a read-only tensor (bound artifacts, invoke inputs).
    ReadOnly = -8,
    /// A malformed argument: a bad argv record, a bad dtype code, a bad name.
    InvalidArgs = -9,
    /// More than 128 argv records or more than 4096 argv bytes.
    KernelArgsUnsupported = -10,
    /// The device (or a kernel) failed.
    DeviceError = -11,
}

impl AbiCode {
    pub const ALL: [AbiCode; 11] = [
        AbiCode::NotAvailable,
        AbiCode::InvalidPointer,
        AbiCode::InvalidHandle,
        AbiCode::DtypeMismatch,
        AbiCode::ShapeMismatch,
        AbiCode::ResourceExhausted,
        AbiCode::UnknownOp,
        AbiCode::ReadOnly,
        AbiCode::InvalidArgs,
        AbiCode::KernelArgsUnsupported,
        AbiCode::DeviceError,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn name(self) -> &'static str {
        match self {
            AbiCode::NotAvailable => "NotAvailable",
            AbiCode::InvalidPointer => "InvalidPointer",
            AbiCode::InvalidHandle => "InvalidHandle",
            AbiCode::DtypeMismatch => "DtypeMismatch",
            AbiCode::ShapeMismatch => "ShapeMismatch",
            AbiCode::ResourceExhausted => "ResourceExhausted",
            AbiCode::UnknownOp => "UnknownOp",
            AbiCode::ReadOnly => "ReadOnly",
            AbiCode::InvalidArgs => "InvalidArgs",
            AbiCode::KernelArgsUnsupported => "KernelArgsUnsupported",
            AbiCode::DeviceError => "DeviceError",
        }
    }

    /// The code a core error becomes at the ABI boundary.
    pub fn from_kind(kind: ErrorKind) -> AbiCode {
        match kind {
            ErrorKind::DtypeMismatch => AbiCode::DtypeMismatch,
            ErrorKind::ShapeMismatch => AbiCode::ShapeMismatch,
            ErrorKind::MemoryLimit | ErrorKind::ResourceExhausted => AbiCode::ResourceExhausted,
            ErrorKind::UnknownOp => AbiCode::UnknownOp,
            ErrorKind::ReadOnly => AbiCode::ReadOnly,
            ErrorKind::InvalidArgs | ErrorKind::MissingExport => AbiCode::InvalidArgs,
            _ => AbiCode::DeviceError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_pinned() {
        let got: Vec<(i32, &str)> = AbiCode::ALL.iter().map(|c| (c.code(), c.name())).collect();
        assert_eq!(
            got,
            [
                (-1, "NotAvailable"),
                (-2, "InvalidPointer"),
                (-3, "InvalidHandle"),
                (-4, "DtypeMismatch"),
                (-5, "ShapeMismatch"),
                (-6, "ResourceExhausted"),
                (-7, "UnknownOp"),
                (-8, "ReadOnly"),
                (-9, "InvalidArgs"),
                (-10, "KernelArgsUnsupported"),
                (-11, "DeviceError"),
            ]
        );
    }
}
