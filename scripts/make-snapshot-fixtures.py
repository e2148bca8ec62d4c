#!/usr/bin/env python3
"""Writes the golden snapshot fixtures of the current ``SNAPSHOT_VERSION``.

The fixtures under ``tests/fixtures/snapshots/`` are the evidence that a
release still reads every snapshot format it promises to read
(``docs/SNAPSHOT-COMPATIBILITY.md``). This script makes the files of ONE
version, once, when that version is introduced:

* ``v{N}-counter.twsnap``             module embedded, stored, unsigned;
* ``v{N}-counter-zstd-signed.twsnap`` module embedded, zstd, signed with
  ``v{N}-test-signing.key`` (a test key, written beside them, not a secret).

Both are snapshots of ``counter.wasm`` (``counter.wat`` compiled once and
kept byte for byte, so that every version's fixtures are of the same
function) after the fixed sequence in :func:`drive`. The state that sequence
leaves is what ``tests/integration/test_snapshot_fixtures.py`` checks.

It never overwrites: fixtures of a released version must not change. It
refuses when any ``v{N}-*`` file already exists (``--out`` writes a scratch
set elsewhere, e.g. to look at what a writer produces today).

    python3 scripts/make-snapshot-fixtures.py
    python3 scripts/make-snapshot-fixtures.py --out /tmp/fixtures
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tensorwasm_tc
from tensorwasm_tc import Instance, Runtime, _core

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "snapshots"
GUEST_WAT = "counter.wat"
GUEST_WASM = "counter.wasm"

# Metadata every fixture carries.
TENANT_ID = 7
INSTANCE_ID = "golden-counter"
ZSTD_LEVEL = 3

# The key is public on purpose: it signs test fixtures and nothing else.
TEST_KEY_TEXT = "tensorwasm-tc golden snapshot fixtures: TEST KEY, NOT A SECRET\n"

PAGE = 65536
# The fixed sequence (see drive()).
STEPS = (10_000_000_000, -3, 42)
GROW_PAGES = 2
POKES = (
    (256, -0x0123456789ABCDEF),  # page 0, past the tensor scratch area
    (40_000, 0x7EDCBA9876543210),  # page 0
    (2 * PAGE + 16, -1),  # page 2, after memory.grow (page 1 stays zero)
    (3 * PAGE - 8, 0x5A5A5A5A5A5A5A5A),  # the last 8 bytes of the grown memory
)
KEPT_VALUES = (0.5, -1.25, 2.0, 3.75, -8.0, 1024.125)
READ_KEPT_AT = 4096


@dataclass(frozen=True)
class Fixture:
    suffix: str
    compression: str | None
    signed: bool


FIXTURES = (
    Fixture("counter", None, False),
    Fixture("counter-zstd-signed", "zstd", True),
)


def expected_state() -> dict[str, object]:
    """What :func:`drive` leaves, derived from the constants above."""
    return {
        "counter": len(STEPS),
        "acc": sum(STEPS),
        "pages": 1 + GROW_PAGES,
        "memory": dict(POKES),
        "apply": {0: 14, 1: 21},  # slot 0 doubles 7, slot 1 (table.set) triples it
        "kept": KEPT_VALUES,
    }


def _values(inst: Instance, export: str, *args: int) -> list[int]:
    return [int(v) for v in inst.invoke(export, list(args)).values]


def drive(inst: Instance) -> None:
    """The fixed sequence. Changing it changes what old fixtures hold: don't."""
    for x in STEPS:
        inst.invoke("step", [x])
    if _values(inst, "keep") != [0]:
        raise RuntimeError("keep() failed")
    for addr, value in POKES[:2]:
        inst.invoke("poke", [addr, value])
    if _values(inst, "grow", GROW_PAGES) != [1]:
        raise RuntimeError("memory.grow failed")
    for addr, value in POKES[2:]:
        inst.invoke("poke", [addr, value])
    inst.invoke("swap_op")


def observed_state(inst: Instance) -> dict[str, object]:
    """The state as the guest's getters report it (used by the self-check)."""
    n = _values(inst, "read_kept", READ_KEPT_AT)
    if n != [4 * len(KEPT_VALUES)]:
        raise RuntimeError(f"read_kept returned {n}")
    raw = b"".join(
        struct.pack("<q", _values(inst, "peek", READ_KEPT_AT + 8 * i)[0])
        for i in range((4 * len(KEPT_VALUES) + 7) // 8)
    )
    kept = struct.unpack_from(f"<{len(KEPT_VALUES)}f", raw)
    return {
        "counter": _values(inst, "counter")[0],
        "acc": _values(inst, "get_acc")[0],
        "pages": _values(inst, "pages")[0],
        "memory": {addr: _values(inst, "peek", addr)[0] for addr, _ in POKES},
        "apply": {slot: _values(inst, "apply", slot, 7)[0] for slot in (0, 1)},
        "kept": kept,
    }


def guest_wasm(out: Path) -> bytes:
    """The committed ``counter.wasm``; compiled from ``counter.wat`` (and, when
    writing into the fixture directory, committed) only while it is absent."""
    wasm = FIXTURE_DIR / GUEST_WASM
    if wasm.exists():
        return wasm.read_bytes()
    data = _core.wat_to_wasm((FIXTURE_DIR / GUEST_WAT).read_text(encoding="utf-8"))
    if out.resolve() == FIXTURE_DIR.resolve():
        _write_new(wasm, data)
    return data


def _write_new(path: Path, data: bytes) -> None:
    """Writes ``path`` (which must not exist) through a synced temp file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; fixtures are committed files
        os.link(tmp, path)  # fails if path appeared meanwhile: never overwrite
    finally:
        os.unlink(tmp)


def make(out: Path, version: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob(f"v{version}-*"))
    if existing:
        names = ", ".join(p.name for p in existing)
        raise SystemExit(
            f"refusing to write: fixtures of snapshot version {version} already exist "
            f"({names}). Fixtures of a released version never change; a new format "
            "version gets new files."
        )
    wasm = guest_wasm(out)
    key_path = out / f"v{version}-test-signing.key"
    _write_new(key_path, TEST_KEY_TEXT.encode())
    key = key_path.read_bytes().rstrip(b" \t\r\n")

    written = [key_path]
    want = expected_state()
    for fx in FIXTURES:
        rt = Runtime(cache_dir=False, require_signature=False)
        rt.snapshot_key = key if fx.signed else None  # never the environment's key
        with rt.load(wasm).instantiate() as inst:
            drive(inst)
            got = observed_state(inst)
            if got != want:
                raise RuntimeError(f"the guest's state {got} is not the expected {want}")
            path = out / f"v{version}-{fx.suffix}.twsnap"
            tmp = out / f".{path.name}.new"
            inst.snapshot(
                tmp,
                embed_module=True,
                compression=fx.compression,
                level=ZSTD_LEVEL,
                tenant_id=TENANT_ID,
                instance_id=INSTANCE_ID,
            )
        try:
            # Self-check: the file restores, alone, to the same state.
            with rt.restore(tmp) as back:
                if observed_state(back) != want:
                    raise RuntimeError(f"{path.name}: the restored state differs")
            _write_new(path, tmp.read_bytes())
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/make-snapshot-fixtures.py",
        description=(
            "Write the golden snapshot fixtures of the current SNAPSHOT_VERSION (never overwrites)."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=FIXTURE_DIR,
        help=f"directory to write to (default: {FIXTURE_DIR.relative_to(REPO_ROOT)})",
    )
    args = parser.parse_args(argv)
    version = int(tensorwasm_tc.SNAPSHOT_VERSION)
    for path in make(args.out, version):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
