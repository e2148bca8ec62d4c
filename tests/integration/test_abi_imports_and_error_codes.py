"""The guest tensor ABI, one import at a time, through small WAT guests.

Each test builds a module around the twelve ``"tensorwasm"`` imports and a few
WAT helpers (argv records are written at run time with ``i32.store``; strings
and raw byte blobs live in data segments). Guests return the codes they got;
bytes they want checked (a read-back buffer, ``tensor_info``'s layout,
``last_error``'s message) come back as u8 outputs built with
``tensor_from_guest`` + ``output_set``.

Codes (rust/src/abi/codes.rs): -2 InvalidPointer, -3 InvalidHandle,
-4 DtypeMismatch, -5 ShapeMismatch, -6 ResourceExhausted, -7 UnknownOp,
-8 ReadOnly, -9 InvalidArgs, -10 KernelArgsUnsupported, -11 DeviceError.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from tensorwasm_tc import (
    Function,
    InvokeResult,
    Runtime,
    Tensor,
    TrapError,
    UnknownImportError,
    ops,
)

Array = npt.NDArray[Any]

INVALID_POINTER = -2
INVALID_HANDLE = -3
DTYPE_MISMATCH = -4
SHAPE_MISMATCH = -5
RESOURCE_EXHAUSTED = -6
UNKNOWN_OP = -7
READ_ONLY = -8
INVALID_ARGS = -9
KERNEL_ARGS_UNSUPPORTED = -10

# Guest memory map (one 64 KiB page).
STATIC = 16  # data segments: names and byte blobs
ARGV = 8192  # argv records written by the $a_* helpers
DUMP_SHAPE = 12280  # the [len] shape $dump uses
SHAPE = 12288  # shapes written by $dims1/$dims2
INFO = 12800  # tensor_info output
BUF = 16384  # tensor_read / tensor_write buffers (8 KiB)
ERR = 24576  # last_error buffer (1 KiB)
ERR2 = 25600
ZEROS = 32768  # never written: 4 KiB+ of zero bytes
HANDLES = 40960  # i32 handles a guest keeps (guests never assume handle numbers)
MAX_HANDLES = 16_384

IMPORTS = """
  (import "tensorwasm" "abi_version" (func $abi_version (result i32)))
  (import "tensorwasm" "tensor_input" (func $tensor_input (param i32 i32) (result i32)))
  (import "tensorwasm" "tensor_bound" (func $tensor_bound (param i32 i32) (result i32)))
  (import "tensorwasm" "tensor_new" (func $tensor_new (param i32 i32 i32) (result i32)))
  (import "tensorwasm" "tensor_from_guest"
    (func $tensor_from_guest (param i32 i32 i32 i32 i32) (result i32)))
  (import "tensorwasm" "tensor_read" (func $tensor_read (param i32 i32 i32) (result i64)))
  (import "tensorwasm" "tensor_write" (func $tensor_write (param i32 i32 i32) (result i32)))
  (import "tensorwasm" "tensor_info" (func $tensor_info (param i32 i32 i32) (result i32)))
  (import "tensorwasm" "tensor_drop" (func $tensor_drop (param i32) (result i32)))
  (import "tensorwasm" "op" (func $op (param i32 i32 i32 i32) (result i32)))
  (import "tensorwasm" "output_set" (func $output_set (param i32 i32 i32) (result i32)))
  (import "tensorwasm" "last_error" (func $last_error (param i32 i32) (result i32)))
"""

HELPERS = f"""
  (global $ap (mut i32) (i32.const {ARGV}))
  (func $argv_reset (global.set $ap (i32.const {ARGV})))
  (func $a_byte (param $b i32)
    (i32.store8 (global.get $ap) (local.get $b))
    (global.set $ap (i32.add (global.get $ap) (i32.const 1))))
  (func $a_u32 (param $v i32)
    (i32.store (global.get $ap) (local.get $v))
    (global.set $ap (i32.add (global.get $ap) (i32.const 4))))
  (func $a_u64 (param $v i64)
    (i64.store (global.get $ap) (local.get $v))
    (global.set $ap (i32.add (global.get $ap) (i32.const 8))))
  (func $a_t (param $h i32) (call $a_byte (i32.const 8)) (call $a_u32 (local.get $h)))
  (func $a_i32 (param $v i32) (call $a_byte (i32.const 1)) (call $a_u32 (local.get $v)))
  (func $a_i64 (param $v i64) (call $a_byte (i32.const 2)) (call $a_u64 (local.get $v)))
  (func $a_f32 (param $v f32)
    (call $a_byte (i32.const 3)) (call $a_u32 (i32.reinterpret_f32 (local.get $v))))
  (func $a_f64 (param $v f64)
    (call $a_byte (i32.const 4)) (call $a_u64 (i64.reinterpret_f64 (local.get $v))))
  (func $run_op (param $name i32) (param $len i32) (result i32)
    (call $op (local.get $name) (local.get $len)
      (i32.const {ARGV}) (i32.sub (global.get $ap) (i32.const {ARGV}))))
  (func $dims1 (param $d0 i64) (result i32)
    (i64.store (i32.const {SHAPE}) (local.get $d0))
    (i32.const {SHAPE}))
  (func $dims2 (param $d0 i64) (param $d1 i64) (result i32)
    (i64.store (i32.const {SHAPE}) (local.get $d0))
    (i64.store (i32.const {SHAPE + 8}) (local.get $d1))
    (i32.const {SHAPE}))
  ;; Copies guest bytes [ptr, ptr+len) into a u8 tensor and names it an output.
  (func $dump (param $name i32) (param $nlen i32) (param $ptr i32) (param $len i32) (result i32)
    (local $h i32)
    (i64.store (i32.const {DUMP_SHAPE}) (i64.extend_i32_u (local.get $len)))
    (local.set $h (call $tensor_from_guest (i32.const 6) (i32.const 1)
      (i32.const {DUMP_SHAPE}) (local.get $ptr) (local.get $len)))
    (if (i32.lt_s (local.get $h) (i32.const 0)) (then (return (local.get $h))))
    (call $output_set (local.get $name) (local.get $nlen) (local.get $h)))
  ;; The last error message as a u8 output.
  (func $dump_error (param $name i32) (param $nlen i32) (result i32)
    (local $n i32)
    (local.set $n (call $last_error (i32.const {ERR}) (i32.const 1024)))
    (call $dump (local.get $name) (local.get $nlen) (i32.const {ERR})
      (select (local.get $n) (i32.const 1024) (i32.lt_u (local.get $n) (i32.const 1024)))))
"""


def _escape(raw: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in raw)


class Guest:
    """A WAT module under construction: strings go to data segments."""

    def __init__(self) -> None:
        self._data: list[tuple[int, bytes]] = []
        self._next = STATIC

    def put(self, raw: bytes) -> int:
        """Places `raw` in a data segment and returns its address."""
        ptr = self._next
        self._data.append((ptr, raw))
        self._next += (len(raw) + 7) // 8 * 8 + 8
        assert self._next < ARGV, "static data overflows into the argv area"
        return ptr

    def s(self, text: str | bytes) -> str:
        """``(i32.const ptr) (i32.const len)`` of a string placed in memory."""
        raw = text.encode() if isinstance(text, str) else text
        return f"(i32.const {self.put(raw)}) (i32.const {len(raw)})"

    def dump_error(self, name: str = "err") -> str:
        return f"(drop (call $dump_error {self.s(name)}))"

    def module(self, *funcs: str, pages: int = 1) -> str:
        data = "\n".join(f'  (data (i32.const {p}) "{_escape(b)}")' for p, b in self._data)
        body = "\n".join(funcs)
        return (
            f'(module\n{IMPORTS}\n  (memory (export "memory") {pages})\n{data}\n{HELPERS}\n{body})'
        )


def checked(local: str, call: str) -> str:
    """Sets ``$local`` to `call` and returns it at once when negative."""
    return (
        f"(local.set ${local} {call})\n"
        f"    (if (i32.lt_s (local.get ${local}) (i32.const 0))\n"
        f"      (then (return (local.get ${local}))))"
    )


def load(
    rt: Runtime,
    guest: Guest,
    *funcs: str,
    bindings: Mapping[str, Mapping[str, Any]] | None = None,
) -> Function:
    return rt.load(guest.module(*funcs), bindings=bindings)


def out_bytes(res: InvokeResult, name: str) -> bytes:
    t = res.outputs[name]
    assert t.dtype == "u8"
    return t.tobytes()


def out_text(res: InvokeResult, name: str = "err") -> str:
    return out_bytes(res, name).decode()


def out_np(res: InvokeResult, name: str) -> Array:
    return np.from_dlpack(res.outputs[name])


def ops_np_dtype(dtype: str) -> Any:
    return {
        "f32": np.float32,
        "f16": np.float16,
        "f64": np.float64,
        "i32": np.int32,
        "i64": np.int64,
        "u8": np.uint8,
        "i8": np.int8,
        "bool": np.bool_,
    }[dtype]


# ---------------------------------------------------------------------------
# abi_version, tensor_input, tensor_bound
# ---------------------------------------------------------------------------


def test_abi_version_is_1(rt: Runtime) -> None:
    g = Guest()
    fn = load(rt, g, '(func (export "run") (result i32) (call $abi_version))')
    assert fn.invoke("run").values == [1]


def test_tensor_input_present_and_missing(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32)
    (local $h i32) (local $m i32)
    (local.set $h (call $tensor_input {g.s("x")}))
    (drop (call $output_set {g.s("same")} (local.get $h)))
    (local.set $m (call $tensor_input {g.s("missing_one")}))
    {g.dump_error()}
    (local.get $h) (local.get $m))
""",
    )
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    res = fn.invoke("run", inputs={"x": x, "other": np.zeros(1, np.int8)})
    h, m = res.values
    assert h > 0
    assert m == INVALID_ARGS
    msg = out_text(res)
    assert msg.startswith("InvalidArgs:")
    assert "missing_one" in msg
    assert '"x"' in msg and '"other"' in msg, msg  # lists the inputs there are
    same = res.outputs["same"]
    assert same.read_only
    np.testing.assert_array_equal(np.from_dlpack(same), x)
    # Without inputs every name is missing.
    assert fn.invoke("run").values[0] == INVALID_ARGS


def test_every_tensor_input_call_returns_a_new_handle(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32)
    (local $a i32) (local $b i32)
    (local.set $a (call $tensor_input {g.s("x")}))
    (local.set $b (call $tensor_input {g.s("x")}))
    (local.get $a) (local.get $b)
    (call $tensor_drop (local.get $a))
    (call $tensor_info (local.get $b) (i32.const {INFO}) (i32.const 64)))
""",
    )
    a, b, dropped, info = fn.invoke("run", inputs={"x": np.zeros((2, 2), np.float32)}).values
    assert a > 0 and b > 0 and a != b
    assert dropped == 0
    assert info == 24  # b still names the input


def test_imports_need_an_exported_memory(rt: Runtime) -> None:
    fn = rt.load(
        """
(module
  (import "tensorwasm" "tensor_input" (func $input (param i32 i32) (result i32)))
  (import "tensorwasm" "abi_version" (func $version (result i32)))
  (memory 1)
  (data (i32.const 0) "x")
  (func (export "run") (result i32 i32)
    (call $input (i32.const 0) (i32.const 1))
    (call $version)))
"""
    )
    assert fn.invoke("run", inputs={"x": np.zeros(1, np.float32)}).values == [INVALID_POINTER, 1]


def test_an_import_with_the_wrong_signature_does_not_load(rt: Runtime) -> None:
    with pytest.raises(UnknownImportError):
        rt.load(
            """
(module
  (import "tensorwasm" "tensor_input" (func (param i32) (result i32)))
  (memory (export "memory") 1))
"""
        )
    with pytest.raises(UnknownImportError):
        rt.load('(module (import "tensorwasm" "tensor_steal" (func)))')


def test_a_trap_after_output_set_raises_and_returns_no_outputs(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run")
    (drop (call $output_set {g.s("y")} (call $tensor_input {g.s("x")})))
    (unreachable))
""",
    )
    with pytest.raises(TrapError):
        fn.invoke("run", inputs={"x": np.zeros(2, np.float32)})


def test_tensor_bound_by_alias_name_and_unambiguous_bare_name(rt: Runtime) -> None:
    g = Guest()
    names = ["a/w", "w", "b/shared", "shared", "a/nope", "nope", "a/", "/w"]
    calls = "\n    ".join(f"(call $tensor_bound {g.s(n)})" for n in names)
    fn = load(
        rt,
        g,
        f"""
  (func (export "codes") (result {" ".join(["i32"] * len(names))})
    {calls})
  (func (export "outputs") (result i32)
    (drop (call $output_set {g.s("aw")} (call $tensor_bound {g.s("a/w")})))
    (drop (call $output_set {g.s("w")} (call $tensor_bound {g.s("w")})))
    (drop (call $output_set {g.s("as")} (call $tensor_bound {g.s("a/shared")})))
    (drop (call $output_set {g.s("bs")} (call $tensor_bound {g.s("b/shared")})))
    (drop (call $tensor_bound {g.s("shared")}))
    {g.dump_error()}
    (i32.const 0))
""",
        bindings={
            "a": {"w": np.arange(4, dtype=np.float32), "shared": np.ones(2, np.int32)},
            "b": {"shared": np.full(3, 7, np.int64)},
        },
    )
    codes = dict(zip(names, fn.invoke("codes").values, strict=True))
    for name in ("a/w", "w", "b/shared"):
        assert codes[name] > 0, (name, codes)
    # "shared" is bound under two aliases: the bare name is not found.
    for name in ("shared", "a/nope", "nope", "a/", "/w"):
        assert codes[name] == INVALID_ARGS, (name, codes)
    res = fn.invoke("outputs")
    np.testing.assert_array_equal(out_np(res, "aw"), np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(out_np(res, "w"), np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(out_np(res, "as"), np.ones(2, np.int32))
    np.testing.assert_array_equal(out_np(res, "bs"), np.full(3, 7, np.int64))
    assert res.outputs["aw"].read_only
    msg = out_text(res)
    assert msg.startswith("InvalidArgs:") and "'shared'" in msg, msg


# ---------------------------------------------------------------------------
# tensor_new, tensor_from_guest, tensor_read, tensor_write, tensor_info
# ---------------------------------------------------------------------------


def test_tensor_new_is_zero_filled_with_the_given_shape(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i64 i32)
    (local $h i32) (local $n i64) (local $info i32)
    (local.set $h (call $tensor_new (i32.const 5) (i32.const 2)
      (call $dims2 (i64.const 2) (i64.const 3))))
    (if (i32.lt_s (local.get $h) (i32.const 0))
      (then (return (local.get $h) (i64.const 0) (i32.const 0))))
    (memory.fill (i32.const {BUF}) (i32.const 0xab) (i32.const 64))
    (local.set $n (call $tensor_read (local.get $h) (i32.const {BUF}) (i32.const 64)))
    (local.set $info (call $tensor_info (local.get $h) (i32.const {INFO}) (i32.const 64)))
    (drop (call $dump {g.s("bytes")} (i32.const {BUF}) (i32.const 64)))
    (drop (call $dump {g.s("info")} (i32.const {INFO}) (i32.const 24)))
    (drop (call $output_set {g.s("t")} (local.get $h)))
    (local.get $h) (local.get $n) (local.get $info))
""",
    )
    res = fn.invoke("run")
    h, n, info_len = res.values
    assert h > 0
    assert n == 48  # 2 * 3 * 8 bytes
    assert info_len == 24
    raw = out_bytes(res, "bytes")
    assert raw[:48] == bytes(48)
    assert raw[48:] == b"\xab" * 16  # nothing written past the tensor
    assert struct.unpack("<iiqq", out_bytes(res, "info")) == (5, 2, 2, 3)
    t = res.outputs["t"]
    assert (t.dtype, t.shape, t.read_only) == ("i64", (2, 3), False)
    np.testing.assert_array_equal(np.from_dlpack(t), np.zeros((2, 3), np.int64))


def test_tensor_new_rejects_bad_dtype_and_shapes(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32 i32)
    (call $tensor_new (i32.const 9) (i32.const 1) (call $dims1 (i64.const 2)))
    (call $tensor_new (i32.const 0) (i32.const -1) (i32.const {SHAPE}))
    (call $tensor_new (i32.const 0) (i32.const 17) (i32.const {SHAPE}))
    (call $tensor_new (i32.const 0) (i32.const 1) (call $dims1 (i64.const -4)))
    (call $tensor_new (i32.const 0) (i32.const 2) (i32.const 65530)))
""",
    )
    assert fn.invoke("run").values == [
        INVALID_ARGS,
        SHAPE_MISMATCH,
        SHAPE_MISMATCH,
        SHAPE_MISMATCH,
        INVALID_POINTER,
    ]


def test_tensor_from_guest_copies_guest_bytes(rt: Runtime) -> None:
    g = Guest()
    data = g.put(np.array([1.0, 2.0, 3.0, 4.0], np.float32).tobytes())
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32)
    (local $h i32)
    (local.set $h (call $tensor_from_guest (i32.const 0) (i32.const 2)
      (call $dims2 (i64.const 2) (i64.const 2)) (i32.const {data}) (i32.const 16)))
    ;; The tensor holds a copy: changing guest memory afterwards does not show.
    (f32.store (i32.const {data}) (f32.const 99))
    (drop (call $output_set {g.s("t")} (local.get $h)))
    (local.get $h)
    (call $tensor_from_guest (i32.const 0) (i32.const 2)
      (call $dims2 (i64.const 2) (i64.const 2)) (i32.const {data}) (i32.const 12))
    (call $tensor_from_guest (i32.const 0) (i32.const 2)
      (call $dims2 (i64.const 2) (i64.const 2)) (i32.const 65530) (i32.const 16))
    (call $tensor_from_guest (i32.const 42) (i32.const 2)
      (call $dims2 (i64.const 2) (i64.const 2)) (i32.const {data}) (i32.const 16)))
""",
    )
    res = fn.invoke("run")
    h, short, oob, bad_dtype = res.values
    assert h > 0
    assert short == SHAPE_MISMATCH
    assert oob == INVALID_POINTER
    assert bad_dtype == INVALID_ARGS
    t = res.outputs["t"]
    assert (t.dtype, t.shape) == ("f32", (2, 2))
    np.testing.assert_array_equal(np.from_dlpack(t), [[1.0, 2.0], [3.0, 4.0]])


def test_tensor_read_returns_bytes_written_and_checks_buffers(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i64 i64 i64 i64 i64)
    (local $x i32) (local $xt i32) (local $n i64) (local $nt i64)
    (local.set $x (call $tensor_input {g.s("x")}))
    (local.set $n (call $tensor_read (local.get $x) (i32.const {BUF}) (i32.const 4096)))
    (drop (call $dump {g.s("x")} (i32.const {BUF}) (i32.const 24)))
    ;; A strided view reads back in row-major order.
    (call $argv_reset) (call $a_t (local.get $x))
    (local.set $xt (call $run_op {g.s("transpose")}))
    (local.set $nt (call $tensor_read (local.get $xt) (i32.const {BUF + 64}) (i32.const 24)))
    (drop (call $dump {g.s("xt")} (i32.const {BUF + 64}) (i32.const 24)))
    (local.get $n) (local.get $nt)
    (call $tensor_read (local.get $x) (i32.const {BUF}) (i32.const 23))
    (call $tensor_read (local.get $x) (i32.const 65530) (i32.const 24))
    (call $tensor_read (i32.const 999) (i32.const {BUF}) (i32.const 24)))
""",
    )
    x = np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5
    res = fn.invoke("run", inputs={"x": x})
    assert res.values == [24, 24, SHAPE_MISMATCH, INVALID_POINTER, INVALID_HANDLE]
    assert out_bytes(res, "x") == x.tobytes()
    assert out_bytes(res, "xt") == np.ascontiguousarray(x.T).tobytes()


def test_tensor_write_into_new_tensor_but_not_inputs_or_bound(rt: Runtime) -> None:
    g = Guest()
    data = g.put(np.array([10, 20, 30, 40], np.int32).tobytes())
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32 i32)
    (local $h i32) (local $x i32) (local $w i32) (local $ok i32) (local $ro i32)
    (local.set $h (call $tensor_new (i32.const 4) (i32.const 1) (call $dims1 (i64.const 4))))
    (local.set $ok (call $tensor_write (local.get $h) (i32.const {data}) (i32.const 16)))
    (drop (call $output_set {g.s("t")} (local.get $h)))
    (local.set $x (call $tensor_input {g.s("x")}))
    (local.set $w (call $tensor_bound {g.s("p/w")}))
    (local.set $ro (call $tensor_write (local.get $x) (i32.const {data}) (i32.const 16)))
    {g.dump_error()}
    (local.get $ok)
    (local.get $ro)
    (call $tensor_write (local.get $w) (i32.const {data}) (i32.const 16))
    (call $tensor_write (local.get $h) (i32.const {data}) (i32.const 12))
    (call $tensor_write (local.get $h) (i32.const 65530) (i32.const 16)))
""",
        bindings={"p": {"w": np.zeros(4, np.int32)}},
    )
    x = np.zeros(4, np.int32)
    res = fn.invoke("run", inputs={"x": x})
    assert res.values == [0, READ_ONLY, READ_ONLY, SHAPE_MISMATCH, INVALID_POINTER]
    np.testing.assert_array_equal(out_np(res, "t"), [10, 20, 30, 40])
    assert out_text(res).startswith("ReadOnly:")
    np.testing.assert_array_equal(x, 0)  # the caller's memory is untouched


def test_tensor_write_through_views(rt: Runtime) -> None:
    g = Guest()
    data = g.put(np.array([1, 2, 3, 4], np.int32).tobytes())
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32)
    (local $t i32) (local $v i32) (local $tt i32) (local $xt i32)
    (local.set $t (call $tensor_new (i32.const 4) (i32.const 2)
      (call $dims2 (i64.const 2) (i64.const 2))))
    (call $argv_reset) (call $a_t (local.get $t)) (call $a_i32 (i32.const 4))
    (local.set $v (call $run_op {g.s("reshape")}))
    (call $argv_reset) (call $a_t (local.get $t))
    (local.set $tt (call $run_op {g.s("transpose")}))
    (call $argv_reset) (call $a_t (call $tensor_input {g.s("x")}))
    (local.set $xt (call $run_op {g.s("transpose")}))
    (drop (call $output_set {g.s("t")} (local.get $t)))
    ;; Writing the [4] view changes the [2, 2] tensor it views.
    (call $tensor_write (local.get $v) (i32.const {data}) (i32.const 16))
    (call $tensor_write (local.get $tt) (i32.const {data}) (i32.const 16))
    (call $tensor_write (local.get $xt) (i32.const {data}) (i32.const 16)))
""",
    )
    res = fn.invoke("run", inputs={"x": np.zeros((2, 2), np.int32)})
    assert res.values == [0, SHAPE_MISMATCH, READ_ONLY]
    np.testing.assert_array_equal(out_np(res, "t"), [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("dtype", "code"),
    [
        ("f32", 0),
        ("f16", 1),
        ("bf16", 2),
        ("f64", 3),
        ("i32", 4),
        ("i64", 5),
        ("u8", 6),
        ("i8", 7),
        ("bool", 8),
    ],
)
def test_tensor_info_layout(rt: Runtime, dtype: str, code: int) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32)
    (local $x i32) (local $n i32)
    (local.set $x (call $tensor_input {g.s("x")}))
    (local.set $n (call $tensor_info (local.get $x) (i32.const {INFO}) (i32.const 32)))
    (drop (call $dump {g.s("info")} (i32.const {INFO}) (i32.const 32)))
    (local.get $n)
    (call $tensor_info (local.get $x) (i32.const {INFO}) (i32.const 31))
    (call $tensor_info (local.get $x) (i32.const 65530) (i32.const 32)))
""",
    )
    base = np.zeros((2, 3, 4), np.float32)
    x: Any = ops.cast(base, "bf16") if dtype == "bf16" else base.astype(ops_np_dtype(dtype))
    res = fn.invoke("run", inputs={"x": x})
    assert res.values == [32, INVALID_ARGS, INVALID_POINTER]
    assert struct.unpack("<iiqqq", out_bytes(res, "info")) == (code, 3, 2, 3, 4)


def test_tensor_info_of_a_0d_tensor(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32)
    (local $h i32) (local $n i32)
    (local.set $h (call $tensor_new (i32.const 3) (i32.const 0) (i32.const {SHAPE})))
    (local.set $n (call $tensor_info (local.get $h) (i32.const {INFO}) (i32.const 8)))
    (drop (call $dump {g.s("info")} (i32.const {INFO}) (i32.const 8)))
    (drop (call $output_set {g.s("t")} (local.get $h)))
    (local.get $n)
    (call $tensor_info (local.get $h) (i32.const {INFO}) (i32.const 7)))
""",
    )
    res = fn.invoke("run")
    assert res.values == [8, INVALID_ARGS]
    assert struct.unpack("<ii", out_bytes(res, "info")) == (3, 0)
    t = res.outputs["t"]
    assert (t.dtype, t.shape) == ("f64", ())
    assert np.from_dlpack(t) == 0.0


def test_a_dropped_handle_is_not_reused_by_the_next_tensor(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32)
    (local $a i32) (local $b i32)
    (local.set $a (call $tensor_input {g.s("x")}))
    (drop (call $tensor_drop (local.get $a)))
    (local.set $b (call $tensor_input {g.s("y")}))
    (local.get $a) (local.get $b)
    (call $tensor_info (local.get $a) (i32.const {INFO}) (i32.const 64))
    (call $tensor_info (local.get $b) (i32.const {INFO}) (i32.const 64)))
""",
    )
    res = fn.invoke("run", inputs={"x": np.zeros(3, np.float32), "y": np.zeros((2, 2), np.int8)})
    a, b, info_a, info_b = res.values
    assert a > 0 and b > 0 and a != b
    assert info_a == INVALID_HANDLE
    assert info_b == 24


def test_tensor_drop_then_reuse_is_invalid_handle(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32 i32 i32 i32 i32)
    (local $x i32)
    (local.set $x (call $tensor_input {g.s("x")}))
    (call $tensor_drop (local.get $x))
    (call $tensor_drop (local.get $x))
    (call $tensor_info (local.get $x) (i32.const {INFO}) (i32.const 64))
    (i32.wrap_i64 (call $tensor_read (local.get $x) (i32.const {BUF}) (i32.const 64)))
    (call $output_set {g.s("y")} (local.get $x))
    (block (result i32)
      (call $argv_reset) (call $a_t (local.get $x)) (call $a_t (local.get $x))
      (call $run_op {g.s("add")}))
    (call $tensor_drop (i32.const 0))
    (call $tensor_drop (i32.const -1)))
""",
    )
    res = fn.invoke("run", inputs={"x": np.ones(3, np.float32)})
    assert res.values == [0] + [INVALID_HANDLE] * 7
    assert res.outputs == {}


# ---------------------------------------------------------------------------
# op: names, argv records and error codes
# ---------------------------------------------------------------------------


def test_op_with_unknown_name(rt: Runtime) -> None:
    g = Guest()
    bad_tag = g.s(bytes([9]))
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32)
    (local $r i32)
    (call $argv_reset) (call $a_t (call $tensor_input {g.s("x")}))
    (local.set $r (call $run_op {g.s("nope")}))
    {g.dump_error()}
    (local.get $r)
    ;; The name is checked first: whatever the argv holds, an unknown op is -7.
    (call $op {g.s("nope")} (i32.const {ZEROS}) (i32.const 5000))
    (call $op {g.s("nope")} (i32.const 65530) (i32.const 100))
    (call $op {g.s("nope")} {bad_tag}))
""",
    )
    res = fn.invoke("run", inputs={"x": np.ones(2, np.float32)})
    assert res.values == [UNKNOWN_OP] * 4
    msg = out_text(res)
    assert msg.startswith("UnknownOp:") and "'nope'" in msg and "matmul" in msg, msg


ARGV_FUNCS = """
  ;; n i32 records, then `op` named by (name, len).
  (func (export "int_records") (param $n i32) (param $name i32) (param $len i32) (result i32)
    (local $i i32)
    (call $argv_reset)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (call $a_i32 (local.get $i))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $run_op (local.get $name) (local.get $len)))
"""


def test_argv_size_and_record_limits(rt: Runtime) -> None:
    g = Guest()
    add = g.put(b"add")
    concat = g.put(b"concat")
    fn = load(
        rt,
        g,
        ARGV_FUNCS,
        f"""
  ;; argv of `len` zero bytes (tag 0x00 is no tag).
  (func (export "zeros") (param $len i32) (result i32)
    (call $op (i32.const {add}) (i32.const 3) (i32.const {ZEROS}) (local.get $len)))
  ;; concat of n copies of input x along axis 0: n + 1 records.
  (func (export "concat") (param $n i32) (result i32)
    (local $x i32) (local $i i32) (local $y i32)
    (local.set $x (call $tensor_input {g.s("x")}))
    (call $argv_reset)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (call $a_t (local.get $x))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $a_i32 (i32.const 0))
    {checked("y", f"(call $run_op (i32.const {concat}) (i32.const 6))")}
    (drop (call $output_set {g.s("y")} (local.get $y)))
    (local.get $y))
""",
    )
    assert fn.invoke("zeros", [4097]).values == [KERNEL_ARGS_UNSUPPORTED]
    assert fn.invoke("zeros", [-1]).values == [KERNEL_ARGS_UNSUPPORTED]
    assert fn.invoke("zeros", [4096]).values == [INVALID_ARGS]  # decoded: tag 0x00
    assert fn.invoke("zeros", [0]).values == [INVALID_ARGS]  # add: missing argument
    assert fn.invoke("int_records", [129, add, 3]).values == [KERNEL_ARGS_UNSUPPORTED]
    assert fn.invoke("int_records", [128, add, 3]).values == [INVALID_ARGS]
    x = np.array([[1.0, 2.0]], np.float32)
    res = fn.invoke("concat", [127], inputs={"x": x})  # 128 records: the most allowed
    assert res.values[0] > 0
    np.testing.assert_array_equal(out_np(res, "y"), np.repeat(x, 127, axis=0))
    assert fn.invoke("concat", [128], inputs={"x": x}).values == [KERNEL_ARGS_UNSUPPORTED]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x09\x00\x00\x00\x00", INVALID_ARGS),  # unknown tag
        (b"\x00", INVALID_ARGS),  # tag 0
        (b"\x02\x01\x02", INVALID_ARGS),  # truncated i64
        (b"\x08\x01\x00", INVALID_ARGS),  # truncated tensor handle
        (b"\x08", INVALID_ARGS),  # a tag and nothing else
        (b"\x06" + (1 << 63).to_bytes(8, "little"), INVALID_ARGS),  # u64 past i64::MAX
        (b"\x08" + (999).to_bytes(4, "little"), INVALID_HANDLE),  # no such handle
        (b"\x08" + (0).to_bytes(4, "little"), INVALID_HANDLE),  # 0 is never a handle
        (b"\x07" + (65530).to_bytes(4, "little") + (100).to_bytes(4, "little"), INVALID_POINTER),
        (b"\x07" + (STATIC).to_bytes(4, "little") + (4).to_bytes(4, "little"), INVALID_ARGS),
    ],
)
def test_malformed_argv_records(rt: Runtime, raw: bytes, code: int) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32)
    (local $r i32)
    (local.set $r (call $op {g.s("relu")} {g.s(raw)}))
    {g.dump_error()}
    (local.get $r))
""",
    )
    res = fn.invoke("run")
    assert res.values == [code]
    assert out_text(res), "every failure leaves a message"


def test_op_name_and_argv_pointers_are_checked(rt: Runtime) -> None:
    g = Guest()
    not_utf8 = g.s(b"\xff\xfe")
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32)
    (call $op (i32.const 65534) (i32.const 4) (i32.const {ARGV}) (i32.const 0))
    (call $op {g.s("relu")} (i32.const 65530) (i32.const 10))
    (call $op {not_utf8} (i32.const {ARGV}) (i32.const 0))
    (call $op (i32.const 0) (i32.const 300) (i32.const {ARGV}) (i32.const 0)))
""",
    )
    assert fn.invoke("run").values == [INVALID_POINTER, INVALID_POINTER, INVALID_ARGS, INVALID_ARGS]


def test_dtype_and_shape_mismatch_codes(rt: Runtime) -> None:
    g = Guest()
    # Handles die with their invoke; each call below fetches its own.
    inputs = {
        "x": np.ones((2, 3), np.float32),
        "y": np.ones((2, 3), np.int32),
        "z": np.ones(4, np.float32),
    }
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (param $which i32) (result i32)
    (local $x i32) (local $y i32) (local $z i32) (local $r i32)
    (local.set $x (call $tensor_input {g.s("x")}))
    (local.set $y (call $tensor_input {g.s("y")}))
    (local.set $z (call $tensor_input {g.s("z")}))
    (call $argv_reset) (call $a_t (local.get $x))
    (if (i32.eq (local.get $which) (i32.const 0)) (then (call $a_t (local.get $y))))
    (if (i32.eq (local.get $which) (i32.const 1)) (then (call $a_t (local.get $z))))
    (if (i32.eq (local.get $which) (i32.const 2)) (then (call $a_t (local.get $x))))
    (if (i32.eq (local.get $which) (i32.const 3)) (then (call $a_t (local.get $y))))
    (local.set $r (if (result i32) (i32.lt_u (local.get $which) (i32.const 2))
      (then (call $run_op {g.s("add")}))
      (else (call $run_op {g.s("matmul")}))))
    {g.dump_error()}
    (local.get $r))
""",
    )
    expectations = [
        (0, DTYPE_MISMATCH, "DtypeMismatch:"),  # f32 + i32
        (1, SHAPE_MISMATCH, "ShapeMismatch:"),  # [2, 3] + [4]
        (2, SHAPE_MISMATCH, "ShapeMismatch:"),  # [2, 3] @ [2, 3]
        (3, DTYPE_MISMATCH, "DtypeMismatch:"),  # f32 @ i32
    ]
    for which, code, prefix in expectations:
        res = fn.invoke("run", [which], inputs=inputs)
        assert res.values == [code], which
        assert out_text(res).startswith(prefix), out_text(res)


def test_op_bad_axis_and_scalar_records(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32 i32)
    (local $x i32) (local $y i32) (local $bad i32) (local $s i32)
    (local $float_axis i32) (local $int_factor i32)
    (local.set $x (call $tensor_input {g.s("x")}))
    ;; softmax over axis 5 of a 2-D tensor.
    (call $argv_reset) (call $a_t (local.get $x)) (call $a_i64 (i64.const 5))
    (local.set $bad (call $run_op {g.s("softmax")}))
    ;; A float record where an integer is read is refused ...
    (call $argv_reset) (call $a_t (local.get $x)) (call $a_f32 (f32.const 0))
    (local.set $float_axis (call $run_op {g.s("softmax")}))
    ;; ... an integer record where a float is read is taken (u32 tag here).
    (call $argv_reset) (call $a_t (local.get $x)) (call $a_byte (i32.const 5))
    (call $a_u32 (i32.const 2))
    (local.set $int_factor (call $run_op {g.s("scale")}))
    (drop (call $output_set {g.s("x2")} (local.get $int_factor)))
    ;; scale by an f64 factor, then by an f32 factor: every scalar tag reaches the kernel.
    (call $argv_reset) (call $a_t (local.get $x)) (call $a_f64 (f64.const 0.5))
    (local.set $y (call $run_op {g.s("scale")}))
    (call $argv_reset) (call $a_t (local.get $y)) (call $a_f32 (f32.const 3))
    (local.set $s (call $run_op {g.s("scale")}))
    (drop (call $output_set {g.s("y")} (local.get $s)))
    (local.get $bad) (local.get $y) (local.get $s)
    (local.get $float_axis) (local.get $int_factor))
""",
    )
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    res = fn.invoke("run", inputs={"x": x})
    bad, y, s, float_axis, int_factor = res.values
    assert bad == INVALID_ARGS
    assert y > 0 and s > 0
    assert float_axis == INVALID_ARGS
    assert int_factor > 0
    np.testing.assert_allclose(out_np(res, "y"), x * 1.5)
    np.testing.assert_allclose(out_np(res, "x2"), x * 2)


# ---------------------------------------------------------------------------
# output_set and last_error
# ---------------------------------------------------------------------------


def test_output_set_returns_outputs_and_the_last_set_wins(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32)
    (local $x i32) (local $sum i32) (local $prod i32)
    (local.set $x (call $tensor_input {g.s("x")}))
    (call $argv_reset) (call $a_t (local.get $x)) (call $a_t (local.get $x))
    (local.set $sum (call $run_op {g.s("add")}))
    (local.set $prod (call $run_op {g.s("mul")}))
    (call $output_set {g.s("y")} (local.get $sum))
    (call $output_set {g.s("z")} (local.get $sum))
    (call $output_set {g.s("y")} (local.get $prod)))
""",
    )
    x = np.array([1.0, 2.0, 3.0], np.float32)
    res = fn.invoke("run", inputs={"x": x})
    assert res.values == [0, 0, 0]
    assert list(res.outputs) == ["y", "z"]
    np.testing.assert_array_equal(out_np(res, "y"), x * x)
    np.testing.assert_array_equal(out_np(res, "z"), x + x)
    assert all(isinstance(t, Tensor) and not t.read_only for t in res.outputs.values())
    # An input named as an output comes back as the caller's (read-only) memory.
    g2 = Guest()
    fn2 = load(
        rt,
        g2,
        f"""
  (func (export "run") (result i32)
    (call $output_set {g2.s("echo")} (call $tensor_input {g2.s("x")})))
""",
    )
    echo = fn2.invoke("run", inputs={"x": x}).outputs["echo"]
    assert echo.read_only
    assert np.shares_memory(np.from_dlpack(echo), x)


def test_last_error_copies_the_message_and_returns_its_full_length(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i32 i32)
    (local $before i32) (local $small i32) (local $full i32)
    (local.set $before (call $last_error (i32.const {ERR}) (i32.const 16)))
    (drop (call $tensor_input {g.s("no_such_input")}))
    (memory.fill (i32.const {ERR}) (i32.const 0x2a) (i32.const 16))
    (local.set $small (call $last_error (i32.const {ERR}) (i32.const 4)))
    (drop (call $dump {g.s("small")} (i32.const {ERR}) (i32.const 8)))
    (local.set $full (call $last_error (i32.const {ERR2}) (i32.const 1024)))
    (drop (call $dump {g.s("full")} (i32.const {ERR2}) (local.get $full)))
    (local.get $before) (local.get $small) (local.get $full)
    (call $last_error (i32.const 65530) (i32.const 1024)))
""",
    )
    res = fn.invoke("run")
    before, small, full, oob = res.values
    assert before == 0  # no error yet in this invoke
    message = out_bytes(res, "full")
    assert message.startswith(b"InvalidArgs: no input named 'no_such_input'")
    assert small == full == len(message)
    assert out_bytes(res, "small") == message[:4] + b"****"
    assert oob == INVALID_POINTER


def test_last_error_is_per_invoke(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "fail") (result i32) (call $tensor_input {g.s("nothing")}))
  (func (export "len") (result i32) (call $last_error (i32.const {ERR}) (i32.const 0)))
""",
    )
    with fn.instantiate() as inst:
        assert inst.invoke("fail").values == [INVALID_ARGS]
        assert inst.invoke("len").values == [0]


# ---------------------------------------------------------------------------
# Handle lifetime and resource limits
# ---------------------------------------------------------------------------


def test_handles_are_invalid_in_the_next_invoke_of_a_persistent_instance(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (global $saved (mut i32) (i32.const 0))
  (func (export "keep") (result i32)
    (global.set $saved (call $tensor_input {g.s("x")}))
    (global.get $saved))
  (func (export "use") (result i32 i32 i32 i32 i32)
    ;; A new handle first: it may take the stale handle's slot, not its number.
    (call $tensor_input {g.s("x")})
    (global.get $saved)
    (call $tensor_info (global.get $saved) (i32.const {INFO}) (i32.const 64))
    (call $output_set {g.s("y")} (global.get $saved))
    (call $tensor_drop (global.get $saved)))
""",
    )
    x = np.ones(3, np.float32)
    with fn.instantiate() as inst:
        (h,) = inst.invoke("keep", inputs={"x": x}).values
        assert h > 0
        res = inst.invoke("use", inputs={"x": x})
        fresh, *rest = res.values
        assert fresh > 0 and fresh != h
        assert rest == [h, INVALID_HANDLE, INVALID_HANDLE, INVALID_HANDLE]
        assert res.outputs == {}
        assert inst.invoke("keep", inputs={"x": x}).values[0] > 0


def test_leaking_handles_hits_resource_exhausted_and_the_runtime_keeps_working(
    rt: Runtime,
) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "leak") (result i32 i32)
    (local $n i32) (local $h i32) (local $first i32)
    (block $done (loop $l
      (local.set $h (call $tensor_input {g.s("x")}))
      (br_if $done (i32.lt_s (local.get $h) (i32.const 0)))
      (if (i32.eqz (local.get $n)) (then (local.set $first (local.get $h))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $done (i32.ge_u (local.get $n) (i32.const 20000)))
      (br $l)))
    ;; Free one slot so the message can be dumped.
    (drop (call $tensor_drop (local.get $first)))
    {g.dump_error()}
    (local.get $n) (local.get $h))
  (func (export "double") (result i32)
    (local $x i32) (local $y i32)
    {checked("x", f"(call $tensor_input {g.s('x')})")}
    (call $argv_reset) (call $a_t (local.get $x)) (call $a_t (local.get $x))
    {checked("y", f"(call $run_op {g.s('add')})")}
    (call $output_set {g.s("y")} (local.get $y)))
""",
    )
    x = np.arange(4, dtype=np.float32)
    with fn.instantiate() as inst:
        res = inst.invoke("leak", inputs={"x": x})
        n, code = res.values
        assert code == RESOURCE_EXHAUSTED
        assert 0 < n < 20000
        assert n == MAX_HANDLES
        msg = out_text(res)
        assert msg.startswith("ResourceExhausted:") and "handle" in msg, msg
        # Handles are released at the end of the invoke: the same instance recovers.
        assert inst.invoke("leak", inputs={"x": x}).values == [n, RESOURCE_EXHAUSTED]
        res = inst.invoke("double", inputs={"x": x})
        assert res.values == [0]
        np.testing.assert_array_equal(out_np(res, "y"), 2 * x)
    res = fn.invoke("double", inputs={"x": x})
    np.testing.assert_array_equal(out_np(res, "y"), 2 * x)


CAP = 1 << 20  # tensors and linear memory share it
TENSOR_BYTES = 256 << 10  # f32 [65536]
PAGE = 64 << 10


def _memory_guest() -> tuple[Guest, str]:
    g = Guest()
    funcs = f"""
  ;; Allocates f32 [65536] tensors until one fails, keeping their handles at
  ;; HANDLES: (count, last code).
  (func $fill (result i32 i32)
    (local $n i32) (local $h i32)
    (block $done (loop $l
      (local.set $h (call $tensor_new (i32.const 0) (i32.const 1)
        (call $dims1 (i64.const 65536))))
      (br_if $done (i32.lt_s (local.get $h) (i32.const 0)))
      (i32.store (i32.add (i32.const {HANDLES}) (i32.shl (local.get $n) (i32.const 2)))
        (local.get $h))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $done (i32.ge_u (local.get $n) (i32.const 1000)))
      (br $l)))
    (local.get $n) (local.get $h))
  ;; Drops the first n handles kept at HANDLES.
  (func $drop_all (param $n i32)
    (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (drop (call $tensor_drop
        (i32.load (i32.add (i32.const {HANDLES}) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
  (func (export "fill") (result i32 i32)
    (local $n i32) (local $code i32)
    (call $fill) (local.set $code) (local.set $n)
    (call $drop_all (local.get $n))
    {g.dump_error()}
    (local.get $n) (local.get $code))
  (func (export "refill") (result i32 i32 i32 i32)
    (local $n1 i32) (local $c1 i32) (local $n2 i32) (local $c2 i32)
    (call $fill) (local.set $c1) (local.set $n1)
    (call $drop_all (local.get $n1))
    (call $fill) (local.set $c2) (local.set $n2)
    (local.get $n1) (local.get $c1) (local.get $n2) (local.get $c2))
  ;; Allocates and drops `times` tensors one after another: how many succeeded.
  (func (export "churn") (param $times i32) (result i32)
    (local $i i32) (local $h i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $times)))
      (local.set $h (call $tensor_new (i32.const 0) (i32.const 1)
        (call $dims1 (i64.const 65536))))
      (br_if $done (i32.lt_s (local.get $h) (i32.const 0)))
      (drop (call $tensor_drop (local.get $h)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $i))
  ;; memory.grow while tensors hold the budget, then after dropping them.
  (func (export "grow") (result i32 i32)
    (local $n i32) (local $code i32) (local $g1 i32)
    (call $fill) (local.set $code) (local.set $n)
    (local.set $g1 (memory.grow (i32.const 4)))
    (call $drop_all (local.get $n))
    (local.get $g1) (memory.grow (i32.const 4)))
  ;; A view keeps its tensor's memory charged after the tensor's handle is
  ;; dropped: (fill count while the view lives, fill count after dropping it).
  (func (export "view_holds") (result i32 i32)
    (local $t i32) (local $v i32) (local $n1 i32) (local $n2 i32)
    (local.set $t (call $tensor_new (i32.const 0) (i32.const 2)
      (call $dims2 (i64.const 256) (i64.const 256))))
    (call $argv_reset) (call $a_t (local.get $t))
    (local.set $v (call $run_op {g.s("transpose")}))
    (drop (call $tensor_drop (local.get $t)))
    (call $fill) (drop) (local.set $n1)
    (call $drop_all (local.get $n1))
    (drop (call $tensor_drop (local.get $v)))
    (call $fill) (drop) (local.set $n2)
    (local.get $n1) (local.get $n2))
"""
    return g, funcs


def test_tensor_memory_is_capped_and_dropping_frees_it() -> None:
    runtime = Runtime(max_memory_bytes=CAP, cache_dir=False)
    g, funcs = _memory_guest()
    fn = load(runtime, g, funcs)
    # One page of linear memory counts against the cap too.
    expected = (CAP - PAGE) // TENSOR_BYTES
    res = fn.invoke("fill")
    assert res.values == [expected, RESOURCE_EXHAUSTED]
    msg = out_text(res)
    assert msg.startswith("ResourceExhausted:") and "memory cap" in msg, msg
    assert fn.invoke("refill").values == [expected, RESOURCE_EXHAUSTED] * 2
    # 64 allocations of a quarter of the cap each, dropped as they go: 16x the cap.
    assert fn.invoke("churn", [64]).values == [64]
    # Linear memory cannot grow into bytes tensors hold, and can once they are dropped.
    assert fn.invoke("grow").values == [-1, 1]
    assert fn.invoke("view_holds").values == [expected - 1, expected]
    with fn.instantiate() as inst:
        for _ in range(3):  # each invoke's tensors are freed at its end
            assert inst.invoke("fill").values[0] == expected
    # The default runtime has room for all of them.
    big = load(Runtime(cache_dir=False), *_memory_guest())
    assert big.invoke("churn", [8]).values == [8]


def test_op_outputs_are_charged_to_the_cap() -> None:
    runtime = Runtime(max_memory_bytes=CAP, cache_dir=False)
    g = Guest()
    fn = load(
        runtime,
        g,
        f"""
  (func (export "run") (result i32 i32)
    (local $x i32) (local $y i32) (local $z i32)
    (local.set $x (call $tensor_new (i32.const 0) (i32.const 1) (call $dims1 (i64.const 65536))))
    (call $argv_reset) (call $a_t (local.get $x)) (call $a_t (local.get $x))
    (local.set $y (call $run_op {g.s("add")}))
    (local.set $z (call $run_op {g.s("add")}))
    (local.get $y)
    (call $run_op {g.s("add")}))
""",
    )
    y, last = fn.invoke("run").values
    assert y > 0
    assert last == RESOURCE_EXHAUSTED  # x, y, z hold 768 KiB + one page of linear memory


# ---------------------------------------------------------------------------
# A whole model through the ABI
# ---------------------------------------------------------------------------


def test_mlp_through_the_abi_matches_numpy(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "mlp") (result i32)
    (local $x i32) (local $w1 i32) (local $b1 i32) (local $w2 i32) (local $b2 i32)
    (local $h i32) (local $a i32) (local $y i32)
    {checked("x", f"(call $tensor_input {g.s('x')})")}
    {checked("w1", f"(call $tensor_bound {g.s('mlp/w1')})")}
    {checked("b1", f"(call $tensor_bound {g.s('mlp/b1')})")}
    {checked("w2", f"(call $tensor_bound {g.s('w2')})")}
    {checked("b2", f"(call $tensor_bound {g.s('b2')})")}
    (call $argv_reset)
    (call $a_t (local.get $x)) (call $a_t (local.get $w1)) (call $a_t (local.get $b1))
    {checked("h", f"(call $run_op {g.s('linear')})")}
    (call $argv_reset) (call $a_t (local.get $h)) (call $a_i32 (i32.const 0))
    {checked("a", f"(call $run_op {g.s('gelu')})")}
    (drop (call $tensor_drop (local.get $h)))
    (call $argv_reset)
    (call $a_t (local.get $a)) (call $a_t (local.get $w2)) (call $a_t (local.get $b2))
    {checked("y", f"(call $run_op {g.s('linear')})")}
    (drop (call $output_set {g.s("y")} (local.get $y)))
    (local.get $y))
""",
        bindings={
            "mlp": {
                "w1": (w1 := np.random.default_rng(7).standard_normal((16, 8)).astype(np.float32)),
                "b1": (b1 := np.random.default_rng(8).standard_normal(16).astype(np.float32)),
                "w2": (w2 := np.random.default_rng(9).standard_normal((4, 16)).astype(np.float32)),
                "b2": (b2 := np.random.default_rng(10).standard_normal(4).astype(np.float32)),
            }
        },
    )
    erf = np.vectorize(math.erf, otypes=[np.float64])
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((5, 8)).astype(np.float32)
        res = fn.invoke("mlp", inputs={"x": x})
        assert res.values[0] > 0, res.values
        h = x.astype(np.float64) @ w1.T + b1
        a = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        expected = a @ w2.T + b2
        y = res.outputs["y"]
        assert (y.dtype, y.shape) == ("f32", (5, 4))
        np.testing.assert_allclose(np.from_dlpack(y), expected, rtol=1e-5, atol=1e-5)


def test_ops_reads_and_writes_on_an_empty_2x0_tensor(rt: Runtime) -> None:
    # Regression: a [2, 0] tensor used to read as non-contiguous (relu gave -11,
    # tensor_write -5).
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32 i32 i64 i32 i32)
    (local $e i32) (local $r i32) (local $s i32)
    (local.set $e (call $tensor_new (i32.const 0) (i32.const 2)
      (call $dims2 (i64.const 2) (i64.const 0))))
    (call $argv_reset) (call $a_t (local.get $e))
    (local.set $r (call $run_op {g.s("relu")}))
    (call $argv_reset) (call $a_t (local.get $e)) (call $a_i32 (i32.const -1))
    (local.set $s (call $run_op {g.s("sum")}))
    (drop (call $output_set {g.s("relu")} (local.get $r)))
    (drop (call $output_set {g.s("sum")} (local.get $s)))
    {g.dump_error()}
    (local.get $e)
    (call $tensor_write (local.get $e) (i32.const {BUF}) (i32.const 0))
    (call $tensor_read (local.get $e) (i32.const {BUF}) (i32.const 0))
    (local.get $r) (local.get $s))
""",
    )
    res = fn.invoke("run")
    e, written, read, r, s = res.values
    assert e > 0
    assert (written, read) == (0, 0)
    assert r > 0 and s > 0, out_text(res)
    assert res.outputs["relu"].shape == (2, 0)
    np.testing.assert_array_equal(out_np(res, "sum"), np.zeros(2, np.float32))


# ---------------------------------------------------------------------------
# Regressions of fixed bugs
# ---------------------------------------------------------------------------


def test_slice_of_a_0d_tensor_returns_invalid_args(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  (func (export "run") (result i32)
    (local $s i32)
    (local.set $s (call $tensor_new (i32.const 0) (i32.const 0) (i32.const {SHAPE})))
    (call $argv_reset) (call $a_t (local.get $s))
    (call $a_i32 (i32.const 0)) (call $a_i32 (i32.const 0)) (call $a_i32 (i32.const 1))
    (call $run_op {g.s("slice")}))
""",
    )
    try:
        values = fn.invoke("run").values
    except BaseException as e:  # pyo3's PanicException derives from BaseException
        pytest.fail(f"the guest's op call escaped as {type(e).__name__}: {e}")
    assert values == [INVALID_ARGS]


def test_a_dropped_handle_stays_dead_through_65535_reuses_of_its_slot(rt: Runtime) -> None:
    g = Guest()
    fn = load(
        rt,
        g,
        f"""
  ;; Drops a handle, then makes and drops up to 65535 more in the same slot:
  ;; (how many before one equals the first, tensor_info of the first handle).
  ;; docs/ABI.md: a value can come back only after 65 536 reuses of a slot.
  (func (export "run") (result i32 i32)
    (local $h0 i32) (local $h i32) (local $i i32)
    (local.set $h0 (call $tensor_input {g.s("x")}))
    (drop (call $tensor_drop (local.get $h0)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const 65535)))
      (local.set $h (call $tensor_input {g.s("x")}))
      (br_if $done (i32.eq (local.get $h) (local.get $h0)))
      (drop (call $tensor_drop (local.get $h)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $i)
    (call $tensor_info (local.get $h0) (i32.const {INFO}) (i32.const 64)))
""",
    )
    reused_after, info = fn.invoke("run", inputs={"x": np.zeros(3, np.float32)}).values
    assert reused_after == 65535, f"handle {reused_after + 1} after the drop repeats it"
    assert info == INVALID_HANDLE
