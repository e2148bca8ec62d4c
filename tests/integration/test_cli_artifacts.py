"""`tensor-wasm artifacts list|show|import` against real Store Daemon
processes (the CLI runs as a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorwasm_tc.tensorcast as tc
from tensorwasm_tc.cli import artifacts as artifacts_cli
from tensorwasm_tc.tensorcast.options import POLICIES

from tests.tensorcast.test_daemon_cli_and_import import _write_safetensors
from tests.tensorcast.test_daemon_support import Cluster, Proc, cluster  # noqa: F401

ARTIFACT_ID = re.compile(r"^[0-9a-f]{64}$")
ERROR_LINE = re.compile(r"^error \[([a-z_]+)\]: \S")

TENSORS: dict[str, np.ndarray[Any, Any]] = {
    "w": np.random.default_rng(7).standard_normal((5, 3)).astype(np.float32),
    "a": np.arange(7, dtype=np.uint8),
    "h": np.arange(4, dtype=np.float16).reshape(2, 2),
    "i": np.array([-3, 0, 1 << 40], dtype=np.int64),
    "m": np.array([True, False, True]),
}


def _cli(
    home: Path, *args: str, cwd: Path | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`tensor-wasm artifacts ARGS` with ``TENSORCAST_HOME=home``."""
    env = dict(os.environ, TENSORCAST_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "tensorwasm_tc.cli.tensor_wasm", "artifacts", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    return res.stdout


def _failed(res: subprocess.CompletedProcess[str], kind: str, code: int = 1) -> str:
    """Exit status ``code`` and one line ``error [kind]: ...`` on stderr."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    m = ERROR_LINE.match(lines[0])
    assert m is not None and m.group(1) == kind, res.stderr
    return lines[0]


def _usage_error(res: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sdk() -> Iterator[None]:
    """Lets a test attach this process with `tc.init` (and always detach)."""
    tc.shutdown()
    try:
        yield
    finally:
        tc.shutdown()


def test_policies_match_the_sdk() -> None:
    assert artifacts_cli.POLICIES == POLICIES


def test_import_list_show(cluster: Cluster, tmp_path: Path, sdk: None) -> None:  # noqa: F811
    d = cluster.daemon()
    _write_safetensors(tmp_path / "model.safetensors", TENSORS)

    # A relative path: the CLI resolves it (the daemon reads it, from its own cwd).
    imported = _ok(_cli(d.home, "import", "model.safetensors", "--key", "model:v1", cwd=tmp_path))
    aid = imported.strip()
    assert ARTIFACT_ID.match(aid), imported

    # The daemon holds exactly the file's tensors.
    tc.init(mode="connect", address=d.rec.address)
    got = tc.get("model:v1")
    assert set(got) == set(TENSORS)
    for name, want in TENSORS.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape
        np.testing.assert_array_equal(got[name], want)
    info = tc.artifact(key="model:v1").info()
    assert info.artifact_id == aid
    del got
    tc.shutdown()

    # list: a table, then JSON.
    listed = _ok(_cli(d.home, "list")).splitlines()
    assert listed[0].split() == ["ARTIFACT_ID", "KEY", "POLICY", "BYTES", "TIERS", "LEASES"]
    # The artifact's bytes, tensors aligned in it (more than the tensors' sum).
    total = info.total_bytes
    assert total >= sum(a.nbytes for a in TENSORS.values())
    row = [line.split() for line in listed[1:] if line.startswith(aid)]
    assert len(row) == 1, listed
    assert row[0][1:4] == ["model:v1", "cache", str(total)], listed
    assert "memory" in row[0][4].split(","), listed
    assert row[0][5].isdigit(), listed

    report = json.loads(_ok(_cli(d.home, "list", "--json")))
    assert set(report) == {"daemon", "artifacts"}
    assert report["daemon"]["address"] == d.rec.address
    assert report["daemon"]["worker_id"] == "worker-d1" and report["daemon"]["build"]
    [art] = report["artifacts"]
    assert set(art) == {
        "artifact_id",
        "key",
        "policy",
        "total_bytes",
        "tiers",
        "leases",
        "last_used_unix_ms",
    }
    assert art["artifact_id"] == aid and art["key"] == "model:v1"
    assert art["policy"] == "cache" and art["total_bytes"] == total
    assert "memory" in art["tiers"] and isinstance(art["leases"], int)

    # show, by key: every tensor.
    shown = json.loads(_ok(_cli(d.home, "show", "model:v1", "--json")))
    assert shown == {
        "artifact_id": aid,
        "key": "model:v1",
        "key_version": 1,
        "policy": "cache",
        "total_bytes": total,
        "local_tiers": shown["local_tiers"],
        "tensors": shown["tensors"],
    }
    assert "memory" in shown["local_tiers"]
    by_name = {t["name"]: t for t in shown["tensors"]}
    assert set(by_name) == set(TENSORS) and len(shown["tensors"]) == len(TENSORS)
    for name, want in TENSORS.items():
        t = by_name[name]
        assert t == {
            "name": name,
            "dtype": str(want.dtype),
            "shape": list(want.shape),
            "nbytes": want.nbytes,
        }

    human = _ok(_cli(d.home, "show", "model:v1"))
    assert f"artifact_id: {aid}\n" in human
    assert "key: model:v1\n" in human and "key_version: 1\n" in human
    assert "policy: cache\n" in human and f"total_bytes: {total}\n" in human
    assert f"tensors: {len(TENSORS)}\n" in human
    rows = {line.split()[0]: line for line in human.splitlines() if line.startswith("  ")}
    assert rows["NAME"].split() == ["NAME", "DTYPE", "SHAPE", "BYTES"]
    assert rows["w"].split() == ["w", "float32", "[5,", "3]", str(TENSORS["w"].nbytes)]
    assert rows["h"].split() == ["h", "float16", "[2,", "2]", "8"]

    # show, by id: the same artifact (no key: the id was asked for).
    by_id = json.loads(_ok(_cli(d.home, "show", aid, "--json")))
    assert by_id["artifact_id"] == aid and by_id["tensors"] == shown["tensors"]
    assert by_id["key"] == "" and by_id["key_version"] == 0

    # The CLI closed its daemon sessions (tc.shutdown) each time.
    assert list(d.client(session_id=None).status().sessions) == []


def test_import_json_versions_and_policy(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    d = cluster.daemon()
    first, second = tmp_path / "v1.safetensors", tmp_path / "v2.safetensors"
    _write_safetensors(first, {"x": np.arange(6, dtype=np.float32)})
    _write_safetensors(second, {"x": np.arange(6, dtype=np.float32) * 2})

    one = json.loads(_ok(_cli(d.home, "import", str(first), "--key", "k", "--json")))
    assert set(one) == {"artifact_id", "key", "key_version", "policy", "path"}
    assert ARTIFACT_ID.match(one["artifact_id"])
    assert one["key"] == "k" and one["key_version"] == 1 and one["policy"] == "cache"
    assert one["path"] == str(first.resolve())

    # The same key again, another file, another policy: a new version.
    two_res = _cli(d.home, "import", str(second), "-k", "k", "--policy", "pinned")
    two = _ok(two_res).strip()
    assert ARTIFACT_ID.match(two) and two != one["artifact_id"]
    assert "version 2" in two_res.stderr
    shown = json.loads(_ok(_cli(d.home, "show", "k", "--json")))
    assert shown["artifact_id"] == two and shown["key_version"] == 2
    assert shown["policy"] == "pinned"

    durable = json.loads(
        _ok(_cli(d.home, "import", str(first), "--key", "d", "--policy", "durable", "--json"))
    )
    assert durable["policy"] == "durable"
    # Same content as the first import: the same id, now durable too.
    assert durable["artifact_id"] == one["artifact_id"]
    assert json.loads(_ok(_cli(d.home, "show", "d", "--json")))["key_version"] == 1

    listed = json.loads(_ok(_cli(d.home, "list", "--json")))["artifacts"]
    assert sorted(a["artifact_id"] for a in listed) == sorted([one["artifact_id"], two])
    assert {a["key"] for a in listed} <= {"k", "d"}


def test_explicit_address_and_empty_list(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    d = cluster.daemon()
    elsewhere = tmp_path / "no-sessions-here"
    address = d.rec.address
    assert _ok(_cli(elsewhere, "list", "--tensorcast-address", address)) == (
        f"no artifacts (daemon {address})\n"
    )
    assert json.loads(_ok(_cli(elsewhere, "list", "--tensorcast-address", address, "--json"))) == {
        "daemon": {"address": address, "worker_id": "worker-d1", "build": _build(d)},
        "artifacts": [],
    }
    path = tmp_path / "m.safetensors"
    _write_safetensors(path, {"x": np.ones(3, np.float32)})
    aid = _ok(_cli(elsewhere, "import", str(path), "--key", "m", "--tensorcast-address", address))
    shown = json.loads(_ok(_cli(elsewhere, "show", "m", "--json", "--tensorcast-address", address)))
    assert shown["artifact_id"] == aid.strip()


def _build(d: Proc) -> str:
    return str(d.client(session_id=None).status().build)


def test_unknown_key_or_id_exits_1(cluster: Cluster) -> None:  # noqa: F811
    d = cluster.daemon()
    line = _failed(_cli(d.home, "show", "no-such-key"), "not_found")
    assert "no-such-key" in line and d.rec.address in line
    res = _cli(d.home, "show", "no-such-key", "--json")
    _failed(res, "not_found")
    err = json.loads(res.stdout)["error"]
    assert err["kind"] == "not_found" and "no-such-key" in err["message"]
    _failed(_cli(d.home, "show", "0" * 64), "not_found")


def test_unreachable_daemon_is_one_clear_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    address = f"127.0.0.1:{_free_port()}"
    for args in (["list"], ["show", "k"], ["list", "--json"]):
        res = _cli(home, *args, "--tensorcast-address", address, timeout=60)
        line = _failed(res, "unavailable")
        assert f"the Store Daemon at {address} is not reachable" in line
        assert "--tensorcast-address" in line
    res = _cli(home, "list", "--json", "--tensorcast-address", address)
    assert json.loads(res.stdout)["error"]["kind"] == "unavailable"

    # No address and no daemon session under TENSORCAST_HOME.
    line = _failed(_cli(home, "list"), "failed_precondition")
    assert "No local daemon session found" in line


def test_usage_errors_exit_2(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    d = cluster.daemon()
    path = tmp_path / "m.safetensors"
    _write_safetensors(path, {"x": np.ones(3, np.float32)})
    _usage_error(
        _cli(d.home, "import", str(path), "--key", "k", "--policy", "forever"),
        "Invalid value for '--policy'",
        "'cache', 'pinned', 'durable'",
    )
    _usage_error(_cli(d.home, "import", str(path)), "Missing option '--key'")
    _usage_error(_cli(d.home, "import", str(path), "--key", " "), "the key is empty")
    _usage_error(_cli(d.home, "import", str(tmp_path / "missing.safetensors"), "--key", "k"))
    _usage_error(_cli(d.home, "list", "--tensorcast-address", "nohost"), "is not HOST:PORT")
    _usage_error(_cli(d.home, "list", "--tensorcast-address", "h:99999"), "is not HOST:PORT")
    _usage_error(_cli(d.home, "show"), "Missing argument 'KEY_OR_ID'")
    # Nothing was imported.
    assert json.loads(_ok(_cli(d.home, "list", "--json")))["artifacts"] == []


def test_bad_safetensors_is_an_error(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    d = cluster.daemon()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    line = _failed(_cli(d.home, "import", str(bad), "--key", "k"), "invalid_argument")
    assert "bad.safetensors" in line


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = _ok(_cli(tmp_path, "--help"))
    for command in ("list", "show", "import"):
        assert re.search(rf"^\s+{command}\s", out, re.M), out
