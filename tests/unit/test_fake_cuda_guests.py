"""Guests whose ops run on a (fake) CUDA device: `Runtime(device="cuda:0")`.

Inputs move to the device once per invoke, bound tensors once per (tensor,
device) for all instances, outputs come back as host tensors, and device
memory counts against the function's cap. The ABI, example-guest, snapshot
and persistent-instance suites also run whole with
`TENSOR_WASM_DEVICE=cuda:0`. Every check runs in a child process with
`TENSORCAST_CUDA_BACKEND=fake` (the backend is chosen once per process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRELUDE = f"""
import math
import numpy as np
import tensorwasm_tc as tw
MLP = open({str(REPO / "examples/guests/mlp.wasm")!r}, "rb").read()
erf = np.vectorize(math.erf)
def reference(w, x):
    h = x.astype(np.float64) @ w["w1"].T + w["b1"]
    g = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    return g @ w["w2"].T + w["b2"]
def cuda_dispatches():
    return sum(n for _op, dev, n in tw._core.kernel_dispatch_counts() if dev == "cuda")
rng = np.random.default_rng(0)
W = {{
    "w1": (rng.standard_normal((256, 64)) * 0.1).astype(np.float32),
    "b1": rng.standard_normal(256).astype(np.float32),
    "w2": (rng.standard_normal((32, 256)) * 0.1).astype(np.float32),
    "b2": rng.standard_normal(32).astype(np.float32),
}}
"""


def run(body: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "TENSOR_WASM_DEVICE"}
    full.update({"TENSORCAST_CUDA_BACKEND": "fake", **env})
    r = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_mlp_on_the_device_matches_numpy_and_the_cpu() -> None:
    run("""
    rt = tw.Runtime(cache_dir=False, device="cuda:0")
    cpu = tw.Runtime(cache_dir=False, device="cpu")
    assert rt.device == "cuda:0" and cpu.device == "cpu"
    fn = rt.load(MLP, bindings={"weights": W})
    ref_fn = cpu.load(MLP, bindings={"weights": W})
    assert fn.device == "cuda:0" and ref_fn.device == "cpu"
    x = rng.standard_normal((8, 64)).astype(np.float32)
    before = cuda_dispatches()
    res = fn.invoke("run", inputs={"x": x})
    assert res.values == [0], res.stderr
    y = res.outputs["y"]
    assert y.device == "cpu", "outputs come back as host tensors"
    assert cuda_dispatches() - before == 3  # linear, gelu, linear
    np.testing.assert_allclose(np.from_dlpack(y), reference(W, x), rtol=1e-4, atol=1e-4)
    y_cpu = np.from_dlpack(ref_fn.invoke("run", inputs={"x": x}).outputs["y"])
    np.testing.assert_allclose(np.from_dlpack(y), y_cpu, rtol=1e-6, atol=1e-6)
    """)


def test_bound_tensors_are_copied_once_per_device_for_every_instance() -> None:
    run("""
    rt = tw.Runtime(cache_dir=False, device="cuda:0")
    fn = rt.load(MLP, bindings={"weights": W})
    x = rng.standard_normal((8, 64)).astype(np.float32)
    fn.invoke("run", inputs={"x": x})
    live_after_first = tw._core.device_memory()[0]["live"]
    weight_bytes = sum(a.nbytes for a in W.values())
    assert live_after_first >= weight_bytes, live_after_first
    instances = [fn.instantiate() for _ in range(4)]
    for _ in range(5):
        fn.invoke("run", inputs={"x": x})
        for inst in instances:
            assert inst.invoke("run", inputs={"x": x}).values == [0]
    live = tw._core.device_memory()[0]["live"]
    assert live == live_after_first, (live, live_after_first)
    """)


def test_device_memory_counts_against_the_function_cap() -> None:
    run("""
    big = {
        "w1": np.zeros((4096, 64), np.float32),
        "b1": np.zeros(4096, np.float32),
        "w2": np.zeros((32, 4096), np.float32),
        "b2": np.zeros(32, np.float32),
    }
    rt = tw.Runtime(cache_dir=False, device="cuda:0", max_memory_bytes=2 << 20)
    fn = rt.load(MLP, bindings={"weights": big})
    x = np.zeros((512, 64), np.float32)  # a 512 x 4096 f32 hidden layer is 8 MiB
    res = fn.invoke("run", inputs={"x": x})
    assert res.values and res.values[0] < 0, res.values
    assert "memory" in res.stderr or "resource" in res.stderr.lower(), res.stderr
    # The runtime is still usable, and memory came back.
    small = np.zeros((2, 64), np.float32)
    assert fn.invoke("run", inputs={"x": small}).values == [0]
    """)


def test_the_abi_and_guest_suites_pass_on_the_fake_device() -> None:
    suites = [
        "tests/integration/test_abi_imports_and_error_codes.py",
        "tests/integration/test_example_guests.py",
        "tests/integration/test_instance_snapshots.py",
        "tests/integration/test_persistent_instances_keep_state.py",
    ]
    env = dict(os.environ)
    env.update(TENSORCAST_CUDA_BACKEND="fake", TENSOR_WASM_DEVICE="cuda:0")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    probe = run(
        "assert tw.Runtime(cache_dir=False).device == 'cuda:0'", TENSOR_WASM_DEVICE="cuda:0"
    )
    assert probe == ""
