"""A function's id is the BLAKE3 of its binary bytes, whatever form the module
was handed in as; a call without an export runs ``_start``, else ``main``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tensorwasm_tc import Runtime

WAT = """
(module
  (func $add (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1))))
"""


def _binary(wat: str) -> bytes:
    wasmtime = pytest.importorskip("wasmtime")
    return bytes(wasmtime.wat2wasm(wat))


def test_id_is_64_lowercase_hex_digits(rt: Runtime) -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", rt.load(WAT).id)


def test_wat_and_its_binary_have_the_same_id(rt: Runtime) -> None:
    binary = _binary(WAT)

    from_text = rt.load(WAT)
    from_binary = rt.load(binary)

    assert from_text.id == from_binary.id
    assert from_binary.invoke("add", [1, 2]).values == [3]


def test_bytes_bytearray_and_memoryview_give_the_same_id(rt: Runtime) -> None:
    binary = _binary(WAT)

    ids = {rt.load(binary).id, rt.load(bytearray(binary)).id, rt.load(memoryview(binary)).id}

    assert len(ids) == 1


def test_paths_to_wat_and_wasm_files_give_the_same_id(rt: Runtime, tmp_path: Path) -> None:
    wat_path = tmp_path / "add.wat"
    wat_path.write_text(WAT)
    wasm_path = tmp_path / "add.wasm"
    wasm_path.write_bytes(_binary(WAT))

    from_wat = rt.load(wat_path)
    from_wasm = rt.load(wasm_path)

    assert from_wat.id == from_wasm.id == rt.load(WAT).id
    assert from_wasm.invoke("add", [20, 22]).values == [42]


def test_different_modules_have_different_ids(rt: Runtime) -> None:
    other = WAT.replace("i32.add", "i32.sub")

    assert rt.load(WAT).id != rt.load(other).id


def test_limits_do_not_change_the_id() -> None:
    small = Runtime(cache_dir=False, max_memory_bytes=1 << 20, deadline_ms=5)
    large = Runtime(cache_dir=False)

    assert small.load(WAT).id == large.load(WAT).id


def test_default_export_prefers_start_over_main(rt: Runtime) -> None:
    fn = rt.load(
        """(module
             (func (export "main") (result i32) (i32.const 2))
             (func (export "_start") (result i32) (i32.const 1)))"""
    )

    assert fn.invoke().values == [1]
    assert fn.invoke("main").values == [2]


def test_default_export_falls_back_to_main(rt: Runtime) -> None:
    fn = rt.load('(module (func (export "main") (result i32) (i32.const 2)))')

    assert fn.invoke().values == [2]
    with fn.instantiate() as inst:
        assert inst.invoke().values == [2]


def test_function_repr_names_its_exports(rt: Runtime) -> None:
    fn = rt.load(WAT)

    assert fn.id[:16] in repr(fn)
    assert "add" in repr(fn)
