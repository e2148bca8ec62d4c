//! Row-wise ops: softmax, layernorm/rmsnorm, and reductions (sum, mean, max,
//! argmax). Each moves the reduced axis last (a view, copied only if needed)
//! and works on contiguous rows in parallel.

use rayon::prelude::*;

use super::util::{PAR_THRESHOLD, dtype_err, float_op, to_f32};
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::kernels::{OpCtx, OpId};
use crate::tensor::{DType, Element, Tensor};

/// `x` with `axis` moved last, contiguous; and the permutation used.
fn axis_last(x: &Tensor, axis: usize, ctx: &OpCtx<'_>) -> CoreResult<(Tensor, Vec<usize>)> {
    let nd = x.ndim();
    let mut perm: Vec<usize> = (0..nd).filter(|&d| d != axis).collect();
    perm.push(axis);
    let moved = if axis + 1 == nd {
        x.clone()
    } else {
        x.permute(&perm)?
    };
    Ok((moved.contiguous_in(ctx.budget)?, perm))
}

fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// Applies `f(src_row, dst_row)` to every row of contiguous `x` into a new
/// tensor of the same shape.
fn rows_map<T: Element>(
    x: &Tensor,
    ctx: &OpCtx<'_>,
    f: impl Fn(&[T], &mut [T]) + Sync + Send,
) -> CoreResult<Tensor> {
    let out = ctx.alloc(x.dtype(), x.shape())?;
    let width = x.shape().last().copied().unwrap_or(1);
    if width == 0 || x.numel() == 0 {
        return Ok(out);
    }
    let (src, dst) = (x.as_slice::<T>()?, out.as_mut_slice::<T>()?);
    if src.len() >= PAR_THRESHOLD {
        dst.par_chunks_mut(width)
            .zip(src.par_chunks(width))
            .for_each(|(d, s)| f(s, d));
    } else {
        dst.chunks_mut(width)
            .zip(src.chunks(width))
            .for_each(|(d, s)| f(s, d));
    }
    Ok(out)
}

/// One softmax row per float type: subtract the max, exponentiate, normalise.
macro_rules! softmax_row {
    ($name:ident, $t:ty) => {
        fn $name(s: &[$t], d: &mut [$t]) {
            let max = s
                .iter()
                .fold(<$t>::NEG_INFINITY, |m, &v| if v > m { v } else { m });
            let mut sum: $t = 0.0;
            for (o, &v) in d.iter_mut().zip(s) {
                let e = (v - max).exp();
                *o = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            d.iter_mut().for_each(|o| *o *= inv);
        }
    };
}
softmax_row!(softmax_row64, f64);

/// The f32 row with a vectorisable exponential (`v - max <= 0`).
fn softmax_row32(s: &[f32], d: &mut [f32]) {
    let max = s
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for (o, &v) in d.iter_mut().zip(s) {
        *o = super::elementwise::exp_nonpositive_f32(v - max);
    }
    let sum: f32 = d.iter().sum();
    let inv = 1.0 / sum;
    d.iter_mut().for_each(|o| *o *= inv);
}

pub fn softmax(x: &Tensor, axis: usize, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    if x.ndim() == 0 {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            "softmax: needs at least one dimension",
        ));
    }
    let (rows, perm) = axis_last(x, axis, ctx)?;
    let out = float_op(
        "softmax",
        &rows,
        ctx,
        |t| rows_map::<f32>(t, ctx, softmax_row32),
        |t| rows_map::<f64>(t, ctx, softmax_row64),
    )?;
    if axis + 1 == x.ndim() {
        return Ok(out);
    }
    out.permute(&inverse(&perm))?.contiguous_in(ctx.budget)
}

/// A per-feature parameter (gamma/beta) as contiguous f32/f64 of `width`.
fn param(
    op: &str,
    p: Option<&Tensor>,
    width: usize,
    ctx: &OpCtx<'_>,
) -> CoreResult<Option<Tensor>> {
    let Some(p) = p else { return Ok(None) };
    if p.shape() != [width] {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            format!("{op}: gamma/beta must be [{width}], got {:?}", p.shape()),
        ));
    }
    Ok(Some(p.contiguous_in(ctx.budget)?))
}

/// layernorm (`rms == false`) or rmsnorm over the last axis.
pub fn norm(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
    rms: bool,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let op = if rms { "rmsnorm" } else { "layernorm" };
    if x.ndim() == 0 {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            format!("{op}: needs at least one dimension"),
        ));
    }
    for p in [gamma, beta].into_iter().flatten() {
        if p.dtype() != x.dtype() {
            return Err(CoreError::new(
                ErrorKind::DtypeMismatch,
                format!("{op}: gamma/beta must be {} like x", x.dtype().name()),
            ));
        }
    }
    let width = x.shape()[x.ndim() - 1];
    let xc = x.contiguous_in(ctx.budget)?;
    let (g, b) = (param(op, gamma, width, ctx)?, param(op, beta, width, ctx)?);
    match x.dtype() {
        DType::F32 => norm_typed::<f32>(&xc, g.as_ref(), b.as_ref(), eps, rms, ctx),
        DType::F64 => norm_typed::<f64>(&xc, g.as_ref(), b.as_ref(), eps, rms, ctx),
        DType::F16 | DType::BF16 => {
            let wide = |t: Option<Tensor>| t.map(|t| to_f32(&t, ctx)).transpose();
            let out = norm_typed::<f32>(
                &to_f32(&xc, ctx)?,
                wide(g)?.as_ref(),
                wide(b)?.as_ref(),
                eps,
                rms,
                ctx,
            )?;
            super::util::cast(&out, x.dtype(), ctx)
        }
        _ => Err(dtype_err(op, x, "floating-point")),
    }
}

trait Float: Element + num_like::Float {}
impl Float for f32 {}
impl Float for f64 {}

mod num_like {
    /// The little float arithmetic the norm kernels need, in f64.
    pub trait Float: Copy {
        fn to64(self) -> f64;
        fn from64(v: f64) -> Self;
    }
    impl Float for f32 {
        fn to64(self) -> f64 {
            self as f64
        }
        fn from64(v: f64) -> Self {
            v as f32
        }
    }
    impl Float for f64 {
        fn to64(self) -> f64 {
            self
        }
        fn from64(v: f64) -> Self {
            v
        }
    }
}

fn norm_typed<T: Float>(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
    rms: bool,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let g = gamma.map(|t| t.as_slice::<T>()).transpose()?;
    let b = beta.map(|t| t.as_slice::<T>()).transpose()?;
    rows_map::<T>(x, ctx, |s, d| {
        let n = s.len() as f64;
        // Statistics in f64: one pass for the mean, one for the variance.
        let mean = if rms {
            0.0
        } else {
            s.iter().map(|v| v.to64()).sum::<f64>() / n
        };
        let var = s
            .iter()
            .map(|v| (v.to64() - mean) * (v.to64() - mean))
            .sum::<f64>()
            / n;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..s.len() {
            let mut v = (s[i].to64() - mean) * inv;
            if let Some(g) = g {
                v *= g[i].to64();
            }
            if let Some(b) = b {
                v += b[i].to64();
            }
            d[i] = T::from64(v);
        }
    })
}

/// sum / mean / max / argmax over `axis` (all elements when `None`).
pub fn reduce(
    op: OpId,
    x: &Tensor,
    axis: Option<usize>,
    keepdim: bool,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let name = op.name();
    let (rows, width, mut out_shape) = match axis {
        Some(a) => {
            let (r, _) = axis_last(x, a, ctx)?;
            let mut shape = x.shape().to_vec();
            if keepdim {
                shape[a] = 1;
            } else {
                shape.remove(a);
            }
            (r, x.shape()[a], shape)
        }
        None => {
            let flat = x.reshape_in(&[x.numel()], ctx.budget)?;
            let shape = if keepdim {
                vec![1; x.ndim()]
            } else {
                Vec::new()
            };
            (flat, x.numel(), shape)
        }
    };
    if x.ndim() == 0 {
        out_shape = Vec::new();
    }
    let count: usize = out_shape.iter().product();
    if width == 0 && count > 0 && matches!(op, OpId::Max | OpId::Argmax) {
        return Err(CoreError::new(
            ErrorKind::InvalidArgs,
            format!("{name}: reduction over an empty axis"),
        ));
    }
    let dtype = x.dtype();
    if matches!(dtype, DType::F16 | DType::BF16) {
        let wide = to_f32(&rows, ctx)?;
        let out = reduce_rows(op, &wide, width, count, &out_shape, ctx)?;
        return if op == OpId::Argmax {
            Ok(out)
        } else {
            super::util::cast(&out, dtype, ctx)
        };
    }
    reduce_rows(op, &rows, width, count, &out_shape, ctx)
}

fn reduce_rows(
    op: OpId,
    rows: &Tensor,
    width: usize,
    count: usize,
    out_shape: &[usize],
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let dtype = rows.dtype();
    if op == OpId::Mean && !dtype.is_float() {
        return Err(dtype_err("mean", rows, "floating-point"));
    }
    if dtype == DType::Bool && op != OpId::Argmax && op != OpId::Max {
        return Err(dtype_err(op.name(), rows, "numeric (not bool)"));
    }
    let out_dtype = if op == OpId::Argmax {
        DType::I64
    } else {
        dtype
    };
    let out = ctx.alloc(out_dtype, out_shape)?;
    macro_rules! go {
        ($t:ty, $zero:expr, $add:expr, $gt:expr, $isnan:expr) => {{
            let src = rows.as_slice::<$t>()?;
            let row = |r: usize| -> &[$t] { &src[r * width..(r + 1) * width] };
            match op {
                OpId::Sum | OpId::Mean => {
                    let dst = out.as_mut_slice::<$t>()?;
                    dst.par_iter_mut()
                        .enumerate()
                        .with_min_len(64)
                        .for_each(|(r, o)| {
                            let s = row(r).iter().fold($zero, |acc, &v| $add(acc, v));
                            *o = s;
                        });
                }
                OpId::Max => {
                    let dst = out.as_mut_slice::<$t>()?;
                    dst.par_iter_mut()
                        .enumerate()
                        .with_min_len(64)
                        .for_each(|(r, o)| {
                            let xs = row(r);
                            let mut m = xs[0];
                            for &v in &xs[1..] {
                                if $isnan(m) {
                                    break;
                                }
                                if $isnan(v) || $gt(v, m) {
                                    m = v;
                                }
                            }
                            *o = m;
                        });
                }
                _ => {
                    let dst = out.as_mut_slice::<i64>()?;
                    dst.par_iter_mut()
                        .enumerate()
                        .with_min_len(64)
                        .for_each(|(r, o)| {
                            let xs = row(r);
                            let mut best = 0usize;
                            for i in 1..xs.len() {
                                if $isnan(xs[best]) {
                                    break;
                                }
                                if $isnan(xs[i]) || $gt(xs[i], xs[best]) {
                                    best = i;
                                }
                            }
                            *o = best as i64;
                        });
                }
            }
        }};
    }
    if count > 0 {
        match dtype {
            DType::F32 => {
                // f32 sums accumulate in f64 for accuracy, then round once.
                if matches!(op, OpId::Sum | OpId::Mean) {
                    let src = rows.as_slice::<f32>()?;
                    let dst = out.as_mut_slice::<f32>()?;
                    let div = if op == OpId::Mean { width as f64 } else { 1.0 };
                    dst.par_iter_mut()
                        .enumerate()
                        .with_min_len(64)
                        .for_each(|(r, o)| {
                            let s: f64 = src[r * width..(r + 1) * width]
                                .iter()
                                .map(|&v| v as f64)
                                .sum();
                            *o = (s / div) as f32;
                        });
                } else {
                    go!(
                        f32,
                        0f32,
                        |a: f32, b: f32| a + b,
                        |a: f32, b: f32| a > b,
                        |v: f32| v.is_nan()
                    )
                }
            }
            DType::F64 => {
                go!(
                    f64,
                    0f64,
                    |a: f64, b: f64| a + b,
                    |a: f64, b: f64| a > b,
                    |v: f64| v.is_nan()
                );
                if op == OpId::Mean {
                    out.as_mut_slice::<f64>()?
                        .iter_mut()
                        .for_each(|v| *v /= width as f64);
                }
            }
            DType::I32 => go!(
                i32,
                0i32,
                |a: i32, b: i32| a.wrapping_add(b),
                |a: i32, b: i32| a > b,
                |_v: i32| false
            ),
            DType::I64 => go!(
                i64,
                0i64,
                |a: i64, b: i64| a.wrapping_add(b),
                |a: i64, b: i64| a > b,
                |_v: i64| false
            ),
            DType::U8 | DType::Bool => go!(
                u8,
                0u8,
                |a: u8, b: u8| a.wrapping_add(b),
                |a: u8, b: u8| a > b,
                |_v: u8| false
            ),
            DType::I8 => go!(
                i8,
                0i8,
                |a: i8, b: i8| a.wrapping_add(b),
                |a: i8, b: i8| a > b,
                |_v: i8| false
            ),
            _ => return Err(dtype_err(op.name(), rows, "numeric")),
        }
    }
    Ok(out)
}
