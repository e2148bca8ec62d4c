//! The real CUDA backend: device memory, copies, kernel modules and
//! launches, through the driver API that cudarc loads at run time.
//!
//! One context per device (the primary context). Work outside an instance
//! (Python-level ops and copies) goes on the device's default stream; an
//! instance's call runs on a stream of its own for the call's duration
//! (`call_scope`, from a per-device set of idle streams, each with its own
//! cuBLAS handle). Blocks an instance frees during a call are reused only
//! by that stream until the call ends and its stream has been waited for;
//! a block freed on the default stream and taken by an instance's stream
//! is ordered after the default stream's work with an event. So a block
//! the pool hands out again is only touched by work ordered after the work
//! that used it. Device memory is a caching allocator (`CudaPool`): no
//! `cuMemAlloc` per op once warm, bounded by the device's memory, each
//! block charged to the instance's budget while it lives. Kernels are the
//! NVRTC modules of `kernels::cuda::sources`, loaded once per device.
//!
//! Used only when this process runs tensors on a real device
//! (`device::executes`); nothing here is reached otherwise.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, OnceLock};

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DriverError, result, sys};
use parking_lot::Mutex;

use super::fake::{block_size, charge};
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::kernels::cuda::nvrtc::{self, Target};
use crate::kernels::cuda::sources::{self, Family};
use crate::tensor::{Budget, DType};

/// A driver error as ours: out-of-memory is `resource_exhausted`.
pub fn driver_error(device: u32, what: &str, e: DriverError) -> CoreError {
    let kind = if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        ErrorKind::ResourceExhausted
    } else {
        ErrorKind::Internal
    };
    CoreError::new(kind, format!("cuda:{device}: {what}: {e:?}"))
}

#[derive(Default)]
struct PoolState {
    live: u64,
    cached: u64,
    free: HashMap<usize, Vec<CUdeviceptr>>,
}

/// A stream an instance's call runs on, with the blocks freed on it during
/// the call (kept for it alone until the call ends).
pub struct InstanceStream {
    stream: Arc<CudaStream>,
    free: Mutex<HashMap<usize, Vec<CUdeviceptr>>>,
    blas: Mutex<Option<usize>>,
}

// SAFETY: the handles are used with the context bound; maps are locked.
unsafe impl Send for InstanceStream {}
// SAFETY: as above.
unsafe impl Sync for InstanceStream {}

thread_local! {
    /// The stream of the instance call running on this thread, by device.
    static ACTIVE: std::cell::RefCell<Option<(u32, Arc<InstanceStream>)>> =
        const { std::cell::RefCell::new(None) };
}

fn active(device: u32) -> Option<Arc<InstanceStream>> {
    ACTIVE.with(|a| {
        a.borrow()
            .as_ref()
            .filter(|(d, _)| *d == device)
            .map(|(_, s)| s.clone())
    })
}

/// While alive, device work of this thread on its device runs on an
/// instance stream (see the module docs). Dropping it waits for the stream,
/// hands the blocks freed on it to the pool and returns the stream.
pub struct StreamScope {
    device: &'static CudaDevice,
    stream: Arc<InstanceStream>,
    previous: Option<(u32, Arc<InstanceStream>)>,
}

/// A stream for one instance call on `device` (None: not a real device).
pub fn call_scope(device: crate::tensor::Device) -> Option<StreamScope> {
    let crate::tensor::Device::Cuda(n) = device else {
        return None;
    };
    if !super::is_real() {
        return None;
    }
    let d = self::device(n).ok()?;
    let stream = d.checkout_stream().ok()?;
    let previous = ACTIVE.with(|a| a.borrow_mut().replace((n, stream.clone())));
    Some(StreamScope {
        device: d,
        stream,
        previous,
    })
}

impl Drop for StreamScope {
    fn drop(&mut self) {
        ACTIVE.with(|a| *a.borrow_mut() = self.previous.take());
        let d = self.device;
        let idle = d.bind().is_ok() && self.stream.stream.synchronize().is_ok();
        // Its blocks are idle now: anyone may reuse them.
        let blocks: Vec<(usize, Vec<CUdeviceptr>)> = self.stream.free.lock().drain().collect();
        {
            let mut s = d.pool.state.lock();
            for (size, ptrs) in blocks {
                s.free.entry(size).or_default().extend(ptrs);
            }
        }
        if idle {
            d.idle_streams.lock().push(self.stream.clone());
        }
    }
}

/// One device's memory: freed blocks are kept by size class for reuse.
pub struct CudaPool {
    index: u32,
    capacity: u64,
    ctx: Arc<CudaContext>,
    state: Mutex<PoolState>,
    /// The device's default stream (set once the device is open).
    default_stream: Mutex<Option<Arc<CudaStream>>>,
}

impl CudaPool {
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// (bytes held by tensors, bytes cached for reuse).
    pub fn usage(&self) -> (u64, u64) {
        let s = self.state.lock();
        (s.live, s.cached)
    }

    /// `len` bytes of device memory (contents unspecified), charged to
    /// `budget` while alive.
    pub fn alloc(
        self: &Arc<Self>,
        len: usize,
        budget: Option<&Arc<Budget>>,
    ) -> CoreResult<CudaAlloc> {
        let size = block_size(len);
        charge(self.index, budget, size)?;
        match self.take(size) {
            Ok(ptr) => Ok(CudaAlloc {
                pool: Arc::clone(self),
                ptr,
                size,
                len,
                budget: budget.cloned(),
            }),
            Err(e) => {
                if let Some(b) = budget {
                    b.release(size as u64);
                }
                Err(e)
            }
        }
    }

    fn take(&self, size: usize) -> CoreResult<CUdeviceptr> {
        let mine = active(self.index);
        if let Some(ptr) = mine
            .as_ref()
            .and_then(|m| m.free.lock().get_mut(&size).and_then(Vec::pop))
        {
            let mut s = self.state.lock();
            s.cached -= size as u64;
            s.live += size as u64;
            return Ok(ptr);
        }
        let mut s = self.state.lock();
        if let Some(ptr) = s.free.get_mut(&size).and_then(Vec::pop) {
            s.cached -= size as u64;
            s.live += size as u64;
            drop(s);
            if let Some(m) = mine {
                // Freed on the default stream, maybe still in use there:
                // the instance's stream waits for that work first.
                self.order_after_default(&m)?;
            }
            return Ok(ptr);
        }
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver_error(self.index, "binding the context", e))?;
        // SAFETY: the device's context is current on this thread.
        let mut got = unsafe { result::malloc_sync(size) };
        if got.is_err() {
            // Give cached blocks back to the driver before refusing.
            Self::release_cached(&mut s);
            // SAFETY: as above.
            got = unsafe { result::malloc_sync(size) };
        }
        let ptr = got.map_err(|e| {
            let mut err = driver_error(self.index, &format!("allocating {size} bytes"), e);
            err.kind = ErrorKind::ResourceExhausted;
            err.message = format!(
                "cuda:{}: out of device memory allocating {size} bytes ({} in use)",
                self.index, s.live
            );
            err
        })?;
        s.live += size as u64;
        Ok(ptr)
    }

    fn release_cached(s: &mut PoolState) {
        for (_, ptrs) in s.free.drain() {
            for p in ptrs {
                // SAFETY: a block of this pool no tensor holds; the stream
                // may still run work on it, which cuMemFree waits for.
                let _ = unsafe { result::free_sync(p) };
            }
        }
        s.cached = 0;
    }

    /// Frees every cached block.
    pub fn trim(&self) {
        if self.ctx.bind_to_thread().is_ok() {
            Self::release_cached(&mut self.state.lock());
        }
    }

    fn give_back(&self, ptr: CUdeviceptr, size: usize) {
        let mine = active(self.index);
        {
            let mut s = self.state.lock();
            s.live -= size as u64;
            s.cached += size as u64;
            if mine.is_none() {
                s.free.entry(size).or_default().push(ptr);
                return;
            }
        }
        if let Some(m) = mine {
            m.free.lock().entry(size).or_default().push(ptr);
        }
    }

    /// Orders `m`'s stream after the work queued on the default stream.
    fn order_after_default(&self, m: &InstanceStream) -> CoreResult<()> {
        let default = self.default_stream.lock().clone();
        let Some(default) = default else {
            return Ok(());
        };
        let event = default
            .record_event(None)
            .map_err(|e| driver_error(self.index, "recording an event", e))?;
        m.stream
            .wait(&event)
            .map_err(|e| driver_error(self.index, "waiting for an event", e))
    }
}

/// A live device allocation; back to its pool when dropped.
pub struct CudaAlloc {
    pool: Arc<CudaPool>,
    ptr: CUdeviceptr,
    size: usize,
    len: usize,
    budget: Option<Arc<Budget>>,
}

impl CudaAlloc {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn device(&self) -> u32 {
        self.pool.index
    }

    /// The device address (never dereferenced on the host).
    pub fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }
}

impl Drop for CudaAlloc {
    fn drop(&mut self) {
        self.pool.give_back(self.ptr, self.size);
        if let Some(b) = &self.budget {
            b.release(self.size as u64);
        }
    }
}

/// One device: its context, stream, memory and loaded kernels.
pub struct CudaDevice {
    index: u32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pool: Arc<CudaPool>,
    target: Target,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// Instance streams not in use by a call.
    idle_streams: Mutex<Vec<Arc<InstanceStream>>>,
    /// The default stream's cuBLAS handle.
    blas: Mutex<Option<usize>>,
}

// SAFETY: the context and stream handles are used from any thread with the
// context bound first (every method here does), and the maps are locked.
unsafe impl Send for CudaDevice {}
// SAFETY: as above.
unsafe impl Sync for CudaDevice {}

static DEVICES: OnceLock<Vec<CoreResult<CudaDevice>>> = OnceLock::new();

/// Device `n`, set up on first use.
pub fn device(n: u32) -> CoreResult<&'static CudaDevice> {
    let all = DEVICES.get_or_init(|| {
        let r = super::report();
        r.devices
            .iter()
            .map(|d| {
                CudaDevice::open(
                    d.index,
                    d.total_memory,
                    d.compute_capability,
                    &r.driver_version,
                )
            })
            .collect()
    });
    match all.get(n as usize) {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(e.clone()),
        None => Err(CoreError::invalid_args(format!(
            "device cuda:{n} does not exist"
        ))),
    }
}

impl CudaDevice {
    fn open(index: u32, total: u64, cc: (i32, i32), driver: &str) -> CoreResult<CudaDevice> {
        let ctx = CudaContext::new(index as usize)
            .map_err(|e| driver_error(index, "creating the context", e))?;
        let stream = ctx
            .new_stream()
            .map_err(|e| driver_error(index, "creating a stream", e))?;
        Ok(CudaDevice {
            index,
            pool: Arc::new(CudaPool {
                index,
                capacity: total,
                ctx: ctx.clone(),
                state: Mutex::new(PoolState::default()),
                default_stream: Mutex::new(Some(stream.clone())),
            }),
            ctx,
            stream,
            idle_streams: Mutex::new(Vec::new()),
            blas: Mutex::new(None),
            target: Target {
                arch: cc,
                driver: driver.to_owned(),
            },
            functions: Mutex::new(HashMap::new()),
        })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn pool(&self) -> &Arc<CudaPool> {
        &self.pool
    }

    /// Where this thread's work on the device goes: its instance call's
    /// stream, else the device's default stream.
    fn current(&self) -> (Arc<CudaStream>, Option<Arc<InstanceStream>>) {
        match active(self.index) {
            Some(m) => (m.stream.clone(), Some(m)),
            None => (self.stream.clone(), None),
        }
    }

    fn checkout_stream(&self) -> CoreResult<Arc<InstanceStream>> {
        if let Some(s) = self.idle_streams.lock().pop() {
            return Ok(s);
        }
        self.bind()?;
        let stream = self
            .ctx
            .new_stream()
            .map_err(|e| driver_error(self.index, "creating a stream", e))?;
        Ok(Arc::new(InstanceStream {
            stream,
            free: Mutex::new(HashMap::new()),
            blas: Mutex::new(None),
        }))
    }

    /// The cuBLAS handle of this thread's current stream (one per stream,
    /// created on first use: a handle is not shared between streams).
    pub fn blas_handle(&self) -> CoreResult<cudarc::cublas::sys::cublasHandle_t> {
        let (stream, mine) = self.current();
        let slot = match &mine {
            Some(m) => &m.blas,
            None => &self.blas,
        };
        let mut slot = slot.lock();
        if let Some(h) = *slot {
            return Ok(h as cudarc::cublas::sys::cublasHandle_t);
        }
        let h = self.new_blas_handle(&stream)?;
        *slot = Some(h as usize);
        Ok(h)
    }

    fn bind(&self) -> CoreResult<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver_error(self.index, "binding the context", e))
    }

    /// The device stream's `CUstream`, as an integer (what DLPack's
    /// `stream` argument takes).
    pub fn stream_handle(&self) -> usize {
        self.current().0.cu_stream() as usize
    }

    /// Waits for everything queued on the device's stream; a failed kernel
    /// shows up here.
    pub fn synchronize(&self) -> CoreResult<()> {
        self.bind()?;
        self.current()
            .0
            .synchronize()
            .map_err(|e| driver_error(self.index, "synchronizing", e))
    }

    /// Copies `src` to device address `dst` and waits (pageable memory).
    pub fn copy_htod(&self, dst: CUdeviceptr, src: &[u8]) -> CoreResult<()> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `dst` holds at least src.len() bytes (the caller's
        // allocation); `src` lives until the synchronize below.
        unsafe { result::memcpy_htod_async(dst, src, self.current().0.cu_stream()) }
            .map_err(|e| driver_error(self.index, "copying to the device", e))?;
        self.synchronize()
    }

    /// Copies `dst.len()` bytes from device address `src` and waits.
    pub fn copy_dtoh(&self, dst: &mut [u8], src: CUdeviceptr) -> CoreResult<()> {
        if dst.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `src` holds at least dst.len() bytes; `dst` lives until
        // the synchronize below.
        unsafe { result::memcpy_dtoh_async(dst, src, self.current().0.cu_stream()) }
            .map_err(|e| driver_error(self.index, "copying from the device", e))?;
        self.synchronize()
    }

    /// The kernel `entry` of `family`'s module for `dtype` (compiled and
    /// loaded on first use).
    fn function(&self, family: Family, dtype: DType, entry: &str) -> CoreResult<CUfunctionHandle> {
        if let Some(f) = self.functions.lock().get(entry) {
            return Ok(CUfunctionHandle(f.cu_function()));
        }
        let src = sources::module_source(family, dtype).ok_or_else(|| {
            CoreError::internal(format!("no {} kernels for {}", family.name(), dtype.name()))
        })?;
        // A built-in kernel that does not compile is a bug of ours.
        let cubin = nvrtc::compile(&src, &self.target, nvrtc::default_cache_dir().as_deref())
            .map_err(|e| CoreError::internal(e.message))?;
        self.bind()?;
        let module = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin.to_vec()))
            .map_err(|e| driver_error(self.index, "loading a kernel module", e))?;
        let mut functions = self.functions.lock();
        // Every entry of the module at once: one load per module.
        for name in sources::entry_points(family, dtype) {
            if let Ok(f) = module.load_function(&name) {
                functions.insert(name, f);
            }
        }
        functions
            .get(entry)
            .map(|f| CUfunctionHandle(f.cu_function()))
            .ok_or_else(|| CoreError::internal(format!("kernel {entry} is not in its module")))
    }

    /// Launches `entry` with `grid` blocks of `block` threads on the
    /// device's stream. `params` point at each argument's value.
    pub fn launch(
        &self,
        family: Family,
        dtype: DType,
        entry: &str,
        grid: u32,
        block: u32,
        params: &mut [*mut c_void],
    ) -> CoreResult<()> {
        let f = self.function(family, dtype, entry)?;
        self.bind()?;
        // SAFETY: `params` match the kernel's signature (the callers in
        // kernels::cuda::real build them from the same source's types).
        unsafe {
            result::launch_kernel(
                f.0,
                (grid.max(1), 1, 1),
                (block, 1, 1),
                0,
                self.current().0.cu_stream(),
                params,
            )
        }
        .map_err(|e| driver_error(self.index, &format!("launching {entry}"), e))
    }

    /// A guest's module (`cuda_load`): PTX as given (JIT-compiled by the
    /// driver), or CUDA C compiled with NVRTC to CUBIN (cached like the
    /// built-in kernels). A source that does not
    /// compile or load is `invalid_args` with the compiler's log.
    pub fn load_user_module(&self, src: &[u8]) -> CoreResult<UserModule> {
        let text = std::str::from_utf8(src)
            .map_err(|_| CoreError::invalid_args("the kernel source is not UTF-8 text"))?;
        let image = if is_ptx(text) {
            cudarc::nvrtc::Ptx::from_src(text)
        } else {
            let cubin = nvrtc::compile(text, &self.target, nvrtc::default_cache_dir().as_deref())?;
            cudarc::nvrtc::Ptx::from_binary(cubin.to_vec())
        };
        self.bind()?;
        let module = self
            .ctx
            .load_module(image)
            .map_err(|e| CoreError::invalid_args(format!("the module does not load: {e:?}")))?;
        Ok(UserModule {
            device: self.index,
            module,
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// Launches kernel `name` of a guest's module on a `grid` x `block` of
    /// threads with `params` (pointers to 8-byte argument values).
    pub fn launch_user(
        &self,
        m: &UserModule,
        name: &str,
        grid: [u32; 3],
        block: [u32; 3],
        params: &mut [*mut c_void],
    ) -> CoreResult<()> {
        let f = {
            let mut functions = m.functions.lock();
            match functions.get(name) {
                Some(f) => CUfunctionHandle(f.cu_function()),
                None => {
                    let f = m.module.load_function(name).map_err(|_| {
                        CoreError::invalid_args(format!("no kernel named {name:?} in the module"))
                    })?;
                    let h = CUfunctionHandle(f.cu_function());
                    functions.insert(name.to_owned(), f);
                    h
                }
            }
        };
        self.bind()?;
        // SAFETY: the guest chose the kernel and its arguments; every
        // argument is an 8-byte value (a device address, an i64 or an f64)
        // that `params` points at for the duration of the call.
        unsafe {
            result::launch_kernel(
                f.0,
                (grid[0], grid[1], grid[2]),
                (block[0], block[1], block[2]),
                0,
                self.current().0.cu_stream(),
                params,
            )
        }
        .map_err(|e| driver_error(self.index, &format!("launching {name}"), e))?;
        // A fault in the guest's kernel is reported by the call that made it.
        self.synchronize()
    }

    /// A new cuBLAS handle whose work goes on `stream`.
    fn new_blas_handle(
        &self,
        stream: &CudaStream,
    ) -> CoreResult<cudarc::cublas::sys::cublasHandle_t> {
        self.bind()?;
        let blas_err = |e: cudarc::cublas::result::CublasError| {
            CoreError::internal(format!("cuda:{}: cuBLAS: {e:?}", self.index))
        };
        let h = cudarc::cublas::result::create_handle().map_err(blas_err)?;
        // SAFETY: a fresh handle and this device's live stream.
        unsafe { cudarc::cublas::result::set_stream(h, stream.cu_stream().cast()) }
            .map_err(blas_err)?;
        Ok(h)
    }

    /// A grid for `n` independent elements, `block` threads each.
    pub fn grid_for(n: usize, block: u32) -> u32 {
        // Grid-stride loops cover anything past 65535 * 8 blocks.
        (n.div_ceil(block as usize)).clamp(1, 65_535 * 8) as u32
    }
}

/// PTX text rather than CUDA C: a `.version` or `.entry` directive.
fn is_ptx(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .any(|l| l.starts_with(".version") || l.starts_with(".entry") || l.starts_with(".visible"))
}

/// A module a guest loaded with `cuda_load`, on one device.
pub struct UserModule {
    device: u32,
    module: Arc<cudarc::driver::CudaModule>,
    functions: Mutex<HashMap<String, CudaFunction>>,
}

impl UserModule {
    pub fn device(&self) -> u32 {
        self.device
    }
}

impl std::fmt::Debug for UserModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserModule(cuda:{})", self.device)
    }
}

/// Whether guests may load and launch their own kernels
/// (`TENSOR_WASM_CUDA_CUSTOM_KERNELS=1`): a kernel can read and write any
/// memory of the device's context, so this is for trusted guests only.
pub fn custom_kernels_allowed() -> bool {
    std::env::var("TENSOR_WASM_CUDA_CUSTOM_KERNELS")
        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"))
}

/// A loaded kernel's handle (valid while its module is, which is forever).
#[derive(Clone, Copy)]
struct CUfunctionHandle(sys::CUfunction);
