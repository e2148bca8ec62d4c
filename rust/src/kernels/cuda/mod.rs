//! Ops on a CUDA device.
//!
//! With the fake backend (`TENSORCAST_CUDA_BACKEND=fake`) an op runs on the
//! device's stream, in order with the copies queued before it, as the CPU
//! kernels over the fake device's memory, with outputs allocated from the
//! device's pool: the placement, allocation, ordering and copy paths are the
//! real backend's, only the arithmetic is the CPU's. On a real device
//! (`TENSORCAST_CUDA_BACKEND=cuda`) ops run as the NVRTC-compiled CUDA C
//! kernels of `sources` and cuBLAS (`real`).

pub mod nvrtc;
pub mod real;
pub mod sources;

use std::sync::Arc;

use super::{Arg, OpCtx, OpId, run_cpu};
use crate::device;
use crate::error::CoreResult;
use crate::tensor::{Device, Tensor};

pub fn run(n: u32, op: OpId, args: &[Arg], ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    if device::is_real() {
        return real::run(n, op, args, ctx);
    }
    let stream = device::stream(n)?;
    let owned: Vec<Arg> = args.to_vec();
    let budget: Option<Arc<crate::tensor::Budget>> = ctx.budget.cloned();
    let out = stream.run_sync(move || {
        let ctx = OpCtx {
            budget: budget.as_ref(),
            device: Device::Cuda(n),
        };
        run_cpu(op, &owned, &ctx)
    })?;
    // A kernel that built its output on the host (not through `ctx.alloc`)
    // still answers on the device.
    if out.device() == Device::Cuda(n) {
        Ok(out)
    } else {
        device::to(&out, Device::Cuda(n), ctx.budget)
    }
}
