"""``examples/quickstart.py`` against a real ``tensor-wasm serve``.

The gateway runs in TensorCast ``auto`` mode (it starts and owns its Store
Daemon) under a temporary ``TENSORCAST_HOME``, with a daemon config on free
ports (``$TENSORCAST_DAEMON_CONFIG``) so that no test meets the default port
50052. The quickstart runs as a newcomer would run it, with the same
environment, and must end with ``OK``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tensorwasm_tc.tensorcast import sessions

from ._gateway import REPO, free_port, running_gateway

QUICKSTART = REPO / "examples" / "quickstart.py"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path: the daemon's Unix socket
    lives under TENSORCAST_HOME, and socket paths are limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="tc-qs-") as tmp:
        yield Path(tmp)


def tensorcast_env(tmp_path: Path, home: Path) -> dict[str, str]:
    """TensorCast on (the suite turns it off), a fresh home, a daemon config
    on free ports and without a warm reserve."""
    config = tmp_path / "store_daemon_config.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "listen_port": 0,
                "p2p_port": 0,
                "metrics_port": -1,
                "memory_tiers": {"stable_bytes": 256 << 20, "reserve_bytes": 0},
            }
        )
    )
    return {
        "TENSOR_WASM_TENSORCAST": "auto",
        "TENSORCAST_HOME": str(home),
        "TENSORCAST_DAEMON_CONFIG": str(config),
    }


def run_quickstart(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(QUICKSTART), *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_quickstart_runs_against_a_real_gateway(tmp_path: Path, short_tmp: Path) -> None:
    env = tensorcast_env(tmp_path, short_tmp)
    with running_gateway(tmp_path / "home", env) as server:
        proc = run_quickstart("--server", server.url, env=env)
        log = server.log()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{out}\n--- gateway log ---\n{log}"
    assert proc.stdout.rstrip().endswith("OK"), out
    assert "max abs difference" in proc.stdout, out
    # The gateway owned the daemon: it is gone with the gateway.
    home = Path(env["TENSORCAST_HOME"])
    deadline = time.monotonic() + 15
    while sessions.live_sessions("daemon", home=home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sessions.live_sessions("daemon", home=home)


def test_quickstart_says_how_to_start_the_server(tmp_path: Path, short_tmp: Path) -> None:
    env = tensorcast_env(tmp_path, short_tmp)
    proc = run_quickstart("--server", f"http://127.0.0.1:{free_port()}", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "tensor-wasm serve" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
