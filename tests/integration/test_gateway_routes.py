"""Every route of `tensor-wasm serve` against a real server: deploy, list,
show, delete, invoke (scalars and tensors), invoke-async and jobs,
persistent instances, probes, metrics, request ids and the error envelope
of every failure the spec names."""

from __future__ import annotations

import math
import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._gateway import (
    ADD_WAT,
    MEMORY_BOMB_WAT,
    SPIN_WAT,
    GatewayServer,
    assert_error,
    b64,
    corpus_wasm,
    guest_wasm,
    parse_metrics,
    running_gateway,
    wait_job,
    wat,
)

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    home = tmp_path_factory.mktemp("gw-routes") / "home"
    with running_gateway(home, {"TENSOR_WASM_API_MAX_BODY_BYTES": str(MAX_BODY)}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: GatewayServer) -> httpx.Client:
    return server.client()


@pytest.fixture(scope="module")
def add_fn(server: GatewayServer, client: httpx.Client) -> dict[str, Any]:
    return server.deploy(client, wat(ADD_WAT), name="adder")


@pytest.fixture(scope="module")
def vector_add(server: GatewayServer, client: httpx.Client) -> dict[str, Any]:
    return server.deploy(client, guest_wasm("vector_add"), name="vector_add")


@pytest.fixture(scope="module")
def counter_fn(server: GatewayServer, client: httpx.Client) -> dict[str, Any]:
    return server.deploy(client, corpus_wasm("stateful_counter"), name="counter")


def _f32_b64(values: list[float]) -> str:
    return b64(struct.pack(f"<{len(values)}f", *values))


# --------------------------------------------------------------------------- probes


def test_healthz_and_readyz(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.headers["x-request-id"]

    r = client.get("/readyz")
    assert r.status_code == 200
    # The suite runs gateways without TensorCast (TENSOR_WASM_TENSORCAST=off).
    assert r.json() == {"status": "ready", "tensorcast": {"mode": "off", "state": "off"}}


def test_request_id_is_echoed_or_generated(client: httpx.Client) -> None:
    r = client.get("/healthz", headers={"X-Request-Id": "my-req.42"})
    assert r.headers["x-request-id"] == "my-req.42"

    generated = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", g) for g in generated)

    # A malformed id is replaced, never reflected.
    r = client.get("/healthz", headers={"X-Request-Id": "bad id; <script>"})
    assert r.headers["x-request-id"] != "bad id; <script>"


def test_every_error_response_has_a_request_id(client: httpx.Client) -> None:
    for r in (
        client.get("/no/such/route"),
        client.get("/functions/fn_missing"),
        client.post("/functions", content=b"{", headers={"content-type": "application/json"}),
    ):
        assert r.status_code >= 400
        assert r.headers["x-request-id"]


# --------------------------------------------------------------------------- functions


def test_deploy_list_show_delete(server: GatewayServer, client: httpx.Client) -> None:
    fn = server.deploy(client, wat(ADD_WAT), name="crud.fn-1")
    assert fn["name"] == "crud.fn-1"
    assert fn["tenant_id"] == 0
    assert fn["id"].startswith("fn_")
    assert set(fn["exports"]) == {"main", "add"}
    assert fn["exports"]["add"] == [["i32", "i32"], ["i32"]]
    assert fn["artifacts"] == {}
    assert fn["init_export"] is None

    listed = client.get("/functions")
    assert listed.status_code == 200
    assert fn["id"] in {f["id"] for f in listed.json()["functions"]}

    shown = client.get(f"/functions/{fn['id']}")
    assert shown.status_code == 200
    assert shown.json() == fn

    deleted = client.delete(f"/functions/{fn['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""

    assert_error(client.get(f"/functions/{fn['id']}"), 404, "not_found")
    assert_error(client.delete(f"/functions/{fn['id']}"), 404, "not_found")
    assert_error(client.post(f"/functions/{fn['id']}/invoke", json={}), 404, "not_found")
    assert fn["id"] not in {f["id"] for f in client.get("/functions").json()["functions"]}


def test_deploy_with_limits_and_init_export(server: GatewayServer, client: httpx.Client) -> None:
    fn = server.deploy(
        client,
        corpus_wasm("stateful_counter"),
        name="counter-init",
        limits={"max_memory_bytes": 1 << 20, "deadline_ms": 1000},
        init_export="inc",
    )
    assert fn["limits"] == {"max_memory_bytes": 1 << 20, "deadline_ms": 1000}
    assert fn["init_export"] == "inc"
    # The init export ran once, at deploy; every fresh instance starts from
    # the state it left (one increment), never from a second run.
    for _ in range(2):
        r = client.post(f"/functions/{fn['id']}/invoke", json={"export": "get"})
        assert r.status_code == 200, r.text
        assert r.json()["result"] == [1]


def test_invoke_with_args_and_default_export(client: httpx.Client, add_fn: dict[str, Any]) -> None:
    r = client.post(f"/functions/{add_fn['id']}/invoke", json={"export": "add", "args": [2, 40]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["function_id"] == add_fn["id"]
    assert body["result"] == [42]
    assert body["outputs"] == {}
    assert body["stdout"] == ""
    assert isinstance(body["duration_ms"], float | int) and body["duration_ms"] >= 0

    # No export named: `_start`, then `main`.
    r = client.post(f"/functions/{add_fn['id']}/invoke", json={})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == [7]


def test_invoke_with_tensor_inputs_data_and_data_b64(
    client: httpx.Client, vector_add: dict[str, Any]
) -> None:
    url = f"/functions/{vector_add['id']}/invoke"
    body = {
        "export": "run",
        "inputs": {
            "a": {"dtype": "f32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
            "b": {"dtype": "f32", "shape": [2, 2], "data_b64": _f32_b64([10, 20, 30, 40])},
        },
    }
    r = client.post(url, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["result"] == [0]
    assert out["outputs"] == {
        "c": {"dtype": "f32", "shape": [2, 2], "data": [11.0, 22.0, 33.0, 44.0]}
    }

    r = client.post(url, json={**body, "output_encoding": "data_b64"})
    assert r.status_code == 200, r.text
    c = r.json()["outputs"]["c"]
    assert c["dtype"] == "f32" and c["shape"] == [2, 2]
    assert c["data_b64"] == _f32_b64([11, 22, 33, 44])


def test_invoke_softmax_rows_guest(server: GatewayServer, client: httpx.Client) -> None:
    fn = server.deploy(client, guest_wasm("softmax_rows"), name="softmax")
    r = client.post(
        f"/functions/{fn['id']}/invoke",
        json={
            "export": "run",
            "inputs": {"x": {"dtype": "f64", "shape": [2, 3], "data": [1, 2, 3, 0, 0, 0]}},
        },
    )
    assert r.status_code == 200, r.text
    y = r.json()["outputs"]["y"]
    assert y["dtype"] == "f64" and y["shape"] == [2, 3]
    rows = [y["data"][:3], y["data"][3:]]
    for row in rows:
        assert math.isclose(sum(row), 1.0, rel_tol=1e-12)
    assert all(math.isclose(v, 1 / 3) for v in rows[1])
    assert rows[0][0] < rows[0][1] < rows[0][2]


def test_invoke_async_and_job_polling(client: httpx.Client, add_fn: dict[str, Any]) -> None:
    r = client.post(
        f"/functions/{add_fn['id']}/invoke-async", json={"export": "add", "args": [20, 22]}
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert job_id.startswith("job_")

    job = wait_job(client, job_id)
    assert job["id"] == job_id
    assert job["function_id"] == add_fn["id"]
    assert job["status"] == "completed"
    assert job["result"] == [42]
    assert job["outputs"] == {}
    assert job["finished_unix_ms"] >= job["created_unix_ms"]
    assert "error" not in job


def test_failed_async_job_carries_the_error(server: GatewayServer, client: httpx.Client) -> None:
    fn = server.deploy(client, corpus_wasm("unreachable"), name="trapper-async")
    r = client.post(f"/functions/{fn['id']}/invoke-async", json={"export": "always"})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["kind"] == "trap"
    assert "result" not in job


def test_unknown_job_is_not_found(client: httpx.Client) -> None:
    assert_error(client.get("/jobs/job_does_not_exist"), 404, "not_found")


# --------------------------------------------------------------------------- instances


def test_instance_keeps_state_between_invokes(
    client: httpx.Client, counter_fn: dict[str, Any]
) -> None:
    r = client.post("/instances", json={"function_id": counter_fn["id"]})
    assert r.status_code == 201, r.text
    inst = r.json()
    iid = inst["instance_id"]
    assert iid.startswith("in_")
    assert inst["function_id"] == counter_fn["id"]
    assert inst["tenant_id"] == 0

    listed = client.get("/instances").json()["instances"]
    assert iid in {i["instance_id"] for i in listed}

    results = []
    for _ in range(3):
        r = client.post(f"/instances/{iid}/invoke", json={"export": "inc"})
        assert r.status_code == 200, r.text
        assert r.json()["instance_id"] == iid
        assert r.json()["function_id"] == counter_fn["id"]
        results.append(r.json()["result"])
    assert results == [[1], [2], [3]]
    r = client.post(f"/instances/{iid}/invoke", json={"export": "add", "args": [10]})
    assert r.json()["result"] == [13]

    # A function invoke runs on a fresh instance every time.
    for _ in range(2):
        r = client.post(f"/functions/{counter_fn['id']}/invoke", json={"export": "inc"})
        assert r.json()["result"] == [1]

    assert client.delete(f"/instances/{iid}").status_code == 204
    assert_error(client.post(f"/instances/{iid}/invoke", json={"export": "inc"}), 404, "not_found")
    assert_error(client.delete(f"/instances/{iid}"), 404, "not_found")
    listed = client.get("/instances").json()["instances"]
    assert iid not in {i["instance_id"] for i in listed}


def test_instance_survives_a_trap(client: httpx.Client, counter_fn: dict[str, Any]) -> None:
    iid = client.post("/instances", json={"function_id": counter_fn["id"]}).json()["instance_id"]
    assert_error(
        client.post(f"/instances/{iid}/invoke", json={"export": "inc_then_trap"}), 422, "trap"
    )
    r = client.post(f"/instances/{iid}/invoke", json={"export": "get"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == [1]
    assert client.delete(f"/instances/{iid}").status_code == 204


def test_deleting_a_function_closes_its_instances(
    server: GatewayServer, client: httpx.Client
) -> None:
    fn = server.deploy(client, corpus_wasm("stateful_counter"), name="short-lived")
    iid = client.post("/instances", json={"function_id": fn["id"]}).json()["instance_id"]
    assert client.delete(f"/functions/{fn['id']}").status_code == 204
    assert_error(client.post(f"/instances/{iid}/invoke", json={"export": "inc"}), 404, "not_found")


def test_instance_of_unknown_function_is_not_found(client: httpx.Client) -> None:
    assert_error(client.post("/instances", json={"function_id": "fn_nope"}), 404, "not_found")


def test_snapshot_and_restore_round_trip(client: httpx.Client, counter_fn: dict[str, Any]) -> None:
    iid = client.post("/instances", json={"function_id": counter_fn["id"]}).json()["instance_id"]
    assert client.post(f"/instances/{iid}/invoke", json={"export": "inc"}).status_code == 200
    r = client.post(f"/instances/{iid}/snapshot")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert_error(client.post("/instances/snap_nope/snapshot"), 404, "not_found")
    assert_error(
        client.post(
            "/instances/restore",
            content=b"\x00snapshot",
            headers={"content-type": "application/octet-stream"},
        ),
        400,
        "snapshot_invalid",
    )
    restored = client.post(
        "/instances/restore",
        content=r.content,
        headers={"content-type": "application/octet-stream"},
    )
    assert restored.status_code == 201, restored.text
    copy = restored.json()["instance_id"]
    r = client.post(f"/instances/{copy}/invoke", json={"export": "get"})
    assert r.json()["result"] == [1]
    for gone in (iid, copy):
        assert client.delete(f"/instances/{gone}").status_code == 204


# --------------------------------------------------------------------------- metrics


def test_metrics_names_templates_and_build_info(
    server: GatewayServer, client: httpx.Client, add_fn: dict[str, Any]
) -> None:
    client.post(f"/functions/{add_fn['id']}/invoke", json={"export": "add", "args": [1, 2]})
    client.get("/definitely/not/a/route/12345")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in (
        "tensor_wasm_http_requests_total",
        "tensor_wasm_http_request_duration_seconds",
        "tensor_wasm_http_requests_in_flight",
        "tensor_wasm_active_instances",
        "tensor_wasm_instance_spawns_total",
        "tensor_wasm_kernel_dispatches_total",
        "tensor_wasm_jobs_in_flight",
        "tensor_wasm_rate_limited_total",
        "tensor_wasm_build_info",
        "tensor_wasm_tensorcast_up",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ):
        assert f"# TYPE {name} " in text, name

    samples = parse_metrics(text)
    assert samples['tensor_wasm_tensorcast_up{mode="off"}'] == 0.0  # the suite runs without it
    invoke = (
        'tensor_wasm_http_requests_total{method="POST",route="/functions/{id}/invoke",status="200"}'
    )
    assert samples[invoke] >= 1
    assert (
        samples['tensor_wasm_http_requests_total{method="GET",route="unknown",status="404"}'] >= 1
    )
    # Raw paths never become labels.
    assert add_fn["id"] not in text
    assert "/definitely/not" not in text
    build = [v for k, v in samples.items() if k.startswith("tensor_wasm_build_info{")]
    assert build == [1.0]
    for label in ("version", "git_sha", "rustc_version", "profile", "target"):
        assert re.search(rf'tensor_wasm_build_info{{[^}}]*\b{label}="', text), label
    assert samples["tensor_wasm_instance_spawns_total"] >= 1


def test_kernel_dispatch_counter_appears_after_a_guest_calls_an_op(
    tmp_path: Path,
) -> None:
    # A fresh server, so no other test's ops are counted in it.
    with running_gateway(tmp_path / "home") as srv:
        c = srv.client()
        key = 'tensor_wasm_kernel_dispatches_total{device="cpu",op="add"}'
        assert parse_metrics(c.get("/metrics").text).get(key, 0.0) == 0.0
        fn = srv.deploy(c, guest_wasm("vector_add"))
        tensor = {"dtype": "i32", "shape": [3], "data": [1, 2, 3]}
        r = c.post(
            f"/functions/{fn['id']}/invoke",
            json={"export": "run", "inputs": {"a": tensor, "b": tensor}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["outputs"]["c"]["data"] == [2, 4, 6]
        assert parse_metrics(c.get("/metrics").text)[key] == 1.0

        # The live gauges follow instances.
        inst = c.post("/instances", json={"function_id": fn["id"]}).json()
        assert parse_metrics(c.get("/metrics").text)["tensor_wasm_active_instances"] == 1.0
        c.delete(f"/instances/{inst['instance_id']}")
        assert parse_metrics(c.get("/metrics").text)["tensor_wasm_active_instances"] == 0.0


# --------------------------------------------------------------------------- errors


def test_invalid_json(client: httpx.Client, add_fn: dict[str, Any]) -> None:
    for url in ("/functions", f"/functions/{add_fn['id']}/invoke", "/instances"):
        r = client.post(url, content=b'{"name": ', headers={"content-type": "application/json"})
        assert_error(r, 400, "invalid_json")


def test_validation_errors_use_the_envelope_never_fastapi_422(
    client: httpx.Client, add_fn: dict[str, Any]
) -> None:
    cases = [
        ("/functions", {"wasm_b64": "AAAA"}),  # name missing
        ("/functions", {"name": 3, "wasm_b64": "AAAA"}),
        ("/functions", {"name": "x", "wasm_b64": "AAAA", "unexpected": 1}),
        ("/functions", {"name": "x", "wasm_b64": "AAAA", "limits": {"deadline_ms": "soon"}}),
        (f"/functions/{add_fn['id']}/invoke", {"args": "not a list"}),
        (f"/functions/{add_fn['id']}/invoke", {"output_encoding": "hex"}),
        ("/instances", {}),
    ]
    for url, body in cases:
        r = client.post(url, json=body)
        err = assert_error(r, 400, "invalid_args")
        assert "detail" not in r.json()
        assert err["message"]
    # A malformed tensor in inputs is invalid_tensor, from the model too.
    r = client.post(
        f"/functions/{add_fn['id']}/invoke", json={"inputs": {"a": {"dtype": "f99", "shape": []}}}
    )
    assert "inputs.a.dtype" in assert_error(r, 400, "invalid_tensor")["message"]


def test_wrong_content_type_is_415(client: httpx.Client, add_fn: dict[str, Any]) -> None:
    r = client.post(
        f"/functions/{add_fn['id']}/invoke",
        content=b"export=run",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert (
        "Content-Type: application/json"
        in assert_error(r, 415, "unsupported_media_type")["message"]
    )


def test_out_of_range_limits_are_invalid_args(client: httpx.Client) -> None:
    for limits in ({"max_memory_bytes": 10}, {"deadline_ms": 0}, {"deadline_ms": 10**9}):
        r = client.post(
            "/functions", json={"name": "x", "wasm_b64": b64(wat(ADD_WAT)), "limits": limits}
        )
        assert_error(r, 400, "invalid_args")


def test_invalid_name(client: httpx.Client) -> None:
    for name in ("", "has space", "-leading-dash", "x" * 129, "slash/name", "ünicode"):
        r = client.post("/functions", json={"name": name, "wasm_b64": b64(wat(ADD_WAT))})
        assert_error(r, 400, "invalid_name")


def test_invalid_base64(client: httpx.Client, vector_add: dict[str, Any]) -> None:
    assert_error(
        client.post("/functions", json={"name": "x", "wasm_b64": "not base64!!"}),
        400,
        "invalid_base64",
    )
    r = client.post(
        f"/functions/{vector_add['id']}/invoke",
        json={
            "export": "run",
            "inputs": {
                "a": {"dtype": "f32", "shape": [1], "data_b64": "@@@"},
                "b": {"dtype": "f32", "shape": [1], "data": [1]},
            },
        },
    )
    assert_error(r, 400, "invalid_base64")


def test_invalid_wasm(client: httpx.Client) -> None:
    for blob in (b"hello, world", b"\0asm\x01\0\0\0truncated garbage", b""):
        r = client.post("/functions", json={"name": "x", "wasm_b64": b64(blob)})
        err = assert_error(r, 400, "invalid_wasm")
        assert "/" not in err["message"].replace("\\0asm", "")  # no host paths


def test_missing_export(
    server: GatewayServer, client: httpx.Client, add_fn: dict[str, Any]
) -> None:
    r = client.post(f"/functions/{add_fn['id']}/invoke", json={"export": "nope"})
    assert_error(r, 400, "missing_export")
    r = client.post(
        "/functions", json={"name": "x", "wasm_b64": b64(wat(ADD_WAT)), "init_export": "nope"}
    )
    assert_error(r, 400, "missing_export")
    # Neither `_start` nor `main`, and no export named.
    fn = server.deploy(client, corpus_wasm("unreachable"), name="no-default")
    assert_error(client.post(f"/functions/{fn['id']}/invoke", json={}), 400, "missing_export")


def test_wrong_argument_count_is_invalid_args(client: httpx.Client, add_fn: dict[str, Any]) -> None:
    r = client.post(f"/functions/{add_fn['id']}/invoke", json={"export": "add", "args": [1]})
    assert_error(r, 400, "invalid_args")


def test_too_many_args(
    client: httpx.Client, add_fn: dict[str, Any], counter_fn: dict[str, Any]
) -> None:
    r = client.post(
        f"/functions/{add_fn['id']}/invoke", json={"export": "add", "args": list(range(65))}
    )
    assert_error(r, 400, "too_many_args")
    iid = client.post("/instances", json={"function_id": counter_fn["id"]}).json()["instance_id"]
    r = client.post(f"/instances/{iid}/invoke", json={"export": "add", "args": [0] * 65})
    assert_error(r, 400, "too_many_args")
    client.delete(f"/instances/{iid}")


def test_not_found_for_unknown_routes_and_ids(client: httpx.Client) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.post("/functions/fn_x/unknown-action", json={}), 404, "not_found")
    assert_error(client.get("/functions/fn_unknown"), 404, "not_found")
    assert_error(client.delete("/functions/fn_unknown"), 404, "not_found")
    assert_error(client.post("/functions/fn_unknown/invoke", json={}), 404, "not_found")
    assert_error(client.post("/functions/fn_unknown/invoke-async", json={}), 404, "not_found")
    assert_error(client.post("/instances/in_unknown/invoke", json={}), 404, "not_found")
    assert_error(client.delete("/instances/in_unknown"), 404, "not_found")
    assert_error(client.get("/jobs/job_unknown"), 404, "not_found")


def test_method_not_allowed(client: httpx.Client) -> None:
    assert_error(client.put("/functions", json={}), 405, "method_not_allowed")


def test_body_too_large(client: httpx.Client) -> None:
    big = {"name": "big", "wasm_b64": "A" * (MAX_BODY + 16)}
    assert_error(client.post("/functions", json=big), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for _ in range(8):
            yield b" " * (MAX_BODY // 4)

    r = client.post("/functions", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "body_too_large")
    # The server is fine afterwards.
    assert client.get("/healthz").status_code == 200


def test_trap_is_422(server: GatewayServer, client: httpx.Client) -> None:
    fn = server.deploy(client, corpus_wasm("unreachable"), name="trapper")
    err = assert_error(
        client.post(f"/functions/{fn['id']}/invoke", json={"export": "always"}), 422, "trap"
    )
    assert "Traceback" not in err["message"]
    r = client.post(f"/functions/{fn['id']}/invoke", json={"export": "if_negative", "args": [5]})
    assert r.json()["result"] == [15]


def test_memory_limit_is_422(server: GatewayServer, client: httpx.Client) -> None:
    fn = server.deploy(
        client, wat(MEMORY_BOMB_WAT), name="bomb", limits={"max_memory_bytes": 1 << 20}
    )
    assert_error(
        client.post(f"/functions/{fn['id']}/invoke", json={"export": "bomb"}), 422, "memory_limit"
    )


def test_invoke_timeout_is_504(server: GatewayServer, client: httpx.Client) -> None:
    fn = server.deploy(client, wat(SPIN_WAT), name="spinner", limits={"deadline_ms": 100})
    assert_error(
        client.post(f"/functions/{fn['id']}/invoke", json={"export": "spin"}),
        504,
        "invoke_timeout",
    )
    # The same on a persistent instance; the server keeps serving.
    iid = client.post("/instances", json={"function_id": fn["id"]}).json()["instance_id"]
    assert_error(
        client.post(f"/instances/{iid}/invoke", json={"export": "spin"}), 504, "invoke_timeout"
    )
    client.delete(f"/instances/{iid}")
    assert client.get("/readyz").status_code == 200


def test_artifacts_without_a_store_are_503(client: httpx.Client) -> None:
    r = client.post(
        "/functions",
        json={"name": "mlp", "wasm_b64": b64(guest_wasm("mlp")), "artifacts": {"weights": "k"}},
    )
    assert_error(r, 503, "artifact_store_unavailable")


def test_invoke_concurrency_cap_and_request_timeout(tmp_path: Path) -> None:
    env = {
        "TENSOR_WASM_API_MAX_CONCURRENT_INVOKES": "1",
        "TENSOR_WASM_API_REQUEST_TIMEOUT_S": "1",
    }
    with running_gateway(tmp_path / "home", env) as srv:
        c = srv.client()
        fn = srv.deploy(c, wat(SPIN_WAT), name="spin", limits={"deadline_ms": 3000})
        url = f"/functions/{fn['id']}/invoke"
        first: dict[str, httpx.Response] = {}

        def slow() -> None:
            first["r"] = srv.client().post(url, json={"export": "spin"})

        thread = threading.Thread(target=slow)
        thread.start()
        deadline = time.monotonic() + 10
        while True:  # until the first invoke holds the only invoke slot
            m = parse_metrics(c.get("/metrics").text)
            key = (
                'tensor_wasm_http_requests_in_flight{method="POST",route="/functions/{id}/invoke"}'
            )
            if m.get(key, 0) >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        r = c.post(url, json={"export": "spin"})
        assert_error(r, 503, "overloaded")
        assert r.headers["retry-after"] == "1"
        # Other route classes are not affected.
        assert c.get("/functions").status_code == 200
        thread.join(timeout=30)
        # The request timeout (1 s) fires before the guest's deadline (3 s).
        assert_error(first["r"], 504, "request_timeout")
