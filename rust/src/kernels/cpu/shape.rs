//! Shape ops: transpose, reshape and slice return views when they can;
//! embedding and concat copy.

use super::util::SendPtr;
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::kernels::{ArgReader, OpCtx};
use crate::tensor::{DType, Tensor};

pub fn transpose(r: &ArgReader<'_>, x: &Tensor, perm: &[i64]) -> CoreResult<Tensor> {
    let nd = x.ndim();
    let perm: Vec<usize> = if perm.is_empty() {
        (0..nd).rev().collect()
    } else {
        perm.iter()
            .map(|&p| r.axis(p, nd))
            .collect::<CoreResult<_>>()?
    };
    x.permute(&perm)
}

pub fn reshape(r: &ArgReader<'_>, x: &Tensor, dims: &[i64], ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    let mut shape = Vec::with_capacity(dims.len());
    let mut infer = None;
    for (i, &d) in dims.iter().enumerate() {
        if d == -1 {
            if infer.replace(i).is_some() {
                return Err(r.err("at most one dimension may be -1"));
            }
            shape.push(1);
        } else if d < 0 {
            return Err(r.err(format!("dimension {d} is negative")));
        } else {
            shape.push(d as usize);
        }
    }
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || !x.numel().is_multiple_of(known) {
            return Err(CoreError::new(
                ErrorKind::ShapeMismatch,
                format!(
                    "reshape: cannot infer -1 reshaping {:?} to {dims:?}",
                    x.shape()
                ),
            ));
        }
        shape[i] = x.numel() / known;
    }
    x.reshape_in(&shape, ctx.budget)
}

pub fn slice(
    r: &ArgReader<'_>,
    x: &Tensor,
    axis: i64,
    start: i64,
    end: i64,
    step: i64,
) -> CoreResult<Tensor> {
    let axis = r.axis(axis, x.ndim())?;
    if step <= 0 {
        return Err(r.err(format!("step must be positive, got {step}")));
    }
    // Python semantics: negative indices count from the end; out-of-range clamps.
    let n = x.shape()[axis] as i64;
    let clamp = |i: i64| -> usize { (if i < 0 { i + n } else { i }).clamp(0, n) as usize };
    let (s, e) = (clamp(start), clamp(end));
    x.slice_axis(axis, s, e.max(s), step as usize)
}

/// `(rows, dim)` of an embedding table, after every backend's checks: a
/// 2-D table and i32 or i64 ids.
pub(crate) fn embedding_dims(table: &Tensor, ids: &Tensor) -> CoreResult<(usize, usize)> {
    if table.ndim() != 2 {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            format!(
                "embedding: table must be [rows, dim], got {:?}",
                table.shape()
            ),
        ));
    }
    if !matches!(ids.dtype(), DType::I32 | DType::I64) {
        return Err(CoreError::new(
            ErrorKind::DtypeMismatch,
            format!(
                "embedding: ids must be i32 or i64, got {}",
                ids.dtype().name()
            ),
        ));
    }
    Ok((table.shape()[0], table.shape()[1]))
}

pub fn embedding(
    r: &ArgReader<'_>,
    table: &Tensor,
    ids: &Tensor,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let (rows, dim) = embedding_dims(table, ids)?;
    let idx: Vec<i64> = match ids.dtype() {
        DType::I32 => ids
            .contiguous_in(ctx.budget)?
            .as_slice::<i32>()?
            .iter()
            .map(|&v| v as i64)
            .collect(),
        _ => ids.contiguous_in(ctx.budget)?.as_slice::<i64>()?.to_vec(),
    };
    if let Some(bad) = idx.iter().find(|&&i| i < 0 || i as usize >= rows) {
        return Err(r.err(format!(
            "id {bad} is out of range for a table of {rows} rows"
        )));
    }
    let mut shape = ids.shape().to_vec();
    shape.push(dim);
    let out = ctx.alloc(table.dtype(), &shape)?;
    let es = table.dtype().size();
    let t = table.contiguous_in(ctx.budget)?;
    let dst = out.data_mut_ptr()?;
    for (o, &i) in idx.iter().enumerate() {
        // SAFETY: i < rows (checked), o < ids.numel(); rows are dim*es bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                t.data_ptr().add(i as usize * dim * es),
                dst.add(o * dim * es),
                dim * es,
            )
        };
    }
    Ok(out)
}

/// The checked axis and output shape of `concat` (every backend's checks).
pub(crate) fn concat_shape(
    r: &ArgReader<'_>,
    tensors: &[&Tensor],
    axis: i64,
) -> CoreResult<(usize, Vec<usize>)> {
    let Some(first) = tensors.first() else {
        return Err(r.err("needs at least one tensor"));
    };
    let nd = first.ndim();
    if nd == 0 {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            "concat: tensors must have ≥ 1 dimension",
        ));
    }
    let axis = r.axis(axis, nd)?;
    let mut total = 0usize;
    for t in tensors {
        if t.dtype() != first.dtype() {
            return Err(CoreError::new(
                ErrorKind::DtypeMismatch,
                format!(
                    "concat: {} and {} tensors cannot be joined",
                    first.dtype().name(),
                    t.dtype().name()
                ),
            ));
        }
        let same = t.ndim() == nd && (0..nd).all(|d| d == axis || t.shape()[d] == first.shape()[d]);
        if !same {
            return Err(CoreError::new(
                ErrorKind::ShapeMismatch,
                format!(
                    "concat: {:?} does not match {:?} outside axis {axis}",
                    t.shape(),
                    first.shape()
                ),
            ));
        }
        total += t.shape()[axis];
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = total;
    Ok((axis, shape))
}

pub fn concat(
    r: &ArgReader<'_>,
    tensors: &[&Tensor],
    axis: i64,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let (axis, shape) = concat_shape(r, tensors, axis)?;
    let (first, total) = (tensors[0], shape[axis]);
    let out = ctx.alloc(first.dtype(), &shape)?;
    let es = first.dtype().size();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * es;
    let dst = SendPtr(out.data_mut_ptr()?);
    let mut at = 0usize;
    for t in tensors {
        let c = t.contiguous_in(ctx.budget)?;
        let block = t.shape()[axis] * inner;
        for o in 0..outer {
            // SAFETY: block-sized copies into disjoint regions of `out`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    c.data_ptr().add(o * block),
                    dst.get().add(o * total * inner + at),
                    block,
                )
            };
        }
        at += block;
    }
    Ok(out)
}
