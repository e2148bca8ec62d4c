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
    let mut rest = data;
    while !rest.is_empty() {
        // SAFETY: `rest` is a live slice; `fd` is the caller's descriptor.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(PyOSError::new_err((
                err.raw_os_error().unwrap_or(0),
                err.to_string(),
            )));
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}
