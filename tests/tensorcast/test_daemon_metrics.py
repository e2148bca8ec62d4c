"""The Store Daemon serves its Prometheus metrics on its own port."""

from __future__ import annotations

import urllib.request

import numpy as np
from tensorwasm_tc.tensorcast import sessions
from tensorwasm_tc.tensorcast.store import Store

from tests.tensorcast.test_daemon_support import Cluster, cluster  # noqa: F401


def test_metrics_endpoint_counts_stable_tier_operations(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    [rec] = [r for r in sessions.live_sessions("daemon", home=d.home) if r.session_id == "d1"]
    assert rec.metrics_address, "the session file names the metrics endpoint"
    Store(d.client()).register({"w": np.arange(16, dtype=np.float32)}, key="k")
    with urllib.request.urlopen(f"http://{rec.metrics_address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert 'tc_local_stable_tier_total{op="register",status="OK"} 1.0' in text
    assert "tc_p2p_bytes_total" in text


def test_metrics_can_be_turned_off(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon(config={"metrics_port": -1})
    [rec] = [r for r in sessions.live_sessions("daemon", home=d.home) if r.session_id == "d1"]
    assert rec.metrics_address == ""


def test_metrics_name_the_build_and_the_tier_bytes(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    [rec] = [r for r in sessions.live_sessions("daemon", home=d.home) if r.session_id == "d1"]
    Store(d.client()).register({"w": np.arange(1024, dtype=np.float32)}, key="k")
    with urllib.request.urlopen(f"http://{rec.metrics_address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert f'tc_daemon_build_info{{build="{rec.build}"' in text
    assert 'tc_local_stable_tier_bytes{state="used"} 4096.0' in text
    assert 'tc_local_stable_tier_bytes{state="capacity"} 6.7108864e+07' in text
