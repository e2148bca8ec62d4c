//! The constants and fixed layouts of the snapshot format (`docs/SNAPSHOT-FORMAT.md`).
//!
//! Every number a reader or writer agrees on stands here, once, with the
//! reason for its value. Changing any byte layout means bumping
//! [`SNAPSHOT_VERSION`] and keeping a reader for the old one.

use crate::error::{CoreError, CoreResult, ErrorKind};

/// First 8 bytes of every snapshot. PNG-style: the high-bit byte catches
/// 7-bit transports, `\r\n` and `\n` catch newline translation, `\x1a` stops
/// `type` on Windows.
pub const MAGIC: [u8; 8] = *b"\x89TWS\r\n\x1a\n";

/// The version this build writes and the only one it reads. Bumped on any
/// change to the bytes; old versions keep a reader (and a golden fixture).
pub const SNAPSHOT_VERSION: u32 = 1;

/// magic(8) version(u32) flags(u32).
pub const FILE_HEADER_LEN: usize = 16;

/// File flag: an HMAC-SHA256 trailer follows the whole-file checksum.
pub const FLAG_SIGNED: u32 = 1;
/// Every flag this version knows; any other bit set means a corrupt file.
pub const KNOWN_FILE_FLAGS: u32 = FLAG_SIGNED;

/// kind(u32) flags(u32) raw_len(u64). The END record uses the same layout
/// with kind 0 and the section count in the length field.
pub const SECTION_HEADER_LEN: usize = 16;

/// codec(u8) raw_len(u32) stored_len(u32).
pub const CHUNK_HEADER_LEN: usize = 9;

/// Raw bytes per chunk. 1 MiB keeps the reader's and writer's buffers at
/// about 2 MiB whatever the memory size, and is large enough that zstd's
/// ratio and the per-chunk header (9 bytes) cost nothing measurable.
pub const CHUNK_RAW_MAX: usize = 1 << 20;

/// Largest stored (compressed) chunk a reader accepts. A writer never stores
/// a compressed chunk larger than its raw form (it stores the raw bytes
/// instead), so `CHUNK_RAW_MAX` is the real bound.
pub const CHUNK_STORED_MAX: usize = CHUNK_RAW_MAX;

/// Chunk codecs.
pub const CODEC_STORED: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;

/// BLAKE3 digests (per-section and whole-file checksums) and the
/// HMAC-SHA256 tag are all 32 bytes.
pub const DIGEST_LEN: usize = 32;

/// Linear memories are sampled in Wasm pages; an all-zero page is not stored.
pub const MEMORY_PAGE_SIZE: u64 = 64 * 1024;
/// index(u32) page_size(u32) byte_len(u64) run_count(u32).
pub const MEMORY_HEADER_LEN: usize = 20;
/// start_page(u32) page_count(u32).
pub const MEMORY_RUN_LEN: usize = 8;

/// The metadata section is a handful of fields; anything larger is not ours.
pub const METADATA_MAX_BYTES: u64 = 4096;
/// Instance ids and runtime versions are short identifiers.
pub const METADATA_STRING_MAX: usize = 256;

/// What a section holds. Numbers are part of the format; new kinds need a
/// new `SNAPSHOT_VERSION` (a reader refuses kinds it does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// Snapshot metadata; always the first section, exactly once.
    Metadata = 1,
    /// The function's Wasm bytes, embedded so a new host can restore alone.
    Module = 2,
    /// One linear memory, stored sparsely (see [`MEMORY_HEADER_LEN`]).
    Memory = 3,
    /// Global values (layout owned by the capture step).
    Globals = 4,
    /// Table contents (layout owned by the capture step).
    Tables = 5,
    /// Host tensors the instance holds (layout owned by the capture step).
    Tensors = 6,
}

/// The END record's kind.
pub const KIND_END: u32 = 0;

impl SectionKind {
    pub const ALL: [SectionKind; 6] = [
        SectionKind::Metadata,
        SectionKind::Module,
        SectionKind::Memory,
        SectionKind::Globals,
        SectionKind::Tables,
        SectionKind::Tensors,
    ];

    pub fn from_u32(v: u32) -> Option<SectionKind> {
        SectionKind::ALL.into_iter().find(|k| *k as u32 == v)
    }

    /// Stable name (for `inspect` output).
    pub fn as_str(self) -> &'static str {
        match self {
            SectionKind::Metadata => "metadata",
            SectionKind::Module => "module",
            SectionKind::Memory => "memory",
            SectionKind::Globals => "globals",
            SectionKind::Tables => "tables",
            SectionKind::Tensors => "tensors",
        }
    }
}

/// Who made the snapshot, of what, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub tenant_id: u64,
    pub instance_id: String,
    pub created_unix_ms: u64,
    pub runtime_version: String,
    /// BLAKE3 of the function's Wasm bytes.
    pub function_hash: [u8; 32],
    /// Always [`SNAPSHOT_VERSION`] when written by this build.
    pub snapshot_version: u32,
}

impl Metadata {
    /// Metadata for a snapshot taken now by this build.
    pub fn new(tenant_id: u64, instance_id: impl Into<String>, function_hash: [u8; 32]) -> Self {
        let created_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Metadata {
            tenant_id,
            instance_id: instance_id.into(),
            created_unix_ms,
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            function_hash,
            snapshot_version: SNAPSHOT_VERSION,
        }
    }

    /// `snapshot_incompatible` unless the snapshot was taken of `expected`.
    pub fn check_function(&self, expected: &[u8; 32]) -> CoreResult<()> {
        if &self.function_hash == expected {
            Ok(())
        } else {
            Err(CoreError::new(
                ErrorKind::SnapshotIncompatible,
                format!(
                    "snapshot was taken of function {} but this function is {}",
                    hex(&self.function_hash),
                    hex(expected)
                ),
            ))
        }
    }

    /// The section body: version(u32) tenant(u64) created(u64) hash(32)
    /// instance_id(u16 len + UTF-8) runtime_version(u16 len + UTF-8).
    pub fn encode(&self) -> CoreResult<Vec<u8>> {
        for (name, s) in [
            ("instance_id", &self.instance_id),
            ("runtime_version", &self.runtime_version),
        ] {
            if s.len() > METADATA_STRING_MAX {
                return Err(CoreError::invalid_args(format!(
                    "snapshot metadata {name} is {} bytes; at most {METADATA_STRING_MAX}",
                    s.len()
                )));
            }
        }
        let mut out = Vec::with_capacity(64 + self.instance_id.len() + self.runtime_version.len());
        out.extend_from_slice(&self.snapshot_version.to_le_bytes());
        out.extend_from_slice(&self.tenant_id.to_le_bytes());
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.function_hash);
        for s in [&self.instance_id, &self.runtime_version] {
            // Fits: checked against METADATA_STRING_MAX above.
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Ok(out)
    }

    /// Parses a metadata body; every field is checked, trailing bytes refused.
    pub fn decode(body: &[u8]) -> CoreResult<Metadata> {
        let mut c = Cursor { buf: body, pos: 0 };
        let snapshot_version = c.u32()?;
        let tenant_id = c.u64()?;
        let created_unix_ms = c.u64()?;
        let mut function_hash = [0u8; 32];
        function_hash.copy_from_slice(c.take(32)?);
        let instance_id = c.string()?;
        let runtime_version = c.string()?;
        if c.pos != body.len() {
            return Err(invalid("metadata section has trailing bytes"));
        }
        Ok(Metadata {
            tenant_id,
            instance_id,
            created_unix_ms,
            runtime_version,
            function_hash,
            snapshot_version,
        })
    }
}

/// A bounds-checked little-endian cursor over untrusted bytes.
pub(crate) struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn take(&mut self, n: usize) -> CoreResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| invalid("field runs past the end of its section"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u16(&mut self) -> CoreResult<u16> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(b))
    }

    pub fn u32(&mut self) -> CoreResult<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    pub fn u64(&mut self) -> CoreResult<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn string(&mut self) -> CoreResult<String> {
        let len = usize::from(self.u16()?);
        if len > METADATA_STRING_MAX {
            return Err(invalid("metadata string too long"));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid("metadata string is not UTF-8"))
    }
}

/// Number of pages (the last one possibly partial) covering `byte_len`.
pub fn page_count(byte_len: u64) -> u64 {
    byte_len.div_ceil(MEMORY_PAGE_SIZE)
}

pub(crate) fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::new(ErrorKind::SnapshotInvalid, message)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `bytes` to `hasher`, on every core when there are enough of them
/// to be worth it (BLAKE3 splits a large input into independent subtrees).
pub fn hash_update(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    if bytes.len() >= 256 << 10 {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
}
