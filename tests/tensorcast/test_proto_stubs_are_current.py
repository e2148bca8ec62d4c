"""The committed gRPC stubs are what `scripts/gen-proto.sh` makes from the
committed .proto files: editing a .proto without regenerating fails here.

The generator stamps its own version into the stubs (the minimum grpcio
and protobuf runtimes they accept); a newer grpcio-tools than the one that
made the committed stubs changes only those stamps, which are compared
apart from the rest."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "python" / "tensorwasm_tc" / "tensorcast" / "_proto"


# The generator's version stamps: grpcio's, protobuf's (comment and check).
_STAMPS = (
    re.compile(rb"^GRPC_GENERATED_VERSION = .*$", re.M),
    re.compile(rb"^# Protobuf Python Version: .*$", re.M),
    re.compile(rb"ValidateProtobufRuntimeVersion\([^)]*\)", re.S),
)


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            data = p.read_bytes()
            for stamp in _STAMPS:
                data = stamp.sub(b"<generator version>", data)
            out[str(p.relative_to(root))] = data
    return out


def test_generated_stubs_match_the_protos(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    out = tmp_path / "_proto"
    subprocess.run(["sh", str(ROOT / "scripts" / "gen-proto.sh"), str(out)], check=True, cwd=ROOT)
    fresh, committed = _tree(out), _tree(COMMITTED)
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], f"regenerate with scripts/gen-proto.sh: {stale}"
