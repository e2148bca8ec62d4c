//! Loading modules into ready templates and invoking them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::{
    ExternType, Instance, InstancePre, Linker, Module, ModuleExport, Store, Trap, Val,
    WasmBacktrace,
};

use super::cache::ModuleCache;
use super::engine::{EPOCH_TICK, engine};
use super::instrument::{self, Layout, RESERVED_PREFIX};
use super::limits::{Limits, validate_deadline};
use super::store::StoreData;
use super::values::{ArgValue, ResultValue, ValType, lower_args, placeholder, raise};
use super::wasi::{self, ProcExit};
use crate::abi::{self, Bindings};
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::tensor::Tensor;

/// Largest module accepted by default (64 MiB).
pub const DEFAULT_MAX_MODULE_BYTES: usize = 64 << 20;
/// Modules kept ready in memory (LRU).
pub const MEMORY_CACHE_ENTRIES: usize = 256;
/// Exports tried, in order, when a call names none.
pub const DEFAULT_EXPORTS: [&str; 2] = ["_start", "main"];

/// The signature of one exported function.
#[derive(Clone)]
pub struct ExportSig {
    pub name: String,
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
    index: ModuleExport,
}

impl ExportSig {
    /// wasmtime's pre-resolved handle for this export (no name lookup per call).
    pub fn index(&self) -> &ModuleExport {
        &self.index
    }
}

/// A compiled, validated, pre-linked module: shared by every `Function` and
/// instance of the same bytes in the process.
pub struct CompiledModule {
    /// BLAKE3 of the module's bytes as the user gave them.
    pub id: [u8; 32],
    pub module: Module,
    pub pre: InstancePre<StoreData>,
    pub exports: Vec<ExportSig>,
    by_name: HashMap<String, usize>,
    /// What the load-time instrumentation exposes (memory, globals, tables).
    pub layout: Layout,
    /// The module's bytes as given (what `id` hashes; what snapshots embed).
    pub original: Arc<[u8]>,
    pub state: StateExports,
    /// The start function, called on every fresh instance; `None` for a
    /// pre-initialised image, whose start already ran.
    start: Option<ModuleExport>,
    /// Set for a pre-initialised function (see `Function::preinitialize`).
    pub image: Option<Image>,
}

/// Pre-resolved handles of the instrumentation's reserved exports.
pub struct StateExports {
    pub memory: Option<ModuleExport>,
    pub globals: Vec<ModuleExport>,
    pub tables: Vec<ModuleExport>,
    /// (function index, export) for every function a table or global may hold.
    pub funcs: Vec<(u32, ModuleExport)>,
}

/// What a pre-initialised image adds to the module's own data: state that a
/// module rewrite cannot carry.
pub struct Image {
    pub init_export: String,
    /// Table contents to apply to every fresh instance (empty when the
    /// initialiser left the tables as instantiation makes them).
    pub tables: Vec<Vec<Option<u32>>>,
    /// Tensors the initialiser kept, shared by every instance (copied on
    /// first access).
    pub kept: Vec<(String, Tensor)>,
}

impl CompiledModule {
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// The export a call targets: the named one, else `_start`, else `main`.
    pub fn resolve_export(&self, name: Option<&str>) -> CoreResult<&ExportSig> {
        let found = match name {
            Some(n) => self.by_name.get(n),
            None => DEFAULT_EXPORTS.iter().find_map(|n| self.by_name.get(*n)),
        };
        found.map(|&i| &self.exports[i]).ok_or_else(|| {
            let available: Vec<&str> = self.exports.iter().map(|e| e.name.as_str()).collect();
            let wanted = match name {
                Some(n) => format!("no exported function named '{n}'"),
                None => "no export was named and the module exports neither '_start' nor 'main'"
                    .to_string(),
            };
            CoreError::new(
                ErrorKind::MissingExport,
                format!("{wanted}; exported functions: [{}]", available.join(", ")),
            )
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn linker() -> &'static Linker<StoreData> {
    static LINKER: OnceLock<Linker<StoreData>> = OnceLock::new();
    LINKER.get_or_init(|| {
        let mut l = Linker::new(engine());
        if let Err(e) = wasi::add_to_linker(&mut l).and_then(|()| abi::add_to_linker(&mut l)) {
            panic!("tensorwasm: cannot define host functions: {e:#}");
        }
        l
    })
}

pub fn module_cache() -> &'static ModuleCache<CompiledModule> {
    static CACHE: OnceLock<ModuleCache<CompiledModule>> = OnceLock::new();
    CACHE.get_or_init(|| ModuleCache::new(MEMORY_CACHE_ENTRIES))
}

/// WAT text or binary → binary bytes, with the size cap applied to both.
pub fn to_binary(bytes: &[u8], is_text: bool, max_module_bytes: usize) -> CoreResult<Vec<u8>> {
    let too_large = |n: usize| {
        CoreError::new(
            ErrorKind::ModuleTooLarge,
            format!("module is {n} bytes; the limit is {max_module_bytes} bytes"),
        )
    };
    if bytes.len() > max_module_bytes {
        return Err(too_large(bytes.len()));
    }
    if !is_text {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| CoreError::new(ErrorKind::InvalidWasm, "WAT text is not valid UTF-8"))?;
    let binary = wat::parse_str(text)
        .map_err(|e| CoreError::new(ErrorKind::InvalidWasm, format!("invalid WAT text: {e}")))?;
    if binary.len() > max_module_bytes {
        return Err(too_large(binary.len()));
    }
    Ok(binary)
}

/// Compiles (or fetches from cache) a module given as binary bytes.
pub fn load_module(
    binary: &[u8],
    cache_dir: Option<&Path>,
    max_module_bytes: usize,
) -> CoreResult<Arc<CompiledModule>> {
    if binary.len() > max_module_bytes {
        return Err(CoreError::new(
            ErrorKind::ModuleTooLarge,
            format!(
                "module is {} bytes; the limit is {max_module_bytes} bytes",
                binary.len()
            ),
        ));
    }
    if !binary.starts_with(b"\0asm") {
        return Err(CoreError::new(
            ErrorKind::InvalidWasm,
            "not a WebAssembly binary (missing the \\0asm magic); pass WAT as text",
        ));
    }
    let id = *blake3::hash(binary).as_bytes();
    let cache = module_cache();
    if let Some(m) = cache.get(&id) {
        return Ok(m);
    }
    let invalid = |e: wasmtime::Error| {
        CoreError::new(
            ErrorKind::InvalidWasm,
            format!("invalid module: {}", root_message(&e)),
        )
    };
    let instrumented = match instrument::instrument(binary) {
        Ok(i) => i,
        Err(e) => {
            // Prefer the validator's account of what is wrong with the bytes.
            return Err(match Module::validate(engine(), binary) {
                Err(v) => invalid(v),
                Ok(()) => e,
            });
        }
    };
    let module = cache
        .compile(&id, &instrumented.binary, cache_dir)
        .map_err(invalid)?;
    let start = instrumented.layout.start.is_some();
    let compiled = Arc::new(prepare(
        id,
        module,
        instrumented.layout,
        Arc::from(binary),
        start,
        None,
    )?);
    cache.insert(id, compiled.clone());
    Ok(compiled)
}

fn root_message(e: &wasmtime::Error) -> String {
    // wasmtime's chain is "context: cause"; show every level once.
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    parts.join(": ")
}

pub fn prepare(
    id: [u8; 32],
    module: Module,
    layout: Layout,
    original: Arc<[u8]>,
    run_start: bool,
    image: Option<Image>,
) -> CoreResult<CompiledModule> {
    let known = wasi::provided_names();
    for import in module.imports() {
        let provided = matches!(import.ty(), ExternType::Func(_))
            && ((import.module() == wasi::MODULE && known.contains(import.name()))
                || (import.module() == abi::MODULE
                    && abi::provided_names().contains(import.name())));
        if !provided {
            let what = match import.ty() {
                ExternType::Func(_) => "function",
                ExternType::Global(_) => "global",
                ExternType::Table(_) => "table",
                ExternType::Memory(_) => "memory",
                ExternType::Tag(_) => "tag",
            };
            return Err(CoreError::new(
                ErrorKind::UnknownImport,
                format!(
                    "module imports {what} '{}.{}', which this runtime does not provide \
                     (available: the tensor ABI in '{}' and WASI preview 1 in '{}')",
                    import.module(),
                    import.name(),
                    abi::MODULE,
                    wasi::MODULE
                ),
            ));
        }
    }
    let pre = linker().instantiate_pre(&module).map_err(|e| {
        CoreError::new(
            ErrorKind::UnknownImport,
            format!(
                "module imports do not match the runtime's: {}",
                root_message(&e)
            ),
        )
    })?;
    let mut exports = Vec::new();
    let mut by_name = HashMap::new();
    for export in module.exports() {
        if export.name().starts_with(RESERVED_PREFIX) {
            continue;
        }
        if let ExternType::Func(ft) = export.ty() {
            let Some(index) = module.get_export_index(export.name()) else {
                continue;
            };
            by_name.insert(export.name().to_string(), exports.len());
            exports.push(ExportSig {
                name: export.name().to_string(),
                params: ft.params().map(|t| ValType::from_wasmtime(&t)).collect(),
                results: ft.results().map(|t| ValType::from_wasmtime(&t)).collect(),
                index,
            });
        }
    }
    let index = |name: &str| {
        module
            .get_export_index(name)
            .ok_or_else(|| CoreError::internal(format!("instrumented export '{name}' is missing")))
    };
    let state = StateExports {
        memory: match layout.memory {
            Some(_) => Some(index(instrument::MEMORY_EXPORT)?),
            None => None,
        },
        globals: (0..layout.globals.len() as u32)
            .map(|i| index(&instrument::global_export(i)))
            .collect::<CoreResult<_>>()?,
        tables: (0..layout.tables)
            .map(|i| index(&instrument::table_export(i)))
            .collect::<CoreResult<_>>()?,
        funcs: layout
            .funcs
            .iter()
            .map(|f| Ok((*f, index(&instrument::func_export(*f))?)))
            .collect::<CoreResult<_>>()?,
    };
    let start = match (run_start, layout.start) {
        (true, Some(_)) => Some(index(instrument::START_EXPORT)?),
        _ => None,
    };
    Ok(CompiledModule {
        id,
        module,
        pre,
        exports,
        by_name,
        layout,
        original,
        state,
        start,
        image,
    })
}

impl CompiledModule {
    /// Instantiates without running the start function or applying an
    /// image's extras: the bare slate a snapshot is restored onto.
    pub fn instantiate_bare(&self, store: &mut Store<StoreData>) -> CoreResult<Instance> {
        self.pre
            .instantiate(&mut *store)
            .map_err(|e| classify_instantiate_error(e, store.data()))
    }

    /// A fresh instance: instantiated, its start function run, and (for a
    /// pre-initialised function) the image's tables and kept tensors set.
    pub fn instantiate(&self, store: &mut Store<StoreData>) -> CoreResult<Instance> {
        let instance = self.instantiate_bare(store)?;
        if let Some(start) = &self.start {
            let func = instance
                .get_module_export(&mut *store, start)
                .and_then(|e| e.into_func())
                .ok_or_else(|| CoreError::internal("start function vanished"))?;
            func.call(&mut *store, &[], &mut [])
                .map_err(|e| classify_instantiate_error(e, store.data()))?;
        }
        if let Some(image) = &self.image {
            if !image.tables.is_empty() {
                super::capture::set_tables(self, store, &instance, &image.tables)?;
            }
            let kept = &mut store.data_mut().abi.kept;
            for (name, t) in &image.kept {
                kept.insert(
                    name.clone(),
                    crate::abi::Kept {
                        tensor: t.clone(),
                        shared: true,
                    },
                );
            }
        }
        Ok(instance)
    }
}

/// What a successful call returns.
#[derive(Debug, Clone)]
pub struct InvokeOutcome {
    pub values: Vec<ResultValue>,
    pub stdout: String,
    pub stderr: String,
    pub output_truncated: bool,
    pub duration: Duration,
    /// Tensors the guest named with `output_set`, in the order first set.
    pub outputs: Vec<(String, Tensor)>,
}

/// A compiled module with the limits its instances run under and the
/// tensors bound to it.
#[derive(Clone)]
pub struct Function {
    pub compiled: Arc<CompiledModule>,
    pub limits: Limits,
    pub bindings: Arc<Bindings>,
    /// Where its instances run ops (`crate::device`).
    pub device: crate::tensor::Device,
}

impl Function {
    pub fn new(compiled: Arc<CompiledModule>, limits: Limits) -> CoreResult<Self> {
        Self::with_bindings(compiled, limits, Bindings::default())
    }

    pub fn with_bindings(
        compiled: Arc<CompiledModule>,
        limits: Limits,
        bindings: Bindings,
    ) -> CoreResult<Self> {
        limits.validate()?;
        Ok(Function {
            compiled,
            limits,
            bindings: Arc::new(bindings),
            device: crate::tensor::Device::Cpu,
        })
    }

    /// The same function, its instances running ops on `device`.
    pub fn with_device(mut self, device: crate::tensor::Device) -> Self {
        self.device = device;
        self
    }

    /// A new store set up with this function's limits.
    pub fn new_store(&self) -> Store<StoreData> {
        let mut store = Store::new(
            engine(),
            StoreData::new(&self.limits, self.bindings.clone(), self.device),
        );
        store.limiter(|d| &mut d.limiter);
        store.epoch_deadline_trap();
        // No call is running yet; a generous deadline until one starts.
        store.set_epoch_deadline(deadline_ticks(self.limits.deadline_ms));
        store
    }

    /// Calls `export` on a fresh instance (instantiated from the template).
    pub fn invoke(
        &self,
        export: Option<&str>,
        args: &[ArgValue],
        inputs: &[(String, Tensor)],
        deadline_ms: Option<u64>,
    ) -> CoreResult<InvokeOutcome> {
        let sig = self.compiled.resolve_export(export)?;
        let params = lower_args(&sig.name, &sig.params, args)?;
        let deadline_ms = deadline_ms.unwrap_or(self.limits.deadline_ms);
        validate_deadline(deadline_ms)?;
        let started = Instant::now();
        let mut store = self.new_store();
        store.data_mut().begin_call(inputs);
        store.set_epoch_deadline(deadline_ticks(deadline_ms));
        let instance = self.compiled.instantiate(&mut store)?;
        let func = instance
            .get_module_export(&mut store, &sig.index)
            .and_then(|e| e.into_func())
            .ok_or_else(|| CoreError::internal("export vanished after instantiation"))?;
        call(&mut store, &func, sig, &params, deadline_ms, started)
    }
}

/// Epoch ticks for a deadline: rounded up, plus one because the current tick
/// is already partly spent, plus however far the ticker lags the clock.
pub fn deadline_ticks(deadline_ms: u64) -> u64 {
    let tick_ms = EPOCH_TICK.as_millis().max(1) as u64;
    deadline_ms.div_ceil(tick_ms) + 1 + super::engine::epoch_lag()
}

/// Runs `func` in `store` and maps every outcome to ours.
pub fn call(
    store: &mut Store<StoreData>,
    func: &wasmtime::Func,
    sig: &ExportSig,
    params: &[Val],
    deadline_ms: u64,
    started: Instant,
) -> CoreResult<InvokeOutcome> {
    let mut results: Vec<Val> = sig.results.iter().map(|t| placeholder(*t)).collect();
    // On a real GPU, the call's device work runs on a stream of its own
    // (until the outputs below are back on the host).
    let _stream = crate::device::cuda::call_scope(store.data().abi.device);
    let outcome = func.call(&mut *store, params, &mut results);
    let data = store.data_mut();
    let (stdout, out_cut) = data.wasi.stdout.take_text();
    let (stderr, err_cut) = data.wasi.stderr.take_text();
    // Outputs come back as host tensors wherever the function ran.
    let outputs: CoreResult<Vec<(String, Tensor)>> = data
        .end_call()
        .into_iter()
        .map(|(name, t)| {
            Ok((
                name,
                crate::device::to(&t, crate::tensor::Device::Cpu, None)?,
            ))
        })
        .collect();
    let outputs = match (&outcome, outputs) {
        (Ok(()), Err(e)) => return Err(e),
        (_, Ok(o)) => o,
        (Err(_), Err(_)) => Vec::new(),
    };
    match outcome {
        Ok(()) => Ok(InvokeOutcome {
            values: results.iter().map(raise).collect(),
            stdout,
            stderr,
            output_truncated: out_cut || err_cut,
            duration: started.elapsed(),
            outputs,
        }),
        Err(e) => {
            if let Some(ProcExit(0)) = e.downcast_ref::<ProcExit>() {
                // `proc_exit(0)` is how a WASI command returns normally.
                return Ok(InvokeOutcome {
                    values: Vec::new(),
                    stdout,
                    stderr,
                    output_truncated: out_cut || err_cut,
                    duration: started.elapsed(),
                    outputs,
                });
            }
            let mut err = classify_call_error(&e, data, &sig.name, deadline_ms, started);
            err.stdout = Some(stdout);
            err.stderr = Some(stderr);
            Err(err)
        }
    }
}

/// wasmtime's trap code, named as wasmtime's C and Python APIs name it.
pub fn trap_code(t: Trap) -> &'static str {
    match t {
        Trap::StackOverflow => "stack_overflow",
        Trap::MemoryOutOfBounds => "memory_out_of_bounds",
        Trap::HeapMisaligned => "heap_misaligned",
        Trap::TableOutOfBounds => "table_out_of_bounds",
        Trap::IndirectCallToNull => "indirect_call_to_null",
        Trap::BadSignature => "bad_signature",
        Trap::IntegerOverflow => "integer_overflow",
        Trap::IntegerDivisionByZero => "integer_division_by_zero",
        Trap::BadConversionToInteger => "bad_conversion_to_integer",
        Trap::UnreachableCodeReached => "unreachable_code_reached",
        Trap::Interrupt => "interrupt",
        Trap::OutOfFuel => "out_of_fuel",
        Trap::NullReference => "null_reference",
        Trap::ArrayOutOfBounds => "array_out_of_bounds",
        Trap::AllocationTooLarge => "allocation_too_large",
        Trap::CastFailure => "cast_failure",
        _ => "other",
    }
}

fn classify_call_error(
    e: &wasmtime::Error,
    data: &StoreData,
    export: &str,
    deadline_ms: u64,
    started: Instant,
) -> CoreError {
    if let Some(ProcExit(code)) = e.downcast_ref::<ProcExit>() {
        let mut err = CoreError::new(
            ErrorKind::Trap,
            format!("export '{export}': guest exited with status {code} (proc_exit)"),
        );
        err.exit_code = Some(*code);
        return err;
    }
    let backtrace = e
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| format!("\n{bt}"))
        .unwrap_or_default();
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CoreError::new(
            ErrorKind::InvokeTimeout,
            format!(
                "export '{export}' ran past its deadline of {deadline_ms} ms (stopped after {} ms)",
                started.elapsed().as_millis()
            ),
        ),
        Some(t) if data.limiter.memory_limit_hit || data.limiter.table_limit_hit => {
            let what = if data.limiter.memory_limit_hit {
                "linear memory"
            } else {
                "table"
            };
            let mut err = CoreError::new(
                ErrorKind::MemoryLimit,
                format!(
                    "export '{export}' trapped ({t}) after the guest was refused more {what} than its cap allows{backtrace}"
                ),
            );
            err.trap_code = Some(trap_code(*t));
            err
        }
        Some(t) => {
            let mut err = CoreError::new(
                ErrorKind::Trap,
                format!("export '{export}' trapped: {t}{backtrace}"),
            );
            err.trap_code = Some(trap_code(*t));
            err
        }
        None => CoreError::internal(format!(
            "export '{export}' failed in the host: {}",
            root_message(e)
        )),
    }
}

pub fn classify_instantiate_error(e: wasmtime::Error, data: &StoreData) -> CoreError {
    if data.limiter.memory_limit_hit || data.limiter.table_limit_hit {
        return CoreError::new(
            ErrorKind::MemoryLimit,
            format!(
                "instantiation needs more memory than the function's cap: {}",
                root_message(&e)
            ),
        );
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return CoreError::new(
            ErrorKind::ResourceExhausted,
            format!(
                "too many live instances in this process ({}); close persistent instances or raise TENSOR_WASM_POOL_INSTANCES",
                root_message(&e)
            ),
        );
    }
    if let Some(t) = e.downcast_ref::<Trap>() {
        // A start function or an out-of-bounds data segment trapped.
        let mut err = CoreError::new(ErrorKind::Trap, format!("instantiation trapped: {t}"));
        err.trap_code = Some(trap_code(*t));
        return err;
    }
    CoreError::new(
        ErrorKind::Internal,
        format!("instantiation failed: {}", root_message(&e)),
    )
}
