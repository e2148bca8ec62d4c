//! `Tensor` for Python: DLPack (both directions), the buffer protocol, and
//! conversions used by `invoke(inputs=...)`, bindings and `ops`.

use std::ffi::{CStr, c_int, c_void};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyTuple};

use super::errors::to_pyerr;
use crate::device;
use crate::error::{CoreError, ErrorKind};
use crate::tensor::dlpack::{self, DLManagedTensor, DLManagedTensorVersioned};
use crate::tensor::{
    DType, Device, ShmRegion, Storage, Tensor as CoreTensor, contiguous_strides, numel_of,
};

const DLTENSOR: &CStr = c"dltensor";
const USED_DLTENSOR: &CStr = c"used_dltensor";
const DLTENSOR_VERSIONED: &CStr = c"dltensor_versioned";
const USED_DLTENSOR_VERSIONED: &CStr = c"used_dltensor_versioned";

/// An n-dimensional array on the host: owned, shared (memfd) or borrowed.
///
/// Zero-copy with numpy and torch through DLPack (`numpy.from_dlpack(t)`,
/// `Tensor.from_dlpack(x)`) and the buffer protocol (`memoryview(t)`).
#[pyclass(module = "tensorwasm_tc._core", frozen, name = "Tensor")]
pub struct Tensor {
    pub inner: CoreTensor,
}

unsafe extern "C" fn capsule_legacy_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: called by Python with a capsule we created. If a consumer took
    // the tensor it renamed the capsule and owns the deleter call.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, DLTENSOR.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(capsule, DLTENSOR.as_ptr()).cast::<DLManagedTensor>();
            if !m.is_null()
                && let Some(d) = (*m).deleter
            {
                d(m);
            }
        }
    }
}

unsafe extern "C" fn capsule_versioned_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: as above, for the versioned capsule name.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, DLTENSOR_VERSIONED.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(capsule, DLTENSOR_VERSIONED.as_ptr())
                .cast::<DLManagedTensorVersioned>();
            if !m.is_null()
                && let Some(d) = (*m).deleter
            {
                d(m);
            }
        }
    }
}

fn err(py: Python<'_>, e: CoreError) -> PyErr {
    to_pyerr(py, e)
}

/// Imports anything with `__dlpack__` (or a DLPack capsule) without copying.
pub fn from_dlpack_any(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<CoreTensor> {
    if let Ok(t) = obj.cast::<Tensor>() {
        return Ok(t.get().inner.clone());
    }
    let capsule = if obj.is_instance_of::<PyCapsule>() {
        obj.clone()
    } else if obj.hasattr("__dlpack__")? {
        let kwargs = PyDict::new(py);
        kwargs.set_item("max_version", (1, 0))?;
        // CUDA memory (torch): the producer orders its pending work before
        // our device's stream, where every use of the tensor will be queued.
        if device::is_real() && obj.hasattr("__dlpack_device__")? {
            let (dt, id): (i32, i32) = obj.call_method0("__dlpack_device__")?.extract()?;
            if dt == dlpack::DEVICE_CUDA
                && let Ok(d) = u32::try_from(id)
                    .map_err(|_| ())
                    .and_then(|n| device::cuda::device(n).map_err(|_| ()))
            {
                kwargs.set_item("stream", d.stream_handle())?;
            }
        }
        match obj.call_method("__dlpack__", (), Some(&kwargs)) {
            Ok(c) => c,
            // Producers older than DLPack 1.0 do not take max_version.
            Err(e) if e.is_instance_of::<PyTypeError>(py) => obj.call_method0("__dlpack__")?,
            Err(e) => return Err(e),
        }
    } else {
        return Err(PyTypeError::new_err(format!(
            "expected a Tensor, a numpy array or another DLPack producer, not {}",
            obj.get_type().name()?
        )));
    };
    let cap = capsule.as_ptr();
    // SAFETY: `cap` is a live object; the capsule API checks its type and name.
    unsafe {
        if ffi::PyCapsule_IsValid(cap, DLTENSOR_VERSIONED.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(cap, DLTENSOR_VERSIONED.as_ptr())
                .cast::<DLManagedTensorVersioned>();
            if m.is_null() || ffi::PyCapsule_SetName(cap, USED_DLTENSOR_VERSIONED.as_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
            return dlpack::import_versioned(m).map_err(|e| err(py, e));
        }
        if ffi::PyCapsule_IsValid(cap, DLTENSOR.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(cap, DLTENSOR.as_ptr()).cast::<DLManagedTensor>();
            if m.is_null() || ffi::PyCapsule_SetName(cap, USED_DLTENSOR.as_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
            return dlpack::import_legacy(m).map_err(|e| err(py, e));
        }
    }
    Err(PyValueError::new_err(
        "not an unused DLPack capsule (already consumed?)",
    ))
}

impl Tensor {
    /// This tensor's elements in host memory (itself when they are there).
    fn host_copy(&self, py: Python<'_>) -> PyResult<CoreTensor> {
        let t = self.inner.clone();
        py.detach(move || device::to(&t, Device::Cpu, None))
            .map_err(|e| err(py, e))
    }
}

/// DLPack's device type of CUDA memory.
const DLPACK_CUDA: i32 = dlpack::DEVICE_CUDA;

/// Buffer-protocol format character of a dtype (bf16 has none).
fn format_of(d: DType) -> Option<&'static CStr> {
    Some(match d {
        DType::F32 => c"f",
        DType::F16 => c"e",
        DType::F64 => c"d",
        DType::I32 => c"i",
        DType::I64 => c"q",
        DType::U8 => c"B",
        DType::I8 => c"b",
        DType::Bool => c"?",
        DType::BF16 => return None,
    })
}

/// What a buffer view owns until it is released.
struct BufferCtx {
    shape: Vec<ffi::Py_ssize_t>,
    strides: Vec<ffi::Py_ssize_t>,
}

fn parse_shape(shape: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    if let Ok(n) = shape.extract::<usize>() {
        return Ok(vec![n]);
    }
    shape.extract::<Vec<usize>>()
}

#[pymethods]
impl Tensor {
    /// A zero-filled tensor (`shared=True`: in a memfd another process can map).
    #[staticmethod]
    #[pyo3(signature = (dtype, shape, *, shared=false))]
    fn zeros(
        py: Python<'_>,
        dtype: &str,
        shape: &Bound<'_, PyAny>,
        shared: bool,
    ) -> PyResult<Tensor> {
        let dtype = DType::from_name(dtype).map_err(|e| err(py, e))?;
        let shape = parse_shape(shape)?;
        let t = if shared {
            CoreTensor::shared(dtype, &shape)
        } else {
            CoreTensor::zeros(dtype, &shape)
        };
        t.map(|inner| Tensor { inner }).map_err(|e| err(py, e))
    }

    /// A tensor holding a copy of `data` (row-major bytes).
    #[staticmethod]
    fn from_bytes(
        py: Python<'_>,
        dtype: &str,
        shape: &Bound<'_, PyAny>,
        data: &[u8],
    ) -> PyResult<Tensor> {
        let dtype = DType::from_name(dtype).map_err(|e| err(py, e))?;
        let shape = parse_shape(shape)?;
        let t = CoreTensor::zeros(dtype, &shape).map_err(|e| err(py, e))?;
        if t.nbytes() != data.len() {
            return Err(err(
                py,
                CoreError::new(
                    ErrorKind::ShapeMismatch,
                    format!(
                        "{} bytes do not fill a {} tensor of shape {shape:?}",
                        data.len(),
                        dtype.name()
                    ),
                ),
            ));
        }
        let dst = t.data_mut_ptr().map_err(|e| err(py, e))?;
        // SAFETY: fresh contiguous tensor of exactly data.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(Tensor { inner: t })
    }

    /// Wraps a DLPack producer (numpy, torch, ...) without copying.
    #[staticmethod]
    fn from_dlpack(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
        from_dlpack_any(py, obj).map(|inner| Tensor { inner })
    }

    /// Wraps a numpy array without copying: writes through either side are
    /// seen by the other. A read-only array gives a read-only tensor.
    #[staticmethod]
    fn from_numpy(py: Python<'_>, array: &Bound<'_, PyAny>) -> PyResult<Tensor> {
        let ty = array.get_type();
        if ty.module()?.to_cow()? != "numpy" || ty.name()?.to_cow()? != "ndarray" {
            return Err(PyTypeError::new_err(format!(
                "from_numpy expects a numpy.ndarray, not {}; use Tensor.from_dlpack for other producers",
                ty.name()?
            )));
        }
        from_dlpack_any(py, array).map(|inner| Tensor { inner })
    }

    /// Maps a shared-memory region received from another process (the fd is
    /// duplicated; the caller keeps its own).
    #[staticmethod]
    #[pyo3(signature = (fd, dtype, shape, *, writable=false))]
    fn from_shm_fd(
        py: Python<'_>,
        fd: i32,
        dtype: &str,
        shape: &Bound<'_, PyAny>,
        writable: bool,
    ) -> PyResult<Tensor> {
        let dtype = DType::from_name(dtype).map_err(|e| err(py, e))?;
        let shape = parse_shape(shape)?;
        let nbytes = numel_of(&shape).map_err(|e| err(py, e))? * dtype.size();
        // SAFETY: dup of a caller-provided fd; the result is owned here.
        let dup = unsafe { libc::dup(fd) };
        if dup < 0 {
            return Err(PyValueError::new_err(format!(
                "fd {fd}: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `dup` is a fresh fd owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        let region = ShmRegion::from_fd(owned, nbytes, writable).map_err(|e| err(py, e))?;
        let strides = contiguous_strides(&shape);
        CoreTensor::from_parts(
            Arc::new(Storage::Shm(region)),
            0,
            dtype,
            shape,
            strides,
            !writable,
        )
        .map(|inner| Tensor { inner })
        .map_err(|e| err(py, e))
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.shape())
    }

    /// Strides in elements (numpy's are in bytes).
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.strides())
    }

    #[getter]
    fn ndim(&self) -> usize {
        self.inner.ndim()
    }

    #[getter]
    fn size(&self) -> usize {
        self.inner.numel()
    }

    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }

    #[getter]
    fn device(&self) -> String {
        self.inner.device().to_string()
    }

    #[getter]
    fn read_only(&self) -> bool {
        self.inner.is_read_only()
    }

    #[getter]
    fn is_contiguous(&self) -> bool {
        self.inner.is_contiguous()
    }

    /// `"host"`, `"shm"` or `"external"`.
    #[getter]
    fn storage_kind(&self) -> &'static str {
        self.inner.storage().kind()
    }

    /// The memfd of a shared tensor (owned by the tensor: dup it to keep it).
    fn shm_fd(&self) -> PyResult<i32> {
        self.inner
            .storage()
            .shm()
            .map(|s| s.raw_fd())
            .ok_or_else(|| PyValueError::new_err("not a shared-memory tensor"))
    }

    /// The elements as row-major bytes (a copy; from a device tensor, a
    /// copy to the host after the work queued on its stream).
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let host = self.host_copy(py)?;
        Ok(pyo3::types::PyBytes::new(py, &host.to_bytes()))
    }

    /// A contiguous copy (or this tensor when already contiguous), on the
    /// same device.
    fn contiguous(&self, py: Python<'_>) -> PyResult<Tensor> {
        let t = &self.inner;
        let dev = t.device();
        let out = if dev == Device::Cpu {
            t.contiguous()
        } else if t.is_contiguous() {
            Ok(t.clone())
        } else {
            let host = self.host_copy(py)?;
            py.detach(move || device::to(&host, dev, None))
        };
        out.map(|inner| Tensor { inner }).map_err(|e| err(py, e))
    }

    /// The tensor on `device` (`"cpu"`, `"cuda"`, `"cuda:N"`): itself when
    /// it is there already, else a copy made with explicit, stream-ordered
    /// transfers. Device memory needs a CUDA backend (`device_info()`).
    fn to(&self, py: Python<'_>, device: &str) -> PyResult<Tensor> {
        let dev = device::select(device).map_err(|e| err(py, e))?;
        let t = self.inner.clone();
        py.detach(move || device::to(&t, dev, None))
            .map(|inner| Tensor { inner })
            .map_err(|e| err(py, e))
    }

    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<&Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // The consumer's stream: host memory needs nothing; device memory
        // is made ready for any stream by waiting for ours (below).
        let _ = stream;
        let here = self.__dlpack_device__();
        if let Device::Cuda(n) = self.inner.device() {
            // Only a real device's memory is CUDA memory (the fake
            // backend's is host memory standing in for it).
            if !device::is_real() {
                return Err(PyBufferError::new_err(format!(
                    "DLPack export of a {} tensor of the fake backend is not possible; \
                     .to(\"cpu\") first",
                    self.inner.device()
                )));
            }
            py.detach(|| device::synchronize(n))
                .map_err(|e| err(py, e))?;
        }
        if let Some(want) = dl_device
            && want != here
        {
            return Err(PyBufferError::new_err(format!(
                "the tensor is on DLPack device {here:?}, not {want:?}; move it with .to() first"
            )));
        }
        if copy == Some(true) && self.inner.device() != Device::Cpu {
            return Err(PyBufferError::new_err(
                "copy=True export of device memory is not supported; .to() makes a copy",
            ));
        }
        let t = if copy == Some(true) {
            self.inner
                .contiguous()
                .and_then(|c| {
                    let fresh = CoreTensor::zeros(c.dtype(), c.shape())?;
                    // SAFETY: both contiguous, same size.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            c.data_ptr(),
                            fresh.data_mut_ptr()?,
                            c.nbytes(),
                        )
                    };
                    Ok(fresh)
                })
                .map_err(|e| err(py, e))?
        } else {
            self.inner.clone()
        };
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        // SAFETY: capsules own heap managed tensors; the destructors free
        // them unless a consumer renamed (took) the capsule.
        let raw = unsafe {
            if versioned {
                ffi::PyCapsule_New(
                    dlpack::export_versioned(&t).cast::<c_void>(),
                    DLTENSOR_VERSIONED.as_ptr(),
                    Some(capsule_versioned_destructor),
                )
            } else {
                ffi::PyCapsule_New(
                    dlpack::export_legacy(&t).cast::<c_void>(),
                    DLTENSOR.as_ptr(),
                    Some(capsule_legacy_destructor),
                )
            }
        };
        if raw.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: PyCapsule_New returned a new reference.
        Ok(unsafe { Bound::from_owned_ptr(py, raw) })
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        match self.inner.device() {
            Device::Cpu => (dlpack::DEVICE_CPU, 0),
            Device::Cuda(n) => (DLPACK_CUDA, n as i32),
        }
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("null view"));
        }
        let t = &slf.get().inner;
        if t.device() != Device::Cpu {
            return Err(PyBufferError::new_err(format!(
                "the tensor is on {}: copy it to the host with .to(\"cpu\") first",
                t.device()
            )));
        }
        let writable = flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE;
        if writable && t.is_read_only() {
            return Err(PyBufferError::new_err("tensor is read-only"));
        }
        let contiguous = t.is_contiguous();
        if !contiguous && flags & ffi::PyBUF_STRIDES != ffi::PyBUF_STRIDES {
            return Err(PyBufferError::new_err(
                "tensor is not contiguous; request a strided buffer",
            ));
        }
        if !contiguous
            && (flags & ffi::PyBUF_C_CONTIGUOUS == ffi::PyBUF_C_CONTIGUOUS
                || flags & ffi::PyBUF_ANY_CONTIGUOUS == ffi::PyBUF_ANY_CONTIGUOUS
                || flags & ffi::PyBUF_F_CONTIGUOUS == ffi::PyBUF_F_CONTIGUOUS)
        {
            return Err(PyBufferError::new_err("tensor is not contiguous"));
        }
        let format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
            match format_of(t.dtype()) {
                Some(f) => f.as_ptr() as *mut std::ffi::c_char,
                None => {
                    return Err(PyBufferError::new_err(
                        "bf16 has no buffer format; use DLPack",
                    ));
                }
            }
        } else {
            std::ptr::null_mut()
        };
        let es = t.dtype().size() as isize;
        let ctx = Box::new(BufferCtx {
            shape: t.shape().iter().map(|&d| d as ffi::Py_ssize_t).collect(),
            strides: t.strides().iter().map(|&s| s * es).collect(),
        });
        let ctx = Box::into_raw(ctx);
        // SAFETY: `view` is a valid Py_buffer to fill; the shape/stride arrays
        // live in ctx until __releasebuffer__ frees them; obj holds a
        // reference that keeps the tensor (and its memory) alive.
        unsafe {
            (*view).buf = t.data_ptr() as *mut c_void;
            (*view).len = t.nbytes() as ffi::Py_ssize_t;
            (*view).readonly = c_int::from(t.is_read_only());
            (*view).itemsize = es;
            (*view).format = format;
            (*view).ndim = t.ndim() as c_int;
            (*view).shape = if flags & ffi::PyBUF_ND == ffi::PyBUF_ND {
                (*ctx).shape.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            };
            (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
                (*ctx).strides.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = ctx.cast();
            (*view).obj = slf.into_any().into_ptr();
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, view: *mut ffi::Py_buffer) {
        // SAFETY: `internal` was set from Box::into_raw in __getbuffer__.
        unsafe {
            if !view.is_null() && !(*view).internal.is_null() {
                drop(Box::from_raw((*view).internal.cast::<BufferCtx>()));
                (*view).internal = std::ptr::null_mut();
            }
        }
    }

    fn __len__(&self) -> PyResult<usize> {
        self.inner
            .shape()
            .first()
            .copied()
            .ok_or_else(|| PyTypeError::new_err("len() of a 0-d tensor"))
    }

    fn __repr__(&self) -> String {
        format!(
            "Tensor(dtype={}, shape={:?}, device={}, storage={}{})",
            self.inner.dtype().name(),
            self.inner.shape(),
            self.inner.device(),
            self.inner.storage().kind(),
            if self.inner.is_read_only() {
                ", read_only"
            } else {
                ""
            }
        )
    }
}
