"""`Artifact`: a lazy handle on one artifact (by key, id or safetensors path).

Nothing moves until ``tensor_dict``: on the daemon's host it returns
read-only numpy arrays over the daemon's shared memory (zero-copy); a
``view(slices=...)`` narrows them with numpy basic slicing, still without
copying. ``device="cuda:N"`` copies once to that GPU (torch).
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tensorwasm_tc.tensorcast.errors import ArtifactError

if TYPE_CHECKING:
    from tensorwasm_tc.tensorcast.store import Store

#: {tensor name: [(dim, start, stop), ...]}
Slices = Mapping[str, Sequence[tuple[int, int, int]]]

_CUDA = re.compile(r"^cuda(:\d+)?$")


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    exists: bool
    artifact_id: str = ""
    key: str = ""
    key_version: int = 0
    total_bytes: int = 0
    policy: str = ""
    local_tiers: tuple[str, ...] = ()
    tensors: tuple[TensorInfo, ...] = field(default_factory=tuple)


def apply_slices(
    arrays: dict[str, np.ndarray[Any, Any]], slices: Slices
) -> dict[str, np.ndarray[Any, Any]]:
    out = dict(arrays)
    for name, parts in slices.items():
        if name not in out:
            continue
        arr = out[name]
        index: list[slice] = [slice(None)] * arr.ndim
        for dim, start, stop in parts:
            if not 0 <= dim < arr.ndim:
                raise ArtifactError(
                    f"view of {name!r}: dim {dim} out of range for shape {arr.shape}",
                    "INVALID_ARGUMENT",
                )
            if not 0 <= start <= stop <= arr.shape[dim]:
                raise ArtifactError(
                    f"view of {name!r}: [{start}, {stop}) out of range for dim {dim} "
                    f"of size {arr.shape[dim]}",
                    "INVALID_ARGUMENT",
                )
            index[dim] = slice(start, stop)
        out[name] = arr[tuple(index)]
    return out


def to_device(
    arrays: dict[str, np.ndarray[Any, Any]], dtypes: Mapping[str, str], device: str
) -> dict[str, Any]:
    if device == "cpu":
        return arrays
    if not _CUDA.match(device):
        raise ArtifactError(f"unknown device {device!r} (cpu or cuda:N)", "INVALID_ARGUMENT")
    try:
        torch: Any = importlib.import_module("torch")
    except ImportError as e:
        raise ArtifactError(f"device {device!r} needs torch", "FAILED_PRECONDITION") from e
    if not torch.cuda.is_available():
        raise ArtifactError(
            f"device {device!r}: no CUDA device is available", "FAILED_PRECONDITION"
        )
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        # torch warns that the source is read-only; it is only read.
        warnings.simplefilter("ignore", UserWarning)
        for name, arr in arrays.items():
            t = torch.from_numpy(np.ascontiguousarray(arr)).to(device, non_blocking=False)
            if dtypes.get(name) == "bfloat16":
                t = t.view(torch.bfloat16)
            out[name] = t
    return out


class Artifact:
    def __init__(
        self,
        store: Store,
        *,
        key: str | None = None,
        artifact_id: str | None = None,
        disk_path: str | None = None,
        slices: Slices | None = None,
    ) -> None:
        if sum(x is not None for x in (key, artifact_id, disk_path)) != 1:
            raise ArtifactError(
                "artifact() needs exactly one of key, artifact_id and disk_path", "INVALID_ARGUMENT"
            )
        self._store = store
        self.key = key
        self.artifact_id = artifact_id
        self.disk_path = disk_path
        self._slices: dict[str, list[tuple[int, int, int]]] = {
            k: [tuple(p) for p in v]  # type: ignore[misc]
            for k, v in (slices or {}).items()
        }

    def __repr__(self) -> str:
        what = self.key or self.artifact_id or self.disk_path
        return f"Artifact({what!r}{', sliced' if self._slices else ''})"

    def _target(self) -> str:
        if self.disk_path is not None and self.artifact_id is None:
            self.artifact_id = self._store._import(self.disk_path)
        return self.key if self.key is not None else str(self.artifact_id)

    def tensor_dict(
        self, device: str = "cpu", names: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """{name: array}: read-only numpy arrays sharing the daemon's memory
        (``device="cpu"``), or torch tensors on ``cuda:N``."""
        wanted = None if names is None else list(names)
        arrays, dtypes = self._store._get_arrays(self._target(), names=wanted, verb="get")
        if self._slices:
            arrays = apply_slices(arrays, self._slices)
        return to_device(arrays, dtypes, device)

    def view(self, slices: Slices) -> Artifact:
        """The same artifact narrowed to ``{name: [(dim, start, stop), ...]}``
        (tensors not named stay whole)."""
        merged: dict[str, list[tuple[int, int, int]]] = {
            k: list(v) for k, v in self._slices.items()
        }
        for k, v in slices.items():
            merged.setdefault(k, []).extend(tuple(p) for p in v)  # type: ignore[misc]
        return Artifact(
            self._store,
            key=self.key,
            artifact_id=None if self.key is not None else self._target(),
            slices=merged,
        )

    def exists(self) -> bool:
        return self.info().exists

    def info(self) -> ArtifactInfo:
        return self._store._info(self._target())
