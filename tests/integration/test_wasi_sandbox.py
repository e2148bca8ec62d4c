"""The WASI preview 1 a guest sees: captured and capped stdout/stderr, empty
stdin, no argv or environment, real clocks and randomness, proc_exit, and no
filesystem or sockets (every such call fails with a WASI errno)."""

from __future__ import annotations

import time

import pytest
from tensorwasm_tc import Runtime, TrapError

WASI = "wasi_snapshot_preview1"
ESUCCESS = 0
EBADF = 8
EFAULT = 21
EINVAL = 28
ENOTCAPABLE = 76

GUEST_WAT = f"""
(module
  (import "{WASI}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "{WASI}" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "{WASI}" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "{WASI}" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "{WASI}" "proc_exit" (func $proc_exit (param i32)))
  (import "{WASI}" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "{WASI}" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "{WASI}" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; iovec scratch at 0, counters at 8 and 12, text at 64, buffers from 1024.
  (data (i32.const 64) "hello, world\\n")
  (data (i32.const 96) "oops\\n")
  (data (i32.const 128) "data.txt")

  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))

  (func (export "hello") (result i32)
    (call $write (i32.const 1) (i32.const 64) (i32.const 13)))
  (func (export "oops") (result i32)
    (call $write (i32.const 2) (i32.const 96) (i32.const 5)))
  (func (export "write_to") (param $fd i32) (result i32)
    (call $write (local.get $fd) (i32.const 64) (i32.const 13)))
  ;; Writes `n` bytes of 'x' to stdout in one call; returns nwritten.
  (func (export "write_x") (param $n i32) (result i32)
    (memory.fill (i32.const 1024) (i32.const 120) (local.get $n))
    (drop (call $write (i32.const 1) (i32.const 1024) (local.get $n)))
    (i32.load (i32.const 8)))
  (func (export "hello_then_exit") (param $code i32) (result i32)
    (drop (call $write (i32.const 1) (i32.const 64) (i32.const 13)))
    (drop (call $write (i32.const 2) (i32.const 96) (i32.const 5)))
    (call $proc_exit (local.get $code))
    (i32.const 99))
  ;; errno and nread of a 16-byte read from `fd`.
  (func (export "read") (param $fd i32) (result i32 i32)
    (i32.store (i32.const 12) (i32.const 777))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 16))
    (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12))
    (i32.load (i32.const 12)))
  ;; errno and the 16 random bytes as two i64s.
  (func (export "random16") (result i32 i64 i64)
    (call $random_get (i32.const 2048) (i32.const 16))
    (i64.load (i32.const 2048))
    (i64.load (i32.const 2056)))
  (func (export "random_out_of_bounds") (result i32)
    (call $random_get (i32.const 131070) (i32.const 16)))
  ;; errno and the clock's reading in nanoseconds.
  (func (export "now") (param $clock i32) (result i32 i64)
    (call $clock_time_get (local.get $clock) (i64.const 1) (i32.const 3072))
    (i64.load (i32.const 3072)))
  ;; errno, argc and argv buffer size (pre-filled with junk to see them written).
  (func (export "args") (result i32 i32 i32)
    (i32.store (i32.const 16) (i32.const -1))
    (i32.store (i32.const 20) (i32.const -1))
    (call $args_sizes_get (i32.const 16) (i32.const 20))
    (i32.load (i32.const 16))
    (i32.load (i32.const 20)))
  (func (export "environ") (result i32 i32 i32)
    (i32.store (i32.const 16) (i32.const -1))
    (i32.store (i32.const 20) (i32.const -1))
    (call $environ_sizes_get (i32.const 16) (i32.const 20))
    (i32.load (i32.const 16))
    (i32.load (i32.const 20)))
  (func (export "prestat") (param $fd i32) (result i32)
    (call $fd_prestat_get (local.get $fd) (i32.const 4096)))
  (func (export "_start")
    (drop (call $write (i32.const 1) (i32.const 64) (i32.const 13)))))
"""


# ----------------------------------------------------------------------------- stdout / stderr


def test_hello_world_stdout_is_captured(rt: Runtime) -> None:
    result = rt.load(GUEST_WAT).invoke()

    assert result.stdout == "hello, world\n"
    assert result.stderr == ""
    assert result.values == []
    assert result.output_truncated is False


def test_stderr_is_captured_separately(rt: Runtime) -> None:
    result = rt.load(GUEST_WAT).invoke("oops")

    assert result.stderr == "oops\n"
    assert result.stdout == ""
    assert result.values == [ESUCCESS]


def test_output_is_per_call(rt: Runtime) -> None:
    fn = rt.load(GUEST_WAT)

    with fn.instantiate() as inst:
        first = inst.invoke("hello")
        second = inst.invoke("oops")

    assert first.stdout == "hello, world\n"
    assert second.stdout == ""
    assert second.stderr == "oops\n"


@pytest.mark.parametrize("fd", [0, 3, 100, -1])
def test_writing_to_other_fds_is_ebadf(rt: Runtime, fd: int) -> None:
    result = rt.load(GUEST_WAT).invoke("write_to", [fd])

    assert result.values == [EBADF]
    assert result.stdout == ""
    assert result.stderr == ""


def test_output_over_max_output_bytes_is_truncated() -> None:
    rt = Runtime(cache_dir=False, max_output_bytes=100)

    result = rt.load(GUEST_WAT).invoke("write_x", [1000])

    assert result.stdout == "x" * 100
    assert result.output_truncated is True
    assert result.values == [1000]  # the guest is told everything was written


def test_output_exactly_max_output_bytes_is_not_truncated() -> None:
    rt = Runtime(cache_dir=False, max_output_bytes=100)

    result = rt.load(GUEST_WAT).invoke("write_x", [100])

    assert result.stdout == "x" * 100
    assert result.output_truncated is False


def test_default_output_cap_is_one_mib(rt: Runtime) -> None:
    fn = rt.load(GUEST_WAT)

    result = fn.invoke("write_x", [65536])

    assert fn.limits["max_output_bytes"] == 1 << 20
    assert len(result.stdout) == 65536
    assert result.output_truncated is False


# ----------------------------------------------------------------------------- proc_exit


def test_proc_exit_zero_returns_normally(rt: Runtime) -> None:
    result = rt.load(GUEST_WAT).invoke("hello_then_exit", [0])

    assert result.values == []
    assert result.stdout == "hello, world\n"
    assert result.stderr == "oops\n"


def test_proc_exit_nonzero_is_a_trap_with_exit_code_and_output(rt: Runtime) -> None:
    fn = rt.load(GUEST_WAT)

    with pytest.raises(TrapError) as excinfo:
        fn.invoke("hello_then_exit", [3])

    err = excinfo.value
    assert err.kind == "trap"
    assert err.exit_code == 3
    assert err.trap_code is None
    assert err.stdout == "hello, world\n"
    assert err.stderr == "oops\n"
    assert "status 3" in err.message
    assert fn.invoke("hello").values == [ESUCCESS]


def test_instance_survives_proc_exit(rt: Runtime) -> None:
    with rt.load(GUEST_WAT).instantiate() as inst:
        with pytest.raises(TrapError):
            inst.invoke("hello_then_exit", [1])

        result = inst.invoke("hello")

    assert result.stdout == "hello, world\n"


# ----------------------------------------------------------------------------- stdin, argv, environ


def test_stdin_is_empty(rt: Runtime) -> None:
    result = rt.load(GUEST_WAT).invoke("read", [0])

    assert result.values == [ESUCCESS, 0]


def test_reading_other_fds_is_ebadf(rt: Runtime) -> None:
    assert rt.load(GUEST_WAT).invoke("read", [3]).values[0] == EBADF


@pytest.mark.parametrize("export", ["args", "environ"])
def test_args_and_environ_are_empty(rt: Runtime, export: str) -> None:
    result = rt.load(GUEST_WAT).invoke(export)

    assert result.values == [ESUCCESS, 0, 0]


# ----------------------------------------------------------------------------- random, clocks


def test_random_get_fills_fresh_bytes_each_call(rt: Runtime) -> None:
    fn = rt.load(GUEST_WAT)

    first = fn.invoke("random16").values
    second = fn.invoke("random16").values

    assert first[0] == ESUCCESS
    assert second[0] == ESUCCESS
    assert first[1:] != second[1:]
    assert first[1:] != [0, 0]


def test_random_get_out_of_bounds_is_efault(rt: Runtime) -> None:
    assert rt.load(GUEST_WAT).invoke("random_out_of_bounds").values == [EFAULT]


def test_realtime_clock_is_the_wall_clock(rt: Runtime) -> None:
    fn = rt.load(GUEST_WAT)

    errno, now_ns = fn.invoke("now", [0]).values

    assert errno == ESUCCESS
    assert abs(now_ns - time.time_ns()) < 5 * 10**9


@pytest.mark.parametrize("clock", [1, 2, 3])
def test_monotonic_clocks_do_not_go_backwards(rt: Runtime, clock: int) -> None:
    fn = rt.load(GUEST_WAT)

    errno1, first = fn.invoke("now", [clock]).values
    errno2, second = fn.invoke("now", [clock]).values

    assert (errno1, errno2) == (ESUCCESS, ESUCCESS)
    assert 0 <= first <= second


def test_unknown_clock_is_einval(rt: Runtime) -> None:
    assert rt.load(GUEST_WAT).invoke("now", [4]).values[0] == EINVAL


# ---------------------------------------------------------------- no filesystem, no sockets

# (name, parameter types) of the WASI calls that touch paths or sockets.
PATH_CALLS = {
    "path_create_directory": "i32 i32 i32",
    "path_filestat_get": "i32 i32 i32 i32 i32",
    "path_filestat_set_times": "i32 i32 i32 i32 i64 i64 i32",
    "path_link": "i32 i32 i32 i32 i32 i32 i32",
    "path_open": "i32 i32 i32 i32 i32 i64 i64 i32 i32",
    "path_readlink": "i32 i32 i32 i32 i32 i32",
    "path_remove_directory": "i32 i32 i32",
    "path_rename": "i32 i32 i32 i32 i32 i32",
    "path_symlink": "i32 i32 i32 i32 i32",
    "path_unlink_file": "i32 i32 i32",
}
SOCKET_CALLS = {
    "sock_accept": "i32 i32 i32",
    "sock_recv": "i32 i32 i32 i32 i32 i32",
    "sock_send": "i32 i32 i32 i32 i32",
    "sock_shutdown": "i32 i32",
}


def _caller_of(name: str, params: str, first_arg: int) -> str:
    """A guest whose `call` export invokes WASI `name` with plausible arguments:
    `first_arg` as the fd, a real path/buffer pointer and length after it."""
    args = []
    for i, ty in enumerate(params.split()):
        if i == 0:
            value = first_arg
        elif ty == "i32":
            value = 128 if i % 2 else 8
        else:
            value = 0
        args.append(f"({ty}.const {value})")
    return f"""
(module
  (import "{WASI}" "{name}" (func $f (param {params}) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 128) "data.txt")
  (func (export "call") (result i32) (call $f {" ".join(args)})))
"""


@pytest.mark.parametrize("dirfd", [3, 0])
@pytest.mark.parametrize("name", sorted(PATH_CALLS))
def test_every_path_call_is_ebadf(rt: Runtime, name: str, dirfd: int) -> None:
    fn = rt.load(_caller_of(name, PATH_CALLS[name], dirfd))

    assert fn.invoke("call").values == [EBADF]


@pytest.mark.parametrize("fd", [3, 4, 0])
def test_there_are_no_preopened_directories(rt: Runtime, fd: int) -> None:
    assert rt.load(GUEST_WAT).invoke("prestat", [fd]).values == [EBADF]


@pytest.mark.parametrize("name", sorted(SOCKET_CALLS))
def test_socket_calls_link_and_are_not_capable(rt: Runtime, name: str) -> None:
    fn = rt.load(_caller_of(name, SOCKET_CALLS[name], 3))

    assert fn.invoke("call").values == [ENOTCAPABLE]
