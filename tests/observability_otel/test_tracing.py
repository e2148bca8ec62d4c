"""OpenTelemetry tracing of the gateway: a server span per request, a
``tensor_wasm.invoke`` child per invoke (made on the executor thread), the
TensorCast verbs under it, W3C ``traceparent`` continued, OTLP/HTTP export
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, and nothing at all when not.

The app runs in-process (lifespan included) under Starlette's TestClient;
spans go to an in-memory exporter installed the way `setup` installs a
provider, except for the export test, which points the real setup at a
loopback HTTP server standing in for a collector.
"""

from __future__ import annotations

import gzip
import http.server
import json
import logging
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tensorwasm_tc import _tracing
from tensorwasm_tc.gateway import ConfigError, GatewayConfig, create_app
from tensorwasm_tc.gateway import app as app_module
from tensorwasm_tc.gateway import tracing as gateway_tracing
from tensorwasm_tc.gateway.app import Gateway
from tensorwasm_tc.gateway.artifacts import TensorCastLink
from tensorwasm_tc.tensorcast import _metrics

from tests.integration._gateway import ADD_WAT, SPIN_WAT, b64, wat

with warnings.catch_warnings():
    # Starlette would rather its TestClient ran on httpx2; httpx works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "otel-token"
TENANT = 7
INVOKE_ROUTE = "POST /functions/{id}/invoke"
TRAP_WAT = '(module (func (export "boom") unreachable))'
BASE_ENV = {
    "TENSOR_WASM_API_AUDIT_LOG": "none",
    "TENSOR_WASM_API_TOKENS": f"{TOKEN}:tenant=*",
    "TENSOR_WASM_TENSORCAST": "off",
}
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-TensorWasm-Tenant": str(TENANT)}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory (synchronously: a span is there once ended)."""
    assert not _tracing.ENABLED
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracing.install(provider)
    try:
        yield exporter
    finally:
        _tracing.uninstall()
        provider.shutdown()


@contextmanager
def gateway(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[TestClient]:
    """The app in-process; entering runs its lifespan (and so tracing setup)."""
    cfg = GatewayConfig.from_env({**BASE_ENV, **(env or {})}, home=tmp_path / "home")
    with TestClient(create_app(cfg)) as client:
        yield client


def deploy(client: TestClient, module: bytes, **extra: Any) -> str:
    r = client.post(
        "/functions", json={"name": "f", "wasm_b64": b64(module), **extra}, headers=AUTH
    )
    assert r.status_code == 201, r.text
    fid: str = r.json()["id"]
    return fid


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = named(exporter, name)
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_invoke_makes_a_server_span_with_an_invoke_child(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    with gateway(tmp_path) as client:
        fid = deploy(client, wat(ADD_WAT))
        spans.clear()
        r = client.post(
            f"/functions/{fid}/invoke",
            json={"export": "add", "args": [2, 3]},
            headers={**AUTH, "X-Request-Id": "req-otel-1"},
        )
    assert r.status_code == 200 and r.json()["result"] == [5]

    server = only(spans, INVOKE_ROUTE)
    assert server.kind is SpanKind.SERVER
    assert server.parent is None
    attrs = dict(server.attributes or {})
    assert attrs["http.request.method"] == "POST"
    assert attrs["http.route"] == "/functions/{id}/invoke"
    assert attrs["http.response.status_code"] == 200
    assert attrs["url.path"] == f"/functions/{fid}/invoke"
    assert attrs["tensor_wasm.tenant.id"] == TENANT
    assert attrs["tensor_wasm.request.id"] == "req-otel-1"
    assert attrs["tensor_wasm.function.id"] == fid
    assert "error.type" not in attrs
    assert server.status.status_code is StatusCode.UNSET

    invoke = only(spans, "tensor_wasm.invoke")
    assert invoke.kind is SpanKind.INTERNAL
    assert invoke.context.trace_id == server.context.trace_id
    assert parent_of(invoke) == server.context.span_id
    iattrs = dict(invoke.attributes or {})
    assert iattrs["tensor_wasm.function.id"] == fid
    assert iattrs["tensor_wasm.invoke.export"] == "add"
    assert iattrs["tensor_wasm.invoke.duration_ms"] == pytest.approx(
        r.json()["duration_ms"], abs=1e-6
    )
    assert invoke.status.status_code is StatusCode.UNSET
    # The child ran inside the request.
    assert server.start_time is not None and invoke.start_time is not None
    assert server.start_time <= invoke.start_time
    assert invoke.end_time is not None and server.end_time is not None
    assert invoke.end_time <= server.end_time


def test_every_route_gets_a_server_span_named_by_its_template(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    with gateway(tmp_path) as client:
        fid = deploy(client, wat(ADD_WAT))
        assert client.get(f"/functions/{fid}", headers=AUTH).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/no/such/route", headers=AUTH).status_code == 404
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["POST /functions", "GET /functions/{id}", "GET /healthz", "GET"]
    unmatched = spans.get_finished_spans()[-1]
    assert "http.route" not in (unmatched.attributes or {})
    assert (unmatched.attributes or {})["error.type"] == "not_found"


def test_traceparent_from_the_caller_is_continued(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with gateway(tmp_path) as client:
        fid = deploy(client, wat(ADD_WAT))
        spans.clear()
        r = client.post(
            f"/functions/{fid}/invoke",
            json={"export": "main"},
            headers={**AUTH, "traceparent": f"00-{trace_id}-{span_id}-01"},
        )
    assert r.status_code == 200
    server = only(spans, INVOKE_ROUTE)
    assert server.context.trace_id == int(trace_id, 16)
    assert server.parent is not None and server.parent.is_remote
    assert server.parent.span_id == int(span_id, 16)
    invoke = only(spans, "tensor_wasm.invoke")
    assert invoke.context.trace_id == int(trace_id, 16)
    assert parent_of(invoke) == server.context.span_id


def test_errors_record_status_and_error_kind(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    with gateway(tmp_path) as client:
        trapping = deploy(client, wat(TRAP_WAT))
        spinning = deploy(client, wat(SPIN_WAT), limits={"deadline_ms": 50})
        spans.clear()
        missing = client.post("/functions/fn_missing/invoke", json={}, headers=AUTH)
        trap = client.post(f"/functions/{trapping}/invoke", json={"export": "boom"}, headers=AUTH)
        timeout = client.post(
            f"/functions/{spinning}/invoke", json={"export": "spin"}, headers=AUTH
        )
    assert (missing.status_code, trap.status_code, timeout.status_code) == (404, 422, 504)
    servers = named(spans, INVOKE_ROUTE)
    invokes = named(spans, "tensor_wasm.invoke")
    assert len(servers) == 3 and len(invokes) == 2  # no invoke for the missing function

    by_status = {dict(s.attributes or {})["http.response.status_code"]: s for s in servers}
    for status, kind in ((404, "not_found"), (422, "trap"), (504, "invoke_timeout")):
        attrs = dict(by_status[status].attributes or {})
        assert attrs["error.type"] == kind
        assert attrs["tensor_wasm.error.kind"] == kind
    # Server spans: only 5xx are errors (a 4xx is the client's).
    assert by_status[404].status.status_code is StatusCode.UNSET
    assert by_status[422].status.status_code is StatusCode.UNSET
    assert by_status[504].status.status_code is StatusCode.ERROR

    # The invoke span itself failed either way.
    kinds = {}
    for span in invokes:
        assert span.status.status_code is StatusCode.ERROR
        parent = next(s for s in servers if s.context.span_id == parent_of(span))
        kinds[dict(parent.attributes or {})["http.response.status_code"]] = dict(
            span.attributes or {}
        )["tensor_wasm.error.kind"]
    assert kinds == {422: "trap", 504: "invoke_timeout"}


def _shape(exporter: InMemorySpanExporter) -> list[tuple[str, SpanKind, list[str], bool]]:
    """Names, kinds, attribute names and parentage, without the values that
    differ between two requests (ids, times)."""
    spans = exporter.get_finished_spans()
    ids = {s.context.span_id for s in spans}
    return [
        (
            s.name,
            s.kind,
            sorted(set(s.attributes or {}) - {"tensor_wasm.invoke.duration_ms"}),
            parent_of(s) in ids,
        )
        for s in spans
    ]


def test_fast_path_and_fastapi_route_make_the_same_spans(
    tmp_path: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_calls = []
    fast = app_module._fast_invoke

    async def counting(*args: Any) -> None:
        fast_calls.append(1)
        await fast(*args)

    monkeypatch.setattr(app_module, "_fast_invoke", counting)
    body = {"export": "add", "args": [1, 2]}
    with gateway(tmp_path) as client:
        fid = deploy(client, wat(ADD_WAT))
        spans.clear()
        assert client.post(f"/functions/{fid}/invoke", json=body, headers=AUTH).status_code == 200
        assert fast_calls == [1]
        via_fast = _shape(spans)
        spans.clear()
        monkeypatch.setattr(app_module, "FAST_INVOKE", "/not-the-fast-path")
        assert client.post(f"/functions/{fid}/invoke", json=body, headers=AUTH).status_code == 200
        assert fast_calls == [1]
        via_route = _shape(spans)
    assert [s[0] for s in via_fast] == ["tensor_wasm.invoke", INVOKE_ROUTE]
    assert via_fast == via_route


def test_tensorcast_verbs_nest_under_the_invoke_span(
    tmp_path: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Binding artifacts runs inside Gateway.function_for on the executor
    # thread (TensorCastLink.function -> Store verbs). Stand in for the
    # daemon round trip with the SDK's own `operation`, as the verbs use it.
    load = Gateway.function_for

    def binding(self: Gateway, rec: Any) -> Any:
        with _metrics.operation("get", key="weights:v1"):
            return load(self, rec)

    monkeypatch.setattr(Gateway, "function_for", binding)
    with gateway(tmp_path) as client:
        fid = deploy(client, wat(ADD_WAT))
        spans.clear()
        r = client.post(f"/functions/{fid}/invoke", json={"export": "main"}, headers=AUTH)
    assert r.status_code == 200
    server = only(spans, INVOKE_ROUTE)
    invoke = only(spans, "tensor_wasm.invoke")
    store = only(spans, "Store/Get")
    assert parent_of(store) == invoke.context.span_id
    assert store.context.trace_id == server.context.trace_id
    assert dict(store.attributes or {})["tc.store.key"] == "weights:v1"


def test_tensorcast_verbs_at_deploy_nest_under_the_request_span(
    tmp_path: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A function deployed with artifacts and an init_export is bound at
    # deploy, on an executor thread (Gateway.run hands the context over).
    def binding(self: Gateway, rec: Any) -> Any:
        with _metrics.operation("get", key="weights:v1"):
            return rec.fn

    monkeypatch.setattr(Gateway, "function_for", binding)
    with gateway(tmp_path) as client:
        # After startup, so no attach to a daemon is attempted in the background.
        monkeypatch.setattr(TensorCastLink, "enabled", property(lambda self: True))
        spans.clear()
        deploy(client, wat(ADD_WAT), artifacts={"weights": "weights:v1"}, init_export="main")
    server = only(spans, "POST /functions")
    store = only(spans, "Store/Get")
    assert parent_of(store) == server.context.span_id


def test_instance_invokes_get_an_invoke_span(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    with gateway(tmp_path) as client:
        fid = deploy(client, wat(ADD_WAT))
        r = client.post("/instances", json={"function_id": fid}, headers=AUTH)
        assert r.status_code == 201, r.text
        iid = r.json()["instance_id"]
        spans.clear()
        r = client.post(f"/instances/{iid}/invoke", json={"export": "main"}, headers=AUTH)
    assert r.status_code == 200
    server = only(spans, "POST /instances/{id}/invoke")
    invoke = only(spans, "tensor_wasm.invoke")
    assert parent_of(invoke) == server.context.span_id
    assert dict(invoke.attributes or {})["tensor_wasm.instance.id"] == iid
    assert dict(server.attributes or {})["tensor_wasm.instance.id"] == iid


def test_tracing_off_makes_no_span_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a span helper ran with tracing off")

    for name in ("start_request", "end_request", "current_context", "traced_invoke"):
        monkeypatch.setattr(gateway_tracing, name, never)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # configured, but never installed
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with gateway(tmp_path) as client:
        fid = deploy(client, wat(ADD_WAT))
        r = client.post(f"/functions/{fid}/invoke", json={"export": "add", "args": [1, 1]})
        assert r.status_code == 401  # no token: an error path, still no span
        r = client.post(
            f"/functions/{fid}/invoke", json={"export": "add", "args": [1, 1]}, headers=AUTH
        )
        assert r.status_code == 200
        assert not _tracing.ENABLED
    assert exporter.get_finished_spans() == ()


# The gateway in a fresh interpreter: no provider anywhere, and (without the
# packages) no attempt to import them.
_FRESH = textwrap.dedent(
    """
    import json, logging, sys, tempfile, warnings
    logging.basicConfig(level=logging.INFO)
    warnings.simplefilter("ignore")
    if sys.argv[1] == "missing":
        # (FastAPI itself imports the API package; the SDK is what is missing.)
        for name in ("opentelemetry.sdk", "opentelemetry.exporter"):
            sys.modules[name] = None
    from starlette.testclient import TestClient
    from tensorwasm_tc import _tracing
    from tensorwasm_tc.gateway import GatewayConfig, create_app
    env = json.loads(sys.argv[2])
    with tempfile.TemporaryDirectory() as home:
        with TestClient(create_app(GatewayConfig.from_env(env, home=home))) as client:
            status = client.get("/healthz").status_code
            enabled = _tracing.ENABLED
    from opentelemetry import trace
    provider = type(trace.get_tracer_provider()).__name__
    print(json.dumps({
        "status": status,
        "enabled": enabled,
        "provider": provider,
        "sdk_imported": "opentelemetry.sdk.trace" in sys.modules,
    }))
    """
)


def _fresh(variant: str, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH, variant, json.dumps({**BASE_ENV, **env})],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, proc.stderr


def test_without_endpoint_no_provider_is_installed() -> None:
    out, logs = _fresh("plain", {})
    assert out == {
        "status": 200,
        "enabled": False,
        "provider": "ProxyTracerProvider",
        "sdk_imported": False,
    }
    assert "tracing: off (OTEL_EXPORTER_OTLP_ENDPOINT is unset)" in logs


def test_without_the_packages_tracing_stays_off() -> None:
    out, logs = _fresh("missing", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert out["status"] == 200 and out["enabled"] is False
    assert out["provider"] == "ProxyTracerProvider"
    assert "OpenTelemetry packages are missing" in logs


class _Collector(http.server.BaseHTTPRequestHandler):
    """Stands in for an OTLP/HTTP collector: keeps every POST."""

    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((self.path, dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    received: list[tuple[str, dict[str, str], bytes]] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_otlp_endpoint_exports_spans_over_http(
    tmp_path: Path,
    collector: tuple[str, list[tuple[str, dict[str, str], bytes]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received = collector
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cret",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
    }
    caplog.set_level(logging.INFO, logger="tensorwasm_tc.tracing")
    with gateway(tmp_path, env) as client:
        assert _tracing.ENABLED
        fid = deploy(client, wat(ADD_WAT))
        r = client.post(f"/functions/{fid}/invoke", json={"export": "main"}, headers=AUTH)
        assert r.status_code == 200
    # Shutdown flushed the batch and removed the provider.
    assert not _tracing.ENABLED
    assert (
        f"tracing: on, OTLP/HTTP to {url}/v1/traces "
        "(service tensor-wasm, sampler parentbased_always_on)" in caplog.text
    )
    assert received, "no OTLP request arrived"
    names: list[str] = []
    services: set[str] = set()
    for path, headers, body in received:
        assert path == "/v1/traces"
        lowered = {k.lower(): v for k, v in headers.items()}
        assert lowered["content-type"] == "application/x-protobuf"
        assert lowered["x-api-key"] == "s3cret"
        if lowered.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            services.add(attrs["service.name"])
            assert attrs["deployment.environment"] == "test"
            names += [s.name for ss in rs.scope_spans for s in ss.spans]
    assert services == {"tensor-wasm"}
    assert {"POST /functions", INVOKE_ROUTE, "tensor_wasm.invoke"} <= set(names)


def test_setup_configures_an_otlp_exporter_from_the_environment() -> None:
    config = _tracing.TracingConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_SERVICE_NAME": "edge-gw",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        }
    )
    assert config.endpoint == "http://collector:4318/v1/traces"
    handle = _tracing.setup(config)
    assert handle is not None
    try:
        assert _tracing.ENABLED
        provider = handle.provider
        assert provider.resource.attributes["service.name"] == "edge-gw"
        assert "0.25" in provider.sampler.get_description()
        (processor,) = provider._active_span_processor._span_processors
        assert isinstance(processor, BatchSpanProcessor)
        exporter = processor._batch_processor._exporter
        assert type(exporter).__name__ == "OTLPSpanExporter"
        assert getattr(exporter, "_endpoint", None) == "http://collector:4318/v1/traces"
    finally:
        handle.shutdown()
    assert not _tracing.ENABLED


@pytest.mark.parametrize(
    ("env", "endpoint", "reason"),
    [
        ({}, None, "OTEL_EXPORTER_OTLP_ENDPOINT is unset"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces", ""),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"},
            "http://c:4318/custom",
            "",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"},
            None,
            "OTEL_SDK_DISABLED=true",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"},
            None,
            "OTEL_TRACES_EXPORTER=none (only otlp is supported)",
        ),
    ],
)
def test_endpoint_variables(env: dict[str, str], endpoint: str | None, reason: str) -> None:
    config = GatewayConfig.from_env(env, home=Path("/h")).tracing
    assert (config.endpoint, config.off_reason) == (endpoint, reason)
    assert config.service_name == "tensor-wasm"


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_SAMPLER": "sometimes"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
    ],
)
def test_unusable_sampler_stops_the_gateway_at_startup(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER"):
        GatewayConfig.from_env(env, home=Path("/h"))


def test_headers_stay_out_of_the_config_repr() -> None:
    config = _tracing.TracingConfig.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_HEADERS": "k=secret"}
    )
    assert config.headers == (("k", "secret"),)
    assert "secret" not in repr(config)


def test_global_store_rpcs_get_server_spans(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import (
        global_store_pb2 as pb,
    )
    from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import (
        global_store_pb2_grpc as pb_grpc,
    )
    from tensorwasm_tc.tensorcast.global_store.config import GlobalStoreConfig
    from tensorwasm_tc.tensorcast.global_store.server import GlobalStoreServer

    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    config = GlobalStoreConfig(
        listen_port=0, metrics_port=-1, database_path=str(tmp_path / "m.db"), shutdown_grace_ms=0
    )
    server = GlobalStoreServer(config, build="test-build")
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.GlobalStoreStub(channel)  # type: ignore[no-untyped-call]
            stub.GetStatus(
                pb.GetStatusRequest(), metadata=[("traceparent", f"00-{trace_id}-{span_id}-01")]
            )
            with pytest.raises(grpc.RpcError) as failed:
                stub.GetKey(pb.GetKeyRequest(key="no-such-key"))
    finally:
        server.stop(0)
    status = only(spans, "tensorcast.global_store.v1.GlobalStore/GetStatus")
    assert status.kind is SpanKind.SERVER
    assert status.context.trace_id == int(trace_id, 16)
    assert status.parent is not None and status.parent.span_id == int(span_id, 16)
    assert dict(status.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "tensorcast.global_store.v1.GlobalStore",
        "rpc.method": "GetStatus",
        "rpc.grpc.status_code": 0,
    }
    missing = only(spans, "tensorcast.global_store.v1.GlobalStore/GetKey")
    code = failed.value.code()
    assert dict(missing.attributes or {})["rpc.grpc.status_code"] == code.value[0]
    assert missing.status.status_code is StatusCode.ERROR


def test_store_daemon_exports_a_span_per_rpc(
    tmp_path: Path, collector: tuple[str, list[tuple[str, dict[str, str], bytes]]]
) -> None:
    from tests.tensorcast.test_daemon_support import Cluster

    url, received = collector
    cluster = Cluster(tmp_path)
    try:
        daemon = cluster.daemon(env={"OTEL_EXPORTER_OTLP_ENDPOINT": url})
        daemon.client(session_id=None).status()
        assert daemon.stop() == 0  # SIGTERM: a clean exit flushes the spans
        log = daemon.log()
    finally:
        cluster.close()
    assert f"tracing: on, OTLP/HTTP to {url}/v1/traces (service tensorcast-daemon" in log
    spans: list[tuple[str, dict[str, Any]]] = []
    for path, _headers, body in received:
        assert path == "/v1/traces"
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}
            assert service["service.name"] == "tensorcast-daemon"
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attrs = {a.key: a.value for a in s.attributes}
                    spans.append((s.name, attrs))
    status = [a for name, a in spans if name == "tensorcast.daemon.v1.StoreDaemon/Status"]
    assert len(status) == 1, [name for name, _ in spans]
    assert status[0]["rpc.system"].string_value == "grpc"
    assert status[0]["rpc.grpc.status_code"].int_value == 0
