"""Snapshots written by released runtimes keep restoring, with their state.

Restores every golden fixture under ``tests/fixtures/snapshots/`` (see the
README there) and checks what the guest's getters report, what
``inspect_snapshot`` says, that every ``SNAPSHOT_VERSION`` up to the current
one has fixtures, and that damaged copies are refused. The fixtures are
read-only here: this module never writes them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tensorwasm_tc
from tensorwasm_tc import (
    Instance,
    Runtime,
    SnapshotIncompatibleError,
    SnapshotInvalidError,
    SnapshotSignatureInvalidError,
)

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "snapshots"
FIXTURE_NAME = re.compile(r"^v(?P<version>[0-9]+)-(?P<rest>.+)\.twsnap$")
GUEST_WASM = FIXTURE_DIR / "counter.wasm"

PAGE = 65536
# Offsets of the file format (docs/SNAPSHOT-FORMAT.md §1.1, §1.5).
VERSION_FIELD = range(8, 12)
SIGNATURE_LEN = 32

# ---------------------------------------------------------------------------
# What the generator's fixed sequence leaves (scripts/make-snapshot-fixtures.py)
# ---------------------------------------------------------------------------

COUNTER = 3  # three step() calls
ACC = 10_000_000_000 - 3 + 42
PAGES = 3  # 1 page, then memory.grow(2)
MEMORY_WORDS = {
    256: -0x0123456789ABCDEF,
    40_000: 0x7EDCBA9876543210,
    2 * PAGE + 16: -1,
    3 * PAGE - 8: 0x5A5A5A5A5A5A5A5A,
}
ZERO_WORDS = (PAGE, PAGE + 4096, 2 * PAGE - 8, 2 * PAGE + 24)  # page 1 stays zero
APPLY_7 = {0: 14, 1: 21}  # slot 0 doubles; slot 1 triples after table.set
KEPT = (0.5, -1.25, 2.0, 3.75, -8.0, 1024.125)
READ_KEPT_AT = 4096

TENANT_ID = 7
INSTANCE_ID = "golden-counter"
SECTION_KINDS = ["module", "globals", "tables", "tensors", "memory"]


@dataclass(frozen=True)
class Expected:
    """What ``inspect_snapshot`` must say about one fixture."""

    snapshot_version: int
    runtime_version_prefix: str
    signed: bool
    compressed: bool


# One row per committed fixture; a new version's files add rows, never edit.
EXPECTED_METADATA: dict[str, Expected] = {
    "v1-counter.twsnap": Expected(1, "0.1.", signed=False, compressed=False),
    "v1-counter-zstd-signed.twsnap": Expected(1, "0.1.", signed=True, compressed=True),
}


def fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURE_DIR.iterdir() if FIXTURE_NAME.match(p.name))


def version_of(path: Path) -> int:
    m = FIXTURE_NAME.match(path.name)
    assert m is not None, path
    return int(m["version"])


def key_for(path: Path) -> bytes:
    """The test key that signed ``path`` (``v{N}-test-signing.key``)."""
    key_file = FIXTURE_DIR / f"v{version_of(path)}-test-signing.key"
    return key_file.read_bytes().rstrip(b" \t\r\n")


def runtime_for(path: Path, *, key: bytes | None = None, require: bool = False) -> Runtime:
    """A runtime that checks ``path``'s signature when it is signed."""
    signed = EXPECTED_METADATA[path.name].signed if path.name in EXPECTED_METADATA else False
    chosen = key if key is not None else (key_for(path) if signed else None)
    return Runtime(cache_dir=False, snapshot_key=chosen or False, require_signature=require)


FIXTURES = fixture_files()
FIXTURE_IDS = [p.name for p in FIXTURES]
SIGNED = [p for p in FIXTURES if p.name in EXPECTED_METADATA and EXPECTED_METADATA[p.name].signed]
UNSIGNED = [p for p in FIXTURES if p not in SIGNED]


@pytest.fixture(autouse=True)
def no_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys and the signature requirement come from each test, never the environment."""
    for name in (
        "TENSOR_WASM_SNAPSHOT_KEY_FILE",
        "TENSOR_WASM_SNAPSHOT_KEY",
        "TENSOR_WASM_SNAPSHOT_REQUIRE_SIGNATURE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=FIXTURES, ids=FIXTURE_IDS)
def fixture(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def values(inst: Instance, export: str, *args: int) -> list[Any]:
    return list(inst.invoke(export, list(args)).values)


def kept_tensor(inst: Instance) -> tuple[float, ...]:
    """The kept tensor's elements, read back through the guest."""
    assert values(inst, "read_kept", READ_KEPT_AT) == [4 * len(KEPT)]
    raw = b"".join(
        struct.pack("<q", values(inst, "peek", READ_KEPT_AT + 8 * i)[0])
        for i in range((4 * len(KEPT) + 7) // 8)
    )
    return struct.unpack_from(f"<{len(KEPT)}f", raw)


def assert_golden_state(inst: Instance) -> None:
    assert values(inst, "counter") == [COUNTER]
    assert values(inst, "get_acc") == [ACC]
    assert values(inst, "pages") == [PAGES]
    for addr, word in MEMORY_WORDS.items():
        assert values(inst, "peek", addr) == [word], f"memory at {addr}"
    for addr in ZERO_WORDS:
        assert values(inst, "peek", addr) == [0], f"memory at {addr}"
    for slot, result in APPLY_7.items():
        assert values(inst, "apply", slot, 7) == [result], f"table slot {slot}"
    assert kept_tensor(inst) == KEPT


@pytest.fixture
def restored(fixture: Path) -> Iterator[Instance]:
    with runtime_for(fixture).restore(fixture) as inst:
        yield inst


# ---------------------------------------------------------------------------
# Every fixture restores with its state
# ---------------------------------------------------------------------------


def test_fixture_restores_from_its_embedded_module(restored: Instance) -> None:
    assert_golden_state(restored)


def test_fixture_restores_onto_the_loaded_function(fixture: Path) -> None:
    rt = runtime_for(fixture)
    fn = rt.load(GUEST_WASM.read_bytes())

    with rt.restore(fixture, function=fn) as inst:
        assert inst.function_id == fn.id
        assert_golden_state(inst)


def test_fixture_restores_from_bytes_and_file_objects(fixture: Path) -> None:
    rt = runtime_for(fixture)

    with rt.restore(fixture.read_bytes()) as from_bytes:
        assert_golden_state(from_bytes)
    with fixture.open("rb") as f, rt.restore(f) as from_file:
        assert_golden_state(from_file)


def test_restored_fixture_keeps_running(restored: Instance) -> None:
    assert values(restored, "step", 1000) == [COUNTER + 1]
    assert values(restored, "get_acc") == [ACC + 1000]
    assert values(restored, "grow", 1) == [PAGES]
    restored.invoke("poke", [PAGES * PAGE, 99])
    assert values(restored, "peek", PAGES * PAGE) == [99]
    assert values(restored, "keep") == [0]
    assert kept_tensor(restored) == KEPT


def test_two_restores_of_a_fixture_are_independent(fixture: Path) -> None:
    rt = runtime_for(fixture)
    with rt.restore(fixture) as a, rt.restore(fixture) as b:
        a.invoke("step", [1])
        a.invoke("poke", [256, 5])

        assert values(b, "counter") == [COUNTER]
        assert values(b, "peek", 256) == [MEMORY_WORDS[256]]


# ---------------------------------------------------------------------------
# inspect_snapshot reports the fixture's metadata
# ---------------------------------------------------------------------------


def test_inspect_reports_the_fixture_metadata(fixture: Path) -> None:
    want = EXPECTED_METADATA[fixture.name]
    function_hash = Runtime(cache_dir=False).load(GUEST_WASM.read_bytes()).id
    key = key_for(fixture) if want.signed else None

    info = tensorwasm_tc.inspect_snapshot(fixture, signing_key=key)

    assert info["snapshot_version"] == want.snapshot_version == version_of(fixture)
    assert str(info["runtime_version"]).startswith(want.runtime_version_prefix)
    assert info["tenant_id"] == TENANT_ID
    assert info["instance_id"] == INSTANCE_ID
    assert info["function_hash"] == function_hash
    assert info["created_unix_ms"] > 0
    assert info["signed"] is want.signed
    assert info["verification"] == ("verified" if want.signed else "unsigned")
    assert info["module_embedded"] is True
    assert [s["kind"] for s in info["sections"]] == SECTION_KINDS
    module = next(s for s in info["sections"] if s["kind"] == "module")
    assert module["raw_len"] == GUEST_WASM.stat().st_size
    assert info["memory"] == {"byte_len": PAGES * PAGE, "stored_bytes": 2 * PAGE, "runs": 2}
    raw_total = sum(int(s["raw_len"]) for s in info["sections"])
    assert (fixture.stat().st_size < raw_total) is want.compressed


@pytest.mark.parametrize("path", SIGNED, ids=[p.name for p in SIGNED])
def test_signed_fixture_without_a_key_is_reported_unverified(path: Path) -> None:
    info = tensorwasm_tc.inspect_snapshot(path)

    assert info["signed"] is True
    assert info["verification"] == "signed_unverified"


# ---------------------------------------------------------------------------
# The fixture set keeps up with SNAPSHOT_VERSION
# ---------------------------------------------------------------------------


def test_current_snapshot_version_has_a_fixture() -> None:
    version = tensorwasm_tc.SNAPSHOT_VERSION

    have = [p.name for p in FIXTURES if version_of(p) == version]

    assert have, (
        f"SNAPSHOT_VERSION is {version} but {FIXTURE_DIR} has no v{version}-*.twsnap: "
        "run scripts/make-snapshot-fixtures.py and commit the new files"
    )


def test_every_version_up_to_the_current_one_keeps_its_fixtures() -> None:
    versions = {version_of(p) for p in FIXTURES}

    missing = [v for v in range(1, tensorwasm_tc.SNAPSHOT_VERSION + 1) if v not in versions]
    newer = sorted(v for v in versions if v > tensorwasm_tc.SNAPSHOT_VERSION)

    assert not missing, f"fixtures of snapshot version(s) {missing} were removed"
    assert not newer, f"fixtures of version(s) {newer} are newer than this runtime"


def test_every_fixture_has_expected_metadata_and_vice_versa() -> None:
    assert sorted(EXPECTED_METADATA) == FIXTURE_IDS


def test_every_signed_fixture_has_its_test_key() -> None:
    for path in FIXTURES:
        if EXPECTED_METADATA[path.name].signed:
            assert len(key_for(path)) >= 16, path.name


# ---------------------------------------------------------------------------
# Damaged copies are refused
# ---------------------------------------------------------------------------


def section_kind_offset(data: bytes, index: int) -> int:
    """Offset of the ``kind`` field of section ``index`` (0: metadata)."""
    pos = 16  # file header
    for _ in range(index):
        (raw_len,) = struct.unpack_from("<Q", data, pos + 8)
        pos += 16
        while raw_len > 0:
            chunk_raw, stored = struct.unpack_from("<II", data, pos + 1)
            pos += 9 + stored
            raw_len -= chunk_raw
        pos += 32  # section checksum
    return pos


def flip_positions(data: bytes, *, signed: bool) -> list[int]:
    """Every byte of the headers and metadata, a stride through the rest, the
    tail; not the version field (that is ``snapshot_incompatible``) nor the
    signature (only a key detects that)."""
    end = len(data) - (SIGNATURE_LEN if signed else 0)
    positions = set(range(0, min(512, end)))
    positions |= set(range(512, end, 61))
    positions |= set(range(max(0, end - 128), end))
    return sorted(p for p in positions if p not in VERSION_FIELD)


def test_one_flipped_byte_is_refused_as_invalid(fixture: Path) -> None:
    data = fixture.read_bytes()
    signed = EXPECTED_METADATA[fixture.name].signed
    rt = runtime_for(fixture)
    # Checked separately by test_a_flipped_module_section_kind_is_refused_as_invalid.
    known = section_kind_offset(data, 1)
    accepted = []
    wrong_error = []

    for pos in flip_positions(data, signed=signed):
        damaged = bytearray(data)
        damaged[pos] ^= 0x01
        try:
            rt.restore(bytes(damaged)).close()
        except SnapshotInvalidError:
            continue
        except Exception as e:
            if pos != known:
                wrong_error.append((pos, type(e).__name__, str(e)))
        else:
            accepted.append(pos)

    assert not accepted, f"damaged copies restored (flipped byte at {accepted[:10]})"
    assert not wrong_error, (
        f"refused with another error than SnapshotInvalidError: {wrong_error[:5]}"
    )


def test_a_flipped_module_section_kind_is_refused_as_invalid(fixture: Path) -> None:
    data = bytearray(fixture.read_bytes())
    pos = section_kind_offset(bytes(data), 1)
    assert data[pos] == 2  # module
    data[pos] ^= 0x01  # -> 3 (memory)

    with pytest.raises(SnapshotInvalidError):
        runtime_for(fixture).restore(bytes(data))


def test_one_flipped_byte_is_refused_by_inspect(fixture: Path) -> None:
    data = bytearray(fixture.read_bytes())
    signed = EXPECTED_METADATA[fixture.name].signed
    key = key_for(fixture) if signed else None
    middle = (len(data) - (SIGNATURE_LEN if signed else 0)) // 2
    data[middle] ^= 0x80

    with pytest.raises(SnapshotInvalidError):
        tensorwasm_tc.inspect_snapshot(bytes(data), signing_key=key)


def test_a_newer_format_version_is_refused_as_incompatible(fixture: Path) -> None:
    data = bytearray(fixture.read_bytes())
    struct.pack_into("<I", data, VERSION_FIELD.start, tensorwasm_tc.SNAPSHOT_VERSION + 1)

    with pytest.raises(SnapshotIncompatibleError):
        runtime_for(fixture).restore(bytes(data))


@pytest.mark.parametrize("path", SIGNED, ids=[p.name for p in SIGNED])
def test_a_flipped_signature_is_refused_with_the_key(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01

    with pytest.raises(SnapshotSignatureInvalidError):
        runtime_for(path).restore(bytes(data))


@pytest.mark.parametrize("path", SIGNED, ids=[p.name for p in SIGNED])
def test_a_signed_fixture_is_refused_under_another_key(path: Path) -> None:
    with pytest.raises(SnapshotSignatureInvalidError):
        runtime_for(path, key=b"another key, also only for tests").restore(path)


@pytest.mark.parametrize("path", UNSIGNED, ids=[p.name for p in UNSIGNED])
def test_an_unsigned_fixture_is_refused_when_a_signature_is_required(path: Path) -> None:
    rt = runtime_for(path, key=b"some key, only for this test", require=True)

    with pytest.raises(SnapshotSignatureInvalidError):
        rt.restore(path)
