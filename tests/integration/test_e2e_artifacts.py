"""The whole product as one: weights registered once in TensorCast, the `mlp`
guest bound to them in a real gateway, invoked over HTTP by two tenants.

Real processes throughout: a Global Store, Store Daemons (one per "host",
each with its own ``TENSORCAST_HOME``) and ``tensor-wasm serve`` gateways
attached to them with ``--tensorcast-address``.
"""

from __future__ import annotations

import base64
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tensorwasm_tc.tensorcast.daemon.client import DaemonClient
from tensorwasm_tc.tensorcast.store import Store

from tests.integration._gateway import GatewayServer, b64, free_port, guest_wasm
from tests.tensorcast.test_daemon_support import Cluster, Proc

MiB = 1 << 20
TOKENS = "t1:tenant=1,t2:tenant=2"
IN, HIDDEN, OUT, BATCH = 256, 1024, 128, 4
KEY = "mlp:v1"

_erf = np.vectorize(math.erf, otypes=[np.float64])


def weights(scale: float = 1.0, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.standard_normal((HIDDEN, IN)) * 0.05 * scale).astype(np.float32),
        "b1": (rng.standard_normal(HIDDEN) * 0.1 * scale).astype(np.float32),
        "w2": (rng.standard_normal((OUT, HIDDEN)) * 0.05 * scale).astype(np.float32),
        "b2": (rng.standard_normal(OUT) * 0.1 * scale).astype(np.float32),
    }


def reference(w: dict[str, np.ndarray[Any, Any]], x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    h = x.astype(np.float64) @ w["w1"].T.astype(np.float64) + w["b1"]
    g = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
    out: np.ndarray[Any, Any] = g @ w["w2"].T.astype(np.float64) + w["b2"]
    return out


def inputs(seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(1000 + seed).standard_normal((BATCH, IN)).astype(np.float32)


def invoke(client: httpx.Client, fid: str, x: np.ndarray[Any, Any]) -> httpx.Response:
    body = {
        "export": "run",
        "inputs": {"x": {"dtype": "f32", "shape": list(x.shape), "data_b64": b64(x.tobytes())}},
        "output_encoding": "data_b64",
    }
    return client.post(f"/functions/{fid}/invoke", json=body)


def output(resp: httpx.Response) -> np.ndarray[Any, Any]:
    assert resp.status_code == 200, resp.text
    y = resp.json()["outputs"]["y"]
    assert y["dtype"] == "f32" and y["shape"] == [BATCH, OUT]
    return np.frombuffer(base64.b64decode(y["data_b64"]), dtype=np.float32).reshape(BATCH, OUT)


def close_to(y: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> bool:
    return bool(np.allclose(y, want, rtol=1e-4, atol=1e-4))


def deploy(client: httpx.Client, name: str = "mlp", key: str = KEY) -> str:
    r = client.post(
        "/functions",
        json={"name": name, "wasm_b64": b64(guest_wasm("mlp")), "artifacts": {"weights": key}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["artifacts"] == {"weights": key}
    fid: str = r.json()["id"]
    return fid


@dataclass
class Host:
    """A daemon and the gateway attached to it, sharing one TENSORCAST_HOME."""

    daemon: Proc
    gateway: GatewayServer
    home: Path

    def store(self) -> Store:
        return Store(self.daemon.client())

    def status(self) -> Any:
        return self.daemon.client(session_id=None).status()


class World:
    def __init__(self, tmp: Path, cluster: Cluster) -> None:
        self.tmp = tmp
        self.cluster = cluster
        self.gateways: list[GatewayServer] = []

    def daemon(self, name: str, gs: Proc | None, **config: Any) -> Proc:
        args = []
        if gs is not None:
            args = ["--global-store-mode", "connect", "--global-store-address", gs.rec.address]
        cfg = {
            "memory_tiers": {"stable_bytes": 256 * MiB},
            "p2p": {"chunk_bytes": 1 * MiB},
            **config,
        }
        return self.cluster.daemon(name=name, home=self.tmp / f"tc-{name}", config=cfg, args=args)

    def gateway(self, name: str, daemon: Proc) -> GatewayServer:
        env = {
            "TENSORCAST_HOME": str(self.tmp / f"tc-{name}"),
            "TENSOR_WASM_API_TOKENS": TOKENS,
            "TENSOR_WASM_TENSORCAST": "auto",
        }
        gw = GatewayServer.start(
            self.tmp / f"gw-{name}", env, ["--tensorcast-address", daemon.rec.address]
        )
        self.gateways.append(gw)
        wait_connected(gw)
        return gw

    def host(self, name: str, gs: Proc | None, **config: Any) -> Host:
        d = self.daemon(name, gs, **config)
        return Host(d, self.gateway(name, d), self.tmp / f"tc-{name}")

    def close(self) -> None:
        for gw in self.gateways:
            try:
                gw.stop()
            finally:
                gw._kill()


def wait_connected(gw: GatewayServer, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        tc: dict[str, Any] = httpx.get(f"{gw.url}/readyz", timeout=5).json()["tensorcast"]
        if tc["state"] == "connected" or time.monotonic() > deadline:
            assert tc["state"] == "connected", tc
            return tc
        time.sleep(0.05)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    c = Cluster(tmp_path)
    w = World(tmp_path, c)
    try:
        yield w
    finally:
        try:
            w.close()
        finally:
            c.close()


def private_bytes(pid: int) -> int:
    """Memory the process alone holds (shared mappings such as the daemon's
    memfds are not counted)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0]) * 1024
    return fields["Private_Clean"] + fields["Private_Dirty"]


def test_two_tenants_share_one_copy_and_a_key_swap_is_clean(world: World) -> None:
    gs = world.cluster.global_store()
    a = world.host("a", gs)
    v1 = weights()
    aid = a.store().put(v1, key=KEY)
    t1, t2 = a.gateway.client("t1", 1), a.gateway.client("t2", 2)
    f1, f2 = deploy(t1), deploy(t2)
    assert t1.get(f"/functions/{f2}").status_code == 403  # still tenant-scoped

    # 16 concurrent invokes, 8 per tenant: numpy-equal outputs.
    def one(i: int) -> bool:
        client, fid = (t1, f1) if i % 2 == 0 else (t2, f2)
        x = inputs(i)
        return close_to(output(invoke(client, fid, x)), reference(v1, x))

    with ThreadPoolExecutor(16) as ex:
        assert all(ex.map(one, range(16)))

    # One copy: the daemon holds the artifact once, the gateway maps it once
    # and persistent instances do not copy it.
    st = a.status()
    assert [x.artifact_id for x in st.artifacts] == [aid]
    assert st.stable_bytes_used == st.artifacts[0].total_bytes
    assert httpx.get(f"{a.gateway.url}/readyz").json()["tensorcast"]["artifacts_mapped"] == 1
    assert a.gateway.proc is not None
    before = private_bytes(a.gateway.proc.pid)
    instances = []
    for _ in range(8):
        r = t1.post("/instances", json={"function_id": f1})
        assert r.status_code == 201, r.text
        instances.append(r.json()["instance_id"])
    for iid in instances:
        x = inputs(7)
        r = t1.post(f"/instances/{iid}/invoke", json={"export": "run", **_inputs_body(x)})
        assert close_to(output(r), reference(v1, x))
    grown = private_bytes(a.gateway.proc.pid) - before
    artifact_bytes = st.artifacts[0].total_bytes
    assert grown < 2 * artifact_bytes, f"8 instances grew the gateway by {grown} bytes"
    assert a.status().stable_bytes_used == artifact_bytes

    # Key swap under load: every answer is v1's or v2's, and every invoke
    # that starts after the swap returned gets v2's.
    v2 = weights(scale=2.0)
    swapped_at: list[float] = []
    results: list[tuple[float, str]] = []
    stop = threading.Event()

    def load(client: httpx.Client, fid: str) -> None:
        x = inputs(3)
        want1, want2 = reference(v1, x), reference(v2, x)
        while not stop.is_set():
            started = time.monotonic()
            y = output(invoke(client, fid, x))
            which = "v1" if close_to(y, want1) else "v2" if close_to(y, want2) else "torn"
            results.append((started, which))

    threads = [threading.Thread(target=load, args=(c, f)) for c, f in ((t1, f1), (t2, f2))]
    for t in threads:
        t.start()
    time.sleep(0.5)
    aid2 = a.store().put(v2, key=KEY)
    swapped_at.append(time.monotonic())
    time.sleep(0.8)
    stop.set()
    for t in threads:
        t.join(30)
    assert aid2 != aid
    kinds = [k for _s, k in results]
    assert "torn" not in kinds
    assert "v1" in kinds and "v2" in kinds
    assert all(k == "v2" for s, k in results if s > swapped_at[0])
    # The persistent instances keep the weights they started with.
    r = t1.post(f"/instances/{instances[0]}/invoke", json={"export": "run", **_inputs_body(x)})
    assert close_to(output(r), reference(v1, x))


def _inputs_body(x: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {
        "inputs": {"x": {"dtype": "f32", "shape": list(x.shape), "data_b64": b64(x.tobytes())}},
        "output_encoding": "data_b64",
    }


def test_daemon_killed_gives_424_then_recovers_without_a_gateway_restart(world: World) -> None:
    port = free_port()
    cfg = {"listen_port": port}
    a = world.host("a", None, **cfg)
    v1 = weights(seed=5)
    a.store().put(v1, key=KEY, policy="durable")
    t1 = a.gateway.client("t1", 1)
    fid = deploy(t1)
    x = inputs(0)
    assert close_to(output(invoke(t1, fid, x)), reference(v1, x))

    # A key nobody registered: 424 with a retry hint, never a 500.
    missing = deploy(t1, name="missing", key="nope:v1")
    r = invoke(t1, missing, x)
    assert r.status_code == 424, r.text
    assert r.json()["error"]["kind"] == "artifact_unavailable"
    assert "retry" in r.json()["error"]["message"]

    a.daemon.stop(signal.SIGKILL)
    r = invoke(t1, fid, x)
    assert r.status_code == 424, r.text
    assert r.json()["error"]["kind"] == "artifact_unavailable"
    assert r.headers.get("retry-after") == "1"
    assert httpx.get(f"{a.gateway.url}/readyz").json()["tensorcast"]["state"] == "unavailable"
    # Functions without artifacts are not affected.
    plain = t1.post(
        "/functions",
        json={"name": "plain", "wasm_b64": b64(guest_wasm("vector_add"))},
    )
    assert plain.status_code == 201, plain.text

    # The daemon comes back on the same port and reloads the durable
    # artifact and its key from disk: the gateway re-attaches by itself.
    world.cluster.procs.remove(a.daemon)
    a.daemon = world.daemon("a", None, **cfg)
    deadline = time.monotonic() + 30
    while True:
        r = invoke(t1, fid, x)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        assert r.status_code == 424, r.text
        time.sleep(0.2)
    assert close_to(output(r), reference(v1, x))
    assert wait_connected(a.gateway)["state"] == "connected"


def test_a_second_host_pulls_the_weights_over_p2p_on_first_invoke(world: World) -> None:
    gs = world.cluster.global_store()
    a = world.host("a", gs)
    b = world.host("b", gs)
    v1 = weights(seed=9)
    aid = a.store().put(v1, key=KEY)
    assert not b.status().artifacts
    tb = b.gateway.client("t2", 2)
    fid = deploy(tb)
    x = inputs(4)
    assert close_to(output(invoke(tb, fid, x)), reference(v1, x))
    # B's daemon now holds a replica it pulled from A.
    st = b.status()
    assert [x.artifact_id for x in st.artifacts] == [aid]
    info = DaemonClient(b.daemon.rec.address, None, session_id=None)
    try:
        assert "memory" in list(info.info(artifact_id=aid).local_tiers)
    finally:
        info.close()
    # And it keeps following the key as A moves it.
    v2 = weights(scale=0.5, seed=9)
    a.store().put(v2, key=KEY)
    assert close_to(output(invoke(tb, fid, x)), reference(v2, x))


def test_without_tensorcast_artifacts_are_refused(tmp_path: Path) -> None:
    env = {"TENSOR_WASM_API_TOKENS": TOKENS}
    gw = GatewayServer.start(tmp_path / "gw", env, ["--no-tensorcast"])
    try:
        t1 = gw.client("t1", 1)
        r = t1.post(
            "/functions",
            json={"name": "m", "wasm_b64": b64(guest_wasm("mlp")), "artifacts": {"w": KEY}},
        )
        assert r.status_code == 503, r.text
        assert r.json()["error"]["kind"] == "artifact_store_unavailable"
        assert httpx.get(f"{gw.url}/readyz").json()["tensorcast"] == {
            "mode": "off",
            "state": "off",
        }
        bad = t1.post(
            "/functions",
            json={"name": "m", "wasm_b64": b64(guest_wasm("mlp")), "artifacts": {"a/b": KEY}},
        )
        assert bad.status_code == 400 and bad.json()["error"]["kind"] == "invalid_args"
    finally:
        gw.stop()
    assert os.path.exists(tmp_path / "gw")
