//! The op registry and its backends.
//!
//! Every op of the guest ABI v1 is named here once (`OpId`); a backend runs
//! ops on one kind of device behind the `Backend` trait. The CPU backend is
//! always present; the CUDA backend joins beside it. `dispatch` is the one
//! entry point for guests (through the ABI) and for Python (`tensorwasm_tc.ops`),
//! and it counts every dispatch per (op, device) for metrics.

pub mod args;
pub mod call;
pub mod cpu;
pub mod cuda;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use args::{Arg, ArgReader};

use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::tensor::{Budget, Device, Tensor};

macro_rules! ops {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// An operation of the ABI. Names are part of ABI v1 and never change meaning.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum OpId { $($variant),* }

        impl OpId {
            pub const ALL: &'static [OpId] = &[$(OpId::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(OpId::$variant => $name),* }
            }

            pub fn from_name(name: &str) -> Option<OpId> {
                match name { $($name => Some(OpId::$variant),)* _ => None }
            }
        }
    };
}

ops! {
    Matmul => "matmul",
    Linear => "linear",
    Add => "add",
    Sub => "sub",
    Mul => "mul",
    Div => "div",
    Scale => "scale",
    Relu => "relu",
    Gelu => "gelu",
    Silu => "silu",
    Sigmoid => "sigmoid",
    Tanh => "tanh",
    Exp => "exp",
    Softmax => "softmax",
    Layernorm => "layernorm",
    Rmsnorm => "rmsnorm",
    Sum => "sum",
    Mean => "mean",
    Max => "max",
    Argmax => "argmax",
    Transpose => "transpose",
    Reshape => "reshape",
    Cast => "cast",
    Embedding => "embedding",
    Concat => "concat",
    Slice => "slice",
}

/// Per-dispatch context: where output memory is charged.
#[derive(Default, Clone, Copy)]
pub struct OpCtx<'a> {
    pub budget: Option<&'a Arc<Budget>>,
    /// Where outputs are allocated (set by the dispatcher).
    pub device: Device,
}

impl<'a> OpCtx<'a> {
    /// An output tensor charged to the budget, on the op's device. Its
    /// contents are unspecified: every kernel writes each element of its
    /// output before returning.
    pub fn alloc(&self, dtype: crate::tensor::DType, shape: &[usize]) -> CoreResult<Tensor> {
        match self.device {
            Device::Cpu => Tensor::uninit_in(dtype, shape, self.budget),
            Device::Cuda(n) => crate::device::alloc_tensor(n, dtype, shape, self.budget),
        }
    }
}

/// Runs ops on one kind of device.
pub trait Backend: Send + Sync {
    fn device(&self) -> Device;
    fn run(&self, op: OpId, args: &[Arg], ctx: &OpCtx<'_>) -> CoreResult<Tensor>;
}

const DEVICES: usize = 2;
static COUNTS: [[AtomicU64; DEVICES]; 64] = [const { [const { AtomicU64::new(0) }; DEVICES] }; 64];

fn device_slot(d: Device) -> usize {
    match d {
        Device::Cpu => 0,
        Device::Cuda(_) => 1,
    }
}

/// The op called `name`, or `unknown_op` listing the ops of ABI v1.
pub fn lookup(name: &str) -> CoreResult<OpId> {
    OpId::from_name(name).ok_or_else(|| {
        let all: Vec<&str> = OpId::ALL.iter().map(|o| o.name()).collect();
        CoreError::new(
            ErrorKind::UnknownOp,
            format!("unknown op '{name}'; ops of ABI v1: {}", all.join(", ")),
        )
    })
}

/// Looks `name` up and runs it on the CPU backend.
pub fn dispatch(name: &str, args: &[Arg], ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    run(lookup(name)?, args, ctx)
}

/// The device an op runs on: where its tensor arguments are (all on one).
fn placement(op: OpId, args: &[Arg]) -> CoreResult<Device> {
    let mut found: Option<Device> = None;
    for (i, a) in args.iter().enumerate() {
        if let Arg::Tensor(t) = a {
            let d = t.device();
            match found {
                None => found = Some(d),
                Some(f) if f != d => {
                    return Err(CoreError::invalid_args(format!(
                        "{}: argument {i} is on {d} and an earlier one on {f}; move them to one \
                         device with .to()",
                        op.name()
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(found.unwrap_or(Device::Cpu))
}

pub fn run(op: OpId, args: &[Arg], ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    match placement(op, args)? {
        Device::Cpu => run_cpu(op, args, ctx),
        Device::Cuda(n) => {
            COUNTS[op as usize][device_slot(Device::Cuda(n))].fetch_add(1, Ordering::Relaxed);
            cuda::run(n, op, args, ctx)
        }
    }
}

/// Runs `op` with the CPU kernels (on host memory; the fake device's
/// stream also runs them on its memory).
pub(crate) fn run_cpu(op: OpId, args: &[Arg], ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    let backend = &cpu::CpuBackend;
    if ctx.device == Device::Cpu {
        COUNTS[op as usize][device_slot(backend.device())].fetch_add(1, Ordering::Relaxed);
    }
    // A kernel bug must cost the caller one error, never its process (or a
    // guest's whole invoke): panics become `internal` errors.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.run(op, args, ctx))) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(CoreError::internal(format!(
                "{}: kernel failed: {what}",
                op.name()
            )))
        }
    }
}

/// `(op, device, count)` for every (op, device) dispatched at least once.
pub fn dispatch_counts() -> Vec<(&'static str, &'static str, u64)> {
    let mut out = Vec::new();
    for &op in OpId::ALL {
        for (slot, dev) in ["cpu", "cuda"].iter().enumerate() {
            let n = COUNTS[op as usize][slot].load(Ordering::Relaxed);
            if n > 0 {
                out.push((op.name(), *dev, n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_op_names_are_pinned() {
        let names: Vec<&str> = OpId::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(
            names.join(" "),
            "matmul linear add sub mul div scale relu gelu silu sigmoid tanh exp softmax layernorm \
             rmsnorm sum mean max argmax transpose reshape cast embedding concat slice"
        );
        for &op in OpId::ALL {
            assert_eq!(OpId::from_name(op.name()), Some(op));
        }
        assert!(OpId::ALL.len() <= 64);
    }
}
