//! The `op` argument stream: records of a 1-byte tag and a little-endian
//! value, no padding (docs/ABI.md). Decoding checks every length first.

use super::codes::AbiCode;

/// Records per call, at most: enough for any v1 op (concat of 100 tensors).
pub const MAX_RECORDS: usize = 128;
/// Bytes per call, at most: bounds the work of decoding.
pub const MAX_BYTES: usize = 4096;

pub const TAG_I32: u8 = 0x01;
pub const TAG_I64: u8 = 0x02;
pub const TAG_F32: u8 = 0x03;
pub const TAG_F64: u8 = 0x04;
pub const TAG_U32: u8 = 0x05;
pub const TAG_U64: u8 = 0x06;
pub const TAG_BYTES: u8 = 0x07;
pub const TAG_TENSOR: u8 = 0x08;

/// One decoded record (handles and byte ranges are resolved by the caller).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Record {
    Int(i64),
    Float(f64),
    Bytes { ptr: u32, len: u32 },
    Tensor(i32),
}

/// Decodes `bytes`; errors carry the code and a message for `last_error`.
pub fn decode(bytes: &[u8]) -> Result<Vec<Record>, (AbiCode, String)> {
    if bytes.len() > MAX_BYTES {
        return Err((
            AbiCode::KernelArgsUnsupported,
            format!(
                "argv is {} bytes; at most {MAX_BYTES} are supported",
                bytes.len()
            ),
        ));
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if out.len() == MAX_RECORDS {
            return Err((
                AbiCode::KernelArgsUnsupported,
                format!("argv has more than {MAX_RECORDS} records"),
            ));
        }
        let tag = bytes[i];
        let size = match tag {
            TAG_I32 | TAG_F32 | TAG_U32 | TAG_TENSOR => 4,
            TAG_I64 | TAG_F64 | TAG_U64 | TAG_BYTES => 8,
            other => {
                return Err((
                    AbiCode::InvalidArgs,
                    format!("argv record at byte {i} has unknown tag 0x{other:02x}"),
                ));
            }
        };
        let Some(v) = bytes.get(i + 1..i + 1 + size) else {
            return Err((
                AbiCode::InvalidArgs,
                format!("argv record at byte {i} is truncated"),
            ));
        };
        let mut b8 = [0u8; 8];
        b8[..size].copy_from_slice(v);
        let u = u64::from_le_bytes(b8);
        out.push(match tag {
            TAG_I32 => Record::Int(u as u32 as i32 as i64),
            TAG_I64 => Record::Int(u as i64),
            TAG_U32 => Record::Int(u as u32 as i64),
            TAG_U64 => {
                if u > i64::MAX as u64 {
                    return Err((
                        AbiCode::InvalidArgs,
                        format!("u64 argument {u} is out of range"),
                    ));
                }
                Record::Int(u as i64)
            }
            TAG_F32 => Record::Float(f32::from_bits(u as u32) as f64),
            TAG_F64 => Record::Float(f64::from_bits(u)),
            TAG_BYTES => Record::Bytes {
                ptr: u as u32,
                len: (u >> 32) as u32,
            },
            _ => Record::Tensor(u as u32 as i32),
        });
        i += 1 + size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_tag() {
        let mut b = vec![TAG_I32];
        b.extend((-5i32).to_le_bytes());
        b.push(TAG_F32);
        b.extend(1.5f32.to_le_bytes());
        b.push(TAG_TENSOR);
        b.extend(7i32.to_le_bytes());
        b.push(TAG_BYTES);
        b.extend(16u32.to_le_bytes());
        b.extend(3u32.to_le_bytes());
        b.push(TAG_U64);
        b.extend(9u64.to_le_bytes());
        assert_eq!(
            decode(&b).unwrap(),
            [
                Record::Int(-5),
                Record::Float(1.5),
                Record::Tensor(7),
                Record::Bytes { ptr: 16, len: 3 },
                Record::Int(9)
            ]
        );
    }

    #[test]
    fn caps_and_malformed_records() {
        assert_eq!(
            decode(&vec![0u8; 4097]).unwrap_err().0,
            AbiCode::KernelArgsUnsupported
        );
        let many: Vec<u8> = (0..129).flat_map(|_| [TAG_I32, 0, 0, 0, 0]).collect();
        assert_eq!(decode(&many).unwrap_err().0, AbiCode::KernelArgsUnsupported);
        assert_eq!(
            decode(&[0x09, 0, 0, 0, 0]).unwrap_err().0,
            AbiCode::InvalidArgs
        );
        assert_eq!(
            decode(&[TAG_I64, 1, 2]).unwrap_err().0,
            AbiCode::InvalidArgs
        );
        assert!(decode(&[]).unwrap().is_empty());
    }
}
