"""`tensor-wasm-cli snapshot save|restore|inspect|verify` against real
servers: a saved instance restores and continues, offline inspect and
verify read the file (checksums, signatures with --hmac-key-file), --json
output parses, and exit statuses tell failures apart (1 error, 2 bad local
input, 3 the server refused)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import tensorwasm_tc
from click.testing import CliRunner, Result
from tensorwasm_tc.cli.tensor_wasm import main

from ._gateway import COUNTER_WAT, GatewayServer, free_port, running_gateway
from ._helpers import run_cli

TOKEN = "tok"
CLIENT_ENV_VARS = (
    "TENSOR_WASM_SERVER",
    "TENSOR_WASM_API_TOKEN",
    "TENSOR_WASM_TENANT",
    "TENSOR_WASM_SNAPSHOT_KEY_FILE",
)
KEY = b"cli-snapshot-signing-key-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    home = tmp_path_factory.mktemp("cli-snap") / "home"
    env = {"TENSOR_WASM_API_TOKENS": f"{TOKEN}:tenant=*"}
    with running_gateway(home, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def counter_wat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-snap-guest") / "counter.wat"
    path.write_text(COUNTER_WAT)
    return path


def cli(server: GatewayServer | str | None, *args: str, **env_extra: str) -> Result:
    """Runs `tensor-wasm ARGS` in-process with only the given client env."""
    env: dict[str, str | None] = dict.fromkeys(CLIENT_ENV_VARS)
    if server is not None:
        env["TENSOR_WASM_SERVER"] = server if isinstance(server, str) else server.url
    env["TENSOR_WASM_API_TOKEN"] = TOKEN
    env.update(env_extra)
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def fails(result: Result, status: int, kind: str | None = None) -> str:
    assert result.exit_code == status, (result.exit_code, result.stdout, result.stderr)
    if kind is not None:
        assert re.search(rf"^error \[{re.escape(kind)}\]: \S", result.stderr, re.M), result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def counter(server: GatewayServer, counter_wat: Path) -> str:
    return ok(cli(server, "deploy", str(counter_wat), "--name", "counter")).strip()


def counted(server: GatewayServer, function_id: str, n: int) -> str:
    iid = ok(cli(server, "instances", "create", function_id)).strip()
    for _ in range(n):
        ok(cli(server, "instances", "invoke", iid, "-e", "inc"))
    return iid


def invoke(server: GatewayServer, iid: str, export: str) -> int:
    out = json.loads(ok(cli(server, "instances", "invoke", iid, "-e", export, "--json")))
    value: int = out["result"][0]
    return value


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


# --------------------------------------------------------------------------- save and restore


def test_save_then_restore_continues(server: GatewayServer, counter: str, tmp_path: Path) -> None:
    iid = counted(server, counter, 4)
    path = tmp_path / "counter.twsnap"
    out = ok(cli(server, "snapshot", "save", iid, str(path)))
    size = path.stat().st_size
    assert out.strip() == f"saved {iid} to {path} ({size} bytes, unsigned)"
    assert leftovers(tmp_path) == []
    meta = tensorwasm_tc.inspect_snapshot(path)
    assert (meta["instance_id"], meta["module_embedded"]) == (iid, True)

    copy = ok(cli(server, "snapshot", "restore", str(path), "--as-instance", "cli-copy")).strip()
    assert copy == "cli-copy"
    assert invoke(server, copy, "inc") == 5
    assert invoke(server, copy, "sum") == 15
    assert invoke(server, iid, "get") == 4


def test_json_output_and_zstd(server: GatewayServer, counter: str, tmp_path: Path) -> None:
    iid = counted(server, counter, 2)
    # A directory: the file is named after the instance.
    saved = json.loads(
        ok(cli(server, "snapshot", "save", iid, str(tmp_path), "--compression", "zstd", "--json"))
    )
    path = tmp_path / f"{iid}.twsnap"
    module_hash = tensorwasm_tc.inspect_snapshot(path)["function_hash"]
    assert saved == {
        "instance_id": iid,
        "file_bytes": path.stat().st_size,
        "function_id": counter,
        "module_hash": module_hash,
        "signed": False,
        "path": str(path),
    }
    restored = json.loads(ok(cli(server, "snapshot", "restore", str(path), "--json")))
    assert set(restored) == {"instance_id", "function_id", "tenant_id", "created_unix_ms"}
    assert restored["function_id"] == counter
    assert invoke(server, restored["instance_id"], "get") == 2


# --------------------------------------------------------------------------- offline


@pytest.fixture(scope="module")
def saved(server: GatewayServer, counter: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-snap-saved") / "three.twsnap"
    ok(cli(server, "snapshot", "save", counted(server, counter, 3), str(path)))
    return path


def test_inspect_works_offline(saved: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    meta = tensorwasm_tc.inspect_snapshot(saved)
    out = ok(cli(dead, "snapshot", "inspect", str(saved)))
    assert f"function_hash: {meta['function_hash']}" in out
    assert f"instance_id: {meta['instance_id']}" in out
    assert "tenant_id: 0" in out
    assert "signature: unsigned" in out
    assert "module_embedded: yes" in out
    assert f"file_bytes: {saved.stat().st_size}" in out
    assert re.search(r"^memory: 65536 bytes, \d+ stored in \d+ run\(s\)$", out, re.M), out
    assert re.search(r"^  module +\d+ bytes$", out, re.M), out
    as_json = json.loads(ok(cli(dead, "snapshot", "inspect", str(saved), "--json")))
    assert as_json["function_hash"] == meta["function_hash"]
    assert as_json["verification"] == "unsigned"
    assert as_json["file_bytes"] == saved.stat().st_size
    assert {s["kind"] for s in as_json["sections"]} >= {"module", "memory", "globals"}


def test_verify_unsigned(saved: Path, tmp_path: Path) -> None:
    assert ok(cli(None, "snapshot", "verify", str(saved))).strip() == "ok: unsigned"
    out = json.loads(ok(cli(None, "snapshot", "verify", str(saved), "--json")))
    assert (out["ok"], out["verification"]) == (True, "unsigned")
    # With a key, a signature is required.
    key = tmp_path / "k"
    key.write_bytes(KEY)
    fails(
        cli(None, "snapshot", "verify", str(saved), "--hmac-key-file", str(key)),
        1,
        "snapshot_signature_invalid",
    )
    # ... also when the key comes from the environment.
    result = cli(None, "snapshot", "verify", str(saved), TENSOR_WASM_SNAPSHOT_KEY_FILE=str(key))
    fails(result, 1, "snapshot_signature_invalid")
    result = cli(None, "snapshot", "verify", str(saved), "--hmac-key-file", str(key), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["kind"] == "snapshot_signature_invalid"


def test_signed_snapshots_verify_with_their_key_only(tmp_path: Path, counter_wat: Path) -> None:
    key = tmp_path / "snapshot.key"
    key.write_bytes(KEY + b"\n")
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"not-the-key-but-long-enough-0123456")
    env = {"TENSOR_WASM_API_TOKENS": f"{TOKEN}:tenant=*", "TENSOR_WASM_SNAPSHOT_KEY_FILE": str(key)}
    path = tmp_path / "signed.twsnap"
    with running_gateway(tmp_path / "home", env) as srv:
        fn = ok(cli(srv, "deploy", str(counter_wat))).strip()
        iid = counted(srv, fn, 1)
        out = ok(cli(srv, "snapshot", "save", iid, str(path)))
        assert out.rstrip().endswith("bytes, signed)")
    verify = ("snapshot", "verify", str(path))
    assert ok(cli(None, *verify)).strip() == "ok: signed_unverified"
    assert ok(cli(None, *verify, "--hmac-key-file", str(key))).strip() == "ok: verified"
    out = json.loads(ok(cli(None, *verify, "--hmac-key-file", str(key), "--json")))
    assert out["verification"] == "verified"
    stderr = fails(
        cli(None, *verify, "--hmac-key-file", str(wrong)), 1, "snapshot_signature_invalid"
    )
    assert "wrong key" in stderr or "does not match" in stderr
    assert "signed (not verified" in ok(cli(None, "snapshot", "inspect", str(path)))


def test_corrupt_files_fail_inspect_and_verify(saved: Path, tmp_path: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.twsnap"
    bad.write_bytes(bytes(data))
    fails(cli(None, "snapshot", "inspect", str(bad)), 1, "snapshot_invalid")
    fails(cli(None, "snapshot", "verify", str(bad)), 1, "snapshot_invalid")
    truncated = tmp_path / "truncated.twsnap"
    truncated.write_bytes(saved.read_bytes()[:100])
    result = cli(None, "snapshot", "inspect", str(truncated), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["kind"] == "snapshot_invalid"


# --------------------------------------------------------------------------- exit statuses


def test_bad_local_input_is_2(server: GatewayServer, saved: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.twsnap")
    for args in (
        ("snapshot", "restore", missing),
        ("snapshot", "inspect", missing),
        ("snapshot", "verify", missing),
        ("snapshot", "verify", str(saved), "--hmac-key-file", missing),
        ("snapshot", "save", "in_x", str(tmp_path / "no-such-dir" / "x.twsnap")),
        ("snapshot", "save", "in_x", str(tmp_path), "--compression", "gzip"),
        ("snapshot", "save"),
    ):
        fails(cli(server, *args), 2)
    short = tmp_path / "short.key"
    short.write_bytes(b"short")
    fails(cli(None, "snapshot", "verify", str(saved), "--hmac-key-file", str(short)), 2)
    unreadable = tmp_path / "unreadable.twsnap"
    unreadable.write_bytes(saved.read_bytes())
    unreadable.chmod(0)
    if not os.access(unreadable, os.R_OK):  # root reads anything
        fails(cli(None, "snapshot", "inspect", str(unreadable)), 2, "invalid_input")
        fails(cli(server, "snapshot", "restore", str(unreadable)), 2, "invalid_input")


def test_server_refusals_are_3(server: GatewayServer, saved: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.twsnap"
    fails(cli(server, "snapshot", "save", "in_nope", str(out)), 3, "not_found")
    assert not out.exists() and leftovers(tmp_path) == []
    # Tenant 5 has not deployed the snapshot's function.
    fails(
        cli(server, "snapshot", "restore", str(saved), TENSOR_WASM_TENANT="5"),
        3,
        "function_not_found",
    )
    junk = tmp_path / "junk.twsnap"
    junk.write_bytes(b"not a snapshot")
    fails(cli(server, "snapshot", "restore", str(junk)), 3, "snapshot_invalid")
    fails(
        cli(server, "snapshot", "restore", str(saved), TENSOR_WASM_API_TOKEN="wrong"),
        3,
        "unauthorized",
    )


def test_network_failure_is_1(saved: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    fails(cli(dead, "snapshot", "save", "in_x", str(tmp_path / "x")), 1, "connection_failed")
    assert list(tmp_path.iterdir()) == []
    fails(cli(dead, "snapshot", "restore", str(saved)), 1, "connection_failed")


def test_the_real_program_exits_with_the_documented_statuses(
    server: GatewayServer, saved: Path, tmp_path: Path
) -> None:
    env: Mapping[str, Any] = {
        **{k: v for k, v in os.environ.items() if k not in CLIENT_ENV_VARS},
        "TENSOR_WASM_SERVER": server.url,
        "TENSOR_WASM_API_TOKEN": TOKEN,
    }
    proc = run_cli("snapshot", "save", "in_nope", str(tmp_path / "x"), env=env)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("error [not_found]: ")
    proc = run_cli("snapshot", "inspect", str(tmp_path / "missing"), env=env)
    assert proc.returncode == 2
    proc = run_cli("snapshot", "verify", str(saved), env=env)
    assert (proc.returncode, proc.stdout) == (0, "ok: unsigned\n")
    proc = run_cli("snapshot", "--help", env=env)
    assert proc.returncode == 0
    assert "3  the server refused" in proc.stdout
