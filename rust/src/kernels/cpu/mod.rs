//! The CPU backend: multithreaded (rayon) and vectorisable kernels for every
//! op of ABI v1. f16/bf16 compute in f32 and store narrow.

mod elementwise;
mod linalg;
mod reduce;
mod sgemm;
mod shape;
mod skinny;
pub(crate) mod util;

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
        let out = match op {
            OpId::Add | OpId::Sub | OpId::Mul | OpId::Div => {
                let a = r.tensor("a")?;
                let b = r.tensor("b")?;
                r.finish()?;
                elementwise::binary(op, a, b, ctx)?
            }
            OpId::Scale => {
                let x = r.tensor("x")?;
                let s = r.float("factor")?;
                r.finish()?;
                elementwise::scale(x, s, ctx)?
            }
            OpId::Relu | OpId::Gelu | OpId::Silu | OpId::Sigmoid | OpId::Tanh | OpId::Exp => {
                let x = r.tensor("x")?;
                let approximate = if op == OpId::Gelu {
                    r.opt_int().unwrap_or(0) != 0
                } else {
                    false
                };
                r.finish()?;
                elementwise::unary(op, x, approximate, ctx)?
            }
            OpId::Cast => {
                let x = r.tensor("x")?;
                let code = r.int("dtype code")?;
                r.finish()?;
                let dtype = i32::try_from(code)
                    .ok()
                    .and_then(crate::tensor::DType::from_code)
                    .ok_or_else(|| r.err(format!("{code} is not a dtype code (0..=8)")))?;
                util::cast(x, dtype, ctx)?
            }
            OpId::Matmul => {
                let a = r.tensor("a")?;
                let b = r.tensor("b")?;
                r.finish()?;
                linalg::matmul(a, b, ctx)?
            }
            OpId::Linear => {
                let x = r.tensor("x")?;
                let w = r.tensor("weight")?;
                let bias = r.opt_tensor();
                r.finish()?;
                linalg::linear(x, w, bias, ctx)?
            }
            OpId::Softmax => {
                let x = r.tensor("x")?;
                let axis = r.opt_int().unwrap_or(-1);
                r.finish()?;
                let axis = r.axis(axis, x.ndim())?;
                reduce::softmax(x, axis, ctx)?
            }
            OpId::Layernorm => {
                let x = r.tensor("x")?;
                let gamma = r.opt_tensor();
                let beta = r.opt_tensor();
                let eps = r.opt_float().unwrap_or(1e-5);
                r.finish()?;
                reduce::norm(x, gamma, beta, eps, false, ctx)?
            }
            OpId::Rmsnorm => {
                let x = r.tensor("x")?;
                let gamma = r.opt_tensor();
                let eps = r.opt_float().unwrap_or(1e-6);
                r.finish()?;
                reduce::norm(x, gamma, None, eps, true, ctx)?
            }
            OpId::Sum | OpId::Mean | OpId::Max | OpId::Argmax => {
                let x = r.tensor("x")?;
                let axis = r.opt_int();
                let keepdim = r.opt_int().unwrap_or(0) != 0;
                r.finish()?;
                let axis = match axis {
                    Some(a) => Some(r.axis(a, x.ndim())?),
                    None => None,
                };
                reduce::reduce(op, x, axis, keepdim, ctx)?
            }
            OpId::Transpose => {
                let x = r.tensor("x")?;
                let perm = r.rest_ints();
                r.finish()?;
                shape::transpose(&r, x, &perm)?
            }
            OpId::Reshape => {
                let x = r.tensor("x")?;
                let dims = r.rest_ints();
                r.finish()?;
                shape::reshape(&r, x, &dims, ctx)?
            }
            OpId::Embedding => {
                let table = r.tensor("table")?;
                let ids = r.tensor("ids")?;
                r.finish()?;
                shape::embedding(&r, table, ids, ctx)?
            }
            OpId::Concat => {
                let tensors = r.rest_tensors();
                let axis = r.opt_int().unwrap_or(0);
                r.finish()?;
                shape::concat(&r, &tensors, axis, ctx)?
            }
            OpId::Slice => {
                let x = r.tensor("x")?;
                let axis = r.int("axis")?;
                let start = r.int("start")?;
                let end = r.int("end")?;
                let step = r.opt_int().unwrap_or(1);
                r.finish()?;
                shape::slice(&r, x, axis, start, end, step)?
            }
        };
        Ok(out)
    }
}
