//! Device discovery and selection for Python.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::device;

/// What this process can compute on: `{backend, devices, driver_version,
/// bindings_cuda_version, libraries, reason, default}`. `backend` is
/// `"cuda"`, `"fake"` or None; `reason` says why there is no device.
#[pyfunction]
pub fn device_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let r = device::report();
    let d = PyDict::new(py);
    d.set_item("backend", r.backend.map(|b| b.name()))?;
    let devices = PyList::empty(py);
    for dev in &r.devices {
        let e = PyDict::new(py);
        e.set_item("index", dev.index)?;
        e.set_item("device", format!("cuda:{}", dev.index))?;
        e.set_item("name", &dev.name)?;
        e.set_item("total_memory", dev.total_memory)?;
        e.set_item(
            "compute_capability",
            format!("{}.{}", dev.compute_capability.0, dev.compute_capability.1),
        )?;
        devices.append(e)?;
    }
    d.set_item("devices", devices)?;
    d.set_item("driver_version", &r.driver_version)?;
    d.set_item(
        "bindings_cuda_version",
        device::probe::BINDINGS_CUDA_VERSION,
    )?;
    let libs = PyDict::new(py);
    for (what, file) in &r.libraries {
        libs.set_item(
            *what,
            if file.is_empty() {
                None
            } else {
                Some(file.as_str())
            },
        )?;
    }
    d.set_item("libraries", libs)?;
    d.set_item("reason", r.reason.as_deref())?;
    d.set_item(
        "default",
        match device::default_device() {
            Ok(dev) => dev.to_string(),
            Err(e) => format!("error: {}", e.message),
        },
    )?;
    Ok(d)
}

/// `auto | cpu | cuda | cuda:N` resolved on this machine (`"cpu"` or
/// `"cuda:N"`); `InvalidArgsError` when it cannot be had.
#[pyfunction]
pub fn resolve_device(py: Python<'_>, spec: &str) -> PyResult<String> {
    device::select(spec)
        .map(|d| d.to_string())
        .map_err(|e| super::errors::to_pyerr(py, e))
}

/// Memory of each device this process has used: `[{device, live, cached,
/// capacity}]` in bytes (`live`: held by tensors; `cached`: freed blocks the
/// pool keeps for reuse). Empty when no device memory exists.
#[pyfunction]
pub fn device_memory(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let out = PyList::empty(py);
    let r = device::report();
    if r.backend.is_some_and(device::executes) {
        for d in &r.devices {
            let usage = if device::is_real() {
                device::cuda::device(d.index)
                    .ok()
                    .map(|dev| (dev.pool().usage(), dev.pool().capacity()))
            } else {
                device::runtime(d.index)
                    .ok()
                    .map(|rt| (rt.pool().usage(), rt.pool().capacity()))
            };
            if let Some(((live, cached), capacity)) = usage {
                let e = PyDict::new(py);
                e.set_item("device", format!("cuda:{}", d.index))?;
                e.set_item("live", live)?;
                e.set_item("cached", cached)?;
                e.set_item("capacity", capacity)?;
                out.append(e)?;
            }
        }
    }
    Ok(out)
}

/// Compiles every CUDA kernel module with NVRTC for compute capability
/// `major.minor` (no cache) and checks each defines its entry points;
/// returns the number of modules. Needs libnvrtc loadable, not a GPU.
#[pyfunction]
pub fn cuda_kernels_check(py: Python<'_>, major: i32, minor: i32) -> PyResult<usize> {
    use crate::kernels::cuda::nvrtc;
    let target = nvrtc::Target {
        arch: (major, minor),
        driver: String::new(),
    };
    py.detach(|| nvrtc::check_all(&target))
        .map_err(|e| super::errors::to_pyerr(py, e))
}

/// NVRTC's `(major, minor)`, or None when libnvrtc cannot be loaded.
#[pyfunction]
pub fn nvrtc_version() -> Option<(i32, i32)> {
    crate::kernels::cuda::nvrtc::version().ok()
}

/// Waits until every copy and op queued on `device` (`"cuda:N"`) is done;
/// nothing to wait for on the CPU.
#[pyfunction]
pub fn device_synchronize(py: Python<'_>, device: &str) -> PyResult<()> {
    let dev = device::select(device).map_err(|e| super::errors::to_pyerr(py, e))?;
    match dev {
        crate::tensor::Device::Cpu => Ok(()),
        crate::tensor::Device::Cuda(n) => py
            .detach(|| device::synchronize(n))
            .map_err(|e| super::errors::to_pyerr(py, e)),
    }
}
