"""TensorCast: named sets of tensors ("artifacts") shared zero-copy between
processes on a host and moved peer-to-peer between hosts.

    import tensorwasm_tc.tensorcast as tc

    tc.init(mode="connect", address="127.0.0.1:50052")
    artifact_id = tc.put({"w": weights}, key="model:v1")
    tensors = tc.get("model:v1")
    tc.shutdown()

The module-level verbs act on this process's `Context` (see `init`); `store`
builds a `Store` with its own options. The SDK talks only to its Store
Daemon, never to the Global Store.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.options import (
    GetArtifactOptions,
    PortConfig,
    RetryPolicy,
    StoreOptions,
)
from tensorwasm_tc.tensorcast.startup import Context, current, init, shutdown

if TYPE_CHECKING:
    import numpy as np

    from tensorwasm_tc.tensorcast.artifact import Artifact
    from tensorwasm_tc.tensorcast.options import Policy, Source
    from tensorwasm_tc.tensorcast.store import Store

__all__ = [
    "ArtifactError",
    "Context",
    "GetArtifactOptions",
    "PortConfig",
    "RetryPolicy",
    "StoreOptions",
    "artifact",
    "current",
    "get",
    "get_into",
    "init",
    "put",
    "register",
    "shutdown",
    "store",
]


def store(opts: StoreOptions | None = None) -> Store:
    """A `Store` on this process's daemon client with its own options
    (source preference, per-verb retry overrides)."""
    return current().new_store(opts)


def register(tensors: Mapping[str, Any], key: str | None = None, policy: Policy = "cache") -> str:
    """Registers ``tensors`` as an artifact (optionally under ``key``);
    returns its content-derived id."""
    return current().store.register(tensors, key=key, policy=policy)


def put(tensors: Mapping[str, Any], key: str, policy: Policy = "cache") -> str:
    """Registers ``tensors`` and maps ``key`` to them, replacing the previous
    mapping atomically; returns the artifact id."""
    return current().store.put(tensors, key=key, policy=policy)


def get(key_or_id: str, *, source: Source | None = None) -> dict[str, np.ndarray]:
    """The artifact's tensors by name (read-only arrays)."""
    return current().store.get(key_or_id, source=source)


def get_into(key_or_id: str, targets: Mapping[str, Any]) -> None:
    """Copies the artifact's tensors into caller-owned ``targets``."""
    current().store.get_into(key_or_id, targets)


def artifact(
    key: str | None = None, artifact_id: str | None = None, disk_path: str | None = None
) -> Artifact:
    """A handle on one artifact: ``tensor_dict``, ``view``, ``exists``, ``info``."""
    return current().store.artifact(key=key, artifact_id=artifact_id, disk_path=disk_path)


class _TensorCastPackage(types.ModuleType):
    """The upstream verbs `store` and `artifact` share their names with the
    submodules ``tensorcast.store`` and ``tensorcast.artifact``; importing a
    submodule would rebind the package attribute to it (``tc.store(...)``
    would then call a module). This keeps the verbs; the submodules stay
    importable by their full names (``from tensorwasm_tc.tensorcast.store
    import Store``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _VERB_NAMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


_VERB_NAMES = frozenset({"store", "artifact"})
sys.modules[__name__].__class__ = _TensorCastPackage
