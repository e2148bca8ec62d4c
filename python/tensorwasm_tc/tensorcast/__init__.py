"""TensorCast: named sets of tensors ("artifacts") shared zero-copy between
processes on a host and moved peer-to-peer between hosts.

    import tensorwasm_tc.tensorcast as tc
"""

from __future__ import annotations

from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.options import (
    GetArtifactOptions,
    PortConfig,
    RetryPolicy,
    StoreOptions,
)

__all__ = [
    "ArtifactError",
    "GetArtifactOptions",
    "PortConfig",
    "RetryPolicy",
    "StoreOptions",
]
