//! Persistent instances: one store kept alive across calls.

use std::time::Instant;

use wasmtime::{Instance, Store};

use super::function::{Function, InvokeOutcome, call, deadline_ticks};
use super::limits::validate_deadline;
use super::store::StoreData;
use super::values::{ArgValue, lower_args};
use crate::error::{CoreError, CoreResult};
use crate::tensor::Tensor;

/// A live sandbox whose memory and globals survive between invokes.
pub struct PersistentInstance {
    pub function: Function,
    store: Store<StoreData>,
    instance: Instance,
}

impl PersistentInstance {
    pub fn new(function: &Function) -> CoreResult<Self> {
        let mut store = function.new_store();
        let instance = function.compiled.instantiate(&mut store)?;
        Ok(PersistentInstance {
            function: function.clone(),
            store,
            instance,
        })
    }

    /// An instance over a store and instance built elsewhere (a restore).
    pub fn from_parts(function: Function, store: Store<StoreData>, instance: Instance) -> Self {
        PersistentInstance {
            function,
            store,
            instance,
        }
    }

    /// The store and the instance, for capture.
    pub fn parts_mut(&mut self) -> (&mut Store<StoreData>, &Instance) {
        (&mut self.store, &self.instance)
    }

    /// Calls `export`; state left by earlier calls is visible. After a trap
    /// the instance stays usable, holding whatever state the guest left.
    pub fn invoke(
        &mut self,
        export: Option<&str>,
        args: &[ArgValue],
        inputs: &[(String, Tensor)],
        deadline_ms: Option<u64>,
    ) -> CoreResult<InvokeOutcome> {
        let sig = self.function.compiled.resolve_export(export)?;
        let params = lower_args(&sig.name, &sig.params, args)?;
        let deadline_ms = deadline_ms.unwrap_or(self.function.limits.deadline_ms);
        validate_deadline(deadline_ms)?;
        let started = Instant::now();
        self.store.data_mut().begin_call(inputs);
        self.store.set_epoch_deadline(deadline_ticks(deadline_ms));
        let func = self
            .instance
            .get_module_export(&mut self.store, sig.index())
            .and_then(|e| e.into_func())
            .ok_or_else(|| CoreError::internal("export vanished from a live instance"))?;
        call(&mut self.store, &func, sig, &params, deadline_ms, started)
    }
}
