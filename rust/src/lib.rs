//! `tensorwasm_tc._core`: the native core of tensorwasm_tc.
//!
//! This file only wires the Python module; every domain lives in its own
//! folder (`exec/`, and later `abi/`, `tensor/`, `kernels/`, `snapshot/`,
//! `transfer/`) and knows nothing of Python. The bindings are in `py/`.

pub mod abi;
pub mod build_info;
pub mod device;
pub mod error;
pub mod exec;
pub mod front;
pub mod kernels;
pub mod snapshot;
pub mod tensor;
pub mod transfer;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    py::errors::register(m)?;
    m.add_class::<py::exec::Function>()?;
    m.add_class::<py::exec::Instance>()?;
    m.add_class::<py::exec::InvokeResult>()?;
    m.add_class::<py::tensor::Tensor>()?;
    m.add_function(wrap_pyfunction!(py::ops::op, m)?)?;
    m.add_function(wrap_pyfunction!(py::ops::op_names, m)?)?;
    m.add_function(wrap_pyfunction!(py::ops::kernel_dispatch_counts, m)?)?;
    m.add_function(wrap_pyfunction!(py::exec::load, m)?)?;
    m.add_function(wrap_pyfunction!(py::info::build_info, m)?)?;
    m.add_function(wrap_pyfunction!(py::info::engine_info, m)?)?;
    m.add_function(wrap_pyfunction!(py::device::device_info, m)?)?;
    m.add_function(wrap_pyfunction!(py::device::resolve_device, m)?)?;
    m.add_function(wrap_pyfunction!(py::device::device_memory, m)?)?;
    m.add_function(wrap_pyfunction!(py::device::cuda_kernels_check, m)?)?;
    m.add_function(wrap_pyfunction!(py::device::nvrtc_version, m)?)?;
    m.add_function(wrap_pyfunction!(py::device::device_synchronize, m)?)?;
    m.add_function(wrap_pyfunction!(py::info::module_cache_stats, m)?)?;
    m.add_function(wrap_pyfunction!(py::info::module_cache_clear, m)?)?;
    m.add_function(wrap_pyfunction!(py::sysio::write_all, m)?)?;
    m.add_class::<py::front::Front>()?;
    m.add_class::<py::front::RateLimiter>()?;
    m.add_class::<py::front::HttpStats>()?;
    m.add_class::<py::front::Slots>()?;
    m.add_class::<py::front::AuditSink>()?;
    m.add_class::<py::front::FunctionTable>()?;
    m.add_function(wrap_pyfunction!(py::front::front_status_table, m)?)?;
    m.add("HTTP_BUCKETS", front::stats::BUCKETS.to_vec())?;
    m.add_function(wrap_pyfunction!(py::exec::wat_to_wasm, m)?)?;
    m.add_function(wrap_pyfunction!(py::snapshot::restore, m)?)?;
    m.add_function(wrap_pyfunction!(py::snapshot::snapshot_inspect, m)?)?;
    m.add("SNAPSHOT_VERSION", snapshot::SNAPSHOT_VERSION)?;
    m.add_function(wrap_pyfunction!(py::transfer::blake3_digest, m)?)?;
    m.add_function(wrap_pyfunction!(py::transfer::blake3_chunks, m)?)?;
    m.add_function(wrap_pyfunction!(py::transfer::send_all, m)?)?;
    m.add_function(wrap_pyfunction!(py::transfer::recv_into, m)?)?;
    Ok(())
}
