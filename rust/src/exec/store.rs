//! What every wasmtime `Store` of ours carries.

use std::sync::Arc;

use super::limits::{Limiter, Limits};
use super::wasi::WasiState;
use crate::abi::{AbiState, Bindings};
use crate::tensor::Tensor;

/// Host state of one instance: its limiter, WASI state and tensor ABI state.
#[derive(Debug)]
pub struct StoreData {
    pub limiter: Limiter,
    pub wasi: WasiState,
    pub abi: AbiState,
}

impl StoreData {
    pub fn new(limits: &Limits, bindings: Arc<Bindings>, device: crate::tensor::Device) -> Self {
        let limiter = Limiter::new(limits);
        let budget = limiter.budget.clone();
        let mut abi = AbiState::new(bindings, budget);
        abi.device = device;
        StoreData {
            limiter,
            wasi: WasiState::new(limits.max_output_bytes),
            abi,
        }
    }

    /// Clears per-call state (output, limit flags, handles) and sets the inputs.
    pub fn begin_call(&mut self, inputs: &[(String, Tensor)]) {
        self.limiter.reset_flags();
        self.wasi.reset_output();
        self.abi.reset();
        for (name, t) in inputs {
            // The caller's memory: guests read it, never write it.
            self.abi.inputs.insert(name.clone(), t.read_only_view());
        }
    }

    /// Ends a call: the named outputs, and every handle released.
    pub fn end_call(&mut self) -> Vec<(String, Tensor)> {
        let outputs = std::mem::take(&mut self.abi.outputs);
        self.abi.reset();
        outputs
    }
}
