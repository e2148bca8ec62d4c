"""The stable tier: artifact blobs in sealed memfds, with capacity and policies.

* ``cache``: evicted least-recently-used first to make room.
* ``pinned``: never evicted; a register that does not fit even after evicting
  every cache entry fails with RESOURCE_EXHAUSTED.
* ``durable``: also written to ``storage_path`` (blob + manifest, fsynced) and
  reloaded on start; its memory copy may be evicted like ``cache`` because
  the disk copy stays.

Eviction only drops the tier's reference to a blob: a client that already
mapped it (or holds a lease on it) keeps the memory alive until it unmaps.
This module never talks to the network.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from google.protobuf import json_format

from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2 as gs_pb2
from tensorwasm_tc.tensorcast.errors import ArtifactError

if TYPE_CHECKING:
    from tensorwasm_tc.tensorcast.daemon.reserve import Buffer

SEALS: Final = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
#: Linux 5.1: no new writes (write(2), new writable mappings) while a writable
#: mapping made before it stays usable; the daemon seals with it first so it
#: can unmap its own mapping later, off the request's path.
F_SEAL_FUTURE_WRITE: Final = int(getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x10))
FROZEN: Final = F_SEAL_FUTURE_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK


def new_memfd(name: str, size: int) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        if size:
            os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        raise
    return fd


def seal(fd: int) -> None:
    """Makes a memfd immutable (fails with EBUSY while a writable mapping exists)."""
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)


def is_sealed(fd: int) -> bool:
    try:
        return (fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALS) == SEALS
    except OSError:
        return False


class Blob:
    """Owns one sealed memfd; the fd closes when the last reference goes."""

    __slots__ = ("_lock", "fd", "size")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._lock = threading.Lock()

    def map(self) -> mmap.mmap | None:
        """A read-only mapping (None for an empty blob)."""
        if self.size == 0:
            return None
        return mmap.mmap(self.fd, self.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)

    def dup(self) -> int:
        return os.dup(self.fd)

    def close(self) -> None:
        with self._lock:
            if self.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self.fd)
                self.fd = -1

    def __del__(self) -> None:
        self.close()


@dataclass
class Entry:
    manifest: gs_pb2.ArtifactManifest
    policy: str
    blob: Blob | None = None  # None: not in memory (disk only)
    on_disk: bool = False
    last_used: float = field(default_factory=time.time)
    leases: int = 0

    @property
    def artifact_id(self) -> str:
        return self.manifest.artifact_id

    def tiers(self) -> list[str]:
        out = []
        if self.blob is not None:
            out.append("memory")
        if self.on_disk:
            out.append("disk")
        return out


class StableTier:
    """Artifacts by id, with an LRU order over those in memory."""

    def __init__(self, capacity_bytes: int, storage_path: Path) -> None:
        self.capacity = capacity_bytes
        self.storage_path = storage_path
        self.used = 0
        self.evictions = 0
        self._lock = threading.RLock()
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    # -- lookups -----------------------------------------------------------
    def get(self, artifact_id: str) -> Entry | None:
        with self._lock:
            return self._entries.get(artifact_id)

    def touch(self, artifact_id: str) -> None:
        with self._lock:
            e = self._entries.get(artifact_id)
            if e is not None:
                e.last_used = time.time()
                self._entries.move_to_end(artifact_id)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    # -- insertion and eviction --------------------------------------------
    def _make_room(self, need: int) -> list[str]:
        """Evicts cache/durable memory copies, LRU first; returns evicted ids."""
        evicted: list[str] = []
        if self.used + need <= self.capacity:
            return evicted
        evictable = sum(
            e.blob.size
            for e in self._entries.values()
            if e.blob is not None and e.policy != "pinned"
        )
        if self.used - evictable + need > self.capacity:
            # Fail before evicting anything: a rejected register leaves the tier as it was.
            raise ArtifactError(
                f"stable tier full: {need} bytes needed, {self.capacity - self.used} of "
                f"{self.capacity} free and {evictable} evictable",
                "RESOURCE_EXHAUSTED",
            )
        for aid, e in list(self._entries.items()):
            if self.used + need <= self.capacity:
                break
            if e.blob is None or e.policy == "pinned":
                continue
            self.used -= e.blob.size
            e.blob = None
            self.evictions += 1
            evicted.append(aid)
            if not e.on_disk:
                del self._entries[aid]
        if self.used + need > self.capacity:
            raise ArtifactError(
                f"stable tier full: {need} bytes needed, {self.capacity - self.used} of "
                f"{self.capacity} free after evicting every cache entry",
                "RESOURCE_EXHAUSTED",
            )
        return evicted

    def insert(
        self, manifest: gs_pb2.ArtifactManifest, policy: str, blob: Blob
    ) -> tuple[Entry, bool, list[str]]:
        """Adds a blob to memory. Returns (entry, already_present, evicted ids).

        Registering the same content again keeps the first blob and upgrades
        the policy (cache < durable < pinned)."""
        rank = {"cache": 0, "durable": 1, "pinned": 2}
        with self._lock:
            e = self._entries.get(manifest.artifact_id)
            if e is not None and e.blob is not None:
                if rank[policy] > rank[e.policy]:
                    e.policy = policy
                e.last_used = time.time()
                self._entries.move_to_end(manifest.artifact_id)
                return e, True, []
            evicted = self._make_room(blob.size)
            if e is None:
                e = Entry(manifest=manifest, policy=policy)
                self._entries[manifest.artifact_id] = e
            elif rank[policy] > rank[e.policy]:
                e.policy = policy
            e.blob = blob
            e.last_used = time.time()
            self.used += blob.size
            self._entries.move_to_end(manifest.artifact_id)
            return e, False, evicted

    def add_disk_only(self, manifest: gs_pb2.ArtifactManifest, policy: str) -> Entry:
        with self._lock:
            e = self._entries.get(manifest.artifact_id)
            if e is None:
                e = Entry(manifest=manifest, policy=policy, on_disk=True)
                self._entries[manifest.artifact_id] = e
                self._entries.move_to_end(manifest.artifact_id, last=False)
            e.on_disk = True
            return e

    def drop(self, artifact_id: str) -> None:
        """Forgets an artifact's memory copy (e.g. a replica that failed checks)."""
        with self._lock:
            e = self._entries.pop(artifact_id, None)
            if e is not None and e.blob is not None:
                self.used -= e.blob.size

    # -- durable -----------------------------------------------------------
    def _paths(self, artifact_id: str) -> tuple[Path, Path]:
        return (
            self.storage_path / f"{artifact_id}.blob",
            self.storage_path / f"{artifact_id}.manifest.json",
        )

    def persist(self, entry: Entry) -> None:
        """Writes blob then manifest (each fsynced, renamed into place): a
        manifest on disk always names a complete blob."""
        if entry.on_disk or entry.blob is None:
            return
        self.storage_path.mkdir(parents=True, exist_ok=True)
        blob_path, man_path = self._paths(entry.artifact_id)
        tmp = blob_path.with_suffix(".blob.tmp")
        with open(tmp, "wb") as f:
            size = entry.blob.size
            off = 0
            while off < size:
                n = os.sendfile(f.fileno(), entry.blob.fd, off, size - off)
                if n == 0:
                    raise OSError("short sendfile while persisting")
                off += n
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, blob_path)
        man_tmp = man_path.with_suffix(".tmp")
        man = gs_pb2.ArtifactManifest()
        man.CopyFrom(entry.manifest)
        man.policy = "durable"
        with open(man_tmp, "w") as f:
            f.write(json_format.MessageToJson(man))
            f.flush()
            os.fsync(f.fileno())
        os.replace(man_tmp, man_path)
        dfd = os.open(self.storage_path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        entry.on_disk = True

    def load_from_disk(
        self,
        artifact_id: str,
        verify: bool = True,
        acquire: Callable[[int, str], Buffer] | None = None,
    ) -> Blob:
        """Reads a durable blob into a new sealed memfd (one copy), verifying
        its chunk checksums. ``acquire`` gives the memfd to fill
        (the daemon's warm reserve); default: a fresh one."""
        from tensorwasm_tc.tensorcast.daemon import reserve  # here: reserve imports tier

        e = self.get(artifact_id)
        if e is None or not e.on_disk:
            raise ArtifactError(f"artifact {artifact_id} is not on disk", "NOT_FOUND")
        blob_path, _ = self._paths(artifact_id)
        size = e.manifest.total_bytes
        with open(blob_path, "rb") as f:
            if os.fstat(f.fileno()).st_size != size:
                raise ArtifactError(f"{blob_path}: wrong size on disk", "DATA_LOSS")
            buf = (acquire or reserve.fresh)(size, f"tc-{artifact_id[:16]}")
            try:
                # One pass: each chunk is read into the memfd's mapping and
                # hashed while it is still in the cache.
                sums = reserve.fill_hashed(f.fileno(), [(0, 0, size)], buf, e.manifest.chunk_bytes)
                if verify and sums != list(e.manifest.chunk_checksums):
                    raise ArtifactError(f"{blob_path}: checksum mismatch on disk", "DATA_LOSS")
                fd = buf.seal()
            except BaseException:
                buf.close()
                raise
        return Blob(fd, size)

    def remove_from_disk(self, artifact_id: str) -> None:
        for p in self._paths(artifact_id):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def scan_disk(self) -> list[Entry]:
        """Re-registers every durable artifact found under ``storage_path``
        (lazily: bytes load into memory on first get)."""
        out: list[Entry] = []
        if not self.storage_path.is_dir():
            return out
        for man_path in sorted(self.storage_path.glob("*.manifest.json")):
            try:
                man = json_format.Parse(man_path.read_text(), gs_pb2.ArtifactManifest())
            except (OSError, json_format.ParseError):
                continue
            blob_path, _ = self._paths(man.artifact_id)
            if not blob_path.exists():
                continue
            out.append(self.add_disk_only(man, "durable"))
        return out

    # -- keys (local mode) ---------------------------------------------------
    def save_keys(self, keys: dict[str, tuple[str, int]]) -> None:
        durable = {k: v for k, v in keys.items() if (e := self.get(v[0])) and e.on_disk}
        self.storage_path.mkdir(parents=True, exist_ok=True)
        tmp = self.storage_path / "keys.json.tmp"
        tmp.write_text(json.dumps(durable))
        os.replace(tmp, self.storage_path / "keys.json")

    def load_keys(self) -> dict[str, tuple[str, int]]:
        try:
            raw = json.loads((self.storage_path / "keys.json").read_text())
        except (OSError, ValueError):
            return {}
        return {k: (str(v[0]), int(v[1])) for k, v in raw.items() if self.get(str(v[0]))}
