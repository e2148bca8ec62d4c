//! Shared helpers: raw pointers across threads, broadcasting, dtype casts.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::kernels::OpCtx;
use crate::tensor::{DType, Element, Tensor};

/// Elements below which a kernel stays on the calling thread: forking costs
/// more than it saves for small tensors.
pub const PAR_THRESHOLD: usize = 1 << 15;
/// Elements per parallel chunk of elementwise work.
pub const CHUNK: usize = 1 << 14;

/// A raw pointer that may cross threads; users guarantee disjoint writes.
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: used only for disjoint writes / shared reads coordinated by rayon.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// Method access so closures capture the whole (Send) wrapper.
    pub fn get(self) -> *mut T {
        self.0
    }
}

pub fn dtype_err(op: &str, t: &Tensor, wanted: &str) -> CoreError {
    CoreError::new(
        ErrorKind::DtypeMismatch,
        format!(
            "{op}: {wanted} tensors are required, got {}",
            t.dtype().name()
        ),
    )
}

/// The broadcast of two shapes (numpy rules), or a shape error.
pub fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> CoreResult<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(CoreError::new(
                    ErrorKind::ShapeMismatch,
                    format!("{op}: shapes {a:?} and {b:?} do not broadcast"),
                ));
            }
        };
    }
    Ok(out)
}

/// Strides (elements) of `t` read as `out` shape: 0 along broadcast axes.
pub fn broadcast_strides(t: &Tensor, out: &[usize]) -> Vec<isize> {
    let n = out.len();
    let off = n - t.ndim();
    (0..n)
        .map(|i| {
            if i < off || (t.shape()[i - off] == 1 && out[i] != 1) {
                0
            } else {
                t.strides()[i - off]
            }
        })
        .collect()
}

/// A contiguous f32 copy (or the tensor itself when already contiguous f32).
pub fn to_f32(t: &Tensor, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    if t.dtype() == DType::F32 {
        return t.contiguous_in(ctx.budget);
    }
    cast(t, DType::F32, ctx)
}

/// Runs a float kernel: f32/f64 natively, f16/bf16 through f32.
pub fn float_op(
    op: &str,
    x: &Tensor,
    ctx: &OpCtx<'_>,
    f32_kernel: impl Fn(&Tensor) -> CoreResult<Tensor>,
    f64_kernel: impl Fn(&Tensor) -> CoreResult<Tensor>,
) -> CoreResult<Tensor> {
    match x.dtype() {
        DType::F32 => f32_kernel(x),
        DType::F64 => f64_kernel(x),
        DType::F16 | DType::BF16 => {
            let wide = to_f32(x, ctx)?;
            let out = f32_kernel(&wide)?;
            cast(&out, x.dtype(), ctx)
        }
        _ => Err(dtype_err(op, x, "floating-point")),
    }
}

fn convert_slice<S: Element, D: Element>(
    src: &[S],
    dst: &mut [D],
    f: impl Fn(S) -> D + Sync + Send,
) {
    if src.len() >= PAR_THRESHOLD {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d = f(s)));
    } else {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = f(s));
    }
}

macro_rules! to_f64_fn {
    ($t:ty) => {
        |v: $t| v as f64
    };
}

/// Converts `x` to `dtype` (a new contiguous tensor). Float → int truncates
/// toward zero and saturates (NaN → 0); anything → bool is `!= 0`.
pub fn cast(x: &Tensor, dtype: DType, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    let x = x.contiguous_in(ctx.budget)?;
    let out = ctx.alloc(dtype, x.shape())?;
    if x.dtype() == dtype {
        let bytes = x.nbytes();
        // SAFETY: both contiguous with `bytes` bytes; out is fresh.
        unsafe { std::ptr::copy_nonoverlapping(x.data_ptr(), out.data_mut_ptr()?, bytes) };
        return Ok(out);
    }
    // Fast paths for the half types used by every f16/bf16 kernel.
    match (x.dtype(), dtype) {
        (DType::F16, DType::F32) => {
            x.as_slice::<f16>()?
                .convert_to_f32_slice(out.as_mut_slice::<f32>()?);
            return Ok(out);
        }
        (DType::BF16, DType::F32) => {
            x.as_slice::<bf16>()?
                .convert_to_f32_slice(out.as_mut_slice::<f32>()?);
            return Ok(out);
        }
        (DType::F32, DType::F16) => {
            out.as_mut_slice::<f16>()?
                .convert_from_f32_slice(x.as_slice::<f32>()?);
            return Ok(out);
        }
        (DType::F32, DType::BF16) => {
            out.as_mut_slice::<bf16>()?
                .convert_from_f32_slice(x.as_slice::<f32>()?);
            return Ok(out);
        }
        _ => {}
    }
    // General path: through f64 for floats, i64 for integers.
    let n = x.numel();
    let mut wide_f = Vec::new();
    let mut wide_i = Vec::new();
    let src_is_float = x.dtype().is_float();
    if src_is_float {
        wide_f = vec![0f64; n];
        match x.dtype() {
            DType::F32 => convert_slice(x.as_slice::<f32>()?, &mut wide_f, to_f64_fn!(f32)),
            DType::F64 => wide_f.copy_from_slice(x.as_slice::<f64>()?),
            DType::F16 => convert_slice(x.as_slice::<f16>()?, &mut wide_f, |v: f16| v.to_f64()),
            DType::BF16 => convert_slice(x.as_slice::<bf16>()?, &mut wide_f, |v: bf16| v.to_f64()),
            _ => unreachable_dtype()?,
        }
    } else {
        wide_i = vec![0i64; n];
        match x.dtype() {
            DType::I32 => convert_slice(x.as_slice::<i32>()?, &mut wide_i, |v: i32| v as i64),
            DType::I64 => wide_i.copy_from_slice(x.as_slice::<i64>()?),
            DType::U8 | DType::Bool => {
                convert_slice(x.as_slice::<u8>()?, &mut wide_i, |v: u8| v as i64)
            }
            DType::I8 => convert_slice(x.as_slice::<i8>()?, &mut wide_i, |v: i8| v as i64),
            _ => unreachable_dtype()?,
        }
    }
    macro_rules! store {
        ($t:ty, $from_f:expr, $from_i:expr) => {{
            let dst = out.as_mut_slice::<$t>()?;
            if src_is_float {
                convert_slice(&wide_f, dst, $from_f);
            } else {
                convert_slice(&wide_i, dst, $from_i);
            }
        }};
    }
    match dtype {
        DType::F32 => store!(f32, |v: f64| v as f32, |v: i64| v as f32),
        DType::F64 => store!(f64, |v: f64| v, |v: i64| v as f64),
        DType::F16 => store!(f16, f16::from_f64, |v: i64| f16::from_f64(v as f64)),
        DType::BF16 => store!(bf16, bf16::from_f64, |v: i64| bf16::from_f64(v as f64)),
        DType::I32 => store!(i32, |v: f64| v as i32, |v: i64| v as i32),
        DType::I64 => store!(i64, |v: f64| v as i64, |v: i64| v),
        DType::U8 => store!(u8, |v: f64| v as u8, |v: i64| v as u8),
        DType::I8 => store!(i8, |v: f64| v as i8, |v: i64| v as i8),
        DType::Bool => store!(u8, |v: f64| (v != 0.0) as u8, |v: i64| (v != 0) as u8),
    }
    Ok(out)
}

fn unreachable_dtype() -> CoreResult<()> {
    Err(CoreError::internal("dtype dispatch fell through"))
}
