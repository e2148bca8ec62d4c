"""Fixtures shared by every test of tensorwasm_tc.

No test may touch the real ``~/.tensor-wasm``: for the whole session
``TENSOR_WASM_HOME`` points at a temporary directory, so ``Runtime()`` with the
default ``cache_dir`` (and every ``tensor-wasm`` subprocess, which inherits the
environment) writes its module cache there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tensorwasm_tc import Runtime


@pytest.fixture(scope="session", autouse=True)
def tensor_wasm_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Points ``TENSOR_WASM_HOME`` at a per-session temporary directory."""
    home = tmp_path_factory.mktemp("tensor-wasm-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TENSOR_WASM_HOME", str(home))
        yield home


@pytest.fixture(scope="session", autouse=True)
def tensorcast_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Points ``TENSORCAST_HOME`` at a per-session temporary directory, so no
    test sees (or leaves) session files of real daemons."""
    home = tmp_path_factory.mktemp("tensorcast-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TENSORCAST_HOME", str(home))
        # Daemons started by tests keep no warm reserve (each would fill up to
        # 1 GiB in the background); the reserve's own tests turn it on.
        mp.setenv("TENSORCAST_RESERVE_BYTES", "0")
        # Gateways started by tests run without TensorCast unless a test
        # asks for it (--tensorcast-address, or TENSOR_WASM_TENSORCAST=auto).
        mp.setenv("TENSOR_WASM_TENSORCAST", "off")
        yield home


@pytest.fixture
def rt() -> Runtime:
    """A runtime with default limits and no disk cache."""
    return Runtime(cache_dir=False)
