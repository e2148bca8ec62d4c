"""Device discovery and selection: the real CUDA probe (dynamic loading: no
CUDA library is linked, so a machine without one reports why) and the fake
backend (`TENSORCAST_CUDA_BACKEND=fake`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tensorwasm_tc as tw

PROBE = "import json, tensorwasm_tc as t; print(json.dumps(t.device_info()))"


def _info(**env: str) -> dict[str, object]:
    full = {
        k: v for k, v in os.environ.items() if not k.startswith(("TENSORCAST_", "TENSOR_WASM_D"))
    }
    full.update(env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, check=True
    )
    info: dict[str, object] = json.loads(out.stdout)
    return info


def test_the_report_has_every_field() -> None:
    info = tw.device_info()
    assert set(info) == {
        "backend",
        "devices",
        "driver_version",
        "bindings_cuda_version",
        "libraries",
        "reason",
        "default",
    }
    assert info["bindings_cuda_version"] == "12.2"
    if info["backend"] is None:
        assert info["reason"], "no device must come with a reason"
        assert info["devices"] == [] or info["reason"]


@pytest.mark.skipif(tw.device_info()["backend"] == "cuda", reason="this machine has CUDA")
def test_without_cuda_the_library_is_not_needed_and_the_reason_says_so() -> None:
    info = _info()
    assert info["backend"] is None
    assert info["default"] == "cpu"
    assert set(info["libraries"]) == {"driver", "nvrtc", "cublas", "cublaslt"}  # type: ignore[arg-type]
    assert "libcuda" in str(info["reason"])
    assert tw.resolve_device("auto") == "cpu"
    assert tw.resolve_device("CPU") == "cpu"
    with pytest.raises(tw.InvalidArgsError, match="CUDA is not available"):
        tw.resolve_device("cuda")


def test_fake_backend_devices_and_selection() -> None:
    info = _info(
        TENSORCAST_CUDA_BACKEND="fake",
        TENSORCAST_FAKE_CUDA_DEVICES="2",
        TENSORCAST_FAKE_CUDA_MEMORY=str(1 << 30),
        TENSOR_WASM_DEVICE="cuda:1",
    )
    assert info["backend"] == "fake"
    assert info["reason"] is None
    assert info["default"] == "cuda:1"
    devices = info["devices"]
    assert isinstance(devices, list) and len(devices) == 2
    assert devices[1] == {
        "index": 1,
        "device": "cuda:1",
        "name": "tensorwasm fake CUDA device 1",
        "total_memory": 1 << 30,
        "compute_capability": "9.0",
    }
    assert _info(TENSORCAST_CUDA_BACKEND="fake")["default"] == "cuda:0"
    bad = _info(TENSORCAST_CUDA_BACKEND="fake", TENSOR_WASM_DEVICE="cuda:7")
    assert str(bad["default"]).startswith("error: TENSOR_WASM_DEVICE: device cuda:7 does not exist")


def test_an_unknown_backend_is_reported_not_fatal() -> None:
    info = _info(TENSORCAST_CUDA_BACKEND="rocm")
    assert info["backend"] is None
    assert "TENSORCAST_CUDA_BACKEND" in str(info["reason"])


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "cuda:-1", "cuda0"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(tw.InvalidArgsError, match="auto, cpu, cuda, cuda:N"):
        tw.resolve_device(spec)
