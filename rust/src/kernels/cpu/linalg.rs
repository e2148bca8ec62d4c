//! `matmul` (batched, broadcasting batch dims, numpy's 1-D rules) and
//! `linear` (x·Wᵀ + b), through the `gemm` crate's SIMD kernels for floats.

use gemm::Parallelism;
use rayon::prelude::*;

use super::util::{SendPtr, broadcast_shape, cast, to_f32};
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::kernels::OpCtx;
use crate::tensor::{DType, Element, Tensor};

/// Work (m·n·k) below which one GEMM stays on one thread.
const GEMM_PAR_WORK: usize = 1 << 18;

/// A strided matrix operand: pointer to [0,0], row stride, column stride (elements).
#[derive(Clone, Copy)]
struct Mat<T> {
    ptr: SendPtr<T>,
    rs: isize,
    cs: isize,
}

/// dst[m×n] (row-major, contiguous) = lhs[m×k] · rhs[k×n], plus dst if `accumulate`.
///
/// # Safety
/// Operands must describe valid memory of the stated extents.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_one<T: Element + Gemmable>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    lhs: Mat<T>,
    rhs: Mat<T>,
    accumulate: bool,
    par: Parallelism,
) {
    if T::DTYPE == DType::F32 && m * n * k >= super::sgemm::MIN_WORK && super::sgemm::available() {
        let view = |x: Mat<T>| super::sgemm::View {
            ptr: x.ptr.get() as *const f32,
            rs: x.rs,
            cs: x.cs,
        };
        // SAFETY: forwarded from the caller; T is f32.
        unsafe {
            super::sgemm::sgemm(
                m,
                n,
                k,
                dst.cast::<f32>(),
                n,
                view(lhs),
                view(rhs),
                accumulate,
                matches!(par, Parallelism::Rayon(_)),
            )
        };
        return;
    }
    if T::DTYPE.is_float() {
        // SAFETY: forwarded from the caller; gemm reads lhs/rhs and writes dst.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst,
                1,
                n as isize,
                accumulate,
                lhs.ptr.get() as *const T,
                lhs.cs,
                lhs.rs,
                rhs.ptr.get() as *const T,
                rhs.cs,
                rhs.rs,
                T::ONE,
                T::ONE,
                false,
                false,
                false,
                par,
            )
        }
    } else {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: indices within the stated extents.
                unsafe {
                    let mut acc = if accumulate {
                        *dst.add(i * n + j)
                    } else {
                        T::ZERO
                    };
                    for p in 0..k {
                        let a = *lhs
                            .ptr
                            .get()
                            .offset(i as isize * lhs.rs + p as isize * lhs.cs);
                        let b = *rhs
                            .ptr
                            .get()
                            .offset(p as isize * rhs.rs + j as isize * rhs.cs);
                        acc = T::mul_add(a, b, acc);
                    }
                    *dst.add(i * n + j) = acc;
                }
            }
        }
    }
}

/// Element types GEMM runs on.
pub trait Gemmable: Copy + 'static {
    const ZERO: Self;
    const ONE: Self;
    fn mul_add(a: Self, b: Self, acc: Self) -> Self;
}

impl Gemmable for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn mul_add(a: Self, b: Self, acc: Self) -> Self {
        acc + a * b
    }
}
impl Gemmable for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn mul_add(a: Self, b: Self, acc: Self) -> Self {
        acc + a * b
    }
}
impl Gemmable for i32 {
    const ZERO: Self = 0;
    const ONE: Self = 1;
    fn mul_add(a: Self, b: Self, acc: Self) -> Self {
        acc.wrapping_add(a.wrapping_mul(b))
    }
}
impl Gemmable for i64 {
    const ZERO: Self = 0;
    const ONE: Self = 1;
    fn mul_add(a: Self, b: Self, acc: Self) -> Self {
        acc.wrapping_add(a.wrapping_mul(b))
    }
}

/// Tunes the `gemm` crate once: with several threads, always pack the left
/// operand. Its default (pack only past 16 row blocks) left 2-thread square
/// products ~3-25% slower on the machines measured (`bench/kernels.py`).
fn tune_gemm() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| gemm_common::gemm::set_lhs_packing_threshold_multi_thread(1));
}

fn shape_err(msg: String) -> CoreError {
    CoreError::new(ErrorKind::ShapeMismatch, msg)
}

pub fn matmul(a: &Tensor, b: &Tensor, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    if a.dtype() != b.dtype() {
        return Err(CoreError::new(
            ErrorKind::DtypeMismatch,
            format!(
                "matmul: operands are {} and {}",
                a.dtype().name(),
                b.dtype().name()
            ),
        ));
    }
    if matches!(a.dtype(), DType::F16 | DType::BF16) {
        let out = matmul(&to_f32(a, ctx)?, &to_f32(b, ctx)?, ctx)?;
        return cast(&out, a.dtype(), ctx);
    }
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(shape_err(
            "matmul: operands must have at least one dimension".into(),
        ));
    }
    // numpy: a 1-D left operand is a row, a 1-D right operand a column; the
    // added dimension is removed from the result.
    let a2 = if a.ndim() == 1 {
        a.reshape_in(&[1, a.shape()[0]], ctx.budget)?
    } else {
        a.clone()
    };
    let b2 = if b.ndim() == 1 {
        b.reshape_in(&[b.shape()[0], 1], ctx.budget)?
    } else {
        b.clone()
    };
    let (m, k) = (a2.shape()[a2.ndim() - 2], a2.shape()[a2.ndim() - 1]);
    let (k2, n) = (b2.shape()[b2.ndim() - 2], b2.shape()[b2.ndim() - 1]);
    if k != k2 {
        return Err(shape_err(format!(
            "matmul: inner dimensions differ: {:?} @ {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let batch = broadcast_shape(
        "matmul",
        &a2.shape()[..a2.ndim() - 2],
        &b2.shape()[..b2.ndim() - 2],
    )?;
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    let out = ctx.alloc(a.dtype(), &out_shape)?;
    match a.dtype() {
        DType::F32 => batched::<f32>(&a2, &b2, &out, &batch, m, n, k)?,
        DType::F64 => batched::<f64>(&a2, &b2, &out, &batch, m, n, k)?,
        DType::I32 => batched::<i32>(&a2, &b2, &out, &batch, m, n, k)?,
        DType::I64 => batched::<i64>(&a2, &b2, &out, &batch, m, n, k)?,
        other => {
            return Err(CoreError::new(
                ErrorKind::DtypeMismatch,
                format!(
                    "matmul: {} is not supported (f32, f64, f16, bf16, i32, i64)",
                    other.name()
                ),
            ));
        }
    }
    let mut final_shape = out_shape;
    if b.ndim() == 1 {
        final_shape.remove(final_shape.len() - 1);
    }
    if a.ndim() == 1 {
        final_shape.remove(final_shape.len() - if b.ndim() == 1 { 1 } else { 2 });
    }
    out.reshape_in(&final_shape, ctx.budget)
}

fn batch_offsets(t: &Tensor, batch: &[usize]) -> Vec<isize> {
    // Offsets (elements) of each batch matrix of `t` broadcast to `batch`.
    let nb = t.ndim() - 2;
    let lead = batch.len() - nb;
    let count: usize = batch.iter().product();
    let mut offs = Vec::with_capacity(count);
    for idx in 0..count {
        let mut rem = idx;
        let mut off = 0isize;
        for ax in (0..batch.len()).rev() {
            let i = rem % batch[ax];
            rem /= batch[ax];
            if ax >= lead {
                let d = ax - lead;
                if t.shape()[d] != 1 {
                    off += i as isize * t.strides()[d];
                }
            }
        }
        offs.push(off);
    }
    offs
}

#[allow(clippy::too_many_arguments)]
fn batched<T: Element + Gemmable>(
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    batch: &[usize],
    m: usize,
    n: usize,
    k: usize,
) -> CoreResult<()> {
    tune_gemm();
    let count: usize = batch.iter().product();
    if count == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // An empty inner dimension: every dot product is zero.
        out.as_mut_slice::<T>()?.fill(T::ZERO);
        return Ok(());
    }
    let oa = batch_offsets(a, batch);
    let ob = batch_offsets(b, batch);
    let (ar, ac) = (a.strides()[a.ndim() - 2], a.strides()[a.ndim() - 1]);
    let (br, bc) = (b.strides()[b.ndim() - 2], b.strides()[b.ndim() - 1]);
    let pa = SendPtr(a.data_ptr() as *mut T);
    let pb = SendPtr(b.data_ptr() as *mut T);
    let dst = SendPtr(out.data_mut_ptr()?.cast::<T>());
    let work = m * n * k;
    let one = |i: usize, par: Parallelism| {
        // SAFETY: offsets and strides come from validated tensors; each batch
        // writes its own m×n block of `out`.
        unsafe {
            gemm_one::<T>(
                m,
                n,
                k,
                dst.get().add(i * m * n),
                Mat {
                    ptr: SendPtr(pa.get().offset(oa[i])),
                    rs: ar,
                    cs: ac,
                },
                Mat {
                    ptr: SendPtr(pb.get().offset(ob[i])),
                    rs: br,
                    cs: bc,
                },
                false,
                par,
            )
        }
    };
    if count > 1 && work < GEMM_PAR_WORK * 4 {
        (0..count)
            .into_par_iter()
            .for_each(|i| one(i, Parallelism::None));
    } else {
        let par = if work >= GEMM_PAR_WORK {
            Parallelism::Rayon(0)
        } else {
            Parallelism::None
        };
        (0..count).for_each(|i| one(i, par));
    }
    Ok(())
}

pub fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let dtype = x.dtype();
    if w.dtype() != dtype || bias.is_some_and(|b| b.dtype() != dtype) {
        return Err(CoreError::new(
            ErrorKind::DtypeMismatch,
            "linear: x, weight and bias must have the same dtype".to_string(),
        ));
    }
    if matches!(dtype, DType::F16 | DType::BF16) {
        let wb = match bias {
            Some(b) => Some(to_f32(b, ctx)?),
            None => None,
        };
        let out = linear(&to_f32(x, ctx)?, &to_f32(w, ctx)?, wb.as_ref(), ctx)?;
        return cast(&out, dtype, ctx);
    }
    if x.ndim() == 0 || w.ndim() != 2 {
        return Err(shape_err(format!(
            "linear: x must have ≥ 1 dimension and weight 2 ([out, in]); got {:?} and {:?}",
            x.shape(),
            w.shape()
        )));
    }
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let last = x.shape()[x.ndim() - 1];
    if last != in_f {
        return Err(shape_err(format!(
            "linear: x's last dimension is {last} but weight is [{out_f}, {in_f}]"
        )));
    }
    if let Some(b) = bias
        && b.shape() != [out_f]
    {
        return Err(shape_err(format!(
            "linear: bias must be [{out_f}], got {:?}",
            b.shape()
        )));
    }
    let rows: usize = x.shape()[..x.ndim() - 1].iter().product();
    let x2 = x.reshape_in(&[rows, in_f], ctx.budget)?;
    let mut out_shape = x.shape()[..x.ndim() - 1].to_vec();
    out_shape.push(out_f);
    let out = ctx.alloc(dtype, &out_shape)?;
    match dtype {
        DType::F32 => linear_typed::<f32>(&x2, w, bias, &out, rows, out_f, in_f, ctx)?,
        DType::F64 => linear_typed::<f64>(&x2, w, bias, &out, rows, out_f, in_f, ctx)?,
        DType::I32 => linear_typed::<i32>(&x2, w, bias, &out, rows, out_f, in_f, ctx)?,
        DType::I64 => linear_typed::<i64>(&x2, w, bias, &out, rows, out_f, in_f, ctx)?,
        other => {
            return Err(CoreError::new(
                ErrorKind::DtypeMismatch,
                format!("linear: {} is not supported", other.name()),
            ));
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn linear_typed<T: Element + Gemmable>(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    rows: usize,
    out_f: usize,
    in_f: usize,
    ctx: &OpCtx<'_>,
) -> CoreResult<()> {
    if rows == 0 || out_f == 0 {
        return Ok(());
    }
    let dst = out.as_mut_slice::<T>()?;
    if let Some(b) = bias {
        let b = b.contiguous_in(ctx.budget)?;
        let bv = b.as_slice::<T>()?;
        dst.chunks_mut(out_f).for_each(|r| r.copy_from_slice(bv));
    }
    if in_f == 0 {
        if bias.is_none() {
            dst.fill(T::ZERO);
        }
        return Ok(());
    }
    let work = rows * out_f * in_f;
    if T::DTYPE == DType::F32
        && rows <= super::skinny::MAX_ROWS
        && in_f >= super::skinny::MIN_K
        && x.strides()[1] == 1
        && w.strides()[1] == 1
        && super::skinny::available()
    {
        // SAFETY: x is [rows, in] and w [out, in] with unit stride along in;
        // dst is the contiguous [rows, out] output; T is f32.
        unsafe {
            super::skinny::linear_f32(
                x.data_ptr().cast::<f32>(),
                x.strides()[0] as usize,
                rows,
                w.data_ptr().cast::<f32>(),
                w.strides()[0] as usize,
                out_f,
                in_f,
                dst.as_mut_ptr().cast::<f32>(),
                bias.is_some(),
            )
        };
        return Ok(());
    }
    let par = if work >= GEMM_PAR_WORK {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    tune_gemm();
    // SAFETY: x is [rows, in] and w [out, in], both validated; rhs reads w
    // transposed through its strides (no copy).
    unsafe {
        gemm_one::<T>(
            rows,
            out_f,
            in_f,
            dst.as_mut_ptr(),
            Mat {
                ptr: SendPtr(x.data_ptr() as *mut T),
                rs: x.strides()[0],
                cs: x.strides()[1],
            },
            Mat {
                ptr: SendPtr(w.data_ptr() as *mut T),
                rs: w.strides()[1],
                cs: w.strides()[0],
            },
            bias.is_some(),
            par,
        )
    };
    Ok(())
}
