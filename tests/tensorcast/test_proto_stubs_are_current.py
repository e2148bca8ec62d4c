"""The committed gRPC stubs are what `scripts/gen-proto.sh` makes from the
committed .proto files: editing a .proto without regenerating fails here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "python" / "tensorwasm_tc" / "tensorcast" / "_proto"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_stubs_match_the_protos(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    out = tmp_path / "_proto"
    subprocess.run(["sh", str(ROOT / "scripts" / "gen-proto.sh"), str(out)], check=True, cwd=ROOT)
    fresh, committed = _tree(out), _tree(COMMITTED)
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], f"regenerate with scripts/gen-proto.sh: {stale}"
