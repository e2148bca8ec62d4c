//! Build identity, engine facts and module-cache counters.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::build_info as build;
use crate::exec::{self, enabled_features, engine_fingerprint};

/// `{version, git_sha, rustc_version, profile, target}` of this build.
#[pyfunction]
pub fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in build::fields() {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// The engine's fingerprint, enabled proposals and epoch tick.
#[pyfunction]
pub fn engine_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("fingerprint", engine_fingerprint())?;
    let features = PyDict::new(py);
    for (name, on) in enabled_features() {
        features.set_item(name, on)?;
    }
    d.set_item("features", features)?;
    d.set_item(
        "epoch_tick_ms",
        exec::engine::EPOCH_TICK.as_secs_f64() * 1e3,
    )?;
    d.set_item(
        "pool_instances",
        exec::engine::engine_config().pool_instances,
    )?;
    d.set_item("allocator", exec::engine::allocator())?;
    Ok(d)
}

/// Process-wide counters of the module cache.
#[pyfunction]
pub fn module_cache_stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let s = exec::function::module_cache().stats();
    let d = PyDict::new(py);
    d.set_item("memory_hits", s.memory_hits)?;
    d.set_item("disk_hits", s.disk_hits)?;
    d.set_item("compiles", s.compiles)?;
    d.set_item("disk_rejects", s.disk_rejects)?;
    d.set_item("disk_writes", s.disk_writes)?;
    d.set_item("memory_entries", s.memory_entries)?;
    Ok(d)
}

/// Empties the in-memory level (the disk level is untouched).
#[pyfunction]
pub fn module_cache_clear() {
    exec::function::module_cache().clear();
}
