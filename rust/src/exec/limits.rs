//! Per-function limits and the resource limiter that enforces them.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::engine::MAX_MEMORY_BYTES_CEILING;
use crate::error::{CoreError, CoreResult};
use crate::tensor::Budget;

/// Limits of one function (every instance of it gets these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear-memory cap, bytes (default 256 MiB; at most 4 GiB).
    pub max_memory_bytes: u64,
    /// Table-size cap, elements (default 10 000).
    pub max_table_elements: u64,
    /// Wall-clock deadline of one call, milliseconds (default 30 s).
    pub deadline_ms: u64,
    /// Captured stdout/stderr per stream per call, bytes (default 1 MiB).
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 256 << 20,
            max_table_elements: 10_000,
            deadline_ms: 30_000,
            max_output_bytes: 1 << 20,
        }
    }
}

/// Longest deadline accepted (one day): past that a "deadline" is a mistake.
pub const MAX_DEADLINE_MS: u64 = 24 * 3600 * 1000;

impl Limits {
    /// Checks every value is in range; errors are `invalid_args`.
    pub fn validate(&self) -> CoreResult<()> {
        if self.max_memory_bytes == 0 || self.max_memory_bytes > MAX_MEMORY_BYTES_CEILING {
            return Err(CoreError::invalid_args(format!(
                "max_memory_bytes must be between 1 and {MAX_MEMORY_BYTES_CEILING} (4 GiB), got {}",
                self.max_memory_bytes
            )));
        }
        validate_deadline(self.deadline_ms)?;
        Ok(())
    }
}

pub fn validate_deadline(deadline_ms: u64) -> CoreResult<()> {
    if deadline_ms == 0 || deadline_ms > MAX_DEADLINE_MS {
        return Err(CoreError::invalid_args(format!(
            "deadline_ms must be between 1 and {MAX_DEADLINE_MS}, got {deadline_ms}"
        )));
    }
    Ok(())
}

/// Enforces the caps and remembers whether the guest hit one, so a trap that
/// follows a refused `memory.grow` (an allocator aborting) is reported as
/// `memory_limit` rather than as a bare trap.
#[derive(Debug)]
pub struct Limiter {
    /// The memory cap, shared with the host tensors the guest allocates.
    pub budget: Arc<Budget>,
    max_table_elements: u64,
    pub memory_limit_hit: bool,
    pub table_limit_hit: bool,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        Limiter {
            budget: Arc::new(Budget::new(limits.max_memory_bytes)),
            max_table_elements: limits.max_table_elements,
            memory_limit_hit: false,
            table_limit_hit: false,
        }
    }

    pub fn reset_flags(&mut self) {
        self.memory_limit_hit = false;
        self.table_limit_hit = false;
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !self.budget.linear_fits(desired as u64) {
            self.memory_limit_hit = true;
            return Ok(false);
        }
        self.budget.set_linear(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_table_elements {
            self.table_limit_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}
