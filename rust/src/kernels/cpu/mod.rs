//! The CPU backend: multithreaded (rayon) and vectorisable kernels for every
//! op of ABI v1. f16/bf16 compute in f32 and store narrow.

mod elementwise;
mod linalg;
mod reduce;
mod sgemm;
pub(crate) mod shape;
mod skinny;
pub(crate) mod util;

use super::call::{Call, parse};
use super::{Arg, ArgReader, Backend, OpCtx, OpId};
use crate::error::CoreResult;
use crate::tensor::{Device, Tensor};

pub use util::cast;

/// Runs every op on the host.
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn run(&self, op: OpId, args: &[Arg], ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
        let mut r = ArgReader::new(op.name(), args);
        let out = match parse(op, &mut r)? {
            Call::Binary { a, b } => elementwise::binary(op, a, b, ctx)?,
            Call::Scale { x, factor } => elementwise::scale(x, factor, ctx)?,
            Call::Unary { x, approximate } => elementwise::unary(op, x, approximate, ctx)?,
            Call::Cast { x, to } => util::cast(x, to, ctx)?,
            Call::Matmul { a, b } => linalg::matmul(a, b, ctx)?,
            Call::Linear { x, weight, bias } => linalg::linear(x, weight, bias, ctx)?,
            Call::Softmax { x, axis } => reduce::softmax(x, axis, ctx)?,
            Call::Norm {
                x,
                gamma,
                beta,
                eps,
                rms,
            } => reduce::norm(x, gamma, beta, eps, rms, ctx)?,
            Call::Reduce { x, axis, keepdim } => reduce::reduce(op, x, axis, keepdim, ctx)?,
            Call::Transpose { x, perm } => shape::transpose(&r, x, &perm)?,
            Call::Reshape { x, dims } => shape::reshape(&r, x, &dims, ctx)?,
            Call::Embedding { table, ids } => shape::embedding(&r, table, ids, ctx)?,
            Call::Concat { tensors, axis } => shape::concat(&r, &tensors, axis, ctx)?,
            Call::Slice {
                x,
                axis,
                start,
                end,
                step,
            } => shape::slice(&r, x, axis, start, end, step)?,
        };
        Ok(out)
    }
}
