"""The native front of ``tensor-wasm serve`` gives the app's answers.

Two real servers, one with the native front (the default) and one with
``TENSOR_WASM_API_FRONT=python``, get the same functions and the same
sequence of invoke requests — good ones, refusals of every kind, bodies the
front hands to the app — and must give the same statuses, bodies, headers,
audit records and metrics. Then what only the front does: one rate-limit
budget for both sides, the peer address it passes on, who answered in
``/metrics``, a port that is taken, and a SIGTERM during an invoke it runs.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tensorwasm_tc import _core
from tensorwasm_tc.gateway.errors import STATUS

from ._gateway import (
    ADD_WAT,
    MEMORY_BOMB_WAT,
    SERVE_COMMAND,
    SPIN_WAT,
    GatewayServer,
    corpus_wasm,
    guest_wasm,
    headers,
    wat,
)

TOKENS = "tok-one:tenant=1,tok-two:tenant=2,tok-all:tenant=*"

# Outputs of every dtype, made without inputs (so the front encodes them):
# f32 [1.5, nan], i64 [-5], bool [1, 0], bf16 [1.0], f16 [1.0], i8 [-1],
# u8 [1, 2, 255], f64 [-0.25], i32 [123456]; and a line on stdout.
OUTPUTS_WAT = r"""
(module
  (import "tensorwasm" "tensor_from_guest"
    (func $from (param i32 i32 i32 i32 i32) (result i32)))
  (import "tensorwasm" "output_set" (func $out (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\02\00\00\00\00\00\00\00\01\00\00\00\00\00\00\00\03\00\00\00\00\00\00\00")
  (data (i32.const 64) "\00\00\c0\3f\00\00\c0\7f")
  (data (i32.const 72) "\fb\ff\ff\ff\ff\ff\ff\ff")
  (data (i32.const 80) "\01\00\80\3f\00\3c\ff")
  (data (i32.const 88) "\01\02\ff")
  (data (i32.const 96) "\00\00\00\00\00\00\d0\bf\40\e2\01\00")
  (data (i32.const 200) "abcdefghi")
  (data (i32.const 300) "hello \"front\"\n")
  (data (i32.const 320) "\2c\01\00\00\0e\00\00\00")
  ;; $t(dtype, shape_ptr, data_ptr, data_len, name_ptr): a 1-d tensor from
  ;; guest bytes, set as the one-letter output at name_ptr.
  (func $t (param i32 i32 i32 i32 i32)
    (drop (call $out (local.get 4) (i32.const 1)
      (call $from (local.get 0) (i32.const 1) (local.get 1) (local.get 2) (local.get 3)))))
  (func (export "outs") (result f64)
    (call $t (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 8) (i32.const 200))
    (call $t (i32.const 5) (i32.const 8) (i32.const 72) (i32.const 8) (i32.const 201))
    (call $t (i32.const 8) (i32.const 0) (i32.const 80) (i32.const 2) (i32.const 202))
    (call $t (i32.const 2) (i32.const 8) (i32.const 82) (i32.const 2) (i32.const 203))
    (call $t (i32.const 1) (i32.const 8) (i32.const 84) (i32.const 2) (i32.const 204))
    (call $t (i32.const 7) (i32.const 8) (i32.const 86) (i32.const 1) (i32.const 205))
    (call $t (i32.const 6) (i32.const 16) (i32.const 88) (i32.const 3) (i32.const 206))
    (call $t (i32.const 3) (i32.const 8) (i32.const 96) (i32.const 8) (i32.const 207))
    (call $t (i32.const 4) (i32.const 8) (i32.const 104) (i32.const 4) (i32.const 208))
    (drop (call $fd_write (i32.const 1) (i32.const 320) (i32.const 1) (i32.const 330)))
    (f64.div (f64.const 0) (f64.const 0))))
"""


def _start(home: Path, front: str, **env: str) -> GatewayServer:
    return GatewayServer.start(
        home,
        env={
            "TENSOR_WASM_API_FRONT": front,
            "TENSOR_WASM_API_TOKENS": TOKENS,
            "TENSOR_WASM_API_AUDIT_LOG": f"file:{home.parent / 'audit.jsonl'}",
            **env,
        },
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GatewayServer]]:
    servers: dict[str, GatewayServer] = {}
    try:
        for front in ("native", "python"):
            servers[front] = _start(tmp_path_factory.mktemp(front) / "home", front)
        yield servers
    finally:
        for s in servers.values():
            s.stop()


def _deploy_all(server: GatewayServer) -> dict[str, str]:
    one = server.client("tok-one", 1)
    two = server.client("tok-two", 2)
    ids = {
        "add": server.deploy(one, wat(ADD_WAT), name="add")["id"],
        "outs": server.deploy(one, wat(OUTPUTS_WAT), name="outs")["id"],
        "trap": server.deploy(one, corpus_wasm("unreachable"), name="trap")["id"],
        "bomb": server.deploy(
            one, wat(MEMORY_BOMB_WAT), name="bomb", limits={"max_memory_bytes": 1 << 20}
        )["id"],
        "spin": server.deploy(one, wat(SPIN_WAT), name="spin", limits={"deadline_ms": 50})["id"],
        "vadd": server.deploy(one, guest_wasm("vector_add"), name="vadd")["id"],
        "add2": server.deploy(two, wat(ADD_WAT), name="add2")["id"],
    }
    return ids


# (name, token, tenant header, function, body: JSON value, or bytes with a content type)
CASES: list[tuple[str, str | None, str | None, str, Any]] = [
    ("ok", "tok-one", "1", "add", {"export": "add", "args": [2, 3]}),
    ("default export", "tok-one", "1", "add", {}),
    ("wildcard token", "tok-all", "1", "add", {"export": "add", "args": [-1, 1]}),
    ("bool and float args", "tok-one", "1", "add", {"export": "add", "args": [True, 2.0]}),
    ("non-finite arg", "tok-one", "1", "add", {"export": "add", "args": ["NaN", 1]}),
    ("string arg", "tok-one", "1", "add", {"export": "add", "args": ["seven", 1]}),
    ("huge int", "tok-one", "1", "add", {"export": "add", "args": [2**70, 1]}),
    ("null entries", "tok-one", "1", "add", {"export": None, "args": None, "inputs": None}),
    ("missing export", "tok-one", "1", "add", {"export": "nope"}),
    ("wrong arity", "tok-one", "1", "add", {"export": "add", "args": [1]}),
    ("too many args", "tok-one", "1", "add", {"export": "add", "args": list(range(65))}),
    ("extra field", "tok-one", "1", "add", {"export": "add", "extra": 1}),
    ("export not a string", "tok-one", "1", "add", {"export": 5}),
    ("bad encoding", "tok-one", "1", "add", {"output_encoding": "hex"}),
    ("null encoding", "tok-one", "1", "add", {"output_encoding": None}),
    ("not json", "tok-one", "1", "add", (b"{not json", "application/json")),
    ("empty body", "tok-one", "1", "add", (b"", "application/json")),
    ("array body", "tok-one", "1", "add", (b"[]", "application/json")),
    ("text body", "tok-one", "1", "add", (b"{}", "text/plain")),
    ("json suffix type", "tok-one", "1", "add", (b"{}", "application/vnd.api+json")),
    ("chunked body", "tok-one", "1", "add", [b'{"export":', b'"main"}']),
    ("outputs", "tok-one", "1", "outs", {"export": "outs"}),
    ("outputs b64", "tok-one", "1", "outs", {"export": "outs", "output_encoding": "data_b64"}),
    ("trap", "tok-one", "1", "trap", {"export": "always"}),
    ("memory limit", "tok-one", "1", "bomb", {"export": "bomb"}),
    ("deadline", "tok-one", "1", "spin", {"export": "spin"}),
    (
        "tensor inputs",
        "tok-one",
        "1",
        "vadd",
        {
            "export": "run",
            "inputs": {
                "a": {"dtype": "f32", "shape": [2], "data": [1, 2]},
                "b": {"dtype": "f32", "shape": [2], "data": [3, 4]},
            },
        },
    ),
    (
        "inputs as data_b64, outputs as data_b64",
        "tok-one",
        "1",
        "vadd",
        {
            "export": "run",
            "inputs": {
                "a": {"dtype": "f32", "shape": [2], "data_b64": "AACAPwAAAEA="},
                "b": {"dtype": "f32", "shape": [2], "data_b64": "AABAQAAAgEA="},
            },
            "output_encoding": "data_b64",
        },
    ),
    (
        "nested data, broadcast",
        "tok-one",
        "1",
        "vadd",
        {
            "export": "run",
            "inputs": {
                "a": {"dtype": "f64", "shape": [2, 2], "data": [[1, 2.5], ["-inf", 4]]},
                "b": {"dtype": "f64", "shape": [2], "data": [0.5, "NaN"]},
            },
        },
    ),
    (
        "integer inputs",
        "tok-one",
        "1",
        "vadd",
        {
            "export": "run",
            "inputs": {
                "a": {"dtype": "i8", "shape": [3], "data": [127, -128, 5]},
                "b": {"dtype": "i8", "shape": [3], "data": [1, -1, 0]},
            },
        },
    ),
    (
        "f16 and bf16 inputs",
        "tok-one",
        "1",
        "vadd",
        {
            "export": "run",
            "inputs": {
                "a": {"dtype": "bf16", "shape": [2], "data": [1.0078125, 3.3]},
                "b": {"dtype": "bf16", "shape": [2], "data": [0.1, -2]},
            },
        },
    ),
    (
        "bool leaves in a float tensor",
        "tok-one",
        "1",
        "vadd",
        {"export": "run", "inputs": {"a": {"dtype": "f32", "shape": [1], "data": [True]}}},
    ),
    (
        "integer out of range",
        "tok-one",
        "1",
        "vadd",
        {"export": "run", "inputs": {"a": {"dtype": "u8", "shape": [1], "data": [256]}}},
    ),
    (
        "wrong element count",
        "tok-one",
        "1",
        "vadd",
        {"export": "run", "inputs": {"a": {"dtype": "f32", "shape": [3], "data": [1, 2]}}},
    ),
    (
        "bad base64",
        "tok-one",
        "1",
        "vadd",
        {"export": "run", "inputs": {"a": {"dtype": "f32", "shape": [1], "data_b64": "@@@@"}}},
    ),
    (
        "numpy dtype name",
        "tok-one",
        "1",
        "vadd",
        {"export": "run", "inputs": {"a": {"dtype": "float32", "shape": [1], "data": [1]}}},
    ),
    ("no token", None, "1", "add", {}),
    ("wrong token", "tok-zero", "1", "add", {}),
    ("token of another tenant", "tok-two", "1", "add", {}),
    ("no tenant header", "tok-one", None, "add", {}),
    ("bad tenant header", "tok-one", "one", "add", {}),
    ("function of another tenant", "tok-all", "2", "add", {}),
    ("unknown function", "tok-one", "1", "missing", {}),
]


def _send(
    server: GatewayServer,
    ids: dict[str, str],
    token: str | None,
    tenant: str | None,
    fn: str,
    body: Any,
) -> httpx.Response:
    fid = ids.get(fn, "fn_000000000000000000000000")
    with httpx.Client(base_url=server.url, headers=headers(token, tenant), timeout=30) as c:
        url = f"/functions/{fid}/invoke"
        if isinstance(body, tuple):
            return c.post(url, content=body[0], headers={"Content-Type": body[1]})
        if isinstance(body, list) and body and isinstance(body[0], bytes):
            # An iterator: sent chunked, without Content-Length.
            return c.post(url, content=iter(body), headers={"Content-Type": "application/json"})
        return c.post(url, json=body)


def _normalise(text: str, ids: dict[str, str]) -> Any:
    for name, fid in ids.items():
        text = text.replace(fid, f"<{name}>")
    # How long a call ran past its deadline varies from run to run.
    text = re.sub(r"stopped after \d+ ms", "stopped after <n> ms", text)
    body = json.loads(text)
    if isinstance(body, dict) and "duration_ms" in body:
        assert isinstance(body["duration_ms"], float | int) and body["duration_ms"] >= 0
        body["duration_ms"] = "<ms>"
    return body


def _samples(server: GatewayServer) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_the_front_gives_the_apps_answers(pair: dict[str, GatewayServer]) -> None:
    ids = {front: _deploy_all(s) for front, s in pair.items()}
    answers: dict[str, list[Any]] = {"native": [], "python": []}
    for name, token, tenant, fn, body in CASES:
        for front, server in pair.items():
            r = _send(server, ids[front], token, tenant, fn, body)
            assert r.headers.get("x-request-id"), (name, front)
            answers[front].append(
                (
                    name,
                    r.status_code,
                    r.headers.get("content-type"),
                    r.headers.get("www-authenticate"),
                    _normalise(r.text, ids[front]),
                )
            )
    for native, python in zip(answers["native"], answers["python"], strict=True):
        assert native == python
    by_name = {a[0]: a for a in answers["native"]}
    assert by_name["ok"][4]["result"] == [5]
    assert by_name["null entries"][4]["result"] == [7]
    assert by_name["outputs"][4]["outputs"]["a"] == {
        "dtype": "f32",
        "shape": [2],
        "data": [1.5, "nan"],
    }
    assert by_name["outputs"][4]["result"] == ["nan"]
    assert by_name["outputs"][4]["stdout"] == 'hello "front"\n'
    assert [by_name[n][1] for n in ("trap", "memory limit", "deadline")] == [422, 422, 504]

    # The native server answered the invokes it could itself.
    native = _samples(pair["native"])
    assert native['tensor_wasm_front_requests_total{handled_by="front"}'] >= 18
    assert native['tensor_wasm_front_requests_total{handled_by="app"}'] >= 20
    python = _samples(pair["python"])
    assert not any(k.startswith("tensor_wasm_front_requests") for k in python)
    invoke = 'route="/functions/{id}/invoke"'
    for key, value in python.items():
        if key.startswith("tensor_wasm_http_requests_total") and invoke in key:
            assert native.get(key) == value, key
    assert (
        native["tensor_wasm_instance_spawns_total"] == python["tensor_wasm_instance_spawns_total"]
    )

    # The same audit records, but for times, ids and the token-id key.
    def records(server: GatewayServer) -> list[dict[str, Any]]:
        path = server.home.parent / "audit.jsonl"
        out = []
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec["action"] != "invoke_function":
                continue
            assert rec["peer_addr"].startswith("127.0.0.1:")
            assert isinstance(rec["latency_ms"], float | int)
            for key in ("ts_unix_ms", "request_id", "latency_ms", "peer_addr"):
                del rec[key]
            rec["actor"]["token_id"] = rec["actor"]["token_id"] is not None
            fid = rec["resource"]["function_id"]
            names = {v: k for k, v in ids[front_of[id(server)]].items()}
            rec["resource"]["function_id"] = names.get(fid, fid)
            out.append(rec)
        return out

    front_of = {id(s): f for f, s in pair.items()}
    assert records(pair["native"]) == records(pair["python"])
    assert len(records(pair["native"])) == len(CASES)


def test_the_front_shares_one_rate_limit_budget(tmp_path: Path) -> None:
    server = _start(
        tmp_path / "home",
        "native",
        TENSOR_WASM_API_RATE_LIMIT_QPS="0.01",
        TENSOR_WASM_API_RATE_LIMIT_BURST="3",
    )
    try:
        c = server.client("tok-one", 1)
        fid = server.deploy(c, wat(ADD_WAT), name="add")["id"]  # 1st token (app)
        r = c.post(f"/functions/{fid}/invoke", json={})  # 2nd (front)
        assert r.status_code == 200 and r.headers["ratelimit-remaining"] == "1"
        r = c.get("/functions")  # 3rd (app)
        assert r.status_code == 200 and r.headers["ratelimit-remaining"] == "0"
        refused = c.post(f"/functions/{fid}/invoke", json={})  # the front refuses
        assert refused.status_code == 429
        assert refused.json() == {
            "error": {"kind": "rate_limited", "message": "rate limit exceeded for this token"}
        }
        assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-limit"] == "3"
        assert c.get("/functions").status_code == 429  # and so does the app
        # Another token has its own bucket.
        other = server.client("tok-all", 1)
        assert other.post(f"/functions/{fid}/invoke", json={}).status_code == 200
        samples = _samples(server)
        assert samples["tensor_wasm_rate_limited_total"] == 2
    finally:
        server.stop()
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    limited = [x for x in lines if x["outcome"]["status_code"] == 429]
    assert [x["action"] for x in limited] == ["invoke_function"]
    assert limited[0]["outcome"]["error_kind"] == "rate_limited"
    assert limited[0]["actor"]["kind"] == "bearer" and limited[0]["actor"]["scope"] == [1]


def test_the_app_sees_the_clients_address_not_one_it_claims(tmp_path: Path) -> None:
    server = _start(tmp_path / "home", "native")
    try:
        spoofer = server.client("tok-one", 1)
        spoofer.headers["X-TensorWasm-Peer"] = "203.0.113.9:1"
        r = spoofer.post("/functions", json={"name": "x", "wasm_b64": "AGFzbQEAAAA="})
        assert r.status_code == 201, r.text  # answered by the app
        r = spoofer.post(f"/functions/{r.json()['id']}/invoke", json={})
        assert r.json()["error"]["kind"] == "missing_export"  # answered by the front
    finally:
        server.stop()
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [x["action"] for x in lines] == ["create_function", "invoke_function"]
    for line in lines:
        assert line["peer_addr"].startswith("127.0.0.1:"), line


def test_a_deleted_function_is_no_longer_served_and_a_restart_serves_it_again(
    tmp_path: Path,
) -> None:
    server = _start(tmp_path / "home", "native")
    try:
        c = server.client("tok-one", 1)
        keep = server.deploy(c, wat(ADD_WAT), name="keep")["id"]
        gone = server.deploy(c, wat(ADD_WAT), name="gone")["id"]
        assert c.post(f"/functions/{gone}/invoke", json={}).status_code == 200
        assert c.delete(f"/functions/{gone}").status_code == 204
        r = c.post(f"/functions/{gone}/invoke", json={})
        assert r.status_code == 404 and r.json()["error"]["kind"] == "not_found"
        server.stop()
        server = _start(tmp_path / "home", "native")
        c = server.client("tok-one", 1)
        before = _samples(server).get('tensor_wasm_front_requests_total{handled_by="front"}', 0)
        r = c.post(f"/functions/{keep}/invoke", json={"export": "add", "args": [40, 2]})
        assert r.status_code == 200 and r.json()["result"] == [42]
        after = _samples(server)['tensor_wasm_front_requests_total{handled_by="front"}']
        assert after == before + 1
    finally:
        server.stop()


def test_a_taken_port_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    import subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [*SERVE_COMMAND, "--port", str(port), "--home", str(tmp_path / "home")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**_clean_env(), "TENSOR_WASM_TENSORCAST": "off"},
        )
    assert proc.returncode == 1, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("TENSOR_WASM_API_")}


def test_sigterm_lets_an_invoke_the_front_runs_finish(tmp_path: Path) -> None:
    server = _start(tmp_path / "home", "native")
    c = server.client("tok-one", 1)
    fid = server.deploy(c, wat(SPIN_WAT), name="spin", limits={"deadline_ms": 1500})["id"]
    result: list[httpx.Response] = []

    def call() -> None:
        with httpx.Client(base_url=server.url, headers=headers("tok-one", 1), timeout=30) as cl:
            result.append(cl.post(f"/functions/{fid}/invoke", json={"export": "spin"}))

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.5)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    t.join(timeout=30)
    code = server.stop()
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), server.log()
    assert result and result[0].status_code == 504
    assert result[0].json()["error"]["kind"] == "invoke_timeout"
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert lines[-1]["action"] == "invoke_function"
    assert lines[-1]["outcome"] == {"status_code": 504, "error_kind": "invoke_timeout"}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_the_fronts_status_table_agrees_with_the_apps() -> None:
    for kind, status in _core.front_status_table():
        assert STATUS[kind] == status, kind


@pytest.mark.parametrize("front", ["native", "python"])
def test_a_body_that_never_arrives_is_timed_out_and_audited(tmp_path: Path, front: str) -> None:
    server = _start(tmp_path / "home", front, TENSOR_WASM_API_REQUEST_TIMEOUT_S="0.5")
    try:
        fid = server.deploy(server.client("tok-one", 1), wat(ADD_WAT), name="add")["id"]
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(
                (
                    f"POST /functions/{fid}/invoke HTTP/1.1\r\nHost: x\r\n"
                    "Authorization: Bearer tok-one\r\nX-TensorWasm-Tenant: 1\r\n"
                    "Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{}"
                ).encode()
            )
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 504"), reply[:200]
        assert b'"request_timeout"' in reply
        assert b"x-request-id" in reply.lower()
    finally:
        server.stop()
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert lines[-1]["action"] == "invoke_function"
    assert lines[-1]["outcome"] == {"status_code": 504, "error_kind": "request_timeout"}
