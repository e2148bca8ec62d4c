//! The snapshot codec: the container format that freezes an instance to
//! bytes (`docs/SNAPSHOT-FORMAT.md`).
//!
//! This module owns the bytes only: the file header, framed and checksummed
//! sections (optionally zstd-compressed in bounded chunks), sparse linear
//! memories, metadata, the whole-file checksum and the HMAC-SHA256 trailer.
//! It knows nothing of wasmtime: capturing and restoring an instance is done
//! by the executor on top of [`SnapshotWriter`] and [`SnapshotReader`]. It
//! must never trust a byte it reads: every length is bounded before
//! allocation and every failure is a typed error, never a panic.

mod format;
mod reader;
mod sign;
mod writer;

pub use format::{
    CHUNK_RAW_MAX, MAGIC, MEMORY_PAGE_SIZE, METADATA_MAX_BYTES, Metadata, SNAPSHOT_VERSION,
    SectionKind,
};
pub use reader::{
    BodyReader, MemoryHeader, ReadOptions, SectionInfo, SnapshotReader, Verification,
};
pub use sign::{MAX_KEY_BYTES, MIN_KEY_BYTES, SigningKey};
pub use writer::{Compression, SectionWriter, SnapshotWriter, WriteOptions, WriteStats, is_zero};

#[cfg(test)]
mod tests;
