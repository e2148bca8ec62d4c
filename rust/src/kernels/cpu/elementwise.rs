//! Elementwise ops: broadcasting arithmetic, scale, activations.

use rayon::prelude::*;

use super::util::{
    CHUNK, PAR_THRESHOLD, SendPtr, broadcast_shape, broadcast_strides, dtype_err, float_op,
};
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::kernels::{OpCtx, OpId};
use crate::tensor::{DType, Element, Tensor};

/// `out[i] = f(a[i], b[i])` over the broadcast of `a` and `b` into `out`
/// (contiguous). Inputs may be strided.
fn zip_broadcast<T: Element>(
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> CoreResult<()> {
    let n = out.numel();
    if n == 0 {
        return Ok(());
    }
    let dst = out.as_mut_slice::<T>()?;
    if a.is_contiguous()
        && b.is_contiguous()
        && a.shape() == out.shape()
        && b.shape() == out.shape()
    {
        let (xa, xb) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
        if n >= PAR_THRESHOLD {
            dst.par_chunks_mut(CHUNK)
                .zip(xa.par_chunks(CHUNK).zip(xb.par_chunks(CHUNK)))
                .for_each(|(d, (x, y))| {
                    for i in 0..d.len() {
                        d[i] = f(x[i], y[i]);
                    }
                });
        } else {
            for i in 0..n {
                dst[i] = f(xa[i], xb[i]);
            }
        }
        return Ok(());
    }
    let shape = out.shape();
    let nd = shape.len();
    let inner = if nd == 0 { 1 } else { shape[nd - 1] };
    let sa = broadcast_strides(a, shape);
    let sb = broadcast_strides(b, shape);
    let (ia, ib) = if nd == 0 {
        (0, 0)
    } else {
        (sa[nd - 1], sb[nd - 1])
    };
    let pa = SendPtr(a.data_ptr() as *mut T);
    let pb = SendPtr(b.data_ptr() as *mut T);
    let row = |r: usize, d: &mut [T]| {
        // Offsets of row r's first element in a and b.
        let (mut oa, mut ob) = (0isize, 0isize);
        let mut rem = r;
        for ax in (0..nd.saturating_sub(1)).rev() {
            let i = rem % shape[ax];
            rem /= shape[ax];
            oa += i as isize * sa[ax];
            ob += i as isize * sb[ax];
        }
        for (j, slot) in d.iter_mut().enumerate() {
            // SAFETY: offsets stay within each input's checked extent.
            unsafe {
                let x = *pa.get().offset(oa + j as isize * ia);
                let y = *pb.get().offset(ob + j as isize * ib);
                *slot = f(x, y);
            }
        }
    };
    if n >= PAR_THRESHOLD && inner > 0 {
        dst.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(r, d)| row(r, d));
    } else if inner > 0 {
        dst.chunks_mut(inner)
            .enumerate()
            .for_each(|(r, d)| row(r, d));
    }
    Ok(())
}

pub fn binary(op: OpId, a: &Tensor, b: &Tensor, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    if a.dtype() != b.dtype() {
        return Err(CoreError::new(
            ErrorKind::DtypeMismatch,
            format!(
                "{}: operands are {} and {}; cast one first",
                op.name(),
                a.dtype().name(),
                b.dtype().name()
            ),
        ));
    }
    let shape = broadcast_shape(op.name(), a.shape(), b.shape())?;
    let dtype = a.dtype();
    if matches!(dtype, DType::F16 | DType::BF16) {
        let (wa, wb) = (super::util::to_f32(a, ctx)?, super::util::to_f32(b, ctx)?);
        let wide = binary(op, &wa, &wb, ctx)?;
        return super::util::cast(&wide, dtype, ctx);
    }
    let out = ctx.alloc(dtype, &shape)?;
    macro_rules! float {
        ($t:ty) => {
            match op {
                OpId::Add => zip_broadcast::<$t>(a, b, &out, |x, y| x + y),
                OpId::Sub => zip_broadcast::<$t>(a, b, &out, |x, y| x - y),
                OpId::Mul => zip_broadcast::<$t>(a, b, &out, |x, y| x * y),
                _ => zip_broadcast::<$t>(a, b, &out, |x, y| x / y),
            }
        };
    }
    // Integer arithmetic wraps; division by zero gives 0 (as numpy does).
    macro_rules! int {
        ($t:ty) => {
            match op {
                OpId::Add => zip_broadcast::<$t>(a, b, &out, |x, y| x.wrapping_add(y)),
                OpId::Sub => zip_broadcast::<$t>(a, b, &out, |x, y| x.wrapping_sub(y)),
                OpId::Mul => zip_broadcast::<$t>(a, b, &out, |x, y| x.wrapping_mul(y)),
                _ => zip_broadcast::<$t>(
                    a,
                    b,
                    &out,
                    |x, y| if y == 0 { 0 } else { x.wrapping_div(y) },
                ),
            }
        };
    }
    match dtype {
        DType::F32 => float!(f32)?,
        DType::F64 => float!(f64)?,
        DType::I32 => int!(i32)?,
        DType::I64 => int!(i64)?,
        DType::U8 => int!(u8)?,
        DType::I8 => int!(i8)?,
        _ => return Err(dtype_err(op.name(), a, "numeric (not bool)")),
    }
    Ok(out)
}

/// Applies `f` to every element of contiguous `x` into a new tensor.
fn map<T: Element>(
    x: &Tensor,
    ctx: &OpCtx<'_>,
    f: impl Fn(T) -> T + Sync + Send,
) -> CoreResult<Tensor> {
    let x = x.contiguous_in(ctx.budget)?;
    let out = ctx.alloc(x.dtype(), x.shape())?;
    let (src, dst) = (x.as_slice::<T>()?, out.as_mut_slice::<T>()?);
    if src.len() >= PAR_THRESHOLD {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d = f(s)));
    } else {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = f(s));
    }
    Ok(out)
}

pub fn scale(x: &Tensor, s: f64, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    match x.dtype() {
        DType::I32 => map::<i32>(x, ctx, |v| (v as f64 * s) as i32),
        DType::I64 => map::<i64>(x, ctx, |v| (v as f64 * s) as i64),
        _ => float_op(
            "scale",
            x,
            ctx,
            |t| {
                let s = s as f32;
                map::<f32>(t, ctx, move |v| v * s)
            },
            |t| map::<f64>(t, ctx, move |v| v * s),
        ),
    }
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
}

/// `exp(x)` for `x <= 0` (NaN stays NaN), branch-free so that loops over it
/// vectorise: Cody-Waite range reduction, a degree-6 polynomial, the
/// exponent set by bit arithmetic; relative error under 2e-7; 0 below -87
/// (where f32 turns subnormal).
#[inline(always)]
pub(crate) fn exp_nonpositive_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5 * 2^23 rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let under = x < -87.0;
    let xc = if under { -87.0 } else { x };
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let e = p * f32::from_bits(((n as i32 + 127) << 23) as u32);
    if under { 0.0 } else { e }
}

/// Exact-form GELU, `0.5 x (1 + erf(x / sqrt 2))`, in f32 without a call per
/// element: erfc from Abramowitz & Stegun 7.1.26 (absolute error below
/// 1.5e-7) times `exp(-z^2)`, and for negative `x` the `0.5 x erfc(|z|)`
/// form, which keeps the small results of the left tail accurate instead
/// of cancelling `1 + erf`.
fn gelu_erf_f32(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let half_erfc = 0.5 * poly * exp_nonpositive_f32(-z * z);
    if x >= 0.0 {
        x * (1.0 - half_erfc)
    } else {
        x * half_erfc
    }
}

fn gelu_tanh_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI as f32 * (x + 0.044715 * x * x * x)).tanh())
}

/// `1 / (1 + e^-x)` with the exponential of `-|x|` only (no overflow, no
/// call per element): `e / (1 + e)` on the left.
fn sigmoid32(x: f32) -> f32 {
    let e = exp_nonpositive_f32(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 { s } else { e * s }
}

fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub fn unary(op: OpId, x: &Tensor, approximate: bool, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    if op == OpId::Relu {
        match x.dtype() {
            DType::I32 => return map::<i32>(x, ctx, |v| v.max(0)),
            DType::I64 => return map::<i64>(x, ctx, |v| v.max(0)),
            DType::I8 => return map::<i8>(x, ctx, |v| v.max(0)),
            DType::U8 => {
                return x
                    .contiguous_in(ctx.budget)
                    .and_then(|c| super::util::cast(&c, DType::U8, ctx));
            }
            _ => {}
        }
    }
    float_op(
        op.name(),
        x,
        ctx,
        |t| match op {
            // `max` would turn NaN into 0; keep NaN as numpy does.
            OpId::Relu => map::<f32>(t, ctx, |v| if v < 0.0 { 0.0 } else { v }),
            OpId::Gelu if approximate => map::<f32>(t, ctx, gelu_tanh_f32),
            OpId::Gelu => map::<f32>(t, ctx, gelu_erf_f32),
            OpId::Silu => map::<f32>(t, ctx, |v| v * sigmoid32(v)),
            OpId::Sigmoid => map::<f32>(t, ctx, sigmoid32),
            OpId::Tanh => map::<f32>(t, ctx, f32::tanh),
            _ => map::<f32>(t, ctx, f32::exp),
        },
        |t| match op {
            OpId::Relu => map::<f64>(t, ctx, |v| if v < 0.0 { 0.0 } else { v }),
            OpId::Gelu if approximate => map::<f64>(t, ctx, gelu_tanh),
            OpId::Gelu => map::<f64>(t, ctx, gelu_erf),
            OpId::Silu => map::<f64>(t, ctx, |v| v * sigmoid64(v)),
            OpId::Sigmoid => map::<f64>(t, ctx, sigmoid64),
            OpId::Tanh => map::<f64>(t, ctx, f64::tanh),
            _ => map::<f64>(t, ctx, f64::exp),
        },
    )
}
