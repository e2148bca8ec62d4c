"""docs/dashboards/tensor-wasm-overview.json only queries metrics this
project emits: every metric name in every panel query and template variable
is exposed by a real ``tensor-wasm serve`` (after a deploy, invokes with a
tensor op, a persistent instance and an async job), by a real Store Daemon
or its Global Store (after a register), or is a recording rule of
deploy/prometheus/alerts.yaml.

A name counts as emitted when the process's /metrics has a sample of it or
declares it with a ``# TYPE`` line (a labelled series appears with its first
observation: the gateway runs no TensorCast verb with TensorCast off, yet
declares the tc_store_* families); a histogram family brings its
``_bucket``, ``_sum`` and ``_count`` series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from tensorwasm_tc.tensorcast.store import Store

from tests.integration._gateway import guest_wasm, running_gateway, wait_job
from tests.tensorcast.test_daemon_support import Cluster, Proc, _wait_session

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "dashboards" / "tensor-wasm-overview.json"
RULES = REPO / "deploy" / "prometheus" / "alerts.yaml"
# Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = frozenset({"up"})
ROWS = (
    "SLO",
    "Build identity",
    "HTTP",
    "Invokes",
    "Kernels",
    "jobs",
    "TensorCast",
)

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_GRAFANA_VAR = re.compile(r"\$(?:\{[^}]*\}|\w+)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "start", "end"}
)
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>[^,]+),)?\s*\w+\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers left once strings,
    label matchers, ranges, grouping label lists and Grafana variables are
    removed, that are not function calls or keywords."""
    e = _STRING.sub('""', expr)
    e = _MATCHERS.sub(" ", e)
    e = _RANGE.sub(" ", e)
    e = _GROUPING.sub(" ", e)
    e = _GRAFANA_VAR.sub(" ", e)
    names = set()
    for m in _IDENT.finditer(e):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def exposed_names(text: str) -> set[str]:
    """Every series name a Prometheus text exposition declares or samples."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            if kind == "histogram":
                names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
            elif kind == "summary":
                names |= {f"{family}_sum", f"{family}_count"}
        elif line and not line.startswith("#"):
            m = re.match(r"[A-Za-z_:][\w:]*", line)
            assert m, line
            names.add(m.group(0))
    return names


def recording_rules() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable."""
    out = []
    for p in panels(dash):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} target {t['refId']}", t["expr"]))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = _LABEL_VALUES.match(q)
            assert m, f"variable {v['name']}: only label_values(selector, label) is checked: {q}"
            if m.group("selector"):
                out.append((f"variable ${v['name']}", m.group("selector")))
    return out


def unknown_metrics(dash: dict[str, Any], known: set[str]) -> list[str]:
    return [
        f"{where} queries {name!r}, which nothing emits: {expr}"
        for where, expr in queries(dash)
        for name in sorted(metric_names(expr) - known)
    ]


# --------------------------------------------------------------- emitted names


@pytest.fixture(scope="module")
def gateway_metrics(tmp_path_factory: pytest.TempPathFactory) -> str:
    home = tmp_path_factory.mktemp("dashboard-gateway") / "home"
    with running_gateway(home, {"TENSOR_WASM_TENSORCAST": "off"}) as gw:
        c = gw.client()
        fn = gw.deploy(c, guest_wasm("vector_add"))
        tensor = {"dtype": "i32", "shape": [3], "data": [1, 2, 3]}
        body = {"export": "run", "inputs": {"a": tensor, "b": tensor}}
        r = c.post(f"/functions/{fn['id']}/invoke", json=body)
        assert r.status_code == 200, r.text
        r = c.post(f"/functions/{fn['id']}/invoke-async", json=body)
        assert r.status_code == 202, r.text
        assert wait_job(c, r.json()["job_id"])["status"] == "completed"
        r = c.post("/instances", json={"function_id": fn["id"]})
        assert r.status_code == 201, r.text
        text = c.get("/metrics").text
        assert c.delete(f"/instances/{r.json()['instance_id']}").status_code == 204
    # The fixture did its job: the live series have samples.
    assert 'tensor_wasm_kernel_dispatches_total{device="cpu",op="add"}' in text
    assert "tensor_wasm_active_instances 1.0" in text
    return text


def _global_store(cluster: Cluster, tmp: Path) -> Proc:
    """A Global Store with its metrics endpoint on (Cluster's has it off)."""
    home = tmp / "home"
    config = tmp / "global-store.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "global_store": {
                    "listen": {"host": "127.0.0.1", "port": 0},
                    "metrics": {"port": 0},
                    "database": {"path": str(tmp / "global-store.db")},
                }
            }
        )
    )
    log = tmp / "global-store.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tensorwasm_tc.tensorcast.global_store",
             "--config", str(config), "--listen-port", "0", "--metrics-port", "0",
             "--session-id", "gs-dashboard"],
            stdout=out, stderr=subprocess.STDOUT, env=cluster.env(home),
        )  # fmt: skip
    gs = Proc(proc, _wait_session(home, "gs-dashboard", proc, log), log, home)
    cluster.procs.append(gs)
    return gs


@pytest.fixture(scope="module")
def tensorcast_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """/metrics of a Store Daemon and of its Global Store, after a register."""
    tmp = tmp_path_factory.mktemp("dashboard-tensorcast")
    cluster = Cluster(tmp)
    try:
        gs = _global_store(cluster, tmp)
        assert gs.rec.metrics_address, "the Global Store serves metrics"
        d = cluster.daemon(
            config={
                "metrics_port": 0,
                "global_store": {"mode": "connect", "address": gs.rec.address},
            }
        )
        assert d.rec.metrics_address, "the daemon serves metrics"
        Store(d.client()).register({"w": np.arange(16, dtype=np.float32)}, key="dashboard")
        daemon = httpx.get(f"http://{d.rec.metrics_address}/metrics", timeout=10).text
        global_store = httpx.get(f"http://{gs.rec.metrics_address}/metrics", timeout=10).text
        assert 'tc_local_stable_tier_total{op="register",status="OK"}' in daemon
        assert "tc_global_store_requests_total{" in global_store
        yield daemon, global_store
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def emitted(gateway_metrics: str, tensorcast_metrics: tuple[str, str]) -> set[str]:
    daemon, global_store = tensorcast_metrics
    return (
        exposed_names(gateway_metrics)
        | exposed_names(daemon)
        | exposed_names(global_store)
        | recording_rules()
        | PROMETHEUS_SERIES
    )


# ----------------------------------------------------------------------- tests


def test_metric_name_parser_reads_selectors_rules_and_suffixes() -> None:
    expr = (
        "sum by (le, route) (rate(tensor_wasm_http_request_duration_seconds_bucket"
        '{route=~"/a/{id}",job=~"$job"}[$__rate_interval])) / on (route) group_left (x) '
        "tensor_wasm:invoke_latency_seconds:p99_rate5m offset 5m > bool 0.5 * 1e3 "
        "and histogram_quantile(0.99, foo_sum) unless ignoring(a) up"
    )
    assert metric_names(expr) == {
        "tensor_wasm_http_request_duration_seconds_bucket",
        "tensor_wasm:invoke_latency_seconds:p99_rate5m",
        "foo_sum",
        "up",
    }
    text = "\n".join(
        [
            "# TYPE h_seconds histogram",
            "# TYPE c_total counter",
            'c_total{a="b"} 1.0',
            "# TYPE g gauge",
        ]
    )
    assert exposed_names(text) == {
        "h_seconds",
        "h_seconds_bucket",
        "h_seconds_sum",
        "h_seconds_count",
        "c_total",
        "g",
    }


def test_an_unknown_metric_is_named_in_the_failure() -> None:
    fake = {
        "panels": [{"title": "Oops", "targets": [{"refId": "A", "expr": "rate(nope_total[5m])"}]}],
        "templating": {"list": []},
    }
    [message] = unknown_metrics(fake, {"up"})
    assert "'Oops'" in message and "'nope_total'" in message


def test_every_metric_the_dashboard_queries_is_emitted(emitted: set[str]) -> None:
    dash = dashboard()
    assert queries(dash), "the dashboard has queries"
    assert unknown_metrics(dash, emitted) == []


def test_dashboard_shape_rows_and_datasource_variable() -> None:
    dash = dashboard()
    assert dash["schemaVersion"] >= 39
    assert dash["uid"] == "tensor-wasm-overview"
    [ds] = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert ds["query"] == "prometheus"
    ref = f"${{{ds['name']}}}"
    all_panels = panels(dash)
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    rows = [p["title"] for p in all_panels if p["type"] == "row"]
    for wanted in ROWS:
        assert any(wanted.lower() in r.lower() for r in rows), (wanted, rows)
    for p in all_panels:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == ref, p["title"]
        assert p.get("description"), f"panel {p['title']!r} explains itself"
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == ref, p["title"]
            assert t["expr"].strip(), p["title"]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"]["uid"] == ref, v["name"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule's expression (Grafana's
    variables replaced by values of their kind)."""
    dash = dashboard()
    rules = []
    for i, (where, expr) in enumerate(queries(dash)):
        e = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
        e = _GRAFANA_VAR.sub(".*", e)
        rules.append({"record": f"dashboard:query:{i}", "expr": e, "labels": {"where": where}})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool = shutil.which("promtool")
    assert promtool is not None
    run = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
