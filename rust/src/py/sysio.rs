//! Small I/O the Python control plane needs without a GIL round trip.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

/// Writes all of `data` to `fd`, keeping the GIL.
///
/// For short appends (an audit line) on a busy server: `os.write` releases
/// the GIL around the syscall and must win it back from the executor
/// threads afterwards, which costs far more than the write itself.
#[pyfunction]
pub fn write_all(fd: i32, data: &[u8]) -> PyResult<()> {
    crate::front::audit::write_all(fd, data).map_err(os_error)
}

pub fn os_error(err: std::io::Error) -> PyErr {
    PyOSError::new_err((err.raw_os_error().unwrap_or(0), err.to_string()))
}
