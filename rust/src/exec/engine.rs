//! The process-wide wasmtime engine and its epoch ticker.
//!
//! One engine serves every function in the process so compiled code, type
//! registries and the instance pool are shared. Its configuration is fixed at
//! first use; the set of enabled WebAssembly proposals is part of the public
//! contract (pinned by a test) because a guest built for one set must not
//! silently meet another.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// Period of the epoch ticker. Deadlines are enforced to within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Largest linear memory any function may be given (its own cap is lower).
/// Wasm32 cannot address more than 4 GiB, so this is also the hard ceiling.
pub const MAX_MEMORY_BYTES_CEILING: u64 = 4 << 30;

/// Process-wide sizing of the pooling allocator.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instance slots (fresh and persistent instances alive at once).
    pub pool_instances: u32,
    /// Elements per table slot in the pool (a per-function cap may be lower).
    pub pool_table_elements: usize,
    /// Wasm stack budget per call, bytes.
    pub max_wasm_stack_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pool_instances: 1000,
            pool_table_elements: 100_000,
            max_wasm_stack_bytes: 512 << 10,
        }
    }
}

impl EngineConfig {
    /// Reads `TENSOR_WASM_POOL_INSTANCES` (the only engine knob users tune).
    pub fn from_env() -> Self {
        let mut cfg = EngineConfig::default();
        if let Some(n) = std::env::var("TENSOR_WASM_POOL_INSTANCES")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n > 0)
        {
            cfg.pool_instances = n;
        }
        cfg
    }
}

type Flag = wasmtime::WasmFeatures;

/// The WebAssembly proposals and whether this runtime enables them.
///
/// On: what C, C++ and Rust toolchains emit by default today. Off: proposals
/// that would break snapshots (threads, shared memory, multiple memories,
/// memory64), non-determinism (relaxed SIMD) or that need a GC/exception
/// runtime nobody asked for. Every one is set explicitly, so a wasmtime
/// upgrade that flips a default cannot change what guests may use.
const FEATURES: &[(&str, Flag, bool)] = &[
    ("mutable_global", Flag::MUTABLE_GLOBAL, true),
    (
        "saturating_float_to_int",
        Flag::SATURATING_FLOAT_TO_INT,
        true,
    ),
    ("sign_extension", Flag::SIGN_EXTENSION, true),
    ("multi_value", Flag::MULTI_VALUE, true),
    ("bulk_memory", Flag::BULK_MEMORY, true),
    // funcref tables, table.grow/fill/size and multiple tables; `externref`
    // and other GC-managed types need the GC runtime, which is off below.
    ("reference_types", Flag::REFERENCE_TYPES, true),
    ("simd", Flag::SIMD, true),
    ("extended_const", Flag::EXTENDED_CONST, true),
    ("relaxed_simd", Flag::RELAXED_SIMD, false),
    ("threads", Flag::THREADS, false),
    (
        "shared_everything_threads",
        Flag::SHARED_EVERYTHING_THREADS,
        false,
    ),
    ("multi_memory", Flag::MULTI_MEMORY, false),
    ("memory64", Flag::MEMORY64, false),
    ("tail_call", Flag::TAIL_CALL, false),
    ("function_references", Flag::FUNCTION_REFERENCES, false),
    ("gc", Flag::GC, false),
    ("gc_types", Flag::GC_TYPES, false),
    ("exceptions", Flag::EXCEPTIONS, false),
    ("legacy_exceptions", Flag::LEGACY_EXCEPTIONS, false),
    ("stack_switching", Flag::STACK_SWITCHING, false),
    ("wide_arithmetic", Flag::WIDE_ARITHMETIC, false),
    ("custom_page_sizes", Flag::CUSTOM_PAGE_SIZES, false),
    ("component_model", Flag::COMPONENT_MODEL, false),
];

/// `(proposal, enabled)` for every proposal this runtime decides on.
pub fn enabled_features() -> Vec<(&'static str, bool)> {
    FEATURES.iter().map(|(n, _, on)| (*n, *on)).collect()
}

fn build_config(cfg: &EngineConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.cranelift_opt_level(OptLevel::Speed);
    c.parallel_compilation(true);
    c.epoch_interruption(true);
    c.max_wasm_stack(cfg.max_wasm_stack_bytes);
    for (_, flag, on) in FEATURES {
        c.wasm_features(*flag, *on);
    }
    // Fresh instances map the module's initial memory image copy-on-write.
    c.memory_init_cow(true);

    if !pooling {
        return c;
    }
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(cfg.pool_instances);
    pool.total_memories(cfg.pool_instances);
    pool.total_tables(cfg.pool_instances);
    pool.max_memories_per_module(1);
    pool.max_tables_per_module(4);
    pool.table_elements(cfg.pool_table_elements);
    pool.max_memory_size(MAX_MEMORY_BYTES_CEILING as usize);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

static CONFIG: OnceLock<EngineConfig> = OnceLock::new();

/// The configuration the engine was built with (read from the environment once).
pub fn engine_config() -> &'static EngineConfig {
    CONFIG.get_or_init(EngineConfig::from_env)
}

/// How instances get their memory: `"pooling"` normally; `"on_demand"` when
/// the host refused the pool's up-front virtual-memory reservation (e.g. under
/// `ulimit -v`), which keeps the runtime working at a higher instantiate cost.
pub fn allocator() -> &'static str {
    engine();
    ALLOCATOR.get().copied().unwrap_or("pooling")
}

static ENGINE: OnceLock<Engine> = OnceLock::new();
static ALLOCATOR: OnceLock<&'static str> = OnceLock::new();

/// The process-wide engine; built (and its ticker started) on first use.
pub fn engine() -> &'static Engine {
    ENGINE.get_or_init(|| {
        let cfg = engine_config();
        let (engine, kind) = match Engine::new(&build_config(cfg, true)) {
            Ok(e) => (e, "pooling"),
            Err(_) => match Engine::new(&build_config(cfg, false)) {
                Ok(e) => (e, "on_demand"),
                // The configuration is constant: failing here is a build
                // defect, not anything a caller did or could handle.
                Err(e) => panic!("tensorwasm: cannot create the wasmtime engine: {e:#}"),
            },
        };
        let _ = ALLOCATOR.set(kind);
        start_ticker(engine.weak());
        engine
    })
}

/// Epoch ticks the ticker has applied, and when it started counting.
static TICKS: AtomicU64 = AtomicU64::new(0);
static TICK_ORIGIN: OnceLock<Instant> = OnceLock::new();

fn due_ticks() -> u64 {
    let origin = TICK_ORIGIN.get_or_init(Instant::now);
    (origin.elapsed().as_nanos() / EPOCH_TICK.as_nanos().max(1)) as u64
}

/// Ticks the engine's epoch is behind the wall clock right now (the ticker
/// catches up on its next wake). A deadline set now must add this, or it
/// would fire early by the lag.
pub fn epoch_lag() -> u64 {
    due_ticks().saturating_sub(TICKS.load(Ordering::Acquire))
}

fn start_ticker(weak: wasmtime::EngineWeak) {
    TICK_ORIGIN.get_or_init(Instant::now);
    let spawned = std::thread::Builder::new()
        .name("tensorwasm-epoch".into())
        .spawn(move || {
            // Ticks follow the wall clock, not the number of sleeps: a sleep
            // of one tick often lasts longer, and counting sleeps would let
            // deadlines drift late by that overshoot.
            while let Some(engine) = weak.upgrade() {
                let due = due_ticks();
                while TICKS.load(Ordering::Relaxed) < due {
                    engine.increment_epoch();
                    TICKS.fetch_add(1, Ordering::Release);
                }
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        panic!("tensorwasm: cannot start the epoch ticker thread: {e}");
    }
}

/// A stable hex fingerprint of everything that makes compiled code of this
/// engine loadable: wasmtime's own compatibility hash plus our crate version.
pub fn engine_fingerprint() -> &'static str {
    static FP: OnceLock<String> = OnceLock::new();
    FP.get_or_init(|| {
        let mut h = std::hash::DefaultHasher::new();
        engine().precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        format!("{:016x}", h.finish())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_set_is_pinned() {
        let on: Vec<&str> = enabled_features()
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            on,
            [
                "mutable_global",
                "saturating_float_to_int",
                "sign_extension",
                "multi_value",
                "bulk_memory",
                "reference_types",
                "simd",
                "extended_const",
            ]
        );
        assert_eq!(enabled_features().len(), 23);
    }

    #[test]
    fn engine_uses_the_pool_and_a_stable_fingerprint() {
        engine();
        assert_eq!(allocator(), "pooling");
        assert_eq!(engine_fingerprint(), engine_fingerprint());
        assert_eq!(engine_fingerprint().len(), 16);
    }
}
