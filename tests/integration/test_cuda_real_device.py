"""The real CUDA backend on an NVIDIA GPU (``TENSORCAST_CUDA_BACKEND=cuda``).

Skipped on machines without a GPU (every CI run): the fake backend covers
the same code paths above the driver there (``test_fake_cuda_*``). On a GPU
these run the whole op suite on the device against numpy, compare with torch
when it is installed, run the example guests on the device, enforce a
function's memory cap on device memory, run 8 instances at once on one
device, and check that a failing op leaves the runtime usable.

Each check runs in its own process: the backend is chosen once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tensorwasm_tc import device_info

pytestmark = pytest.mark.gpu

SUITE = Path(__file__).parents[1] / "unit" / "test_ops_match_numpy.py"
GUESTS = Path(__file__).parents[2] / "examples" / "guests"


def _has_gpu() -> bool:
    info = device_info()
    return info["backend"] == "cuda" and bool(info["devices"])


requires_gpu = pytest.mark.skipif(not _has_gpu(), reason="no NVIDIA GPU (device_info())")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TENSORCAST_CUDA_BACKEND="cuda", **extra)
    return env


def _python(code: str, timeout: float = 600) -> str:
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return r.stdout


@requires_gpu
def test_every_op_runs_on_the_gpu_and_matches_numpy() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE)],
        env=_env(TENSORWASM_TEST_DEVICE="cuda:0"),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


@requires_gpu
def test_ops_match_torch_on_the_gpu() -> None:
    pytest.importorskip("torch")
    _python(
        """
        import numpy as np, torch
        from tensorwasm_tc import Tensor, ops
        rng = np.random.default_rng(0)
        for dt, tol in (("float32", 1e-5), ("float16", 2e-3)):
            x = rng.standard_normal((64, 257)).astype(dt)
            w = rng.standard_normal((129, 257)).astype(dt)
            tx = torch.from_numpy(x).cuda()
            tw = torch.from_numpy(w).cuda()
            dx, dw = Tensor.from_numpy(x).to("cuda"), Tensor.from_numpy(w).to("cuda")
            pairs = [
                (ops.softmax(dx), torch.softmax(tx.float(), -1)),
                (ops.layernorm(dx), torch.nn.functional.layer_norm(tx.float(), (257,))),
                (ops.gelu(dx), torch.nn.functional.gelu(tx.float())),
                (ops.linear(dx, dw), tx.float() @ tw.float().T),
            ]
            for ours, ref in pairs:
                assert ours.device == "cuda:0"
                got = np.asarray(ours.to("cpu")).astype("float64")
                want = ref.double().cpu().numpy()
                np.testing.assert_allclose(got, want, rtol=tol * 10, atol=tol * 10)
        print("ok")
        """
    )


# Inputs and bindings of each example guest (in the child process).
CASES = """
import numpy as np
from pathlib import Path
rng = np.random.default_rng(5)
def _w(*shape):
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)
CASES = {
    "vector_add": ({"a": _w(3, 5), "b": _w(5)}, None),
    "softmax_rows": ({"x": _w(4, 9)}, None),
    "mlp": (
        {"x": _w(32, 1024)},
        {"weights": {"w1": _w(4096, 1024), "b1": _w(4096), "w2": _w(1024, 4096), "b2": _w(1024)}},
    ),
}
"""


@requires_gpu
@pytest.mark.parametrize("guest", ["vector_add", "softmax_rows", "mlp"])
def test_example_guests_run_on_the_gpu(guest: str) -> None:
    _python(
        CASES
        + f"""
from tensorwasm_tc import Runtime
wasm = Path({str(GUESTS)!r}, {guest + ".wasm"!r}).read_bytes()
inputs, bindings = CASES[{guest!r}]
cpu = Runtime(device="cpu").load(wasm, bindings=bindings)
gpu = Runtime(device="cuda").load(wasm, bindings=bindings)
assert gpu.device == "cuda:0", gpu.device
a = cpu.invoke("run", inputs=inputs)
b = gpu.invoke("run", inputs=inputs)
assert a.values == b.values, (a.values, b.values, b.stderr)
for name, t in a.outputs.items():
    np.testing.assert_allclose(
        np.from_dlpack(b.outputs[name]), np.from_dlpack(t), rtol=2e-4, atol=2e-4
    )
print("ok")
"""
    )


@requires_gpu
def test_a_functions_memory_cap_holds_on_device_memory() -> None:
    _python(
        """
        from tensorwasm_tc import Runtime, TensorWasmError
        import numpy as np
        wat = '''
        (module
          (import "tensorwasm" "tensor_new" (func $new (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "\\\\00\\\\00\\\\00\\\\04\\\\00\\\\00\\\\00\\\\00")
          (func (export "big") (result i32)
            (call $new (i32.const 0) (i32.const 1) (i32.const 0))))
        '''
        f = Runtime(device="cuda", max_memory_bytes=64 << 20).load(wat)
        r = f.invoke("big")  # 256 MiB of f32 on a 64 MiB cap
        assert r.values[0] == -6, r.values
        print("ok")
        """
    )


@requires_gpu
def test_eight_instances_share_one_gpu() -> None:
    _python(
        CASES
        + f"""
from concurrent.futures import ThreadPoolExecutor
from tensorwasm_tc import Runtime
wasm = Path({str(GUESTS)!r}, "mlp.wasm").read_bytes()
inputs, bindings = CASES["mlp"]
fn = Runtime(device="cuda").load(wasm, bindings=bindings)
want = np.from_dlpack(
    Runtime(device="cpu").load(wasm, bindings=bindings).invoke("run", inputs=inputs).outputs["y"]
)
def one(_):
    return np.from_dlpack(fn.invoke("run", inputs=inputs).outputs["y"])
with ThreadPoolExecutor(8) as pool:
    outs = list(pool.map(one, range(64)))
for o in outs:
    np.testing.assert_allclose(o, want, rtol=2e-4, atol=2e-4)
print("ok")
"""
    )


@requires_gpu
def test_a_failing_op_leaves_the_runtime_usable() -> None:
    _python(
        """
        import numpy as np
        from tensorwasm_tc import Tensor, TensorWasmError, ops
        table = Tensor.from_numpy(np.ones((4, 8), "float32")).to("cuda")
        ids = Tensor.from_numpy(np.array([0, 99], "int64")).to("cuda")
        try:
            ops.embedding(table, ids)
        except TensorWasmError as e:
            assert e.kind == "invalid_args"
        else:
            raise AssertionError("an id out of range was accepted")
        x = Tensor.from_numpy(np.arange(6, dtype="float32")).to("cuda")
        assert np.asarray(ops.add(x, x).to("cpu")).tolist() == [0, 2, 4, 6, 8, 10]
        print("ok")
        """
    )


@requires_gpu
def test_a_guest_runs_its_own_kernel() -> None:
    src = (
        'extern "C" __global__ void twice(float* x, long long n) {'
        " long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;"
        " if (i < n) x[i] *= 2.0f; }"
    )
    src_wat = src.replace('"', '\\"')
    wat = f"""
(module
  (import "tensorwasm" "cuda_load" (func $load (param i32 i32) (result i32)))
  (import "tensorwasm" "cuda_launch"
    (func $launch (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "tensorwasm" "tensor_input" (func $input (param i32 i32) (result i32)))
  (import "tensorwasm" "op" (func $op (param i32 i32 i32 i32) (result i32)))
  (import "tensorwasm" "output_set" (func $out (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{src_wat}")
  (data (i32.const 512) "twice")
  (data (i32.const 520) "x")
  (data (i32.const 524) "scale")
  (data (i32.const 600) "\\01\\00\\00\\00\\01\\00\\00\\00\\01\\00\\00\\00")
  (data (i32.const 616) "\\04\\00\\00\\00\\01\\00\\00\\00\\01\\00\\00\\00")
  (func (export "run") (result i32)
    (local $m i32) (local $x i32) (local $y i32) (local $rc i32)
    (local.set $m (call $load (i32.const 0) (i32.const {len(src)})))
    (if (i32.lt_s (local.get $m) (i32.const 0)) (then (return (local.get $m))))
    (local.set $x (call $input (i32.const 520) (i32.const 1)))
    ;; y = scale(x, 1.0): a tensor of the guest's own, on the device
    (i32.store8 (i32.const 700) (i32.const 8))
    (i32.store align=1 (i32.const 701) (local.get $x))
    (i32.store8 (i32.const 705) (i32.const 4))
    (f64.store align=1 (i32.const 706) (f64.const 1))
    (local.set $y (call $op (i32.const 524) (i32.const 5) (i32.const 700) (i32.const 14)))
    (if (i32.lt_s (local.get $y) (i32.const 0)) (then (return (local.get $y))))
    ;; twice(y, 4)
    (i32.store8 (i32.const 800) (i32.const 8))
    (i32.store align=1 (i32.const 801) (local.get $y))
    (i32.store8 (i32.const 805) (i32.const 2))
    (i64.store align=1 (i32.const 806) (i64.const 4))
    (local.set $rc (call $launch (local.get $m) (i32.const 512) (i32.const 5)
      (i32.const 600) (i32.const 616) (i32.const 800) (i32.const 14)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (call $out (i32.const 520) (i32.const 1) (local.get $y))))
"""
    code = f"""
import numpy as np
from tensorwasm_tc import Runtime
fn = Runtime(device="cuda").load({wat!r})
res = fn.invoke("run", inputs={{"x": np.arange(1, 5, dtype=np.float32)}})
assert res.values == [0], (res.values, res.stderr)
assert np.from_dlpack(res.outputs["x"]).tolist() == [2.0, 4.0, 6.0, 8.0]
print("ok")
"""
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(TENSOR_WASM_CUDA_CUSTOM_KERNELS="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


@requires_gpu
def test_dlpack_shares_device_memory_with_torch() -> None:
    pytest.importorskip("torch")
    _python(
        """
        import numpy as np, torch
        from tensorwasm_tc import Tensor, ops
        ours = Tensor.from_numpy(np.arange(6, dtype="float32")).to("cuda")
        theirs = torch.from_dlpack(ours)
        assert theirs.is_cuda and theirs.device.index == 0
        theirs.mul_(10)  # in place, in our memory
        assert np.from_dlpack(ours.to("cpu")).tolist() == [0, 10, 20, 30, 40, 50]
        t = torch.arange(4, dtype=torch.float32, device="cuda")
        back = Tensor.from_dlpack(t)
        assert back.device == "cuda:0"
        t.add_(1)
        assert np.from_dlpack(ops.add(back, back).to("cpu")).tolist() == [2, 4, 6, 8]
        print("ok")
        """
    )
