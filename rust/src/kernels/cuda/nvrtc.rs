//! Kernel compilation with NVRTC, cached in memory and on disk.
//!
//! Modules are compiled to CUBIN (machine code for the device's exact
//! architecture, `sm_XY`), which any driver of the same CUDA major version
//! loads; PTX would need a driver at least as new as NVRTC. A module's
//! CUBIN is keyed by the BLAKE3 of its source, the architecture, the NVRTC
//! version and the driver version; the disk level lives under
//! `$TENSOR_WASM_HOME/kernels/cuda/` (`<key>.cubin`, written to a temporary
//! file and renamed into place), so a process compiles a module at most
//! once per machine and toolkit. NVRTC is loaded at run time: on a
//! machine without it, `available()` is false and nothing here touches it.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::sources::{self, Family};
use crate::error::{CoreError, CoreResult};
use crate::tensor::DType;

/// Whether libnvrtc can be loaded. A success is remembered; a failure is
/// probed again next time (the library may have been loaded since).
pub fn available() -> bool {
    static FOUND: OnceLock<()> = OnceLock::new();
    if FOUND.get().is_some() {
        return true;
    }
    let found = cudarc::get_lib_name_candidates("nvrtc")
        .iter()
        // SAFETY: loading NVRTC runs no initialisers that matter here.
        .any(|name| unsafe { libloading::Library::new(name) }.is_ok());
    if found {
        let _ = FOUND.set(());
    }
    found
}

/// NVRTC's `(major, minor)`.
pub fn version() -> CoreResult<(i32, i32)> {
    if !available() {
        return Err(CoreError::invalid_args("NVRTC is not available"));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers; the library is loadable (checked).
    let rc = catch_unwind(AssertUnwindSafe(|| unsafe {
        cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor)
    }))
    .map_err(|_| CoreError::internal("NVRTC could not be loaded"))?;
    if rc != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(CoreError::internal(format!("nvrtcVersion failed: {rc:?}")));
    }
    Ok((major, minor))
}

/// `$TENSOR_WASM_HOME/kernels/cuda` (default home `~/.tensor-wasm`).
pub fn default_cache_dir() -> Option<PathBuf> {
    let home = std::env::var_os("TENSOR_WASM_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|h| h.join(".tensor-wasm")))?;
    Some(home.join("kernels").join("cuda"))
}

/// What a compile is for: the target and the toolchain that made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Compute capability, e.g. (9, 0).
    pub arch: (i32, i32),
    /// The driver's version (part of the key: PTX is JIT-compiled by it).
    pub driver: String,
}

impl Target {
    /// For PTX (a virtual architecture).
    fn ptx_option(&self) -> String {
        format!("--gpu-architecture=compute_{}{}", self.arch.0, self.arch.1)
    }

    /// For CUBIN (the real architecture).
    fn cubin_option(&self) -> String {
        format!("--gpu-architecture=sm_{}{}", self.arch.0, self.arch.1)
    }
}

type Key = [u8; 32];

fn memory() -> &'static Mutex<HashMap<Key, Arc<[u8]>>> {
    static MEM: OnceLock<Mutex<HashMap<Key, Arc<[u8]>>>> = OnceLock::new();
    MEM.get_or_init(Default::default)
}

/// An ELF image (what CUBIN files are).
fn is_cubin(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Counters of the cache, for tests and `device_info`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub compiles: u64,
}

static STATS: Mutex<Stats> = Mutex::new(Stats {
    memory_hits: 0,
    disk_hits: 0,
    compiles: 0,
});

pub fn stats() -> Stats {
    *STATS.lock()
}

/// The CUBIN of `src` for `target`: from memory, from `cache_dir`, or
/// compiled now (and stored in both).
pub fn compile(src: &str, target: &Target, cache_dir: Option<&Path>) -> CoreResult<Arc<[u8]>> {
    let (major, minor) = version()?;
    let key: Key = {
        let mut h = blake3::Hasher::new();
        h.update(src.as_bytes());
        h.update(
            format!(
                "\0cubin\0{:?}\0{}\0nvrtc {major}.{minor}",
                target.arch, target.driver
            )
            .as_bytes(),
        );
        h.finalize().into()
    };
    if let Some(ptx) = memory().lock().get(&key) {
        STATS.lock().memory_hits += 1;
        return Ok(ptx.clone());
    }
    let file = cache_dir.map(|d| d.join(format!("{}.cubin", crate::exec::function::hex(&key))));
    if let Some(bytes) = file
        .as_deref()
        .and_then(|f| std::fs::read(f).ok())
        .filter(|b| is_cubin(b))
    {
        STATS.lock().disk_hits += 1;
        let image: Arc<[u8]> = bytes.into();
        memory().lock().insert(key, image.clone());
        return Ok(image);
    }
    let image: Arc<[u8]> = compile_cubin(src, target)?.into();
    STATS.lock().compiles += 1;
    if let Some(file) = file {
        // A cache that cannot be written only costs a compile next time.
        let _ = store(&file, &image);
    }
    memory().lock().insert(key, image.clone());
    Ok(image)
}

fn store(file: &Path, image: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("ptx"),
        std::process::id()
    ));
    std::fs::write(&tmp, image)?;
    std::fs::rename(&tmp, file)
}

/// `src` compiled to CUBIN for `target` (no cache). A source that does not
/// compile is `invalid_args` with NVRTC's log.
pub fn compile_cubin(src: &str, target: &Target) -> CoreResult<Vec<u8>> {
    use cudarc::nvrtc::{result, sys};
    let csrc = std::ffi::CString::new(src)
        .map_err(|_| CoreError::invalid_args("the kernel source contains a NUL byte"))?;
    let opts = [target.cubin_option(), "--std=c++17".to_owned()];
    let nvrtc_err = |what: &str, e: result::NvrtcError| {
        CoreError::internal(format!("NVRTC {what} failed: {e:?}"))
    };
    let run = || -> CoreResult<Vec<u8>> {
        let prog = result::create_program(&csrc, None).map_err(|e| nvrtc_err("create", e))?;
        // SAFETY: `prog` is a live program until destroyed at the end.
        let out = unsafe {
            match result::compile_program(prog, &opts) {
                Err(_) => {
                    let log = result::get_program_log(prog).unwrap_or_default();
                    let log: Vec<u8> = log
                        .iter()
                        .map(|&c| c as u8)
                        .take_while(|&c| c != 0)
                        .collect();
                    Err(CoreError::invalid_args(format!(
                        "the kernel does not compile:\n{}",
                        String::from_utf8_lossy(&log)
                    )))
                }
                Ok(()) => {
                    let mut size = 0usize;
                    sys::nvrtcGetCUBINSize(prog, &mut size)
                        .result()
                        .map_err(|e| nvrtc_err("nvrtcGetCUBINSize", e))
                        .and_then(|()| {
                            let mut buf = vec![0u8; size];
                            sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr().cast())
                                .result()
                                .map_err(|e| nvrtc_err("nvrtcGetCUBIN", e))?;
                            Ok(buf)
                        })
                }
            }
        };
        // SAFETY: created above, destroyed once.
        let _ = unsafe { result::destroy_program(prog) };
        out
    };
    catch_unwind(AssertUnwindSafe(run))
        .map_err(|_| CoreError::internal("NVRTC could not be loaded"))?
}

fn compile_now(src: &str, target: &Target) -> CoreResult<String> {
    use cudarc::nvrtc::{CompileError, CompileOptions, compile_ptx_with_opts};
    let opts = CompileOptions {
        options: vec![target.ptx_option(), "--std=c++17".into()],
        ..Default::default()
    };
    let out = catch_unwind(AssertUnwindSafe(|| compile_ptx_with_opts(src, opts)))
        .map_err(|_| CoreError::internal("NVRTC could not be loaded"))?;
    match out {
        Ok(ptx) => Ok(ptx.to_src()),
        // The source's fault (a guest's kernel; for built-in ones, the
        // caller turns it into an internal error).
        Err(CompileError::CompileError { log, .. }) => Err(CoreError::invalid_args(format!(
            "the kernel does not compile:\n{}",
            log.to_string_lossy()
        ))),
        Err(e) => Err(CoreError::internal(format!("NVRTC failed: {e:?}"))),
    }
}

/// Compiles every kernel module for `target` (no cache): to PTX, where the
/// entry points each module must define are checked, and to CUBIN, which
/// runs the assembler (register and shared-memory limits) as loading on a
/// device would. For tests; errors name the module.
pub fn check_all(target: &Target) -> CoreResult<usize> {
    let mut modules = 0;
    for family in Family::ALL {
        for &d in family.dtypes() {
            let Some(src) = sources::module_source(family, d) else {
                continue;
            };
            let named = |e: CoreError| {
                CoreError::internal(format!("{} {}: {}", family.name(), d.name(), e.message))
            };
            let ptx = compile_now(&src, target).map_err(named)?;
            compile_cubin(&src, target).map_err(named)?;
            for entry in sources::entry_points(family, d) {
                if !ptx.contains(&format!(".entry {entry}(")) {
                    return Err(CoreError::internal(format!(
                        "{} {}: no entry point {entry} in the PTX",
                        family.name(),
                        d.name()
                    )));
                }
            }
            modules += 1;
        }
    }
    Ok(modules)
}

/// `check_all` for one dtype's modules only (quicker, for tests).
pub fn check_dtype(target: &Target, d: DType) -> CoreResult<usize> {
    let mut modules = 0;
    for family in Family::ALL {
        if let Some(src) = sources::module_source(family, d) {
            compile_cubin(&src, target)?;
            modules += 1;
        }
    }
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            arch: (8, 0),
            driver: "test".into(),
        }
    }

    /// Runs where libnvrtc loads (e.g. `LD_LIBRARY_PATH` at the
    /// nvidia-cuda-nvrtc wheel's `lib/`); skipped elsewhere.
    #[test]
    fn every_kernel_module_compiles() {
        if !available() {
            eprintln!("NVRTC not available: skipped");
            return;
        }
        let n = check_all(&target()).unwrap_or_else(|e| panic!("{}", e.message));
        assert!(n >= 40, "{n} modules");
    }

    #[test]
    fn compiles_are_cached_in_memory_and_on_disk() {
        if !available() {
            eprintln!("NVRTC not available: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = sources::module_source(Family::Scale, DType::F32).unwrap();
        let unique = format!("{src}\n// {:?}\n", dir.path());
        let before = stats();
        let a = compile(&unique, &target(), Some(dir.path())).unwrap();
        let b = compile(&unique, &target(), Some(dir.path())).unwrap();
        assert_eq!(a, b);
        let after = stats();
        assert_eq!(after.compiles - before.compiles, 1);
        assert!(after.memory_hits > before.memory_hits);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        // A new process (an empty memory level) reads it from disk.
        memory().lock().clear();
        compile(&unique, &target(), Some(dir.path())).unwrap();
        assert!(stats().disk_hits > after.disk_hits);
    }
}
