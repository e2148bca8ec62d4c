"""Without room for the instance pool, the engine falls back and still runs guests."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

CHILD = """
import json
import tensorwasm_tc as t
from tensorwasm_tc import _core
fn = t.Runtime(cache_dir=False).load(
    '(module (memory 1) (func (export "f") (result i32) i32.const 7))')
print(json.dumps({"allocator": _core.engine_info()["allocator"],
                  "values": fn.invoke("f").values}))
"""


def _limit_address_space() -> None:
    # 8 GiB of address space: plenty for Python, far too little for a pool
    # of 1000 4-GiB memory reservations.
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def test_engine_uses_on_demand_allocation_when_the_pool_cannot_reserve() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_address_space,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"allocator": "on_demand", "values": [7]}


def test_engine_uses_the_pool_normally() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["allocator"] == "pooling"
