"""Every CUDA kernel module compiles with NVRTC and defines its entry points.

NVRTC needs no GPU and no driver: the ``nvidia-cuda-nvrtc-cu12`` wheel (a
test dependency on Linux) is enough. Its library is loaded from the wheel
before the core looks for it by name, the way a CUDA machine's library path
would provide it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from tensorwasm_tc import _core


def _load_wheel_nvrtc() -> None:
    if _core.nvrtc_version() is not None:
        return  # already on the library path
    nvrtc = pytest.importorskip("nvidia.cuda_nvrtc", reason="nvidia-cuda-nvrtc-cu12 not installed")
    libs = sorted(Path(next(iter(nvrtc.__path__))).glob("lib/libnvrtc.so.*"))
    libs = [p for p in libs if "builtins" not in p.name and "alt" not in p.name]
    if not libs:
        pytest.skip("the nvidia-cuda-nvrtc wheel has no libnvrtc.so")
    ctypes.CDLL(str(libs[0]), mode=ctypes.RTLD_GLOBAL)


@pytest.mark.parametrize("arch", [(7, 0), (9, 0)], ids=["sm70", "sm90"])
def test_every_kernel_module_compiles(arch: tuple[int, int]) -> None:
    _load_wheel_nvrtc()
    if _core.nvrtc_version() is None:
        pytest.skip("libnvrtc cannot be loaded here")
    assert _core.cuda_kernels_check(*arch) >= 40
