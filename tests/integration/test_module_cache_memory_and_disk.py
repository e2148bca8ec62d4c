"""The two-level module cache: repeated loads hit memory, a cleared memory
level falls back to the disk artifact, damaged artifacts are rejected and
rewritten, and a new process starts warm from the disk level."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from tensorwasm_tc import Runtime, _core

from ._helpers import cache_stats, stats_delta, unique_wat

NO_CHANGE = {"memory_hits": 0, "disk_hits": 0, "compiles": 0, "disk_rejects": 0, "disk_writes": 0}


def _delta(**changed: int) -> dict[str, int]:
    return {**NO_CHANGE, **changed}


def _artifact(cache_dir: Path) -> Path:
    """The single compiled artifact under `cache_dir`."""
    found = sorted(cache_dir.glob("**/*.cwasm"))
    assert len(found) == 1, found
    return found[0]


def test_second_load_in_process_is_a_memory_hit(tmp_path: Path) -> None:
    rt = Runtime(cache_dir=tmp_path)
    wat = unique_wat()
    first = rt.load(wat)
    before = cache_stats()

    second = rt.load(wat)

    assert stats_delta(before, cache_stats()) == _delta(memory_hits=1)
    assert second.id == first.id
    assert second.invoke("answer").values == [42]


def test_memory_level_is_shared_by_runtimes_with_different_limits(tmp_path: Path) -> None:
    wat = unique_wat()
    Runtime(cache_dir=False).load(wat)
    before = cache_stats()

    fn = Runtime(cache_dir=False, deadline_ms=123, max_memory_bytes=1 << 20).load(wat)

    assert stats_delta(before, cache_stats()) == _delta(memory_hits=1)
    assert fn.limits["deadline_ms"] == 123
    assert fn.limits["max_memory_bytes"] == 1 << 20


def test_first_load_compiles_and_writes_the_artifact(tmp_path: Path) -> None:
    rt = Runtime(cache_dir=tmp_path)
    before = cache_stats()

    fn = rt.load(unique_wat())

    assert stats_delta(before, cache_stats()) == _delta(compiles=1, disk_writes=1)
    fingerprint = _core.engine_info()["fingerprint"]
    assert _artifact(tmp_path) == tmp_path / fingerprint / f"{fn.id}.cwasm"
    assert _artifact(tmp_path).read_bytes().startswith(b"TWMC")
    assert [p.name for p in tmp_path.glob("**/.tmp-*")] == []


def test_load_after_clearing_memory_is_a_disk_hit(tmp_path: Path) -> None:
    rt = Runtime(cache_dir=tmp_path)
    wat = unique_wat()
    rt.load(wat)
    _core.module_cache_clear()
    before = cache_stats()

    fn = rt.load(wat)

    assert stats_delta(before, cache_stats()) == _delta(disk_hits=1)
    assert fn.invoke("answer").values == [42]


def test_clear_empties_the_memory_level() -> None:
    Runtime(cache_dir=False).load(unique_wat())
    assert cache_stats()["memory_entries"] >= 1

    _core.module_cache_clear()

    assert cache_stats()["memory_entries"] == 0


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_magic(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_module_hash(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncate_inside_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _append_junk(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"junk")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


@pytest.mark.parametrize(
    "corrupt",
    [
        _flip_last_byte,
        _flip_magic,
        _flip_module_hash,
        _truncate_half,
        _truncate_inside_header,
        _append_junk,
        _empty,
        _garbage,
    ],
    ids=lambda f: f.__name__.lstrip("_"),
)
def test_corrupt_artifact_is_rejected_recompiled_and_rewritten(
    tmp_path: Path, corrupt: Callable[[Path], None]
) -> None:
    rt = Runtime(cache_dir=tmp_path)
    wat = unique_wat()
    rt.load(wat)
    artifact = _artifact(tmp_path)
    corrupt(artifact)
    damaged = artifact.read_bytes()
    _core.module_cache_clear()
    before = cache_stats()

    fn = rt.load(wat)

    assert stats_delta(before, cache_stats()) == _delta(disk_rejects=1, compiles=1, disk_writes=1)
    assert fn.invoke("answer").values == [42]
    assert artifact.read_bytes() != damaged
    assert artifact.read_bytes().startswith(b"TWMC")

    _core.module_cache_clear()
    before = cache_stats()
    again = rt.load(wat)

    assert stats_delta(before, cache_stats()) == _delta(disk_hits=1)
    assert again.invoke("answer").values == [42]


def test_artifact_of_another_module_is_not_used(tmp_path: Path) -> None:
    rt = Runtime(cache_dir=tmp_path / "a")
    wat_a, wat_b = unique_wat(result=1), unique_wat(result=2)
    rt.load(wat_a)
    artifact_a = _artifact(tmp_path / "a")
    fn_b = Runtime(cache_dir=tmp_path / "b").load(wat_b)
    artifact_b = _artifact(tmp_path / "b")
    artifact_b.write_bytes(artifact_a.read_bytes())  # B's path, A's code
    _core.module_cache_clear()
    before = cache_stats()

    reloaded = Runtime(cache_dir=tmp_path / "b").load(wat_b)

    assert stats_delta(before, cache_stats()) == _delta(disk_rejects=1, compiles=1, disk_writes=1)
    assert reloaded.id == fn_b.id
    assert reloaded.invoke("answer").values == [2]


def test_unwritable_cache_dir_still_loads(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file where the cache directory should be")
    rt = Runtime(cache_dir=not_a_dir)
    before = cache_stats()

    fn = rt.load(unique_wat())

    assert stats_delta(before, cache_stats()) == _delta(compiles=1)
    assert fn.invoke("answer").values == [42]
    assert not_a_dir.read_text() == "a file where the cache directory should be"


def test_default_cache_dir_is_under_tensor_wasm_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("TENSOR_WASM_HOME", str(home))
    rt = Runtime()

    fn = rt.load(unique_wat())

    assert rt.cache_dir == home / "modules"
    assert _artifact(home / "modules").name == f"{fn.id}.cwasm"


def test_cache_dir_false_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("TENSOR_WASM_HOME", str(home))
    rt = Runtime(cache_dir=False)
    before = cache_stats()

    rt.load(unique_wat())

    assert rt.cache_dir is None
    assert stats_delta(before, cache_stats()) == _delta(compiles=1)
    assert not home.exists()


def test_new_process_with_warm_cache_dir_does_not_compile(tmp_path: Path) -> None:
    wat = unique_wat(result=9)
    Runtime(cache_dir=tmp_path).load(wat)
    script = textwrap.dedent(
        """
        import json, sys
        from tensorwasm_tc import Runtime, _core

        fn = Runtime(cache_dir=sys.argv[1]).load(sys.argv[2])
        print(json.dumps({"stats": _core.module_cache_stats(),
                          "values": fn.invoke("answer").values, "id": fn.id}))
        """
    )

    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), wat],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["stats"]["disk_hits"] == 1
    assert out["stats"]["compiles"] == 0
    assert out["stats"]["disk_rejects"] == 0
    assert out["values"] == [9]
    assert out["id"] == _artifact(tmp_path).stem
