"""`_metrics.operation` records latency, errors by status and spans named
``Store/<Verb>``; the metrics survive a module reload; without OpenTelemetry
it is a no-op."""

from __future__ import annotations

import importlib
import logging
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest
from tensorwasm_tc.tensorcast import _metrics
from tensorwasm_tc.tensorcast.errors import ArtifactError


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class FakeSpan:
    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self.name = name
        self.attributes = dict(attributes)
        self.exceptions: list[BaseException] = []
        self.status: Any = None
        self.ended = False

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def record_exception(self, exc: BaseException) -> None:
        self.exceptions.append(exc)

    def set_status(self, status: Any) -> None:
        self.status = status


class FakeTracer:
    def __init__(self, spans: list[FakeSpan]) -> None:
        self.spans = spans

    @contextmanager
    def start_as_current_span(self, name: str, **kw: Any) -> Iterator[FakeSpan]:
        span = FakeSpan(name, kw.get("attributes") or {})
        self.spans.append(span)
        try:
            yield span
        finally:
            span.ended = True


@pytest.fixture
def fake_otel(monkeypatch: pytest.MonkeyPatch) -> list[FakeSpan]:
    """A minimal ``opentelemetry.trace`` in sys.modules; returns the spans."""
    spans: list[FakeSpan] = []
    pkg = types.ModuleType("opentelemetry")
    trace = types.ModuleType("opentelemetry.trace")
    tracer = FakeTracer(spans)
    trace.get_tracer = lambda *a, **k: tracer  # type: ignore[attr-defined]

    class StatusCode:
        ERROR = "ERROR"

    class Status:
        def __init__(self, code: str, description: str = "") -> None:
            self.code = code
            self.description = description

    trace.StatusCode = StatusCode  # type: ignore[attr-defined]
    trace.Status = Status  # type: ignore[attr-defined]
    pkg.trace = trace  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "opentelemetry", pkg)
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", trace)
    return spans


@pytest.mark.parametrize(
    ("verb", "name"),
    [
        ("register", "Store/Register"),
        ("put", "Store/Put"),
        ("get", "Store/Get"),
        ("get_into", "Store/GetInto"),
    ],
)
def test_each_verb_opens_its_upstream_span(fake_otel: list[FakeSpan], verb: str, name: str) -> None:
    with _metrics.operation(verb, key="model:v1", artifact_id="abc"):
        pass
    assert [s.name for s in fake_otel] == [name]
    span = fake_otel[0]
    assert span.ended
    assert span.attributes["tc.store.key"] == "model:v1"
    assert span.attributes["tc.store.artifact_id"] == "abc"


def test_a_failed_verb_marks_its_span_and_counts_the_error(fake_otel: list[FakeSpan]) -> None:
    before = sample("tc_store_operation_errors_total", {"verb": "get", "status": "NOT_FOUND"})
    with pytest.raises(ArtifactError), _metrics.operation("get", key="missing"):
        raise ArtifactError("no such key", "NOT_FOUND")
    span = fake_otel[0]
    assert span.status.code == "ERROR"
    assert span.attributes["tc.store.status_code"] == "NOT_FOUND"
    assert isinstance(span.exceptions[0], ArtifactError)
    after = sample("tc_store_operation_errors_total", {"verb": "get", "status": "NOT_FOUND"})
    assert after == before + 1


def test_artifact_id_learned_during_the_verb_reaches_the_span(
    fake_otel: list[FakeSpan],
) -> None:
    with _metrics.operation("register", key="k") as op:
        op.set_artifact_id("feedbeef")
    assert fake_otel[0].attributes["tc.store.artifact_id"] == "feedbeef"


def test_latency_is_observed_for_success_and_failure() -> None:
    before = sample("tc_store_operation_latency_seconds_count", {"verb": "t_latency"})
    with _metrics.operation("t_latency"):
        pass
    with pytest.raises(ArtifactError), _metrics.operation("t_latency"):
        raise ArtifactError("x", "UNAVAILABLE")
    after = sample("tc_store_operation_latency_seconds_count", {"verb": "t_latency"})
    assert after == before + 2


def test_other_exceptions_are_not_counted_as_status_errors() -> None:
    with pytest.raises(KeyError), _metrics.operation("t_other"):
        raise KeyError("bug")
    errors = [
        sample_
        for metric in REGISTRY.collect()
        if metric.name == "tc_store_operation_errors"
        for sample_ in metric.samples
        if sample_.labels.get("verb") == "t_other"
    ]
    assert errors == []
    assert sample("tc_store_operation_latency_seconds_count", {"verb": "t_other"}) == 1


def test_without_opentelemetry_operations_are_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import opentelemetry.trace` fail, as when absent.
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)  # type: ignore[arg-type]
    monkeypatch.setattr(_metrics, "_otel_trace", _metrics._UNRESOLVED)
    with _metrics.operation("get", key="k") as op:
        op.set_artifact_id("x")  # no span: must not fail
    assert _metrics._otel_trace is None


def test_a_broken_tracer_never_breaks_the_verb(
    fake_otel: list[FakeSpan], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("exporter misconfigured")

    monkeypatch.setattr(sys.modules["opentelemetry.trace"], "get_tracer", boom)
    with _metrics.operation("get"):
        pass


def test_sdk_metric_names_are_exposed() -> None:
    _metrics.record_cache("hits")
    _metrics.record_retry("get")
    with _metrics.operation("get"):
        pass
    text = generate_latest(REGISTRY).decode()
    for name in (
        "tc_store_operation_latency_seconds_bucket",
        "tc_store_operation_errors_total",
        "tc_store_operation_retries_total",
        "tc_store_artifact_cache_hits_total",
        "tc_store_artifact_cache_misses_total",
        "tc_store_artifact_cache_evictions_total",
        "tc_store_artifact_cache_invalidations_total",
    ):
        assert name in text, name


def test_cache_counters_count() -> None:
    for event in _metrics.CACHE_EVENTS:
        before = sample(f"tc_store_artifact_cache_{event}_total")
        _metrics.record_cache(event, 2)
        assert sample(f"tc_store_artifact_cache_{event}_total") == before + 2


def test_reloading_the_module_keeps_one_set_of_collectors() -> None:
    before = sample("tc_store_operation_retries_total", {"verb": "t_reload"})
    _metrics.record_retry("t_reload")
    reloaded = importlib.reload(_metrics)
    reloaded.record_retry("t_reload")
    assert sample("tc_store_operation_retries_total", {"verb": "t_reload"}) == before + 2


def test_failure_logs_carry_key_and_artifact_id(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="tensorwasm_tc.tensorcast.store"),
        pytest.raises(ArtifactError),
        _metrics.operation("get", key="model:v1", artifact_id="abc"),
    ):
        raise ArtifactError("gone", "DATA_LOSS")
    rec = next(r for r in caplog.records if "gone" in r.getMessage())
    assert getattr(rec, "tc.store.key") == "model:v1"
    assert getattr(rec, "tc.store.artifact_id") == "abc"
