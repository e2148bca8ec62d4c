//! Capturing a live instance into a snapshot and restoring one from it.
//!
//! The container (framing, checksums, compression, signature, sparse
//! memory) is `crate::snapshot`'s; this module decides what goes in it. A
//! snapshot of an instance holds, after the metadata:
//!
//! 1. `module` (optional): the function's Wasm bytes as the user gave them;
//! 2. `globals`: every global, internal ones included;
//! 3. `tables`: every table's size and entries (function indices);
//! 4. `tensors`: the tensors the instance keeps (`tensor_keep`);
//! 5. `memory`: linear memory 0, sparse (when the module has a memory).
//!
//! A restore builds a new instance of the function without running its
//! start function, streams the memory straight into the instance and the
//! tensors straight into new host tensors, and hands the instance out only
//! after the reader has checked the whole-file checksum and the signature.

use std::collections::HashMap;
use std::io::{Read, Write};

use wasmtime::{Func, Instance, Ref, Store, Val};

use super::PersistentInstance;
use super::function::{CompiledModule, DEFAULT_MAX_MODULE_BYTES, Function};
use super::instrument::{GlobalKind, GlobalValue};
use super::store::StoreData;
use crate::abi::{Kept, MAX_KEPT};
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::snapshot::{
    MEMORY_PAGE_SIZE, Metadata, ReadOptions, SectionKind, SnapshotReader, SnapshotWriter,
    Verification, WriteOptions, WriteStats,
};
use crate::tensor::{DType, MAX_NDIM, Tensor};

/// Longest kept-tensor name (bytes), as the ABI allows.
const MAX_TENSOR_NAME: usize = 256;
/// Marks a null function reference in globals and tables.
const NULL_FUNC: u32 = u32::MAX;

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::new(ErrorKind::SnapshotInvalid, msg)
}

/// How to write a snapshot of an instance.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    pub tenant_id: u64,
    pub instance_id: String,
    /// Embed the module's bytes so the file alone can be restored anywhere.
    pub embed_module: bool,
    pub write: WriteOptions,
}

/// Maps the instance's function references back to module function indices.
fn func_indices(
    compiled: &CompiledModule,
    store: &mut Store<StoreData>,
    instance: &Instance,
) -> CoreResult<HashMap<usize, u32>> {
    let mut map = HashMap::with_capacity(compiled.state.funcs.len());
    for (index, export) in &compiled.state.funcs {
        let f = instance
            .get_module_export(&mut *store, export)
            .and_then(|e| e.into_func())
            .ok_or_else(|| CoreError::internal("instrumented function export is missing"))?;
        map.insert(f.to_raw(&mut *store) as usize, *index);
    }
    Ok(map)
}

fn func_by_index(
    compiled: &CompiledModule,
    store: &mut Store<StoreData>,
    instance: &Instance,
    index: u32,
) -> CoreResult<Func> {
    let export = compiled
        .state
        .funcs
        .binary_search_by_key(&index, |(i, _)| *i)
        .ok()
        .map(|k| &compiled.state.funcs[k].1)
        .ok_or_else(|| {
            invalid(format!(
                "snapshot refers to function {index}, which no table or global of this module can hold"
            ))
        })?;
    instance
        .get_module_export(&mut *store, export)
        .and_then(|e| e.into_func())
        .ok_or_else(|| CoreError::internal("instrumented function export is missing"))
}

fn func_ref_index(
    f: Option<&Func>,
    store: &mut Store<StoreData>,
    map: &HashMap<usize, u32>,
    what: &str,
) -> CoreResult<u32> {
    match f {
        None => Ok(NULL_FUNC),
        Some(f) => map.get(&(f.to_raw(&mut *store) as usize)).copied().ok_or_else(|| {
            CoreError::new(
                ErrorKind::Internal,
                format!("{what} holds a function that is not one of the module's; it cannot be snapshotted"),
            )
        }),
    }
}

/// Every global's value, in index order.
pub fn capture_globals(
    compiled: &CompiledModule,
    store: &mut Store<StoreData>,
    instance: &Instance,
) -> CoreResult<Vec<GlobalValue>> {
    let map = if compiled
        .layout
        .globals
        .iter()
        .any(|g| g.kind == GlobalKind::FuncRef)
    {
        func_indices(compiled, store, instance)?
    } else {
        HashMap::new()
    };
    let mut out = Vec::with_capacity(compiled.state.globals.len());
    for (i, export) in compiled.state.globals.iter().enumerate() {
        let g = instance
            .get_module_export(&mut *store, export)
            .and_then(|e| e.into_global())
            .ok_or_else(|| CoreError::internal("instrumented global export is missing"))?;
        out.push(match g.get(&mut *store) {
            Val::I32(v) => GlobalValue::I32(v),
            Val::I64(v) => GlobalValue::I64(v),
            Val::F32(v) => GlobalValue::F32(v),
            Val::F64(v) => GlobalValue::F64(v),
            Val::V128(v) => GlobalValue::V128(v.as_u128()),
            Val::FuncRef(f) => {
                let idx = func_ref_index(f.as_ref(), store, &map, &format!("global {i}"))?;
                GlobalValue::FuncRef((idx != NULL_FUNC).then_some(idx))
            }
            _ => {
                return Err(CoreError::internal(format!(
                    "global {i} has a type snapshots do not support"
                )));
            }
        });
    }
    Ok(out)
}

/// Every table's entries (function indices; `None` for null).
pub fn capture_tables(
    compiled: &CompiledModule,
    store: &mut Store<StoreData>,
    instance: &Instance,
) -> CoreResult<Vec<Vec<Option<u32>>>> {
    if compiled.state.tables.is_empty() {
        return Ok(Vec::new());
    }
    let map = func_indices(compiled, store, instance)?;
    let mut out = Vec::with_capacity(compiled.state.tables.len());
    for (t, export) in compiled.state.tables.iter().enumerate() {
        let table = instance
            .get_module_export(&mut *store, export)
            .and_then(|e| e.into_table())
            .ok_or_else(|| CoreError::internal("instrumented table export is missing"))?;
        let size = table.size(&*store);
        let mut entries = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for i in 0..size {
            let f = match table.get(&mut *store, i) {
                Some(Ref::Func(f)) => f,
                _ => {
                    return Err(CoreError::internal(format!(
                        "table {t} holds a reference that snapshots do not support"
                    )));
                }
            };
            let idx = func_ref_index(f.as_ref(), store, &map, &format!("table {t}"))?;
            entries.push((idx != NULL_FUNC).then_some(idx));
        }
        out.push(entries);
    }
    Ok(out)
}

/// Writes `tables` into the instance's tables (growing them as needed).
pub fn set_tables(
    compiled: &CompiledModule,
    store: &mut Store<StoreData>,
    instance: &Instance,
    tables: &[Vec<Option<u32>>],
) -> CoreResult<()> {
    if tables.len() != compiled.state.tables.len() {
        return Err(invalid(format!(
            "snapshot has {} tables; the module has {}",
            tables.len(),
            compiled.state.tables.len()
        )));
    }
    for (t, (export, entries)) in compiled.state.tables.iter().zip(tables).enumerate() {
        let table = instance
            .get_module_export(&mut *store, export)
            .and_then(|e| e.into_table())
            .ok_or_else(|| CoreError::internal("instrumented table export is missing"))?;
        let want = entries.len() as u64;
        let have = table.size(&*store);
        if want > have {
            table
                .grow(&mut *store, want - have, Ref::Func(None))
                .map_err(|_| {
                    CoreError::new(
                        ErrorKind::MemoryLimit,
                        format!("table {t} cannot grow to the snapshot's {want} entries"),
                    )
                })?;
        } else if want < have {
            return Err(invalid(format!(
                "table {t} has {want} entries in the snapshot but starts with {have}"
            )));
        }
        for (i, e) in entries.iter().enumerate() {
            let r = match e {
                None => Ref::Func(None),
                Some(f) => Ref::Func(Some(func_by_index(compiled, store, instance, *f)?)),
            };
            table
                .set(&mut *store, i as u64, r)
                .map_err(|e| CoreError::internal(format!("table {t} entry {i}: {e}")))?;
        }
    }
    Ok(())
}

fn set_globals(
    compiled: &CompiledModule,
    store: &mut Store<StoreData>,
    instance: &Instance,
    values: &[GlobalValue],
) -> CoreResult<()> {
    let current = capture_globals(compiled, store, instance)?;
    for (i, (export, v)) in compiled.state.globals.iter().zip(values).enumerate() {
        let slot = compiled.layout.globals[i];
        if !slot.mutable {
            // Immutable globals are what instantiation made them; a snapshot
            // that says otherwise was not taken of this module.
            if current[i] != *v && !both_nan(&current[i], v) {
                return Err(invalid(format!(
                    "immutable global {i} differs from the module's value"
                )));
            }
            continue;
        }
        let g = instance
            .get_module_export(&mut *store, export)
            .and_then(|e| e.into_global())
            .ok_or_else(|| CoreError::internal("instrumented global export is missing"))?;
        let val = match *v {
            GlobalValue::I32(x) => Val::I32(x),
            GlobalValue::I64(x) => Val::I64(x),
            GlobalValue::F32(x) => Val::F32(x),
            GlobalValue::F64(x) => Val::F64(x),
            GlobalValue::V128(x) => Val::V128(x.into()),
            GlobalValue::FuncRef(None) => Val::FuncRef(None),
            GlobalValue::FuncRef(Some(f)) => {
                Val::FuncRef(Some(func_by_index(compiled, store, instance, f)?))
            }
        };
        g.set(&mut *store, val)
            .map_err(|e| invalid(format!("global {i} cannot take the snapshot's value: {e}")))?;
    }
    Ok(())
}

fn both_nan(a: &GlobalValue, b: &GlobalValue) -> bool {
    match (a, b) {
        (GlobalValue::F32(x), GlobalValue::F32(y)) => {
            f32::from_bits(*x).is_nan() && f32::from_bits(*y).is_nan()
        }
        (GlobalValue::F64(x), GlobalValue::F64(y)) => {
            f64::from_bits(*x).is_nan() && f64::from_bits(*y).is_nan()
        }
        _ => false,
    }
}

/// globals body: count u32, then per global kind u8, mutable u8, value.
pub fn encode_globals(compiled: &CompiledModule, values: &[GlobalValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + values.len() * 18);
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for (slot, v) in compiled.layout.globals.iter().zip(values) {
        out.push(slot.kind as u8);
        out.push(u8::from(slot.mutable));
        match *v {
            GlobalValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GlobalValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GlobalValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GlobalValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GlobalValue::V128(x) => out.extend_from_slice(&x.to_le_bytes()),
            GlobalValue::FuncRef(f) => out.extend_from_slice(&f.unwrap_or(NULL_FUNC).to_le_bytes()),
        }
    }
    out
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> CoreResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| invalid(format!("{} section is truncated", self.what)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> CoreResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> CoreResult<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> CoreResult<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn end(&self) -> CoreResult<()> {
        if self.pos != self.buf.len() {
            return Err(invalid(format!("{} section has trailing bytes", self.what)));
        }
        Ok(())
    }
}

pub fn decode_globals(compiled: &CompiledModule, body: &[u8]) -> CoreResult<Vec<GlobalValue>> {
    let mut c = Cursor {
        buf: body,
        pos: 0,
        what: "globals",
    };
    let n = c.u32()? as usize;
    if n != compiled.layout.globals.len() {
        return Err(invalid(format!(
            "snapshot has {n} globals; the module has {}",
            compiled.layout.globals.len()
        )));
    }
    let mut out = Vec::with_capacity(n);
    for (i, slot) in compiled.layout.globals.iter().enumerate() {
        let kind = GlobalKind::from_u8(c.u8()?);
        let mutable = c.u8()?;
        if kind != Some(slot.kind) || mutable != u8::from(slot.mutable) {
            return Err(invalid(format!(
                "global {i} has another type in the snapshot than in the module"
            )));
        }
        let bytes = c.take(slot.kind.value_len())?;
        let mut b16 = [0u8; 16];
        b16[..bytes.len()].copy_from_slice(bytes);
        let lo4 = u32::from_le_bytes([b16[0], b16[1], b16[2], b16[3]]);
        let lo8 = u64::from_le_bytes([
            b16[0], b16[1], b16[2], b16[3], b16[4], b16[5], b16[6], b16[7],
        ]);
        out.push(match slot.kind {
            GlobalKind::I32 => GlobalValue::I32(lo4 as i32),
            GlobalKind::I64 => GlobalValue::I64(lo8 as i64),
            GlobalKind::F32 => GlobalValue::F32(lo4),
            GlobalKind::F64 => GlobalValue::F64(lo8),
            GlobalKind::V128 => GlobalValue::V128(u128::from_le_bytes(b16)),
            GlobalKind::FuncRef => GlobalValue::FuncRef((lo4 != NULL_FUNC).then_some(lo4)),
        });
    }
    c.end()?;
    Ok(out)
}

/// tables body: count u32, then per table size u64 and size × u32 entries.
pub fn encode_tables(tables: &[Vec<Option<u32>>]) -> Vec<u8> {
    let n: usize = tables.iter().map(|t| 8 + 4 * t.len()).sum();
    let mut out = Vec::with_capacity(4 + n);
    out.extend_from_slice(&(tables.len() as u32).to_le_bytes());
    for t in tables {
        out.extend_from_slice(&(t.len() as u64).to_le_bytes());
        for e in t {
            out.extend_from_slice(&e.unwrap_or(NULL_FUNC).to_le_bytes());
        }
    }
    out
}

pub fn decode_tables(
    compiled: &CompiledModule,
    max_elements: u64,
    body: &[u8],
) -> CoreResult<Vec<Vec<Option<u32>>>> {
    let mut c = Cursor {
        buf: body,
        pos: 0,
        what: "tables",
    };
    let n = c.u32()?;
    if n != compiled.layout.tables {
        return Err(invalid(format!(
            "snapshot has {n} tables; the module has {}",
            compiled.layout.tables
        )));
    }
    let mut out = Vec::with_capacity(n as usize);
    for t in 0..n {
        let size = c.u64()?;
        if size > max_elements {
            return Err(invalid(format!(
                "table {t} has {size} entries; the function's limit is {max_elements}"
            )));
        }
        // Bounded: the section body is in memory and 4 bytes per entry are read.
        let raw = c.take(usize::try_from(size).map_err(|_| invalid("table too large"))? * 4)?;
        out.push(
            raw.chunks_exact(4)
                .map(|b| {
                    let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    (v != NULL_FUNC).then_some(v)
                })
                .collect(),
        );
    }
    c.end()?;
    Ok(out)
}

/// Bytes of the tensors section for `kept`.
fn tensors_len(kept: &[(&String, &Tensor)]) -> u64 {
    4 + kept
        .iter()
        .map(|(n, t)| 2 + n.len() as u64 + 2 + 8 * t.ndim() as u64 + 8 + t.nbytes() as u64)
        .sum::<u64>()
}

fn write_tensors<W: Write>(
    w: &mut SnapshotWriter<W>,
    kept: &[(&String, &Tensor)],
) -> CoreResult<()> {
    let mut s = w.begin_section(SectionKind::Tensors, tensors_len(kept))?;
    let io = |e: std::io::Error| CoreError::internal(format!("snapshot write failed: {e}"));
    s.write_all(&(kept.len() as u32).to_le_bytes())
        .map_err(io)?;
    for (name, t) in kept {
        let mut head = Vec::with_capacity(4 + name.len() + 8 * t.ndim() + 8);
        head.extend_from_slice(&(name.len() as u16).to_le_bytes());
        head.extend_from_slice(name.as_bytes());
        head.push(t.dtype().code() as u8);
        head.push(t.ndim() as u8);
        for d in t.shape() {
            head.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        head.extend_from_slice(&(t.nbytes() as u64).to_le_bytes());
        s.write_all(&head).map_err(io)?;
        if t.is_contiguous() {
            // SAFETY: a contiguous tensor's nbytes from data_ptr lie inside
            // its storage (checked at construction); the tensor outlives this.
            let bytes = unsafe { std::slice::from_raw_parts(t.data_ptr(), t.nbytes()) };
            s.write_all(bytes).map_err(io)?;
        } else {
            s.write_all(&t.to_bytes()).map_err(io)?;
        }
    }
    s.finish()
}

fn read_tensors<R: Read>(
    r: &mut SnapshotReader<R>,
    budget: &std::sync::Arc<crate::tensor::Budget>,
) -> CoreResult<Vec<(String, Tensor)>> {
    let mut b4 = [0u8; 4];
    read_exact_body(r, &mut b4)?;
    let n = u32::from_le_bytes(b4) as usize;
    if n > MAX_KEPT {
        return Err(invalid(format!(
            "snapshot keeps {n} tensors; at most {MAX_KEPT}"
        )));
    }
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for _ in 0..n {
        let mut b2 = [0u8; 2];
        read_exact_body(r, &mut b2)?;
        let len = u16::from_le_bytes(b2) as usize;
        if len == 0 || len > MAX_TENSOR_NAME {
            return Err(invalid(format!("kept tensor name of {len} bytes")));
        }
        let mut name = vec![0u8; len];
        read_exact_body(r, &mut name)?;
        let name = String::from_utf8(name).map_err(|_| invalid("kept tensor name is not UTF-8"))?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(invalid(format!("kept tensor '{name}' appears twice")));
        }
        read_exact_body(r, &mut b2)?;
        let dtype = DType::from_code(i32::from(b2[0]))
            .ok_or_else(|| invalid(format!("kept tensor '{name}' has dtype code {}", b2[0])))?;
        let ndim = b2[1] as usize;
        if ndim > MAX_NDIM {
            return Err(invalid(format!(
                "kept tensor '{name}' has {ndim} dimensions"
            )));
        }
        let mut shape = Vec::with_capacity(ndim);
        let mut b8 = [0u8; 8];
        for _ in 0..ndim {
            read_exact_body(r, &mut b8)?;
            shape.push(
                usize::try_from(u64::from_le_bytes(b8))
                    .map_err(|_| invalid(format!("kept tensor '{name}' is too large")))?,
            );
        }
        read_exact_body(r, &mut b8)?;
        let nbytes = u64::from_le_bytes(b8);
        let expected = shape
            .iter()
            .try_fold(dtype.size() as u64, |a, d| a.checked_mul(*d as u64))
            .ok_or_else(|| invalid(format!("kept tensor '{name}' is too large")))?;
        if nbytes != expected {
            return Err(invalid(format!(
                "kept tensor '{name}' declares {nbytes} bytes; its shape needs {expected}"
            )));
        }
        // The budget bounds the allocation before any byte is read into it.
        let t = Tensor::uninit_in(dtype, &shape, Some(budget)).map_err(|e| {
            CoreError::new(
                ErrorKind::MemoryLimit,
                format!(
                    "kept tensor '{name}' does not fit the function's memory cap: {}",
                    e.message
                ),
            )
        })?;
        if nbytes > 0 {
            let p = t.data_mut_ptr()?;
            // SAFETY: `t` was just allocated contiguous with exactly nbytes
            // bytes and nothing else refers to it yet.
            let dst = unsafe { std::slice::from_raw_parts_mut(p, nbytes as usize) };
            read_exact_body(r, dst)?;
        }
        out.push((name, t));
    }
    let mut probe = [0u8; 1];
    if r.read_body(&mut probe)? != 0 {
        return Err(invalid("tensors section has trailing bytes"));
    }
    Ok(out)
}

fn read_exact_body<R: Read>(r: &mut SnapshotReader<R>, out: &mut [u8]) -> CoreResult<()> {
    if r.read_body(out)? != out.len() {
        return Err(invalid("section body shorter than its contents"));
    }
    Ok(())
}

/// Writes a snapshot of `inst` to `out`.
pub fn save<W: Write>(
    inst: &mut PersistentInstance,
    out: W,
    options: &SaveOptions,
) -> CoreResult<(W, WriteStats)> {
    let function = inst.function.clone();
    let compiled = &function.compiled;
    let meta = Metadata::new(options.tenant_id, options.instance_id.clone(), compiled.id);
    let (store, instance) = inst.parts_mut();
    let globals = capture_globals(compiled, store, instance)?;
    let tables = capture_tables(compiled, store, instance)?;
    let mut w = SnapshotWriter::new(out, &meta, options.write.clone())?;
    if options.embed_module {
        w.write_section_bytes(SectionKind::Module, &compiled.original)?;
    }
    w.write_section_bytes(SectionKind::Globals, &encode_globals(compiled, &globals))?;
    w.write_section_bytes(SectionKind::Tables, &encode_tables(&tables))?;
    // Kept tensors on a device are written from a host copy.
    let kept_host: Vec<(&String, Tensor)> = store
        .data()
        .abi
        .kept
        .iter()
        .map(|(n, k)| {
            Ok((
                n,
                crate::device::to(&k.tensor, crate::tensor::Device::Cpu, None)?,
            ))
        })
        .collect::<CoreResult<_>>()?;
    let kept: Vec<(&String, &Tensor)> = kept_host.iter().map(|(n, t)| (*n, t)).collect();
    write_tensors(&mut w, &kept)?;
    if let Some(export) = &compiled.state.memory {
        let memory = instance
            .get_module_export(&mut *store, export)
            .and_then(|e| e.into_memory())
            .ok_or_else(|| CoreError::internal("instrumented memory export is missing"))?;
        w.write_memory(0, memory.data(&*store))?;
    }
    w.finish()
}

/// What a restore produced, besides the instance.
pub struct Restored {
    pub instance: PersistentInstance,
    pub metadata: Metadata,
    pub verification: Verification,
}

/// Restores an instance from `input`. `resolve` gets the metadata and the
/// embedded module (if any) and returns the function to restore onto; its
/// identity is then checked against the snapshot's.
pub fn restore<R: Read>(
    input: R,
    options: ReadOptions,
    resolve: impl FnOnce(&Metadata, Option<&[u8]>) -> CoreResult<Function>,
) -> CoreResult<Restored> {
    let mut r = SnapshotReader::open(input, options)?;
    let metadata = r.metadata().clone();
    let mut section = r.next_section()?;
    let mut module: Option<Vec<u8>> = None;
    if let Some(s) = section
        && s.kind == SectionKind::Module
    {
        let bytes = r.read_section_to_vec(DEFAULT_MAX_MODULE_BYTES as u64)?;
        if *blake3::hash(&bytes).as_bytes() != metadata.function_hash {
            return Err(invalid(
                "the embedded module does not match the snapshot's function hash",
            ));
        }
        module = Some(bytes);
        section = r.next_section()?;
    }
    let resolved = resolve(&metadata, module.as_deref()).and_then(|f| {
        metadata.check_function(&f.compiled.id)?;
        Ok(f)
    });
    let function = match resolved {
        Ok(f) => f,
        // The section headers that led here are only covered by the file
        // checksum: a damaged file must be reported as damaged, not as a
        // snapshot of something else.
        Err(e) => return Err(r.finish().err().unwrap_or(e)),
    };
    let compiled = function.compiled.clone();
    let mut store = function.new_store();
    let instance = compiled.instantiate_bare(&mut store)?;

    let mut globals = None;
    let mut tables = None;
    let mut tensors = None;
    let mut memory_done = false;
    while let Some(s) = section {
        let dup = |seen: bool| {
            if seen {
                Err(invalid(format!(
                    "snapshot has two {} sections",
                    s.kind.as_str()
                )))
            } else {
                Ok(())
            }
        };
        match s.kind {
            SectionKind::Globals => {
                dup(globals.is_some())?;
                let max = 4 + 18 * compiled.layout.globals.len() as u64;
                let body = r.read_section_to_vec(max)?;
                globals = Some(decode_globals(&compiled, &body)?);
            }
            SectionKind::Tables => {
                dup(tables.is_some())?;
                let max_el = function.limits.max_table_elements;
                let max = 4 + u64::from(compiled.layout.tables) * (8 + 4 * max_el);
                let body = r.read_section_to_vec(max)?;
                tables = Some(decode_tables(&compiled, max_el, &body)?);
            }
            SectionKind::Tensors => {
                dup(tensors.is_some())?;
                let budget = store.data().abi.budget.clone();
                tensors = Some(read_tensors(&mut r, &budget)?);
            }
            SectionKind::Memory => {
                dup(memory_done)?;
                restore_memory(&compiled, &function, &mut store, &instance, &mut r)?;
                memory_done = true;
            }
            SectionKind::Module => {
                return Err(invalid(
                    "the module section must directly follow the metadata",
                ));
            }
            SectionKind::Metadata => return Err(invalid("a second metadata section")),
        }
        section = r.next_section()?;
    }
    let verification = r.finish()?;
    let (Some(globals), Some(tables), Some(tensors)) = (globals, tables, tensors) else {
        return Err(invalid(
            "snapshot lacks its globals, tables or tensors section",
        ));
    };
    if compiled.state.memory.is_some() != memory_done {
        return Err(invalid(if memory_done {
            "snapshot has a memory but the module defines none"
        } else {
            "snapshot has no memory section but the module defines a memory"
        }));
    }
    set_globals(&compiled, &mut store, &instance, &globals)?;
    set_tables(&compiled, &mut store, &instance, &tables)?;
    let kept = &mut store.data_mut().abi.kept;
    kept.clear();
    for (name, tensor) in tensors {
        kept.insert(
            name,
            Kept {
                tensor,
                shared: false,
            },
        );
    }
    Ok(Restored {
        instance: PersistentInstance::from_parts(function, store, instance),
        metadata,
        verification,
    })
}

fn restore_memory<R: Read>(
    compiled: &CompiledModule,
    function: &Function,
    store: &mut Store<StoreData>,
    instance: &Instance,
    r: &mut SnapshotReader<R>,
) -> CoreResult<()> {
    let export = compiled
        .state
        .memory
        .as_ref()
        .ok_or_else(|| invalid("snapshot has a memory but the module defines none"))?;
    let header = r.read_memory_header(function.limits.max_memory_bytes)?;
    if header.index != 0 {
        return Err(invalid(format!(
            "snapshot has memory {}; modules have one",
            header.index
        )));
    }
    let memory = instance
        .get_module_export(&mut *store, export)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| CoreError::internal("instrumented memory export is missing"))?;
    let page = MEMORY_PAGE_SIZE;
    if header.byte_len % page != 0 {
        return Err(invalid("memory size is not a whole number of 64 KiB pages"));
    }
    let initial = memory.data_size(&*store) as u64;
    if header.byte_len < initial {
        return Err(invalid(format!(
            "memory of {} bytes is smaller than the module's initial {initial}",
            header.byte_len
        )));
    }
    if header.byte_len > initial {
        memory
            .grow(&mut *store, (header.byte_len - initial) / page)
            .map_err(|_| {
                CoreError::new(
                    ErrorKind::MemoryLimit,
                    format!(
                        "memory of {} bytes exceeds the function's memory cap",
                        header.byte_len
                    ),
                )
            })?;
    }
    let data = memory.data_mut(&mut *store);
    // Pages past the initial size are fresh zero pages; pages below it hold
    // the module's data segments (or a pre-initialised image) and must be
    // zeroed where the snapshot has none. Zero pages are only read, so an
    // untouched mapping stays unbacked.
    let page = page as usize;
    let mut cursor = 0usize;
    let initial = initial as usize;
    let zero_gap = |from: usize, to: usize, data: &mut [u8]| {
        let mut p = from;
        while p < to.min(initial) {
            let end = (p + page).min(to);
            let chunk = &mut data[p..end];
            if !crate::snapshot::is_zero(chunk) {
                chunk.fill(0);
            }
            p = end;
        }
    };
    for (start, count) in &header.runs {
        let from = *start as usize * page;
        zero_gap(cursor, from, data);
        cursor = (*start as usize + *count as usize) * page;
    }
    zero_gap(cursor, data.len(), data);
    prefault(data, &header.runs, page);
    r.restore_memory(&header, data, false)
}

/// A pre-initialised copy of `function`: a fresh instance runs
/// `init_export` once, and its memory, globals, tables and kept tensors
/// become the starting state of every later instance. Memory and globals go
/// into a rewritten module, so wasmtime maps them copy-on-write into each
/// new instance and instantiation costs what it did before.
pub fn preinitialize(function: &Function, init_export: &str) -> CoreResult<Function> {
    let compiled = &function.compiled;
    if compiled.image.is_some() {
        return Err(CoreError::invalid_args(
            "the function is already pre-initialised",
        ));
    }
    let sig = compiled.resolve_export(Some(init_export))?;
    if !sig.params.is_empty() {
        return Err(CoreError::invalid_args(format!(
            "init export '{init_export}' takes {} parameters; an initialiser takes none",
            sig.params.len()
        )));
    }
    let mut inst = PersistentInstance::new(function)?;
    inst.invoke(Some(init_export), &[], &[], None)?;
    let (store, instance) = inst.parts_mut();
    let globals = capture_globals(compiled, store, instance)?;
    let tables = capture_tables(compiled, store, instance)?;
    let kept: Vec<(String, Tensor)> = store
        .data()
        .abi
        .kept
        .iter()
        .map(|(n, k)| (n.clone(), k.tensor.read_only_view()))
        .collect();
    let memory = match &compiled.state.memory {
        Some(export) => Some(
            instance
                .get_module_export(&mut *store, export)
                .and_then(|e| e.into_memory())
                .ok_or_else(|| CoreError::internal("instrumented memory export is missing"))?,
        ),
        None => None,
    };
    let instrumented = super::instrument::instrument(&compiled.original)?;
    let binary = super::instrument::preinitialize(
        &instrumented.binary,
        &instrumented.layout,
        memory.as_ref().map(|m| m.data(&*store)),
        &globals,
    )?;
    let module = wasmtime::Module::from_binary(super::engine(), &binary).map_err(|e| {
        CoreError::internal(format!(
            "the pre-initialised module does not compile: {e:#}"
        ))
    })?;
    let mut image = super::function::Image {
        init_export: init_export.to_string(),
        tables: Vec::new(),
        kept,
    };
    // Tables are set per instance only when the initialiser changed them.
    let probe = super::function::prepare(
        compiled.id,
        module.clone(),
        instrumented.layout.clone(),
        compiled.original.clone(),
        false,
        None,
    )?;
    let probe_fn = Function::new(std::sync::Arc::new(probe), function.limits)?;
    let mut probe_store = probe_fn.new_store();
    let probe_inst = probe_fn.compiled.instantiate_bare(&mut probe_store)?;
    if capture_tables(&probe_fn.compiled, &mut probe_store, &probe_inst)? != tables {
        image.tables = tables;
    }
    let prepared = super::function::prepare(
        compiled.id,
        module,
        instrumented.layout,
        compiled.original.clone(),
        false,
        Some(image),
    )?;
    Function::with_bindings(
        std::sync::Arc::new(prepared),
        function.limits,
        (*function.bindings).clone(),
    )
    .map(|f| f.with_device(function.device))
}

/// Faults in the pages the runs will fill with one call per run
/// (`MADV_POPULATE_WRITE`, Linux 5.14+) instead of one trap per 4 KiB page
/// as the copy touches them. Best effort: older kernels just fault lazily.
fn prefault(data: &mut [u8], runs: &[(u32, u32)], page: usize) {
    #[cfg(target_os = "linux")]
    for (start, count) in runs {
        let from = *start as usize * page;
        let to = ((*start as usize + *count as usize) * page).min(data.len());
        if to <= from {
            continue;
        }
        // SAFETY: `from..to` lies inside `data` (a live, writable mapping);
        // MADV_POPULATE_WRITE only faults pages in, leaving their contents.
        unsafe {
            libc::madvise(
                data.as_mut_ptr().add(from).cast(),
                to - from,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (data, runs, page);
}
