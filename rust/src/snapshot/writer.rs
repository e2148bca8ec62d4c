//! Streaming snapshot writer.
//!
//! Writes to any `Write` in one pass and never holds more than one chunk
//! (1 MiB raw + 1 MiB compressed) of its own buffers, whatever the size of
//! the memories written. The whole-file checksum and the signature are
//! computed as bytes go out. The writer must never produce a file its own
//! reader refuses: every length it writes is checked against the reader's
//! limits' structure (declared lengths are exact).

use std::io::{self, Read, Write};

use crate::error::{CoreError, CoreResult};

use super::format::{
    CHUNK_RAW_MAX, CODEC_STORED, CODEC_ZSTD, FILE_HEADER_LEN, FLAG_SIGNED, KIND_END, MAGIC,
    MEMORY_HEADER_LEN, MEMORY_PAGE_SIZE, MEMORY_RUN_LEN, Metadata, SNAPSHOT_VERSION, SectionKind,
    page_count,
};
use super::sign::{Signer, SigningKey};

/// How chunks are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Raw bytes (the fastest; all-zero memory pages are skipped anyway).
    #[default]
    None,
    /// zstd at this level (1..=22); a chunk that does not shrink is stored raw.
    Zstd { level: i32 },
}

/// Options of [`SnapshotWriter`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub compression: Compression,
    /// When set, an HMAC-SHA256 trailer signs the whole file.
    pub signing_key: Option<SigningKey>,
}

/// Counts what was written (for progress and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub sections: u64,
    /// Bytes of the file, trailer included.
    pub file_bytes: u64,
    /// Memory pages skipped because they were all zero.
    pub zero_pages_skipped: u64,
}

/// Feeds every byte that goes to the file to the checksum and the signer.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    signer: Option<Signer>,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> CoreResult<()> {
        self.inner.write_all(bytes).map_err(io_err)?;
        super::format::hash_update(&mut self.hasher, bytes);
        if let Some(s) = &mut self.signer {
            s.update(bytes);
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Stored chunk data: written, but left out of the file checksum and the
    /// signature (they are the section's raw bytes, which its checksum
    /// covers, and they cover that checksum).
    fn put_data(&mut self, bytes: &[u8]) -> CoreResult<()> {
        self.inner.write_all(bytes).map_err(io_err)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// The section being written.
struct OpenSection {
    declared: u64,
    received: u64,
    hasher: blake3::Hasher,
}

/// Writes one snapshot: header and metadata on [`SnapshotWriter::new`],
/// then any sections, then the END record and trailer on
/// [`SnapshotWriter::finish`].
pub struct SnapshotWriter<W: Write> {
    out: HashingWriter<W>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Raw bytes of the chunk being filled (capacity `CHUNK_RAW_MAX`).
    chunk: Vec<u8>,
    /// Compressed form of a chunk (`CHUNK_RAW_MAX` bytes once compressing).
    packed: Vec<u8>,
    packed_len: usize,
    open: Option<OpenSection>,
    /// Set when a write failed half-way: the file is unusable.
    poisoned: bool,
    stats: WriteStats,
}

impl<W: Write> SnapshotWriter<W> {
    /// Writes the file header and the metadata section.
    pub fn new(out: W, metadata: &Metadata, options: WriteOptions) -> CoreResult<Self> {
        let compressor = match options.compression {
            Compression::None => None,
            Compression::Zstd { level } => {
                if !(1..=22).contains(&level) {
                    return Err(CoreError::invalid_args(format!(
                        "zstd level must be 1..=22, got {level}"
                    )));
                }
                let mut c = zstd::bulk::Compressor::new(level).map_err(io_err)?;
                // The chunk header carries the raw length; the frame need not.
                use zstd::zstd_safe::CParameter;
                c.set_parameter(CParameter::ContentSizeFlag(false))
                    .map_err(io_err)?;
                c.set_parameter(CParameter::ChecksumFlag(false))
                    .map_err(io_err)?;
                Some(c)
            }
        };
        let signed = options.signing_key.is_some();
        let mut w = SnapshotWriter {
            out: HashingWriter {
                inner: out,
                hasher: blake3::Hasher::new(),
                signer: options.signing_key.as_ref().map(Signer::new),
                written: 0,
            },
            packed: Vec::new(),
            packed_len: 0,
            compressor,
            chunk: Vec::new(),
            open: None,
            poisoned: false,
            stats: WriteStats::default(),
        };
        let mut header = [0u8; FILE_HEADER_LEN];
        header[0..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        let flags = if signed { FLAG_SIGNED } else { 0 };
        header[12..16].copy_from_slice(&flags.to_le_bytes());
        w.out.put(&header)?;
        let mut md = metadata.clone();
        md.snapshot_version = SNAPSHOT_VERSION;
        let body = md.encode()?;
        w.write_section_bytes(SectionKind::Metadata, &body)?;
        Ok(w)
    }

    /// Starts a section of exactly `raw_len` bytes; write them through the
    /// returned handle, then call [`SectionWriter::finish`].
    pub fn begin_section(
        &mut self,
        kind: SectionKind,
        raw_len: u64,
    ) -> CoreResult<SectionWriter<'_, W>> {
        self.start(kind, raw_len)?;
        Ok(SectionWriter { w: self })
    }

    /// Writes a section whose `raw_len` bytes come from `src`.
    pub fn write_section(
        &mut self,
        kind: SectionKind,
        src: &mut dyn Read,
        raw_len: u64,
    ) -> CoreResult<()> {
        self.start(kind, raw_len)?;
        let mut left = raw_len;
        while left > 0 {
            let want =
                (CHUNK_RAW_MAX - self.chunk.len()).min(usize::try_from(left).unwrap_or(usize::MAX));
            let start = self.chunk.len();
            self.chunk.resize(start + want, 0);
            let got = match read_some(src, &mut self.chunk[start..]) {
                Ok(n) => n,
                Err(e) => {
                    self.poisoned = true;
                    return Err(e);
                }
            };
            self.chunk.truncate(start + got);
            if got == 0 {
                self.poisoned = true;
                return Err(CoreError::invalid_args(format!(
                    "section source ended {left} bytes before its declared length"
                )));
            }
            if let Some(open) = &mut self.open {
                open.hasher.update(&self.chunk[start..]);
                open.received += got as u64;
            }
            left -= got as u64;
            if self.chunk.len() == CHUNK_RAW_MAX {
                self.flush_chunk()?;
            }
        }
        self.end()
    }

    /// Writes a section from a byte slice.
    pub fn write_section_bytes(&mut self, kind: SectionKind, bytes: &[u8]) -> CoreResult<()> {
        self.start(kind, bytes.len() as u64)?;
        self.push(bytes)?;
        self.end()
    }

    /// Writes linear memory `index` sparsely: all-zero 64 KiB pages are
    /// skipped, the others stored as runs of consecutive pages.
    pub fn write_memory(&mut self, index: u32, memory: &[u8]) -> CoreResult<()> {
        let byte_len = memory.len() as u64;
        let pages = page_count(byte_len);
        if pages > u64::from(u32::MAX) {
            return Err(CoreError::invalid_args(
                "memory has more pages than a snapshot can index",
            ));
        }
        let page = MEMORY_PAGE_SIZE as usize;
        // One read-only scan first: the section's length is declared up front.
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut data_len: u64 = 0;
        for (i, p) in memory.chunks(page).enumerate() {
            if is_zero(p) {
                self.stats.zero_pages_skipped += 1;
                continue;
            }
            data_len += p.len() as u64;
            // Fits: pages <= u32::MAX was checked above.
            let i = i as u32;
            match runs.last_mut() {
                Some((start, count)) if *start + *count == i => *count += 1,
                _ => runs.push((i, 1)),
            }
        }
        let raw_len =
            MEMORY_HEADER_LEN as u64 + MEMORY_RUN_LEN as u64 * runs.len() as u64 + data_len;
        self.start(SectionKind::Memory, raw_len)?;
        let mut header = [0u8; MEMORY_HEADER_LEN];
        header[0..4].copy_from_slice(&index.to_le_bytes());
        header[4..8].copy_from_slice(&(MEMORY_PAGE_SIZE as u32).to_le_bytes());
        header[8..16].copy_from_slice(&byte_len.to_le_bytes());
        header[16..20].copy_from_slice(&(runs.len() as u32).to_le_bytes());
        self.push(&header)?;
        for (start, count) in &runs {
            let mut r = [0u8; MEMORY_RUN_LEN];
            r[0..4].copy_from_slice(&start.to_le_bytes());
            r[4..8].copy_from_slice(&count.to_le_bytes());
            self.push(&r)?;
        }
        for (start, count) in &runs {
            let from = *start as usize * page;
            let to = ((*start as usize + *count as usize) * page).min(memory.len());
            self.push(&memory[from..to])?;
        }
        self.end()
    }

    /// Writes the END record, the whole-file checksum and the signature;
    /// returns the sink (flushed) and what was written.
    pub fn finish(mut self) -> CoreResult<(W, WriteStats)> {
        self.check_usable()?;
        let mut end = [0u8; 16];
        end[0..4].copy_from_slice(&KIND_END.to_le_bytes());
        end[8..16].copy_from_slice(&self.stats.sections.to_le_bytes());
        self.out.put(&end)?;
        let digest = *self.out.hasher.finalize().as_bytes();
        self.out.put(&digest)?;
        if let Some(signer) = self.out.signer.take() {
            let tag = signer.tag();
            self.out.inner.write_all(&tag).map_err(io_err)?;
            self.out.written += tag.len() as u64;
        }
        self.out.inner.flush().map_err(io_err)?;
        self.stats.file_bytes = self.out.written;
        Ok((self.out.inner, self.stats))
    }

    fn check_usable(&self) -> CoreResult<()> {
        if self.poisoned {
            return Err(CoreError::internal(
                "snapshot writer failed earlier; the output is incomplete",
            ));
        }
        if self.open.is_some() {
            return Err(CoreError::invalid_args(
                "the previous snapshot section was not finished",
            ));
        }
        Ok(())
    }

    fn start(&mut self, kind: SectionKind, raw_len: u64) -> CoreResult<()> {
        self.check_usable()?;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(kind as u32).to_le_bytes());
        h[8..16].copy_from_slice(&raw_len.to_le_bytes());
        self.guard(|w| w.out.put(&h))?;
        if self.chunk.capacity() < CHUNK_RAW_MAX {
            self.chunk.reserve_exact(CHUNK_RAW_MAX);
        }
        self.open = Some(OpenSection {
            declared: raw_len,
            received: 0,
            hasher: blake3::Hasher::new(),
        });
        Ok(())
    }

    /// Adds body bytes to the open section.
    fn push(&mut self, mut bytes: &[u8]) -> CoreResult<()> {
        let Some(open) = &mut self.open else {
            return Err(CoreError::invalid_args("no snapshot section is open"));
        };
        if open.received + bytes.len() as u64 > open.declared {
            self.poisoned = true;
            return Err(CoreError::invalid_args(format!(
                "section body longer than its declared {} bytes",
                open.declared
            )));
        }
        super::format::hash_update(&mut open.hasher, bytes);
        open.received += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.chunk.is_empty() && bytes.len() >= CHUNK_RAW_MAX && self.compressor.is_none() {
                // A whole stored chunk straight from the caller: no copy.
                let (now, rest) = bytes.split_at(CHUNK_RAW_MAX);
                self.guard(|w| w.emit(CODEC_STORED, now.len(), Payload::Caller(now)))?;
                bytes = rest;
                continue;
            }
            let room = CHUNK_RAW_MAX - self.chunk.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.chunk.extend_from_slice(now);
            bytes = rest;
            if self.chunk.len() == CHUNK_RAW_MAX {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> CoreResult<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let raw_len = self.chunk.len();
        let mut codec = CODEC_STORED;
        if let Some(c) = &mut self.compressor {
            // A chunk that would not shrink fails with "destination too
            // small" (the window is raw_len - 1 bytes) and is stored raw.
            if self.packed.len() < CHUNK_RAW_MAX {
                self.packed.resize(CHUNK_RAW_MAX, 0);
            }
            if let Ok(n) = c.compress_to_buffer(&self.chunk, &mut self.packed[..raw_len - 1]) {
                self.packed_len = n;
                codec = CODEC_ZSTD;
            }
        }
        let r = if codec == CODEC_ZSTD {
            self.guard(|w| w.emit(CODEC_ZSTD, raw_len, Payload::Packed))
        } else {
            self.guard(|w| w.emit(CODEC_STORED, raw_len, Payload::Chunk))
        };
        self.chunk.clear();
        r
    }

    fn emit(&mut self, codec: u8, raw_len: usize, payload: Payload<'_>) -> CoreResult<()> {
        let data: &[u8] = match payload {
            Payload::Caller(b) => b,
            Payload::Chunk => &self.chunk,
            Payload::Packed => &self.packed[..self.packed_len],
        };
        let mut h = [0u8; 9];
        h[0] = codec;
        // Fit: both are at most CHUNK_RAW_MAX.
        h[1..5].copy_from_slice(&(raw_len as u32).to_le_bytes());
        h[5..9].copy_from_slice(&(data.len() as u32).to_le_bytes());
        // Split borrows: `out` is written, `chunk`/`packed` read.
        let out = &mut self.out;
        out.put(&h)?;
        if codec == CODEC_STORED {
            out.put_data(data)
        } else {
            // Compressed bytes are hashed too: a flip that still decodes to
            // the same content must not go unnoticed.
            out.put(data)
        }
    }

    fn end(&mut self) -> CoreResult<()> {
        self.flush_chunk()?;
        let Some(open) = self.open.take() else {
            return Err(CoreError::invalid_args("no snapshot section is open"));
        };
        if open.received != open.declared {
            self.poisoned = true;
            return Err(CoreError::invalid_args(format!(
                "section body is {} bytes but {} were declared",
                open.received, open.declared
            )));
        }
        let digest = *open.hasher.finalize().as_bytes();
        self.guard(|w| w.out.put(&digest))?;
        self.stats.sections += 1;
        Ok(())
    }

    /// Runs `f`; a failure leaves a half-written file, so poison the writer.
    fn guard(&mut self, f: impl FnOnce(&mut Self) -> CoreResult<()>) -> CoreResult<()> {
        let r = f(self);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }
}

enum Payload<'a> {
    Caller(&'a [u8]),
    Chunk,
    Packed,
}

/// A section being written through `Write`; [`SectionWriter::finish`] checks
/// the length and writes the section checksum. Dropping it unfinished leaves
/// the snapshot writer refusing further sections.
pub struct SectionWriter<'a, W: Write> {
    w: &'a mut SnapshotWriter<W>,
}

impl<W: Write> SectionWriter<'_, W> {
    pub fn finish(self) -> CoreResult<()> {
        self.w.end()
    }
}

impl<W: Write> Write for SectionWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w
            .push(buf)
            .map(|()| buf.len())
            .map_err(|e| io::Error::other(e.message))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn read_some(src: &mut dyn Read, buf: &mut [u8]) -> CoreResult<usize> {
    loop {
        match src.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
}

pub fn is_zero(p: &[u8]) -> bool {
    // Word-at-a-time compare; the compiler vectorises the fold.
    let (head, words, tail) = bytemuck::pod_align_to::<u8, u64>(p);
    head.iter().all(|b| *b == 0)
        && words.iter().fold(0u64, |a, w| a | *w) == 0
        && tail.iter().all(|b| *b == 0)
}

fn io_err(e: io::Error) -> CoreError {
    CoreError::internal(format!("snapshot write failed: {e}"))
}
