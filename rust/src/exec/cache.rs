//! The two-level compiled-module cache.
//!
//! Level 1: an in-memory LRU of ready-to-instantiate modules, keyed by the
//! BLAKE3 of the module's binary bytes. Level 2: serialized artifacts on disk
//! under `<cache_dir>/<engine fingerprint>/<blake3>.cwasm`. Disk files are
//! never trusted: a file is used only if its header, length, module hash and
//! payload checksum all match, and wasmtime agrees it was built by a
//! compatible engine; anything else is deleted and the module recompiled.

use std::fs;
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use parking_lot::Mutex;
use wasmtime::Module;

use super::engine::{engine, engine_fingerprint};

/// `TWMC` + format version: bump the version when the header changes.
const MAGIC: &[u8; 4] = b"TWMC";
const FORMAT_VERSION: u32 = 2;
/// magic(4) version(4) module_hash(32) payload_len(8) payload_blake3(32)
const HEADER_LEN: usize = 4 + 4 + 32 + 8 + 32;
/// Compiled code is a few times the module's size; anything beyond this is
/// not a file we wrote.
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// Counters of what the cache did (process-wide).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub compiles: u64,
    pub disk_rejects: u64,
    pub disk_writes: u64,
    pub memory_entries: u64,
}

#[derive(Default)]
struct Counters {
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    compiles: AtomicU64,
    disk_rejects: AtomicU64,
    disk_writes: AtomicU64,
}

/// An LRU of values keyed by module hash, plus the disk level for `Module`s.
pub struct ModuleCache<V> {
    memory: Mutex<LruCache<[u8; 32], Arc<V>>>,
    counters: Counters,
}

impl<V> ModuleCache<V> {
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        ModuleCache {
            memory: Mutex::new(LruCache::new(cap)),
            counters: Counters::default(),
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<V>> {
        let hit = self.memory.lock().get(key).cloned();
        if hit.is_some() {
            self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    pub fn insert(&self, key: [u8; 32], value: Arc<V>) {
        self.memory.lock().put(key, value);
    }

    pub fn clear(&self) {
        self.memory.lock().clear();
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
            compiles: c.compiles.load(Ordering::Relaxed),
            disk_rejects: c.disk_rejects.load(Ordering::Relaxed),
            disk_writes: c.disk_writes.load(Ordering::Relaxed),
            memory_entries: self.memory.lock().len() as u64,
        }
    }

    /// Compiles `binary` (already validated for size), going through the disk
    /// level when `cache_dir` is set.
    pub fn compile(
        &self,
        key: &[u8; 32],
        binary: &[u8],
        cache_dir: Option<&Path>,
    ) -> wasmtime::Result<Module> {
        if let Some(dir) = cache_dir {
            let path = artifact_path(dir, key);
            match read_artifact(&path, key) {
                Ok(Some(module)) => {
                    self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(module);
                }
                Ok(None) => {}
                Err(()) => {
                    self.counters.disk_rejects.fetch_add(1, Ordering::Relaxed);
                    let _ = fs::remove_file(&path);
                }
            }
            let module = Module::from_binary(engine(), binary)?;
            self.counters.compiles.fetch_add(1, Ordering::Relaxed);
            // A cache that cannot be written (read-only home, full disk) costs
            // a recompile next time, nothing more.
            if write_artifact(&path, key, &module).is_ok() {
                self.counters.disk_writes.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(module);
        }
        let module = Module::from_binary(engine(), binary)?;
        self.counters.compiles.fetch_add(1, Ordering::Relaxed);
        Ok(module)
    }
}

pub fn artifact_path(dir: &Path, key: &[u8; 32]) -> PathBuf {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(engine_fingerprint()).join(format!("{hex}.cwasm"))
}

/// `Ok(None)`: no file. `Err(())`: a file that must not be used.
fn read_artifact(path: &Path, key: &[u8; 32]) -> Result<Option<Module>, ()> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    if meta.len() < HEADER_LEN as u64 || meta.len() > MAX_ARTIFACT_BYTES {
        return Err(());
    }
    let bytes = fs::read(path).map_err(|_| ())?;
    let (header, payload) = bytes.split_at(HEADER_LEN);
    if &header[0..4] != MAGIC
        || header[4..8] != FORMAT_VERSION.to_le_bytes()
        || &header[8..40] != key
    {
        return Err(());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[40..48]);
    if u64::from_le_bytes(len) != payload.len() as u64 {
        return Err(());
    }
    if blake3::hash(payload).as_bytes() != &header[48..80] {
        return Err(());
    }
    // SAFETY: `Module::deserialize` trusts its input to be wasmtime's own
    // output. The payload is byte-for-byte what `Module::serialize` wrote into
    // this file (its BLAKE3 matches the one recorded beside it, under a
    // directory only this runtime writes), and wasmtime still checks the
    // engine-compatibility header and refuses artifacts of another build.
    let module = unsafe { Module::deserialize(engine(), payload) }.map_err(|_| ())?;
    Ok(Some(module))
}

fn write_artifact(path: &Path, key: &[u8; 32], module: &Module) -> std::io::Result<()> {
    let payload = module
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    fs::create_dir_all(dir)?;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact")
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&FORMAT_VERSION.to_le_bytes())?;
        f.write_all(key)?;
        f.write_all(&(payload.len() as u64).to_le_bytes())?;
        f.write_all(blake3::hash(&payload).as_bytes())?;
        f.write_all(&payload)?;
        f.sync_all()?;
        // Rename is atomic: readers see the old file, no file, or the whole new one.
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
