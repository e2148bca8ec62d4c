//! Accelerators: discovery, selection and device memory.
//!
//! * `report()`: what this process found, once (`probe`): the real CUDA
//!   stack, loaded at run time, or the fake backend
//!   (`TENSORCAST_CUDA_BACKEND=fake`, `fake`).
//! * `select(spec)`: `auto | cpu | cuda | cuda:N` to a `Device`, checked
//!   against the report; `TENSOR_WASM_DEVICE` gives the process default.
//! * `fake`: the fake backend's device memory (a caching allocator with a
//!   capacity) and streams (in-order queues).

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
                        "device {spec:?}: CUDA devices were found, but this build runs tensors \
                         on a real device not yet (only on the fake backend, \
                         TENSORCAST_CUDA_BACKEND=fake)"
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

/// Whether this build runs tensors and ops on devices of `kind`: the fake
/// backend's; the real backend's memory and kernels are not in it yet, so
/// `auto` stays on the CPU on a real GPU.
pub fn executes(kind: BackendKind) -> bool {
    kind == BackendKind::Fake
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
pub struct DeviceMem {
    alloc: Arc<fake::DeviceAlloc>,
}

impl DeviceMem {
    pub fn device(&self) -> u32 {
        self.alloc.device()
    }

    pub fn len(&self) -> usize {
        self.alloc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alloc.is_empty()
    }

    /// The address kernels on the device's stream use.
    pub(crate) fn raw(&self) -> *mut u8 {
        self.alloc.raw()
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
            return Err(CoreError::invalid_args(
                "CUDA devices were found, but this build cannot place tensors on a real device \
                 yet (device memory and kernels run with TENSORCAST_CUDA_BACKEND=fake only)",
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
    let rt = runtime(n)?;
    let alloc = rt.pool.alloc(nbytes, budget)?;
    Tensor::from_parts(
        Arc::new(Storage::Device(DeviceMem {
            alloc: Arc::new(alloc),
        })),
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
    stream(mem.device())?.copy_htod(&mem.alloc, t.offset(), bytes)
}

/// `t` on `dev`: itself when already there, else a contiguous copy made
/// with explicit, stream-ordered copies (host to device, device to host,
/// or through the host between devices).
pub fn to(t: &Tensor, dev: Device, budget: Option<&Arc<Budget>>) -> CoreResult<Tensor> {
    let from = t.device();
    if from == dev {
        return Ok(t.clone());
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
            let (src, dst) = (t.clone(), Arc::clone(&mem.alloc));
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
