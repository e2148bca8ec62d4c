"""The audit log (``TENSOR_WASM_API_AUDIT_LOG=file:...``): one valid JSON line
per state-mutating request, denied ones included (401, 403, 429), with the
documented schema, every action name, no token secret, and whole lines
under 16 concurrent clients."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._gateway import (
    ADD_WAT,
    GatewayServer,
    b64,
    corpus_wasm,
    headers,
    running_gateway,
    wait_job,
    wat,
)

SECRET_A = "tokA-very-secret-value"
SECRET_B = "tokB-very-secret-value"
TOKENS = f"{SECRET_A}:tenant=1,{SECRET_B}:tenant=2"
ACTIONS = {
    "create_function",
    "delete_function",
    "invoke_function",
    "invoke_function_async",
    "create_instance",
    "delete_instance",
    "invoke_instance",
    "snapshot_instance",
    "restore_instance",
}


@dataclass
class Audited:
    server: GatewayServer
    path: Path

    def lines(self) -> list[str]:
        text = self.path.read_text() if self.path.exists() else ""
        assert text == "" or text.endswith("\n"), "a torn last line"
        return text.splitlines()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    base = tmp_path_factory.mktemp("gw-audit")
    path = base / "logs" / "audit.jsonl"
    env = {"TENSOR_WASM_API_TOKENS": TOKENS, "TENSOR_WASM_API_AUDIT_LOG": f"file:{path}"}
    with running_gateway(base / "home", env) as srv:
        yield Audited(srv, path)


def _check_schema(rec: dict[str, Any]) -> None:
    assert set(rec) == {
        "ts_unix_ms",
        "request_id",
        "actor",
        "action",
        "resource",
        "outcome",
        "latency_ms",
        "peer_addr",
    }, rec
    assert isinstance(rec["ts_unix_ms"], int) and rec["ts_unix_ms"] > 1_600_000_000_000
    assert isinstance(rec["request_id"], str) and rec["request_id"]
    assert set(rec["actor"]) == {"kind", "token_id", "scope"}
    assert rec["actor"]["kind"] in ("bearer", "dev", "anonymous")
    assert rec["action"] in ACTIONS
    assert set(rec["resource"]) == {"function_id", "instance_id", "tenant_id"}
    assert set(rec["outcome"]) == {"status_code", "error_kind"}
    assert isinstance(rec["outcome"]["status_code"], int)
    if rec["outcome"]["status_code"] >= 400:
        assert isinstance(rec["outcome"]["error_kind"], str)
    else:
        assert rec["outcome"]["error_kind"] is None
    assert isinstance(rec["latency_ms"], int | float) and rec["latency_ms"] >= 0
    assert re.fullmatch(r"127\.0\.0\.1:\d+", rec["peer_addr"])


def test_every_action_is_recorded_with_the_schema(audited: Audited) -> None:
    srv = audited.server
    a = srv.client(SECRET_A, 1)
    start = len(audited.lines())
    sent: list[tuple[str, int, str]] = []  # (action, status, request id)

    def track(action: str, r: httpx.Response) -> httpx.Response:
        sent.append((action, r.status_code, r.headers["x-request-id"]))
        return r

    r = track(
        "create_function",
        a.post(
            "/functions",
            json={"name": "aud", "wasm_b64": b64(corpus_wasm("stateful_counter"))},
            headers={"X-Request-Id": "audit-create-1"},
        ),
    )
    fn = r.json()["id"]
    track("invoke_function", a.post(f"/functions/{fn}/invoke", json={"export": "inc"}))
    r = track(
        "invoke_function_async", a.post(f"/functions/{fn}/invoke-async", json={"export": "inc"})
    )
    a.get("/functions")  # reads are not audited
    a.get(f"/functions/{fn}")
    wait_job(a, r.json()["job_id"])
    r = track("create_instance", a.post("/instances", json={"function_id": fn}))
    inst = r.json()["instance_id"]
    a.get("/instances")
    track("invoke_instance", a.post(f"/instances/{inst}/invoke", json={"export": "inc"}))
    r = track("snapshot_instance", a.post(f"/instances/{inst}/snapshot"))
    track(
        "restore_instance",
        a.post(
            "/instances/restore",
            content=r.content,
            headers={"content-type": "application/octet-stream"},
        ),
    )
    track("delete_instance", a.delete(f"/instances/{inst}"))
    # A failure is recorded too, with its kind.
    track("invoke_function", a.post(f"/functions/{fn}/invoke", json={"export": "nope"}))
    track("delete_function", a.delete(f"/functions/{fn}"))
    a.get("/healthz")
    a.get("/metrics")

    records = audited.records()[start:]
    assert len(records) == len(sent)
    by_id = {rec["request_id"]: rec for rec in records}
    assert {action for action, _, _ in sent} == ACTIONS
    for action, status, rid in sent:
        rec = by_id[rid]
        _check_schema(rec)
        assert rec["action"] == action
        assert rec["outcome"]["status_code"] == status
        assert rec["actor"]["kind"] == "bearer"
        assert rec["actor"]["scope"] == [1]
        assert re.fullmatch(r"[0-9a-f]{24}", rec["actor"]["token_id"])
        assert rec["resource"]["tenant_id"] == 1
        if action in ("create_function", "delete_function", "invoke_function"):
            assert rec["resource"]["function_id"] == fn
        if action in ("create_instance", "invoke_instance", "delete_instance", "snapshot_instance"):
            assert rec["resource"]["instance_id"] == inst
            assert rec["resource"]["function_id"] == fn
    assert by_id["audit-create-1"]["action"] == "create_function"
    failed = [r for r in records if r["outcome"]["status_code"] == 400]
    assert [r["outcome"]["error_kind"] for r in failed] == ["missing_export"]
    snap = next(r for r in records if r["action"] == "snapshot_instance")
    assert snap["outcome"] == {"status_code": 200, "error_kind": None}
    restored = next(r for r in records if r["action"] == "restore_instance")
    assert restored["outcome"] == {"status_code": 201, "error_kind": None}
    assert restored["resource"]["function_id"] == fn
    assert restored["resource"]["instance_id"] not in (None, inst)
    # The same token always gets the same id.
    assert len({r["actor"]["token_id"] for r in records}) == 1


def test_denied_requests_are_recorded(audited: Audited) -> None:
    srv = audited.server
    a = srv.client(SECRET_A, 1)
    fn = srv.deploy(a, wat(ADD_WAT), name="owned-by-1")["id"]
    start = len(audited.lines())
    url = srv.url

    no_token = httpx.post(f"{url}/functions/{fn}/invoke", json={}, headers=headers(None, 1))
    wrong = httpx.delete(f"{url}/functions/{fn}", headers=headers("not-a-token", 1))
    other = httpx.delete(f"{url}/functions/{fn}", headers=headers(SECRET_B, 2))
    scope = httpx.post(f"{url}/functions/{fn}/invoke", json={}, headers=headers(SECRET_B, 1))
    assert [r.status_code for r in (no_token, wrong, other, scope)] == [401, 401, 403, 403]

    records = audited.records()[start:]
    assert len(records) == 4
    for rec in records:
        _check_schema(rec)
    r0, r1, r2, r3 = records
    assert r0["action"] == "invoke_function"
    assert r0["actor"] == {"kind": "anonymous", "token_id": None, "scope": None}
    assert r0["outcome"] == {"status_code": 401, "error_kind": "unauthorized"}
    # A wrong token is named by its keyed hash, never by value.
    assert r1["action"] == "delete_function"
    assert r1["actor"]["kind"] == "anonymous"
    assert re.fullmatch(r"[0-9a-f]{24}", r1["actor"]["token_id"])
    assert r1["outcome"]["error_kind"] == "unauthorized"
    assert r2["action"] == "delete_function"
    assert r2["actor"]["kind"] == "bearer" and r2["actor"]["scope"] == [2]
    assert r2["resource"] == {"function_id": fn, "instance_id": None, "tenant_id": 2}
    assert r2["outcome"] == {"status_code": 403, "error_kind": "tenant_scope_denied"}
    assert r3["outcome"] == {"status_code": 403, "error_kind": "tenant_scope_denied"}
    # Refused requests still name the resource from the path and the tenant asked for.
    for rec in records:
        assert rec["resource"]["function_id"] == fn
    assert r0["resource"]["tenant_id"] is None  # refused before the tenant was read
    assert r3["resource"]["tenant_id"] == 1
    # The function is still there.
    assert a.get(f"/functions/{fn}").status_code == 200


def test_no_token_secret_in_the_file(audited: Audited) -> None:
    httpx.post(f"{audited.server.url}/functions", json={}, headers=headers("leaked-guess-123", 1))
    text = audited.path.read_text()
    assert text
    for secret in (SECRET_A, SECRET_B, "leaked-guess-123", "tokA", "tokB"):
        assert secret not in text


def test_concurrent_clients_get_one_whole_line_each(audited: Audited) -> None:
    srv = audited.server
    a = srv.client(SECRET_A, 1)
    fn = srv.deploy(a, corpus_wasm("stateful_counter"), name="busy")["id"]
    start = len(audited.lines())
    per_client = 12
    request_ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def client_thread(n: int) -> None:
        try:
            token = SECRET_A if n % 4 else "bogus-token"
            with httpx.Client(base_url=srv.url, headers=headers(token, 1), timeout=30) as c:
                barrier.wait()
                ids = []
                for i in range(per_client):
                    if i % 3 == 0:
                        r = c.post(f"/functions/{fn}/invoke", json={"export": "inc"})
                    elif i % 3 == 1:
                        r = c.post("/instances", json={"function_id": fn})
                        if r.status_code == 201:
                            ids.append(r.headers["x-request-id"])
                            r2 = c.delete(f"/instances/{r.json()['instance_id']}")
                            assert r2.status_code == 204
                            r = r2
                    else:
                        c.get("/functions")  # not audited
                        continue
                    ids.append(r.headers["x-request-id"])
            with lock:
                request_ids.extend(ids)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    lines = audited.lines()[start:]
    records = [json.loads(line) for line in lines]  # every line parses
    assert len(records) == len(request_ids)
    assert sorted(r["request_id"] for r in records) == sorted(request_ids)
    for rec in records:
        _check_schema(rec)
    kinds = {r["outcome"]["status_code"] for r in records}
    assert kinds == {200, 201, 204, 401}


def test_rate_limited_requests_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    env = {
        "TENSOR_WASM_API_TOKENS": TOKENS,
        "TENSOR_WASM_API_AUDIT_LOG": f"file:{path}",
        "TENSOR_WASM_API_RATE_LIMIT_QPS": "0.1",
        "TENSOR_WASM_API_RATE_LIMIT_BURST": "1",
    }
    with running_gateway(tmp_path / "home", env) as srv:
        a = srv.client(SECRET_A, 1)
        body = {"name": "x", "wasm_b64": b64(wat(ADD_WAT))}
        assert a.post("/functions", json=body).status_code == 201
        r = a.post("/functions", json=body)
        assert r.status_code == 429
        records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [rec["outcome"]["status_code"] for rec in records] == [201, 429]
    limited = records[1]
    _check_schema(limited)
    assert limited["action"] == "create_function"
    assert limited["outcome"]["error_kind"] == "rate_limited"
    assert limited["actor"]["kind"] == "bearer"
    assert limited["request_id"] == r.headers["x-request-id"]


def test_audit_none_writes_nothing(tmp_path: Path) -> None:
    env = {"TENSOR_WASM_API_AUDIT_LOG": "none"}
    with running_gateway(tmp_path / "home", env) as srv:
        c = srv.client()
        srv.deploy(c, wat(ADD_WAT))
    assert '"action"' not in srv.log()
    assert not list(tmp_path.rglob("*audit*"))


def test_audit_stdout_sink(tmp_path: Path) -> None:
    with running_gateway(tmp_path / "home", {"TENSOR_WASM_API_AUDIT_LOG": "stdout"}) as srv:
        c = srv.client()
        fn = srv.deploy(c, wat(ADD_WAT))
    lines = [line for line in srv.log().splitlines() if line.startswith("{")]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    _check_schema(rec)
    assert rec["action"] == "create_function"
    assert rec["actor"] == {"kind": "dev", "token_id": None, "scope": "*"}
    assert rec["resource"]["function_id"] == fn["id"]
    assert rec["resource"]["tenant_id"] == 0
