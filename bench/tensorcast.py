"""TensorCast benchmarks: P2P pulls, same-host gets and safetensors imports.

Real processes on loopback: a Global Store and two Store Daemons
(``python -m tensorwasm_tc.tensorcast.global_store`` / ``...daemon``) under a
temporary ``TENSORCAST_HOME``, on free ports, stopped at the end. Every
benchmark times our code and a peer in the same run, in interleaved rounds
(the order rotates every round), and reports medians:

1. ``p2p`` -- a ``--size`` artifact (default 2 GiB) put on daemon A and got
   on daemon B, which pulls it over ``--streams`` parallel TCP streams
   (default 4), checking every 4 MiB chunk's BLAKE3 as it lands. Timed: the
   SDK's ``get`` on B (gRPC, Global Store lookups, the pull into B's warm
   reserve -- ``memory_tiers.reserve_bytes`` set to the artifact's size --,
   sealing, mapping). B is restarted (untimed) before each round so every
   round pulls, and the round starts once B's reserve is filled. Peer: a raw
   TCP copy of the same bytes with the same number of streams: a sender
   process ``os.sendfile``s from a memfd, the
   receiver ``recv_into(..., MSG_WAITALL)``s straight into a preallocated,
   pre-faulted mmap (one syscall per stream, no checksums, no allocation).
   MB/s of both and the ratio ours/raw (target >= 0.8x).
2. ``get`` -- same-host ``get`` (zero-copy: Get RPC, memfd over the Unix
   socket, read-only mmap, numpy views) of a 16 MiB and a 1 GiB artifact;
   target: median under 5 ms, flat in size. Peer, for scale only:
   ``np.copy`` of the same bytes.
3. ``import`` -- importing a 1 GiB safetensors file (a few tensors) into the
   daemon (reserve sized to the file, refilled untimed between rounds) and
   getting its arrays, vs ``safetensors.numpy.load_file`` of the same file
   with the page cache warm (target >= 1.0x). Without the
   ``safetensors`` package (``pip install tensorwasm_tc[bench]``), the peer
   is a faithful numpy reimplementation of ``load_file`` (parse the header,
   then ``np.frombuffer(f.read(n))`` per tensor) and is labelled as such.

Run from the repository root::

    python bench/tensorcast.py                   # full run (about 2 minutes)
    python bench/tensorcast.py --quick           # smoke run (256 MiB pull, fewer rounds)
    python bench/tensorcast.py --size 1G         # another P2P artifact size
    python bench/tensorcast.py --json out.json   # also write machine-readable results

Targets are informational: the exit status is 1 only for errors, or for a
missed target with ``--check``. Peak memory: the bench process maps up to
about 3x ``--size`` (the peer's source, its destination and the pulled
artifact it checks), each daemon holds one copy; everything is freed between
benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import mmap
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    from bench._common import (
        BenchResult,
        Series,
        Target,
        add_output_options,
        environment_info,
        finish,
        format_table,
        import_package,
        layout_rows,
        median,
        positive_int,
        progress,
        safe_ratio,
        time_call,
    )
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from _common import (  # type: ignore[no-redef, import-not-found, unused-ignore]
        BenchResult,
        Series,
        Target,
        add_output_options,
        environment_info,
        finish,
        format_table,
        import_package,
        layout_rows,
        median,
        positive_int,
        progress,
        safe_ratio,
        time_call,
    )

PACKAGE = "tensorwasm_tc"
BENCHMARKS = ("p2p", "get", "import")
Log = Callable[[str], None]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MB = 1_000_000
P2P_TARGET = 0.8
GET_TARGET_S = 0.005
GET_FLAT_TARGET = 2.0
IMPORT_TARGET = 1.0
DEFAULT_SIZE = 2 * GiB
QUICK_SIZE = 256 * MiB
GET_SIZES = (16 * MiB, 1 * GiB)
IMPORT_BYTES = 1 * GiB
QUICK_IMPORT_BYTES = 128 * MiB
READY_TIMEOUT_S = 60.0
_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*$")

# The peer's sender: serves ranges of a memfd it inherited, one request per
# connection (16 bytes: offset, length), with os.sendfile like the daemon.
_PEER_SENDER = r"""
import os, socket, struct, sys, threading
fd, size = int(sys.argv[1]), int(sys.argv[2])
srv = socket.create_server(("127.0.0.1", 0), backlog=128)
print(srv.getsockname()[1], flush=True)
def serve(conn):
    with conn:
        head = conn.recv(16, socket.MSG_WAITALL)
        if len(head) != 16:
            return
        off, n = struct.unpack("<QQ", head)
        done = 0
        while done < n:
            k = os.sendfile(conn.fileno(), fd, off + done, n - done)
            if k <= 0:
                return
            done += k
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@dataclasses.dataclass(frozen=True)
class Settings:
    size: int
    streams: int
    rounds: int
    get_sizes: tuple[int, ...]
    import_bytes: int
    quick: bool
    benchmarks: tuple[str, ...]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``256M``, ``2G``, ``1048576``: a size in bytes (a positive multiple of 4 KiB)."""
    m = _SIZE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M, 2G)")
    n = int(m[1]) << {"": 0, "k": 10, "m": 20, "g": 30}[m[2].lower()]
    if n <= 0 or n % (4 * KiB):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive multiple of 4 KiB")
    return n


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.2f} {unit}"
    return f"{n} B"


def mb_s(size: int, seconds: float | None) -> float | None:
    return None if not seconds else size / seconds / MB


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _rotated(names: list[str], r: int) -> list[str]:
    shift = r % len(names)
    return names[shift:] + names[:shift]


def fill_pattern(buf: Any, seed: int) -> None:
    """Fills a writable buffer with incompressible-looking bytes, 64 MiB at a
    time (no temporary of the full size)."""
    words = np.frombuffer(buf, dtype=np.uint64)
    step = (64 * MiB) // 8
    for start in range(0, words.size, step):
        idx = np.arange(start, min(start + step, words.size), dtype=np.uint64)
        idx += np.uint64(seed)
        idx *= np.uint64(0x9E3779B97F4A7C15)
        idx ^= idx >> np.uint64(29)
        words[start : start + idx.size] = idx


def memfd_with_pattern(name: str, size: int, seed: int) -> tuple[int, mmap.mmap]:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
    fill_pattern(mm, seed)
    return fd, mm


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    record: Any  # tensorwasm_tc.tensorcast.sessions.SessionRecord
    log_path: Path


class Cluster:
    """Global Store and daemons under one temporary TENSORCAST_HOME; every
    process it starts is stopped by :meth:`close`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        root.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, Proc] = {}
        self._configs: dict[str, tuple[Path, list[str]]] = {}

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TENSORCAST_HOME"] = str(self.home)
        env.pop("TENSORCAST_RESERVE_BYTES", None)  # the configs below say what they want
        return env

    def _wait(self, name: str, proc: subprocess.Popen[bytes], log_path: Path) -> Any:
        from tensorwasm_tc.tensorcast.sessions import SessionRecord

        path = self.home / "store_sessions" / f"{name}.json"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if path.exists():
                with contextlib.suppress(ValueError, OSError):
                    rec = SessionRecord.from_json(json.loads(path.read_text()))
                    if rec.pid == proc.pid:
                        return rec
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}"
                )
            time.sleep(0.02)
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"{name} not ready within {READY_TIMEOUT_S:.0f} s")

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        log_path = self.root / f"{name}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
            )
        try:
            rec = self._wait(name, proc, log_path)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            raise
        p = Proc(name, proc, rec, log_path)
        self.procs[name] = p
        return p

    def global_store(self) -> Proc:
        cfg = self.root / "gs.yaml"
        # JSON is YAML: no YAML writer needed.
        cfg.write_text(
            json.dumps(
                {
                    "global_store": {
                        "listen": {"host": "127.0.0.1", "port": 0},
                        "metrics": {"port": -1},
                        "database": {"path": str(self.root / "gs.db")},
                        "heartbeat": {"interval_ms": 1000, "timeout_ms": 30000},
                    }
                }
            )
        )
        return self._spawn(
            "gs",
            ["tensorwasm_tc.tensorcast.global_store", "--config", str(cfg),
             "--listen-port", "0", "--metrics-port", "-1", "--session-id", "gs"],
        )  # fmt: skip

    def daemon(
        self,
        name: str,
        *,
        stable_bytes: int,
        reserve_bytes: int = 0,
        streams: int = 4,
        gs_address: str | None = None,
    ) -> Proc:
        cfg = self.root / f"{name}.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "listen_port": 0,
                    "p2p_port": 0,
                    "storage_path": str(self.root / f"storage-{name}"),
                    "worker_id": f"bench-{name}",
                    "memory_tiers": {
                        "stable_bytes": stable_bytes,
                        "reserve_bytes": reserve_bytes,
                    },
                    "p2p": {"streams": streams, "chunk_bytes": 4 * MiB, "timeout_seconds": 60},
                }
            )
        )
        args = ["--global-store-mode", "none"]
        if gs_address:
            args = ["--global-store-mode", "connect", "--global-store-address", gs_address]
        self._configs[name] = (cfg, args)
        return self._start_daemon(name)

    def _start_daemon(self, name: str) -> Proc:
        cfg, args = self._configs[name]
        return self._spawn(
            name,
            ["tensorwasm_tc.tensorcast.daemon", "--config", str(cfg), "--session-id", name,
             "--log-level", "WARNING", *args],
        )  # fmt: skip

    def stop(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.proc.poll() is not None:
            return
        p.proc.send_signal(signal.SIGTERM)
        try:
            p.proc.wait(20)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(5)

    def restart(self, name: str) -> Proc:
        self.stop(name)
        return self._start_daemon(name)

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)


@contextlib.contextmanager
def cluster(root: Path) -> Iterator[Cluster]:
    c = Cluster(root)
    try:
        yield c
    finally:
        c.close()


def store_for(p: Proc) -> Any:
    from tensorwasm_tc.tensorcast.daemon.client import DaemonClient
    from tensorwasm_tc.tensorcast.store import Store

    return Store(DaemonClient(p.record.address, p.record.socket_path, session_id="bench"))


def wait_reserve(store: Any, timeout: float = READY_TIMEOUT_S) -> None:
    """Waits (untimed) until the daemon's warm reserve is filled, so a timed
    call meets the daemon in its steady state, not filling memory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = store.client.status()
        if st.reserve_ready_bytes >= st.reserve_bytes:
            return
        time.sleep(0.02)
    raise RuntimeError(f"the daemon's reserve was not filled within {timeout:.0f} s")


def close_store(store: Any) -> None:
    with contextlib.suppress(Exception):
        store.client.close()


# --------------------------------------------------------------------------
# 1. P2P pull vs raw TCP
# --------------------------------------------------------------------------


class RawTcpPeer:
    """The bar: N loopback streams moving the same bytes with nothing else to do."""

    def __init__(self, src_fd: int, size: int, streams: int) -> None:
        self.size = size
        self.streams = streams
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PEER_SENDER, str(src_fd), str(size)],
            stdout=subprocess.PIPE,
            pass_fds=(src_fd,),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError("raw TCP sender did not start")
        self.port = int(line)
        # Preallocated and pre-faulted once: the receiver pays no page faults.
        self.dest = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        np.frombuffer(self.dest, dtype=np.uint8)[:: mmap.PAGESIZE] = 1

    def _ranges(self) -> list[tuple[int, int]]:
        per = -(-self.size // self.streams)
        per = -(-per // (4 * MiB)) * (4 * MiB)
        return [(o, min(per, self.size - o)) for o in range(0, self.size, per)]

    def _recv(self, dest: mmap.mmap, off: int, n: int, errors: list[BaseException]) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port)) as s:
                s.sendall(struct.pack("<QQ", off, n))
                with memoryview(dest) as whole, whole[off : off + n] as view:
                    got = 0
                    while got < n:
                        k = s.recv_into(view[got:], n - got, socket.MSG_WAITALL)
                        if k == 0:
                            raise RuntimeError("raw TCP sender closed early")
                        got += k
        except BaseException as e:
            errors.append(e)

    def copy(self, dest: mmap.mmap | None = None) -> None:
        errors: list[BaseException] = []
        target = self.dest if dest is None else dest
        threads = [
            threading.Thread(target=self._recv, args=(target, o, n, errors))
            for o, n in self._ranges()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def copy_to_fresh_memfd(self) -> None:
        """The same copy into a new memfd's mapping: the page allocation a
        receiver that keeps the bytes (as a daemon does) cannot avoid."""
        fd = os.memfd_create("tc-bench-fresh", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, self.size)
            with mmap.mmap(fd, self.size, flags=mmap.MAP_SHARED) as mm:
                self.copy(mm)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(AttributeError, BufferError):
            self.dest.close()


def bench_p2p(cfg: Settings, workdir: Path, log: Log) -> list[BenchResult]:
    from tensorwasm_tc import _core

    size = cfg.size
    name = f"p2p pull {format_bytes(size)}, {cfg.streams} streams"
    stable = size + 64 * MiB
    src_fd, src = memfd_with_pattern("tc-bench-src", size, seed=1)
    peer: RawTcpPeer | None = None
    try:
        want = _core.blake3_digest(src)
        with cluster(workdir / "p2p") as c:
            gs = c.global_store()
            a = c.daemon(
                "a", stable_bytes=stable, streams=cfg.streams, gs_address=gs.record.address
            )
            c.daemon(
                "b",
                stable_bytes=stable,
                reserve_bytes=size,
                streams=cfg.streams,
                gs_address=gs.record.address,
            )
            sa = store_for(a)
            t_put, aid = time_call(
                lambda: sa.put({"x": np.frombuffer(src, dtype=np.uint8)}, key="bench:p2p")
            )
            log(f"p2p: put {format_bytes(size)} on A in {t_put:.2f} s ({aid[:12]}...)")
            peer = RawTcpPeer(src_fd, size, cfg.streams)

            def ours() -> None:
                b = c.restart("b")  # untimed: B holds nothing, so the get pulls
                sb = store_for(b)
                try:
                    wait_reserve(sb)
                    t, arrays = time_call(lambda: sb.get("bench:p2p"))
                    served = sb.client.get(key="bench:p2p")[0].served_from
                    if not ours_checked:
                        if _core.blake3_digest(arrays["x"]) != want:
                            raise RuntimeError("p2p pull returned different bytes")
                        ours_checked.append(True)
                    del arrays
                    if served != "memory":
                        raise RuntimeError(f"second get served from {served!r}, not memory")
                finally:
                    close_store(sb)
                series["ours"].samples.append(t)
                series["ours"].round_medians.append(t)

            def fresh() -> None:
                assert peer is not None
                t, _ = time_call(peer.copy_to_fresh_memfd)
                series["fresh"].samples.append(t)
                series["fresh"].round_medians.append(t)

            def raw() -> None:
                assert peer is not None
                t, _ = time_call(peer.copy)
                if not peer_checked:
                    if _core.blake3_digest(peer.dest) != want:
                        raise RuntimeError("raw TCP copy returned different bytes")
                    peer_checked.append(True)
                series["raw"].samples.append(t)
                series["raw"].round_medians.append(t)

            ours_checked: list[bool] = []
            peer_checked: list[bool] = []
            series = {"ours": Series(), "raw": Series(), "fresh": Series()}
            contenders = {"ours": ours, "raw": raw, "fresh": fresh}
            for r in range(cfg.rounds):
                for k in _rotated(list(contenders), r):
                    contenders[k]()
                log(
                    f"p2p: round {r + 1}/{cfg.rounds}: ours "
                    f"{size / series['ours'].samples[-1] / MB:.0f} MB/s, raw "
                    f"{size / series['raw'].samples[-1] / MB:.0f} MB/s, raw into a fresh memfd "
                    f"{size / series['fresh'].samples[-1] / MB:.0f} MB/s"
                )
            close_store(sa)
    finally:
        if peer is not None:
            peer.close()
        src.close()
        os.close(src_fd)
    o, p, f = series["ours"].stats(), series["raw"].stats(), series["fresh"].stats()
    return [
        BenchResult(
            name=name,
            unit="s",
            ours=o.median,
            peer=p.median,
            ratio=safe_ratio(p.median, o.median),
            ratio_def="raw/ours time = ours/raw MB/s",
            targets=[Target("ratio", ">=", P2P_TARGET, f"ratio >= {P2P_TARGET}")],
            ours_stats=o,
            peer_stats=p,
            note=(
                f"ours: SDK get on daemon B of an artifact put on A (Global Store lookup, "
                f"{cfg.streams}-stream pull into the warm reserve with BLAKE3 per 4 MiB chunk, "
                f"seal, map); raw: {cfg.streams} loopback streams, sendfile from a memfd -> "
                "recv_into(MSG_WAITALL) a pre-faulted mmap, no checks"
            ),
            extra={
                "bytes": size,
                "streams": cfg.streams,
                "ours_mb_s": mb_s(size, o.median),
                "peer_mb_s": mb_s(size, p.median),
                "put_s": t_put,
            },
        ),
        BenchResult(
            name="  (context) raw TCP into a fresh memfd",
            unit="s",
            ours=o.median,
            peer=f.median,
            ratio=safe_ratio(f.median, o.median),
            ratio_def="fresh/ours time",
            peer_stats=f,
            note=(
                "informational, no target: the raw copy again, but into a new memfd's mapping "
                "each round, so it pays the page allocation that a daemon keeping the bytes pays"
            ),
            extra={
                "bytes": size,
                "ours_mb_s": mb_s(size, o.median),
                "peer_mb_s": mb_s(size, f.median),
            },
        ),
    ]


# --------------------------------------------------------------------------
# 2. same-host get
# --------------------------------------------------------------------------


def bench_get(cfg: Settings, workdir: Path, log: Log) -> list[BenchResult]:
    results: list[BenchResult] = []
    stable = sum(cfg.get_sizes) + 64 * MiB
    with cluster(workdir / "get") as c:
        d = c.daemon("local", stable_bytes=stable)
        store = store_for(d)
        try:
            for i, size in enumerate(cfg.get_sizes):
                fd, mm = memfd_with_pattern("tc-bench-get", size, seed=10 + i)
                try:
                    store.put({"x": np.frombuffer(mm, dtype=np.uint8)}, key=f"bench:get:{i}")
                finally:
                    mm.close()
                    os.close(fd)
            held = {i: store.get(f"bench:get:{i}")["x"] for i in range(len(cfg.get_sizes))}
            calls = {size: 5 if size >= 256 * MiB else 20 for size in cfg.get_sizes}
            contenders: dict[str, Callable[[], object]] = {}
            for i in range(len(cfg.get_sizes)):
                contenders[f"get:{i}"] = functools.partial(store.get, f"bench:get:{i}")
                contenders[f"copy:{i}"] = functools.partial(np.copy, held[i])
            series = {k: Series() for k in contenders}
            rounds = max(cfg.rounds, 3)
            for r in range(rounds):
                for k in _rotated(list(contenders), r):
                    i = int(k.split(":")[1])
                    n = 50 if k.startswith("get") else calls[cfg.get_sizes[i]]
                    contenders[k]()  # untimed warm-up
                    xs = [time_call(contenders[k])[0] for _ in range(n)]
                    series[k].samples.extend(xs)
                    series[k].round_medians.append(median(xs))
                log(f"get: round {r + 1}/{rounds}")
            contenders.clear()
            held.clear()
            for i, size in enumerate(cfg.get_sizes):
                o, p = series[f"get:{i}"].stats(), series[f"copy:{i}"].stats()
                results.append(
                    BenchResult(
                        name=f"same-host get {format_bytes(size)}",
                        unit="s",
                        ours=o.median,
                        peer=p.median,
                        ratio=safe_ratio(p.median, o.median),
                        ratio_def="np.copy/get",
                        targets=[
                            Target("ours", "<", GET_TARGET_S, f"median < {GET_TARGET_S * 1e3:g} ms")
                        ],
                        ours_stats=o,
                        peer_stats=p,
                        extra={"bytes": size, "p90_s": o.p90},
                    )
                )
            if len(cfg.get_sizes) >= 2:
                small, big = results[0], results[-1]
                flat = safe_ratio(big.ours, small.ours)
                results.append(
                    BenchResult(
                        name=(
                            f"get flatness {format_bytes(cfg.get_sizes[-1])}/"
                            f"{format_bytes(cfg.get_sizes[0])}"
                        ),
                        unit="x",
                        ours=flat,
                        peer=safe_ratio(big.peer, small.peer),
                        targets=[Target("ours", "<=", GET_FLAT_TARGET, f"<= {GET_FLAT_TARGET:g}x")],
                        note=(
                            "median get latency of the largest over the smallest size "
                            "(peer: the same for np.copy); 'flat in size' taken as at most "
                            f"{GET_FLAT_TARGET:g}x"
                        ),
                    )
                )
        finally:
            close_store(store)
    return results


# --------------------------------------------------------------------------
# 3. safetensors import
# --------------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "U8": np.uint8}


def write_safetensors(path: Path, total: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """A safetensors file of about ``total`` bytes: a few tensors of mixed
    dtypes (one with an odd size, so the next one needs re-aligning)."""
    plan = [
        ("embed", "F16", (total // 2 // 2 // 4096, 4096)),
        ("layers.0.w", "F32", (total // 4 // 4 // 4096, 4096)),
        ("layers.0.b", "U8", (4097,)),
        ("layers.1.w", "F32", (total // 4 // 4 // 4096, 4096)),
        ("step", "I64", (1,)),
    ]
    header: dict[str, Any] = {"__metadata__": {"format": "np"}}
    off = 0
    for name, dt, shape in plan:
        n = int(np.prod(shape)) * np.dtype(_ST_DTYPES[dt]).itemsize
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the spec pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for i, (_name, dt, shape) in enumerate(plan):
            n = int(np.prod(shape)) * np.dtype(_ST_DTYPES[dt]).itemsize
            done = 0
            while done < n:
                piece = min(64 * MiB, n - done)
                buf = bytearray(piece)
                fill_pattern(memoryview(buf)[: piece // 8 * 8], seed=100 * i + done)
                f.write(buf)
                done += piece
    return {name: (dt, shape) for name, dt, shape in plan}


def numpy_load_file(path: str) -> dict[str, np.ndarray[Any, Any]]:
    """What ``safetensors.numpy.load_file`` does, in numpy: parse the header,
    then read each tensor's bytes into memory and build an array over them."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        start = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            f.seek(start + begin)
            dt = np.dtype(_ST_DTYPES[info["dtype"]])
            out[name] = np.frombuffer(f.read(end - begin), dtype=dt).reshape(info["shape"])
    return out


def safetensors_peer() -> tuple[Callable[[str], dict[str, Any]], str]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        return numpy_load_file, (
            "numpy reimplementation of safetensors.numpy.load_file (safetensors not installed)"
        )
    return load_file, "safetensors.numpy.load_file"


def bench_import(cfg: Settings, workdir: Path, log: Log) -> list[BenchResult]:
    load_file, peer_name = safetensors_peer()
    d_dir = workdir / "import"
    d_dir.mkdir(parents=True, exist_ok=True)
    path = d_dir / "model.safetensors"
    plan = write_safetensors(path, cfg.import_bytes)
    file_bytes = path.stat().st_size
    log(
        f"import: wrote {format_bytes(file_bytes)} to {path} ({len(plan)} tensors); "
        f"peer: {peer_name}"
    )
    results: list[BenchResult] = []
    try:
        with cluster(workdir / "import-cluster") as c:
            d = c.daemon(
                "importer", stable_bytes=2 * file_bytes + 64 * MiB, reserve_bytes=file_bytes
            )
            store = store_for(d)
            try:

                def ours() -> object:
                    aid = store.import_safetensors(str(path))
                    return store.get(aid)

                got = ours()
                want = load_file(str(path))
                assert isinstance(got, dict)
                if set(got) != set(want) or any(
                    not np.array_equal(got[k].view(np.uint8), np.asarray(want[k]).view(np.uint8))
                    for k in want
                ):
                    raise RuntimeError("imported tensors differ from the file's")
                del got, want
                contenders: dict[str, Callable[[], object]] = {
                    "ours": ours,
                    "peer": lambda: load_file(str(path)),
                }
                series = {k: Series() for k in contenders}
                for r in range(cfg.rounds):
                    for k in _rotated(list(contenders), r):
                        wait_reserve(store)  # the last import's refill is done
                        t, res = time_call(contenders[k])
                        del res
                        series[k].samples.append(t)
                        series[k].round_medians.append(t)
                    log(
                        f"import: round {r + 1}/{cfg.rounds}: ours "
                        f"{series['ours'].samples[-1]:.3f} s, "
                        f"peer {series['peer'].samples[-1]:.3f} s"
                    )
            finally:
                close_store(store)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    o, p = series["ours"].stats(), series["peer"].stats()
    results.append(
        BenchResult(
            name=f"import safetensors {format_bytes(file_bytes)}",
            unit="s",
            ours=o.median,
            peer=p.median,
            ratio=safe_ratio(p.median, o.median),
            ratio_def="peer/ours",
            targets=[Target("ratio", ">=", IMPORT_TARGET, f"ratio >= {IMPORT_TARGET:g}")],
            ours_stats=o,
            peer_stats=p,
            note=(
                "ours: ImportSafetensors (preadv file -> the warm reserve, BLAKE3 per chunk "
                "as it lands) + "
                f"get (zero-copy arrays); peer: {peer_name}; page cache warm"
            ),
            extra={
                "bytes": file_bytes,
                "peer": peer_name,
                "ours_mb_s": mb_s(file_bytes, o.median),
                "peer_mb_s": mb_s(file_bytes, p.median),
            },
        )
    )
    return results


# --------------------------------------------------------------------------
# Report and CLI
# --------------------------------------------------------------------------


def throughput_table(results: Sequence[BenchResult]) -> str:
    rows: list[tuple[str, ...]] = [("benchmark", "ours MB/s", "peer MB/s", "ours/peer")]
    for r in results:
        if r.error is not None or "ours_mb_s" not in r.extra:
            continue
        om, pm = r.extra["ours_mb_s"], r.extra["peer_mb_s"]
        rows.append(
            (
                r.name,
                "n/a" if om is None else f"{om:.0f}",
                "n/a" if pm is None else f"{pm:.0f}",
                "n/a" if r.ratio is None else f"{r.ratio:.2f}x",
            )
        )
    if len(rows) == 1:
        return ""
    return layout_rows(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/tensorcast.py",
        description=(
            "Benchmark TensorCast: daemon-to-daemon P2P pulls against a raw TCP copy, "
            "same-host zero-copy gets, and safetensors imports against load_file."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (256M pull, 128M import, 1 round); targets are not meaningful",
    )
    parser.add_argument(
        "--size", type=parse_size, metavar="SIZE", help="P2P artifact size (default 2G; 256M quick)"
    )
    parser.add_argument(
        "--streams", type=positive_int, default=4, help="P2P streams, both sides (default 4)"
    )
    parser.add_argument("--rounds", type=positive_int, help="rounds (default 3; 1 with --quick)")
    parser.add_argument(
        "--dir", metavar="DIR", help="where files and daemon homes go (default: system temp)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        help="run only this benchmark (repeatable; default: all)",
    )
    add_output_options(parser)
    return parser


def resolve_settings(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    return Settings(
        size=args.size or (QUICK_SIZE if quick else DEFAULT_SIZE),
        streams=int(args.streams),
        rounds=args.rounds or (1 if quick else 3),
        get_sizes=GET_SIZES,
        import_bytes=QUICK_IMPORT_BYTES if quick else IMPORT_BYTES,
        quick=quick,
        benchmarks=tuple(b for b in BENCHMARKS if not args.only or b in args.only),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = progress(args.quiet)
    if import_package(PACKAGE) is None:
        return 2
    cfg = resolve_settings(args)
    env = environment_info(PACKAGE)
    env["numpy_version"] = np.__version__
    log(
        f"{PACKAGE} {env['package_version'] or '?'}; python {env['python_version']}, "
        f"{env['cpu_count_usable']} usable CPUs; p2p {format_bytes(cfg.size)} x {cfg.streams} "
        "streams"
    )
    results: list[BenchResult] = []
    started = time.perf_counter()
    runners = {"p2p": bench_p2p, "get": bench_get, "import": bench_import}
    rows = {"p2p": "p2p pull", "get": "same-host get", "import": "import safetensors"}
    with tempfile.TemporaryDirectory(prefix="tc-bench-", dir=args.dir) as tmp:
        for name in cfg.benchmarks:
            try:
                results.extend(runners[name](cfg, Path(tmp), log))
            except Exception as exc:  # report and go on with the others
                results.append(
                    BenchResult(name=rows[name], unit="s", error=f"{type(exc).__name__}: {exc}")
                )
    env["wall_s"] = time.perf_counter() - started
    env["peak_rss_bytes"] = peak_rss_bytes()
    title = "TensorCast vs raw TCP / np.copy / safetensors load_file"
    if cfg.quick:
        title += " [quick]"
    print(title)
    print(
        f"  targets: p2p >= {P2P_TARGET}x raw TCP; same-host get median < "
        f"{GET_TARGET_S * 1e3:g} ms, flat in size; import >= {IMPORT_TARGET:g}x load_file"
    )
    print(
        f"  wall {env['wall_s']:.1f} s; "
        f"bench process peak RSS {format_bytes(env['peak_rss_bytes'])}"
    )
    print()
    print(format_table(results, peer_name="peer"))
    table = throughput_table(results)
    if table:
        print("\nthroughput (MB = 10^6 bytes per second):")
        print(table)
    footers = ["--quick: sizes are too small for the targets to mean anything"] if cfg.quick else []
    return finish(
        results,
        benchmark="tensorcast",
        json_path=args.json,
        environment=env,
        settings=dataclasses.asdict(cfg),
        check=args.check,
        log=log,
        footers=footers,
    )


if __name__ == "__main__":
    sys.exit(main())
