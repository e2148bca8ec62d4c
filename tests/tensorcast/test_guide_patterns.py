"""The startup guide's TP pattern as written: forked workers each call
``init(mode="auto")`` after the fork, one becomes the daemon's owner, and
every rank materialises its own slice of the weights with
``artifact(...).view(slices=...)``."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorwasm_tc.tensorcast as tc
from tensorwasm_tc.tensorcast import sessions, startup

RANKS = 8
ROWS_PER_RANK = 16
WEIGHTS = np.arange(RANKS * ROWS_PER_RANK * 64, dtype=np.float32).reshape(-1, 64)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    h = tmp_path / "tc-home"
    h.mkdir()
    monkeypatch.setenv("TENSORCAST_HOME", str(h))
    monkeypatch.delenv(startup.DAEMON_MODULE_ENV, raising=False)
    monkeypatch.delenv(startup.DAEMON_CONFIG_ENV, raising=False)
    yield h
    for rec in sessions.live_sessions(home=h):  # nothing may outlive the test
        os.kill(rec.pid, signal.SIGKILL)


def _rank(rank: int, config: str, barrier: Barrier, results: Any) -> None:
    try:
        ctx = tc.init(mode="auto", daemon_config_path=config, show_daemon_logs=False)
        tc.put({"w": WEIGHTS}, key="model:latest")  # same bytes from every rank: one artifact
        lo, hi = rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK
        view = tc.artifact(key="model:latest").view(slices={"w": [(0, lo, hi)]})
        shard = view.tensor_dict(device="cpu")["w"]
        ok = bool(np.array_equal(shard, WEIGHTS[lo:hi])) and not shard.flags.writeable
        results.put(("ok" if ok else "wrong shard", rank, ctx.is_owner, ctx.address))
    except Exception as e:  # reported to the parent, which fails the test
        results.put((f"{type(e).__name__}: {e}", rank, False, ""))
    finally:
        barrier.wait(timeout=120)  # the owner keeps the daemon up until all are done
        tc.shutdown()


@pytest.mark.slow
def test_forked_tp_workers_in_auto_mode_take_per_rank_views(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "daemon.yaml"
    config.write_text("listen_port: 0\np2p_port: 0\nmemory_tiers:\n  stable_bytes: 67108864\n")
    ctx = mp.get_context("fork")  # the guide's pattern: init after the fork, in each worker
    barrier = ctx.Barrier(RANKS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_rank, args=(r, str(config), barrier, results)) for r in range(RANKS)
    ]
    for p in procs:
        p.start()
    try:
        out = sorted((results.get(timeout=150) for _ in procs), key=lambda r: r[1])
        for p in procs:
            p.join(timeout=60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    assert [r[0] for r in out] == ["ok"] * RANKS, out
    assert sum(1 for r in out if r[2]) == 1, "exactly one rank owns the daemon"
    assert len({r[3] for r in out}) == 1, "every rank talks to the same daemon"
    deadline = time.monotonic() + 15
    while sessions.live_sessions("daemon", home=home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sessions.live_sessions("daemon", home=home) == []
