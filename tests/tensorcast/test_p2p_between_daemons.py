"""Two daemons and one Global Store on loopback: a put on A is pulled by B
over P2P (parallel streams, every chunk checked); a corrupted chunk is
DATA_LOSS and leaves nothing behind on B."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.store import Store

from tests.tensorcast.test_daemon_support import Cluster, Proc, cluster  # noqa: F401

MiB = 1 << 20


def _connected(c: Cluster, name: str, gs_addr: str, **cfg: object) -> tuple[Store, Proc]:
    d = c.daemon(
        name=name,
        config={"p2p": {"streams": 4, "chunk_bytes": 1 * MiB}, **cfg},
        args=["--global-store-mode", "connect", "--global-store-address", gs_addr],
    )
    return Store(d.client()), d


def test_put_on_a_get_on_b_over_p2p(cluster: Cluster) -> None:  # noqa: F811
    gs = cluster.global_store()
    a, _da = _connected(cluster, "a", gs.rec.address)
    b, db = _connected(cluster, "b", gs.rec.address)
    rng = np.random.default_rng(1)
    tensors = {
        "w": rng.standard_normal((1000, 1000)).astype(np.float32),  # ~3.8 chunks
        "b": np.arange(17, dtype=np.int64),
    }
    aid = a.put(tensors, key="model:latest")
    resp, _buf = db.clients[0].get(key="model:latest")
    assert resp.served_from == "p2p"
    assert resp.manifest.artifact_id == aid
    out = b.get("model:latest")
    for name, want in tensors.items():
        np.testing.assert_array_equal(out[name], want)
    # B now holds a replica in memory; a second get is local.
    resp2, _ = db.clients[0].get(key="model:latest")
    assert resp2.served_from == "memory"
    # Key swap on A is seen by the next get on B.
    v2 = a.put({"w": np.zeros(3, dtype=np.float32)}, key="model:latest")
    np.testing.assert_array_equal(b.get("model:latest")["w"], np.zeros(3))
    assert b.artifact(key="model:latest").info().artifact_id == v2
    st = db.clients[0].status()
    assert st.global_store_connected and st.global_store_address == gs.rec.address
    # local_only never goes to a peer.
    only_a = a.register({"z": np.ones(5)})
    with pytest.raises(ArtifactError) as e:
        b.get(only_a, source="local_only")
    assert e.value.status_code == "NOT_FOUND"


def test_corrupted_chunk_is_data_loss(cluster: Cluster) -> None:  # noqa: F811
    gs = cluster.global_store()
    a, _da = _connected(cluster, "a", gs.rec.address, p2p_corrupt_chunks=True)
    b, db = _connected(cluster, "b", gs.rec.address)
    aid = a.put({"w": np.arange(3 * MiB, dtype=np.uint8)}, key="bad")
    with pytest.raises(ArtifactError) as e:
        b.get("bad")
    assert e.value.status_code == "DATA_LOSS"
    assert not e.value.retryable
    st = db.clients[0].status()
    assert aid not in {x.artifact_id for x in st.artifacts}  # nothing kept


def test_global_store_mode_start_owns_its_store(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    from tensorwasm_tc.tensorcast.sessions import live_sessions, pid_alive

    gs_cfg = tmp_path / "gs.yaml"
    gs_cfg.write_text("global_store:\n  heartbeat:\n    interval_ms: 500\n")
    d = cluster.daemon(
        name="owner",
        args=["--global-store-mode", "start", "--global-store-config", str(gs_cfg)],
    )
    st = d.client().status()
    assert st.global_store_connected and st.global_store_address
    gs_recs = live_sessions("global_store", home=d.home)
    assert [r.address for r in gs_recs] == [st.global_store_address]
    # A second `start` under the same home refuses to borrow the running store.
    with pytest.raises(RuntimeError, match="already running"):
        cluster.daemon(name="second", args=["--global-store-mode", "start"])
    assert d.stop() == 0
    assert live_sessions("global_store", home=d.home) == []
    assert not pid_alive(gs_recs[0].pid)


def test_pull_larger_than_socket_buffers(cluster: Cluster) -> None:  # noqa: F811
    gs = cluster.global_store()
    big = {"memory_tiers": {"stable_bytes": 256 * MiB}}
    a, _da = _connected(cluster, "a", gs.rec.address, **big)
    _b, db = _connected(cluster, "b", gs.rec.address, **big)
    x = np.random.default_rng(3).integers(0, 255, size=96 * MiB + 12345, dtype=np.uint8)
    aid = a.register({"x": x})
    resp, buf = db.clients[0].get(artifact_id=aid)
    assert resp.served_from == "p2p" and len(resp.manifest.chunk_checksums) == 97
    assert buf is not None
    np.testing.assert_array_equal(np.frombuffer(buf, dtype=np.uint8), x)
