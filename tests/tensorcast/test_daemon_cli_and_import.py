"""`tensorcast-cli daemon start|status|logs|stop`, safetensors import, and the
fd channel's framing."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from tensorwasm_tc.tensorcast.daemon.fdchannel import FdChannelClient
from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.store import Store

from tests.tensorcast.test_daemon_support import Cluster, cluster  # noqa: F401


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TENSORCAST_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-c", "from tensorwasm_tc.cli.tensorcast import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_cli_start_status_logs_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"storage_path": str(tmp_path / "st"), "memory_tiers": {"stable_bytes": 1 << 24}}
        )
    )
    started = _cli(
        home, "daemon", "start", f"--config={cfg}", "--listen-port", "0", "--session-id", "cli1"
    )
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        assert "running at 127.0.0.1:" in started.stdout
        st = _cli(home, "daemon", "status", "--json")
        assert st.returncode == 0, st.stderr
        rep = json.loads(st.stdout)["daemons"]
        assert len(rep) == 1 and rep[0]["reachable"]
        status = rep[0]["status"]
        assert status["build"] and int(status["stable_bytes_capacity"]) == 1 << 24
        assert rep[0]["session"]["session_id"] == "cli1"
        human = _cli(home, "daemon", "status")
        assert "daemon cli1" in human.stdout and "memory" in human.stdout
        logs = _cli(home, "daemon", "logs")
        assert "ready" in logs.stdout
    finally:
        stopped = _cli(home, "daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped store daemon cli1" in stopped.stdout
    assert json.loads(_cli(home, "daemon", "status", "--json").stdout) == {"daemons": []}
    assert _cli(home, "daemon", "stop").returncode != 0


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray[Any, Any]]) -> None:
    names = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64",
             np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL"}  # fmt: skip
    header: dict[str, Any] = {"__metadata__": {"format": "np"}}
    data = b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {
            "dtype": names[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    path.write_bytes(struct.pack("<Q", len(hb)) + hb + data)


def test_import_safetensors_matches_numpy(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    d = cluster.daemon()
    store = Store(d.client())
    tensors = {
        "a": np.arange(7, dtype=np.uint8),  # leaves the next tensor unaligned in the file
        "w": np.random.default_rng(2).standard_normal((31, 9)).astype(np.float32),
        "h": np.arange(5, dtype=np.float16),
        "i": np.arange(3, dtype=np.int64),
        "m": np.array([True, False]),
    }
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, tensors)
    aid = store.import_safetensors(str(path), key="st:v1")
    out = store.get("st:v1")
    assert set(out) == set(tensors)
    for name, want in tensors.items():
        np.testing.assert_array_equal(out[name], want)
        assert out[name].ctypes.data % 64 == 0
    # The same tensors registered from numpy give the same content id.
    assert store.register(tensors) == aid
    assert store.artifact(disk_path=str(path)).info().artifact_id == aid
    np.testing.assert_array_equal(
        store.artifact(disk_path=str(path)).tensor_dict()["w"], tensors["w"]
    )


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        struct.pack("<Q", 1 << 40),
        struct.pack("<Q", 5) + b"nope!",
        struct.pack("<Q", 2) + b"[]",
        struct.pack("<Q", 60)
        + json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
        .encode()
        .ljust(60)
        + b"short",
        struct.pack("<Q", 58)
        + json.dumps({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}})
        .encode()
        .ljust(58)
        + b"\0" * 8,
    ],
)
def test_import_rejects_malformed_files(cluster: Cluster, tmp_path: Path, blob: bytes) -> None:  # noqa: F811
    d = cluster.daemon(name="bad")
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(ArtifactError) as e:
        d.client().import_safetensors(path)
    assert e.value.status_code == "INVALID_ARGUMENT"
    with pytest.raises(ArtifactError) as e:
        d.client().import_safetensors(tmp_path / "missing.safetensors")
    assert e.value.status_code == "NOT_FOUND"


def test_fd_channel_framing(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    chan = FdChannelClient(d.rec.socket_path)
    try:
        with pytest.raises(ArtifactError) as e:
            chan.open("no-such-lease")
        assert e.value.status_code == "NOT_FOUND"
        with pytest.raises(ArtifactError) as e:
            chan.call({"op": "frobnicate"})
        assert e.value.status_code == "INVALID_ARGUMENT"
        with pytest.raises(ArtifactError) as e:
            chan.call({"op": "upload", "size": 4})  # no descriptor attached
        assert e.value.status_code == "INVALID_ARGUMENT"
        # A memfd whose size disagrees with the request is refused.
        fd = os.memfd_create("t", os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, 10)
        with pytest.raises(ArtifactError) as e:
            chan.upload(fd, 11)
        assert e.value.status_code == "INVALID_ARGUMENT"
        token = chan.upload(fd, 10)
        os.close(fd)
        assert len(token) == 32
        # The channel still works after errors; leases open sealed, read-only memfds.
        c = d.client()
        Store(c).put({"w": np.arange(4, dtype=np.int32)}, key="k")
        c.get(key="k")
        c2 = d.client()
        _resp, buf = c2.get(key="k")
        assert buf is not None and bytes(buf[:16]) == np.arange(4, dtype=np.int32).tobytes()
        with pytest.raises(TypeError):
            buf[0] = 1  # type: ignore[index]
    finally:
        chan.close()


def test_a_home_too_deep_for_a_unix_socket_still_gets_one(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    d = cluster.daemon(home=deep)
    sock = d.rec.socket_path
    assert len(os.fsencode(sock)) <= 107 and os.path.exists(sock)
    assert not sock.startswith(str(deep))
    assert os.stat(os.path.dirname(sock)).st_mode & 0o077 == 0
    store = Store(d.client())
    assert store.client.same_host
    store.put({"w": np.arange(4, dtype=np.float32)}, key="k")
    np.testing.assert_array_equal(store.get("k")["w"], np.arange(4, dtype=np.float32))
