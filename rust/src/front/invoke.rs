//! `POST /functions/{id}/invoke` in the front: the request body as the
//! Python app's `InvokeRequest` model reads it, the response and error
//! envelopes as its `_invoke` module writes them.
//!
//! `parse` accepts only bodies it reads exactly as the app would; for any
//! other body it answers `None` and the request goes to the app, which
//! serves it or gives the refusal.

use base64::Engine;
use serde::de::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::error::{CoreError, ErrorKind};
use crate::exec::values::ResultValue;
use crate::exec::{ArgValue, InvokeOutcome};
use crate::tensor::{DType, Tensor};

/// What to call.
#[derive(Debug)]
pub struct Call {
    pub export: Option<String>,
    pub args: Vec<ArgValue>,
    /// Tensor inputs, decoded as the app decodes them.
    pub inputs: Vec<(String, Tensor)>,
    /// `output_encoding` is `data_b64`.
    pub b64: bool,
}

/// A field present in the body (JSON null included), or absent.
#[derive(Default)]
enum Field<'a> {
    #[default]
    Absent,
    Present(&'a RawValue),
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(Field::Present)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Body<'a> {
    #[serde(default, borrow)]
    export: Field<'a>,
    #[serde(default, borrow)]
    args: Field<'a>,
    #[serde(default, borrow)]
    inputs: Field<'a>,
    #[serde(default, borrow)]
    output_encoding: Field<'a>,
}

/// The call a body asks for, or `None` for the app to decide.
/// `max_bytes` bounds each input tensor (the app's body-size cap).
pub fn parse(body: &[u8], max_args: usize, max_bytes: u64) -> Option<Call> {
    // A JSON object (serde would also read the fields from an array).
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let b: Body<'_> = serde_json::from_slice(body).ok()?;
    let export = match b.export {
        Field::Absent => None,
        Field::Present(raw) if raw.get() == "null" => None,
        Field::Present(raw) => Some(serde_json::from_str::<String>(raw.get()).ok()?),
    };
    let args = match b.args {
        Field::Absent => Vec::new(),
        Field::Present(raw) if raw.get() == "null" => Vec::new(),
        Field::Present(raw) => {
            let items: Vec<&RawValue> = serde_json::from_str(raw.get()).ok()?;
            if items.len() > max_args {
                return None;
            }
            items
                .iter()
                .map(|v| arg(v.get()))
                .collect::<Option<Vec<_>>>()?
        }
    };
    let mut inputs = Vec::new();
    if let Field::Present(raw) = b.inputs
        && raw.get() != "null"
    {
        let map: Vec<(String, &RawValue)> = object_entries(raw.get())?;
        for (name, t) in map {
            let tensor = input_tensor(t, max_bytes)?;
            match inputs
                .iter_mut()
                .find(|(n, _): &&mut (String, Tensor)| *n == name)
            {
                // A repeated name: the last one wins, as in the app.
                Some(slot) => slot.1 = tensor,
                None => inputs.push((name, tensor)),
            }
        }
    }
    let b64 = match b.output_encoding {
        Field::Absent => false,
        Field::Present(raw) => match serde_json::from_str::<String>(raw.get()).ok()?.as_str() {
            "data" => false,
            "data_b64" => true,
            _ => return None,
        },
    };
    Some(Call {
        export,
        args,
        inputs,
        b64,
    })
}

/// The entries of a JSON object, in order (None: not an object).
fn object_entries(text: &str) -> Option<Vec<(String, &RawValue)>> {
    struct Entries<'a>(Vec<(String, &'a RawValue)>);
    impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
                type Value = Entries<'a>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<M: serde::de::MapAccess<'de>>(
                    self,
                    mut m: M,
                ) -> Result<Entries<'a>, M::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                        out.push((k, v));
                    }
                    Ok(Entries(out))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
        }
    }
    serde_json::from_str::<Entries<'_>>(text).ok().map(|e| e.0)
}

/// The most dimensions a JSON tensor may have before the app refuses it.
const MAX_JSON_DIMS: usize = 32;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTensor<'a> {
    dtype: String,
    shape: Vec<u64>,
    #[serde(default, borrow)]
    data: Field<'a>,
    #[serde(default, borrow)]
    data_b64: Field<'a>,
}

/// `{"dtype", "shape", "data" | "data_b64"}` as the app decodes it
/// (gateway/tensors.py), or None for anything the app would refuse or read
/// differently (the app then answers).
fn input_tensor(raw: &RawValue, max_bytes: u64) -> Option<Tensor> {
    let t: JsonTensor<'_> = serde_json::from_str(raw.get()).ok()?;
    let dtype = DType::ALL.into_iter().find(|d| d.name() == t.dtype)?;
    if t.shape.len() > MAX_JSON_DIMS.min(crate::tensor::MAX_NDIM) {
        return None;
    }
    let shape: Vec<usize> = t
        .shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let nbytes = count.checked_mul(dtype.size())?;
    if nbytes as u64 > max_bytes {
        return None;
    }
    let bytes = match (t.data, t.data_b64) {
        (Field::Present(data), Field::Absent) if data.get() != "null" => {
            let values: serde_json::Value = serde_json::from_str(data.get()).ok()?;
            let serde_json::Value::Array(_) = &values else {
                return None;
            };
            let leaves = flatten(&values);
            if leaves.len() != count {
                return None;
            }
            encode_leaves(dtype, &leaves)?
        }
        (Field::Absent, Field::Present(b64)) if b64.get() != "null" => {
            let text: String = serde_json::from_str(b64.get()).ok()?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .ok()?;
            (bytes.len() == nbytes).then_some(bytes)?
        }
        _ => return None,
    };
    let out = Tensor::uninit_in(dtype, &shape, None).ok()?;
    let dst = out.data_mut_ptr().ok()?;
    // SAFETY: a fresh contiguous tensor of exactly nbytes bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, nbytes) };
    Some(out.read_only_view())
}

/// Row-major leaves of nested arrays.
fn flatten(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    let mut stack: Vec<std::slice::Iter<'_, serde_json::Value>> = Vec::new();
    if let serde_json::Value::Array(a) = v {
        stack.push(a.iter());
    }
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(serde_json::Value::Array(a)) => stack.push(a.iter()),
            Some(leaf) => out.push(leaf),
            None => {
                stack.pop();
            }
        }
    }
    out
}

/// The little-endian bytes of `leaves` as `dtype`, with the app's rules:
/// floats take numbers and "nan"/"inf"/"-inf" (not booleans), integers take
/// integers in range, bool takes booleans and 0/1.
fn encode_leaves(dtype: DType, leaves: &[&serde_json::Value]) -> Option<Vec<u8>> {
    use serde_json::Value;
    let mut out = Vec::with_capacity(leaves.len() * dtype.size());
    if dtype.is_float() {
        for v in leaves {
            let x = match v {
                Value::Number(n) => n.as_f64()?,
                Value::String(s) => match s.to_ascii_lowercase().as_str() {
                    "nan" => f64::NAN,
                    "inf" | "infinity" => f64::INFINITY,
                    "-inf" | "-infinity" => f64::NEG_INFINITY,
                    _ => return None,
                },
                _ => return None,
            };
            match dtype {
                DType::F64 => out.extend_from_slice(&x.to_le_bytes()),
                DType::F32 => out.extend_from_slice(&(x as f32).to_le_bytes()),
                DType::F16 => out.extend_from_slice(&half::f16::from_f64(x).to_le_bytes()),
                // As the app: through f32, then rounded to bf16.
                _ => out.extend_from_slice(&half::bf16::from_f32(x as f32).to_le_bytes()),
            }
        }
        return Some(out);
    }
    if dtype == DType::Bool {
        for v in leaves {
            let b = match v {
                Value::Bool(b) => *b,
                Value::Number(n) => match n.as_u64()? {
                    0 if !n.is_f64() => false,
                    1 if !n.is_f64() => true,
                    _ => return None,
                },
                _ => return None,
            };
            out.push(u8::from(b));
        }
        return Some(out);
    }
    for v in leaves {
        let Value::Number(n) = v else { return None };
        if n.is_f64() {
            return None;
        }
        let x = n.as_i64()?;
        match dtype {
            DType::I64 => out.extend_from_slice(&x.to_le_bytes()),
            DType::I32 => out.extend_from_slice(&i32::try_from(x).ok()?.to_le_bytes()),
            DType::U8 => out.push(u8::try_from(x).ok()?),
            _ => out.extend_from_slice(&i8::try_from(x).ok()?.to_le_bytes()),
        }
    }
    Some(out)
}

/// One argument: a JSON number, a boolean, or a non-finite float spelled out.
fn arg(text: &str) -> Option<ArgValue> {
    match text {
        "true" => return Some(ArgValue::Int(1)),
        "false" => return Some(ArgValue::Int(0)),
        _ => {}
    }
    let first = *text.as_bytes().first()?;
    if first == b'"' {
        let s: String = serde_json::from_str(text).ok()?;
        let v = match s.to_ascii_lowercase().as_str() {
            "nan" => f64::NAN,
            "inf" | "infinity" => f64::INFINITY,
            "-inf" | "-infinity" => f64::NEG_INFINITY,
            _ => return None,
        };
        return Some(ArgValue::Float(v));
    }
    if first != b'-' && !first.is_ascii_digit() {
        return None;
    }
    if text.contains(['.', 'e', 'E']) {
        let v: f64 = text.parse().ok()?;
        return v.is_finite().then_some(ArgValue::Float(v));
    }
    // Integers beyond i64 are the app's to refuse.
    text.parse::<i64>().ok().map(ArgValue::Int)
}

/// The error kind and message the app sends for a failed invoke.
pub fn api_error(e: &CoreError) -> (&'static str, String) {
    match e.kind {
        ErrorKind::DtypeMismatch
        | ErrorKind::ShapeMismatch
        | ErrorKind::UnknownOp
        | ErrorKind::ReadOnly => ("invalid_args", e.message.clone()),
        ErrorKind::ResourceExhausted => (
            "resource_exhausted",
            "the server has no free instance slot; retry later".to_owned(),
        ),
        ErrorKind::InvalidWasm
        | ErrorKind::ModuleTooLarge
        | ErrorKind::MissingExport
        | ErrorKind::InvalidArgs
        | ErrorKind::UnknownImport
        | ErrorKind::Trap
        | ErrorKind::InvokeTimeout
        | ErrorKind::MemoryLimit
        | ErrorKind::InstanceClosed
        | ErrorKind::SnapshotInvalid
        | ErrorKind::SnapshotIncompatible
        | ErrorKind::SnapshotSignatureInvalid => (e.kind.as_str(), e.message.clone()),
        ErrorKind::Internal => (
            "internal",
            "the executor failed; see the server log".to_owned(),
        ),
    }
}

/// HTTP status of the kinds the front answers with (the app's `STATUS`).
pub const STATUS: [(&str, u16); 20] = [
    ("invalid_args", 400),
    ("invalid_wasm", 400),
    ("missing_export", 400),
    ("unknown_import", 400),
    ("snapshot_invalid", 400),
    ("snapshot_signature_invalid", 400),
    ("instance_closed", 409),
    ("snapshot_incompatible", 409),
    ("module_too_large", 413),
    ("trap", 422),
    ("memory_limit", 422),
    ("rate_limited", 429),
    ("internal", 500),
    ("resource_exhausted", 503),
    ("overloaded", 503),
    ("not_ready", 503),
    ("invoke_timeout", 504),
    ("request_timeout", 504),
    ("invalid_json", 400),
    ("not_found", 404),
];

pub fn status_of(kind: &str) -> u16 {
    STATUS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(500, |(_, s)| *s)
}

/// `{"error": {"kind", "message"}}`.
pub fn envelope(kind: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"error": {"kind": kind, "message": message}}))
        .unwrap_or_default()
}

/// The body of a successful invoke.
pub fn success_body(function_id: &str, out: &InvokeOutcome, b64: bool) -> Vec<u8> {
    let mut w = Vec::with_capacity(160);
    w.extend_from_slice(b"{\"function_id\":");
    string(&mut w, function_id);
    w.extend_from_slice(b",\"result\":[");
    for (i, v) in out.values.iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        match *v {
            ResultValue::Int(x) => w.extend_from_slice(x.to_string().as_bytes()),
            ResultValue::Float(x) => float(&mut w, x),
            ResultValue::V128(x) => w.extend_from_slice(x.to_string().as_bytes()),
            ResultValue::Null => w.extend_from_slice(b"null"),
        }
    }
    w.extend_from_slice(b"],\"outputs\":{");
    for (i, (name, t)) in out.outputs.iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        string(&mut w, name);
        w.push(b':');
        tensor(&mut w, t, b64);
    }
    w.extend_from_slice(b"},\"stdout\":");
    string(&mut w, &out.stdout);
    w.extend_from_slice(b",\"stderr\":");
    string(&mut w, &out.stderr);
    w.extend_from_slice(b",\"duration_ms\":");
    float(&mut w, out.duration.as_secs_f64() * 1e3);
    w.push(b'}');
    w
}

fn string(w: &mut Vec<u8>, s: &str) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *w, s);
}

/// A float as JSON: a number, or "nan", "inf", "-inf".
fn float(w: &mut Vec<u8>, x: f64) {
    if x.is_nan() {
        w.extend_from_slice(b"\"nan\"");
    } else if x.is_infinite() {
        w.extend_from_slice(if x > 0.0 { b"\"inf\"" } else { b"\"-inf\"" });
    } else {
        let _ = serde_json::to_writer(&mut *w, &x);
    }
}

/// `{"dtype", "shape", "data" | "data_b64"}`; `data` is flat, row-major.
fn tensor(w: &mut Vec<u8>, t: &Tensor, b64: bool) {
    let dtype = t.dtype();
    w.extend_from_slice(b"{\"dtype\":\"");
    w.extend_from_slice(dtype.name().as_bytes());
    w.extend_from_slice(b"\",\"shape\":[");
    for (i, d) in t.shape().iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        w.extend_from_slice(d.to_string().as_bytes());
    }
    let bytes = t.to_bytes();
    if b64 {
        w.extend_from_slice(b"],\"data_b64\":\"");
        w.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(&bytes)
                .as_bytes(),
        );
        w.extend_from_slice(b"\"}");
        return;
    }
    w.extend_from_slice(b"],\"data\":[");
    let size = dtype.size();
    for (i, e) in bytes.chunks_exact(size).enumerate() {
        if i > 0 {
            w.push(b',');
        }
        let le = |n: usize| {
            let mut a = [0u8; 8];
            a[..n].copy_from_slice(&e[..n]);
            a
        };
        match dtype {
            DType::F32 => float(
                w,
                f32::from_le_bytes(e.try_into().unwrap_or_default()) as f64,
            ),
            DType::F64 => float(w, f64::from_le_bytes(le(8))),
            DType::F16 => float(w, half::f16::from_le_bytes([e[0], e[1]]).to_f64()),
            DType::BF16 => float(w, half::bf16::from_le_bytes([e[0], e[1]]).to_f64()),
            DType::I32 => {
                let v = i32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                w.extend_from_slice(v.to_string().as_bytes());
            }
            DType::I64 => {
                let v = i64::from_le_bytes(le(8));
                w.extend_from_slice(v.to_string().as_bytes());
            }
            DType::U8 => w.extend_from_slice(e[0].to_string().as_bytes()),
            DType::I8 => w.extend_from_slice((e[0] as i8).to_string().as_bytes()),
            DType::Bool => w.extend_from_slice(if e[0] != 0 { b"true" } else { b"false" }),
        }
    }
    w.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_like_the_app() {
        let c = parse(
            br#"{"export":"add","args":[1,2.5,true,"-Inf"]}"#,
            8,
            1 << 20,
        )
        .unwrap();
        assert_eq!(c.export.as_deref(), Some("add"));
        assert_eq!(c.args[0], ArgValue::Int(1));
        assert_eq!(c.args[1], ArgValue::Float(2.5));
        assert_eq!(c.args[2], ArgValue::Int(1));
        assert_eq!(c.args[3], ArgValue::Float(f64::NEG_INFINITY));
        let c = parse(
            br#"{"export":null,"args":null,"inputs":{},"output_encoding":"data_b64"}"#,
            8,
            1 << 20,
        )
        .unwrap();
        assert_eq!(c.export, None);
        assert!(c.b64 && c.args.is_empty());
        assert!(parse(b"{}", 8, 1 << 20).is_some());
    }

    #[test]
    fn anything_else_goes_to_the_app() {
        for body in [
            &b""[..],
            b"[]",
            b"not json",
            br#"{"extra":1}"#,
            br#"{"export":5}"#,
            br#"{"args":[1,2,3]}"#,
            br#"{"args":["x"]}"#,
            br#"{"args":[null]}"#,
            br#"{"args":[99999999999999999999]}"#,
            br#"{"args":[1e999]}"#,
            br#"{"inputs":{"x":{"dtype":"f32","shape":[2],"data":[1]}}}"#,
            br#"{"inputs":{"x":{"dtype":"float32","shape":[1],"data":[1]}}}"#,
            br#"{"inputs":{"x":{"dtype":"f32","shape":[1],"data":[true]}}}"#,
            br#"{"inputs":{"x":{"dtype":"i32","shape":[1],"data":[1.0]}}}"#,
            br#"{"inputs":{"x":{"dtype":"u8","shape":[1],"data":[256]}}}"#,
            br#"{"inputs":{"x":{"dtype":"f32","shape":[1],"data":[1],"data_b64":"AAAAAA=="}}}"#,
            br#"{"inputs":{"x":{"dtype":"f32","shape":[1],"data_b64":"AAAA"}}}"#,
            br#"{"inputs":{"x":{"dtype":"f32","shape":[1],"data":null}}}"#,
            br#"{"output_encoding":null}"#,
            br#"{"output_encoding":"hex"}"#,
            br#"{"export":"a","export":"b"}"#,
        ] {
            assert!(
                parse(body, 2, 1 << 20).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn inputs_decode_like_the_app() {
        let c = parse(
            br#"{"inputs":{"a":{"dtype":"f32","shape":[2,2],"data":[[1,2.5],["nan",4]]},
                 "b":{"dtype":"i64","shape":[2],"data_b64":"AQAAAAAAAAD//////////w=="},
                 "c":{"dtype":"bool","shape":[3],"data":[true,0,1]},
                 "d":{"dtype":"bf16","shape":[1],"data":[1.0]}}}"#,
            8,
            1 << 20,
        )
        .unwrap();
        let names: Vec<&str> = c.inputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let a = c.inputs[0].1.as_slice::<f32>().unwrap();
        assert_eq!(&a[..2], &[1.0, 2.5]);
        assert!(a[2].is_nan());
        assert_eq!(c.inputs[1].1.as_slice::<i64>().unwrap(), &[1, -1]);
        assert_eq!(c.inputs[2].1.to_bytes(), vec![1, 0, 1]);
        assert_eq!(
            c.inputs[3].1.to_bytes(),
            half::bf16::from_f32(1.0).to_le_bytes()
        );
        assert!(c.inputs[0].1.is_read_only());
        // Over the byte cap: the app decides.
        assert!(
            parse(
                br#"{"inputs":{"a":{"dtype":"f64","shape":[4],"data_b64":""}}}"#,
                8,
                16
            )
            .is_none()
        );
    }

    #[test]
    fn outputs_and_non_finite_values() {
        let out = InvokeOutcome {
            values: vec![
                ResultValue::Int(-3),
                ResultValue::Float(f64::NAN),
                ResultValue::Float(0.5),
            ],
            stdout: "hi\n".into(),
            stderr: String::new(),
            output_truncated: false,
            duration: std::time::Duration::from_micros(1500),
            outputs: vec![(
                "y".into(),
                Tensor::from_vec::<f32>(&[2], &[1.0, f32::INFINITY]).unwrap(),
            )],
        };
        let v: serde_json::Value = serde_json::from_slice(&success_body("f", &out, false)).unwrap();
        assert_eq!(v["result"], serde_json::json!([-3, "nan", 0.5]));
        assert_eq!(v["outputs"]["y"]["data"], serde_json::json!([1.0, "inf"]));
        assert_eq!(v["stdout"], "hi\n");
        assert_eq!(v["duration_ms"], 1.5);
        let v: serde_json::Value = serde_json::from_slice(&success_body("f", &out, true)).unwrap();
        assert_eq!(v["outputs"]["y"]["data_b64"], "AACAPwAAgH8=");
    }
}
