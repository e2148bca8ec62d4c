//! The WebAssembly executor: one engine per process, a two-level module cache,
//! fresh instances per invoke from pre-linked templates, persistent instances,
//! limits (memory, tables, wall-clock deadline) and a sandboxed WASI preview 1.
//!
//! This layer knows nothing of Python, HTTP or tenants.

pub mod cache;
pub mod capture;
pub mod engine;
pub mod function;
pub mod instance;
pub mod instrument;
pub mod limits;
pub mod store;
pub mod values;
pub mod wasi;

pub use cache::{CacheStats, ModuleCache};
pub use engine::{enabled_features, engine, engine_fingerprint};
pub use function::{CompiledModule, ExportSig, Function, InvokeOutcome};
pub use instance::PersistentInstance;
pub use limits::Limits;
pub use values::{ArgValue, ValType};
