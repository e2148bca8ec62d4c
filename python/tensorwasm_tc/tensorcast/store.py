"""`Store`: the SDK verbs (register, put, get, get_into, artifact) over one
`DaemonClient`, each with its retry policy, metrics and span.

Arrays a ``get`` returns are read-only views of the daemon's shared memory
on the same host (the mapping stays alive as long as any array does).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tensorwasm_tc.tensorcast import _metrics, retry
from tensorwasm_tc.tensorcast.artifact import Artifact, ArtifactInfo, TensorInfo
from tensorwasm_tc.tensorcast.daemon import layout
from tensorwasm_tc.tensorcast.daemon.client import DaemonClient
from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.options import POLICIES, SOURCES, StoreOptions

_ARTIFACT_ID = re.compile(r"^[0-9a-f]{64}$")


def _is_artifact_id(s: str) -> bool:
    return bool(_ARTIFACT_ID.match(s))


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ArtifactError(f"policy must be one of {POLICIES}, not {policy!r}", "INVALID_ARGUMENT")


class Store:
    def __init__(self, client: DaemonClient, opts: StoreOptions | None = None) -> None:
        self.client = client
        self.opts = opts or StoreOptions()

    # ---------------------------------------------------------------- verbs
    def register(
        self, tensors: Mapping[str, Any], key: str | None = None, policy: str = "cache"
    ) -> str:
        """Stores ``tensors`` as an artifact (and maps ``key`` to it); returns
        its content-derived id."""
        return self._register("register", tensors, key, policy)

    def put(self, tensors: Mapping[str, Any], key: str, policy: str = "cache") -> str:
        """Registers ``tensors`` and points ``key`` at them; the next get of
        ``key`` sees the new artifact (the swap is atomic)."""
        if not key:
            raise ArtifactError("put needs a key", "INVALID_ARGUMENT")
        return self._register("put", tensors, key, policy)

    def _register(self, verb: str, tensors: Mapping[str, Any], key: str | None, policy: str) -> str:
        _check_policy(policy)
        with _metrics.operation(verb, key=key) as op:
            resp = retry.call_with_retry(
                verb,
                self.opts.retry_for(verb),
                lambda _remaining: self.client.register(tensors, key=key, policy=policy),
            )
            op.set_artifact_id(resp.artifact_id)
            return str(resp.artifact_id)

    def get(self, key_or_id: str, *, source: str | None = None) -> dict[str, np.ndarray[Any, Any]]:
        """{name: read-only array} of an artifact, by key or artifact id."""
        arrays, _dtypes = self._get_arrays(key_or_id, source=source, verb="get")
        return arrays

    def get_into(self, key_or_id: str, targets: Mapping[str, Any]) -> None:
        """Copies the named tensors into caller-owned arrays (numpy or torch,
        same dtype and shape)."""
        with _metrics.operation("get_into", **self._target_kwargs(key_or_id)) as op:

            def attempt(_remaining: float) -> None:
                arrays, dtypes = self._fetch(key_or_id, self.opts.get.source, names=list(targets))
                for name, target in targets.items():
                    _copy_into(name, arrays[name], dtypes[name], target)

            retry.call_with_retry("get_into", self.opts.retry_for("get_into"), attempt)
            if _is_artifact_id(key_or_id):
                op.set_artifact_id(key_or_id)

    def artifact(
        self, key: str | None = None, artifact_id: str | None = None, disk_path: str | None = None
    ) -> Artifact:
        return Artifact(self, key=key, artifact_id=artifact_id, disk_path=disk_path)

    def delete(self, key: str) -> bool:
        return self.client.delete(key)

    def import_safetensors(self, path: str, key: str | None = None, policy: str = "cache") -> str:
        _check_policy(policy)
        return str(self.client.import_safetensors(path, key=key, policy=policy).artifact_id)

    # ------------------------------------------------------------- helpers
    @staticmethod
    def _target_kwargs(key_or_id: str) -> dict[str, str]:
        return {"artifact_id": key_or_id} if _is_artifact_id(key_or_id) else {"key": key_or_id}

    def _fetch(
        self, key_or_id: str, source: str, names: Iterable[str] | None = None
    ) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]]:
        if not key_or_id:
            raise ArtifactError("get needs a key or an artifact id", "INVALID_ARGUMENT")
        if source not in SOURCES:
            raise ArtifactError(
                f"source must be one of {SOURCES}, not {source!r}", "INVALID_ARGUMENT"
            )
        if _is_artifact_id(key_or_id):
            resp, buf = self.client.get(artifact_id=key_or_id, source=source)
        else:
            resp, buf = self.client.get(key=key_or_id, source=source)
        specs = list(resp.manifest.tensors)
        arrays = layout.array_views(buf if buf is not None else b"", specs, names)
        return arrays, {s.name: s.dtype for s in specs}

    def _get_arrays(
        self,
        key_or_id: str,
        *,
        source: str | None = None,
        names: Iterable[str] | None = None,
        verb: str = "get",
    ) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]]:
        src = source or self.opts.get.source
        wanted = None if names is None else list(names)
        with _metrics.operation(verb, **self._target_kwargs(key_or_id)):
            return retry.call_with_retry(
                verb,
                self.opts.retry_for(verb),
                lambda _remaining: self._fetch(key_or_id, src, wanted),
            )

    def _info(self, key_or_id: str) -> ArtifactInfo:
        if _is_artifact_id(key_or_id):
            r = self.client.info(artifact_id=key_or_id)
        else:
            r = self.client.info(key=key_or_id)
        m = r.manifest
        return ArtifactInfo(
            exists=bool(r.exists),
            artifact_id=m.artifact_id,
            key=r.key,
            key_version=int(r.key_version),
            total_bytes=int(m.total_bytes),
            policy=m.policy,
            local_tiers=tuple(r.local_tiers),
            tensors=tuple(
                TensorInfo(t.name, t.dtype, tuple(t.shape), int(t.nbytes)) for t in m.tensors
            ),
        )

    def _import(self, path: str) -> str:
        return self.import_safetensors(path)


def _copy_into(name: str, src: np.ndarray[Any, Any], dtype: str, target: Any) -> None:
    torch: Any = sys.modules.get("torch")  # a torch target implies torch is imported
    if torch is not None and isinstance(target, torch.Tensor):
        if tuple(target.shape) != src.shape:
            raise ArtifactError(
                f"get_into {name!r}: target shape {tuple(target.shape)} != {src.shape}",
                "INVALID_ARGUMENT",
            )
        t = torch.from_numpy(np.array(src))
        if dtype == "bfloat16":
            t = t.view(torch.bfloat16)
        if t.dtype != target.dtype:
            raise ArtifactError(
                f"get_into {name!r}: dtype {t.dtype} != {target.dtype}", "INVALID_ARGUMENT"
            )
        target.copy_(t)
        return
    if not isinstance(target, np.ndarray):
        raise ArtifactError(
            f"get_into {name!r}: target must be a numpy array or torch tensor", "INVALID_ARGUMENT"
        )
    if target.shape != src.shape or target.dtype != src.dtype:
        raise ArtifactError(
            f"get_into {name!r}: target {target.dtype}{list(target.shape)} does not match "
            f"{src.dtype}{list(src.shape)}",
            "INVALID_ARGUMENT",
        )
    if not target.flags.writeable:
        raise ArtifactError(f"get_into {name!r}: target is read-only", "INVALID_ARGUMENT")
    np.copyto(target, src)
