"""State survives a restart: deployed functions and finished jobs after a
graceful SIGTERM, and a job that was running when the server was killed is
``failed`` with kind ``interrupted`` when it comes back (never lost)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from ._gateway import (
    ADD_WAT,
    SPIN_WAT,
    GatewayServer,
    assert_error,
    corpus_wasm,
    guest_wasm,
    running_gateway,
    wait_job,
    wat,
)

# Counts to its argument: a job that takes a while and then completes.
COUNT_WAT = """
(module
  (func (export "count") (param $n i32) (result i32) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $i)))
"""
TOKENS = "restart-secret:tenant=5"


def _wait_running(client: httpx.Client, job_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/jobs/{job_id}").json()["status"]
        if status == "running":
            return
        assert status == "pending", status
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.01)


def test_functions_and_finished_jobs_survive_sigterm(tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    env = {"TENSOR_WASM_API_TOKENS": TOKENS, "TENSOR_WASM_API_AUDIT_LOG": f"file:{audit}"}
    srv = GatewayServer.start(tmp_path / "home", env)
    try:
        c = srv.client("restart-secret", 5)
        adder = srv.deploy(
            c, wat(ADD_WAT), name="adder", limits={"max_memory_bytes": 1 << 20, "deadline_ms": 500}
        )
        vadd = srv.deploy(c, guest_wasm("vector_add"), name="vadd")
        doomed = srv.deploy(c, corpus_wasm("stateful_counter"), name="doomed", init_export="inc")
        ok_job = c.post(
            f"/functions/{adder['id']}/invoke-async", json={"export": "add", "args": [40, 2]}
        ).json()["job_id"]
        trap_fn = srv.deploy(c, corpus_wasm("unreachable"), name="trap")
        bad_job = c.post(
            f"/functions/{trap_fn['id']}/invoke-async", json={"export": "always"}
        ).json()["job_id"]
        ok_before = wait_job(c, ok_job)
        bad_before = wait_job(c, bad_job)
        assert ok_before["status"] == "completed" and bad_before["status"] == "failed"
        listed_before = c.get("/functions").json()["functions"]

        srv.stop()
        assert "shutdown complete" in srv.log()
        srv.restart()

        c = srv.client("restart-secret", 5)
        listed = c.get("/functions").json()["functions"]
        assert sorted(listed, key=lambda f: f["id"]) == sorted(listed_before, key=lambda f: f["id"])
        assert c.get(f"/functions/{adder['id']}").json() == adder
        r = c.post(f"/functions/{adder['id']}/invoke", json={"export": "add", "args": [1, 2]})
        assert r.status_code == 200, r.text
        assert r.json()["result"] == [3]
        tensor: dict[str, Any] = {"dtype": "f32", "shape": [2], "data": [1.5, 2.5]}
        r = c.post(
            f"/functions/{vadd['id']}/invoke",
            json={"export": "run", "inputs": {"a": tensor, "b": tensor}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["outputs"]["c"]["data"] == [3.0, 5.0]
        # init_export is kept as well.
        r = c.post(f"/functions/{doomed['id']}/invoke", json={"export": "get"})
        assert r.json()["result"] == [1]

        assert c.get(f"/jobs/{ok_job}").json() == ok_before
        assert c.get(f"/jobs/{bad_job}").json() == bad_before

        # A delete is durable too.
        assert c.delete(f"/functions/{doomed['id']}").status_code == 204
        srv.stop()
        srv.restart()
        c = srv.client("restart-secret", 5)
        assert_error(c.get(f"/functions/{doomed['id']}"), 404, "not_found")
        assert c.get(f"/functions/{adder['id']}").status_code == 200
    finally:
        srv.stop()

    # The token id is keyed by a secret kept under the home: stable across restarts.
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len({r["actor"]["token_id"] for r in records}) == 1
    assert "restart-secret" not in audit.read_text()


def test_job_running_at_a_crash_is_interrupted(tmp_path: Path) -> None:
    srv = GatewayServer.start(tmp_path / "home")
    try:
        c = srv.client()
        spin = srv.deploy(c, wat(SPIN_WAT), name="spin", limits={"deadline_ms": 120_000})
        job_id = c.post(f"/functions/{spin['id']}/invoke-async", json={"export": "spin"}).json()[
            "job_id"
        ]
        _wait_running(c, job_id)
        srv.crash()  # SIGKILL: no shutdown hook marks anything
        srv.restart()

        c = srv.client()
        job = c.get(f"/jobs/{job_id}").json()
        assert job["status"] == "failed"
        assert job["error"]["kind"] == "interrupted"
        assert job["error"]["message"]
        assert job["finished_unix_ms"] >= job["created_unix_ms"]
        assert "marked interrupted" in srv.log()
        # The function itself survived the crash.
        assert c.get(f"/functions/{spin['id']}").status_code == 200
    finally:
        srv.stop()


def test_sigterm_lets_a_running_job_finish_within_the_grace(tmp_path: Path) -> None:
    env = {"TENSOR_WASM_API_SHUTDOWN_GRACE_S": "20"}
    with running_gateway(tmp_path / "home", env) as srv:
        c = srv.client()
        fn = srv.deploy(c, wat(COUNT_WAT), name="count", limits={"deadline_ms": 60_000})
        job_id = c.post(
            f"/functions/{fn['id']}/invoke-async", json={"export": "count", "args": [600_000_000]}
        ).json()["job_id"]
        _wait_running(c, job_id)
        srv.stop()
        srv.restart()
        job = srv.client().get(f"/jobs/{job_id}").json()
    assert job["status"] == "completed", job
    assert job["result"] == [600_000_000]


def test_sigterm_past_the_grace_marks_the_job_interrupted(tmp_path: Path) -> None:
    env = {"TENSOR_WASM_API_SHUTDOWN_GRACE_S": "0.2"}
    with running_gateway(tmp_path / "home", env) as srv:
        c = srv.client()
        spin = srv.deploy(c, wat(SPIN_WAT), name="spin", limits={"deadline_ms": 120_000})
        job_id = c.post(f"/functions/{spin['id']}/invoke-async", json={"export": "spin"}).json()[
            "job_id"
        ]
        _wait_running(c, job_id)
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 15  # bounded, not the job's 120 s deadline
        assert "did not finish; marked interrupted" in srv.log()
        srv.restart()
        job = srv.client().get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"]["kind"] == "interrupted"
