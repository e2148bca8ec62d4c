"""The example C guests (examples/guests/*.wasm, committed) run on the tensor
ABI and agree with numpy; rebuilding them from source gives modules that
behave the same; and the C header declares exactly the ABI the host provides.

The rebuild test needs clang with wasm32-wasi support and wasi-libc
(``scripts/build-guests.sh --install`` on Debian) and is skipped without them.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from tensorwasm_tc import Runtime

ROOT = Path(__file__).resolve().parents[2]
GUESTS_DIR = ROOT / "examples" / "guests"
HEADER = ROOT / "examples" / "include" / "tensorwasm.h"
BUILD_SCRIPT = ROOT / "scripts" / "build-guests.sh"
ABI_DIR = ROOT / "rust" / "src" / "abi"
GUESTS = ("vector_add", "softmax_rows", "mlp")
ALLOWED_IMPORT_MODULES = {"tensorwasm", "wasi_snapshot_preview1"}

F32 = npt.NDArray[np.float32]


# ---- helpers ---------------------------------------------------------------


def _leb_u32(data: bytes, i: int) -> tuple[int, int]:
    """An unsigned LEB128 at `i`: (value, index after it)."""
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def wasm_imports(data: bytes) -> list[tuple[str, str]]:
    """(module, name) of every import of a binary module (functions only)."""
    assert data[:8] == b"\0asm\x01\0\0\0", "not a wasm binary module"
    imports: list[tuple[str, str]] = []
    i = 8
    while i < len(data):
        section = data[i]
        size, i = _leb_u32(data, i + 1)
        end = i + size
        if section == 2:  # the import section
            count, i = _leb_u32(data, i)
            for _ in range(count):
                names = []
                for _ in range(2):
                    n, i = _leb_u32(data, i)
                    names.append(data[i : i + n].decode())
                    i += n
                kind = data[i]
                assert kind == 0, f"import {names} is not a function"
                _, i = _leb_u32(data, i + 1)
                imports.append((names[0], names[1]))
        i = end
    return imports


def guest_path(name: str, directory: Path = GUESTS_DIR) -> Path:
    return directory / f"{name}.wasm"


def gelu_exact(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def mlp_weights(rng: np.random.Generator, n_in: int, hidden: int, n_out: int) -> dict[str, F32]:
    def rand(*shape: int) -> F32:
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    return {
        "w1": rand(hidden, n_in),
        "b1": rand(hidden),
        "w2": rand(n_out, hidden),
        "b2": rand(n_out),
    }


def mlp_reference(x: F32, w: dict[str, F32]) -> npt.NDArray[np.float64]:
    x64 = x.astype(np.float64)
    h = x64 @ w["w1"].astype(np.float64).T + w["b1"]
    return gelu_exact(h) @ w["w2"].astype(np.float64).T + w["b2"]


def run_guest(
    rt: Runtime,
    wasm: Path,
    inputs: dict[str, Any],
    bindings: dict[str, dict[str, Any]] | None = None,
) -> tuple[int, dict[str, Any], str]:
    """Invokes `run`: (its return value, outputs as numpy arrays, stderr)."""
    fn = rt.load(wasm, bindings=bindings)
    res = fn.invoke("run", inputs=inputs)
    outputs = {name: np.from_dlpack(t) for name, t in res.outputs.items()}
    return res.values[0], outputs, res.stderr


# ---- the committed modules -------------------------------------------------


@pytest.mark.parametrize("name", GUESTS)
def test_committed_guest_imports_only_the_abi_and_wasi(rt: Runtime, name: str) -> None:
    data = guest_path(name).read_bytes()
    imports = wasm_imports(data)
    assert {module for module, _ in imports} <= ALLOWED_IMPORT_MODULES
    assert {n for m, n in imports if m == "tensorwasm"} <= set(host_import_names())
    fn = rt.load(data)
    assert fn.exports["run"] == ([], ["i32"])
    assert len(data) < 16 * 1024, f"{name}.wasm grew to {len(data)} bytes"


def test_vector_add_matches_numpy(rt: Runtime) -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal(1000).astype(np.float32)
    b = rng.standard_normal(1000).astype(np.float32)
    rc, out, stderr = run_guest(rt, guest_path("vector_add"), {"a": a, "b": b})
    assert (rc, stderr) == (0, "")
    assert set(out) == {"c"}
    assert out["c"].dtype == np.float32
    np.testing.assert_array_equal(out["c"], a + b)


def test_vector_add_broadcasts_and_keeps_integer_dtypes(rt: Runtime) -> None:
    a = np.arange(12, dtype=np.int32).reshape(4, 3)
    b = np.array([10, 20, 30], dtype=np.int32)
    rc, out, _ = run_guest(rt, guest_path("vector_add"), {"a": a, "b": b})
    assert rc == 0
    assert out["c"].dtype == np.int32
    np.testing.assert_array_equal(out["c"], a + b)


def test_vector_add_reports_failures_on_stderr(rt: Runtime) -> None:
    wasm = guest_path("vector_add")
    a = np.ones(5, np.float32)
    rc, out, stderr = run_guest(rt, wasm, {"a": a, "b": np.ones(3, np.float32)})
    assert rc == -5  # ShapeMismatch
    assert out == {}
    assert stderr.startswith("add: ShapeMismatch: ")
    assert "do not broadcast" in stderr

    rc, _, stderr = run_guest(rt, wasm, {"a": a, "b": np.ones(5, np.float64)})
    assert rc == -4  # DtypeMismatch
    assert stderr.startswith("add: DtypeMismatch: ")

    rc, _, stderr = run_guest(rt, wasm, {"a": a})
    assert rc == -9  # InvalidArgs
    assert stderr.startswith("input b: InvalidArgs: no input named 'b'")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_matches_numpy(rt: Runtime, dtype: type[np.floating[Any]]) -> None:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((6, 33)) * 4).astype(dtype)
    rc, out, stderr = run_guest(rt, guest_path("softmax_rows"), {"x": x})
    assert (rc, stderr) == (0, "")
    y = out["y"]
    assert y.dtype == dtype
    assert y.shape == x.shape
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=-1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_softmax_rows_refuses_integers(rt: Runtime) -> None:
    rc, out, stderr = run_guest(rt, guest_path("softmax_rows"), {"x": np.ones((2, 3), np.int32)})
    assert rc == -4
    assert out == {}
    assert stderr.startswith("softmax: DtypeMismatch: ")


def test_mlp_matches_numpy(rt: Runtime) -> None:
    rng = np.random.default_rng(3)
    weights = mlp_weights(rng, n_in=16, hidden=32, n_out=8)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    rc, out, stderr = run_guest(rt, guest_path("mlp"), {"x": x}, bindings={"weights": weights})
    assert (rc, stderr) == (0, "")
    y = out["y"]
    assert y.dtype == np.float32
    assert y.shape == (4, 8)
    np.testing.assert_allclose(y, mlp_reference(x, weights), rtol=1e-4, atol=1e-4)


def test_mlp_reports_missing_weights_and_bad_shapes(rt: Runtime) -> None:
    wasm = guest_path("mlp")
    x = np.ones((4, 16), np.float32)
    rc, out, stderr = run_guest(rt, wasm, {"x": x})
    assert rc == -9
    assert out == {}
    assert stderr.startswith("weights/w1: InvalidArgs: no bound tensor named 'weights/w1'")

    weights = mlp_weights(np.random.default_rng(4), n_in=16, hidden=32, n_out=8)
    rc, out, stderr = run_guest(
        rt, wasm, {"x": np.ones((4, 15), np.float32)}, bindings={"weights": weights}
    )
    assert rc == -5
    assert out == {}
    assert stderr.startswith("linear 1: ShapeMismatch: ")


# ---- rebuilding from source ------------------------------------------------


def _toolchain_missing() -> str | None:
    """Why the guests cannot be rebuilt here, or None when they can."""
    clang = shutil.which(os.environ.get("CC", "clang"))
    if clang is None:
        return "clang is not installed (scripts/build-guests.sh --install)"
    libcs = [
        Path("/usr/lib/wasm32-wasi/libc.a"),  # Debian's wasi-libc
        Path("/usr/share/wasi-sysroot/lib/wasm32-wasi/libc.a"),
    ]
    if os.environ.get("WASI_SYSROOT"):
        libcs.append(Path(os.environ["WASI_SYSROOT"]) / "lib" / "wasm32-wasi" / "libc.a")
    if not any(p.is_file() for p in libcs):
        return "no wasi-libc sysroot (scripts/build-guests.sh --install)"
    builtins = subprocess.run(
        [clang, "--target=wasm32-wasi", "-print-libgcc-file-name"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not builtins or not Path(builtins).is_file():
        return "no wasm32 compiler-rt builtins (Debian: libclang-rt-dev-wasm32)"
    return None


def test_rebuilt_guests_behave_like_the_committed_ones(rt: Runtime, tmp_path: Path) -> None:
    reason = _toolchain_missing()
    if reason is not None:
        pytest.skip(reason)
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in GUESTS:
        assert guest_path(name, tmp_path).is_file(), proc.stdout
        assert wasm_imports(guest_path(name, tmp_path).read_bytes()), name

    rng = np.random.default_rng(5)
    weights = mlp_weights(rng, n_in=16, hidden=32, n_out=8)
    cases: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]] | None]] = {
        "vector_add": (
            {
                "a": rng.standard_normal((3, 5)).astype(np.float32),
                "b": rng.standard_normal(5).astype(np.float32),
            },
            None,
        ),
        "softmax_rows": ({"x": rng.standard_normal((4, 9)).astype(np.float32)}, None),
        "mlp": (
            {"x": rng.standard_normal((4, 16)).astype(np.float32)},
            {"weights": weights},
        ),
    }
    for name, (inputs, bindings) in cases.items():
        committed = run_guest(rt, guest_path(name), inputs, bindings)
        rebuilt = run_guest(rt, guest_path(name, tmp_path), inputs, bindings)
        assert committed[0] == rebuilt[0] == 0, (name, committed[2], rebuilt[2])
        assert committed[2] == rebuilt[2]
        assert committed[1].keys() == rebuilt[1].keys()
        for out_name, value in committed[1].items():
            np.testing.assert_array_equal(rebuilt[1][out_name], value, err_msg=name)


# ---- the header against the host's source ----------------------------------


def host_import_names() -> list[str]:
    """`NAMES` of rust/src/abi/host.rs: every import of module "tensorwasm"."""
    src = (ABI_DIR / "host.rs").read_text()
    block = re.search(r"const NAMES: &\[&str\] = &\[(.*?)\];", src, re.S)
    assert block, "NAMES not found in host.rs"
    names = re.findall(r'"(\w+)"', block.group(1))
    assert names
    return names


def host_signatures() -> dict[str, tuple[list[str], str]]:
    """Wasm (params, result) of each host function in host.rs, by name."""
    src = (ABI_DIR / "host.rs").read_text()
    sigs = {}
    for m in re.finditer(
        r"fn (\w+)\(\s*(?:mut )?\w+: Caller<'_, StoreData>,?(.*?)\)\s*->\s*(i32|i64)",
        src,
        re.S,
    ):
        params = [p.split(":")[1].strip() for p in m.group(2).split(",") if p.strip()]
        sigs[m.group(1)] = (params, m.group(3))
    return sigs


def _wasm_type_of_c(decl: str) -> str:
    decl = decl.strip()
    if "*" in decl:
        return "i32"  # wasm32 pointers
    ctype = decl.replace("const", "").split()[0]
    types = {"int32_t": "i32", "uint32_t": "i32", "tw_tensor": "i32"}
    types |= {"int64_t": "i64", "uint64_t": "i64"}
    assert ctype in types, f"unexpected C type in {decl!r}"
    return types[ctype]


def header_imports() -> dict[str, dict[str, tuple[list[str], str]]]:
    """{module: {import name: (wasm params, wasm result)}} declared by the header."""
    text = HEADER.read_text()
    out: dict[str, dict[str, tuple[list[str], str]]] = {}
    pattern = (
        r'__attribute__\(\(import_module\("(\w+)"\),\s*import_name\("(\w+)"\)\)\)'
        r"\s*([\w ]+?)\s+\w+\(([^)]*)\);"
    )
    for m in re.finditer(pattern, text):
        module, name, ret, params = m.groups()
        plist = [] if params.strip() == "void" else params.split(",")
        sig = ([_wasm_type_of_c(p) for p in plist], _wasm_type_of_c(ret))
        out.setdefault(module, {})[name] = sig
    return out


def test_header_declares_every_host_import_with_its_signature() -> None:
    names = host_import_names()
    declared = header_imports()
    assert set(declared) <= ALLOWED_IMPORT_MODULES
    assert sorted(declared["tensorwasm"]) == sorted(names)
    # Every name is also wired into the linker, with the signature declared.
    linked = re.findall(r'func_wrap\(m, "(\w+)", \w+\)', (ABI_DIR / "host.rs").read_text())
    assert sorted(linked) == sorted(names)
    sigs = host_signatures()
    for name in names:
        assert declared["tensorwasm"][name] == sigs[name], name


def _rust_consts(path: Path, pattern: str) -> dict[str, int]:
    return {
        name: int(value.replace("_", ""), 0)
        for name, value in re.findall(pattern, path.read_text())
    }


def _header_enum(enum: str) -> dict[str, int]:
    """The members of `enum <enum> { ... }` in the header."""
    body = re.search(rf"enum {enum} \{{(.*?)\}};", HEADER.read_text(), re.S)
    assert body, f"enum {enum} not found in the header"
    found = re.findall(r"\b(TW_\w+) = (-?(?:0x)?[0-9A-Fa-f]+)", body.group(1))
    return {name: int(value, 0) for name, value in found}


def _upper_snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()


def test_header_constants_match_the_host() -> None:
    codes = _rust_consts(ABI_DIR / "codes.rs", r"\n\s+(\w+) = (-\d+),")
    assert len(codes) == 11
    expected = {f"TW_ERR_{_upper_snake(k)}": v for k, v in codes.items()}
    assert _header_enum("tw_status") == {"TW_OK": 0, **expected}

    dtypes = _rust_consts(ROOT / "rust/src/tensor/dtype.rs", r"\n\s+(\w+) = (\d+),")
    assert len(dtypes) == 9
    assert _header_enum("tw_dtype") == {f"TW_{k.upper()}": v for k, v in dtypes.items()}

    tags = _rust_consts(ABI_DIR / "argv.rs", r"pub const (TAG_\w+): u8 = (0x[0-9A-Fa-f]+);")
    assert len(tags) == 8
    assert _header_enum("tw_argv_tag") == {f"TW_{k}": v for k, v in tags.items()}

    rust = _rust_consts(ABI_DIR / "argv.rs", r"pub const (MAX_\w+): usize = ([\d_]+);")
    rust |= _rust_consts(ABI_DIR / "state.rs", r"pub const (MAX_HANDLES): usize = ([\d_]+);")
    rust |= _rust_consts(ABI_DIR / "host.rs", r"const (MAX_NAME_BYTES): usize = ([\d_]+);")
    rust |= _rust_consts(
        ROOT / "rust/src/tensor/mod.rs", r"pub const (MAX_NDIM): usize = ([\d_]+);"
    )
    assert _header_enum("tw_limits") == {
        "TW_ARGV_MAX_BYTES": rust["MAX_BYTES"],
        "TW_ARGV_MAX_RECORDS": rust["MAX_RECORDS"],
        "TW_MAX_HANDLES": rust["MAX_HANDLES"],
        "TW_MAX_NDIM": rust["MAX_NDIM"],
        "TW_MAX_NAME_BYTES": rust["MAX_NAME_BYTES"],
    }
