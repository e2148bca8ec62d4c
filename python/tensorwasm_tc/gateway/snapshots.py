"""Snapshot and restore of persistent instances, for the HTTP routes: spool
files under ``$TENSOR_WASM_HOME/gateway/snapshots/``, the choice of the
function a snapshot is restored onto, and the executor-thread work.

It must never hold a whole snapshot in memory, never block the event loop on
disk or executor work, and never restore onto a function the acting tenant
has not deployed: a snapshot's embedded module is not a way around
``POST /functions`` (its validation, its limits, its owner).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from starlette.requests import Request

from tensorwasm_tc import Instance, TensorWasmError, inspect_snapshot
from tensorwasm_tc.gateway.app import Gateway
from tensorwasm_tc.gateway.errors import ApiError, from_core
from tensorwasm_tc.gateway.registry import FunctionRecord, InstanceRecord

log = logging.getLogger("tensorwasm_tc.gateway")

# Bytes per read when a snapshot is streamed back (the codec's chunk size).
STREAM_CHUNK_BYTES: Final = 1 << 20
# An upload is written to its spool file in blocks of this size, so the
# event loop hands the executor one write per few MiB, not one per packet.
SPOOL_BLOCK_BYTES: Final = 4 << 20
# Spool files: only this process's own names are ever opened or removed.
_SUFFIX_SNAPSHOT: Final = ".twsnap"
_SUFFIX_UPLOAD: Final = ".upload"


@dataclass(slots=True)
class SavedSnapshot:
    """A snapshot written to a spool file that is already unlinked: the open
    file is the only reference, so nothing is left behind once it closes."""

    file: BinaryIO
    size: int
    signed: bool


def _spool_name(gw: Gateway, suffix: str) -> Path:
    directory = gw.snapshot_dir
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory / f"{secrets.token_hex(16)}{suffix}"


def save(gw: Gateway, rec: InstanceRecord, compression: str | None, level: int) -> SavedSnapshot:
    """Writes `rec`'s instance to a spool file (executor thread), module
    embedded so the file restores on any gateway that has the function."""
    path = _spool_name(gw, _SUFFIX_SNAPSHOT)
    try:
        # The instance's lock: an invoke of the same instance waits for the
        # snapshot, and the snapshot never sees half an invoke.
        # Written through a file object: a path would be fsynced, and this
        # spool file is deleted as soon as it is open for streaming.
        with rec.lock, path.open("wb") as out:
            rec.instance.snapshot(
                out,
                embed_module=True,
                compression=compression,
                level=level,
                tenant_id=rec.tenant_id,
                instance_id=rec.id,
            )
        file = path.open("rb")
    except TensorWasmError as err:
        raise from_core(err) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return SavedSnapshot(file, os.fstat(file.fileno()).st_size, gw.config.snapshot_key is not None)


async def stream(gw: Gateway, saved: SavedSnapshot) -> AsyncIterator[bytes]:
    """The snapshot's bytes, read on the executor a chunk at a time."""
    try:
        while True:
            chunk: bytes = await gw.run(saved.file.read, STREAM_CHUNK_BYTES)
            if not chunk:
                return
            yield chunk
    finally:
        saved.file.close()


async def spool_upload(gw: Gateway, request: Request) -> Path:
    """Writes the request body to a new spool file and returns its path. The
    middleware has already capped the body at TENSOR_WASM_API_MAX_SNAPSHOT_BYTES;
    on any failure (too large, client gone) the file is removed."""
    path = _spool_name(gw, _SUFFIX_UPLOAD)
    file: BinaryIO = await gw.run(_create, path)
    try:
        block = bytearray()
        async for chunk in request.stream():
            block += chunk
            if len(block) >= SPOOL_BLOCK_BYTES:
                await gw.run(file.write, block)
                block = bytearray()
        if block:
            await gw.run(file.write, block)
        await gw.run(file.close)
    except BaseException:
        file.close()
        discard(path)
        raise
    return path


def _create(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def describe(gw: Gateway, path: Path) -> dict[str, Any]:
    """The snapshot's metadata, after every checksum and (with a key) the
    signature passed (executor thread)."""
    cfg = gw.config
    try:
        return inspect_snapshot(
            path,
            signing_key=cfg.snapshot_key,
            require_signature=cfg.snapshot_require_signature,
        )
    except TensorWasmError as err:
        raise _restore_error(err) from None


def target(gw: Gateway, tenant: int, function_hash: str) -> FunctionRecord:
    """The function a snapshot of module `function_hash` is restored onto:
    the acting tenant's most recently deployed function of that module
    (preferring ones that loaded on this server)."""
    matches = [
        r
        for r in gw.registry.functions.values()
        if r.tenant_id == tenant and r.module_hash == function_hash
    ]
    if not matches:
        raise ApiError(
            "function_not_found",
            f"the snapshot is of module {function_hash}, and tenant {tenant} has no function "
            "with that module_hash; deploy it first (POST /functions), then restore",
        )
    loaded = [r for r in matches if r.fn is not None] or matches
    return max(loaded, key=lambda r: r.created_unix_ms)


def restore(gw: Gateway, path: Path, fn_rec: FunctionRecord) -> Instance:
    """A live instance of `fn_rec` with the snapshot's state (executor
    thread), under the function's own limits."""
    fn = gw.function_for(fn_rec)
    try:
        return gw.runtime_for(fn_rec.limits).restore(path, function=fn)
    except TensorWasmError as err:
        raise _restore_error(err) from None


def _restore_error(err: TensorWasmError) -> ApiError:
    # The codec's invalid_args are about the file it was handed (the spool
    # file, whose path is the server's business), never about the request.
    if err.kind == "invalid_args":
        log.error("reading a spooled snapshot failed: %s", err)
        return ApiError("internal", "the snapshot could not be read; see the server log")
    return from_core(err)
