//! DLPack (v0.8 legacy and v1 versioned) structures, export and import.
//!
//! Export hands out a heap-allocated managed tensor that keeps the `Tensor`
//! (and so its storage) alive until the consumer calls the deleter. Import
//! wraps a producer's managed tensor as `External` storage whose drop calls
//! the producer's deleter. Nothing here knows about Python capsules.

use std::ffi::c_void;
use std::sync::Arc;

use super::{DType, External, Storage, Tensor};
use crate::error::{CoreError, CoreResult, ErrorKind};

/// `kDLCPU`.
pub const DEVICE_CPU: i32 = 1;
pub const DEVICE_CUDA: i32 = 2;
/// `DLPACK_FLAG_BITMASK_READ_ONLY`.
pub const FLAG_READ_ONLY: u64 = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLDevice {
    pub device_type: i32,
    pub device_id: i32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    pub data: *mut c_void,
    pub device: DLDevice,
    pub ndim: i32,
    pub dtype: DLDataType,
    pub shape: *mut i64,
    pub strides: *mut i64,
    pub byte_offset: u64,
}

#[repr(C)]
pub struct DLManagedTensor {
    pub dl_tensor: DLTensor,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLPackVersion {
    pub major: u32,
    pub minor: u32,
}

#[repr(C)]
pub struct DLManagedTensorVersioned {
    pub version: DLPackVersion,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    pub flags: u64,
    pub dl_tensor: DLTensor,
}

/// What an exported managed tensor owns.
struct ExportCtx {
    _tensor: Tensor,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

fn fill(t: &Tensor, ctx: &mut ExportCtx) -> DLTensor {
    let (code, bits) = t.dtype().to_dlpack();
    // Host memory, or a real CUDA device's (the fake backend's memory is
    // host memory that is not exported: callers refuse it).
    let device = match t.device() {
        super::Device::Cpu => DLDevice {
            device_type: DEVICE_CPU,
            device_id: 0,
        },
        super::Device::Cuda(n) => DLDevice {
            device_type: DEVICE_CUDA,
            device_id: n as i32,
        },
    };
    DLTensor {
        data: t.data_ptr() as *mut c_void,
        device,
        ndim: t.ndim() as i32,
        dtype: DLDataType {
            code,
            bits,
            lanes: 1,
        },
        shape: ctx.shape.as_mut_ptr(),
        strides: ctx.strides.as_mut_ptr(),
        byte_offset: 0,
    }
}

fn new_ctx(t: &Tensor) -> Box<ExportCtx> {
    Box::new(ExportCtx {
        _tensor: t.clone(),
        shape: t.shape().iter().map(|&d| d as i64).collect(),
        strides: t.strides().iter().map(|&s| s as i64).collect(),
    })
}

unsafe extern "C" fn delete_legacy(m: *mut DLManagedTensor) {
    if m.is_null() {
        return;
    }
    // SAFETY: `m` and its ctx were made by `export_legacy` with Box::into_raw.
    unsafe {
        let m = Box::from_raw(m);
        drop(Box::from_raw(m.manager_ctx.cast::<ExportCtx>()));
    }
}

unsafe extern "C" fn delete_versioned(m: *mut DLManagedTensorVersioned) {
    if m.is_null() {
        return;
    }
    // SAFETY: `m` and its ctx were made by `export_versioned` with Box::into_raw.
    unsafe {
        let m = Box::from_raw(m);
        drop(Box::from_raw(m.manager_ctx.cast::<ExportCtx>()));
    }
}

/// A legacy (unversioned) managed tensor; the consumer must call its deleter.
pub fn export_legacy(t: &Tensor) -> *mut DLManagedTensor {
    let mut ctx = new_ctx(t);
    let dl = fill(t, &mut ctx);
    Box::into_raw(Box::new(DLManagedTensor {
        dl_tensor: dl,
        manager_ctx: Box::into_raw(ctx).cast(),
        deleter: Some(delete_legacy),
    }))
}

/// A DLPack 1.x managed tensor, flagged read-only when the tensor is.
pub fn export_versioned(t: &Tensor) -> *mut DLManagedTensorVersioned {
    let mut ctx = new_ctx(t);
    let dl = fill(t, &mut ctx);
    Box::into_raw(Box::new(DLManagedTensorVersioned {
        version: DLPackVersion { major: 1, minor: 0 },
        manager_ctx: Box::into_raw(ctx).cast(),
        deleter: Some(delete_versioned),
        flags: if t.is_read_only() { FLAG_READ_ONLY } else { 0 },
        dl_tensor: dl,
    }))
}

/// Calls a producer's deleter when the imported tensor's storage is dropped.
enum Producer {
    Legacy(*mut DLManagedTensor),
    Versioned(*mut DLManagedTensorVersioned),
}

// SAFETY: DLPack deleters may be called from any thread (the spec requires
// producers to allow it; numpy and torch do).
unsafe impl Send for Producer {}
// SAFETY: the pointer is only used once, in drop.
unsafe impl Sync for Producer {}

impl Drop for Producer {
    fn drop(&mut self) {
        // SAFETY: each pointer came from a producer and its deleter is called
        // exactly once, here.
        unsafe {
            match *self {
                Producer::Legacy(m) => {
                    if let Some(d) = (*m).deleter {
                        d(m)
                    }
                }
                Producer::Versioned(m) => {
                    if let Some(d) = (*m).deleter {
                        d(m)
                    }
                }
            }
        }
    }
}

/// Wraps a consumed legacy managed tensor (ownership passes to the result,
/// even on error: the deleter runs when the error path drops it).
///
/// # Safety
/// `m` must be a valid managed tensor that the caller now owns.
pub unsafe fn import_legacy(m: *mut DLManagedTensor) -> CoreResult<Tensor> {
    let producer = Producer::Legacy(m);
    // SAFETY: valid per the caller's contract.
    let dl = unsafe { &(*m).dl_tensor };
    // SAFETY: dl is valid while the producer lives.
    unsafe { wrap(dl, false, producer) }
}

/// As `import_legacy`, for a DLPack 1.x managed tensor.
///
/// # Safety
/// `m` must be a valid managed tensor that the caller now owns.
pub unsafe fn import_versioned(m: *mut DLManagedTensorVersioned) -> CoreResult<Tensor> {
    let producer = Producer::Versioned(m);
    // SAFETY: valid per the caller's contract.
    let (dl, flags) = unsafe { (&(*m).dl_tensor, (*m).flags) };
    // SAFETY: dl is valid while the producer lives.
    unsafe { wrap(dl, flags & FLAG_READ_ONLY != 0, producer) }
}

/// # Safety
/// `dl` must describe valid memory that lives as long as `producer`.
unsafe fn wrap(dl: &DLTensor, read_only: bool, producer: Producer) -> CoreResult<Tensor> {
    let bad = |m: String| CoreError::new(ErrorKind::InvalidArgs, m);
    let cuda_device = match dl.device.device_type {
        DEVICE_CPU => None,
        DEVICE_CUDA if crate::device::is_real() => {
            let n = u32::try_from(dl.device.device_id)
                .map_err(|_| bad(format!("DLPack CUDA device {}", dl.device.device_id)))?;
            crate::device::cuda::device(n)?;
            Some(n)
        }
        other => {
            return Err(bad(format!(
                "DLPack tensor is on device type {other}, which this process cannot use; \
                 move it to the host first{}",
                if other == DEVICE_CUDA {
                    " (or run with TENSORCAST_CUDA_BACKEND=cuda)"
                } else {
                    ""
                }
            )));
        }
    };
    if dl.dtype.lanes != 1 {
        return Err(bad(
            "vector (multi-lane) DLPack dtypes are not supported".into()
        ));
    }
    let dtype = DType::from_dlpack(dl.dtype.code, dl.dtype.bits).ok_or_else(|| {
        CoreError::new(
            ErrorKind::DtypeMismatch,
            format!(
                "unsupported DLPack dtype (code {}, {} bits)",
                dl.dtype.code, dl.dtype.bits
            ),
        )
    })?;
    let ndim = usize::try_from(dl.ndim).map_err(|_| bad("negative ndim".into()))?;
    super::check_ndim(ndim)?;
    // SAFETY: shape has ndim entries per the DLPack contract.
    let shape_i: &[i64] = if ndim == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(dl.shape, ndim) }
    };
    let shape: Vec<usize> = shape_i
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
        .collect::<CoreResult<_>>()?;
    let strides: Vec<isize> = if dl.strides.is_null() || ndim == 0 {
        super::contiguous_strides(&shape)
    } else {
        // SAFETY: strides has ndim entries when non-null.
        let s = unsafe { std::slice::from_raw_parts(dl.strides, ndim) };
        s.iter()
            .map(|&x| {
                if x < 0 {
                    Err(bad(
                        "negative strides are not supported; pass a contiguous copy".into(),
                    ))
                } else {
                    Ok(x as isize)
                }
            })
            .collect::<CoreResult<_>>()?
    };
    let numel = super::numel_of(&shape)?;
    let extent_elems = if numel == 0 {
        0
    } else {
        shape
            .iter()
            .zip(&strides)
            .map(|(&d, &s)| (d - 1) * s as usize)
            .sum::<usize>()
            + 1
    };
    let len = extent_elems * dtype.size();
    if let Some(device) = cuda_device {
        // Device memory: never dereferenced here; the producer keeps it.
        let ptr = (dl.data as usize as u64).wrapping_add(dl.byte_offset);
        let mem = crate::device::DeviceMem::Foreign(crate::device::ForeignMem {
            device,
            ptr,
            len,
            owner: Box::new(producer),
        });
        return Tensor::from_parts(
            Arc::new(Storage::Device(mem)),
            0,
            dtype,
            shape,
            strides,
            read_only,
        );
    }
    // SAFETY: data + byte_offset is the first element per DLPack.
    let ptr = unsafe { dl.data.cast::<u8>().add(dl.byte_offset as usize) };
    // SAFETY: the producer keeps `len` bytes at `ptr` alive until its deleter runs.
    let ext = unsafe { External::new(ptr, len, !read_only, Box::new(producer)) };
    Tensor::from_parts(
        Arc::new(Storage::External(ext)),
        0,
        dtype,
        shape,
        strides,
        read_only,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_then_import_shares_memory() {
        let t = Tensor::from_vec(&[2, 2], &[1f32, 2., 3., 4.]).unwrap();
        let m = export_versioned(&t);
        // SAFETY: m was just exported and is owned here.
        let back = unsafe { import_versioned(m) }.unwrap();
        t.as_mut_slice::<f32>().unwrap()[3] = 40.0;
        assert_eq!(back.as_slice::<f32>().unwrap(), &[1., 2., 3., 40.]);
        let ro = t.read_only_view();
        // SAFETY: as above.
        let back_ro = unsafe { import_versioned(export_versioned(&ro)) }.unwrap();
        assert!(back_ro.is_read_only());
        // SAFETY: as above.
        let legacy = unsafe { import_legacy(export_legacy(&t.permute(&[1, 0]).unwrap())) }.unwrap();
        assert_eq!(
            legacy.contiguous().unwrap().as_slice::<f32>().unwrap(),
            &[1., 3., 2., 40.]
        );
    }
}
