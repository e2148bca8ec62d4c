//! Element types. The numeric codes are part of the guest ABI (docs/ABI.md).

use crate::error::{CoreError, CoreResult, ErrorKind};

/// An element type. `#[repr(i32)]` values are the ABI's dtype codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    BF16 = 2,
    F64 = 3,
    I32 = 4,
    I64 = 5,
    U8 = 6,
    I8 = 7,
    Bool = 8,
}

impl DType {
    pub const ALL: [DType; 9] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::I8,
        DType::Bool,
    ];

    /// The ABI code (0 f32, 1 f16, ...).
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<DType> {
        DType::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::F64 | DType::I64 => 8,
            DType::U8 | DType::I8 | DType::Bool => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::Bool => "bool",
        }
    }

    /// Accepts our names and numpy's (`float32`, `int64`, `bool_`, ...).
    pub fn from_name(name: &str) -> CoreResult<DType> {
        Ok(match name {
            "f32" | "float32" => DType::F32,
            "f16" | "float16" => DType::F16,
            "bf16" | "bfloat16" => DType::BF16,
            "f64" | "float64" => DType::F64,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            "u8" | "uint8" => DType::U8,
            "i8" | "int8" => DType::I8,
            "bool" | "bool_" => DType::Bool,
            other => {
                return Err(CoreError::new(
                    ErrorKind::DtypeMismatch,
                    format!(
                        "unsupported dtype '{other}' (supported: f32, f16, bf16, f64, i32, i64, u8, i8, bool)"
                    ),
                ));
            }
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64 | DType::U8 | DType::I8)
    }

    /// DLPack `(code, bits)`: kDLInt 0, kDLUInt 1, kDLFloat 2, kDLBfloat 4, kDLBool 6.
    pub fn to_dlpack(self) -> (u8, u8) {
        match self {
            DType::F32 => (2, 32),
            DType::F16 => (2, 16),
            DType::BF16 => (4, 16),
            DType::F64 => (2, 64),
            DType::I32 => (0, 32),
            DType::I64 => (0, 64),
            DType::U8 => (1, 8),
            DType::I8 => (0, 8),
            DType::Bool => (6, 8),
        }
    }

    pub fn from_dlpack(code: u8, bits: u8) -> Option<DType> {
        Some(match (code, bits) {
            (2, 32) => DType::F32,
            (2, 16) => DType::F16,
            (4, 16) => DType::BF16,
            (2, 64) => DType::F64,
            (0, 32) => DType::I32,
            (0, 64) => DType::I64,
            (1, 8) => DType::U8,
            (0, 8) => DType::I8,
            (6, 8) | (1, 1) => DType::Bool,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_codes_are_pinned() {
        let codes: Vec<(i32, &str)> = DType::ALL.iter().map(|d| (d.code(), d.name())).collect();
        assert_eq!(
            codes,
            [
                (0, "f32"),
                (1, "f16"),
                (2, "bf16"),
                (3, "f64"),
                (4, "i32"),
                (5, "i64"),
                (6, "u8"),
                (7, "i8"),
                (8, "bool")
            ]
        );
        for d in DType::ALL {
            assert_eq!(DType::from_code(d.code()), Some(d));
            let (c, b) = d.to_dlpack();
            assert_eq!(DType::from_dlpack(c, b), Some(d));
        }
        assert_eq!(DType::from_code(9), None);
        assert_eq!(DType::from_code(-1), None);
    }
}
