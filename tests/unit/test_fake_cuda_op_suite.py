"""The whole op suite through the CUDA code paths, on the fake backend.

`TENSORCAST_CUDA_BACKEND=fake` gives the process fake CUDA devices (host
memory with a device's semantics: separate pooled allocations, explicit
copies, stream ordering). `test_ops_match_numpy.py`, run with
`TENSORWASM_TEST_DEVICE=cuda:0`, moves every operand to the device, checks
that every result is produced there, and compares it with numpy. Its own
process: the backend is chosen once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).with_name("test_ops_match_numpy.py")


def test_every_op_runs_on_the_fake_device_and_matches_numpy() -> None:
    env = dict(os.environ)
    env.update(
        TENSORCAST_CUDA_BACKEND="fake",
        TENSORCAST_FAKE_CUDA_MEMORY=str(4 << 30),
        TENSORWASM_TEST_DEVICE="cuda:0",
    )
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
