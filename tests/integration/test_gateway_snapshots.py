"""Snapshots over HTTP against real servers: an instance saved with
``POST /instances/{id}/snapshot`` and restored with ``POST /instances/restore``
continues where it stopped, on the same server and on a second one with a
fresh home; restore never reaches another tenant's function nor bypasses
deploy; corrupt, foreign, unsigned (when signatures are required) and
oversized bodies are refused with their kinds; snapshots never tear a
concurrent invoke; pre-initialised functions run their init once; both
actions are audited."""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tensorwasm_tc
from tensorwasm_tc.gateway import ConfigError, GatewayConfig

from ._gateway import (
    ADD_WAT,
    COUNTER_WAT,
    GatewayServer,
    assert_error,
    b64,
    headers,
    running_gateway,
    wat,
)

TOKENS = "tokA:tenant=1,tokB:tenant=2,tokW:tenant=*"
SIGNING_KEY = b"gateway-snapshot-key-0123456789abcdef"
OCTET = {"content-type": "application/octet-stream"}


@pytest.fixture(scope="module")
def audit_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gw-snap-audit") / "audit.jsonl"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, audit_path: Path) -> Iterator[GatewayServer]:
    home = tmp_path_factory.mktemp("gw-snap") / "home"
    env = {"TENSOR_WASM_API_TOKENS": TOKENS, "TENSOR_WASM_API_AUDIT_LOG": f"file:{audit_path}"}
    with running_gateway(home, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def a(server: GatewayServer) -> httpx.Client:
    """Tenant 1's client."""
    return server.client("tokA", 1)


@pytest.fixture(scope="module")
def counter(server: GatewayServer, a: httpx.Client) -> dict[str, Any]:
    return server.deploy(a, wat(COUNTER_WAT), name="counter")


def new_instance(c: httpx.Client, function_id: str) -> str:
    r = c.post("/instances", json={"function_id": function_id})
    assert r.status_code == 201, r.text
    iid: str = r.json()["instance_id"]
    return iid


def call(c: httpx.Client, instance_id: str, export: str) -> int:
    r = c.post(f"/instances/{instance_id}/invoke", json={"export": export})
    assert r.status_code == 200, r.text
    value: int = r.json()["result"][0]
    return value


def snapshot(c: httpx.Client, instance_id: str, **params: Any) -> httpx.Response:
    r = c.post(f"/instances/{instance_id}/snapshot", params=params)
    assert r.status_code == 200, r.text
    return r


def restore(c: httpx.Client, data: bytes, **params: Any) -> httpx.Response:
    return c.post("/instances/restore", content=data, params=params, headers=OCTET)


def spool_files(srv: GatewayServer) -> list[Path]:
    directory = srv.home / "gateway" / "snapshots"
    return sorted(directory.iterdir()) if directory.exists() else []


def counted(c: httpx.Client, function_id: str, n: int) -> str:
    """An instance that has counted to `n`."""
    iid = new_instance(c, function_id)
    for _ in range(n):
        call(c, iid, "inc")
    return iid


# --------------------------------------------------------------------------- round trips


def test_restored_instance_continues_from_the_snapshot(
    server: GatewayServer, a: httpx.Client, counter: dict[str, Any]
) -> None:
    iid = counted(a, counter["id"], 5)
    r = snapshot(a, iid)
    data = r.content
    assert r.headers["content-type"] == "application/octet-stream"
    assert int(r.headers["content-length"]) == len(data)
    assert r.headers["content-disposition"] == f'attachment; filename="{iid}.twsnap"'
    assert r.headers["x-snapshot-function-id"] == counter["id"]
    assert r.headers["x-snapshot-module-hash"] == counter["module_hash"]
    assert r.headers["x-snapshot-signed"] == "false"
    assert r.headers["cache-control"] == "no-store"

    meta = tensorwasm_tc.inspect_snapshot(data)
    assert meta["function_hash"] == counter["module_hash"]
    assert (meta["tenant_id"], meta["instance_id"]) == (1, iid)
    assert meta["module_embedded"] is True
    assert meta["verification"] == "unsigned"

    r = restore(a, data, instance_id="counter-copy")
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"instance_id", "function_id", "tenant_id", "created_unix_ms"}
    assert (body["instance_id"], body["function_id"], body["tenant_id"]) == (
        "counter-copy",
        counter["id"],
        1,
    )
    assert call(a, "counter-copy", "inc") == 6
    assert call(a, "counter-copy", "sum") == 21
    # The original goes on by itself.
    assert call(a, iid, "get") == 5
    assert call(a, iid, "inc") == 6
    assert call(a, "counter-copy", "get") == 6
    listed = {i["instance_id"] for i in a.get("/instances").json()["instances"]}
    assert {iid, "counter-copy"} <= listed
    assert spool_files(server) == []


def test_zstd_snapshot_restores_with_a_generated_id(
    a: httpx.Client, counter: dict[str, Any]
) -> None:
    iid = counted(a, counter["id"], 3)
    data = snapshot(a, iid, compression="zstd", level=9).content
    assert tensorwasm_tc.inspect_snapshot(data)["function_hash"] == counter["module_hash"]
    r = restore(a, data)
    assert r.status_code == 201, r.text
    copy = r.json()["instance_id"]
    assert copy.startswith("in_") and copy != iid
    assert call(a, copy, "inc") == 4


def test_restore_into_a_second_gateway(
    tmp_path: Path, a: httpx.Client, counter: dict[str, Any]
) -> None:
    iid = counted(a, counter["id"], 7)
    data = snapshot(a, iid).content
    with running_gateway(tmp_path / "other-home", {"TENSOR_WASM_API_TOKENS": TOKENS}) as other:
        c = other.client("tokA", 1)
        # The module is in the file, but restore never deploys it.
        err = assert_error(restore(c, data), 404, "function_not_found")
        assert counter["module_hash"] in err["message"] and "deploy" in err["message"]
        assert c.get("/functions").json()["functions"] == []
        fn = other.deploy(c, wat(COUNTER_WAT), name="counter-on-other")
        r = restore(c, data)
        assert r.status_code == 201, r.text
        assert r.json()["function_id"] == fn["id"]
        copy = r.json()["instance_id"]
        assert call(c, copy, "inc") == 8
        assert call(c, copy, "sum") == 36


def test_restore_picks_the_tenants_newest_function_or_the_one_named(
    server: GatewayServer, a: httpx.Client, counter: dict[str, Any]
) -> None:
    data = snapshot(a, counted(a, counter["id"], 2)).content
    newer = server.deploy(a, wat(COUNTER_WAT), name="counter-v2", limits={"deadline_ms": 5000})
    r = restore(a, data)
    assert r.status_code == 201, r.text
    assert r.json()["function_id"] == newer["id"]
    r = restore(a, data, function_id=counter["id"])
    assert r.status_code == 201, r.text
    assert r.json()["function_id"] == counter["id"]
    assert call(a, r.json()["instance_id"], "inc") == 3
    assert a.delete(f"/functions/{newer['id']}").status_code == 204


# --------------------------------------------------------------------------- refusals


def test_other_tenants_cannot_snapshot_or_restore(
    server: GatewayServer, a: httpx.Client, counter: dict[str, Any]
) -> None:
    iid = counted(a, counter["id"], 1)
    data = snapshot(a, iid).content
    b = server.client("tokB", 2)
    w2 = server.client("tokW", 2)
    for c in (b, w2):
        assert_error(c.post(f"/instances/{iid}/snapshot"), 403, "tenant_scope_denied")
        # Tenant 2 has not deployed the counter: the snapshot names no function of its own.
        assert_error(restore(c, data), 404, "function_not_found")
        # ... and cannot name tenant 1's.
        assert_error(restore(c, data, function_id=counter["id"]), 403, "tenant_scope_denied")
    # A token scoped to tenant 2 may not act for tenant 1 at all.
    assert_error(
        b.post(f"/instances/{iid}/snapshot", headers=headers("tokB", 1)),
        403,
        "tenant_scope_denied",
    )
    assert_error(a.post("/instances/in_nope/snapshot"), 404, "not_found")
    assert_error(restore(a, data, function_id="fn_nope"), 404, "not_found")
    assert {i["instance_id"] for i in b.get("/instances").json()["instances"]} == set()
    assert call(a, iid, "get") == 1


def test_corrupt_bodies_are_snapshot_invalid(
    server: GatewayServer, a: httpx.Client, counter: dict[str, Any]
) -> None:
    data = snapshot(a, counted(a, counter["id"], 2)).content
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x40
    rng = random.Random(7)
    before = len(a.get("/instances").json()["instances"])
    for body in (
        b"",
        b"\x00snapshot",
        bytes(rng.getrandbits(8) for _ in range(4096)),
        data[: len(data) // 2],
        data[:-1],
        data + b"\x00",
        bytes(flipped),
    ):
        assert_error(restore(a, body), 400, "snapshot_invalid")
        # Naming the function skips the first read; the restore checks as much.
        assert_error(restore(a, body, function_id=counter["id"]), 400, "snapshot_invalid")
    assert len(a.get("/instances").json()["instances"]) == before
    assert spool_files(server) == []


def test_snapshot_of_another_function_is_incompatible(
    server: GatewayServer, a: httpx.Client, counter: dict[str, Any]
) -> None:
    adder = server.deploy(a, wat(ADD_WAT), name="adder")
    data = snapshot(a, new_instance(a, adder["id"])).content
    err = assert_error(restore(a, data, function_id=counter["id"]), 409, "snapshot_incompatible")
    assert counter["module_hash"] in err["message"]


def test_taken_or_malformed_instance_ids_are_refused(
    a: httpx.Client, counter: dict[str, Any]
) -> None:
    iid = counted(a, counter["id"], 1)
    data = snapshot(a, iid).content
    assert_error(restore(a, data, instance_id=iid), 409, "instance_exists")
    for bad in ("", "a/b", "-leading-dash", "x" * 129, "spa ce"):
        assert_error(restore(a, data, instance_id=bad), 400, "invalid_args")
    assert_error(a.post(f"/instances/{iid}/snapshot?compression=gzip"), 400, "invalid_args")
    assert_error(a.post(f"/instances/{iid}/snapshot?level=99"), 400, "invalid_args")
    assert call(a, iid, "get") == 1


def test_restore_body_limit_is_its_own(
    tmp_path: Path, a: httpx.Client, counter: dict[str, Any]
) -> None:
    data = snapshot(a, counted(a, counter["id"], 1)).content
    env = {
        "TENSOR_WASM_API_MAX_SNAPSHOT_BYTES": str(len(data) - 1),
        # Smaller than the snapshot: restore is not bound by it.
        "TENSOR_WASM_API_MAX_BODY_BYTES": "1024",
    }
    with running_gateway(tmp_path / "home", env) as srv:
        c = srv.client()
        srv.deploy(c, wat(COUNTER_WAT), name="counter")
        assert_error(restore(c, data), 413, "body_too_large")

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted while read
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]

        r = c.post("/instances/restore", content=chunked(), headers=OCTET)
        assert_error(r, 413, "body_too_large")
        assert spool_files(srv) == []
        assert c.get("/instances").json()["instances"] == []
    env["TENSOR_WASM_API_MAX_SNAPSHOT_BYTES"] = str(len(data))
    # What a crash would leave in the spool: removed at the next start once
    # older than the request timeout; a fresh file may be another process's.
    spool = tmp_path / "home" / "gateway" / "snapshots"
    stale, fresh = spool / "stale.upload", spool / "fresh.upload"
    for leftover in (stale, fresh):
        leftover.write_bytes(data)
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    with running_gateway(tmp_path / "home", env) as srv:
        assert spool_files(srv) == [fresh]
        fresh.unlink()
        c = srv.client()
        r = restore(c, data)
        assert r.status_code == 201, r.text
        assert call(c, r.json()["instance_id"], "get") == 1


# --------------------------------------------------------------------------- signatures


def test_required_signatures(tmp_path: Path, a: httpx.Client, counter: dict[str, Any]) -> None:
    key_file = tmp_path / "snapshot.key"
    key_file.write_bytes(SIGNING_KEY + b"\n")
    other_key = tmp_path / "other.key"
    other_key.write_bytes(b"another-key-of-the-right-size-0123")
    unsigned = snapshot(a, counted(a, counter["id"], 4)).content
    env = {
        "TENSOR_WASM_SNAPSHOT_KEY_FILE": str(key_file),
        "TENSOR_WASM_SNAPSHOT_REQUIRE_SIGNATURE": "1",
    }
    with running_gateway(tmp_path / "signed-home", env) as srv:
        c = srv.client()
        fn = srv.deploy(c, wat(COUNTER_WAT), name="counter")
        assert "snapshots: signed; restore requires a valid signature" in srv.log()
        assert_error(restore(c, unsigned), 400, "snapshot_signature_invalid")
        assert_error(restore(c, unsigned, function_id=fn["id"]), 400, "snapshot_signature_invalid")

        iid = counted(c, fn["id"], 3)
        r = snapshot(c, iid)
        assert r.headers["x-snapshot-signed"] == "true"
        signed = r.content
        meta = tensorwasm_tc.inspect_snapshot(signed, signing_key=SIGNING_KEY)
        assert meta["verification"] == "verified"
        r = restore(c, signed)
        assert r.status_code == 201, r.text
        assert call(c, r.json()["instance_id"], "inc") == 4

        tampered = bytearray(signed)
        tampered[-1] ^= 0x01  # the signature trailer
        assert_error(restore(c, bytes(tampered)), 400, "snapshot_signature_invalid")
    # Signed with another key: refused too.
    env["TENSOR_WASM_SNAPSHOT_KEY_FILE"] = str(other_key)
    with running_gateway(tmp_path / "signed-home", env) as srv:
        assert_error(restore(srv.client(), signed), 400, "snapshot_signature_invalid")


def test_signature_settings_are_checked_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a signing key"):
        GatewayConfig.from_env({"TENSOR_WASM_SNAPSHOT_REQUIRE_SIGNATURE": "1"}, home=tmp_path)
    with pytest.raises(ConfigError, match="16 to 4096 bytes"):
        GatewayConfig.from_env({"TENSOR_WASM_SNAPSHOT_KEY": "short"}, home=tmp_path)
    with pytest.raises(ConfigError, match="cannot be read"):
        GatewayConfig.from_env(
            {"TENSOR_WASM_SNAPSHOT_KEY_FILE": str(tmp_path / "missing")}, home=tmp_path
        )
    cfg = GatewayConfig.from_env({"TENSOR_WASM_SNAPSHOT_KEY": SIGNING_KEY.decode()}, home=tmp_path)
    assert cfg.snapshot_key == SIGNING_KEY and not cfg.snapshot_require_signature
    assert SIGNING_KEY.decode() not in repr(cfg)
    assert GatewayConfig.from_env({}, home=tmp_path).max_snapshot_bytes == 5 << 30


# --------------------------------------------------------------------------- concurrency


def test_snapshots_never_tear_concurrent_invokes(
    a: httpx.Client, server: GatewayServer, counter: dict[str, Any]
) -> None:
    iid = new_instance(a, counter["id"])
    stop = threading.Event()
    errors: list[str] = []

    def hammer() -> None:
        c = server.client("tokA", 1)
        while not stop.is_set():
            r = c.post(f"/instances/{iid}/invoke", json={"export": "inc"})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        snaps = [snapshot(a, iid).content for _ in range(8)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    for data in snaps:
        copy = restore(a, data).json()["instance_id"]
        n = call(a, copy, "get")
        assert call(a, copy, "sum") == n * (n + 1) // 2
        assert a.delete(f"/instances/{copy}").status_code == 204


# --------------------------------------------------------------------------- pre-initialisation


def test_preinitialised_function_runs_its_init_once(tmp_path: Path) -> None:
    with running_gateway(tmp_path / "home") as srv:
        c = srv.client()
        fn = srv.deploy(c, wat(COUNTER_WAT), name="pre", init_export="init")
        assert fn["init_export"] == "init"

        def fresh(export: str) -> int:
            r = c.post(f"/functions/{fn['id']}/invoke", json={"export": export})
            assert r.status_code == 200, r.text
            value: int = r.json()["result"][0]
            return value

        # The random bytes were drawn once, at deploy: every fresh instance
        # starts from that image (an init per invoke would draw new ones).
        seed = fresh("seed")
        assert seed != 0
        assert [fresh("seed") for _ in range(3)] == [seed] * 3
        assert [fresh("inits") for _ in range(3)] == [1] * 3
        iid = new_instance(c, fn["id"])
        assert (call(c, iid, "inits"), call(c, iid, "seed")) == (1, seed)
        # A snapshot of it restores its state, not a second init.
        call(c, iid, "inc")
        copy = restore(c, snapshot(c, iid).content).json()["instance_id"]
        assert (call(c, copy, "inits"), call(c, copy, "seed"), call(c, copy, "get")) == (
            1,
            seed,
            1,
        )
        # Instances never share state with the image.
        assert fresh("get") == 0
        srv.stop()
        srv.restart()
        # After a restart the init ran once more, at load: still once per image.
        c = srv.client()
        seed_after = fresh("seed")
        assert [fresh("seed") for _ in range(2)] == [seed_after] * 2
        assert fresh("inits") == 1


def test_init_export_failures_are_deploy_errors(server: GatewayServer, a: httpx.Client) -> None:
    trapping = '(module (func (export "init") unreachable) (func (export "main")))'
    body = {"name": "bad-init", "wasm_b64": b64(wat(trapping)), "init_export": "init"}
    assert_error(a.post("/functions", json=body), 422, "trap")
    body["init_export"] = "nope"
    err = assert_error(a.post("/functions", json=body), 400, "missing_export")
    assert "init_export 'nope'" in err["message"]


# --------------------------------------------------------------------------- audit


def test_snapshot_and_restore_are_audited(
    audit_path: Path, a: httpx.Client, counter: dict[str, Any]
) -> None:
    iid = counted(a, counter["id"], 1)
    r = a.post(f"/instances/{iid}/snapshot")
    assert r.status_code == 200
    snap_rid = r.headers["x-request-id"]
    r = restore(a, r.content, instance_id="audited-copy")
    assert r.status_code == 201
    restore_rid = r.headers["x-request-id"]
    r = restore(a, b"junk")
    bad_rid = r.headers["x-request-id"]
    records = {
        rec["request_id"]: rec for rec in map(json.loads, audit_path.read_text().splitlines())
    }
    snap = records[snap_rid]
    assert snap["action"] == "snapshot_instance"
    assert snap["resource"] == {"function_id": counter["id"], "instance_id": iid, "tenant_id": 1}
    assert snap["outcome"] == {"status_code": 200, "error_kind": None}
    rest = records[restore_rid]
    assert rest["action"] == "restore_instance"
    assert rest["resource"] == {
        "function_id": counter["id"],
        "instance_id": "audited-copy",
        "tenant_id": 1,
    }
    assert rest["outcome"] == {"status_code": 201, "error_kind": None}
    assert records[bad_rid]["outcome"] == {"status_code": 400, "error_kind": "snapshot_invalid"}
    assert os.path.getsize(audit_path) > 0
