//! What every wasmtime `Store` of ours carries.

use super::limits::{Limiter, Limits};
use super::wasi::WasiState;

/// Host state of one instance: its limiter and its WASI state.
#[derive(Debug)]
pub struct StoreData {
    pub limiter: Limiter,
    pub wasi: WasiState,
}

impl StoreData {
    pub fn new(limits: &Limits) -> Self {
        StoreData {
            limiter: Limiter::new(limits),
            wasi: WasiState::new(limits.max_output_bytes),
        }
    }

    /// Clears per-call state (output, limit flags) before a call.
    pub fn begin_call(&mut self) {
        self.limiter.reset_flags();
        self.wasi.reset_output();
    }
}
