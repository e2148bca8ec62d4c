//! Bindings of `crate::transfer`: buffers are any object with the buffer
//! protocol (bytes, bytearray, memoryview, mmap, numpy arrays); the GIL is
//! released for the work.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBufferError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::transfer;

/// A raw byte range that may cross into a GIL-free closure: the caller keeps
/// the `PyBuffer` (and so the memory) alive for the whole call.
struct Span(*mut u8, usize);
// SAFETY: the memory outlives the closure (see above) and is only touched
// inside it.
unsafe impl Send for Span {}

fn span(buf: &PyBuffer<u8>, offset: usize, length: Option<usize>, write: bool) -> PyResult<Span> {
    if !buf.is_c_contiguous() {
        return Err(PyBufferError::new_err("buffer must be C-contiguous"));
    }
    if write && buf.readonly() {
        return Err(PyBufferError::new_err("buffer is read-only"));
    }
    let total = buf.len_bytes();
    let len = length.unwrap_or(total.saturating_sub(offset));
    if offset.checked_add(len).is_none_or(|end| end > total) {
        return Err(PyValueError::new_err(format!(
            "range {offset}+{len} is outside the {total}-byte buffer"
        )));
    }
    // SAFETY: offset + len <= total was just checked.
    Ok(Span(unsafe { buf.buf_ptr().cast::<u8>().add(offset) }, len))
}

fn os_err(e: std::io::Error) -> PyErr {
    PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string()))
}

/// BLAKE3 (32 bytes) of the buffer.
#[pyfunction]
pub fn blake3_digest<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let buf = PyBuffer::<u8>::get(data)?;
    let s = span(&buf, 0, None, false)?;
    let d = py.detach(move || {
        let s = s;
        // SAFETY: see `Span`.
        transfer::digest(unsafe { std::slice::from_raw_parts(s.0, s.1) })
    });
    Ok(PyBytes::new(py, &d))
}

/// BLAKE3 of every `chunk_bytes` piece of the buffer, computed on every core.
#[pyfunction]
pub fn blake3_chunks<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    chunk_bytes: usize,
) -> PyResult<Bound<'py, PyList>> {
    if chunk_bytes == 0 {
        return Err(PyValueError::new_err("chunk_bytes must be positive"));
    }
    let buf = PyBuffer::<u8>::get(data)?;
    let s = span(&buf, 0, None, false)?;
    let digests = py.detach(move || {
        let s = s;
        // SAFETY: see `Span`.
        transfer::chunk_digests(unsafe { std::slice::from_raw_parts(s.0, s.1) }, chunk_bytes)
    });
    PyList::new(py, digests.iter().map(|d| PyBytes::new(py, d)))
}

/// Sends `length` bytes of the buffer from `offset` on socket `fd`.
#[pyfunction]
#[pyo3(signature = (fd, data, offset=0, length=None))]
pub fn send_all(
    py: Python<'_>,
    fd: i32,
    data: &Bound<'_, PyAny>,
    offset: usize,
    length: Option<usize>,
) -> PyResult<()> {
    let buf = PyBuffer::<u8>::get(data)?;
    let s = span(&buf, offset, length, false)?;
    py.detach(move || {
        let s = s;
        // SAFETY: see `Span`.
        transfer::send_all(fd, unsafe { std::slice::from_raw_parts(s.0, s.1) })
    })
    .map_err(os_err)
}

/// Receives exactly `length` bytes from socket `fd` into the writable buffer
/// at `offset`. With `digests` (one 32-byte BLAKE3 per `chunk_bytes` chunk
/// of the range), checks every chunk as it lands and returns the index of
/// the first bad one, else -1.
#[pyfunction]
#[pyo3(signature = (fd, buffer, offset, length, chunk_bytes=0, digests=None))]
pub fn recv_into(
    py: Python<'_>,
    fd: i32,
    buffer: &Bound<'_, PyAny>,
    offset: usize,
    length: usize,
    chunk_bytes: usize,
    digests: Option<Vec<Vec<u8>>>,
) -> PyResult<i64> {
    let buf = PyBuffer::<u8>::get(buffer)?;
    let s = span(&buf, offset, Some(length), true)?;
    let expected: Option<Vec<[u8; 32]>> = match digests {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|d| {
                    <[u8; 32]>::try_from(d.as_slice())
                        .map_err(|_| PyValueError::new_err("every digest must be 32 bytes"))
                })
                .collect::<PyResult<_>>()?,
        ),
    };
    if expected.is_some() && chunk_bytes == 0 {
        return Err(PyValueError::new_err("digests need chunk_bytes"));
    }
    py.detach(move || {
        let s = s;
        // SAFETY: see `Span`; the range is writable (checked in `span`).
        let dst = unsafe { std::slice::from_raw_parts_mut(s.0, s.1) };
        match &expected {
            None => transfer::recv_exact(fd, dst).map(|()| -1),
            Some(d) => transfer::recv_verified(fd, dst, chunk_bytes, d)
                .map(|bad| bad.map_or(-1, |i| i as i64)),
        }
    })
    .map_err(os_err)
}
