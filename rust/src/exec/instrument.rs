//! Load-time instrumentation that makes an instance's whole state reachable.
//!
//! A snapshot must capture every global (internal ones too), the linear
//! memory and the tables, and a restore must write them back. wasmtime only
//! reaches what a module exports, so before compiling, the module is
//! rewritten to also export, under reserved names:
//!
//! * `tensorwasm:memory` — memory 0, when the module defines one;
//! * `tensorwasm:global:N` — every global N;
//! * `tensorwasm:table:N` — every table N;
//! * `tensorwasm:func:N` — every function that can sit in a table or a
//!   `funcref` global (those named by element segments, global and table
//!   initialisers, and exports), so a captured reference can be named by
//!   its index and found again in a new instance;
//! * `tensorwasm:start` — the start function, whose section is removed: the
//!   executor calls it right after instantiating a fresh instance, and does
//!   not call it when restoring a snapshot (its effects are in the snapshot).
//!
//! Only the export section changes (and the start section goes); every
//! index, every function body and every other section is copied byte for
//! byte, so the module's semantics are exactly the original's. The
//! function's identity stays the BLAKE3 of the bytes the user gave.
//!
//! [`preinitialize`] then builds a second rewrite for pre-initialised
//! functions: the captured memory becomes the module's data, the captured
//! globals its initialisers, so wasmtime maps the image copy-on-write into
//! every new instance.

use std::ops::Range;

use wasmparser::{
    BinaryReader, DataKind, ElementItems, ElementSectionReader, ExportSectionReader, ExternalKind,
    FunctionSectionReader, GlobalSectionReader, ImportSectionReader, Imports, MemorySectionReader,
    Operator, TableInit, TableSectionReader, TypeRef, ValType as WpValType,
};

use crate::error::{CoreError, CoreResult, ErrorKind};

/// Every reserved export name starts with this; modules may not use it.
pub const RESERVED_PREFIX: &str = "tensorwasm:";
pub const MEMORY_EXPORT: &str = "tensorwasm:memory";
pub const START_EXPORT: &str = "tensorwasm:start";

pub fn global_export(i: u32) -> String {
    format!("tensorwasm:global:{i}")
}

pub fn table_export(i: u32) -> String {
    format!("tensorwasm:table:{i}")
}

pub fn func_export(i: u32) -> String {
    format!("tensorwasm:func:{i}")
}

/// The value type of a global, as snapshots record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalKind {
    I32 = 0,
    I64 = 1,
    F32 = 2,
    F64 = 3,
    V128 = 4,
    FuncRef = 5,
}

impl GlobalKind {
    pub fn from_u8(v: u8) -> Option<GlobalKind> {
        [
            GlobalKind::I32,
            GlobalKind::I64,
            GlobalKind::F32,
            GlobalKind::F64,
            GlobalKind::V128,
            GlobalKind::FuncRef,
        ]
        .into_iter()
        .find(|k| *k as u8 == v)
    }

    /// Bytes of the value in a snapshot (a funcref is a u32 function index).
    pub fn value_len(self) -> usize {
        match self {
            GlobalKind::I32 | GlobalKind::F32 | GlobalKind::FuncRef => 4,
            GlobalKind::I64 | GlobalKind::F64 => 8,
            GlobalKind::V128 => 16,
        }
    }

    fn type_byte(self) -> u8 {
        match self {
            GlobalKind::I32 => 0x7f,
            GlobalKind::I64 => 0x7e,
            GlobalKind::F32 => 0x7d,
            GlobalKind::F64 => 0x7c,
            GlobalKind::V128 => 0x7b,
            GlobalKind::FuncRef => 0x70,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalSlot {
    pub kind: GlobalKind,
    pub mutable: bool,
}

/// What the instrumented module exposes, by index.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub globals: Vec<GlobalSlot>,
    /// Memory 0's declared limits in 64 KiB pages, when the module defines one.
    pub memory: Option<(u64, Option<u64>)>,
    pub tables: u32,
    /// Functions exported as `tensorwasm:func:N`, ascending.
    pub funcs: Vec<u32>,
    /// The original start function, now exported as `tensorwasm:start`.
    pub start: Option<u32>,
}

/// The rewritten module and what it exposes.
pub struct Instrumented {
    pub binary: Vec<u8>,
    pub layout: Layout,
}

const SEC_CUSTOM: u8 = 0;
const SEC_IMPORT: u8 = 2;
const SEC_FUNCTION: u8 = 3;
const SEC_TABLE: u8 = 4;
const SEC_MEMORY: u8 = 5;
const SEC_GLOBAL: u8 = 6;
const SEC_EXPORT: u8 = 7;
const SEC_START: u8 = 8;
const SEC_ELEMENT: u8 = 9;
const SEC_CODE: u8 = 10;
const SEC_DATA: u8 = 11;
const SEC_DATACOUNT: u8 = 12;
const SEC_TAG: u8 = 13;

/// Position of a section id in the order the binary format requires.
fn order(id: u8) -> u8 {
    match id {
        1..=5 => id,
        SEC_TAG => 6,
        SEC_GLOBAL => 7,
        SEC_EXPORT => 8,
        SEC_START => 9,
        SEC_ELEMENT => 10,
        SEC_DATACOUNT => 11,
        SEC_CODE => 12,
        SEC_DATA => 13,
        _ => 0,
    }
}

struct RawSection {
    id: u8,
    /// The whole section: id byte, size, payload.
    whole: Range<usize>,
    payload: Range<usize>,
}

fn bad(msg: impl Into<String>) -> CoreError {
    CoreError::new(
        ErrorKind::InvalidWasm,
        format!("invalid module: {}", msg.into()),
    )
}

fn wp(e: wasmparser::BinaryReaderError) -> CoreError {
    bad(e.to_string())
}

fn read_leb_u32(bytes: &[u8], pos: &mut usize) -> CoreResult<u32> {
    let mut result: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes
            .get(*pos)
            .ok_or_else(|| bad("unexpected end of a LEB128 number"))?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(result).map_err(|_| bad("LEB128 number out of range"));
        }
    }
    Err(bad("LEB128 number too long"))
}

fn sections(binary: &[u8]) -> CoreResult<Vec<RawSection>> {
    if binary.len() < 8 || &binary[0..4] != b"\0asm" {
        return Err(bad("missing the \\0asm header"));
    }
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < binary.len() {
        let start = pos;
        let id = binary[pos];
        pos += 1;
        let size = read_leb_u32(binary, &mut pos)? as usize;
        let end = pos
            .checked_add(size)
            .filter(|e| *e <= binary.len())
            .ok_or_else(|| bad(format!("section {id} runs past the end of the module")))?;
        out.push(RawSection {
            id,
            whole: start..end,
            payload: pos..end,
        });
        pos = end;
    }
    Ok(out)
}

fn reader<'a>(binary: &'a [u8], s: &RawSection) -> BinaryReader<'a> {
    BinaryReader::new(&binary[s.payload.clone()], s.payload.start as u64)
}

pub fn write_leb_u32(out: &mut Vec<u8>, v: u32) {
    write_leb_u64(out, u64::from(v));
}

fn write_leb_u64(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn write_sleb_i64(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0);
        if done {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn push_section(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.push(id);
    // Fits: payloads are built from a module below the size cap.
    write_leb_u32(out, payload.len() as u32);
    out.extend_from_slice(payload);
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    write_leb_u32(out, name.len() as u32);
    out.extend_from_slice(name.as_bytes());
}

fn ref_funcs(expr: &wasmparser::ConstExpr<'_>, into: &mut Vec<u32>) -> CoreResult<()> {
    let mut ops = expr.get_operators_reader();
    while !ops.eof() {
        if let Operator::RefFunc { function_index } = ops.read().map_err(wp)? {
            into.push(function_index);
        }
    }
    Ok(())
}

fn global_kind(t: WpValType) -> CoreResult<GlobalKind> {
    Ok(match t {
        WpValType::I32 => GlobalKind::I32,
        WpValType::I64 => GlobalKind::I64,
        WpValType::F32 => GlobalKind::F32,
        WpValType::F64 => GlobalKind::F64,
        WpValType::V128 => GlobalKind::V128,
        WpValType::Ref(r) if r.is_func_ref() => GlobalKind::FuncRef,
        other => {
            return Err(bad(format!(
                "globals of type {other} are not supported (the GC proposal is off)"
            )));
        }
    })
}

/// Rewrites `binary` (a module that passed the size cap) as described in the
/// module docs. Refuses modules that already use a reserved export name.
pub fn instrument(binary: &[u8]) -> CoreResult<Instrumented> {
    let secs = sections(binary)?;
    let mut layout = Layout::default();
    let mut imported_funcs: u32 = 0;
    let mut defined_funcs: u32 = 0;
    let mut referenced: Vec<u32> = Vec::new();
    let mut export_count: u32 = 0;
    let mut export_rest: Range<usize> = 0..0;
    let mut has_exports = false;
    for s in &secs {
        match s.id {
            SEC_IMPORT => {
                for group in ImportSectionReader::new(reader(binary, s)).map_err(wp)? {
                    let types: Vec<TypeRef> = match group.map_err(wp)? {
                        Imports::Single(_, i) => vec![i.ty],
                        Imports::Compact1 { items, .. } => items
                            .into_iter()
                            .map(|i| i.map(|i| i.ty))
                            .collect::<Result<_, _>>()
                            .map_err(wp)?,
                        Imports::Compact2 { ty, names, .. } => vec![ty; names.count() as usize],
                    };
                    for ty in types {
                        match ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => imported_funcs += 1,
                            // Refused later by the import check with a clear
                            // message; instrumenting them is never needed.
                            _ => {}
                        }
                    }
                }
            }
            SEC_FUNCTION => {
                defined_funcs = FunctionSectionReader::new(reader(binary, s))
                    .map_err(wp)?
                    .count();
            }
            SEC_TABLE => {
                for t in TableSectionReader::new(reader(binary, s)).map_err(wp)? {
                    if let TableInit::Expr(e) = t.map_err(wp)?.init {
                        ref_funcs(&e, &mut referenced)?;
                    }
                    layout.tables += 1;
                }
            }
            SEC_MEMORY => {
                for m in MemorySectionReader::new(reader(binary, s)).map_err(wp)? {
                    let m = m.map_err(wp)?;
                    if layout.memory.is_none() {
                        layout.memory = Some((m.initial, m.maximum));
                    }
                }
            }
            SEC_GLOBAL => {
                for g in GlobalSectionReader::new(reader(binary, s)).map_err(wp)? {
                    let g = g.map_err(wp)?;
                    ref_funcs(&g.init_expr, &mut referenced)?;
                    layout.globals.push(GlobalSlot {
                        kind: global_kind(g.ty.content_type)?,
                        mutable: g.ty.mutable,
                    });
                }
            }
            SEC_EXPORT => {
                has_exports = true;
                let exports = ExportSectionReader::new(reader(binary, s)).map_err(wp)?;
                export_count = exports.count();
                for e in exports.clone() {
                    let e = e.map_err(wp)?;
                    if e.name.starts_with(RESERVED_PREFIX) {
                        return Err(bad(format!(
                            "export name '{}' uses the reserved prefix '{RESERVED_PREFIX}'",
                            e.name
                        )));
                    }
                    if e.kind == ExternalKind::Func {
                        referenced.push(e.index);
                    }
                }
                let mut pos = s.payload.start;
                read_leb_u32(binary, &mut pos)?;
                export_rest = pos..s.payload.end;
            }
            SEC_START => {
                let mut pos = s.payload.start;
                layout.start = Some(read_leb_u32(binary, &mut pos)?);
            }
            SEC_ELEMENT => {
                for e in ElementSectionReader::new(reader(binary, s)).map_err(wp)? {
                    match e.map_err(wp)?.items {
                        ElementItems::Functions(fs) => {
                            for f in fs {
                                referenced.push(f.map_err(wp)?);
                            }
                        }
                        ElementItems::Expressions(_, exprs) => {
                            for x in exprs {
                                ref_funcs(&x.map_err(wp)?, &mut referenced)?;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let total_funcs = imported_funcs.saturating_add(defined_funcs);
    referenced.retain(|f| *f < total_funcs);
    referenced.sort_unstable();
    referenced.dedup();
    layout.funcs = referenced;

    let mut extra: Vec<(String, u8, u32)> = Vec::new();
    if layout.memory.is_some() {
        extra.push((MEMORY_EXPORT.to_string(), 2, 0));
    }
    for i in 0..layout.globals.len() as u32 {
        extra.push((global_export(i), 3, i));
    }
    for i in 0..layout.tables {
        extra.push((table_export(i), 1, i));
    }
    for f in &layout.funcs {
        extra.push((func_export(*f), 0, *f));
    }
    if let Some(f) = layout.start {
        extra.push((START_EXPORT.to_string(), 0, f));
    }
    let mut exports = Vec::new();
    write_leb_u32(&mut exports, export_count + extra.len() as u32);
    exports.extend_from_slice(&binary[export_rest]);
    for (name, kind, index) in &extra {
        push_name(&mut exports, name);
        exports.push(*kind);
        write_leb_u32(&mut exports, *index);
    }

    let mut out = Vec::with_capacity(binary.len() + exports.len() + 16);
    out.extend_from_slice(&binary[0..8]);
    let mut placed = false;
    for s in &secs {
        if !placed && !has_exports && s.id != SEC_CUSTOM && order(s.id) > order(SEC_EXPORT) {
            push_section(&mut out, SEC_EXPORT, &exports);
            placed = true;
        }
        match s.id {
            SEC_EXPORT => {
                push_section(&mut out, SEC_EXPORT, &exports);
                placed = true;
            }
            SEC_START => {}
            _ => out.extend_from_slice(&binary[s.whole.clone()]),
        }
    }
    if !placed {
        push_section(&mut out, SEC_EXPORT, &exports);
    }
    Ok(Instrumented {
        binary: out,
        layout,
    })
}

/// A captured global value, as the module's own types hold it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GlobalValue {
    I32(i32),
    I64(i64),
    /// Raw bits: NaN payloads survive.
    F32(u32),
    F64(u64),
    V128(u128),
    /// A function index, or `None` for `ref.null func`.
    FuncRef(Option<u32>),
}

/// Largest run of zero bytes kept inside one data segment before it is cut
/// in two (fewer, larger segments make a smaller module).
const SEGMENT_GAP: usize = 4096;

/// Builds the pre-initialised module: `instrumented` (the output of
/// [`instrument`]) with memory 0 starting as `memory`, every global starting
/// at `globals`, and no start function. Passive data segments are kept as
/// they are (at their original indices); active ones become empty.
pub fn preinitialize(
    instrumented: &[u8],
    layout: &Layout,
    memory: Option<&[u8]>,
    globals: &[GlobalValue],
) -> CoreResult<Vec<u8>> {
    if globals.len() != layout.globals.len() {
        return Err(CoreError::internal(
            "pre-initialisation captured a different number of globals",
        ));
    }
    let secs = sections(instrumented)?;
    let page = 65536usize;
    let mut new_segments: Vec<(usize, &[u8])> = Vec::new();
    if let Some(mem) = memory {
        let mut i = 0;
        while i < mem.len() {
            if mem[i] == 0 {
                i += 1;
                continue;
            }
            // A segment runs until SEGMENT_GAP zero bytes in a row.
            let start = i;
            let mut last_nonzero = i;
            let mut j = i;
            while j < mem.len() && j - last_nonzero <= SEGMENT_GAP {
                if mem[j] != 0 {
                    last_nonzero = j;
                }
                j += 1;
            }
            new_segments.push((start, &mem[start..=last_nonzero]));
            i = last_nonzero + 1;
        }
    }
    let mut out = Vec::with_capacity(instrumented.len() + memory.map_or(0, |m| m.len() / 2));
    out.extend_from_slice(&instrumented[0..8]);
    let mut had_data = false;
    for s in &secs {
        match s.id {
            SEC_MEMORY => {
                let mut payload = Vec::new();
                let mut first = true;
                let mems = MemorySectionReader::new(reader(instrumented, s)).map_err(wp)?;
                let count = mems.count();
                for m in mems {
                    let m = m.map_err(wp)?;
                    let initial = match (first, memory) {
                        (true, Some(mem)) => mem.len().div_ceil(page) as u64,
                        _ => m.initial,
                    };
                    first = false;
                    payload.push(u8::from(m.maximum.is_some()));
                    write_leb_u64(&mut payload, initial);
                    if let Some(max) = m.maximum {
                        write_leb_u64(&mut payload, max);
                    }
                }
                let mut section = Vec::new();
                write_leb_u32(&mut section, count);
                section.extend_from_slice(&payload);
                push_section(&mut out, SEC_MEMORY, &section);
            }
            SEC_GLOBAL => {
                let mut payload = Vec::new();
                write_leb_u32(&mut payload, globals.len() as u32);
                for (slot, v) in layout.globals.iter().zip(globals) {
                    payload.push(slot.kind.type_byte());
                    payload.push(u8::from(slot.mutable));
                    encode_const(&mut payload, v);
                    payload.push(0x0b);
                }
                push_section(&mut out, SEC_GLOBAL, &payload);
            }
            SEC_START => {}
            SEC_DATACOUNT => {
                // Rewritten with the final count once the data section is built.
                let mut pos = s.payload.start;
                let data_count = read_leb_u32(instrumented, &mut pos)?;
                let mut payload = Vec::new();
                write_leb_u32(&mut payload, data_count + new_segments.len() as u32);
                push_section(&mut out, SEC_DATACOUNT, &payload);
            }
            SEC_DATA => {
                had_data = true;
                let data =
                    wasmparser::DataSectionReader::new(reader(instrumented, s)).map_err(wp)?;
                let mut payload = Vec::new();
                write_leb_u32(&mut payload, data.count() + new_segments.len() as u32);
                for d in data {
                    let d = d.map_err(wp)?;
                    match d.kind {
                        DataKind::Passive => {
                            let r = d.range.start as usize..d.range.end as usize;
                            payload.extend_from_slice(&instrumented[r]);
                        }
                        // Its bytes are in the captured memory already.
                        DataKind::Active { .. } => {
                            payload.extend_from_slice(&[0, 0x41, 0, 0x0b, 0])
                        }
                    }
                }
                push_segments(&mut payload, &new_segments);
                push_section(&mut out, SEC_DATA, &payload);
            }
            SEC_CUSTOM if !had_data && order_after_data(&secs, s) && !new_segments.is_empty() => {
                // A trailing custom section: the new data section goes first.
                push_new_data(&mut out, &new_segments);
                had_data = true;
                out.extend_from_slice(&instrumented[s.whole.clone()]);
            }
            _ => out.extend_from_slice(&instrumented[s.whole.clone()]),
        }
    }
    if !had_data && !new_segments.is_empty() {
        push_new_data(&mut out, &new_segments);
    }
    Ok(out)
}

/// True when every non-custom section precedes `s` (so a data section
/// inserted before `s` is in order).
fn order_after_data(secs: &[RawSection], s: &RawSection) -> bool {
    !secs
        .iter()
        .any(|o| o.whole.start > s.whole.start && o.id != SEC_CUSTOM)
}

fn push_new_data(out: &mut Vec<u8>, segments: &[(usize, &[u8])]) {
    let mut payload = Vec::new();
    write_leb_u32(&mut payload, segments.len() as u32);
    push_segments(&mut payload, segments);
    push_section(out, SEC_DATA, &payload);
}

fn push_segments(payload: &mut Vec<u8>, segments: &[(usize, &[u8])]) {
    for (offset, bytes) in segments {
        payload.push(0);
        payload.push(0x41);
        // i32.const takes a signed immediate: offsets past 2 GiB wrap.
        write_sleb_i64(payload, i64::from(*offset as u32 as i32));
        payload.push(0x0b);
        write_leb_u32(payload, bytes.len() as u32);
        payload.extend_from_slice(bytes);
    }
}

fn encode_const(out: &mut Vec<u8>, v: &GlobalValue) {
    match *v {
        GlobalValue::I32(x) => {
            out.push(0x41);
            write_sleb_i64(out, i64::from(x));
        }
        GlobalValue::I64(x) => {
            out.push(0x42);
            write_sleb_i64(out, x);
        }
        GlobalValue::F32(bits) => {
            out.push(0x43);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        GlobalValue::F64(bits) => {
            out.push(0x44);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        GlobalValue::V128(bits) => {
            out.extend_from_slice(&[0xfd, 0x0c]);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        GlobalValue::FuncRef(Some(f)) => {
            out.push(0xd2);
            write_leb_u32(out, f);
        }
        GlobalValue::FuncRef(None) => out.extend_from_slice(&[0xd0, 0x70]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(binary: &[u8]) -> Vec<String> {
        let secs = sections(binary).unwrap();
        let mut v = Vec::new();
        for s in &secs {
            if s.id == SEC_EXPORT {
                for e in ExportSectionReader::new(reader(binary, s)).unwrap() {
                    v.push(e.unwrap().name.to_string());
                }
            }
        }
        v
    }

    #[test]
    fn exports_internal_state_and_drops_start() {
        let wasm = wat::parse_str(
            r#"(module
                (memory 1)
                (global $g (mut i32) (i32.const 7))
                (global i64 (i64.const 1))
                (table 2 funcref)
                (elem (i32.const 0) $f)
                (func $f (result i32) global.get $g)
                (func $s (global.set $g (i32.const 9)))
                (start $s)
                (export "f" (func $f)))"#,
        )
        .unwrap();
        let out = instrument(&wasm).unwrap();
        assert_eq!(out.layout.globals.len(), 2);
        assert!(out.layout.globals[0].mutable && !out.layout.globals[1].mutable);
        assert_eq!(out.layout.tables, 1);
        assert_eq!(out.layout.funcs, vec![0]);
        assert_eq!(out.layout.start, Some(1));
        assert_eq!(out.layout.memory, Some((1, None)));
        let n = names(&out.binary);
        for want in [
            "f",
            "tensorwasm:memory",
            "tensorwasm:global:0",
            "tensorwasm:global:1",
            "tensorwasm:table:0",
            "tensorwasm:func:0",
            "tensorwasm:start",
        ] {
            assert!(n.iter().any(|x| x == want), "missing {want} in {n:?}");
        }
        wasmparser::Validator::new()
            .validate_all(&out.binary)
            .unwrap();
        assert!(
            sections(&out.binary)
                .unwrap()
                .iter()
                .all(|s| s.id != SEC_START)
        );
    }

    #[test]
    fn module_without_exports_gets_a_section_in_order() {
        let wasm = wat::parse_str(
            "(module (memory 1) (global (mut i32) (i32.const 1)) (func) (data (i32.const 0) \"\"))",
        )
        .unwrap();
        let out = instrument(&wasm).unwrap();
        wasmparser::Validator::new()
            .validate_all(&out.binary)
            .unwrap();
        assert_eq!(
            names(&out.binary),
            vec!["tensorwasm:memory", "tensorwasm:global:0"]
        );
    }

    #[test]
    fn reserved_names_are_refused() {
        let wasm = wat::parse_str(r#"(module (func (export "tensorwasm:x")))"#).unwrap();
        let e = instrument(&wasm).err().unwrap();
        assert_eq!(e.kind, ErrorKind::InvalidWasm);
        assert!(e.message.contains("reserved"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b"\0asm\x01\0\0\0\x07\xff\xff\xff\xff\x0f"[..],
            b"\0asm\x01\0\0\0\x07\x05\x01",
            b"\0asm",
            b"\0asm\x01\0\0\0\x06\x02\x05\x7f",
        ] {
            assert!(instrument(bytes).is_err());
        }
    }

    #[test]
    fn preinitialized_module_is_valid_and_keeps_passive_segments() {
        let wasm = wat::parse_str(
            r#"(module
                (memory 1 10)
                (global $g (mut i32) (i32.const 0))
                (global $r (mut funcref) (ref.null func))
                (func $f)
                (elem declare func $f)
                (data (i32.const 16) "active")
                (data $p "passive")
                (func (export "use") (memory.init $p (i32.const 0) (i32.const 0) (i32.const 7)) (data.drop $p)))"#,
        )
        .unwrap();
        let inst = instrument(&wasm).unwrap();
        let mut mem = vec![0u8; 3 * 65536];
        mem[100] = 1;
        mem[70000..70010].fill(2);
        let out = preinitialize(
            &inst.binary,
            &inst.layout,
            Some(&mem),
            &[GlobalValue::I32(-5), GlobalValue::FuncRef(Some(0))],
        )
        .unwrap();
        wasmparser::Validator::new().validate_all(&out).unwrap();
    }
}
