//! Accelerators: discovery, selection and device memory.
//!
//! * `report()`: what this process found, once (`probe`): the real CUDA
//!   stack, loaded at run time, or the fake backend
//!   (`TENSORCAST_CUDA_BACKEND=fake`, `fake`).
//! * `select(spec)`: `auto | cpu | cuda | cuda:N` to a `Device`, checked
//!   against the report; `TENSOR_WASM_DEVICE` gives the process default.
//! * `fake`: the fake backend's device memory (a caching allocator with a
//!   capacity) and streams (in-order queues).
//! * `cuda`: the real backend's memory, copies and kernel launches, used
//!   when `TENSORCAST_CUDA_BACKEND=cuda` asks for it (see `executes`).

pub mod cuda;
pub mod fake;
pub mod probe;

use std::sync::{Arc, OnceLock};

pub use probe::{BackendKind, DeviceInfo, Report};

use crate::error::{CoreError, CoreResult};
use crate::tensor::storage::Storage;
use crate::tensor::{Budget, DType, Device, Tensor, contiguous_strides, numel_of};

/// The process default for `select` (`auto` when unset).
pub const DEVICE_ENV: &str = "TENSOR_WASM_DEVICE";

static REPORT: OnceLock<Report> = OnceLock::new();

/// What discovery found; probed on first call, then fixed for the process.
pub fn report() -> &'static Report {
    REPORT.get_or_init(probe::probe)
}

/// A parsed device request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Auto,
    Cpu,
    Cuda(Option<u32>),
}

impl Request {
    pub fn parse(spec: &str) -> CoreResult<Request> {
        let s = spec.trim().to_ascii_lowercase();
        match s.as_str() {
            "" | "auto" => Ok(Request::Auto),
            "cpu" => Ok(Request::Cpu),
            "cuda" | "gpu" => Ok(Request::Cuda(None)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<u32>().ok())
                .map(|n| Request::Cuda(Some(n)))
                .ok_or_else(|| {
                    CoreError::invalid_args(format!(
                        "device {spec:?} is not one of auto, cpu, cuda, cuda:N"
                    ))
                }),
        }
    }
}

/// Resolves `spec` against `report`: `auto` is the first device when there
/// is one, else the CPU; `cuda` / `cuda:N` must exist.
pub fn select_in(report: &Report, spec: &str) -> CoreResult<Device> {
    let why = || {
        report
            .reason
            .clone()
            .unwrap_or_else(|| "no CUDA device".into())
    };
    match Request::parse(spec)? {
        Request::Cpu => Ok(Device::Cpu),
        Request::Auto => Ok(match report.backend {
            Some(kind) if executes(kind) && !report.devices.is_empty() => {
                Device::Cuda(report.devices[0].index)
            }
            _ => Device::Cpu,
        }),
        Request::Cuda(n) => {
            match report.backend {
                None => {
                    return Err(CoreError::invalid_args(format!(
                        "device {spec:?} asked for, but CUDA is not available: {}",
                        why()
                    )));
                }
                Some(kind) if !executes(kind) => {
                    return Err(CoreError::invalid_args(format!(
                        "device {spec:?}: CUDA devices were found, but running on them is \
                         turned on with TENSORCAST_CUDA_BACKEND=cuda (the real-device backend \
                         is new in this release; see docs/DEVICES.md)"
                    )));
                }
                Some(_) => {}
            }
            let n = n.unwrap_or(0);
            if report.devices.iter().any(|d| d.index == n) {
                Ok(Device::Cuda(n))
            } else {
                Err(CoreError::invalid_args(format!(
                    "device cuda:{n} does not exist ({} device(s) found)",
                    report.devices.len()
                )))
            }
        }
    }
}

/// Whether this process runs tensors and ops on devices of `kind`: always
/// on the fake backend's; on a real GPU only when
/// `TENSORCAST_CUDA_BACKEND=cuda` asks for it (the real backend is turned
/// on explicitly until it has been verified on hardware), else `auto`
/// stays on the CPU and `cuda` is refused with a message saying so.
pub fn executes(kind: BackendKind) -> bool {
    match kind {
        BackendKind::Fake => true,
        BackendKind::Cuda => real_backend_requested(),
    }
}

/// `TENSORCAST_CUDA_BACKEND=cuda`.
pub fn real_backend_requested() -> bool {
    std::env::var(probe::BACKEND_ENV).is_ok_and(|v| v.trim() == "cuda")
}

/// Whether device tensors of this process live on a real GPU.
pub fn is_real() -> bool {
    report().backend == Some(BackendKind::Cuda) && real_backend_requested()
}

/// `select_in` against this process's report.
pub fn select(spec: &str) -> CoreResult<Device> {
    select_in(report(), spec)
}

/// The device `TENSOR_WASM_DEVICE` names (`auto` when unset).
pub fn default_device() -> CoreResult<Device> {
    let spec = std::env::var(DEVICE_ENV).unwrap_or_default();
    select(&spec).map_err(|e| CoreError::invalid_args(format!("{DEVICE_ENV}: {}", e.message)))
}

/// A tensor's memory on a device.
pub enum DeviceMem {
    Fake(Arc<fake::DeviceAlloc>),
    Cuda(Arc<cuda::CudaAlloc>),
    /// CUDA memory another library owns (a DLPack import, e.g. from torch):
    /// kept alive by `owner` until the last tensor on it is dropped.
    Foreign(ForeignMem),
}

/// Device memory imported through DLPack.
pub struct ForeignMem {
    pub device: u32,
    pub ptr: u64,
    pub len: usize,
    pub owner: Box<dyn std::any::Any + Send + Sync>,
}

impl DeviceMem {
    pub fn device(&self) -> u32 {
        match self {
            DeviceMem::Fake(a) => a.device(),
            DeviceMem::Cuda(a) => a.device(),
            DeviceMem::Foreign(f) => f.device,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            DeviceMem::Fake(a) => a.len(),
            DeviceMem::Cuda(a) => a.len(),
            DeviceMem::Foreign(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The address kernels on the device's stream use (on a real device, a
    /// device address the host never dereferences).
    pub(crate) fn raw(&self) -> *mut u8 {
        match self {
            DeviceMem::Fake(a) => a.raw(),
            DeviceMem::Cuda(a) => a.ptr() as usize as *mut u8,
            DeviceMem::Foreign(f) => f.ptr as usize as *mut u8,
        }
    }

    /// The device address of a real device's memory.
    pub fn cuda_ptr(&self) -> Option<u64> {
        match self {
            DeviceMem::Fake(_) => None,
            DeviceMem::Cuda(a) => Some(a.ptr()),
            DeviceMem::Foreign(f) => Some(f.ptr),
        }
    }
}

/// The device address of element 0 of a tensor on a real device.
pub fn cuda_address(t: &Tensor) -> CoreResult<u64> {
    match &**t.storage() {
        Storage::Device(mem @ (DeviceMem::Cuda(_) | DeviceMem::Foreign(_))) => {
            Ok(mem.cuda_ptr().unwrap_or(0) + t.offset() as u64)
        }
        _ => Err(CoreError::internal("not a tensor on a real CUDA device")),
    }
}

/// One device's memory pool and default stream.
pub struct DeviceRt {
    pool: Arc<fake::DevicePool>,
    stream: fake::FakeStream,
}

impl DeviceRt {
    pub fn pool(&self) -> &Arc<fake::DevicePool> {
        &self.pool
    }
}

static RUNTIMES: OnceLock<Vec<DeviceRt>> = OnceLock::new();

/// The runtime of device `n`: memory and streams exist for the fake backend
/// in this build; the real backend's are not there yet.
pub fn runtime(n: u32) -> CoreResult<&'static DeviceRt> {
    let r = report();
    match r.backend {
        Some(BackendKind::Fake) => {}
        Some(BackendKind::Cuda) => {
            return Err(CoreError::internal(
                "the fake backend's runtime asked for on a real CUDA device",
            ));
        }
        None => {
            return Err(CoreError::invalid_args(format!(
                "no CUDA device: {}",
                r.reason.as_deref().unwrap_or("none found")
            )));
        }
    }
    let all = RUNTIMES.get_or_init(|| {
        r.devices
            .iter()
            .filter_map(|d| {
                Some(DeviceRt {
                    pool: fake::DevicePool::new(d.index, d.total_memory),
                    stream: fake::FakeStream::new(d.index).ok()?,
                })
            })
            .collect()
    });
    all.iter()
        .find(|rt| rt.pool.index() == n)
        .ok_or_else(|| CoreError::invalid_args(format!("device cuda:{n} does not exist")))
}

/// Device `n`'s default stream.
pub fn stream(n: u32) -> CoreResult<&'static fake::FakeStream> {
    runtime(n).map(|rt| &rt.stream)
}

/// Waits for all work queued on device `n`.
pub fn synchronize(n: u32) -> CoreResult<()> {
    if is_real() {
        cuda::device(n)?.synchronize()
    } else {
        stream(n)?.synchronize()
    }
}

/// A contiguous tensor in device `n`'s memory (contents unspecified),
/// charged to `budget` (the instance's device cap) while it lives.
pub fn alloc_tensor(
    n: u32,
    dtype: DType,
    shape: &[usize],
    budget: Option<&Arc<Budget>>,
) -> CoreResult<Tensor> {
    let nbytes = numel_of(shape)?
        .checked_mul(dtype.size())
        .ok_or_else(|| CoreError::invalid_args(format!("shape {shape:?} is too large")))?;
    let mem = if is_real() {
        DeviceMem::Cuda(Arc::new(cuda::device(n)?.pool().alloc(nbytes, budget)?))
    } else {
        DeviceMem::Fake(Arc::new(runtime(n)?.pool.alloc(nbytes, budget)?))
    };
    Tensor::from_parts(
        Arc::new(Storage::Device(mem)),
        0,
        dtype,
        shape.to_vec(),
        contiguous_strides(shape),
        false,
    )
}

/// Queues a copy of `bytes` over the elements of contiguous device tensor `t`.
pub fn write_bytes(t: &Tensor, bytes: Vec<u8>) -> CoreResult<()> {
    let Storage::Device(mem) = &**t.storage() else {
        return Err(CoreError::internal("write_bytes on a host tensor"));
    };
    if !t.is_contiguous() || bytes.len() != t.nbytes() {
        return Err(CoreError::invalid_args(
            "a device write needs a contiguous tensor and all its bytes",
        ));
    }
    match mem {
        DeviceMem::Fake(alloc) => stream(mem.device())?.copy_htod(alloc, t.offset(), bytes),
        DeviceMem::Cuda(_) | DeviceMem::Foreign(_) => {
            cuda::device(mem.device())?.copy_htod(cuda_address(t)?, &bytes)
        }
    }
}

/// `t` on `dev`: itself when already there, else a contiguous copy made
/// with explicit, stream-ordered copies (host to device, device to host,
/// or through the host between devices).
pub fn to(t: &Tensor, dev: Device, budget: Option<&Arc<Budget>>) -> CoreResult<Tensor> {
    let from = t.device();
    if from == dev {
        return Ok(t.clone());
    }
    if is_real() {
        return to_real(t, dev, budget);
    }
    match (from, dev) {
        (Device::Cpu, Device::Cuda(n)) => {
            let out = alloc_tensor(n, t.dtype(), t.shape(), budget)?;
            let Storage::Device(mem) = &**out.storage() else {
                return Err(CoreError::internal(
                    "device allocation is not device memory",
                ));
            };
            // One copy, straight from the host tensor, waited for (like a
            // copy from pageable memory): the caller may change `t` after.
            let DeviceMem::Fake(alloc) = mem else {
                return Err(CoreError::internal("fake device memory expected"));
            };
            let (src, dst) = (t.clone(), Arc::clone(alloc));
            stream(n)?.run_sync(move || {
                // SAFETY: `dst` was allocated for this shape and dtype.
                unsafe { src.write_elements(dst.raw()) };
                Ok(())
            })?;
            Ok(out)
        }
        (Device::Cuda(n), Device::Cpu) => {
            // On the stream, after the work that produced `t`: a strided
            // device view is gathered there too.
            let src = t.clone();
            let budget = budget.cloned();
            stream(n)?.run_sync(move || src.copy_in(budget.as_ref()))
        }
        // Between devices, through the host (`from == dev` returned above).
        _ => to(&to(t, Device::Cpu, None)?, dev, budget),
    }
}

/// `to` on a real device: explicit copies on the device's stream, waited for.
fn to_real(t: &Tensor, dev: Device, budget: Option<&Arc<Budget>>) -> CoreResult<Tensor> {
    match (t.device(), dev) {
        (Device::Cpu, Device::Cuda(n)) => {
            let out = alloc_tensor(n, t.dtype(), t.shape(), budget)?;
            let d = cuda::device(n)?;
            if t.is_contiguous() {
                // SAFETY: a contiguous host tensor's nbytes bytes are live
                // while `t` is; the copy is waited for.
                let src = unsafe { std::slice::from_raw_parts(t.data_ptr(), t.nbytes()) };
                d.copy_htod(cuda_address(&out)?, src)?;
            } else {
                d.copy_htod(cuda_address(&out)?, &t.to_bytes())?;
            }
            Ok(out)
        }
        (Device::Cuda(n), Device::Cpu) => {
            let src = if t.is_contiguous() {
                t.clone()
            } else {
                crate::kernels::cuda::real::contiguous(t, None)?
            };
            let out = Tensor::uninit_in(t.dtype(), t.shape(), budget)?;
            let len = out.nbytes();
            // SAFETY: a fresh host tensor owns `len` writable bytes.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.data_mut_ptr()?, len) };
            cuda::device(n)?.copy_dtoh(dst, cuda_address(&src)?)?;
            Ok(out)
        }
        // Between devices, through the host.
        (Device::Cuda(_), Device::Cuda(_)) => to_real(&to_real(t, Device::Cpu, None)?, dev, budget),
        (Device::Cpu, Device::Cpu) => Ok(t.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(n: u32) -> Report {
        Report {
            backend: Some(BackendKind::Fake),
            devices: (0..n)
                .map(|i| DeviceInfo {
                    index: i,
                    name: "f".into(),
                    total_memory: 1,
                    compute_capability: (9, 0),
                })
                .collect(),
            driver_version: String::new(),
            libraries: Vec::new(),
            reason: None,
        }
    }

    fn none() -> Report {
        Report {
            backend: None,
            devices: Vec::new(),
            driver_version: String::new(),
            libraries: Vec::new(),
            reason: Some("no CUDA driver".into()),
        }
    }

    #[test]
    fn selection() {
        let two = fake(2);
        assert_eq!(select_in(&two, "auto").unwrap(), Device::Cuda(0));
        assert_eq!(select_in(&two, "").unwrap(), Device::Cuda(0));
        assert_eq!(select_in(&two, "CPU").unwrap(), Device::Cpu);
        assert_eq!(select_in(&two, "cuda").unwrap(), Device::Cuda(0));
        assert_eq!(select_in(&two, "cuda:1").unwrap(), Device::Cuda(1));
        assert!(
            select_in(&two, "cuda:2")
                .unwrap_err()
                .message
                .contains("does not exist")
        );
        assert!(
            select_in(&two, "tpu")
                .unwrap_err()
                .message
                .contains("auto, cpu, cuda")
        );
        assert!(select_in(&two, "cuda:-1").is_err());
        let cpu_only = none();
        assert_eq!(select_in(&cpu_only, "auto").unwrap(), Device::Cpu);
        let e = select_in(&cpu_only, "cuda").unwrap_err();
        assert!(e.message.contains("no CUDA driver"), "{}", e.message);
    }
}
