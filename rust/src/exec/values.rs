//! Typed-argv lowering: host numbers → wasm values by the export's signature.

use wasmtime::Val;

use crate::error::{CoreError, CoreResult};

/// A wasm value type, as shown to users (`"i32"`, `"f64"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValType {
    I32,
    I64,
    F32,
    F64,
    V128,
    FuncRef,
    ExternRef,
    OtherRef,
}

impl ValType {
    pub fn from_wasmtime(t: &wasmtime::ValType) -> Self {
        match t {
            wasmtime::ValType::I32 => ValType::I32,
            wasmtime::ValType::I64 => ValType::I64,
            wasmtime::ValType::F32 => ValType::F32,
            wasmtime::ValType::F64 => ValType::F64,
            wasmtime::ValType::V128 => ValType::V128,
            wasmtime::ValType::Ref(r) if r.heap_type().is_func() => ValType::FuncRef,
            wasmtime::ValType::Ref(r) if r.heap_type().is_extern() => ValType::ExternRef,
            wasmtime::ValType::Ref(_) => ValType::OtherRef,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::V128 => "v128",
            ValType::FuncRef => "funcref",
            ValType::ExternRef => "externref",
            ValType::OtherRef => "ref",
        }
    }
}

/// A number handed in by a caller (Python int/float, JSON number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArgValue {
    /// An integer that fit in i64.
    Int(i64),
    /// An integer too large for i64 (only valid for nothing; kept for the message).
    BigInt,
    Float(f64),
}

/// A result value returned to the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResultValue {
    Int(i64),
    Float(f64),
    /// v128 as an unsigned 128-bit integer.
    V128(u128),
    /// A reference (returned as "null"/opaque; not representable in Python).
    Null,
}

/// Converts `args` to wasm values for `params`; errors are `invalid_args`
/// and name the export and the argument.
pub fn lower_args(export: &str, params: &[ValType], args: &[ArgValue]) -> CoreResult<Vec<Val>> {
    if params.len() != args.len() {
        return Err(CoreError::invalid_args(format!(
            "export '{export}' takes {} argument(s) ({}), got {}",
            params.len(),
            params
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            args.len()
        )));
    }
    params
        .iter()
        .zip(args)
        .enumerate()
        .map(|(i, (ty, arg))| lower_one(export, i, *ty, *arg))
        .collect()
}

fn lower_one(export: &str, index: usize, ty: ValType, arg: ArgValue) -> CoreResult<Val> {
    let bad = |what: String| {
        CoreError::invalid_args(format!(
            "export '{export}' argument {index} ({}): {what}",
            ty.as_str()
        ))
    };
    match (ty, arg) {
        (ValType::I32, ArgValue::Int(v)) => i32::try_from(v)
            .map(Val::I32)
            .map_err(|_| bad(format!("{v} is out of range [{}, {}]", i32::MIN, i32::MAX))),
        (ValType::I64, ArgValue::Int(v)) => Ok(Val::I64(v)),
        (ValType::I32 | ValType::I64, ArgValue::BigInt) => Err(bad(format!(
            "integer is out of range [{}, {}]",
            if ty == ValType::I32 {
                i32::MIN as i64
            } else {
                i64::MIN
            },
            if ty == ValType::I32 {
                i32::MAX as i64
            } else {
                i64::MAX
            },
        ))),
        (ValType::I32 | ValType::I64, ArgValue::Float(f)) => {
            Err(bad(format!("expected an integer, got the float {f}")))
        }
        // Integers are accepted for float parameters (JSON has one number type);
        // an i64 beyond 2^53 rounds, as it would in any float conversion.
        (ValType::F32, ArgValue::Int(v)) => Ok(Val::F32((v as f32).to_bits())),
        (ValType::F64, ArgValue::Int(v)) => Ok(Val::F64((v as f64).to_bits())),
        (ValType::F32, ArgValue::Float(f)) => {
            if f.is_finite() && (f as f32).is_infinite() {
                return Err(bad(format!("{f} is out of range for f32")));
            }
            Ok(Val::F32((f as f32).to_bits()))
        }
        (ValType::F64, ArgValue::Float(f)) => Ok(Val::F64(f.to_bits())),
        (ValType::F32 | ValType::F64, ArgValue::BigInt) => Err(bad("integer is too large".into())),
        (ValType::V128 | ValType::FuncRef | ValType::ExternRef | ValType::OtherRef, _) => Err(bad(
            "this parameter type cannot be passed from the host".into(),
        )),
    }
}

/// A zero value of each result type, for the results buffer.
pub fn placeholder(ty: ValType) -> Val {
    match ty {
        ValType::I32 => Val::I32(0),
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        ValType::V128 => Val::V128(0u128.into()),
        ValType::FuncRef => Val::FuncRef(None),
        ValType::ExternRef => Val::ExternRef(None),
        ValType::OtherRef => Val::AnyRef(None),
    }
}

pub fn raise(v: &Val) -> ResultValue {
    match v {
        Val::I32(x) => ResultValue::Int(*x as i64),
        Val::I64(x) => ResultValue::Int(*x),
        Val::F32(bits) => ResultValue::Float(f32::from_bits(*bits) as f64),
        Val::F64(bits) => ResultValue::Float(f64::from_bits(*bits)),
        Val::V128(x) => ResultValue::V128(x.as_u128()),
        _ => ResultValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i32_range_is_checked() {
        assert!(lower_args("f", &[ValType::I32], &[ArgValue::Int(i32::MAX as i64)]).is_ok());
        let e = lower_args("f", &[ValType::I32], &[ArgValue::Int(1 << 31)]).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::InvalidArgs);
        assert!(e.message.contains("out of range"), "{}", e.message);
    }

    #[test]
    fn wrong_count_names_the_signature() {
        let e = lower_args("add", &[ValType::I32, ValType::I32], &[ArgValue::Int(1)]).unwrap_err();
        assert!(
            e.message.contains("takes 2 argument(s) (i32, i32), got 1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn floats_are_not_integers() {
        assert!(lower_args("f", &[ValType::I64], &[ArgValue::Float(1.5)]).is_err());
        assert_eq!(
            lower_args("f", &[ValType::F64], &[ArgValue::Int(3)]).unwrap()[0].unwrap_f64(),
            3.0
        );
    }

    #[test]
    fn f32_overflow_is_rejected_but_infinity_passes() {
        assert!(lower_args("f", &[ValType::F32], &[ArgValue::Float(1e300)]).is_err());
        assert!(lower_args("f", &[ValType::F32], &[ArgValue::Float(f64::INFINITY)]).is_ok());
    }
}
