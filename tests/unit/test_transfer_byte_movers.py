"""The native byte movers TensorCast uses: chunk checksums and socket
transfers of large buffers with the GIL released."""

from __future__ import annotations

import hashlib
import socket
import threading

import numpy as np
import pytest
from tensorwasm_tc import _core


def test_chunk_digests_are_blake3_of_each_chunk() -> None:
    data = np.random.default_rng(1).integers(0, 256, 10_000, dtype=np.uint8)
    digests = _core.blake3_chunks(data, 4096)
    assert len(digests) == 3
    assert all(len(d) == 32 for d in digests)
    assert _core.blake3_chunks(data[8192:], 4096) == [digests[2]]
    assert _core.blake3_digest(b"") != _core.blake3_digest(b"\0")
    assert _core.blake3_digest(memoryview(data.tobytes())) == _core.blake3_digest(data)
    with pytest.raises(ValueError):
        _core.blake3_chunks(data, 0)


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def test_send_and_receive_verify_every_chunk() -> None:
    payload = np.random.default_rng(2).integers(0, 256, 3 << 20, dtype=np.uint8)
    chunk = 1 << 20
    digests = _core.blake3_chunks(payload, chunk)
    for corrupt in (None, (2 << 20) + 5):
        a, b = _pair()
        sent = payload.copy()
        if corrupt is not None:
            sent[corrupt] ^= 0xFF
        t = threading.Thread(target=_core.send_all, args=(a.fileno(), sent))
        t.start()
        dest = bytearray(len(payload) + 16)
        bad = _core.recv_into(b.fileno(), dest, 16, len(payload), chunk, digests)
        t.join()
        a.close()
        b.close()
        if corrupt is None:
            assert bad == -1
            assert bytes(dest[16:]) == payload.tobytes()
        else:
            assert bad == 2


def test_ranges_read_only_buffers_and_early_close_are_errors() -> None:
    a, b = _pair()
    with pytest.raises(ValueError, match="outside"):
        _core.send_all(a.fileno(), b"abc", 2, 5)
    with pytest.raises(BufferError):
        _core.recv_into(b.fileno(), b"immutable", 0, 4)
    a.sendall(b"xy")
    a.close()
    with pytest.raises(OSError, match="closed"):
        _core.recv_into(b.fileno(), bytearray(8), 0, 8)
    b.close()
    with pytest.raises(ValueError, match="32 bytes"):
        _core.recv_into(0, bytearray(8), 0, 8, 4, [b"short", b"x"])


def test_digest_matches_across_calls_and_differs_from_blake2() -> None:
    data = bytes(range(256)) * 4096
    assert _core.blake3_digest(data) == _core.blake3_digest(bytearray(data))
    assert _core.blake3_digest(data) != hashlib.blake2b(data, digest_size=32).digest()
