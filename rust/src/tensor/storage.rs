//! Where a tensor's bytes live.
//!
//! * `Host`: owned, 64-byte aligned, zero-initialised heap memory.
//! * `Shm`: a memfd-backed shared-memory region another process can map
//!   (by receiving the fd); mapped read-write or read-only.
//! * `External`: someone else's memory (a numpy array, a DLPack producer, a
//!   bound artifact), kept alive by an owner object; read-only or writable.
//!
//! * `Device`: memory on an accelerator (`crate::device`); host code never
//!   reads it directly: bytes move with explicit copies, kernels run on the
//!   device's stream.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::any::Any;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use super::Budget;

use crate::error::{CoreError, CoreResult, ErrorKind};

/// Alignment of host allocations: a cache line, and enough for AVX-512 loads.
pub const HOST_ALIGN: usize = 64;

/// Zeroed allocations at least this large come straight from `mmap`: the
/// kernel hands out zeroed pages (no memset), maybe backed by huge pages.
const MMAP_THRESHOLD: usize = 1 << 20;
/// Uninitialised allocations below this size come from the heap, whose
/// freed blocks are reused without page faults; larger ones from `mmap`.
const UNINIT_MMAP_THRESHOLD: usize = 32 << 20;
/// Transparent huge pages are 2 MiB on x86_64 and aarch64.
const HUGE_PAGE: usize = 2 << 20;

/// Owned, aligned host memory, optionally charged to a budget until dropped.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    mmapped: bool,
    charge: Option<Arc<Budget>>,
}

// SAFETY: AlignedBuf exclusively owns its allocation; the pointer is never
// shared except through `Storage`, whose users synchronise access.
unsafe impl Send for AlignedBuf {}
// SAFETY: see above; shared references only hand out raw pointers.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `len` bytes, 64-byte aligned, whose contents are unspecified: for
    /// kernel outputs, which write every element before anything reads one.
    pub fn uninit(len: usize) -> CoreResult<Self> {
        if len == 0 || len >= UNINIT_MMAP_THRESHOLD {
            return Self::zeroed(len);
        }
        let oom = || {
            CoreError::new(
                ErrorKind::MemoryLimit,
                format!("out of host memory allocating {len} bytes"),
            )
        };
        let layout = Layout::from_size_align(len, HOST_ALIGN).map_err(|_| oom())?;
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc(layout) };
        let ptr = NonNull::new(raw).ok_or_else(oom)?;
        Ok(AlignedBuf {
            ptr,
            len,
            mmapped: false,
            charge: None,
        })
    }

    /// `len` zeroed bytes, 64-byte aligned. Fails (instead of aborting) when
    /// the allocator refuses.
    pub fn zeroed(len: usize) -> CoreResult<Self> {
        let oom = || {
            CoreError::new(
                ErrorKind::MemoryLimit,
                format!("out of host memory allocating {len} bytes"),
            )
        };
        if len == 0 {
            // A dangling but aligned pointer: never dereferenced for 0 bytes.
            let ptr = NonNull::new(HOST_ALIGN as *mut u8)
                .ok_or_else(|| CoreError::internal("null alignment"))?;
            return Ok(AlignedBuf {
                ptr,
                len: 0,
                mmapped: false,
                charge: None,
            });
        }
        if len >= MMAP_THRESHOLD {
            // SAFETY: anonymous private mapping; the result is checked.
            let raw = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if raw == libc::MAP_FAILED {
                return Err(oom());
            }
            // Ask for huge pages where the range covers whole ones: far fewer
            // page faults when a kernel first writes a large output. Advice
            // only; failure is harmless.
            let start = (raw as usize).next_multiple_of(HUGE_PAGE);
            let end = (raw as usize + len) / HUGE_PAGE * HUGE_PAGE;
            if end > start {
                // SAFETY: [start, end) lies inside the mapping just made.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
                };
            }
            let ptr = NonNull::new(raw.cast::<u8>()).ok_or_else(oom)?;
            return Ok(AlignedBuf {
                ptr,
                len,
                mmapped: true,
                charge: None,
            });
        }
        let layout = Layout::from_size_align(len, HOST_ALIGN).map_err(|_| oom())?;
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(oom)?;
        Ok(AlignedBuf {
            ptr,
            len,
            mmapped: false,
            charge: None,
        })
    }

    /// As `zeroed` (or `uninit`), first reserving `len` bytes of `budget`
    /// (released on drop).
    pub fn charged(len: usize, zero: bool, budget: &Arc<Budget>) -> CoreResult<Self> {
        budget.reserve(len as u64)?;
        let made = if zero {
            Self::zeroed(len)
        } else {
            Self::uninit(len)
        };
        match made {
            Ok(mut b) => {
                b.charge = Some(budget.clone());
                Ok(b)
            }
            Err(e) => {
                budget.release(len as u64);
                Err(e)
            }
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Some(b) = self.charge.take() {
            b.release(self.len as u64);
        }
        if self.len == 0 {
            return;
        }
        if self.mmapped {
            // SAFETY: unmapping exactly the mapping made in `zeroed`.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        } else {
            // SAFETY: allocated in `zeroed` with exactly this layout.
            unsafe {
                dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.len, HOST_ALIGN),
                )
            };
        }
    }
}

/// A memfd shared-memory region, mapped into this process.
pub struct ShmRegion {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping lives as long as the region; access is through raw
// pointers whose users synchronise.
unsafe impl Send for ShmRegion {}
// SAFETY: as above.
unsafe impl Sync for ShmRegion {}

impl ShmRegion {
    /// A new zero-filled region of `len` bytes, mapped read-write.
    pub fn create(name: &str, len: usize) -> CoreResult<Self> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| CoreError::invalid_args("shm name contains NUL"))?;
        // SAFETY: valid C string; flags are plain constants.
        let fd = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if fd < 0 {
            return Err(os_error("memfd_create"));
        }
        // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: fd is a valid memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(os_error("ftruncate"));
        }
        Self::map(fd, len, true)
    }

    /// Maps an existing region (e.g. an fd received from another process).
    /// `len` must not exceed the file's size.
    pub fn from_fd(fd: OwnedFd, len: usize, writable: bool) -> CoreResult<Self> {
        // SAFETY: fstat on a valid fd into a zeroed struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(os_error("fstat"));
        }
        if (st.st_size as u64) < len as u64 {
            return Err(CoreError::invalid_args(format!(
                "shared-memory region is {} bytes, smaller than the {len} bytes asked for",
                st.st_size
            )));
        }
        Self::map(fd, len, writable)
    }

    fn map(fd: OwnedFd, len: usize, writable: bool) -> CoreResult<Self> {
        if len == 0 {
            let ptr = NonNull::new(HOST_ALIGN as *mut u8)
                .ok_or_else(|| CoreError::internal("null alignment"))?;
            return Ok(ShmRegion {
                fd,
                ptr,
                len,
                writable,
            });
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: mapping a valid fd of at least `len` bytes; the result is checked.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(os_error("mmap"));
        }
        let ptr = NonNull::new(raw.cast::<u8>())
            .ok_or_else(|| CoreError::internal("mmap returned null"))?;
        Ok(ShmRegion {
            fd,
            ptr,
            len,
            writable,
        })
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// A duplicate of the fd, for handing to another process.
    pub fn dup_fd(&self) -> CoreResult<OwnedFd> {
        self.fd
            .try_clone()
            .map_err(|e| CoreError::internal(format!("dup of shm fd failed: {e}")))
    }
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the mapping made in `map`.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

fn os_error(what: &str) -> CoreError {
    CoreError::internal(format!(
        "{what} failed: {}",
        std::io::Error::last_os_error()
    ))
}

/// Memory owned by someone else, kept alive by `owner`.
pub struct External {
    ptr: *mut u8,
    len: usize,
    writable: bool,
    _owner: Box<dyn Any + Send + Sync>,
}

// SAFETY: the owner keeps the memory alive and is itself Send + Sync.
unsafe impl Send for External {}
// SAFETY: as above.
unsafe impl Sync for External {}

impl External {
    /// # Safety
    /// `ptr..ptr+len` must stay valid (and, if `writable`, writable) for as
    /// long as `owner` lives.
    pub unsafe fn new(
        ptr: *mut u8,
        len: usize,
        writable: bool,
        owner: Box<dyn Any + Send + Sync>,
    ) -> Self {
        External {
            ptr,
            len,
            writable,
            _owner: owner,
        }
    }
}

/// A tensor's backing memory.
pub enum Storage {
    Host(AlignedBuf),
    Shm(ShmRegion),
    External(External),
    Device(crate::device::DeviceMem),
}

impl Storage {
    pub fn host_zeroed(len: usize) -> CoreResult<Self> {
        Ok(Storage::Host(AlignedBuf::zeroed(len)?))
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::Host(b) => b.len,
            Storage::Shm(s) => s.len,
            Storage::External(e) => e.len,
            Storage::Device(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_ptr(&self) -> *const u8 {
        match self {
            Storage::Host(b) => b.ptr.as_ptr(),
            Storage::Shm(s) => s.ptr.as_ptr(),
            Storage::External(e) => e.ptr,
            Storage::Device(d) => d.raw(),
        }
    }

    /// The pointer for writing, if this memory may be written at all.
    pub fn as_mut_ptr(&self) -> Option<*mut u8> {
        match self {
            Storage::Host(b) => Some(b.ptr.as_ptr()),
            Storage::Shm(s) => s.writable.then_some(s.ptr.as_ptr()),
            Storage::External(e) => e.writable.then_some(e.ptr),
            Storage::Device(d) => Some(d.raw()),
        }
    }

    /// `"host"`, `"shm"` or `"external"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Storage::Host(_) => "host",
            Storage::Shm(_) => "shm",
            Storage::External(_) => "external",
            Storage::Device(_) => "device",
        }
    }

    pub fn shm(&self) -> Option<&ShmRegion> {
        match self {
            Storage::Shm(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_memory_is_aligned_and_zeroed() {
        let s = Storage::host_zeroed(1000).unwrap();
        assert_eq!(s.as_ptr() as usize % HOST_ALIGN, 0);
        // SAFETY: 1000 valid bytes.
        let bytes = unsafe { std::slice::from_raw_parts(s.as_ptr(), 1000) };
        assert!(bytes.iter().all(|b| *b == 0));
    }

    #[test]
    fn shm_region_is_shared_between_mappings() {
        let a = ShmRegion::create("t", 4096).unwrap();
        let b = ShmRegion::from_fd(a.dup_fd().unwrap(), 4096, false).unwrap();
        // SAFETY: both map 4096 bytes of the same file.
        unsafe { *a.ptr.as_ptr().add(10) = 42 };
        assert_eq!(unsafe { *b.ptr.as_ptr().add(10) }, 42);
        assert!(Storage::Shm(b).as_mut_ptr().is_none());
    }
}
