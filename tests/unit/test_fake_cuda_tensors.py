"""Device tensors on the fake CUDA backend: explicit copies, device-side
views, accessors that refuse device memory, mixed-device errors, the
device's memory capacity, and guests that only take host tensors.

Each check runs in a child process started with
`TENSORCAST_CUDA_BACKEND=fake` (the backend is chosen once per process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import threading
import numpy as np
import tensorwasm_tc as tw
from tensorwasm_tc import ops
"""


def run(body: str, **env: str) -> str:
    full = dict(os.environ)
    full.update({"TENSORCAST_CUDA_BACKEND": "fake", **env})
    code = PRELUDE + textwrap.dedent(body)
    r = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_round_trips_every_dtype_and_layout() -> None:
    run("""
    rng = np.random.default_rng(0)
    for dt in ["float32", "float64", "float16", "int32", "int64", "uint8", "int8", "bool"]:
        a = (rng.standard_normal((5, 7)) * 50).astype(dt)
        for src in (a, a.T, a[::2, 1::3]):
            d = tw.Tensor.from_numpy(src).to("cuda")
            assert d.device == "cuda:0" and d.storage_kind == "device", d
            back = np.from_dlpack(d.to("cpu"))
            np.testing.assert_array_equal(back, src)
            assert d.tobytes() == np.ascontiguousarray(src).tobytes()
    bf = ops.cast(np.arange(6, dtype=np.float32), "bf16").to("cuda:0")
    np.testing.assert_array_equal(np.from_dlpack(ops.cast(bf, "f32").to("cpu")), np.arange(6))
    """)


def test_device_views_and_ops_stay_on_the_device() -> None:
    run("""
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    d = tw.Tensor.from_numpy(a).to("cuda")
    t = ops.transpose(d, [2, 0, 1])
    assert t.device == "cuda:0" and not t.is_contiguous
    np.testing.assert_array_equal(np.from_dlpack(t.to("cpu")), a.transpose(2, 0, 1))
    c = t.contiguous()
    assert c.device == "cuda:0" and c.is_contiguous
    ones = tw.Tensor.from_numpy(np.ones((6, 4), np.float32)).to("cuda")
    y = ops.softmax(ops.add(ops.reshape(d, [6, 4]), ones), -1)
    assert y.device == "cuda:0"
    ref = np.exp(a.reshape(6, 4) + 1)
    want = ref / ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.from_dlpack(y.to("cpu")), want, rtol=1e-6)
    """)


def test_host_accessors_refuse_device_memory_and_mixing_devices_is_an_error() -> None:
    run("""
    d = tw.Tensor.from_numpy(np.ones(4, np.float32)).to("cuda")
    assert d.__dlpack_device__() == (2, 0)
    for f in (lambda: np.from_dlpack(d), lambda: memoryview(d)):
        try:
            f()
        except (BufferError, TypeError, ValueError) as e:
            assert "cuda:0" in str(e) or "device" in str(e), e
        else:
            raise AssertionError("host access to device memory was allowed")
    assert np.asarray(d).dtype == object  # numpy wraps it; it never reads the memory
    try:
        ops.add(d, np.ones(4, np.float32))
    except tw.InvalidArgsError as e:
        assert "argument 1 is on cpu and an earlier one on cuda:0" in str(e), e
    else:
        raise AssertionError("mixed devices were accepted")
    try:
        d.to("cuda:3")
    except tw.InvalidArgsError as e:
        assert "cuda:3 does not exist" in str(e)
    fn = tw.Runtime().load("(module (func (export \\"main\\")))")
    try:
        fn.invoke("main", inputs={"x": d})
    except tw.InvalidArgsError as e:
        assert "needs a host tensor" in str(e) and 'to("cpu")' in str(e), e
    else:
        raise AssertionError("a guest got device memory")
    """)


def test_device_memory_is_capped_and_comes_back() -> None:
    run(
        """
    held = []
    try:
        for _ in range(100):
            held.append(tw.Tensor.zeros("f32", [1 << 20]).to("cuda"))  # 4 MiB each
    except tw.ResourceExhaustedError as e:
        assert "out of device memory" in str(e) and "cuda:0" in str(e), e
    else:
        raise AssertionError("the device never ran out")
    assert 10 <= len(held) <= 16, len(held)
    held.clear()
    again = [tw.Tensor.zeros("f32", [1 << 20]).to("cuda") for _ in range(10)]
    assert all(t.device == "cuda:0" for t in again)
    """,
        TENSORCAST_FAKE_CUDA_MEMORY=str(64 << 20),
    )


@pytest.mark.parametrize("threads", [8])
def test_concurrent_ops_on_one_device(threads: int) -> None:
    run(f"""
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((64, 64)).astype(np.float32) for _ in range({threads})]
    out = [None] * {threads}
    def work(i):
        d = tw.Tensor.from_numpy(xs[i]).to("cuda")
        for _ in range(5):
            d = ops.matmul(d, tw.Tensor.from_numpy(np.eye(64, dtype=np.float32)).to("cuda"))
        out[i] = np.from_dlpack(ops.relu(d).to("cpu"))
    ts = [threading.Thread(target=work, args=(i,)) for i in range({threads})]
    [t.start() for t in ts]
    [t.join() for t in ts]
    for i in range({threads}):
        np.testing.assert_allclose(out[i], np.maximum(xs[i], 0), rtol=1e-5, atol=1e-6)
    """)
