//! Streaming snapshot reader. Every byte is hostile.
//!
//! Reads from any `Read` in one pass. Every length is checked against a
//! format constant or a caller limit before anything is allocated; chunk
//! decompression writes into a fixed 1 MiB buffer and cannot produce more
//! than the chunk's declared raw length, which is itself bounded by what is
//! left of the section. Nothing here panics on any input; every failure is
//! a typed `CoreError` (`snapshot_invalid`, `snapshot_incompatible`,
//! `snapshot_signature_invalid`).
//!
//! Streaming means content reaches the caller before the whole-file checksum
//! and the signature can be checked: a caller must not commit anything it
//! restored until [`SnapshotReader::finish`] returns `Ok`. Each section's
//! own checksum is checked before its last bytes are handed out.

use std::io::{self, Read};

use crate::error::{CoreError, CoreResult, ErrorKind};

use super::format::{
    CHUNK_HEADER_LEN, CHUNK_RAW_MAX, CHUNK_STORED_MAX, CODEC_STORED, CODEC_ZSTD, DIGEST_LEN,
    FILE_HEADER_LEN, FLAG_SIGNED, KIND_END, KNOWN_FILE_FLAGS, MAGIC, MEMORY_HEADER_LEN,
    MEMORY_PAGE_SIZE, MEMORY_RUN_LEN, METADATA_MAX_BYTES, Metadata, SECTION_HEADER_LEN,
    SNAPSHOT_VERSION, SectionKind, invalid, page_count,
};
use super::sign::{Signer, SigningKey};

/// Limits and keys of [`SnapshotReader`]. Defaults suit a runtime whose
/// instances have at most 4 GiB of memory.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Verifies the HMAC trailer of signed files when set.
    pub signing_key: Option<SigningKey>,
    /// Refuse files without a signature (needs `signing_key`).
    pub require_signature: bool,
    /// Largest declared raw length of any section, in bytes.
    pub max_section_bytes: u64,
    /// Largest declared size of one linear memory, in bytes.
    pub max_memory_bytes: u64,
    /// Most sections in one file (metadata included).
    pub max_sections: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            signing_key: None,
            require_signature: false,
            max_section_bytes: 5 << 30,
            max_memory_bytes: 4 << 30,
            max_sections: 4096,
        }
    }
}

/// What [`SnapshotReader::finish`] established about the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The file carries no signature (and none was required).
    Unsigned,
    /// Signed, but no key was given, so the tag was not checked.
    SignedUnverified,
    /// Signed, and the tag matches the key.
    Verified,
}

/// A section's header, as announced by [`SnapshotReader::next_section`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    pub kind: SectionKind,
    /// Length of the section body once decompressed.
    pub raw_len: u64,
}

/// The fixed part of a memory section, checked against the caller's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryHeader {
    pub index: u32,
    /// The memory's size when captured; restore needs at least this much.
    pub byte_len: u64,
    /// Non-zero page runs: (first page, page count), sorted, disjoint.
    pub runs: Vec<(u32, u32)>,
}

impl MemoryHeader {
    /// Bytes of page data the section carries.
    pub fn stored_bytes(&self) -> u64 {
        self.runs
            .iter()
            .map(|(s, c)| run_bytes(*s, *c, self.byte_len))
            .sum()
    }
}

/// Feeds every byte read to the checksum and the signer.
struct HashingReader<R: Read> {
    inner: R,
    hasher: blake3::Hasher,
    signer: Option<Signer>,
}

impl<R: Read> HashingReader<R> {
    /// Stored chunk data: read, but left out of the file checksum and the
    /// signature (its section's checksum covers it, and they cover that).
    fn get_data(&mut self, buf: &mut [u8]) -> CoreResult<()> {
        read_exact(&mut self.inner, buf)
    }

    fn get(&mut self, buf: &mut [u8]) -> CoreResult<()> {
        read_exact(&mut self.inner, buf)?;
        super::format::hash_update(&mut self.hasher, buf);
        if let Some(s) = &mut self.signer {
            s.update(buf);
        }
        Ok(())
    }
}

/// Where the reader is in the current section's body.
struct Body {
    kind: SectionKind,
    /// Raw bytes not yet loaded into `chunk`.
    unloaded: u64,
    hasher: blake3::Hasher,
}

/// Reads one snapshot: the header and metadata on [`SnapshotReader::open`],
/// then sections one at a time, then [`SnapshotReader::finish`].
pub struct SnapshotReader<R: Read> {
    inp: HashingReader<R>,
    options: ReadOptions,
    signed: bool,
    metadata: Metadata,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    /// The current chunk's raw bytes; `chunk[chunk_pos..chunk_len]` unread.
    chunk: Vec<u8>,
    chunk_pos: usize,
    chunk_len: usize,
    /// A stored (compressed) chunk, before decompression.
    packed: Vec<u8>,
    body: Option<Body>,
    sections: u64,
    done: bool,
    /// Set after any error: the stream position is unknown.
    failed: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads and checks the file header and the metadata section.
    pub fn open(input: R, options: ReadOptions) -> CoreResult<Self> {
        if options.require_signature && options.signing_key.is_none() {
            return Err(CoreError::invalid_args(
                "require_signature needs a signing key",
            ));
        }
        let mut inp = HashingReader {
            inner: input,
            hasher: blake3::Hasher::new(),
            signer: None,
        };
        let mut header = [0u8; FILE_HEADER_LEN];
        read_exact(&mut inp.inner, &mut header)?;
        if header[0..8] != MAGIC {
            return Err(invalid("not a snapshot (bad magic)"));
        }
        let version = le32(&header[8..12]);
        if version != SNAPSHOT_VERSION {
            return Err(CoreError::new(
                ErrorKind::SnapshotIncompatible,
                format!(
                    "snapshot format version {version}; this build reads version {SNAPSHOT_VERSION}"
                ),
            ));
        }
        let flags = le32(&header[12..16]);
        if flags & !KNOWN_FILE_FLAGS != 0 {
            return Err(invalid(format!("unknown file flags {flags:#x}")));
        }
        let signed = flags & FLAG_SIGNED != 0;
        if options.require_signature && !signed {
            return Err(CoreError::new(
                ErrorKind::SnapshotSignatureInvalid,
                "snapshot is not signed and a signature is required",
            ));
        }
        inp.signer = match (&options.signing_key, signed) {
            (Some(k), true) => Some(Signer::new(k)),
            _ => None,
        };
        inp.hasher.update(&header);
        if let Some(s) = &mut inp.signer {
            s.update(&header);
        }
        let mut r = SnapshotReader {
            inp,
            options,
            signed,
            metadata: Metadata {
                tenant_id: 0,
                instance_id: String::new(),
                created_unix_ms: 0,
                runtime_version: String::new(),
                function_hash: [0; 32],
                snapshot_version: 0,
            },
            decompressor: None,
            chunk: Vec::new(),
            chunk_pos: 0,
            chunk_len: 0,
            packed: Vec::new(),
            body: None,
            sections: 0,
            done: false,
            failed: false,
        };
        match r.next_section()? {
            Some(SectionInfo {
                kind: SectionKind::Metadata,
                raw_len,
            }) if raw_len <= METADATA_MAX_BYTES => {}
            Some(SectionInfo {
                kind: SectionKind::Metadata,
                ..
            }) => return Err(invalid("metadata section too large")),
            _ => return Err(invalid("first section is not metadata")),
        }
        let body = r.read_section_to_vec(METADATA_MAX_BYTES)?;
        let md = Metadata::decode(&body)?;
        if md.snapshot_version != version {
            return Err(invalid(format!(
                "metadata says version {} but the header says {version}",
                md.snapshot_version
            )));
        }
        r.metadata = md;
        Ok(r)
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Whether the file carries a signature trailer.
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// Moves to the next section (skipping, and checking, what is left of
    /// the current one). `Ok(None)` at the END record.
    pub fn next_section(&mut self) -> CoreResult<Option<SectionInfo>> {
        self.guard(|r| r.next_section_inner())
    }

    fn next_section_inner(&mut self) -> CoreResult<Option<SectionInfo>> {
        if self.done {
            return Ok(None);
        }
        if self.body.is_some() {
            self.skip_body()?;
        }
        let mut h = [0u8; SECTION_HEADER_LEN];
        self.inp.get(&mut h)?;
        let kind = le32(&h[0..4]);
        let flags = le32(&h[4..8]);
        let len = le64(&h[8..16]);
        if flags != 0 {
            return Err(invalid(format!("unknown section flags {flags:#x}")));
        }
        if kind == KIND_END {
            if len != self.sections {
                return Err(invalid(format!(
                    "END record counts {len} sections but {} were read",
                    self.sections
                )));
            }
            self.done = true;
            return Ok(None);
        }
        let kind = SectionKind::from_u32(kind)
            .ok_or_else(|| invalid(format!("unknown section kind {kind}")))?;
        if (kind == SectionKind::Metadata) != (self.sections == 0) {
            return Err(invalid("metadata must be the first section, and only it"));
        }
        if len > self.options.max_section_bytes {
            return Err(invalid(format!(
                "section declares {len} bytes; the limit is {}",
                self.options.max_section_bytes
            )));
        }
        self.sections += 1;
        if self.sections > self.options.max_sections {
            return Err(invalid(format!(
                "more than {} sections",
                self.options.max_sections
            )));
        }
        self.chunk_pos = 0;
        self.chunk_len = 0;
        self.body = Some(Body {
            kind,
            unloaded: len,
            hasher: blake3::Hasher::new(),
        });
        if len == 0 {
            self.load_chunk(None)?;
        }
        Ok(Some(SectionInfo { kind, raw_len: len }))
    }

    /// Reads body bytes of the current section into `out`; returns how many
    /// (0 once the body is exhausted).
    pub fn read_body(&mut self, out: &mut [u8]) -> CoreResult<usize> {
        self.guard(|r| r.read_body_inner(out))
    }

    fn read_body_inner(&mut self, out: &mut [u8]) -> CoreResult<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.chunk_pos == self.chunk_len {
                match &self.body {
                    Some(b) if b.unloaded > 0 => {
                        // A chunk that fits what is left of `out` is decoded
                        // straight into it: no copy through the chunk buffer.
                        let direct = self.load_chunk(Some(&mut out[n..]))?;
                        n += direct;
                        continue;
                    }
                    _ => break,
                }
            }
            let take = (self.chunk_len - self.chunk_pos).min(out.len() - n);
            out[n..n + take].copy_from_slice(&self.chunk[self.chunk_pos..self.chunk_pos + take]);
            self.chunk_pos += take;
            n += take;
        }
        Ok(n)
    }

    /// Fills `out` exactly from the body; too few bytes is corruption.
    fn body_exact(&mut self, out: &mut [u8]) -> CoreResult<()> {
        if self.read_body_inner(out)? != out.len() {
            return Err(invalid("section body shorter than its contents"));
        }
        Ok(())
    }

    /// The current section's whole body, if it is at most `max` bytes.
    pub fn read_section_to_vec(&mut self, max: u64) -> CoreResult<Vec<u8>> {
        self.guard(|r| {
            let Some(b) = &r.body else {
                return Err(CoreError::invalid_args("no snapshot section is open"));
            };
            let left = b.unloaded + (r.chunk_len - r.chunk_pos) as u64;
            if left > max {
                return Err(invalid(format!(
                    "section of {left} bytes exceeds the {max}-byte limit"
                )));
            }
            // Bounded by `max` (a caller limit) and by the section limit.
            let mut v = vec![0u8; usize::try_from(left).map_err(|_| invalid("section too large"))?];
            r.body_exact(&mut v)?;
            Ok(v)
        })
    }

    /// A `Read` over the current section's body (for sections the caller
    /// decodes as a stream). Errors surface as `io::Error` wrapping the
    /// `CoreError` message; the reader is then unusable.
    pub fn body_reader(&mut self) -> BodyReader<'_, R> {
        BodyReader { r: self }
    }

    /// Reads the fixed part and run table of the current memory section,
    /// refusing memories larger than `max_memory_bytes` (or the option).
    pub fn read_memory_header(&mut self, max_memory_bytes: u64) -> CoreResult<MemoryHeader> {
        self.guard(|r| r.read_memory_header_inner(max_memory_bytes))
    }

    fn read_memory_header_inner(&mut self, max_memory_bytes: u64) -> CoreResult<MemoryHeader> {
        let section_len = match &self.body {
            Some(b) if b.kind == SectionKind::Memory => {
                b.unloaded + (self.chunk_len - self.chunk_pos) as u64
            }
            _ => {
                return Err(CoreError::invalid_args(
                    "the current section is not a memory",
                ));
            }
        };
        let mut h = [0u8; MEMORY_HEADER_LEN];
        self.body_exact(&mut h)?;
        let index = le32(&h[0..4]);
        let page_size = le32(&h[4..8]);
        let byte_len = le64(&h[8..16]);
        let run_count = le32(&h[16..20]);
        if u64::from(page_size) != MEMORY_PAGE_SIZE {
            return Err(invalid(format!("memory page size {page_size}")));
        }
        let max = max_memory_bytes.min(self.options.max_memory_bytes);
        if byte_len > max {
            return Err(invalid(format!(
                "memory of {byte_len} bytes exceeds the {max}-byte limit"
            )));
        }
        let pages = page_count(byte_len);
        let table = u64::from(run_count) * MEMORY_RUN_LEN as u64;
        if u64::from(run_count) > pages || MEMORY_HEADER_LEN as u64 + table > section_len {
            return Err(invalid(format!("memory declares {run_count} page runs")));
        }
        // Bounded: run_count <= pages <= max / 64 KiB, and <= section length / 8.
        let mut runs = Vec::with_capacity(run_count as usize);
        let mut next_free: u64 = 0;
        let mut data: u64 = 0;
        for _ in 0..run_count {
            let mut e = [0u8; MEMORY_RUN_LEN];
            self.body_exact(&mut e)?;
            let (start, count) = (le32(&e[0..4]), le32(&e[4..8]));
            let end = u64::from(start) + u64::from(count);
            if count == 0 || u64::from(start) < next_free || end > pages {
                return Err(invalid(format!(
                    "memory page run {start}+{count} is empty, unsorted or out of bounds"
                )));
            }
            next_free = end;
            data += run_bytes(start, count, byte_len);
            runs.push((start, count));
        }
        if MEMORY_HEADER_LEN as u64 + table + data != section_len {
            return Err(invalid(
                "memory section length does not match its page runs",
            ));
        }
        Ok(MemoryHeader {
            index,
            byte_len,
            runs,
        })
    }

    /// Streams the pages of `header` (just read) into `dest`, which must be
    /// at least `header.byte_len` long. Skipped pages are left as they are
    /// unless `zero_gaps` (pass `false` only for freshly zeroed memory).
    pub fn restore_memory(
        &mut self,
        header: &MemoryHeader,
        dest: &mut [u8],
        zero_gaps: bool,
    ) -> CoreResult<()> {
        self.guard(|r| {
            let len = usize::try_from(header.byte_len)
                .ok()
                .filter(|l| *l <= dest.len())
                .ok_or_else(|| {
                    CoreError::invalid_args(format!(
                        "restore target has {} bytes; the memory needs {}",
                        dest.len(),
                        header.byte_len
                    ))
                })?;
            let page = MEMORY_PAGE_SIZE as usize;
            let mut cursor = 0usize;
            for (start, count) in &header.runs {
                // In bounds: read_memory_header checked every run against byte_len.
                let from = (*start as usize).saturating_mul(page).min(len);
                let to = (*start as usize + *count as usize)
                    .saturating_mul(page)
                    .min(len);
                if zero_gaps {
                    dest[cursor..from].fill(0);
                }
                r.body_exact(&mut dest[from..to])?;
                cursor = to;
            }
            if zero_gaps {
                dest[cursor..len].fill(0);
            }
            if r.read_body_inner(&mut [0u8; 1])? != 0 {
                return Err(invalid("memory section has trailing bytes"));
            }
            Ok(())
        })
    }

    /// Checks the END record's checksum, the signature and that nothing
    /// follows. Only after `Ok` may restored state be committed.
    pub fn finish(mut self) -> CoreResult<Verification> {
        while self.next_section()?.is_some() {}
        self.check_usable()?;
        let expected = *self.inp.hasher.finalize().as_bytes();
        let mut digest = [0u8; DIGEST_LEN];
        self.inp.get(&mut digest)?;
        if digest != expected {
            return Err(invalid("whole-file checksum mismatch"));
        }
        let verification = if self.signed {
            let mut tag = [0u8; DIGEST_LEN];
            read_exact(&mut self.inp.inner, &mut tag)?;
            match self.inp.signer.take() {
                Some(s) => {
                    s.verify(&tag)?;
                    Verification::Verified
                }
                None => Verification::SignedUnverified,
            }
        } else {
            Verification::Unsigned
        };
        let mut extra = [0u8; 1];
        loop {
            match self.inp.inner.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(invalid("bytes after the end of the snapshot")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(verification)
    }

    fn check_usable(&self) -> CoreResult<()> {
        if self.failed {
            return Err(invalid("snapshot reader failed earlier"));
        }
        Ok(())
    }

    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> CoreResult<T>) -> CoreResult<T> {
        self.check_usable()?;
        let r = f(self);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn skip_body(&mut self) -> CoreResult<()> {
        loop {
            self.chunk_pos = self.chunk_len;
            match &self.body {
                Some(b) if b.unloaded > 0 => {
                    self.load_chunk(None)?;
                }
                _ => break,
            }
        }
        self.body = None;
        Ok(())
    }

    /// Reads, checks and decodes the next chunk of the body; after the last
    /// one, reads and checks the section checksum.
    /// Reads, checks and decodes the next chunk. When `direct` is given and
    /// the chunk's raw bytes fit in it, they are decoded straight into it
    /// and their count returned; otherwise they go to the chunk buffer and 0
    /// is returned. After the last chunk the section checksum is checked
    /// before returning, so a caller never gets `Ok` for unverified bytes
    /// (on an error, what was written into `direct` is unspecified).
    fn load_chunk(&mut self, direct: Option<&mut [u8]>) -> CoreResult<usize> {
        let Some(body) = &mut self.body else {
            return Err(invalid("no section open"));
        };
        let mut delivered = 0;
        if body.unloaded > 0 {
            let mut h = [0u8; CHUNK_HEADER_LEN];
            self.inp.get(&mut h)?;
            let codec = h[0];
            let raw = le32(&h[1..5]) as usize;
            let stored = le32(&h[5..9]) as usize;
            if raw == 0 || raw > CHUNK_RAW_MAX || raw as u64 > body.unloaded {
                return Err(invalid(format!("chunk declares {raw} raw bytes")));
            }
            let dst: &mut [u8] = match direct {
                Some(d) if d.len() >= raw => {
                    delivered = raw;
                    &mut d[..raw]
                }
                _ => {
                    if self.chunk.len() < CHUNK_RAW_MAX {
                        self.chunk.resize(CHUNK_RAW_MAX, 0);
                    }
                    &mut self.chunk[..raw]
                }
            };
            match codec {
                CODEC_STORED => {
                    if stored != raw {
                        return Err(invalid("stored chunk lengths differ"));
                    }
                    self.inp.get_data(dst)?;
                }
                CODEC_ZSTD => {
                    if stored == 0 || stored > CHUNK_STORED_MAX {
                        return Err(invalid(format!("chunk stores {stored} bytes")));
                    }
                    if self.packed.len() < CHUNK_STORED_MAX {
                        self.packed.resize(CHUNK_STORED_MAX, 0);
                    }
                    self.inp.get(&mut self.packed[..stored])?;
                    if self.decompressor.is_none() {
                        self.decompressor = Some(zstd::bulk::Decompressor::new().map_err(io_err)?);
                    }
                    let Some(d) = &mut self.decompressor else {
                        return Err(invalid("no decompressor"));
                    };
                    // The output window is exactly `raw` bytes: a frame that
                    // expands further fails instead of allocating.
                    let n = d
                        .decompress_to_buffer(&self.packed[..stored], dst)
                        .map_err(|e| invalid(format!("corrupt compressed chunk: {e}")))?;
                    if n != raw {
                        return Err(invalid("compressed chunk decodes to the wrong length"));
                    }
                }
                other => return Err(invalid(format!("unknown chunk codec {other}"))),
            }
            body.unloaded -= raw as u64;
            super::format::hash_update(&mut body.hasher, dst);
            self.chunk_pos = 0;
            self.chunk_len = if delivered > 0 { 0 } else { raw };
        }
        if body.unloaded == 0 {
            // Checked before the last bytes are handed out.
            let expected = *body.hasher.finalize().as_bytes();
            let mut digest = [0u8; DIGEST_LEN];
            self.inp.get(&mut digest)?;
            if digest != expected {
                return Err(invalid(format!(
                    "checksum mismatch in {} section",
                    body.kind.as_str()
                )));
            }
        }
        Ok(delivered)
    }
}

/// `Read` over the current section body; see [`SnapshotReader::body_reader`].
pub struct BodyReader<'a, R: Read> {
    r: &'a mut SnapshotReader<R>,
}

impl<R: Read> Read for BodyReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r
            .read_body(buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.message))
    }
}

fn run_bytes(start: u32, count: u32, byte_len: u64) -> u64 {
    let from = u64::from(start) * MEMORY_PAGE_SIZE;
    let to = ((u64::from(start) + u64::from(count)) * MEMORY_PAGE_SIZE).min(byte_len);
    to.saturating_sub(from)
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8]) -> CoreResult<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            invalid("snapshot is truncated")
        } else {
            io_err(e)
        }
    })
}

fn io_err(e: io::Error) -> CoreError {
    CoreError::internal(format!("snapshot read failed: {e}"))
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}
