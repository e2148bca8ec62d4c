"""A daemon killed with SIGKILL: the SDK sees UNAVAILABLE (retryable), and
the same client succeeds once the daemon is back (durable bytes reloaded)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.options import RetryPolicy, StoreOptions
from tensorwasm_tc.tensorcast.store import Store

from tests.tensorcast.test_daemon_support import Cluster, cluster  # noqa: F401


def test_killed_daemon_is_unavailable_then_recovers(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    cfg = {"storage_path": str(tmp_path / "durable")}
    d = cluster.daemon(name="k9", config=cfg)
    port = d.rec.address.rsplit(":", 1)[1]
    client = d.client()
    fast = RetryPolicy(1.0, 2, 0.05, 2.0, 0.0)
    store = Store(client, StoreOptions(retry_overrides={"get": fast}))
    w = np.arange(64, dtype=np.float32)
    store.put({"w": w}, key="m", policy="durable")
    d.clients.remove(client)
    d.stop(signal.SIGKILL)
    with pytest.raises(ArtifactError) as e:
        store.get("m")
    assert e.value.status_code == "UNAVAILABLE"
    assert e.value.retryable
    d2 = cluster.daemon(name="k9", config=cfg, args=["--listen-port", port])
    patient = Store(
        client, StoreOptions(retry_overrides={"get": RetryPolicy(20.0, 10, 0.1, 1.5, 0.1)})
    )
    np.testing.assert_array_equal(patient.get("m")["w"], w)
    client.close()
    assert d2.stop() == 0
