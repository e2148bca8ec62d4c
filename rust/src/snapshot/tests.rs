//! Tests of the snapshot codec: round trips, and hostile input of every kind.

use std::cell::Cell;
use std::io::{Cursor, Write};
use std::rc::Rc;

use proptest::prelude::*;

use super::format::{CHUNK_HEADER_LEN, CODEC_ZSTD, FILE_HEADER_LEN};
use super::*;
use crate::error::{CoreResult, ErrorKind};

const PAGE: usize = MEMORY_PAGE_SIZE as usize;

/// Deterministic bytes without a `rand` dependency (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

fn key(byte: u8) -> SigningKey {
    SigningKey::new(vec![byte; 32]).unwrap()
}

fn metadata() -> Metadata {
    let mut md = Metadata::new(42, "inst-7", [0xAB; 32]);
    md.created_unix_ms = 1_700_000_000_000;
    md
}

/// A `Write` sink whose length can be watched while a writer owns it.
#[derive(Clone, Default)]
struct Sink {
    bytes: Rc<std::cell::RefCell<Vec<u8>>>,
    len: Rc<Cell<usize>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.borrow_mut().extend_from_slice(buf);
        self.len.set(self.len.get() + buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, PartialEq)]
enum Got {
    Bytes(SectionKind, Vec<u8>),
    Memory(u32, Vec<u8>),
}

fn read_all(bytes: &[u8], opts: ReadOptions) -> CoreResult<(Metadata, Vec<Got>, Verification)> {
    let mut r = SnapshotReader::open(bytes, opts)?;
    let md = r.metadata().clone();
    let mut out = Vec::new();
    while let Some(s) = r.next_section()? {
        match s.kind {
            SectionKind::Memory => {
                let h = r.read_memory_header(u64::MAX)?;
                let mut mem = vec![0u8; h.byte_len as usize];
                r.restore_memory(&h, &mut mem, false)?;
                out.push(Got::Memory(h.index, mem));
            }
            k => out.push(Got::Bytes(k, r.read_section_to_vec(u64::MAX)?)),
        }
    }
    let v = r.finish()?;
    Ok((md, out, v))
}

/// The expected contents of the test snapshots.
struct Content {
    module: Vec<u8>,
    globals: Vec<u8>,
    tensors: Vec<u8>,
    memories: Vec<(u32, Vec<u8>)>,
}

impl Content {
    fn new(seed: u64, memory_bytes: usize, tensor_bytes: usize) -> Self {
        let mut rng = Rng(seed);
        let mut mem = vec![0u8; memory_bytes];
        let pages = memory_bytes.div_ceil(PAGE);
        // A few random pages, a run of two, the last (maybe partial) page,
        // and a page with a single non-zero byte at its very end.
        for p in [0, 3, 4, pages / 2, pages.saturating_sub(1)] {
            let from = p * PAGE;
            let to = (from + PAGE).min(memory_bytes);
            if from < to {
                rng.fill(&mut mem[from..to]);
            }
        }
        if pages > 10 {
            mem[10 * PAGE + PAGE - 1] = 1;
        }
        // Text-like data so zstd has something to shrink.
        let tensors: Vec<u8> = (0..tensor_bytes)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        Content {
            module: b"\0asm\x01\0\0\0".to_vec(),
            globals: rng.bytes(100),
            tensors,
            memories: vec![(0, mem), (1, vec![0u8; 3 * PAGE + 17]), (2, Vec::new())],
        }
    }

    fn expected(&self) -> Vec<Got> {
        let mut v = vec![
            Got::Bytes(SectionKind::Module, self.module.clone()),
            Got::Bytes(SectionKind::Globals, self.globals.clone()),
            Got::Bytes(SectionKind::Tensors, self.tensors.clone()),
        ];
        for (i, m) in &self.memories {
            v.push(Got::Memory(*i, m.clone()));
        }
        v
    }

    /// Writes the snapshot; returns the file and the offsets where each
    /// section (and the END record) starts.
    fn write(&self, opts: WriteOptions) -> (Vec<u8>, Vec<usize>, WriteStats) {
        let sink = Sink::default();
        let mut bounds = vec![FILE_HEADER_LEN];
        let mut w = SnapshotWriter::new(sink.clone(), &metadata(), opts).unwrap();
        bounds.push(sink.len.get());
        w.write_section_bytes(SectionKind::Module, &self.module)
            .unwrap();
        bounds.push(sink.len.get());
        let mut s = w
            .begin_section(SectionKind::Globals, self.globals.len() as u64)
            .unwrap();
        for part in self.globals.chunks(7) {
            s.write_all(part).unwrap();
        }
        s.finish().unwrap();
        bounds.push(sink.len.get());
        w.write_section(
            SectionKind::Tensors,
            &mut Cursor::new(&self.tensors),
            self.tensors.len() as u64,
        )
        .unwrap();
        bounds.push(sink.len.get());
        for (i, m) in &self.memories {
            w.write_memory(*i, m).unwrap();
            bounds.push(sink.len.get());
        }
        let (_, stats) = w.finish().unwrap();
        let bytes = sink.bytes.borrow().clone();
        assert_eq!(stats.file_bytes as usize, bytes.len());
        (bytes, bounds, stats)
    }
}

fn kind_of<T>(r: CoreResult<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("a bad snapshot (or bad call) was accepted"),
        Err(e) => e.kind,
    }
}

fn small_limits() -> ReadOptions {
    ReadOptions {
        max_section_bytes: 8 << 20,
        max_memory_bytes: 4 << 20,
        max_sections: 64,
        ..ReadOptions::default()
    }
}

#[test]
fn format_constants_are_pinned() {
    assert_eq!(SNAPSHOT_VERSION, 1);
    assert_eq!(&MAGIC, b"\x89TWS\r\n\x1a\n");
    assert_eq!(CHUNK_RAW_MAX, 1 << 20);
    assert_eq!(MEMORY_PAGE_SIZE, 65536);
    let kinds: Vec<(u32, &str)> = SectionKind::ALL
        .iter()
        .map(|k| (*k as u32, k.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "metadata"),
            (2, "module"),
            (3, "memory"),
            (4, "globals"),
            (5, "tables"),
            (6, "tensors"),
        ]
    );
}

#[test]
fn round_trip_sparse_64mib_memory_every_mode() {
    let content = Content::new(1, 64 << 20, 3 * CHUNK_RAW_MAX + 12345);
    for zstd in [false, true] {
        for signed in [false, true] {
            let opts = WriteOptions {
                compression: if zstd {
                    Compression::Zstd { level: 3 }
                } else {
                    Compression::None
                },
                signing_key: signed.then(|| key(7)),
            };
            let (bytes, _, stats) = content.write(opts);
            // 64 MiB memory, 1024 pages of which 6 are stored.
            assert_eq!(stats.sections, 7);
            assert_eq!(stats.zero_pages_skipped, 1024 - 6 + 4);
            assert!(
                bytes.len() < 8 * PAGE + 4 * CHUNK_RAW_MAX,
                "{}",
                bytes.len()
            );
            let read_opts = ReadOptions {
                signing_key: signed.then(|| key(7)),
                require_signature: signed,
                ..ReadOptions::default()
            };
            let (md, got, v) = read_all(&bytes, read_opts).unwrap();
            assert_eq!(md, metadata());
            assert!(got == content.expected(), "zstd={zstd} signed={signed}");
            let want = if signed {
                Verification::Verified
            } else {
                Verification::Unsigned
            };
            assert_eq!(v, want);
        }
    }
}

#[test]
fn compression_shrinks_compressible_sections() {
    let content = Content::new(2, 16 * PAGE, 4 * CHUNK_RAW_MAX);
    let (plain, _, _) = content.write(WriteOptions::default());
    let (packed, _, _) = content.write(WriteOptions {
        compression: Compression::Zstd { level: 1 },
        signing_key: None,
    });
    assert!(
        packed.len() * 2 < plain.len(),
        "{} vs {}",
        packed.len(),
        plain.len()
    );
}

#[test]
fn memory_restore_zero_gaps_overwrites_stale_bytes() {
    let content = Content::new(3, 12 * PAGE + 5, 10);
    let (bytes, _, _) = content.write(WriteOptions::default());
    let mut r = SnapshotReader::open(&bytes[..], ReadOptions::default()).unwrap();
    loop {
        let s = r.next_section().unwrap().unwrap();
        if s.kind == SectionKind::Memory {
            break;
        }
    }
    let h = r.read_memory_header(1 << 30).unwrap();
    assert_eq!((h.index, h.byte_len), (0, 12 * PAGE as u64 + 5));
    let mut dest = vec![0xEEu8; h.byte_len as usize + 100];
    r.restore_memory(&h, &mut dest, true).unwrap();
    assert_eq!(&dest[..h.byte_len as usize], &content.memories[0].1[..]);
    assert!(dest[h.byte_len as usize..].iter().all(|b| *b == 0xEE));
}

#[test]
fn memory_larger_than_caller_max_is_refused() {
    let content = Content::new(4, 64 * PAGE, 10);
    let (bytes, _, _) = content.write(WriteOptions::default());
    let mut r = SnapshotReader::open(&bytes[..], ReadOptions::default()).unwrap();
    while r.next_section().unwrap().unwrap().kind != SectionKind::Memory {}
    assert_eq!(
        kind_of(r.read_memory_header(63 * PAGE as u64)),
        ErrorKind::SnapshotInvalid
    );
}

#[test]
fn truncation_at_every_boundary_and_random_offsets_is_invalid() {
    let content = Content::new(5, 20 * PAGE, CHUNK_RAW_MAX + 3);
    for zstd in [false, true] {
        for signed in [false, true] {
            let opts = WriteOptions {
                compression: if zstd {
                    Compression::Zstd { level: 1 }
                } else {
                    Compression::None
                },
                signing_key: signed.then(|| key(1)),
            };
            let (bytes, bounds, _) = content.write(opts);
            let read_opts = ReadOptions {
                signing_key: signed.then(|| key(1)),
                ..small_limits()
            };
            let mut cuts: Vec<usize> = vec![0, 1, 7, 8, 15, 16, bytes.len() - 1];
            for b in &bounds {
                cuts.extend([b.saturating_sub(1), *b, b + 1, b + CHUNK_HEADER_LEN]);
            }
            // Just before the END digest and the signature.
            cuts.push(bytes.len() - 32);
            cuts.push(bytes.len() - 64);
            let mut rng = Rng(99);
            for _ in 0..200 {
                cuts.push(rng.below(bytes.len()));
            }
            for cut in cuts.into_iter().filter(|c| *c < bytes.len()) {
                let k = kind_of(read_all(&bytes[..cut], read_opts.clone()));
                assert_eq!(k, ErrorKind::SnapshotInvalid, "cut at {cut}");
            }
        }
    }
}

#[test]
fn every_single_byte_corruption_is_detected() {
    let content = Content::new(6, 100, 300);
    for signed in [false, true] {
        let opts = WriteOptions {
            compression: Compression::Zstd { level: 1 },
            signing_key: signed.then(|| key(2)),
        };
        let (bytes, _, _) = content.write(opts);
        let read_opts = ReadOptions {
            signing_key: signed.then(|| key(2)),
            ..small_limits()
        };
        assert!(read_all(&bytes, read_opts.clone()).is_ok());
        let mut rng = Rng(5);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << rng.below(8);
            let k = kind_of(read_all(&bad, read_opts.clone()));
            let expected = match i {
                8..=11 => ErrorKind::SnapshotIncompatible,
                _ if signed && i >= bytes.len() - 32 => ErrorKind::SnapshotSignatureInvalid,
                _ => ErrorKind::SnapshotInvalid,
            };
            assert_eq!(k, expected, "flip at {i}");
        }
    }
}

#[test]
fn wrong_magic_is_invalid() {
    let (mut bytes, _, _) = Content::new(7, PAGE, 1).write(WriteOptions::default());
    bytes[1] = b'X';
    assert_eq!(
        kind_of(read_all(&bytes, ReadOptions::default())),
        ErrorKind::SnapshotInvalid
    );
    assert_eq!(
        kind_of(read_all(b"", ReadOptions::default())),
        ErrorKind::SnapshotInvalid
    );
    assert_eq!(
        kind_of(read_all(b"\0asm\x01\0\0\0", ReadOptions::default())),
        ErrorKind::SnapshotInvalid
    );
}

#[test]
fn other_version_is_incompatible() {
    let (mut bytes, _, _) = Content::new(8, PAGE, 1).write(WriteOptions::default());
    bytes[8..12].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_le_bytes());
    let e = SnapshotReader::open(&bytes[..], ReadOptions::default())
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::SnapshotIncompatible);
    assert_eq!(e.kind.as_str(), "snapshot_incompatible");
}

#[test]
fn other_function_is_incompatible() {
    let md = metadata();
    assert!(md.check_function(&[0xAB; 32]).is_ok());
    assert_eq!(
        kind_of(md.check_function(&[0xAC; 32])),
        ErrorKind::SnapshotIncompatible
    );
}

#[test]
fn trailing_bytes_are_invalid() {
    let (mut bytes, _, _) = Content::new(9, PAGE, 1).write(WriteOptions::default());
    bytes.push(0);
    assert_eq!(
        kind_of(read_all(&bytes, ReadOptions::default())),
        ErrorKind::SnapshotInvalid
    );
}

/// A valid file prefix: header plus metadata section, no END.
fn prefix() -> Vec<u8> {
    let content = Content::new(10, PAGE, 1);
    let (bytes, bounds, _) = content.write(WriteOptions::default());
    bytes[..bounds[1]].to_vec()
}

fn section_header(kind: u32, raw_len: u64) -> Vec<u8> {
    let mut h = kind.to_le_bytes().to_vec();
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&raw_len.to_le_bytes());
    h
}

fn chunk_header(codec: u8, raw: u32, stored: u32) -> Vec<u8> {
    let mut h = vec![codec];
    h.extend_from_slice(&raw.to_le_bytes());
    h.extend_from_slice(&stored.to_le_bytes());
    h
}

/// Reads `bytes` with the small limits, consuming every section.
fn read_small(bytes: &[u8]) -> ErrorKind {
    kind_of(read_all(bytes, small_limits()))
}

#[test]
fn huge_declared_lengths_are_invalid_without_allocating() {
    // A section claiming 1 TiB (and then u64::MAX).
    for len in [1u64 << 40, u64::MAX] {
        let mut f = prefix();
        f.extend(section_header(SectionKind::Tensors as u32, len));
        assert_eq!(read_small(&f), ErrorKind::SnapshotInvalid);
    }
    // A chunk claiming more than CHUNK_RAW_MAX, or more than its section.
    for (raw, stored) in [(u32::MAX, 16), (CHUNK_RAW_MAX as u32 + 1, 16), (200, 200)] {
        let mut f = prefix();
        f.extend(section_header(SectionKind::Tensors as u32, 100));
        f.extend(chunk_header(0, raw, stored));
        f.extend([0u8; 200]);
        assert_eq!(read_small(&f), ErrorKind::SnapshotInvalid);
    }
    // A compressed chunk claiming a 4 GiB stored payload.
    let mut f = prefix();
    f.extend(section_header(SectionKind::Tensors as u32, 100));
    f.extend(chunk_header(CODEC_ZSTD, 100, u32::MAX));
    assert_eq!(read_small(&f), ErrorKind::SnapshotInvalid);
    // A memory of 1 TiB, and a memory with 2^32 - 1 runs.
    for (byte_len, runs) in [(1u64 << 40, 0u32), (4 * PAGE as u64, u32::MAX)] {
        let mut body = 0u32.to_le_bytes().to_vec();
        body.extend((PAGE as u32).to_le_bytes());
        body.extend(byte_len.to_le_bytes());
        body.extend(runs.to_le_bytes());
        let mut f = prefix();
        f.extend(section_header(
            SectionKind::Memory as u32,
            body.len() as u64,
        ));
        f.extend(chunk_header(0, body.len() as u32, body.len() as u32));
        f.extend(&body);
        f.extend(blake3::hash(&body).as_bytes());
        assert_eq!(read_small(&f), ErrorKind::SnapshotInvalid);
    }
    // A metadata section claiming 1 GiB.
    let mut f = MAGIC.to_vec();
    f.extend(SNAPSHOT_VERSION.to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(section_header(SectionKind::Metadata as u32, 1 << 30));
    assert_eq!(read_small(&f), ErrorKind::SnapshotInvalid);
    // Too many sections.
    let mut f = prefix();
    for _ in 0..100 {
        f.extend(section_header(SectionKind::Globals as u32, 0));
        f.extend(blake3::hash(b"").as_bytes());
    }
    assert_eq!(read_small(&f), ErrorKind::SnapshotInvalid);
}

#[test]
fn decompression_bomb_is_invalid() {
    // 256 MiB of zeros in one frame of a few KiB, behind a chunk header
    // that claims 1 MiB.
    let zeros = vec![0u8; 256 << 20];
    let frame = zstd::bulk::compress(&zeros, 3).unwrap();
    drop(zeros);
    assert!(frame.len() < 64 * 1024, "{}", frame.len());
    for claimed in [CHUNK_RAW_MAX as u32, 1000] {
        let mut f = prefix();
        f.extend(section_header(
            SectionKind::Tensors as u32,
            u64::from(claimed),
        ));
        f.extend(chunk_header(CODEC_ZSTD, claimed, frame.len() as u32));
        f.extend(&frame);
        f.extend([0u8; 32]);
        assert_eq!(read_small(&f), ErrorKind::SnapshotInvalid);
    }
}

#[test]
fn require_signature_refuses_unsigned() {
    let (bytes, _, _) = Content::new(11, PAGE, 1).write(WriteOptions::default());
    let opts = ReadOptions {
        signing_key: Some(key(3)),
        require_signature: true,
        ..ReadOptions::default()
    };
    let e = SnapshotReader::open(&bytes[..], opts).err().unwrap();
    assert_eq!(e.kind, ErrorKind::SnapshotSignatureInvalid);
    assert_eq!(e.kind.as_str(), "snapshot_signature_invalid");
    // require_signature with no key to check it with is a caller mistake.
    let opts = ReadOptions {
        require_signature: true,
        ..ReadOptions::default()
    };
    assert_eq!(
        kind_of(SnapshotReader::open(&bytes[..], opts)),
        ErrorKind::InvalidArgs
    );
}

#[test]
fn wrong_key_is_signature_invalid() {
    let opts = WriteOptions {
        compression: Compression::None,
        signing_key: Some(key(4)),
    };
    let (bytes, _, _) = Content::new(12, 4 * PAGE, 10).write(opts);
    let wrong = ReadOptions {
        signing_key: Some(key(5)),
        ..ReadOptions::default()
    };
    assert_eq!(
        kind_of(read_all(&bytes, wrong)),
        ErrorKind::SnapshotSignatureInvalid
    );
    // Without a key the file still reads, reported as unverified.
    let (_, _, v) = read_all(&bytes, ReadOptions::default()).unwrap();
    assert_eq!(v, Verification::SignedUnverified);
}

#[test]
fn stripped_signature_is_refused() {
    let opts = WriteOptions {
        compression: Compression::None,
        signing_key: Some(key(4)),
    };
    let (mut bytes, _, _) = Content::new(13, PAGE, 10).write(opts);
    // Drop the tag and clear the flag: the whole-file checksum catches it.
    bytes.truncate(bytes.len() - 32);
    bytes[12] = 0;
    assert_eq!(
        kind_of(read_all(&bytes, ReadOptions::default())),
        ErrorKind::SnapshotInvalid
    );
}

#[test]
fn signing_key_loads_from_file_and_rejects_short_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, b"0123456789abcdef0123\n").unwrap();
    let k = SigningKey::from_file(&path).unwrap();
    assert_eq!(format!("{k:?}"), "SigningKey(20 bytes)");
    std::fs::write(&path, b"short\n").unwrap();
    assert_eq!(
        kind_of(SigningKey::from_file(&path)),
        ErrorKind::InvalidArgs
    );
}

#[test]
fn writer_refuses_wrong_section_lengths() {
    let mut w = SnapshotWriter::new(Vec::new(), &metadata(), WriteOptions::default()).unwrap();
    let mut s = w.begin_section(SectionKind::Globals, 10).unwrap();
    s.write_all(b"12345").unwrap();
    assert_eq!(kind_of(s.finish()), ErrorKind::InvalidArgs);
    assert!(w.finish().is_err());

    let mut w = SnapshotWriter::new(Vec::new(), &metadata(), WriteOptions::default()).unwrap();
    let r = w.write_section(SectionKind::Globals, &mut Cursor::new(b"abc"), 4);
    assert_eq!(kind_of(r), ErrorKind::InvalidArgs);

    let mut w = SnapshotWriter::new(Vec::new(), &metadata(), WriteOptions::default()).unwrap();
    {
        // Abandoned without `finish`.
        let _section = w.begin_section(SectionKind::Globals, 1).unwrap();
    }
    assert_eq!(
        kind_of(w.write_section_bytes(SectionKind::Tables, b"")),
        ErrorKind::InvalidArgs
    );
}

/// A valid small snapshot for mutation (compressed and signed so every
/// code path of the reader is reachable).
fn fuzz_seed(signed: bool) -> Vec<u8> {
    let content = Content::new(14, 1000, 2000);
    let opts = WriteOptions {
        compression: Compression::Zstd { level: 1 },
        signing_key: signed.then(|| key(9)),
    };
    content.write(opts).0
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Word32(usize, u32),
    Word64(usize, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting32 = prop_oneof![
        Just(0u32),
        Just(1),
        Just(u32::MAX),
        Just(CHUNK_RAW_MAX as u32),
        Just(CHUNK_RAW_MAX as u32 + 1),
        Just(1 << 31),
        any::<u32>(),
    ];
    let interesting64 = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(1 << 40),
        Just(MEMORY_PAGE_SIZE),
        any::<u64>(),
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<usize>(), interesting32).prop_map(|(i, v)| Mutation::Word32(i, v)),
        (any::<usize>(), interesting64).prop_map(|(i, v)| Mutation::Word64(i, v)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match m {
        Mutation::Flip(i, b) => bytes[i % n] ^= 1 << b,
        Mutation::Set(i, v) => bytes[i % n] = *v,
        Mutation::Truncate(i) => bytes.truncate(i % n),
        Mutation::Insert(i, v) => {
            let at = i % (n + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Remove(i, len) => {
            let at = i % n;
            bytes.drain(at..(at + len).min(n));
        }
        Mutation::Word32(i, v) => {
            let at = (i % n).min(n.saturating_sub(4));
            let end = (at + 4).min(n);
            bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
        }
        Mutation::Word64(i, v) => {
            let at = (i % n).min(n.saturating_sub(8));
            let end = (at + 8).min(n);
            bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_snapshots_never_panic(
        signed in any::<bool>(),
        with_key in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = fuzz_seed(signed);
        for m in &mutations {
            if bytes.is_empty() {
                break;
            }
            apply(&mut bytes, m);
        }
        let opts = ReadOptions {
            signing_key: with_key.then(|| key(9)),
            ..small_limits()
        };
        match read_all(&bytes, opts) {
            Ok(_) => {}
            Err(e) => prop_assert!(
                matches!(
                    e.kind,
                    ErrorKind::SnapshotInvalid
                        | ErrorKind::SnapshotIncompatible
                        | ErrorKind::SnapshotSignatureInvalid
                ),
                "untyped error {:?}: {}", e.kind, e.message
            ),
        }
    }

    #[test]
    fn random_bytes_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..512),
        keep_header in any::<bool>(),
    ) {
        let mut bytes = Vec::new();
        if keep_header {
            bytes.extend(MAGIC);
            bytes.extend(SNAPSHOT_VERSION.to_le_bytes());
            bytes.extend(0u32.to_le_bytes());
        }
        bytes.extend(tail);
        prop_assert!(read_all(&bytes, small_limits()).is_err());
    }
}
