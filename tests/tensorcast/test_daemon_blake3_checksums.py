"""Chunk checksums and artifact ids are BLAKE3, computed by the daemon over
the bytes it holds: a client can recompute them from the blob it gets back,
a safetensors import and a register of the same tensors agree, and a durable
blob changed on disk is DATA_LOSS when it loads."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from tensorwasm_tc import _core
from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.store import Store

from tests.tensorcast.test_daemon_support import Cluster, cluster  # noqa: F401

MiB = 1 << 20


def test_manifest_checksums_and_id_are_blake3_of_the_blob(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon(config={"p2p": {"chunk_bytes": 1 * MiB}})
    store = Store(d.client())
    x = np.random.default_rng(5).integers(0, 255, size=3 * MiB + 777, dtype=np.uint8)
    aid = store.register({"x": x, "y": np.arange(10, dtype=np.int32)})
    resp, buf = d.clients[0].get(artifact_id=aid)
    man = resp.manifest
    assert buf is not None
    blob = bytes(buf)
    assert man.chunk_bytes == 1 * MiB
    assert list(man.chunk_checksums) == _core.blake3_chunks(blob, 1 * MiB)
    assert len(man.chunk_checksums) == 4
    canon = json.dumps(
        {
            "tensors": [[s.name, s.dtype, list(s.shape), s.offset, s.nbytes] for s in man.tensors],
            "total_bytes": man.total_bytes,
            "chunk_bytes": man.chunk_bytes,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    assert aid == _core.blake3_digest(canon + b"".join(man.chunk_checksums)).hex()


def test_safetensors_import_gives_the_registered_id(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    d = cluster.daemon(config={"p2p": {"chunk_bytes": 1 * MiB}})
    store = Store(d.client())
    a = np.arange(2 * MiB + 3, dtype=np.uint8)  # unaligned end: the next tensor moves
    b = np.linspace(0, 1, 1000, dtype=np.float32)
    header = json.dumps(
        {
            "a": {"dtype": "U8", "shape": [a.size], "data_offsets": [0, a.nbytes]},
            "b": {
                "dtype": "F32",
                "shape": [b.size],
                "data_offsets": [a.nbytes, a.nbytes + b.nbytes],
            },
        }
    ).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + a.tobytes() + b.tobytes())
    imported = store.import_safetensors(str(path))
    assert imported == store.register({"a": a, "b": b})
    got = store.get(imported)
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)


def test_durable_blob_changed_on_disk_is_data_loss(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    cfg = {"storage_path": str(tmp_path / "durable"), "p2p": {"chunk_bytes": 1 * MiB}}
    d = cluster.daemon(name="dur", config=cfg)
    aid = Store(d.client()).put(
        {"w": np.arange(2 * MiB, dtype=np.uint8)}, key="k", policy="durable"
    )
    assert d.stop() == 0
    blob = tmp_path / "durable" / f"{aid}.blob"
    raw = bytearray(blob.read_bytes())
    raw[MiB + 5] ^= 0xFF
    blob.write_bytes(bytes(raw))
    d2 = cluster.daemon(name="dur", config=cfg)
    with pytest.raises(ArtifactError) as e:
        Store(d2.client()).get("k")
    assert e.value.status_code == "DATA_LOSS"
