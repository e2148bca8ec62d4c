"""Helpers shared by the executor integration tests (guests, stats, CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping

from tensorwasm_tc import Runtime, _core

# A module that must keep working after any bad input.
GOOD_WAT = """
(module
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1))))
"""

# Spins forever; only a deadline stops it.
SPIN_WAT = """
(module
  (func (export "spin") (loop $forever (br $forever))))
"""


def assert_still_works(runtime: Runtime) -> None:
    """`runtime` still compiles and runs a good module."""
    fn = runtime.load(GOOD_WAT)
    assert fn.invoke("add", [2, 3]).values == [5]


def unique_wat(result: int = 42) -> str:
    """A module no other test loads (so no cache level already holds it).

    The nonce lives in an unexported global: it changes the module's bytes and
    hash, nothing a caller can see.
    """
    nonce = uuid.uuid4().int & ((1 << 63) - 1)
    return f"""
(module
  (global i64 (i64.const {nonce}))
  (func (export "answer") (result i32) (i32.const {result})))
"""


def cache_stats() -> dict[str, int]:
    return dict(_core.module_cache_stats())


def stats_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Counter increments between two `module_cache_stats()` snapshots."""
    return {k: after[k] - before[k] for k in before if k != "memory_entries"}


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m tensorwasm_tc.cli.tensor_wasm ARGS` and captures its output."""
    return subprocess.run(
        [sys.executable, "-m", "tensorwasm_tc.cli.tensor_wasm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ if env is None else env),
        check=False,
    )
