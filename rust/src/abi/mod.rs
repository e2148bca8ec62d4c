//! Guest ABI v1: the `"tensorwasm"` import module (docs/ABI.md).
//!
//! Guests reach tensors through handles (i32 > 0) that are valid for the
//! current invoke of their instance; every pointer they pass is checked
//! against their memory; every failure is a negative code plus a message for
//! `last_error`. This module owns those rules and nothing else: ops run in
//! `kernels`, tensors live in `tensor`.

pub mod argv;
pub mod codes;
mod host;
pub mod state;

pub use codes::AbiCode;
pub use host::{MODULE, add_to_linker, provided_names};
pub use state::{AbiState, Bindings, Kept, MAX_KEPT};

/// The ABI version `abi_version()` returns.
pub const ABI_VERSION: i32 = 1;
