"""The daemon's stable tier through the SDK: zero-copy round trips, policies
(cache eviction, pinned overflow, durable restart), key swaps, sessions."""

from __future__ import annotations

import mmap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorwasm_tc import Tensor
from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.store import Store

from tests.tensorcast.test_daemon_support import Cluster, cluster  # noqa: F401

MiB = 1 << 20


def _mmap_base(arr: np.ndarray[Any, Any]) -> object:
    base: object = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return base


def test_register_get_round_trip_is_zero_copy(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    store = Store(d.client())
    tensors = {
        "w": np.random.default_rng(0).standard_normal((33, 7)).astype(np.float32),
        "h": np.arange(10, dtype=np.float16),
        "i": np.arange(-5, 5, dtype=np.int64),
        "u": np.arange(200, dtype=np.uint8),
        "m": np.array([True, False, True]),
        "t": Tensor.from_numpy(np.arange(6, dtype=np.int32).reshape(2, 3)),
    }
    aid = store.register(tensors, key="model:v1")
    assert len(aid) == 64
    out = store.get("model:v1")
    assert set(out) == set(tensors)
    for name, want in tensors.items():
        np.testing.assert_array_equal(out[name], np.asarray(want))
        assert out[name].dtype == np.asarray(want).dtype
        assert not out[name].flags.writeable
        assert isinstance(_mmap_base(out[name]), mmap.mmap)
        assert out[name].ctypes.data % 64 == 0 or out[name].nbytes == 0
    with pytest.raises(ValueError):
        out["w"][0, 0] = 1.0
    # Same content, same id; by id too.
    assert store.register(tensors) == aid
    np.testing.assert_array_equal(store.get(aid)["w"], tensors["w"])


def test_bfloat16_round_trips_as_uint16_bits(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    store = Store(d.client())
    t = Tensor.zeros("bf16", [4])
    aid = store.register({"b": t})
    info = store.artifact(artifact_id=aid).info()
    assert info.tensors[0].dtype == "bfloat16"
    out = store.get(aid)["b"]
    assert out.dtype == np.uint16 and out.shape == (4,)


@pytest.mark.slow
def test_get_of_one_gib_is_zero_copy_and_fast(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon(config={"memory_tiers": {"stable_bytes": 2 << 30}})
    store = Store(d.client())
    big = np.ones(256 * MiB, dtype=np.float32)  # 1 GiB
    aid = store.register({"x": big})
    del big
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        out = store.get(aid)
        times.append(time.perf_counter() - t0)
        assert out["x"].nbytes == 1 << 30
        del out
    # A copy of 1 GiB takes hundreds of ms; a mapping takes a few.
    assert sorted(times)[2] < 0.05, times


def test_cache_policy_evicts_least_recently_used(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon(config={"memory_tiers": {"stable_bytes": 10 * MiB}})
    store = Store(d.client())
    ids = [store.register({"x": np.full(3 * MiB, i, dtype=np.uint8)}) for i in range(3)]
    held = store.get(ids[0])["x"]  # a mapping the client keeps across eviction
    store.get(ids[0])  # ids[0] is now the most recently used
    fourth = store.register({"x": np.full(3 * MiB, 9, dtype=np.uint8)})
    status = d.clients[0].status()
    present = {a.artifact_id for a in status.artifacts}
    assert ids[1] not in present  # the LRU one went
    assert {ids[0], ids[2], fourth} <= present
    assert status.stable_bytes_used <= 10 * MiB
    with pytest.raises(ArtifactError) as e:
        store.get(ids[1])
    assert e.value.status_code == "NOT_FOUND"
    assert int(held[123]) == 0  # still readable


def test_pinned_overflow_is_resource_exhausted(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon(config={"memory_tiers": {"stable_bytes": 8 * MiB}})
    store = Store(d.client())
    store.register({"x": np.zeros(5 * MiB, dtype=np.uint8)}, policy="pinned")
    cached = store.register({"x": np.ones(2 * MiB, dtype=np.uint8)}, policy="cache")
    with pytest.raises(ArtifactError) as e:
        store.register({"x": np.full(4 * MiB, 2, dtype=np.uint8)}, policy="pinned")
    assert e.value.status_code == "RESOURCE_EXHAUSTED"
    assert not e.value.retryable
    # A rejected register evicts nothing.
    status = d.clients[0].status()
    assert sorted(a.policy for a in status.artifacts) == ["cache", "pinned"]
    assert cached in {a.artifact_id for a in status.artifacts}
    # A cache register that fits after eviction still succeeds.
    store.register({"x": np.full(3 * MiB, 3, dtype=np.uint8)}, policy="cache")
    assert cached not in {a.artifact_id for a in d.clients[0].status().artifacts}


def test_durable_survives_restart(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    cfg = {"storage_path": str(tmp_path / "durable")}
    d = cluster.daemon(name="dur", config=cfg)
    store = Store(d.client())
    w = np.arange(1000, dtype=np.float64)
    aid = store.put({"w": w}, key="durable:v1", policy="durable")
    assert (tmp_path / "durable" / f"{aid}.blob").exists()
    assert d.stop() == 0
    d2 = cluster.daemon(name="dur", config=cfg)
    store2 = Store(d2.client())
    info = store2.artifact(key="durable:v1").info()
    assert info.exists and info.artifact_id == aid and info.local_tiers == ("disk",)
    c = d2.clients[0]
    resp, buf = c.get(key="durable:v1")
    assert resp.served_from == "disk"
    del buf
    np.testing.assert_array_equal(store2.get("durable:v1")["w"], w)
    assert store2.artifact(key="durable:v1").info().local_tiers == ("memory", "disk")


def test_put_swaps_key_seen_by_next_get(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    store = Store(d.client())
    store.put({"w": np.zeros(4, dtype=np.float32)}, key="model:latest")
    before = store.get("model:latest")["w"]
    v2 = store.put({"w": np.ones(4, dtype=np.float32)}, key="model:latest")
    after = store.get("model:latest")["w"]
    np.testing.assert_array_equal(before, np.zeros(4))  # old readers keep old bytes
    np.testing.assert_array_equal(after, np.ones(4))
    info = store.artifact(key="model:latest").info()
    assert info.artifact_id == v2 and info.key_version == 2
    assert store.delete("model:latest")
    assert not store.artifact(key="model:latest").exists()


def test_get_into_and_views(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    store = Store(d.client())
    w = np.arange(24, dtype=np.float32).reshape(4, 6)
    b = np.arange(3, dtype=np.int32)
    store.put({"w": w, "b": b}, key="k")
    target = np.empty((4, 6), dtype=np.float32)
    store.get_into("k", {"w": target})
    np.testing.assert_array_equal(target, w)
    with pytest.raises(ArtifactError) as e:
        store.get_into("k", {"w": np.empty((2, 6), dtype=np.float32)})
    assert e.value.status_code == "INVALID_ARGUMENT"
    view = store.artifact(key="k").view(slices={"w": [(0, 1, 3), (1, 2, 4)]})
    out = view.tensor_dict()
    np.testing.assert_array_equal(out["w"], w[1:3, 2:4])
    np.testing.assert_array_equal(out["b"], b)
    assert isinstance(_mmap_base(out["w"]), mmap.mmap)
    assert list(view.tensor_dict(names=["b"])) == ["b"]
    with pytest.raises(ArtifactError) as e:
        store.artifact(key="k").view(slices={"w": [(0, 0, 9)]}).tensor_dict()
    assert e.value.status_code == "INVALID_ARGUMENT"
    with pytest.raises(ArtifactError) as e:
        store.artifact(key="k").tensor_dict(device="cuda:0")
    assert e.value.status_code == "FAILED_PRECONDITION"


def test_errors_without_global_store(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    store = Store(d.client())
    with pytest.raises(ArtifactError) as e:
        store.get("no-such-key")
    assert e.value.status_code == "NOT_FOUND"
    with pytest.raises(ArtifactError) as e:
        store.get("0" * 64)
    assert e.value.status_code == "NOT_FOUND"
    store.put({"w": np.zeros(2)}, key="here")
    with pytest.raises(ArtifactError) as e:
        store.get("0" * 64, source="prefer_p2p")
    assert e.value.status_code == "FAILED_PRECONDITION"
    assert "Materialization requires a Global Store connection" in e.value.message
    with pytest.raises(ArtifactError) as e:
        store.register({"w": np.zeros(2)}, policy="forever")
    assert e.value.status_code == "INVALID_ARGUMENT"
    with pytest.raises(ArtifactError) as e:
        store.register({"w": np.zeros(2, dtype=np.complex64)})
    assert e.value.status_code == "INVALID_ARGUMENT"


def test_inline_transport_without_socket(cluster: Cluster) -> None:  # noqa: F811
    from tensorwasm_tc.tensorcast.daemon.client import DaemonClient

    d = cluster.daemon()
    c = DaemonClient(d.rec.address, socket_path=None, session_id="remote")
    d.clients.append(c)
    store = Store(c)
    w = np.arange(100, dtype=np.int16)
    aid = store.register({"w": w}, key="inline")
    out = store.get("inline")["w"]
    np.testing.assert_array_equal(out, w)
    assert store.get(aid)["w"].sum() == w.sum()


def test_sessions_and_leases_show_in_status(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    c = d.client(session_id="s-1")
    Store(c).put({"w": np.zeros(8)}, key="k")
    resp, buf = c.get(key="k")
    st = c.status()
    assert [s.session_id for s in st.sessions] == ["s-1"]
    assert st.leases == 0  # the client releases once it holds the mapping
    assert st.artifacts[0].key == "k" and st.artifacts[0].tiers == ["memory"]
    assert st.socket_path == d.rec.socket_path and st.build
    assert resp.served_from == "memory" and buf is not None
    c.close()
    d.clients.remove(c)
    c2 = d.client(session_id=None)
    assert c2.status().sessions == []


def test_deleted_session_file_comes_back(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon(name="sess")
    path = d.home / "store_sessions" / "sess.json"
    assert path.exists()
    path.unlink()
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists()
    assert d.stop() == 0
    assert not path.exists()
    assert not Path(d.rec.socket_path).exists()
