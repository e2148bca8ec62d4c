//! The host functions of the `"tensorwasm"` module.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use wasmtime::{Caller, Extern, Linker, Memory};

use super::argv::{self, Record};
use super::codes::AbiCode;
use super::state::{AbiState, Kept, MAX_KEPT};
use crate::exec::store::StoreData;
use crate::kernels::{self, Arg, OpCtx};
use crate::tensor::{DType, MAX_NDIM, Tensor};

pub const MODULE: &str = "tensorwasm";

/// Longest op or tensor name accepted (bytes).
const MAX_NAME_BYTES: usize = 256;

const NAMES: &[&str] = &[
    "abi_version",
    "tensor_input",
    "tensor_bound",
    "tensor_new",
    "tensor_from_guest",
    "tensor_read",
    "tensor_write",
    "tensor_info",
    "tensor_drop",
    "op",
    "output_set",
    "last_error",
    "tensor_keep",
    "tensor_kept",
    "tensor_forget",
    "cuda_load",
    "cuda_launch",
];

/// Largest CUDA C or PTX source `cuda_load` takes.
pub const MAX_KERNEL_SOURCE_BYTES: u64 = 1 << 20;
/// Threads per block a launch may ask for (the CUDA limit on every GPU).
pub const MAX_THREADS_PER_BLOCK: u64 = 1024;
/// Grid limits: x up to 2^31 - 1, y and z up to 65535 (compute capability >= 3.0).
pub const MAX_GRID: [u64; 3] = [(1 << 31) - 1, 65_535, 65_535];
/// Block limits per dimension.
pub const MAX_BLOCK: [u64; 3] = [1024, 1024, 64];

pub fn provided_names() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| NAMES.iter().copied().collect())
}

fn memory(caller: &mut Caller<'_, StoreData>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// Guest memory and our state, or InvalidPointer when there is no memory 0.
macro_rules! mem_and_state {
    ($caller:ident) => {{
        match memory(&mut $caller) {
            Some(m) => m.data_and_store_mut(&mut $caller),
            None => {
                return $caller.data_mut().abi.fail(
                    AbiCode::InvalidPointer,
                    "the module exports no memory named 'memory'",
                );
            }
        }
    }};
}

fn range(mem: &[u8], ptr: i32, len: u64) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= mem.len()).then_some(start..end)
}

fn bad_ptr(abi: &mut AbiState, what: &str, ptr: i32, len: u64, mem_len: usize) -> i32 {
    abi.fail(
        AbiCode::InvalidPointer,
        format!(
            "{what} ({len} bytes at {}) is outside guest memory ({mem_len} bytes)",
            ptr as u32
        ),
    )
}

fn read_name(
    mem: &[u8],
    abi: &mut AbiState,
    what: &str,
    ptr: i32,
    len: i32,
) -> Result<String, i32> {
    let len = len as u32 as u64;
    if len as usize > MAX_NAME_BYTES {
        return Err(abi.fail(
            AbiCode::InvalidArgs,
            format!("{what} is {len} bytes; at most {MAX_NAME_BYTES}"),
        ));
    }
    let Some(r) = range(mem, ptr, len) else {
        return Err(bad_ptr(abi, what, ptr, len, mem.len()));
    };
    match std::str::from_utf8(&mem[r]) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(abi.fail(AbiCode::InvalidArgs, format!("{what} is not valid UTF-8"))),
    }
}

fn read_shape(
    mem: &[u8],
    abi: &mut AbiState,
    dtype: i32,
    ndim: i32,
    shape_ptr: i32,
) -> Result<(DType, Vec<usize>), i32> {
    let Some(dtype) = DType::from_code(dtype) else {
        return Err(abi.fail(
            AbiCode::InvalidArgs,
            format!("{dtype} is not a dtype code (0..=8)"),
        ));
    };
    let Ok(ndim) = usize::try_from(ndim) else {
        return Err(abi.fail(AbiCode::ShapeMismatch, format!("ndim {ndim} is negative")));
    };
    if ndim > MAX_NDIM {
        return Err(abi.fail(
            AbiCode::ShapeMismatch,
            format!("ndim {ndim} exceeds {MAX_NDIM}"),
        ));
    }
    let Some(r) = range(mem, shape_ptr, 8 * ndim as u64) else {
        return Err(bad_ptr(abi, "shape", shape_ptr, 8 * ndim as u64, mem.len()));
    };
    let mut shape = Vec::with_capacity(ndim);
    for c in mem[r].chunks_exact(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        let d = i64::from_le_bytes(b);
        match usize::try_from(d) {
            Ok(d) => shape.push(d),
            Err(_) => {
                return Err(abi.fail(AbiCode::ShapeMismatch, format!("dimension {d} is negative")));
            }
        }
    }
    Ok((dtype, shape))
}

fn abi_version(_c: Caller<'_, StoreData>) -> i32 {
    super::ABI_VERSION
}

fn tensor_input(mut caller: Caller<'_, StoreData>, name_ptr: i32, name_len: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let name = match read_name(mem, abi, "input name", name_ptr, name_len) {
        Ok(n) => n,
        Err(code) => return code,
    };
    match abi.inputs.get(&name).cloned() {
        Some(t) => abi.insert(t),
        None => {
            let mut names: Vec<&String> = abi.inputs.keys().collect();
            names.sort();
            let msg = format!("no input named '{name}'; inputs of this invoke: {names:?}");
            abi.fail(AbiCode::InvalidArgs, msg)
        }
    }
}

fn tensor_bound(mut caller: Caller<'_, StoreData>, name_ptr: i32, name_len: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let name = match read_name(mem, abi, "bound tensor name", name_ptr, name_len) {
        Ok(n) => n,
        Err(code) => return code,
    };
    match abi.bindings.get(&name).cloned() {
        Some(t) => abi.insert(t),
        None => {
            let msg = format!(
                "no bound tensor named '{name}'; bound: {:?}",
                abi.bindings.names()
            );
            abi.fail(AbiCode::InvalidArgs, msg)
        }
    }
}

fn tensor_new(mut caller: Caller<'_, StoreData>, dtype: i32, ndim: i32, shape_ptr: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let (dtype, shape) = match read_shape(mem, abi, dtype, ndim, shape_ptr) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match Tensor::zeros_in(dtype, &shape, Some(&abi.budget)) {
        Ok(t) => abi.insert(t),
        Err(e) => abi.fail_core(e),
    }
}

fn tensor_from_guest(
    mut caller: Caller<'_, StoreData>,
    dtype: i32,
    ndim: i32,
    shape_ptr: i32,
    data_ptr: i32,
    data_len: i32,
) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let (dtype, shape) = match read_shape(mem, abi, dtype, ndim, shape_ptr) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let len = data_len as u32 as u64;
    let Some(r) = range(mem, data_ptr, len) else {
        return bad_ptr(abi, "data", data_ptr, len, mem.len());
    };
    let t = match Tensor::zeros_in(dtype, &shape, Some(&abi.budget)) {
        Ok(t) => t,
        Err(e) => return abi.fail_core(e),
    };
    if t.nbytes() as u64 != len {
        return abi.fail(
            AbiCode::ShapeMismatch,
            format!(
                "{len} bytes of data for a {} tensor of shape {shape:?} ({} bytes)",
                dtype.name(),
                t.nbytes()
            ),
        );
    }
    match t.data_mut_ptr() {
        // SAFETY: t is a fresh contiguous tensor of exactly len bytes; the
        // source range was bounds-checked.
        Ok(dst) => unsafe { std::ptr::copy_nonoverlapping(mem[r].as_ptr(), dst, len as usize) },
        Err(e) => return abi.fail_core(e),
    }
    abi.insert(t)
}

fn tensor_read(mut caller: Caller<'_, StoreData>, h: i32, dst_ptr: i32, dst_len: i32) -> i64 {
    let Some(m) = memory(&mut caller) else {
        return caller.data_mut().abi.fail(
            AbiCode::InvalidPointer,
            "the module exports no memory named 'memory'",
        ) as i64;
    };
    let (mem, data) = m.data_and_store_mut(&mut caller);
    let abi = &mut data.abi;
    let t = match abi.tensor(h) {
        Ok(t) => t,
        Err(code) => return code as i64,
    };
    // A tensor on a device is read after the work queued before it.
    let t = match crate::device::to(&t, crate::tensor::Device::Cpu, None) {
        Ok(t) => t,
        Err(e) => return abi.fail_core(e) as i64,
    };
    let n = t.nbytes() as u64;
    let cap = dst_len as u32 as u64;
    if cap < n {
        return abi.fail(
            AbiCode::ShapeMismatch,
            format!("tensor is {n} bytes; the buffer holds {cap}"),
        ) as i64;
    }
    let Some(r) = range(mem, dst_ptr, n) else {
        return bad_ptr(abi, "destination", dst_ptr, n, mem.len()) as i64;
    };
    if t.is_contiguous() {
        // SAFETY: t's extent of n bytes is valid; the destination was checked.
        unsafe { std::ptr::copy_nonoverlapping(t.data_ptr(), mem[r].as_mut_ptr(), n as usize) };
    } else {
        mem[r].copy_from_slice(&t.to_bytes());
    }
    n as i64
}

fn tensor_write(mut caller: Caller<'_, StoreData>, h: i32, src_ptr: i32, src_len: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let t = match abi.tensor(h) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let dst = match t.data_mut_ptr() {
        Ok(p) => p,
        Err(_) => {
            return abi.fail(
                AbiCode::ReadOnly,
                format!("tensor {h} is read-only (a bound tensor or an invoke input)"),
            );
        }
    };
    if !t.is_contiguous() {
        return abi.fail(
            AbiCode::ShapeMismatch,
            format!("tensor {h} is a strided view; write a copy instead"),
        );
    }
    let len = src_len as u32 as u64;
    if len != t.nbytes() as u64 {
        return abi.fail(
            AbiCode::ShapeMismatch,
            format!("{len} bytes for a tensor of {} bytes", t.nbytes()),
        );
    }
    let Some(r) = range(mem, src_ptr, len) else {
        return bad_ptr(abi, "source", src_ptr, len, mem.len());
    };
    if t.device() != crate::tensor::Device::Cpu {
        return match crate::device::write_bytes(&t, mem[r].to_vec()) {
            Ok(()) => 0,
            Err(e) => abi.fail_core(e),
        };
    }
    // SAFETY: dst is writable, contiguous, len bytes; the source was checked.
    unsafe { std::ptr::copy_nonoverlapping(mem[r].as_ptr(), dst, len as usize) };
    0
}

fn tensor_info(mut caller: Caller<'_, StoreData>, h: i32, out_ptr: i32, out_cap: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let t = match abi.tensor(h) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let need = 8 + 8 * t.ndim() as u64;
    if (out_cap as u32 as u64) < need {
        return abi.fail(
            AbiCode::InvalidArgs,
            format!("tensor_info needs {need} bytes, the buffer holds {out_cap}"),
        );
    }
    let Some(r) = range(mem, out_ptr, need) else {
        return bad_ptr(abi, "info buffer", out_ptr, need, mem.len());
    };
    let out = &mut mem[r];
    out[0..4].copy_from_slice(&t.dtype().code().to_le_bytes());
    out[4..8].copy_from_slice(&(t.ndim() as i32).to_le_bytes());
    for (i, &d) in t.shape().iter().enumerate() {
        out[8 + 8 * i..16 + 8 * i].copy_from_slice(&(d as i64).to_le_bytes());
    }
    need as i32
}

fn tensor_drop(mut caller: Caller<'_, StoreData>, h: i32) -> i32 {
    let abi = &mut caller.data_mut().abi;
    if abi.remove(h) {
        0
    } else {
        abi.fail(
            AbiCode::InvalidHandle,
            format!("{h} is not a live tensor handle"),
        )
    }
}

fn op(
    mut caller: Caller<'_, StoreData>,
    name_ptr: i32,
    name_len: i32,
    argv_ptr: i32,
    argv_len: i32,
) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let name = match read_name(mem, abi, "op name", name_ptr, name_len) {
        Ok(n) => n,
        Err(code) => return code,
    };
    // The name first: an unknown op is UnknownOp whatever its argv holds.
    let op_id = match kernels::lookup(&name) {
        Ok(op) => op,
        Err(e) => return abi.fail_core(e),
    };
    let records = match read_argv(mem, abi, &name, argv_ptr, argv_len) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let mut args = Vec::with_capacity(records.len());
    for rec in records {
        args.push(match rec {
            Record::Int(v) => Arg::Int(v),
            Record::Float(v) => Arg::Float(v),
            Record::Tensor(h) => match abi.tensor(h) {
                Ok(t) => match abi.on_device(h, t) {
                    Ok(t) => Arg::Tensor(t),
                    Err(e) => return abi.fail_core(e),
                },
                Err(code) => return code,
            },
            Record::Bytes { ptr, len } => match range(mem, ptr as i32, len as u64) {
                Some(br) => Arg::Bytes(mem[br].to_vec()),
                None => return bad_ptr(abi, "bytes argument", ptr as i32, len as u64, mem.len()),
            },
        });
    }
    let budget = abi.budget.clone();
    match kernels::run(
        op_id,
        &args,
        &OpCtx {
            budget: Some(&budget),
            ..OpCtx::default()
        },
    ) {
        Ok(t) => abi.insert(t),
        Err(e) => abi.fail_core(e),
    }
}

fn output_set(mut caller: Caller<'_, StoreData>, name_ptr: i32, name_len: i32, h: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let name = match read_name(mem, abi, "output name", name_ptr, name_len) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let t = match abi.tensor(h) {
        Ok(t) => t,
        Err(code) => return code,
    };
    match abi.outputs.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = t,
        None => abi.outputs.push((name, t)),
    }
    0
}

fn last_error(mut caller: Caller<'_, StoreData>, dst_ptr: i32, dst_cap: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let msg = data.abi.last_error.as_bytes();
    let n = msg.len().min(dst_cap as u32 as usize);
    let Some(r) = range(mem, dst_ptr, n as u64) else {
        let len = mem.len();
        return bad_ptr(&mut data.abi, "error buffer", dst_ptr, n as u64, len);
    };
    mem[r].copy_from_slice(&msg[..n]);
    // The full length, so a guest can retry with a larger buffer.
    msg.len() as i32
}

fn tensor_keep(mut caller: Caller<'_, StoreData>, name_ptr: i32, name_len: i32, h: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let name = match read_name(mem, abi, "kept tensor name", name_ptr, name_len) {
        Ok(n) => n,
        Err(code) => return code,
    };
    if name.is_empty() {
        return abi.fail(AbiCode::InvalidArgs, "kept tensor name is empty");
    }
    let t = match abi.tensor(h) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if !abi.kept.contains_key(&name) && abi.kept.len() >= MAX_KEPT {
        return abi.fail(
            AbiCode::ResourceExhausted,
            format!("more than {MAX_KEPT} kept tensors; tensor_forget the ones you are done with"),
        );
    }
    // Inputs and bound tensors are the caller's memory, and views may be
    // strided: keep a private contiguous copy of those.
    let t = if t.is_read_only() || !t.is_contiguous() || t.data_mut_ptr().is_err() {
        match t.copy_in(Some(&abi.budget)) {
            Ok(c) => c,
            Err(e) => return abi.fail_core(e),
        }
    } else {
        t
    };
    abi.kept.insert(
        name,
        Kept {
            tensor: t,
            shared: false,
        },
    );
    0
}

fn tensor_kept(mut caller: Caller<'_, StoreData>, name_ptr: i32, name_len: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let name = match read_name(mem, abi, "kept tensor name", name_ptr, name_len) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let (tensor, shared) = match abi.kept.get(&name) {
        Some(k) => (k.tensor.clone(), k.shared),
        None => {
            let names: Vec<&String> = abi.kept.keys().collect();
            let msg = format!("no kept tensor named '{name}'; kept: {names:?}");
            return abi.fail(AbiCode::InvalidArgs, msg);
        }
    };
    let tensor = if shared {
        // Copy-on-access: the image's tensor is shared by every instance.
        let own = match tensor.copy_in(Some(&abi.budget)) {
            Ok(c) => c,
            Err(e) => return abi.fail_core(e),
        };
        abi.kept.insert(
            name,
            Kept {
                tensor: own.clone(),
                shared: false,
            },
        );
        own
    } else {
        tensor
    };
    abi.insert(tensor)
}

fn tensor_forget(mut caller: Caller<'_, StoreData>, name_ptr: i32, name_len: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let name = match read_name(mem, abi, "kept tensor name", name_ptr, name_len) {
        Ok(n) => n,
        Err(code) => return code,
    };
    match abi.kept.remove(&name) {
        Some(_) => 0,
        None => abi.fail(
            AbiCode::InvalidArgs,
            format!("no kept tensor named '{name}'"),
        ),
    }
}

/// The argv records at `argv_ptr` for `what` (an op or a kernel): the
/// length cap first (KernelArgsUnsupported before anything is read), then
/// the bounds, then the records; failures are recorded and returned.
fn read_argv(
    mem: &[u8],
    abi: &mut AbiState,
    what: &str,
    argv_ptr: i32,
    argv_len: i32,
) -> Result<Vec<Record>, i32> {
    let alen = argv_len as u32 as u64;
    if alen as usize > argv::MAX_BYTES {
        return Err(abi.fail(
            AbiCode::KernelArgsUnsupported,
            format!(
                "argv is {alen} bytes; at most {} are supported",
                argv::MAX_BYTES
            ),
        ));
    }
    let Some(r) = range(mem, argv_ptr, alen) else {
        return Err(bad_ptr(abi, "argv", argv_ptr, alen, mem.len()));
    };
    argv::decode(&mem[r]).map_err(|(code, msg)| abi.fail(code, format!("{what}: {msg}")))
}

/// Reads three little-endian `u32` dimensions at `ptr`.
fn read_dims(mem: &[u8], ptr: i32) -> Option<[u64; 3]> {
    let r = range(mem, ptr, 12)?;
    let b = &mem[r];
    let d = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as u64;
    Some([d(0), d(4), d(8)])
}

fn no_custom_kernels(abi: &mut AbiState) -> i32 {
    let msg = match abi.device {
        crate::tensor::Device::Cpu => {
            "custom CUDA kernels need a CUDA device; this instance runs on the cpu".to_string()
        }
        d => format!(
            "custom CUDA kernels are not supported on {d}: the fake backend cannot run CUDA \
             code (they run on a real device, TENSORCAST_CUDA_BACKEND=cuda)"
        ),
    };
    abi.fail(AbiCode::NotAvailable, msg)
}

/// `cuda_load(src_ptr, src_len) -> module`: compiles CUDA C or PTX for the
/// instance's device. The source is checked (bounds, size cap); on a host
/// without a usable device the answer is NotAvailable.
fn cuda_load(mut caller: Caller<'_, StoreData>, src_ptr: i32, src_len: i32) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let len = src_len as u32 as u64;
    if len == 0 || len > MAX_KERNEL_SOURCE_BYTES {
        return abi.fail(
            AbiCode::InvalidArgs,
            format!("kernel source of {len} bytes; 1 to {MAX_KERNEL_SOURCE_BYTES} are accepted"),
        );
    }
    let Some(r) = range(mem, src_ptr, len) else {
        return bad_ptr(abi, "kernel source", src_ptr, len, mem.len());
    };
    let n = match custom_kernel_device(abi) {
        Ok(n) => n,
        Err(code) => return code,
    };
    const MAX_MODULES: usize = 64;
    if abi.cuda_modules.len() >= MAX_MODULES {
        return abi.fail(
            AbiCode::ResourceExhausted,
            format!("more than {MAX_MODULES} kernel modules in one instance"),
        );
    }
    let loaded = crate::device::cuda::device(n).and_then(|d| d.load_user_module(&mem[r]));
    match loaded {
        Ok(m) => {
            abi.cuda_modules.push(Arc::new(m));
            abi.cuda_modules.len() as i32
        }
        Err(e) => abi.fail_core(e),
    }
}

/// The real device an instance's custom kernels run on, or the code (and
/// message) for why they cannot run here.
fn custom_kernel_device(abi: &mut AbiState) -> Result<u32, i32> {
    match abi.device {
        crate::tensor::Device::Cuda(n) if crate::device::is_real() => {
            if crate::device::cuda::custom_kernels_allowed() {
                Ok(n)
            } else {
                Err(abi.fail(
                    AbiCode::NotAvailable,
                    "custom CUDA kernels are off on this host (a kernel can reach all of the \
                     device's memory; TENSOR_WASM_CUDA_CUSTOM_KERNELS=1 turns them on for \
                     trusted guests)",
                ))
            }
        }
        _ => Err(no_custom_kernels(abi)),
    }
}

/// `cuda_launch(module, name_ptr, name_len, grid_ptr, block_ptr, argv_ptr,
/// argv_len) -> i32`: launches kernel `name` of a loaded module with tensor
/// handles and scalars as arguments (argv records). Launch bounds are
/// checked before anything else runs.
#[allow(clippy::too_many_arguments)]
fn cuda_launch(
    mut caller: Caller<'_, StoreData>,
    module: i32,
    name_ptr: i32,
    name_len: i32,
    grid_ptr: i32,
    block_ptr: i32,
    argv_ptr: i32,
    argv_len: i32,
) -> i32 {
    let (mem, data) = mem_and_state!(caller);
    let abi = &mut data.abi;
    let name = match read_name(mem, abi, "kernel name", name_ptr, name_len) {
        Ok(n) if n.is_empty() => {
            return abi.fail(AbiCode::InvalidArgs, "the kernel name is empty");
        }
        Ok(n) => n,
        Err(code) => return code,
    };
    let Some(grid) = read_dims(mem, grid_ptr) else {
        return bad_ptr(abi, "grid", grid_ptr, 12, mem.len());
    };
    let Some(block) = read_dims(mem, block_ptr) else {
        return bad_ptr(abi, "block", block_ptr, 12, mem.len());
    };
    if grid.contains(&0) || block.contains(&0) {
        return abi.fail(
            AbiCode::InvalidArgs,
            format!("{name}: grid {grid:?} and block {block:?} must have no zero dimension"),
        );
    }
    let threads: u64 = block.iter().product();
    if threads > MAX_THREADS_PER_BLOCK || block.iter().zip(MAX_BLOCK).any(|(d, m)| *d > m) {
        return abi.fail(
            AbiCode::InvalidArgs,
            format!(
                "{name}: block {block:?} has {threads} threads; at most {MAX_THREADS_PER_BLOCK} \
                 per block and {MAX_BLOCK:?} per dimension"
            ),
        );
    }
    if grid.iter().zip(MAX_GRID).any(|(d, m)| *d > m) {
        return abi.fail(
            AbiCode::InvalidArgs,
            format!("{name}: grid {grid:?} exceeds {MAX_GRID:?}"),
        );
    }
    let records = match read_argv(mem, abi, &name, argv_ptr, argv_len) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let n = match custom_kernel_device(abi) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let Some(m) = usize::try_from(module)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| abi.cuda_modules.get(i))
        .cloned()
    else {
        return abi.fail(
            AbiCode::InvalidHandle,
            format!("{name}: {module} is not a module handle of this instance"),
        );
    };
    // Every argument is 8 bytes: a tensor's device address, an i64, an f64.
    let mut values: Vec<u64> = Vec::with_capacity(records.len());
    let mut held = Vec::new();
    for rec in records {
        values.push(match rec {
            Record::Int(v) => v as u64,
            Record::Float(v) => v.to_bits(),
            Record::Tensor(h) => {
                let t = match abi.tensor(h).map(|t| abi.on_device(h, t)) {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => return abi.fail_core(e),
                    Err(code) => return code,
                };
                let t = if t.is_contiguous() {
                    t
                } else {
                    match crate::kernels::cuda::real::contiguous(&t, Some(&abi.budget)) {
                        Ok(c) => c,
                        Err(e) => return abi.fail_core(e),
                    }
                };
                let addr = match crate::device::cuda_address(&t) {
                    Ok(a) => a,
                    Err(e) => return abi.fail_core(e),
                };
                held.push(t);
                addr
            }
            Record::Bytes { .. } => {
                return abi.fail(
                    AbiCode::InvalidArgs,
                    format!("{name}: bytes arguments are not supported by cuda_launch"),
                );
            }
        });
    }
    let mut params: Vec<*mut std::ffi::c_void> =
        values.iter_mut().map(|v| (v as *mut u64).cast()).collect();
    let dims = |d: [u64; 3]| [d[0] as u32, d[1] as u32, d[2] as u32];
    let launched = crate::device::cuda::device(n)
        .and_then(|d| d.launch_user(&m, &name, dims(grid), dims(block), &mut params));
    drop(held);
    match launched {
        Ok(()) => 0,
        Err(e) if e.kind == crate::error::ErrorKind::InvalidArgs => abi.fail_core(e),
        Err(e) => abi.fail(AbiCode::DeviceError, e.message),
    }
}

/// Defines every import of ABI v1 in `linker`.
pub fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    let m = MODULE;
    linker.func_wrap(m, "abi_version", abi_version)?;
    linker.func_wrap(m, "tensor_keep", tensor_keep)?;
    linker.func_wrap(m, "tensor_kept", tensor_kept)?;
    linker.func_wrap(m, "tensor_forget", tensor_forget)?;
    linker.func_wrap(m, "cuda_load", cuda_load)?;
    linker.func_wrap(m, "cuda_launch", cuda_launch)?;
    linker.func_wrap(m, "tensor_input", tensor_input)?;
    linker.func_wrap(m, "tensor_bound", tensor_bound)?;
    linker.func_wrap(m, "tensor_new", tensor_new)?;
    linker.func_wrap(m, "tensor_from_guest", tensor_from_guest)?;
    linker.func_wrap(m, "tensor_read", tensor_read)?;
    linker.func_wrap(m, "tensor_write", tensor_write)?;
    linker.func_wrap(m, "tensor_info", tensor_info)?;
    linker.func_wrap(m, "tensor_drop", tensor_drop)?;
    linker.func_wrap(m, "op", op)?;
    linker.func_wrap(m, "output_set", output_set)?;
    linker.func_wrap(m, "last_error", last_error)?;
    Ok(())
}
