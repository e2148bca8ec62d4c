//! A sandboxed WASI preview 1 (`wasi_snapshot_preview1`).
//!
//! Guests get what a pure function needs and nothing more: stdout and stderr
//! (captured, bounded, returned with the result), an empty stdin, no argv or
//! environment, realtime and monotonic clocks, random bytes and `proc_exit`.
//! There are no preopened directories and no sockets, so every path and
//! socket call fails with a WASI errno rather than reaching the host. Every
//! function of preview 1 is defined, so any toolchain's guest links.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Extern, FuncType, Linker, Memory, Val, ValType};

use super::store::StoreData;

pub const MODULE: &str = "wasi_snapshot_preview1";

// WASI errno values (preview 1 `errno` enum).
const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const ENOTSUP: i32 = 58;
const ESPIPE: i32 = 70;
const ENOTCAPABLE: i32 = 76;

/// `filetype::character_device`: what stdin/stdout/stderr look like.
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
/// `fdflags::append`, reported for stdout and stderr.
const FDFLAGS_APPEND: u16 = 1;
/// Rights a guest holds on its standard streams: fd_read (bit 1) on stdin,
/// fd_write (bit 6) on stdout/stderr, plus fd_fdstat_set_flags (bit 3).
const RIGHTS_STDIN: u64 = (1 << 1) | (1 << 3);
const RIGHTS_STDOUT: u64 = (1 << 6) | (1 << 3);

/// The guest called `proc_exit(code)`; unwinds the call like a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcExit(pub i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "guest exited with status {}", self.0)
    }
}

impl std::error::Error for ProcExit {}

/// A capped capture buffer for one output stream.
#[derive(Debug, Default)]
pub struct OutputBuf {
    data: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl OutputBuf {
    fn new(cap: usize) -> Self {
        OutputBuf {
            data: Vec::new(),
            cap,
            truncated: false,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.data.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The captured text (invalid UTF-8 replaced), and whether it was cut.
    pub fn take_text(&mut self) -> (String, bool) {
        let text = String::from_utf8_lossy(&self.data).into_owned();
        let truncated = self.truncated;
        self.data.clear();
        self.truncated = false;
        (text, truncated)
    }
}

/// Per-instance WASI state.
#[derive(Debug)]
pub struct WasiState {
    pub stdout: OutputBuf,
    pub stderr: OutputBuf,
}

impl WasiState {
    pub fn new(max_output_bytes: usize) -> Self {
        WasiState {
            stdout: OutputBuf::new(max_output_bytes),
            stderr: OutputBuf::new(max_output_bytes),
        }
    }

    pub fn reset_output(&mut self) {
        self.stdout.data.clear();
        self.stdout.truncated = false;
        self.stderr.data.clear();
        self.stderr.truncated = false;
    }
}

fn memory(caller: &mut Caller<'_, StoreData>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// Bounds-checked view of `len` bytes at `ptr`.
fn slice(mem: &[u8], ptr: i32, len: usize) -> Option<&[u8]> {
    let start = ptr as u32 as usize;
    mem.get(start..start.checked_add(len)?)
}

fn slice_mut(mem: &mut [u8], ptr: i32, len: usize) -> Option<&mut [u8]> {
    let start = ptr as u32 as usize;
    mem.get_mut(start..start.checked_add(len)?)
}

fn write_u32(mem: &mut [u8], ptr: i32, v: u32) -> bool {
    match slice_mut(mem, ptr, 4) {
        Some(s) => {
            s.copy_from_slice(&v.to_le_bytes());
            true
        }
        None => false,
    }
}

fn write_u64(mem: &mut [u8], ptr: i32, v: u64) -> bool {
    match slice_mut(mem, ptr, 8) {
        Some(s) => {
            s.copy_from_slice(&v.to_le_bytes());
            true
        }
        None => false,
    }
}

fn read_u32(mem: &[u8], ptr: u32) -> Option<u32> {
    let b = slice(mem, ptr as i32, 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Writes zero into each of the out-pointers (argv/environ sizes).
fn write_zero_sizes(mut caller: Caller<'_, StoreData>, a: i32, b: i32) -> i32 {
    let Some(mem) = memory(&mut caller) else {
        return ENOSYS;
    };
    let data = mem.data_mut(&mut caller);
    if write_u32(data, a, 0) && write_u32(data, b, 0) {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn monotonic_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn clock_now_ns(id: i32) -> Option<u64> {
    match id {
        // realtime
        0 => Some(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        ),
        // monotonic, process and thread CPU time (approximated by monotonic:
        // a sandbox has no business measuring the host's scheduler)
        1..=3 => Some(monotonic_origin().elapsed().as_nanos() as u64),
        _ => None,
    }
}

fn fd_write(
    mut caller: Caller<'_, StoreData>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> i32 {
    if fd != 1 && fd != 2 {
        return EBADF;
    }
    let Some(mem) = memory(&mut caller) else {
        return ENOSYS;
    };
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let out = if fd == 1 {
        &mut state.wasi.stdout
    } else {
        &mut state.wasi.stderr
    };
    let mut total: u32 = 0;
    for i in 0..(iovs_len as u32) {
        let Some(rec) = (iovs as u32).checked_add(i.saturating_mul(8)) else {
            return EFAULT;
        };
        let (Some(buf), Some(len)) = (
            read_u32(data, rec),
            rec.checked_add(4).and_then(|p| read_u32(data, p)),
        ) else {
            return EFAULT;
        };
        let Some(bytes) = slice(data, buf as i32, len as usize) else {
            return EFAULT;
        };
        out.write(bytes);
        total = total.saturating_add(len);
    }
    if write_u32(data, nwritten, total) {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn fd_read(
    mut caller: Caller<'_, StoreData>,
    fd: i32,
    _iovs: i32,
    _iovs_len: i32,
    nread: i32,
) -> i32 {
    if fd != 0 {
        return EBADF;
    }
    // stdin is empty: every read is end-of-file.
    let Some(mem) = memory(&mut caller) else {
        return ENOSYS;
    };
    if write_u32(mem.data_mut(&mut caller), nread, 0) {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn fd_fdstat_get(mut caller: Caller<'_, StoreData>, fd: i32, buf: i32) -> i32 {
    let (flags, rights) = match fd {
        0 => (0u16, RIGHTS_STDIN),
        1 | 2 => (FDFLAGS_APPEND, RIGHTS_STDOUT),
        _ => return EBADF,
    };
    let Some(mem) = memory(&mut caller) else {
        return ENOSYS;
    };
    let Some(out) = slice_mut(mem.data_mut(&mut caller), buf, 24) else {
        return EFAULT;
    };
    // struct fdstat { u8 filetype; u16 flags @2; u64 rights_base @8; u64 rights_inheriting @16 }
    out.fill(0);
    out[0] = FILETYPE_CHARACTER_DEVICE;
    out[2..4].copy_from_slice(&flags.to_le_bytes());
    out[8..16].copy_from_slice(&rights.to_le_bytes());
    ESUCCESS
}

fn fd_filestat_get(mut caller: Caller<'_, StoreData>, fd: i32, buf: i32) -> i32 {
    if !(0..=2).contains(&fd) {
        return EBADF;
    }
    let Some(mem) = memory(&mut caller) else {
        return ENOSYS;
    };
    let Some(out) = slice_mut(mem.data_mut(&mut caller), buf, 64) else {
        return EFAULT;
    };
    // struct filestat { dev, ino, filetype @16 (u8), nlink, size, atim, mtim, ctim }
    out.fill(0);
    out[16] = FILETYPE_CHARACTER_DEVICE;
    ESUCCESS
}

fn random_get(mut caller: Caller<'_, StoreData>, buf: i32, len: i32) -> i32 {
    let Some(mem) = memory(&mut caller) else {
        return ENOSYS;
    };
    let Some(out) = slice_mut(mem.data_mut(&mut caller), buf, len as u32 as usize) else {
        return EFAULT;
    };
    match getrandom::fill(out) {
        Ok(()) => ESUCCESS,
        Err(_) => ENOSYS,
    }
}

fn clock_time_get(mut caller: Caller<'_, StoreData>, id: i32, _precision: i64, out: i32) -> i32 {
    let Some(now) = clock_now_ns(id) else {
        return EINVAL;
    };
    let Some(mem) = memory(&mut caller) else {
        return ENOSYS;
    };
    if write_u64(mem.data_mut(&mut caller), out, now) {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn clock_res_get(mut caller: Caller<'_, StoreData>, id: i32, out: i32) -> i32 {
    if clock_now_ns(id).is_none() {
        return EINVAL;
    }
    let Some(mem) = memory(&mut caller) else {
        return ENOSYS;
    };
    if write_u64(mem.data_mut(&mut caller), out, 1_000) {
        ESUCCESS
    } else {
        EFAULT
    }
}

/// Functions that exist only to fail: (name, parameter types, errno).
/// Those taking an fd answer EBADF for fds other than 0..=2 (no file is ever
/// open) and the listed errno for the standard streams.
const STUBS: &[(&str, &[ValType], i32)] = &[
    (
        "fd_advise",
        &[ValType::I32, ValType::I64, ValType::I64, ValType::I32],
        ESPIPE,
    ),
    (
        "fd_allocate",
        &[ValType::I32, ValType::I64, ValType::I64],
        ENOTSUP,
    ),
    ("fd_datasync", &[ValType::I32], EINVAL),
    (
        "fd_fdstat_set_flags",
        &[ValType::I32, ValType::I32],
        ENOTSUP,
    ),
    (
        "fd_fdstat_set_rights",
        &[ValType::I32, ValType::I64, ValType::I64],
        ENOTCAPABLE,
    ),
    (
        "fd_filestat_set_size",
        &[ValType::I32, ValType::I64],
        EINVAL,
    ),
    (
        "fd_filestat_set_times",
        &[ValType::I32, ValType::I64, ValType::I64, ValType::I32],
        ENOTSUP,
    ),
    (
        "fd_pread",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I64,
            ValType::I32,
        ],
        ESPIPE,
    ),
    (
        "fd_pwrite",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I64,
            ValType::I32,
        ],
        ESPIPE,
    ),
    (
        "fd_readdir",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I64,
            ValType::I32,
        ],
        ENOTSUP,
    ),
    ("fd_renumber", &[ValType::I32, ValType::I32], ENOTSUP),
    (
        "fd_seek",
        &[ValType::I32, ValType::I64, ValType::I32, ValType::I32],
        ESPIPE,
    ),
    ("fd_sync", &[ValType::I32], EINVAL),
    ("fd_tell", &[ValType::I32, ValType::I32], ESPIPE),
    ("fd_prestat_get", &[ValType::I32, ValType::I32], EBADF),
    (
        "fd_prestat_dir_name",
        &[ValType::I32, ValType::I32, ValType::I32],
        EBADF,
    ),
    (
        "path_create_directory",
        &[ValType::I32, ValType::I32, ValType::I32],
        EBADF,
    ),
    (
        "path_filestat_get",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
        ],
        EBADF,
    ),
    (
        "path_filestat_set_times",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I64,
            ValType::I64,
            ValType::I32,
        ],
        EBADF,
    ),
    (
        "path_link",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
        ],
        EBADF,
    ),
    (
        "path_open",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I64,
            ValType::I64,
            ValType::I32,
            ValType::I32,
        ],
        EBADF,
    ),
    (
        "path_readlink",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
        ],
        EBADF,
    ),
    (
        "path_remove_directory",
        &[ValType::I32, ValType::I32, ValType::I32],
        EBADF,
    ),
    (
        "path_rename",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
        ],
        EBADF,
    ),
    (
        "path_symlink",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
        ],
        EBADF,
    ),
    (
        "path_unlink_file",
        &[ValType::I32, ValType::I32, ValType::I32],
        EBADF,
    ),
    (
        "poll_oneoff",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        ENOTSUP,
    ),
    ("proc_raise", &[ValType::I32], ENOSYS),
    (
        "sock_accept",
        &[ValType::I32, ValType::I32, ValType::I32],
        ENOTCAPABLE,
    ),
    (
        "sock_recv",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
        ],
        ENOTCAPABLE,
    ),
    (
        "sock_send",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
        ],
        ENOTCAPABLE,
    ),
    ("sock_shutdown", &[ValType::I32, ValType::I32], ENOTCAPABLE),
];

/// Stubs whose first parameter is a file descriptor.
fn takes_fd(name: &str) -> bool {
    name.starts_with("fd_") && name != "fd_prestat_get" && name != "fd_prestat_dir_name"
}

/// Names of every function this module provides (for import checks).
pub fn provided_names() -> &'static HashSet<&'static str> {
    static NAMES: OnceLock<HashSet<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut s: HashSet<&'static str> = [
            "args_get",
            "args_sizes_get",
            "environ_get",
            "environ_sizes_get",
            "clock_res_get",
            "clock_time_get",
            "fd_close",
            "fd_fdstat_get",
            "fd_filestat_get",
            "fd_read",
            "fd_write",
            "proc_exit",
            "random_get",
            "sched_yield",
        ]
        .into_iter()
        .collect();
        s.extend(STUBS.iter().map(|(n, _, _)| *n));
        s
    })
}

/// Defines all of WASI preview 1 in `linker`.
pub fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    let m = MODULE;
    linker.func_wrap(
        m,
        "args_get",
        |_c: Caller<'_, StoreData>, _a: i32, _b: i32| ESUCCESS,
    )?;
    linker.func_wrap(
        m,
        "environ_get",
        |_c: Caller<'_, StoreData>, _a: i32, _b: i32| ESUCCESS,
    )?;
    linker.func_wrap(m, "args_sizes_get", write_zero_sizes)?;
    linker.func_wrap(m, "environ_sizes_get", write_zero_sizes)?;
    linker.func_wrap(m, "clock_res_get", clock_res_get)?;
    linker.func_wrap(m, "clock_time_get", clock_time_get)?;
    linker.func_wrap(m, "fd_close", |_c: Caller<'_, StoreData>, fd: i32| {
        if (0..=2).contains(&fd) {
            ESUCCESS
        } else {
            EBADF
        }
    })?;
    linker.func_wrap(m, "fd_fdstat_get", fd_fdstat_get)?;
    linker.func_wrap(m, "fd_filestat_get", fd_filestat_get)?;
    linker.func_wrap(m, "fd_read", fd_read)?;
    linker.func_wrap(m, "fd_write", fd_write)?;
    linker.func_wrap(
        m,
        "proc_exit",
        |_c: Caller<'_, StoreData>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    linker.func_wrap(m, "random_get", random_get)?;
    linker.func_wrap(m, "sched_yield", |_c: Caller<'_, StoreData>| ESUCCESS)?;

    let engine = super::engine::engine();
    for &(name, params, errno) in STUBS {
        let ty = FuncType::new(engine, params.iter().cloned(), [ValType::I32]);
        let fd_aware = takes_fd(name);
        linker.func_new(m, name, ty, move |_c, args, results| {
            let code = match (fd_aware, args.first()) {
                (true, Some(Val::I32(fd))) if !(0..=2).contains(fd) => EBADF,
                _ => errno,
            };
            results[0] = Val::I32(code);
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_and_flagged() {
        let mut b = OutputBuf::new(4);
        b.write(b"ab");
        b.write(b"cdef");
        let (text, truncated) = b.take_text();
        assert_eq!(text, "abcd");
        assert!(truncated);
        let (text, truncated) = b.take_text();
        assert_eq!(text, "");
        assert!(!truncated);
    }

    #[test]
    fn every_preview1_function_is_provided() {
        let names = provided_names();
        assert_eq!(names.len(), 46);
        assert!(names.contains("path_open") && names.contains("fd_write"));
    }
}
