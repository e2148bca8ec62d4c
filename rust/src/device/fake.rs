//! The fake CUDA backend: host memory with a device's semantics.
//!
//! Selected with `TENSORCAST_CUDA_BACKEND=fake`, it lets every code path
//! above the driver run on a machine without a GPU (CI):
//!
//! * **Separate allocations.** Device memory comes from the device's own
//!   caching allocator (`DevicePool`), never from host tensors; each device
//!   has a capacity (`TENSORCAST_FAKE_CUDA_MEMORY`, default 16 GiB), and
//!   running out is `resource_exhausted`, like a real device.
//! * **Explicit copies.** Bytes enter and leave only through `copy_htod` /
//!   `copy_dtoh` on a stream.
//! * **Stream ordering.** A stream is a FIFO worker: work runs in the order
//!   it was queued, asynchronously; `synchronize` waits for it and reports
//!   the first failure (later work on a failed stream is skipped until then,
//!   as a CUDA error is sticky until observed).

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::tensor::Budget;

/// Number of fake devices (1..=16, default 1).
pub const DEVICES_ENV: &str = "TENSORCAST_FAKE_CUDA_DEVICES";
/// Bytes of memory per fake device (default 16 GiB).
pub const MEMORY_ENV: &str = "TENSORCAST_FAKE_CUDA_MEMORY";
const DEFAULT_MEMORY: u64 = 16 << 30;
/// Allocation granularity: like cudaMalloc, every block is 256-byte aligned.
const ALIGN: usize = 256;
/// Blocks up to this size round up to a power of two; larger ones to 2 MiB.
const SMALL: usize = 1 << 20;
const LARGE_STEP: usize = 2 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeConfig {
    pub devices: u32,
    pub memory_bytes: u64,
}

impl FakeConfig {
    pub fn from_env() -> FakeConfig {
        let devices = std::env::var(DEVICES_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| (1..=16).contains(n))
            .unwrap_or(1);
        let memory_bytes = std::env::var(MEMORY_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MEMORY);
        FakeConfig {
            devices,
            memory_bytes,
        }
    }
}

/// Charges a block of `size` bytes of device `index` to an instance's
/// budget (`resource_exhausted` naming the device when it is spent).
pub fn charge(index: u32, budget: Option<&Arc<Budget>>, size: usize) -> CoreResult<()> {
    if let Some(b) = budget {
        b.reserve(size as u64).map_err(|e| {
            CoreError::new(
                ErrorKind::ResourceExhausted,
                format!("cuda:{index}: {}", e.message),
            )
        })?;
    }
    Ok(())
}

/// The size class a request of `len` bytes is served from.
pub fn block_size(len: usize) -> usize {
    let len = len.max(ALIGN);
    if len <= SMALL {
        len.next_power_of_two()
    } else {
        len.div_ceil(LARGE_STEP) * LARGE_STEP
    }
}

struct Block {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: a Block exclusively owns its allocation until handed back; shared
// references only give out its address, and device memory is touched only
// by stream work, which the stream orders.
unsafe impl Send for Block {}
// SAFETY: as above.
unsafe impl Sync for Block {}

impl Block {
    fn new(size: usize) -> Option<Block> {
        let layout = Layout::from_size_align(size, ALIGN).ok()?;
        // SAFETY: size > 0 (block_size never returns 0).
        NonNull::new(unsafe { alloc_zeroed(layout) }).map(|ptr| Block { ptr, size })
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in `Block::new` with this size and alignment.
        unsafe {
            dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.size, ALIGN),
            )
        };
    }
}

#[derive(Default)]
struct PoolState {
    /// Bytes of blocks handed out.
    live: u64,
    /// Bytes of freed blocks kept for reuse.
    cached: u64,
    free: HashMap<usize, Vec<Block>>,
}

/// One fake device's memory: a caching allocator (no host allocation per
/// op once warm), bounded by the device's capacity.
pub struct DevicePool {
    index: u32,
    capacity: u64,
    state: Mutex<PoolState>,
}

impl DevicePool {
    pub fn new(index: u32, capacity: u64) -> Arc<DevicePool> {
        Arc::new(DevicePool {
            index,
            capacity,
            state: Mutex::new(PoolState::default()),
        })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// (bytes handed out, bytes cached for reuse).
    pub fn usage(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.live, s.cached)
    }

    /// `len` bytes of device memory (zeroed when new, unspecified when
    /// reused), charged to `budget` (the instance's device cap) while alive.
    pub fn alloc(
        self: &Arc<Self>,
        len: usize,
        budget: Option<&Arc<Budget>>,
    ) -> CoreResult<DeviceAlloc> {
        let size = block_size(len);
        charge(self.index, budget, size)?;
        let block = self.take(size);
        let block = match block {
            Ok(b) => b,
            Err(e) => {
                if let Some(b) = budget {
                    b.release(size as u64);
                }
                return Err(e);
            }
        };
        Ok(DeviceAlloc {
            pool: Arc::clone(self),
            block: Some(block),
            len,
            budget: budget.cloned(),
        })
    }

    fn take(&self, size: usize) -> CoreResult<Block> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = s.free.get_mut(&size).and_then(Vec::pop) {
            s.cached -= size as u64;
            s.live += size as u64;
            return Ok(b);
        }
        if s.live + s.cached + size as u64 > self.capacity {
            // Give cached blocks back before refusing, as a caching
            // allocator does on a real device.
            s.free.clear();
            s.cached = 0;
        }
        if s.live + size as u64 > self.capacity {
            return Err(CoreError::new(
                ErrorKind::ResourceExhausted,
                format!(
                    "cuda:{}: out of device memory allocating {size} bytes ({} of {} in use)",
                    self.index, s.live, self.capacity
                ),
            ));
        }
        let b = Block::new(size).ok_or_else(|| {
            CoreError::new(
                ErrorKind::ResourceExhausted,
                format!("cuda:{}: the host refused {size} bytes", self.index),
            )
        })?;
        s.live += size as u64;
        Ok(b)
    }

    fn give_back(&self, block: Block) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let size = block.size as u64;
        s.live -= size;
        s.cached += size;
        s.free.entry(block.size).or_default().push(block);
    }

    /// Frees every cached block.
    pub fn trim(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.free.clear();
        s.cached = 0;
    }
}

/// A live device allocation; returned to its pool when dropped.
pub struct DeviceAlloc {
    pool: Arc<DevicePool>,
    block: Option<Block>,
    len: usize,
    budget: Option<Arc<Budget>>,
}

impl DeviceAlloc {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn device(&self) -> u32 {
        self.pool.index
    }

    /// The memory's address in the fake backend's (host) address space:
    /// for stream work only, which the stream orders.
    pub(crate) fn raw(&self) -> *mut u8 {
        self.block
            .as_ref()
            .map_or(std::ptr::null_mut(), |b| b.ptr.as_ptr())
    }
}

impl Drop for DeviceAlloc {
    fn drop(&mut self) {
        if let Some(block) = self.block.take() {
            let size = block.size as u64;
            self.pool.give_back(block);
            if let Some(b) = &self.budget {
                b.release(size);
            }
        }
    }
}

type Job = Box<dyn FnOnce() -> CoreResult<()> + Send>;

#[derive(Default)]
struct StreamState {
    queued: u64,
    done: u64,
    error: Option<CoreError>,
}

/// An in-order work queue on its own thread.
pub struct FakeStream {
    device: u32,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    state: Arc<(Mutex<StreamState>, Condvar)>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl FakeStream {
    pub fn new(device: u32) -> CoreResult<FakeStream> {
        let (tx, rx) = mpsc::channel::<Job>();
        let state: Arc<(Mutex<StreamState>, Condvar)> = Arc::default();
        let st = Arc::clone(&state);
        let worker = std::thread::Builder::new()
            .name(format!("tw-fake-cuda{device}"))
            .spawn(move || {
                for job in rx {
                    let failed = {
                        let s = st.0.lock().unwrap_or_else(|e| e.into_inner());
                        s.error.is_some()
                    };
                    // A failed stream skips work until the error is observed.
                    let result = if failed {
                        Ok(())
                    } else {
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
                            Ok(r) => r,
                            Err(_) => Err(CoreError::internal("device work panicked")),
                        }
                    };
                    let mut s = st.0.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = result {
                        s.error.get_or_insert(e);
                    }
                    s.done += 1;
                    st.1.notify_all();
                }
            })
            .map_err(|e| CoreError::internal(format!("cannot start a stream thread: {e}")))?;
        Ok(FakeStream {
            device,
            tx: Mutex::new(Some(tx)),
            state,
            worker: Mutex::new(Some(worker)),
        })
    }

    pub fn device(&self) -> u32 {
        self.device
    }

    /// Queues `job`; it runs after everything queued before it.
    pub fn enqueue(&self, job: impl FnOnce() -> CoreResult<()> + Send + 'static) -> CoreResult<()> {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let tx = tx
            .as_ref()
            .ok_or_else(|| CoreError::internal("the stream is closed"))?;
        {
            let mut s = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
            s.queued += 1;
        }
        tx.send(Box::new(job))
            .map_err(|_| CoreError::internal("the stream's worker is gone"))
    }

    /// Waits for all queued work; returns (and clears) the first failure.
    pub fn synchronize(&self) -> CoreResult<()> {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        while s.done < s.queued {
            s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        match s.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `f` on the stream after everything queued before it and returns
    /// its result (or the first failure of the stream).
    pub fn run_sync<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> CoreResult<T> + Send + 'static,
    ) -> CoreResult<T> {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let out = Arc::clone(&slot);
        self.enqueue(move || {
            let v = f()?;
            *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
            Ok(())
        })?;
        self.synchronize()?;
        let v = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        v.ok_or_else(|| CoreError::internal("device work was skipped"))
    }

    /// Queues a copy of `src` into `dst` at `offset` (host to device).
    pub fn copy_htod(&self, dst: &Arc<DeviceAlloc>, offset: usize, src: Vec<u8>) -> CoreResult<()> {
        check_range(dst, offset, src.len())?;
        let dst = Arc::clone(dst);
        self.enqueue(move || {
            // SAFETY: range checked above; `dst` is kept alive by the job and
            // only stream work touches device memory, in order.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), dst.raw().add(offset), src.len())
            };
            Ok(())
        })
    }

    /// Copies `len` bytes of `src` from `offset` to the host, after all
    /// queued work (synchronous, like cudaMemcpy).
    pub fn copy_dtoh(
        &self,
        src: &Arc<DeviceAlloc>,
        offset: usize,
        len: usize,
    ) -> CoreResult<Vec<u8>> {
        check_range(src, offset, len)?;
        let out = Arc::new(Mutex::new(Vec::new()));
        let (o, s) = (Arc::clone(&out), Arc::clone(src));
        self.enqueue(move || {
            let mut v = vec![0u8; len];
            // SAFETY: range checked above; ordered after earlier writes.
            unsafe { std::ptr::copy_nonoverlapping(s.raw().add(offset), v.as_mut_ptr(), len) };
            *o.lock().unwrap_or_else(|e| e.into_inner()) = v;
            Ok(())
        })?;
        self.synchronize()?;
        let v = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(v)
    }
}

fn check_range(a: &DeviceAlloc, offset: usize, len: usize) -> CoreResult<()> {
    if offset.checked_add(len).is_none_or(|end| end > a.len()) {
        return Err(CoreError::new(
            ErrorKind::InvalidArgs,
            format!(
                "copy of {len} bytes at {offset} is outside a {}-byte allocation",
                a.len()
            ),
        ));
    }
    Ok(())
}

impl Drop for FakeStream {
    fn drop(&mut self) {
        // Closing the channel ends the worker once it drained the queue.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn size_classes() {
        assert_eq!(block_size(1), 256);
        assert_eq!(block_size(300), 512);
        assert_eq!(block_size(1 << 20), 1 << 20);
        assert_eq!(block_size((1 << 20) + 1), 2 << 20);
        assert_eq!(block_size(5 << 20), 6 << 20);
    }

    #[test]
    fn freed_blocks_are_reused_and_capacity_is_enforced() {
        let pool = DevicePool::new(0, 8 << 20);
        let a = pool.alloc(3 << 20, None).unwrap();
        let addr = a.raw() as usize;
        drop(a);
        assert_eq!(pool.usage(), (0, 4 << 20));
        let b = pool.alloc(4 << 20, None).unwrap();
        assert_eq!(b.raw() as usize, addr, "the cached block is reused");
        let c = pool.alloc(4 << 20, None).unwrap();
        let err = pool.alloc(1, None).err().unwrap();
        assert_eq!(err.kind, ErrorKind::ResourceExhausted);
        assert!(err.message.contains("out of device memory"));
        drop((b, c));
        // Cached blocks make way for a different size class.
        let d = pool.alloc(7 << 20, None).unwrap();
        assert_eq!(pool.usage(), (8 << 20, 0));
        drop(d);
    }

    #[test]
    fn allocations_count_against_the_instance_cap() {
        let pool = DevicePool::new(1, 1 << 30);
        let budget = Arc::new(Budget::new(1 << 20));
        let a = pool.alloc(600 << 10, Some(&budget)).unwrap();
        assert_eq!(budget.used(), 1 << 20);
        let err = pool.alloc(1, Some(&budget)).err().unwrap();
        assert_eq!(err.kind, ErrorKind::ResourceExhausted);
        assert!(err.message.starts_with("cuda:1:"));
        drop(a);
        assert_eq!(budget.used(), 0);
        pool.alloc(1000, Some(&budget)).unwrap();
    }

    #[test]
    fn streams_run_work_in_order_and_report_the_first_error() {
        let pool = DevicePool::new(0, 1 << 30);
        let s = FakeStream::new(0).unwrap();
        let buf = Arc::new(pool.alloc(16, None).unwrap());
        s.copy_htod(&buf, 0, vec![1; 16]).unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            let seen = Arc::clone(&seen);
            s.enqueue(move || {
                assert_eq!(seen.fetch_add(1, Ordering::SeqCst), i);
                Ok(())
            })
            .unwrap();
        }
        s.copy_htod(&buf, 8, vec![2; 8]).unwrap();
        assert_eq!(
            s.copy_dtoh(&buf, 0, 16).unwrap(),
            [[1u8; 8], [2u8; 8]].concat()
        );
        assert_eq!(seen.load(Ordering::SeqCst), 100);

        s.enqueue(|| Err(CoreError::internal("illegal launch")))
            .unwrap();
        let skipped = Arc::new(AtomicUsize::new(0));
        let k = Arc::clone(&skipped);
        s.enqueue(move || {
            k.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        let err = s.synchronize().err().unwrap();
        assert!(err.message.contains("illegal launch"));
        assert_eq!(
            skipped.load(Ordering::SeqCst),
            0,
            "work after a failure is skipped"
        );
        // Observed: the stream is usable again.
        assert_eq!(s.copy_dtoh(&buf, 0, 1).unwrap(), vec![1]);
        assert!(s.copy_htod(&buf, 10, vec![0; 7]).is_err(), "out of range");
    }
}
