"""Tensor storage kinds and zero-copy interop: every claim of sharing is
proven by writing through one side and reading through the other."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tensorwasm_tc import InvalidArgsError, Tensor, ops

NUMPY_DTYPES = {
    "f32": np.float32,
    "f16": np.float16,
    "f64": np.float64,
    "i32": np.int32,
    "i64": np.int64,
    "u8": np.uint8,
    "i8": np.int8,
    "bool": np.bool_,
}


@pytest.mark.parametrize("dtype", [*NUMPY_DTYPES, "bf16"])
def test_zeros_has_row_major_layout_and_64_byte_alignment(dtype: str) -> None:
    t = Tensor.zeros(dtype, (3, 5))
    assert (t.dtype, t.shape, t.strides, t.ndim, t.size) == (dtype, (3, 5), (5, 1), 2, 15)
    assert t.storage_kind == "host" and t.device == "cpu" and not t.read_only
    assert t.tobytes() == bytes(t.nbytes)
    if dtype in NUMPY_DTYPES:
        a = np.from_dlpack(t)
        assert a.dtype == NUMPY_DTYPES[dtype]
        assert a.ctypes.data % 64 == 0


@pytest.mark.parametrize("dtype", list(NUMPY_DTYPES))
def test_from_numpy_shares_memory_both_ways(dtype: str) -> None:
    a = np.zeros((2, 3), NUMPY_DTYPES[dtype])
    t = Tensor.from_numpy(a)
    a[1, 2] = 1
    assert np.from_dlpack(t)[1, 2] == 1
    np.from_dlpack(t)[0, 0] = 1
    assert a[0, 0] == 1


def test_from_dlpack_and_buffer_protocol_share_memory() -> None:
    a = np.arange(6, dtype=np.float32)
    t = Tensor.from_dlpack(a)
    view = memoryview(t)
    assert (view.format, view.shape, view.readonly) == ("f", (6,), False)
    view[2] = 42.0
    assert a[2] == 42.0
    a[5] = -1.0
    assert view[5] == -1.0
    assert np.frombuffer(t, np.float32)[2] == 42.0


def test_tensor_keeps_the_numpy_memory_alive() -> None:
    a = np.arange(4, dtype=np.float64)
    t = Tensor.from_numpy(a)
    del a
    gc.collect()
    np.testing.assert_array_equal(np.from_dlpack(t), [0.0, 1.0, 2.0, 3.0])


def test_read_only_arrays_give_read_only_tensors() -> None:
    a = np.arange(4, dtype=np.float32)
    a.flags.writeable = False
    t = Tensor.from_numpy(a)
    assert t.read_only
    assert memoryview(t).readonly
    assert not np.from_dlpack(t).flags.writeable


def test_non_contiguous_views_keep_their_strides() -> None:
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = Tensor.from_numpy(base[:, ::2])
    assert (t.shape, t.strides, t.is_contiguous) == ((3, 2), (4, 2), False)
    base[2, 2] = 99.0
    np.testing.assert_array_equal(np.from_dlpack(t), base[:, ::2])
    c = t.contiguous()
    assert (c.strides, c.is_contiguous) == ((2, 1), True)
    base[0, 0] = -5.0
    assert np.from_dlpack(c)[0, 0] == 0.0  # contiguous() copied


def test_bad_sources_are_refused_clearly() -> None:
    with pytest.raises(InvalidArgsError, match="negative strides"):
        Tensor.from_numpy(np.arange(4)[::-1])
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        Tensor.from_numpy([1, 2, 3])
    with pytest.raises(TypeError, match="DLPack"):
        Tensor.from_dlpack(object())


def test_bf16_round_trips_through_bytes() -> None:
    bits = np.array([0x3F80, 0xC000, 0x0000], np.uint16)  # 1.0, -2.0, 0.0
    t = Tensor.from_bytes("bf16", (3,), bits.tobytes())
    assert t.nbytes == 6
    np.testing.assert_array_equal(np.from_dlpack(ops.cast(t, "f32")), [1.0, -2.0, 0.0])


def test_shared_tensor_maps_the_same_memory_through_its_fd() -> None:
    t = Tensor.zeros("f32", (4,), shared=True)
    assert t.storage_kind == "shm"
    writable = Tensor.from_shm_fd(t.shm_fd(), "f32", (4,), writable=True)
    readonly = Tensor.from_shm_fd(t.shm_fd(), "f32", 4)
    assert readonly.read_only and not writable.read_only
    np.from_dlpack(writable)[1] = 7.0
    assert np.from_dlpack(t)[1] == 7.0
    assert np.from_dlpack(readonly)[1] == 7.0
    with pytest.raises(TypeError):
        memoryview(readonly)[0] = 1.0


def test_shared_tensor_is_visible_to_another_process() -> None:
    t = Tensor.zeros("i64", (3,), shared=True)
    fd = t.shm_fd()
    child = textwrap.dedent(
        f"""
        import numpy as np
        from tensorwasm_tc import Tensor
        peer = Tensor.from_shm_fd({fd}, "i64", (3,), writable=True)
        np.from_dlpack(peer)[:] = [11, 22, 33]
        """
    )
    subprocess.run([sys.executable, "-c", child], pass_fds=[fd], check=True, timeout=60)
    np.testing.assert_array_equal(np.from_dlpack(t), [11, 22, 33])


def test_shm_fd_mapping_larger_than_the_region_is_refused() -> None:
    t = Tensor.zeros("u8", (16,), shared=True)
    with pytest.raises(InvalidArgsError):
        Tensor.from_shm_fd(t.shm_fd(), "u8", (1 << 20,))


def test_devices() -> None:
    t = Tensor.zeros("f32", (2,))
    assert t.__dlpack_device__() == (1, 0)
    assert t.to("cpu").shape == (2,)
    with pytest.raises(InvalidArgsError, match="not available"):
        t.to("cuda")


def test_torch_shares_memory_both_ways() -> None:
    torch = pytest.importorskip("torch")
    x = torch.zeros(4, dtype=torch.float32)
    t = Tensor.from_dlpack(x)
    x[1] = 3.0
    assert np.from_dlpack(t)[1] == 3.0
    y = torch.from_dlpack(t)
    y[2] = 5.0
    assert x[2].item() == 5.0
