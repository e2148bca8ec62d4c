//! An op's arguments read and checked once, in the form every backend
//! dispatches on: the order and defaults of each op's arguments (and the
//! errors for missing or extra ones) live here only.

use super::{ArgReader, OpId};
use crate::error::CoreResult;
use crate::tensor::{DType, Tensor};

/// What one op call asks for.
pub enum Call<'a> {
    /// add, sub, mul, div
    Binary {
        a: &'a Tensor,
        b: &'a Tensor,
    },
    Scale {
        x: &'a Tensor,
        factor: f64,
    },
    /// relu, gelu, silu, sigmoid, tanh, exp (`approximate`: gelu's tanh form)
    Unary {
        x: &'a Tensor,
        approximate: bool,
    },
    Cast {
        x: &'a Tensor,
        to: DType,
    },
    Matmul {
        a: &'a Tensor,
        b: &'a Tensor,
    },
    Linear {
        x: &'a Tensor,
        weight: &'a Tensor,
        bias: Option<&'a Tensor>,
    },
    Softmax {
        x: &'a Tensor,
        axis: usize,
    },
    /// layernorm (`rms` false) and rmsnorm (`beta` always None)
    Norm {
        x: &'a Tensor,
        gamma: Option<&'a Tensor>,
        beta: Option<&'a Tensor>,
        eps: f64,
        rms: bool,
    },
    /// sum, mean, max, argmax
    Reduce {
        x: &'a Tensor,
        axis: Option<usize>,
        keepdim: bool,
    },
    Transpose {
        x: &'a Tensor,
        perm: Vec<i64>,
    },
    Reshape {
        x: &'a Tensor,
        dims: Vec<i64>,
    },
    Embedding {
        table: &'a Tensor,
        ids: &'a Tensor,
    },
    Concat {
        tensors: Vec<&'a Tensor>,
        axis: i64,
    },
    Slice {
        x: &'a Tensor,
        axis: i64,
        start: i64,
        end: i64,
        step: i64,
    },
}

/// Reads `op`'s arguments from `r` (which keeps naming the op in errors).
pub fn parse<'a>(op: OpId, r: &mut ArgReader<'a>) -> CoreResult<Call<'a>> {
    let call = match op {
        OpId::Add | OpId::Sub | OpId::Mul | OpId::Div => Call::Binary {
            a: r.tensor("a")?,
            b: r.tensor("b")?,
        },
        OpId::Scale => Call::Scale {
            x: r.tensor("x")?,
            factor: r.float("factor")?,
        },
        OpId::Relu | OpId::Gelu | OpId::Silu | OpId::Sigmoid | OpId::Tanh | OpId::Exp => {
            let x = r.tensor("x")?;
            let approximate = op == OpId::Gelu && r.opt_int().unwrap_or(0) != 0;
            Call::Unary { x, approximate }
        }
        OpId::Cast => {
            let x = r.tensor("x")?;
            let code = r.int("dtype code")?;
            r.finish()?;
            let to = i32::try_from(code)
                .ok()
                .and_then(DType::from_code)
                .ok_or_else(|| r.err(format!("{code} is not a dtype code (0..=8)")))?;
            return Ok(Call::Cast { x, to });
        }
        OpId::Matmul => Call::Matmul {
            a: r.tensor("a")?,
            b: r.tensor("b")?,
        },
        OpId::Linear => Call::Linear {
            x: r.tensor("x")?,
            weight: r.tensor("weight")?,
            bias: r.opt_tensor(),
        },
        OpId::Softmax => {
            let x = r.tensor("x")?;
            let axis = r.opt_int().unwrap_or(-1);
            r.finish()?;
            let axis = r.axis(axis, x.ndim())?;
            return Ok(Call::Softmax { x, axis });
        }
        OpId::Layernorm => Call::Norm {
            x: r.tensor("x")?,
            gamma: r.opt_tensor(),
            beta: r.opt_tensor(),
            eps: r.opt_float().unwrap_or(1e-5),
            rms: false,
        },
        OpId::Rmsnorm => Call::Norm {
            x: r.tensor("x")?,
            gamma: r.opt_tensor(),
            beta: None,
            eps: r.opt_float().unwrap_or(1e-6),
            rms: true,
        },
        OpId::Sum | OpId::Mean | OpId::Max | OpId::Argmax => {
            let x = r.tensor("x")?;
            let axis = r.opt_int();
            let keepdim = r.opt_int().unwrap_or(0) != 0;
            r.finish()?;
            let axis = match axis {
                Some(a) => Some(r.axis(a, x.ndim())?),
                None => None,
            };
            return Ok(Call::Reduce { x, axis, keepdim });
        }
        OpId::Transpose => Call::Transpose {
            x: r.tensor("x")?,
            perm: r.rest_ints(),
        },
        OpId::Reshape => Call::Reshape {
            x: r.tensor("x")?,
            dims: r.rest_ints(),
        },
        OpId::Embedding => Call::Embedding {
            table: r.tensor("table")?,
            ids: r.tensor("ids")?,
        },
        OpId::Concat => Call::Concat {
            tensors: r.rest_tensors(),
            axis: r.opt_int().unwrap_or(0),
        },
        OpId::Slice => Call::Slice {
            x: r.tensor("x")?,
            axis: r.int("axis")?,
            start: r.int("start")?,
            end: r.int("end")?,
            step: r.opt_int().unwrap_or(1),
        },
    };
    r.finish()?;
    Ok(call)
}
