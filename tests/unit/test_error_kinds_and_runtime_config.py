"""The error classes and their stable ``kind`` names, and how a ``Runtime``
takes its configuration (limits, cache directory, ``TENSOR_WASM_HOME``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorwasm_tc
from tensorwasm_tc import (
    DtypeMismatchError,
    InstanceClosedError,
    InternalError,
    InvalidArgsError,
    InvalidWasmError,
    InvokeTimeoutError,
    MemoryLimitError,
    MissingExportError,
    ModuleTooLargeError,
    ReadOnlyError,
    ResourceExhaustedError,
    Runtime,
    ShapeMismatchError,
    SnapshotIncompatibleError,
    SnapshotInvalidError,
    SnapshotSignatureInvalidError,
    TensorWasmError,
    TrapError,
    UnknownImportError,
    UnknownOpError,
    default_home,
)

KINDS: dict[type[TensorWasmError], str] = {
    InvalidWasmError: "invalid_wasm",
    ModuleTooLargeError: "module_too_large",
    MissingExportError: "missing_export",
    InvalidArgsError: "invalid_args",
    UnknownImportError: "unknown_import",
    TrapError: "trap",
    InvokeTimeoutError: "invoke_timeout",
    MemoryLimitError: "memory_limit",
    ResourceExhaustedError: "resource_exhausted",
    InstanceClosedError: "instance_closed",
    DtypeMismatchError: "dtype_mismatch",
    ShapeMismatchError: "shape_mismatch",
    UnknownOpError: "unknown_op",
    ReadOnlyError: "read_only",
    InternalError: "internal",
    SnapshotInvalidError: "snapshot_invalid",
    SnapshotIncompatibleError: "snapshot_incompatible",
    SnapshotSignatureInvalidError: "snapshot_signature_invalid",
}


@pytest.mark.parametrize(("cls", "kind"), list(KINDS.items()), ids=list(KINDS.values()))
def test_each_error_class_has_its_stable_kind(cls: type[TensorWasmError], kind: str) -> None:
    assert cls.kind == kind
    assert issubclass(cls, TensorWasmError)
    assert issubclass(cls, Exception)


def test_kinds_are_distinct() -> None:
    assert len(set(KINDS.values())) == len(KINDS)


@pytest.mark.parametrize("attr", ["trap_code", "exit_code", "stdout", "stderr"])
def test_optional_error_attributes_default_to_none(attr: str) -> None:
    assert getattr(TensorWasmError, attr) is None


def test_raised_error_carries_message_and_kind(rt: Runtime) -> None:
    with pytest.raises(TensorWasmError) as excinfo:
        rt.load(b"nope")

    err = excinfo.value
    assert type(err) is InvalidWasmError
    assert err.kind == "invalid_wasm"
    assert err.message == str(err)
    assert err.stdout is None


def test_package_exports_the_public_api() -> None:
    expected = {
        "Function",
        "Instance",
        "Runtime",
        "InvokeResult",
        "TensorWasmError",
        "build_info",
        "default_home",
        "device_info",
        "resolve_device",
        "inspect_snapshot",
        "SNAPSHOT_VERSION",
        "__version__",
        "Tensor",
        "ops",
        *(cls.__name__ for cls in KINDS),
    }

    assert set(tensorwasm_tc.__all__) == expected


def test_build_info_has_the_documented_fields() -> None:
    info = tensorwasm_tc.build_info()

    assert list(info) == ["version", "git_sha", "rustc_version", "profile", "target"]
    assert info["version"] == tensorwasm_tc.__version__
    assert all(isinstance(v, str) and v for v in info.values())


# ----------------------------------------------------------------------------- configuration


def test_default_home_honours_tensor_wasm_home() -> None:
    assert default_home({"TENSOR_WASM_HOME": "/srv/tw"}) == Path("/srv/tw")


def test_default_home_expands_the_user() -> None:
    assert default_home({"TENSOR_WASM_HOME": "~/tw"}) == Path.home() / "tw"


@pytest.mark.parametrize("environ", [{}, {"TENSOR_WASM_HOME": ""}, {"TENSOR_WASM_HOME": "  "}])
def test_default_home_falls_back_to_dot_tensor_wasm(environ: dict[str, str]) -> None:
    assert default_home(environ) == Path.home() / ".tensor-wasm"


def test_session_home_is_isolated_from_the_real_home(tensor_wasm_home: Path) -> None:
    assert default_home() == tensor_wasm_home
    assert default_home() != Path.home() / ".tensor-wasm"


def test_runtime_defaults() -> None:
    rt = Runtime()

    assert rt.max_memory_bytes == 256 << 20
    assert rt.deadline_ms == 30_000
    assert rt.max_module_bytes == 64 << 20
    assert rt.max_table_elements == 10_000
    assert rt.max_output_bytes == 1 << 20


@pytest.mark.parametrize("cache_dir", [None, True])
def test_runtime_default_cache_dir_is_home_modules(
    cache_dir: bool | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENSOR_WASM_HOME", str(tmp_path))

    assert Runtime(cache_dir=cache_dir).cache_dir == tmp_path / "modules"


def test_runtime_cache_dir_false_disables_disk_cache() -> None:
    assert Runtime(cache_dir=False).cache_dir is None


@pytest.mark.parametrize("as_str", [True, False])
def test_runtime_cache_dir_accepts_str_and_path(tmp_path: Path, as_str: bool) -> None:
    rt = Runtime(cache_dir=str(tmp_path) if as_str else tmp_path)

    assert rt.cache_dir == tmp_path


def test_function_limits_come_from_the_runtime() -> None:
    rt = Runtime(
        max_memory_bytes=1 << 20,
        deadline_ms=1234,
        cache_dir=False,
        max_table_elements=77,
        max_output_bytes=999,
    )

    fn = rt.load("(module)")

    assert fn.limits == {
        "max_memory_bytes": 1 << 20,
        "max_table_elements": 77,
        "deadline_ms": 1234,
        "max_output_bytes": 999,
    }


def test_load_rejects_non_module_types(rt: Runtime) -> None:
    with pytest.raises(TypeError, match="bytes"):
        rt.load(12345)  # type: ignore[arg-type]
