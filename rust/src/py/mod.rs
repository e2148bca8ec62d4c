//! Python bindings: thin wrappers that convert values, release the GIL
//! around real work and map `CoreError` to Python exceptions.

pub mod device;
pub mod errors;
pub mod exec;
pub mod front;
pub mod info;
pub mod ops;
pub mod snapshot;
pub mod sysio;
pub mod tensor;
pub mod transfer;
