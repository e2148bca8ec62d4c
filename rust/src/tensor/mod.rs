//! `Tensor`: a typed, strided view of host memory (owned, shared or borrowed).
//!
//! A tensor is cheap to clone (the storage is reference-counted); views
//! (reshape of contiguous data, transpose, slice) share storage. Read-only
//! tensors (bound artifacts, read-only borrows) refuse every write path.

pub mod dlpack;
pub mod dtype;
pub mod storage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use dtype::DType;
pub use storage::{External, ShmRegion, Storage};

use crate::error::{CoreError, CoreResult, ErrorKind};

/// Most dimensions a tensor may have (bounds argv and info buffers).
pub const MAX_NDIM: usize = 16;

/// A host scalar type that tensors of one dtype hold.
pub trait Element: Copy + Send + Sync + 'static {
    const DTYPE: DType;
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
        }
    };
}
element!(f32, DType::F32);
element!(half::f16, DType::F16);
element!(half::bf16, DType::BF16);
element!(f64, DType::F64);
element!(i32, DType::I32);
element!(i64, DType::I64);
element!(u8, DType::U8);
element!(i8, DType::I8);

/// Where a tensor's memory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(u32),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// One instance's memory cap, shared by its linear memory and the host
/// tensors it allocates: `linear + used <= limit` always holds.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
    linear: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget {
            limit,
            used: AtomicU64::new(0),
            linear: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Records the linear memory's size (the limiter calls this on growth).
    pub fn set_linear(&self, bytes: u64) {
        self.linear.store(bytes, Ordering::Relaxed);
    }

    /// Whether linear memory may grow to `bytes` given the tensors held.
    pub fn linear_fits(&self, bytes: u64) -> bool {
        bytes.saturating_add(self.used()) <= self.limit
    }

    /// Reserves `bytes` of tensor memory or fails with `memory_limit`.
    pub fn reserve(&self, bytes: u64) -> CoreResult<()> {
        let mut cur = self.used.load(Ordering::Relaxed);
        let linear = self.linear.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(bytes);
            if next.saturating_add(linear) > self.limit {
                return Err(CoreError::new(
                    ErrorKind::MemoryLimit,
                    format!(
                        "allocating {bytes} bytes of tensors would exceed the memory cap \
                         ({cur} bytes of tensors and {linear} of linear memory in use, cap {})",
                        self.limit
                    ),
                ));
            }
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// Row-major strides (in elements) of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc: isize = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc = acc.saturating_mul(shape[i].max(1) as isize);
    }
    strides
}

/// Number of elements, or an error if it overflows.
pub fn numel_of(shape: &[usize]) -> CoreResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            CoreError::new(
                ErrorKind::ShapeMismatch,
                format!("shape {shape:?} has too many elements"),
            )
        })
}

#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    /// Byte offset of element [0, 0, ...] in the storage.
    offset: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Strides in elements (may be 0 for broadcast views, never negative).
    strides: Vec<isize>,
    read_only: bool,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("strides", &self.strides)
            .field("storage", &self.storage.kind())
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Tensor {
    /// A zero-filled contiguous host tensor.
    pub fn zeros(dtype: DType, shape: &[usize]) -> CoreResult<Tensor> {
        Self::zeros_in(dtype, shape, None)
    }

    /// As `zeros`, charging the bytes to `budget` while the memory lives.
    pub fn zeros_in(
        dtype: DType,
        shape: &[usize],
        budget: Option<&Arc<Budget>>,
    ) -> CoreResult<Tensor> {
        Self::alloc_in(dtype, shape, budget, true)
    }

    /// A contiguous host tensor whose contents are unspecified: only for
    /// kernel outputs that write every element before anything reads them.
    pub fn uninit_in(
        dtype: DType,
        shape: &[usize],
        budget: Option<&Arc<Budget>>,
    ) -> CoreResult<Tensor> {
        Self::alloc_in(dtype, shape, budget, false)
    }

    fn alloc_in(
        dtype: DType,
        shape: &[usize],
        budget: Option<&Arc<Budget>>,
        zero: bool,
    ) -> CoreResult<Tensor> {
        check_ndim(shape.len())?;
        let nbytes = numel_of(shape)?.checked_mul(dtype.size()).ok_or_else(|| {
            CoreError::new(
                ErrorKind::ShapeMismatch,
                format!("shape {shape:?} is too large"),
            )
        })?;
        let storage = match (budget, zero) {
            (Some(b), _) => Storage::Host(storage::AlignedBuf::charged(nbytes, zero, b)?),
            (None, true) => Storage::host_zeroed(nbytes)?,
            (None, false) => Storage::Host(storage::AlignedBuf::uninit(nbytes)?),
        };
        Ok(Tensor {
            storage: Arc::new(storage),
            offset: 0,
            dtype,
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            read_only: false,
        })
    }

    /// A zero-filled contiguous tensor in a new shared-memory region.
    pub fn shared(dtype: DType, shape: &[usize]) -> CoreResult<Tensor> {
        check_ndim(shape.len())?;
        let nbytes = numel_of(shape)?.checked_mul(dtype.size()).ok_or_else(|| {
            CoreError::new(
                ErrorKind::ShapeMismatch,
                format!("shape {shape:?} is too large"),
            )
        })?;
        let region = ShmRegion::create("tensorwasm-tensor", nbytes)?;
        Ok(Tensor {
            storage: Arc::new(Storage::Shm(region)),
            offset: 0,
            dtype,
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            read_only: false,
        })
    }

    /// A tensor over existing storage; every element must lie inside it.
    pub fn from_parts(
        storage: Arc<Storage>,
        offset: usize,
        dtype: DType,
        shape: Vec<usize>,
        strides: Vec<isize>,
        read_only: bool,
    ) -> CoreResult<Tensor> {
        check_ndim(shape.len())?;
        if strides.len() != shape.len() {
            return Err(CoreError::new(
                ErrorKind::ShapeMismatch,
                "strides and shape differ in length",
            ));
        }
        let numel = numel_of(&shape)?;
        if numel > 0 {
            let mut last: usize = 0;
            for (&d, &s) in shape.iter().zip(&strides) {
                if s < 0 {
                    return Err(CoreError::new(
                        ErrorKind::ShapeMismatch,
                        "negative strides are not supported",
                    ));
                }
                last = (d - 1)
                    .checked_mul(s as usize)
                    .and_then(|x| x.checked_add(last))
                    .ok_or_else(|| CoreError::new(ErrorKind::ShapeMismatch, "strides overflow"))?;
            }
            let end = last
                .checked_add(1)
                .and_then(|n| n.checked_mul(dtype.size()))
                .and_then(|n| n.checked_add(offset))
                .ok_or_else(|| {
                    CoreError::new(ErrorKind::ShapeMismatch, "tensor extent overflows")
                })?;
            if end > storage.len() {
                return Err(CoreError::new(
                    ErrorKind::ShapeMismatch,
                    format!(
                        "tensor needs {end} bytes but its memory has {}",
                        storage.len()
                    ),
                ));
            }
        }
        let read_only = read_only || storage.as_mut_ptr().is_none();
        Ok(Tensor {
            storage,
            offset,
            dtype,
            shape,
            strides,
            read_only,
        })
    }

    /// A contiguous host tensor holding a copy of `data`.
    pub fn from_vec<T: Element>(shape: &[usize], data: &[T]) -> CoreResult<Tensor> {
        let t = Tensor::zeros(T::DTYPE, shape)?;
        if numel_of(shape)? != data.len() {
            return Err(CoreError::new(
                ErrorKind::ShapeMismatch,
                format!("{} values do not fill shape {shape:?}", data.len()),
            ));
        }
        let dst = t.data_mut_ptr()?;
        // SAFETY: t is a fresh contiguous tensor of exactly data.len() elements.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst.cast::<T>(), data.len()) };
        Ok(t)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[isize] {
        &self.strides
    }
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
    pub fn device(&self) -> Device {
        match &*self.storage {
            Storage::Device(d) => Device::Cuda(d.device()),
            _ => Device::Cpu,
        }
    }

    /// An error unless the tensor's memory is host memory (`what` names the
    /// operation that needs it).
    pub fn require_host(&self, what: &str) -> CoreResult<()> {
        match self.device() {
            Device::Cpu => Ok(()),
            d => Err(CoreError::invalid_args(format!(
                "{what} needs a host tensor, and this one is on {d}; move it with .to(\"cpu\")"
            ))),
        }
    }
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// True when the elements are laid out row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        if self.numel() == 0 {
            // No elements: any layout is as good as row-major (numpy agrees).
            return true;
        }
        let mut expected: isize = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != expected {
                return false;
            }
            expected *= self.shape[i] as isize;
        }
        true
    }

    /// Same memory, refusing writes from now on.
    pub fn read_only_view(&self) -> Tensor {
        Tensor {
            read_only: true,
            ..self.clone()
        }
    }

    /// Pointer to element 0.
    pub fn data_ptr(&self) -> *const u8 {
        // Wrapping: on a real device the base is a device address, not a
        // host allocation (offset was checked against the storage length).
        self.storage.as_ptr().wrapping_add(self.offset)
    }

    /// Pointer to element 0 for writing; `read_only` error if not writable.
    pub fn data_mut_ptr(&self) -> CoreResult<*mut u8> {
        if self.read_only {
            return Err(CoreError::new(ErrorKind::ReadOnly, "tensor is read-only"));
        }
        let p = self
            .storage
            .as_mut_ptr()
            .ok_or_else(|| CoreError::new(ErrorKind::ReadOnly, "tensor memory is read-only"))?;
        // SAFETY: as in data_ptr.
        Ok(unsafe { p.add(self.offset) })
    }

    /// The elements of a contiguous tensor of type `T`.
    pub fn as_slice<T: Element>(&self) -> CoreResult<&[T]> {
        self.check_typed::<T>()?;
        // SAFETY: contiguous, dtype matches T, extent checked at construction;
        // the storage outlives the borrow of self.
        Ok(unsafe { std::slice::from_raw_parts(self.data_ptr().cast::<T>(), self.numel()) })
    }

    /// The elements of a contiguous, writable tensor of type `T`.
    ///
    /// The caller must be the only writer (fresh kernel outputs are).
    #[allow(clippy::mut_from_ref)]
    pub fn as_mut_slice<T: Element>(&self) -> CoreResult<&mut [T]> {
        self.check_typed::<T>()?;
        let p = self.data_mut_ptr()?;
        // SAFETY: as in as_slice, and the memory is writable.
        Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<T>(), self.numel()) })
    }

    fn check_typed<T: Element>(&self) -> CoreResult<()> {
        if self.dtype != T::DTYPE && !(self.dtype == DType::Bool && T::DTYPE == DType::U8) {
            return Err(CoreError::new(
                ErrorKind::DtypeMismatch,
                format!(
                    "expected a {} tensor, got {}",
                    T::DTYPE.name(),
                    self.dtype.name()
                ),
            ));
        }
        if !self.is_contiguous() {
            return Err(CoreError::internal(
                "typed access to a non-contiguous tensor",
            ));
        }
        Ok(())
    }

    /// This tensor if contiguous, else a contiguous copy (charged to `budget`).
    pub fn contiguous_in(&self, budget: Option<&Arc<Budget>>) -> CoreResult<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        self.copy_in(budget)
    }

    /// A new contiguous, writable copy of the elements (charged to `budget`).
    pub fn copy_in(&self, budget: Option<&Arc<Budget>>) -> CoreResult<Tensor> {
        let out = Tensor::uninit_in(self.dtype, &self.shape, budget)?;
        if self.numel() == 0 {
            return Ok(out);
        }
        let dst = out.data_mut_ptr()?;
        // SAFETY: `out` was just allocated with this shape and dtype.
        unsafe { self.write_elements(dst) };
        Ok(out)
    }

    /// Copies the elements, row-major and packed, to `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for `nbytes()` bytes of writes and must not
    /// overlap this tensor's memory.
    pub(crate) unsafe fn write_elements(&self, dst: *mut u8) {
        if self.is_contiguous() {
            // SAFETY: a contiguous extent of nbytes (checked at construction);
            // the caller vouches for `dst`.
            unsafe { std::ptr::copy_nonoverlapping(self.data_ptr(), dst, self.nbytes()) };
        } else {
            self.copy_strided_to(dst);
        }
    }

    pub fn contiguous(&self) -> CoreResult<Tensor> {
        self.contiguous_in(None)
    }

    /// Copies the elements in row-major order to `dst` (numel * size bytes).
    fn copy_strided_to(&self, dst: *mut u8) {
        let es = self.dtype.size();
        let n = self.numel();
        if n == 0 {
            return;
        }
        let nd = self.shape.len();
        let mut idx = vec![0usize; nd];
        let src = self.data_ptr();
        // Innermost run: copy element by element along the last axis.
        for i in 0..n {
            let off: isize = idx
                .iter()
                .zip(&self.strides)
                .map(|(&i, &s)| i as isize * s)
                .sum();
            // SAFETY: indices are within shape, so off is within the extent
            // checked at construction; dst holds numel elements.
            unsafe {
                std::ptr::copy_nonoverlapping(src.offset(off * es as isize), dst.add(i * es), es)
            };
            for d in (0..nd).rev() {
                idx[d] += 1;
                if idx[d] < self.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }

    /// The bytes in row-major order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.nbytes()];
        // SAFETY: `out` holds exactly nbytes.
        unsafe { self.write_elements(out.as_mut_ptr()) };
        out
    }

    /// A view with a new shape (a copy when the layout does not allow a view).
    pub fn reshape_in(&self, shape: &[usize], budget: Option<&Arc<Budget>>) -> CoreResult<Tensor> {
        check_ndim(shape.len())?;
        if numel_of(shape)? != self.numel() {
            return Err(CoreError::new(
                ErrorKind::ShapeMismatch,
                format!(
                    "cannot reshape {:?} ({} elements) to {shape:?}",
                    self.shape,
                    self.numel()
                ),
            ));
        }
        let base = self.contiguous_in(budget)?;
        Ok(Tensor {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            ..base
        })
    }

    /// A view with axes permuted.
    pub fn permute(&self, perm: &[usize]) -> CoreResult<Tensor> {
        let nd = self.ndim();
        let mut seen = vec![false; nd];
        if perm.len() != nd
            || perm
                .iter()
                .any(|&p| p >= nd || std::mem::replace(&mut seen[p], true))
        {
            return Err(CoreError::new(
                ErrorKind::InvalidArgs,
                format!("{perm:?} is not a permutation of {nd} axes"),
            ));
        }
        Ok(Tensor {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            ..self.clone()
        })
    }

    /// A view of `start..end` (step `step` > 0) along `axis`.
    pub fn slice_axis(
        &self,
        axis: usize,
        start: usize,
        end: usize,
        step: usize,
    ) -> CoreResult<Tensor> {
        if axis >= self.ndim() || step == 0 || start > end || end > self.shape[axis] {
            return Err(CoreError::new(
                ErrorKind::InvalidArgs,
                format!(
                    "slice {start}..{end} step {step} is invalid for axis {axis} of shape {:?}",
                    self.shape
                ),
            ));
        }
        let mut shape = self.shape.clone();
        let mut strides = self.strides.clone();
        shape[axis] = (end - start).div_ceil(step);
        let offset = if shape[axis] == 0 {
            self.offset
        } else {
            self.offset + start * self.strides[axis] as usize * self.dtype.size()
        };
        strides[axis] *= step as isize;
        Ok(Tensor {
            offset,
            shape,
            strides,
            ..self.clone()
        })
    }
}

pub fn check_ndim(ndim: usize) -> CoreResult<()> {
    if ndim > MAX_NDIM {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            format!("{ndim} dimensions; at most {MAX_NDIM} are supported"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_share_memory_and_copies_do_not() {
        let t = Tensor::from_vec(&[2, 3], &[0f32, 1., 2., 3., 4., 5.]).unwrap();
        let tt = t.permute(&[1, 0]).unwrap();
        assert!(!tt.is_contiguous());
        assert_eq!(
            tt.contiguous().unwrap().as_slice::<f32>().unwrap(),
            &[0., 3., 1., 4., 2., 5.]
        );
        let col = t.slice_axis(1, 1, 3, 1).unwrap();
        assert_eq!(col.to_bytes().len(), 16);
        t.as_mut_slice::<f32>().unwrap()[1] = 9.0;
        assert_eq!(tt.contiguous().unwrap().as_slice::<f32>().unwrap()[2], 9.0);
    }

    #[test]
    fn read_only_views_refuse_writes() {
        let t = Tensor::zeros(DType::F32, &[4]).unwrap().read_only_view();
        assert_eq!(t.data_mut_ptr().unwrap_err().kind, ErrorKind::ReadOnly);
    }

    #[test]
    fn budget_refuses_past_the_cap() {
        let b = Arc::new(Budget::new(100));
        let held = Tensor::zeros_in(DType::F32, &[25], Some(&b)).unwrap();
        let e = Tensor::zeros_in(DType::F32, &[1], Some(&b)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MemoryLimit);
        drop(held);
        assert_eq!(b.used(), 0);
        assert!(Tensor::zeros_in(DType::F32, &[25], Some(&b)).is_ok());
    }

    #[test]
    fn out_of_bounds_parts_are_refused() {
        let s = Arc::new(Storage::host_zeroed(16).unwrap());
        assert!(Tensor::from_parts(s.clone(), 0, DType::F32, vec![4], vec![1], false).is_ok());
        assert!(Tensor::from_parts(s.clone(), 4, DType::F32, vec![4], vec![1], false).is_err());
        assert!(Tensor::from_parts(s, 0, DType::F32, vec![2, 2], vec![3, 1], false).is_err());
    }
}
