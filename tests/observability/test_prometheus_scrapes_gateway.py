"""A real Prometheus scrapes a real ``tensor-wasm serve``, with
deploy/prometheus/alerts.yaml loaded: the series the rules and the dashboard
read arrive under the names they use, and every rule evaluates without an
error on real data.

Skipped when the ``prometheus`` binary is missing (.ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration._gateway import (
    ADD_WAT,
    GatewayServer,
    free_port,
    running_gateway,
    wat,
)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yaml"
PROMETHEUS = shutil.which("prometheus")
DEADLINE_S = 15.0

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not installed (apt-get install prometheus)"
)


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def rules(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/rules", timeout=5)
        r.raise_for_status()
        return [rule for g in r.json()["data"]["groups"] for rule in g["rules"]]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    with running_gateway(tmp_path / "home", {"TENSOR_WASM_TENSORCAST": "off"}) as gw:
        yield gw


@pytest.fixture
def prometheus(tmp_path: Path, gateway: GatewayServer) -> Iterator[Prometheus]:
    assert PROMETHEUS is not None
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "tensor-wasm",
                        "static_configs": [{"targets": [f"127.0.0.1:{gateway.port}"]}],
                    }
                ],
            }
        )
    )
    log_path = tmp_path / "prometheus.log"
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{prom.log()}")
            try:
                if httpx.get(f"{prom.url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready in {DEADLINE_S} s:\n{prom.log()}")
            time.sleep(0.05)
        yield prom
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_prometheus_reads_gateway_series_and_evaluates_every_rule(
    gateway: GatewayServer, prometheus: Prometheus
) -> None:
    client = gateway.client()
    fn = gateway.deploy(client, wat(ADD_WAT), name="scraped")
    invoke = f"/functions/{fn['id']}/invoke"
    invokes = 0

    def invoke_once() -> None:
        nonlocal invokes
        r = client.post(invoke, json={"export": "add", "args": [2, 3]})
        assert r.status_code == 200, r.text
        invokes += 1

    # Keep traffic flowing while Prometheus scrapes, so the rates the rules
    # compute are positive, then wait for every rule's first evaluation.
    deadline = time.monotonic() + DEADLINE_S
    while True:
        invoke_once()
        rate = prometheus.query("tensor_wasm:http_api_requests:rate5m > 0")
        rules = prometheus.rules()
        if rate and all(rule["health"] != "unknown" for rule in rules):
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"no positive request rate or unevaluated rules after {DEADLINE_S} s; "
                f"rules: {[(r['name'], r['health']) for r in rules]}\n{prometheus.log()}"
            )
        time.sleep(0.2)

    # The raw counter arrives with the gateway's labels plus job/instance.
    [series] = prometheus.query(
        'tensor_wasm_http_requests_total{job="tensor-wasm",route="/functions/{id}/invoke",'
        'status="200"}'
    )
    assert series["metric"]["method"] == "POST"
    assert series["metric"]["instance"] == f"127.0.0.1:{gateway.port}"
    assert 1 <= float(series["value"][1]) <= invokes
    assert prometheus.query('up{job="tensor-wasm"} == 1'), "the gateway target is up"
    assert prometheus.query('tensor_wasm_build_info{version!=""}'), "build identity scraped"

    # Recording rules computed from the real series: traffic, no 5xx.
    [ratio] = prometheus.query("tensor_wasm:http_api_error_ratio:rate5m")
    assert float(ratio["value"][1]) == 0.0
    [p99] = prometheus.query("tensor_wasm:invoke_latency_seconds:p99_rate5m")
    assert p99["metric"]["route"] == "/functions/{id}/invoke"
    assert 0.0 < float(p99["value"][1]) < 30.0

    # Every rule of the file is loaded and evaluates without an error (a
    # many-to-many match or a bad label would show here, not in promtool's
    # synthetic tests).
    loaded = {rule["name"] for rule in prometheus.rules()}
    with RULES.open() as f:
        declared = {
            rule.get("record") or rule["alert"]
            for group in yaml.safe_load(f)["groups"]
            for rule in group["rules"]
        }
    assert loaded == declared
    broken = [(r["name"], r.get("lastError")) for r in prometheus.rules() if r["health"] != "ok"]
    assert broken == []

    # A healthy gateway fires nothing.
    firing = prometheus.query('ALERTS{alertstate="firing"}')
    assert firing == [], [a["metric"]["alertname"] for a in firing]
