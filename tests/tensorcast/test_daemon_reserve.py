"""The daemon's warm reserve: shared memory filled ahead of the next incoming
artifact, handed out in place of a fresh memfd, refilled after use."""

from __future__ import annotations

import fcntl
import mmap
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorwasm_tc.tensorcast import sessions
from tensorwasm_tc.tensorcast.daemon import layout, reserve, tier
from tensorwasm_tc.tensorcast.daemon.client import DaemonClient
from tensorwasm_tc.tensorcast.daemon.config import DaemonConfig
from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.store import Store

from tests.tensorcast.test_daemon_cli_and_import import _write_safetensors
from tests.tensorcast.test_daemon_support import Cluster, Proc, cluster  # noqa: F401

MiB = 1 << 20


def _read(fd: int, size: int) -> bytes:
    mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    try:
        return bytes(mm)
    finally:
        mm.close()


@pytest.fixture
def res() -> Iterator[reserve.Reserve]:
    r = reserve.Reserve(8 * MiB, min_take=1 * MiB)
    r.start()
    assert r.wait_ready(30)
    yield r
    r.close()


@pytest.mark.parametrize("n", [8 * MiB, 3 * MiB + 5, 11 * MiB])
def test_a_ready_reserve_is_handed_out_at_any_size_and_sealed(res: reserve.Reserve, n: int) -> None:
    buf = res.acquire(n, "t")
    assert buf.warm and buf.size == n
    assert res.ready_bytes == 0, "taken: the next caller gets a fresh memfd"
    view = buf.view()
    assert view.nbytes == n
    pattern = (np.arange(n, dtype=np.uint64) * 2654435761 % 251).astype(np.uint8)
    view[:] = pattern.tobytes()
    view.release()
    fd = buf.seal()
    try:
        # Frozen at once (no writes, no writable mappings, no resize); fully
        # sealed once the daemon's own mapping is gone, in the background.
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & tier.FROZEN == tier.FROZEN
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"x", 0)
        assert reserve.flush_releases()
        assert tier.is_sealed(fd)
        assert os.fstat(fd).st_size == n
        assert _read(fd, n) == pattern.tobytes()
        with pytest.raises(PermissionError):
            mmap.mmap(fd, n, flags=mmap.MAP_SHARED)  # sealed: no writable mapping
    finally:
        os.close(fd)
    assert res.wait_ready(30), "using the reserve triggers a refill"
    assert res.fills == 2


def test_small_or_concurrent_requests_get_fresh_memory(res: reserve.Reserve) -> None:
    small = res.acquire(4096, "small")
    assert not small.warm and res.ready_bytes == 8 * MiB
    small.close()
    first = res.acquire(2 * MiB, "a")
    second = res.acquire(2 * MiB, "b")  # the reserve is out
    assert first.warm and not second.warm
    for b in (first, second):
        v = b.view()
        v[:4] = b"abcd"
        v.release()
    fds = [second.seal()]
    first.close()  # thrown away: still refilled
    assert res.wait_ready(30)
    assert reserve.flush_releases()
    assert _read(fds[0], 4) == b"abcd" and tier.is_sealed(fds[0])
    os.close(fds[0])


def test_off_means_every_buffer_is_fresh() -> None:
    r = reserve.Reserve(0)
    r.start()
    assert not r.wait_ready(0.1) and r.ready_bytes == 0
    buf = r.acquire(64 * MiB, "x")
    assert not buf.warm and buf.size == 64 * MiB
    buf.close()
    empty = r.acquire(0, "empty")
    assert empty.view().nbytes == 0
    os.close(empty.seal())
    r.close()


def test_config_key_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENSORCAST_RESERVE_BYTES", raising=False)
    phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert DaemonConfig.from_dict({}).reserve_bytes == min(1 << 30, phys // 16)
    cfg = DaemonConfig.from_dict({"memory_tiers": {"reserve_bytes": 5 * MiB}})
    assert cfg.reserve_bytes == 5 * MiB
    monkeypatch.setenv("TENSORCAST_RESERVE_BYTES", "0")
    assert DaemonConfig.from_dict({"memory_tiers": {"reserve_bytes": 5 * MiB}}).reserve_bytes == 0
    monkeypatch.setenv("TENSORCAST_RESERVE_BYTES", "lots")
    with pytest.raises(ValueError, match="TENSORCAST_RESERVE_BYTES"):
        DaemonConfig.from_dict({})
    monkeypatch.delenv("TENSORCAST_RESERVE_BYTES")
    with pytest.raises(ValueError, match="reserve_bytes"):
        DaemonConfig.from_dict({"memory_tiers": {"reserve_bytes": -1}})


def _wait_reserve(d: Proc, want: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = d.clients[0].status() if d.clients else d.client().status()
        if st.reserve_bytes == want and st.reserve_ready_bytes == want:
            return
        time.sleep(0.02)
    raise AssertionError("the daemon's reserve was not filled")


def _takes(d: Proc) -> str:
    [rec] = [
        r for r in sessions.live_sessions("daemon", home=d.home) if r.session_id == d.rec.session_id
    ]
    with urllib.request.urlopen(f"http://{rec.metrics_address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return "\n".join(
        line for line in text.splitlines() if line.startswith("tc_local_reserve_takes_total{")
    )


def test_daemon_fills_imports_pulls_and_inline_registers_into_its_reserve(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    gs = cluster.global_store()
    on = {"TENSORCAST_RESERVE_BYTES": str(48 * MiB)}
    args = ["--global-store-mode", "connect", "--global-store-address", gs.rec.address]
    cfg = {"memory_tiers": {"stable_bytes": 256 * MiB}, "p2p": {"chunk_bytes": 1 * MiB}}
    a = cluster.daemon(name="a", config=cfg, args=args, env=on)
    b = cluster.daemon(name="b", config=cfg, args=args, env=on)
    _wait_reserve(a, 48 * MiB)
    # Import (40 MiB: taken from the reserve, shrunk in place).
    rng = np.random.default_rng(7)
    tensors: dict[str, np.ndarray[Any, Any]] = {
        "a": np.arange(3, dtype=np.uint8),
        "w": rng.standard_normal((10 * MiB,)).astype(np.float32),  # 40 MiB
    }
    path = tmp_path / "m.safetensors"
    _write_safetensors(path, tensors)
    sa = Store(a.client())
    aid = sa.import_safetensors(str(path), key="m:v1")
    got = sa.get("m:v1")
    for k, v in tensors.items():
        np.testing.assert_array_equal(got[k], v)
    assert 'source="reserve"} 1.0' in _takes(a)
    # The same bytes register to the same id (checksums taken over the
    # reserve's mapping agree with a fresh upload's).
    assert sa.put(tensors, key="m:same") == aid
    # Pull onto B: 60 MiB, larger than B's 48 MiB reserve (grown in place).
    _wait_reserve(b, 48 * MiB)
    big = {"x": rng.integers(0, 255, size=60 * MiB, dtype=np.uint8)}
    sa.put(big, key="big:v1")
    sb = Store(b.client())
    np.testing.assert_array_equal(sb.get("big:v1")["x"], big["x"])
    assert 'source="reserve"} 1.0' in _takes(b)
    _wait_reserve(b, 48 * MiB)  # refilled after the pull
    # An inline register (a client without the fd channel) also lands in it.
    inline = DaemonClient(b.rec.address, None, session_id=None)
    try:
        small = {"y": rng.standard_normal(36 * MiB // 8)}  # 36 MiB of float64
        Store(inline).put(small, key="inline:v1")
        np.testing.assert_array_equal(Store(inline).get("inline:v1")["y"], small["y"])
    finally:
        inline.close()
    assert 'source="reserve"} 2.0' in _takes(b)


def test_a_failed_pull_into_the_reserve_leaves_nothing_behind(cluster: Cluster) -> None:  # noqa: F811
    gs = cluster.global_store()
    on = {"TENSORCAST_RESERVE_BYTES": str(40 * MiB)}
    args = ["--global-store-mode", "connect", "--global-store-address", gs.rec.address]
    cfg = {"memory_tiers": {"stable_bytes": 256 * MiB}, "p2p": {"chunk_bytes": 1 * MiB}}
    a = cluster.daemon(name="a", config={**cfg, "p2p_corrupt_chunks": True}, args=args)
    b = cluster.daemon(name="b", config=cfg, args=args, env=on)
    _wait_reserve(b, 40 * MiB)
    aid = Store(a.client()).register({"x": np.ones(36 * MiB, dtype=np.uint8)})
    sb = Store(b.client())
    with pytest.raises(ArtifactError) as e:
        sb.get(aid)
    assert e.value.status_code == "DATA_LOSS"
    st = b.clients[0].status()
    assert st.stable_bytes_used == 0 and not st.artifacts
    _wait_reserve(b, 40 * MiB)  # discarded and refilled


def test_fill_hashed_places_pieces_across_chunks_and_hashes_the_buffer(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 255, 10_000, dtype=np.uint8).tobytes()
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    # Three pieces, out of order, crossing 1 KiB chunk boundaries, with gaps.
    pieces = [(5000, 6000, 3000), (0, 0, 2500), (2500, 2560, 2000)]
    buf = reserve.fresh(9100, "t")
    with open(src, "rb") as f:
        sums = reserve.fill_hashed(f.fileno(), pieces, buf, 1024)
    want = bytearray(9100)
    for file_off, dst, n in pieces:
        want[dst : dst + n] = data[file_off : file_off + n]
    view = buf.view()
    assert bytes(view) == bytes(want)
    view.release()
    assert sums == layout.chunk_checksums(bytes(want), 1024)
    buf.close()
    short = reserve.fresh(9100, "t")
    with open(src, "rb") as f, pytest.raises(ArtifactError) as e:
        reserve.fill_hashed(f.fileno(), [(9000, 0, 2000)], short, 1024)
    assert e.value.status_code == "DATA_LOSS"
    short.close()
