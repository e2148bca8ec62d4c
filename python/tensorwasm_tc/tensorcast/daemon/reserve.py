"""A warm reserve of shared memory for the next incoming artifact.

Giving a process fresh shared memory is slow: every 4 KiB page is allocated,
zeroed and entered in the page table on first touch, which costs more than
copying the bytes into it (about 1 s per GiB on a virtual machine, against
0.3 s for a loopback TCP copy into memory that is already mapped). A pull, an
import or a durable reload that writes into a fresh memfd pays that inside
the request.

The daemon therefore keeps one unsealed memfd of ``memory_tiers.reserve_bytes``
allocated and mapped writable, filled in a low-priority background thread at
start and again after each use. ``acquire(n)`` hands it out (shrunk or grown
to ``n`` bytes in place, keeping its pages and page table) when it is ready
and ``n`` is at least ``MIN_TAKE``; otherwise, or while it is being refilled,
it returns a fresh memfd, so a caller never waits for the reserve. The buffer
is sealed once written, exactly like a fresh one: clients cannot tell them
apart. The reserve is not part of the stable tier's capacity; ``Status`` and
``tc_local_reserve_bytes`` report it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from prometheus_client import Counter, Gauge

from tensorwasm_tc import _core
from tensorwasm_tc.tensorcast.daemon import tier
from tensorwasm_tc.tensorcast.errors import ArtifactError

__all__ = ["MIN_TAKE", "Buffer", "Piece", "Reserve", "fill_hashed", "fresh"]

log = logging.getLogger("tensorwasm_tc.tensorcast.daemon")

#: Smaller artifacts take a fresh memfd: their page faults cost little, and
#: shrinking a large reserve for them would throw its pages away.
MIN_TAKE: Final = 32 << 20
#: ``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14): allocate and map every page.
_MADV_POPULATE_WRITE: Final = 23
_PAGE: Final = mmap.PAGESIZE
_POPULATE_STEP: Final = 8 << 20

RESERVE_BYTES = Gauge(
    "tc_local_reserve_bytes",
    "Warm shared memory held for the next incoming artifact, by state",
    ["state"],
)
RESERVE_TAKES = Counter(
    "tc_local_reserve_takes_total",
    "Buffers for incoming artifacts (pulls, imports, reloads), by source",
    ["source"],
)


def _populate(mm: mmap.mmap) -> None:
    """Allocates and maps every page of a writable shared mapping, a slice at
    a time: populating holds the process's mmap lock, which every other
    thread's mmap/munmap (allocations included) waits for."""
    size = len(mm)
    try:
        for off in range(0, size, _POPULATE_STEP):
            mm.madvise(_MADV_POPULATE_WRITE, off, min(_POPULATE_STEP, size - off))
        return
    except (OSError, ValueError):
        pass  # older kernel: touch one byte per page instead
    for off in range(0, size, _PAGE):
        mm[off] = 0


_ZAP_STEP: Final = 64 << 20
_RELEASER: queue.SimpleQueue[tuple[mmap.mmap, int, threading.Event | None]] = queue.SimpleQueue()


def _release_loop() -> None:
    """Unmaps frozen buffers' writable mappings, then seals them fully."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    while True:
        mm, fd, done = _RELEASER.get()
        try:
            # Zapping a slice at a time holds the mmap lock only briefly.
            size = len(mm)
            with contextlib.suppress(OSError, ValueError):
                for off in range(0, size, _ZAP_STEP):
                    mm.madvise(mmap.MADV_DONTNEED, off, min(_ZAP_STEP, size - off))
            mm.close()
            try:
                tier.seal(fd)
            except OSError as e:
                log.error("cannot complete the seal of a blob: %s", e)
        finally:
            os.close(fd)
            if done is not None:
                done.set()


def flush_releases(timeout: float = 30.0) -> bool:
    """Waits until every sealed buffer is unmapped and fully sealed (tests)."""
    marker = threading.Event()
    fd = os.memfd_create("tc-flush", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    _release_later((mmap.mmap(-1, _PAGE), fd, marker))
    return marker.wait(timeout)


_releaser_started = threading.Lock()
_releaser_running: list[threading.Thread] = []


def _release_later(item: tuple[mmap.mmap, int, threading.Event | None]) -> None:
    with _releaser_started:
        if not _releaser_running:
            t = threading.Thread(target=_release_loop, name="tc-seal", daemon=True)
            t.start()
            _releaser_running.append(t)
    _RELEASER.put(item)


class Buffer:
    """A writable memfd of exactly ``size`` bytes being filled.

    ``seal()`` ends the writing: it unmaps, seals and hands the descriptor
    over (the caller owns it from then on); ``close()`` throws it away."""

    __slots__ = ("_done", "fd", "mm", "size", "warm")

    def __init__(
        self, fd: int, size: int, mm: mmap.mmap | None, warm: bool, done: threading.Event | None
    ) -> None:
        self.fd = fd
        self.size = size
        self.mm = mm
        self.warm = warm
        self._done = done

    def view(self) -> memoryview:
        """The writable bytes (release the view before ``seal``)."""
        return memoryview(self.mm if self.mm is not None else b"")

    def _finish(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self._done is not None:
            self._done.set()
            self._done = None

    def seal(self) -> int:
        """Makes the bytes immutable and returns the descriptor. Unmapping a
        large populated mapping takes ~0.1 s/GiB, so with the mapping still
        there it seals against future writes at once (no write(2), no new
        writable mapping, no resize) and leaves the unmapping and the full
        seal to a background thread."""
        mm = self.mm
        if mm is not None:
            try:
                fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, tier.FROZEN)
            except OSError:
                pass  # a kernel before 5.1: unmap and seal here
            else:
                self.mm = None
                _release_later((mm, os.dup(self.fd), self._done))
                self._done = None
                fd, self.fd = self.fd, -1
                return fd
        self._finish()
        tier.seal(self.fd)
        fd, self.fd = self.fd, -1
        return fd

    def close(self) -> None:
        self._finish()
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


#: (file offset, offset in the buffer, length): bytes of a file to place.
Piece = tuple[int, int, int]


def fill_hashed(src: int, pieces: Sequence[Piece], buf: Buffer, chunk_bytes: int) -> list[bytes]:
    """Reads ``pieces`` of file ``src`` into ``buf`` and returns the BLAKE3 of
    every ``chunk_bytes`` chunk of the buffer (bytes no piece covers stay as
    they are: zero in a new buffer). One pass: each chunk is read and then
    hashed while it is still in the cache, chunks spread over the cores
    (``preadv`` and the hash both run without the GIL). A file shorter than
    its pieces is DATA_LOSS."""
    if chunk_bytes <= 0:
        raise ArtifactError("chunk_bytes must be positive", "INVALID_ARGUMENT")
    size = buf.size
    n_chunks = -(-size // chunk_bytes)
    per_chunk: list[list[Piece]] = [[] for _ in range(n_chunks)]
    for file_off, dst, length in sorted(pieces, key=lambda p: p[1]):
        if dst < 0 or length < 0 or dst + length > size:
            raise ArtifactError("a piece falls outside the buffer", "INTERNAL")
        while length:
            c = dst // chunk_bytes
            n = min(length, (c + 1) * chunk_bytes - dst)
            per_chunk[c].append((file_off, dst, n))
            file_off, dst, length = file_off + n, dst + n, length - n
    view = buf.view()

    def one(c: int) -> bytes:
        for file_off, dst, n in per_chunk[c]:
            done = 0
            while done < n:
                k = os.preadv(src, [view[dst + done : dst + n]], file_off + done)
                if k <= 0:
                    raise ArtifactError("the file is shorter than its header says", "DATA_LOSS")
                done += k
        start = c * chunk_bytes
        digest: bytes = _core.blake3_digest(view[start : min(start + chunk_bytes, size)])
        return digest

    try:
        if n_chunks <= 1:
            return [one(c) for c in range(n_chunks)]
        workers = min(n_chunks, max(2, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tc-fill") as ex:
            return list(ex.map(one, range(n_chunks)))
    finally:
        view.release()


def fresh(n: int, name: str) -> Buffer:
    """A new memfd of ``n`` bytes, mapped writable (pages fault in on write)."""
    fd = tier.new_memfd(name, n)
    try:
        mm = mmap.mmap(fd, n, flags=mmap.MAP_SHARED) if n else None
    except BaseException:
        os.close(fd)
        raise
    return Buffer(fd, n, mm, False, None)


class Reserve:
    """One warm memfd of ``size`` bytes (``size`` 0 = off: every buffer is fresh)."""

    def __init__(self, size: int, *, min_take: int = MIN_TAKE) -> None:
        if size < 0:
            raise ValueError("memory_tiers.reserve_bytes must be >= 0")
        self.size = size
        self.min_take = min_take
        self._lock = threading.Lock()
        self._ready_cond = threading.Condition(self._lock)
        self._ready: tuple[int, mmap.mmap] | None = None
        self._wanted = threading.Event()  # set: fill now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fills = 0
        RESERVE_BYTES.labels("ready").set(0)
        RESERVE_BYTES.labels("configured").set(size)

    def start(self) -> None:
        if self.size == 0 or self._thread is not None:
            return
        self._wanted.set()
        self._thread = threading.Thread(target=self._run, name="tc-reserve", daemon=True)
        self._thread.start()

    @property
    def ready_bytes(self) -> int:
        with self._lock:
            return self.size if self._ready is not None else 0

    def wait_ready(self, timeout: float) -> bool:
        """True once the reserve is filled (False when off or not in time)."""
        if self.size == 0:
            return False
        with self._ready_cond:
            return self._ready_cond.wait_for(lambda: self._ready is not None, timeout)

    def acquire(self, n: int, name: str) -> Buffer:
        """A writable buffer of ``n`` bytes: the reserve when it is ready and
        ``n >= min_take``, else a fresh memfd."""
        taken = None
        if n >= self.min_take:
            with self._lock:
                taken, self._ready = self._ready, None
        if taken is not None:
            fd, mm = taken
            RESERVE_BYTES.labels("ready").set(0)
            try:
                if n != len(mm):
                    mm.resize(n)  # ftruncate + mremap: the kept pages stay mapped
            except BaseException:
                mm.close()
                os.close(fd)
                self._wanted.set()
                raise
            RESERVE_TAKES.labels("reserve").inc()
            return Buffer(fd, n, mm, True, self._wanted)
        RESERVE_TAKES.labels("fresh").inc()
        return fresh(n, name)

    def _fill(self) -> None:
        fd = tier.new_memfd("tc-reserve", self.size)
        try:
            mm = mmap.mmap(fd, self.size, flags=mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            raise
        try:
            _populate(mm)
        except BaseException:
            mm.close()
            os.close(fd)
            raise
        with self._lock:
            if self._stop.is_set():
                mm.close()
                os.close(fd)
                return
            self._ready = (fd, mm)
            self._ready_cond.notify_all()
        self.fills += 1
        RESERVE_BYTES.labels("ready").set(self.size)

    def _run(self) -> None:
        # Refills yield the CPU to transfers and requests.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while not self._stop.is_set():
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._wanted.clear()
            with self._lock:
                have = self._ready is not None
            if have:
                continue
            try:
                self._fill()
            except OSError as e:
                log.warning("cannot fill the %d-byte reserve: %s", self.size, e)
                self._stop.wait(5.0)
                self._wanted.set()

    def close(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            taken, self._ready = self._ready, None
        if taken is not None:
            taken[1].close()
            os.close(taken[0])
        RESERVE_BYTES.labels("ready").set(0)
