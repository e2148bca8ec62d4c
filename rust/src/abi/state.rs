//! Per-instance ABI state: the handle table, inputs, bound tensors, outputs,
//! the tensor-memory budget and the last error message.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::codes::AbiCode;
use crate::device;
use crate::error::{CoreError, CoreResult};
use crate::tensor::{Budget, DType, Device, Tensor};

/// A tensor's identity for device copies: its memory and layout.
type TensorKey = (usize, usize, DType, Vec<usize>, Vec<isize>);

fn key_of(t: &Tensor) -> TensorKey {
    (
        t.data_ptr() as usize,
        t.nbytes(),
        t.dtype(),
        t.shape().to_vec(),
        t.strides().to_vec(),
    )
}

/// Live handles per invoke, at most: a guest that leaks handles gets
/// ResourceExhausted long before the host feels it.
pub const MAX_HANDLES: usize = 16_384;
/// Tensors one instance may keep across invokes (`tensor_keep`).
pub const MAX_KEPT: usize = 1024;
/// Longest message kept for `last_error`.
const MAX_ERROR_BYTES: usize = 4096;

/// Read-only tensors bound to a function, by `alias/name` (and by bare
/// `name` where that is unambiguous).
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    by_name: HashMap<String, Tensor>,
    /// Identities of the bound tensors (to recognise their handles).
    keys: HashSet<TensorKey>,
    /// One copy per (bound tensor, device), made on first use and shared by
    /// every instance of the function.
    device_copies: Arc<Mutex<HashMap<(TensorKey, Device), Tensor>>>,
}

impl Bindings {
    /// Builds from `{alias: {name: tensor}}`; every tensor becomes read-only.
    pub fn new(groups: Vec<(String, Vec<(String, Tensor)>)>) -> CoreResult<Self> {
        let mut by_name = HashMap::new();
        let mut bare: HashMap<String, Option<Tensor>> = HashMap::new();
        for (alias, tensors) in groups {
            if alias.is_empty() || alias.contains('/') {
                return Err(CoreError::invalid_args(format!(
                    "binding alias '{alias}' must be non-empty and contain no '/'"
                )));
            }
            for (name, t) in tensors {
                if name.is_empty() {
                    return Err(CoreError::invalid_args(format!(
                        "binding '{alias}' has a tensor with an empty name"
                    )));
                }
                let t = t.read_only_view();
                by_name.insert(format!("{alias}/{name}"), t.clone());
                bare.entry(name)
                    .and_modify(|slot| *slot = None)
                    .or_insert(Some(t));
            }
        }
        for (name, t) in bare {
            if let Some(t) = t {
                by_name.entry(name).or_insert(t);
            }
        }
        let keys = by_name.values().map(key_of).collect();
        Ok(Bindings {
            by_name,
            keys,
            device_copies: Arc::default(),
        })
    }

    /// The copy on `dev` of bound tensor `t` (made once), or None when `t`
    /// is not one of this function's bound tensors.
    pub fn device_copy(&self, t: &Tensor, dev: Device) -> CoreResult<Option<Tensor>> {
        let key = key_of(t);
        if !self.keys.contains(&key) {
            return Ok(None);
        }
        let mut copies = self.device_copies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = copies.get(&(key.clone(), dev)) {
            return Ok(Some(d.clone()));
        }
        let d = device::to(t, dev, None)?.read_only_view();
        copies.insert((key, dev), d.clone());
        Ok(Some(d))
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// Handles are `generation << 15 | (slot + 1)`. A slot's generation moves on
/// every time its tensor is dropped (explicitly or at the end of an invoke),
/// so a stale handle is refused instead of naming the slot's next tensor;
/// a value can only repeat after 65 536 reuses of one slot.
const SLOT_BITS: u32 = 15;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
/// 16 bits of generation above 15 bits of slot keep every handle a positive i32.
const GEN_MASK: u32 = 0xffff;
const _: () = assert!(MAX_HANDLES < (1 << SLOT_BITS));

#[derive(Debug)]
struct Slot {
    generation: u32,
    tensor: Option<Tensor>,
}

/// A tensor an instance keeps across invokes under a name.
#[derive(Debug, Clone)]
pub struct Kept {
    pub tensor: Tensor,
    /// Shared with other instances (it came from a pre-initialised image):
    /// the instance gets its own copy the first time it asks for it.
    pub shared: bool,
}

#[derive(Debug)]
pub struct AbiState {
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    pub last_error: String,
    pub inputs: HashMap<String, Tensor>,
    pub bindings: Arc<Bindings>,
    pub outputs: Vec<(String, Tensor)>,
    pub budget: Arc<Budget>,
    /// Tensors kept across invokes (`tensor_keep`), by name; part of snapshots.
    pub kept: BTreeMap<String, Kept>,
    /// Where ops run (`Runtime(device=...)`).
    pub device: Device,
    /// Read-only host tensors of this invoke (inputs) already copied to the
    /// device, with the host tensor pinned so its address stays its own.
    device_cache: HashMap<TensorKey, (Tensor, Tensor)>,
    /// Modules the guest loaded with `cuda_load` (handle = index + 1);
    /// they live as long as the instance (not in snapshots).
    pub cuda_modules: Vec<Arc<crate::device::cuda::UserModule>>,
}

impl AbiState {
    pub fn new(bindings: Arc<Bindings>, budget: Arc<Budget>) -> Self {
        AbiState {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            last_error: String::new(),
            inputs: HashMap::new(),
            bindings,
            outputs: Vec::new(),
            budget,
            kept: BTreeMap::new(),
            device: Device::Cpu,
            device_cache: HashMap::new(),
            cuda_modules: Vec::new(),
        }
    }

    /// `t` (the tensor of handle `h`) where this instance's ops run: itself
    /// on the CPU or when already there; else a copy on the device, made
    /// once per bound tensor and device (shared by the function's
    /// instances), once per invoke for inputs, and in place of the handle's
    /// tensor for the guest's own tensors.
    pub fn on_device(&mut self, h: i32, t: Tensor) -> CoreResult<Tensor> {
        let dev = self.device;
        if dev == Device::Cpu || t.device() == dev {
            return Ok(t);
        }
        if t.is_read_only() {
            if let Some(d) = self.bindings.device_copy(&t, dev)? {
                return Ok(d);
            }
            let key = key_of(&t);
            if let Some((_, d)) = self.device_cache.get(&key) {
                return Ok(d.clone());
            }
            let d = device::to(&t, dev, Some(&self.budget))?.read_only_view();
            self.device_cache.insert(key, (t, d.clone()));
            return Ok(d);
        }
        let d = device::to(&t, dev, Some(&self.budget))?;
        if let Some(i) = self.slot_of(h) {
            self.slots[i].tensor = Some(d.clone());
        }
        Ok(d)
    }

    /// Drops every handle, input and output (end of an invoke); kept
    /// tensors stay. Slots are
    /// kept, with new generations, so handles of this invoke stay invalid.
    pub fn reset(&mut self) {
        self.free.clear();
        for (i, slot) in self.slots.iter_mut().enumerate().rev() {
            if slot.tensor.take().is_some() {
                slot.generation = (slot.generation + 1) & GEN_MASK;
            }
            self.free.push(i);
        }
        self.live = 0;
        self.inputs.clear();
        self.outputs.clear();
        self.device_cache.clear();
        self.last_error.clear();
    }

    /// Records `msg` for `last_error` and returns `code`.
    pub fn fail(&mut self, code: AbiCode, msg: impl Into<String>) -> i32 {
        let mut m: String = msg.into();
        if m.len() > MAX_ERROR_BYTES {
            let mut cut = MAX_ERROR_BYTES;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
        }
        self.last_error = format!("{}: {m}", code.name());
        code.code()
    }

    pub fn fail_core(&mut self, e: CoreError) -> i32 {
        self.fail(AbiCode::from_kind(e.kind), e.message)
    }

    /// A new handle for `t`, or ResourceExhausted.
    pub fn insert(&mut self, t: Tensor) -> i32 {
        if self.live >= MAX_HANDLES {
            return self.fail(
                AbiCode::ResourceExhausted,
                format!("more than {MAX_HANDLES} live tensor handles; tensor_drop the ones you are done with"),
            );
        }
        self.live += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i].tensor = Some(t);
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    tensor: Some(t),
                });
                self.slots.len() - 1
            }
        };
        ((self.slots[slot].generation << SLOT_BITS) | (slot as u32 + 1)) as i32
    }

    fn slot_of(&self, h: i32) -> Option<usize> {
        let h = u32::try_from(h).ok()?;
        let slot = ((h & SLOT_MASK) as usize).checked_sub(1)?;
        let s = self.slots.get(slot)?;
        (s.generation == h >> SLOT_BITS && s.tensor.is_some()).then_some(slot)
    }

    pub fn get(&self, h: i32) -> Option<&Tensor> {
        self.slots[self.slot_of(h)?].tensor.as_ref()
    }

    /// The tensor of `h`, or records InvalidHandle.
    pub fn tensor(&mut self, h: i32) -> Result<Tensor, i32> {
        match self.get(h) {
            Some(t) => Ok(t.clone()),
            None => Err(self.fail(
                AbiCode::InvalidHandle,
                format!("{h} is not a live tensor handle (dropped, or from another invoke)"),
            )),
        }
    }

    pub fn remove(&mut self, h: i32) -> bool {
        let Some(i) = self.slot_of(h) else {
            return false;
        };
        let slot = &mut self.slots[i];
        slot.tensor = None;
        slot.generation = (slot.generation + 1) & GEN_MASK;
        self.free.push(i);
        self.live -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    fn state() -> AbiState {
        AbiState::new(
            Arc::new(Bindings::default()),
            Arc::new(Budget::new(1 << 20)),
        )
    }

    #[test]
    fn stale_handles_are_refused() {
        let mut s = state();
        let t = Tensor::zeros(DType::F32, &[2]).unwrap();
        let h = s.insert(t.clone());
        assert!(h > 0 && s.get(h).is_some());
        assert!(s.remove(h));
        let h2 = s.insert(t.clone());
        assert_ne!(h, h2, "a reused slot must get a new handle");
        assert!(s.get(h).is_none());
        s.reset();
        assert!(s.get(h2).is_none());
        let h3 = s.insert(t);
        assert!(h3 > 0 && s.get(h3).is_some());
        assert!(s.get(-1).is_none() && s.get(0).is_none());
    }
}
