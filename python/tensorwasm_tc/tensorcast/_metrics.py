"""SDK-side observability: Prometheus metrics, OpenTelemetry spans and log
context of Store verbs.

Metrics live on prometheus_client's default registry (the application's own
``/metrics`` exposes them) and are registered once per process, even when
this module is reloaded. Spans go through the OpenTelemetry *API* only when
``opentelemetry`` is importable; without it, or without an SDK configured by
the application, they cost nothing. This module never configures exporters
and never raises because of telemetry.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Final, Literal, TypeVar

from prometheus_client import REGISTRY, Counter, Histogram

from tensorwasm_tc.tensorcast.errors import ArtifactError

__all__ = [
    "CACHE_EVENTS",
    "SPAN_NAMES",
    "Operation",
    "operation",
    "record_cache",
    "record_retry",
    "span_name",
]

log = logging.getLogger("tensorwasm_tc.tensorcast.store")

#: Span names of the upstream SDK, by verb.
SPAN_NAMES: Final[dict[str, str]] = {
    "register": "Store/Register",
    "put": "Store/Put",
    "get": "Store/Get",
    "get_into": "Store/GetInto",
}

CacheEvent = Literal["hits", "misses", "evictions", "invalidations"]
CACHE_EVENTS: Final = ("hits", "misses", "evictions", "invalidations")

# Store verbs run from microseconds (a zero-copy local get) to minutes (a
# multi-GiB peer pull), hence the wide range.
_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)

_C = TypeVar("_C", Counter, Histogram)


def _registered(cls: type[_C], name: str, doc: str, labels: tuple[str, ...], **kw: Any) -> _C:
    """The collector called ``name`` on the default registry, created on first
    use; a reload of this module (or a second import path) reuses it instead
    of failing with "Duplicated timeseries"."""
    existing = REGISTRY._names_to_collectors.get(name)
    if isinstance(existing, cls):
        return existing
    return cls(name, doc, labels, registry=REGISTRY, **kw)


OPERATION_LATENCY: Final = _registered(
    Histogram,
    "tc_store_operation_latency_seconds",
    "Latency of TensorCast Store verbs, retries included, by verb",
    ("verb",),
    buckets=_LATENCY_BUCKETS,
)
OPERATION_ERRORS: Final = _registered(
    Counter,
    "tc_store_operation_errors",
    "Store verbs that failed, by verb and gRPC status code name",
    ("verb", "status"),
)
OPERATION_RETRIES: Final = _registered(
    Counter,
    "tc_store_operation_retries",
    "Retries of Store verbs after a transient failure, by verb",
    ("verb",),
)
_CACHE: Final[dict[str, Counter]] = {
    event: _registered(
        Counter,
        f"tc_store_artifact_cache_{event}",
        f"Artifact cache {event} seen by the SDK",
        (),
    )
    for event in CACHE_EVENTS
}


def collectors() -> list[Counter | Histogram]:
    """Every ``tc_store_*`` collector, for an application that serves its
    own registry (they live on prometheus_client's default one)."""
    return [OPERATION_LATENCY, OPERATION_ERRORS, OPERATION_RETRIES, *_CACHE.values()]


def span_name(verb: str) -> str:
    """``Store/<Verb>``: the upstream names for the four data verbs, the same
    CamelCase rule for any other."""
    return SPAN_NAMES.get(verb) or "Store/" + "".join(p.title() for p in verb.split("_"))


def record_retry(verb: str) -> None:
    OPERATION_RETRIES.labels(verb=verb).inc()


def record_cache(event: CacheEvent, count: int = 1) -> None:
    """Counts artifact cache hits/misses/evictions/invalidations."""
    _CACHE[event].inc(count)


class Operation:
    """The handle ``operation()`` yields: lets the verb attach what it learns
    while running (the artifact id a register produced, where a get was
    served from) to the span and to the log context."""

    __slots__ = ("_span", "artifact_id", "key", "verb")

    def __init__(self, verb: str, key: str | None, artifact_id: str | None, span: Any) -> None:
        self.verb = verb
        self.key = key
        self.artifact_id = artifact_id
        self._span = span

    def log_extra(self) -> dict[str, Any]:
        """``extra=`` for log records about this operation."""
        return {
            "tc.store.verb": self.verb,
            "tc.store.key": self.key or "",
            "tc.store.artifact_id": self.artifact_id or "",
        }

    def set_artifact_id(self, artifact_id: str) -> None:
        self.artifact_id = artifact_id
        self.set_attribute("tc.store.artifact_id", artifact_id)

    def set_attribute(self, name: str, value: str | int | float | bool) -> None:
        if self._span is not None:
            with contextlib.suppress(Exception):
                self._span.set_attribute(name, value)


_UNRESOLVED: Final = object()
_otel_trace: Any = _UNRESOLVED


def _trace_api() -> ModuleType | None:
    """``opentelemetry.trace`` if importable (looked up once; a module already
    in ``sys.modules`` always wins), else None."""
    global _otel_trace
    mod = sys.modules.get("opentelemetry.trace")
    if isinstance(mod, ModuleType):
        return mod
    if _otel_trace is _UNRESOLVED:
        try:
            _otel_trace = importlib.import_module("opentelemetry.trace")
        except ImportError:
            _otel_trace = None
    return _otel_trace if isinstance(_otel_trace, ModuleType) else None


@contextlib.contextmanager
def _span(verb: str, attributes: dict[str, str]) -> Iterator[Any]:
    api = _trace_api()
    if api is None:
        yield None
        return
    try:
        tracer = api.get_tracer("tensorwasm_tc.tensorcast")
        cm = tracer.start_as_current_span(
            span_name(verb), attributes=attributes, record_exception=False
        )
        span = cm.__enter__()
    except Exception:  # telemetry must never break a verb
        log.debug("OpenTelemetry span could not start", exc_info=True)
        yield None
        return
    exc_info: tuple[Any, Any, Any] = (None, None, None)
    try:
        yield span
    except BaseException as exc:
        exc_info = (type(exc), exc, exc.__traceback__)
        with contextlib.suppress(Exception):
            _mark_error(api, span, exc)
        raise
    finally:
        with contextlib.suppress(Exception):
            cm.__exit__(*exc_info)


def _mark_error(api: ModuleType, span: Any, exc: BaseException) -> None:
    if isinstance(exc, ArtifactError):
        span.set_attribute("tc.store.status_code", exc.status_code)
        span.set_attribute("tc.store.retryable", bool(exc.retryable))
    span.record_exception(exc)
    status_cls = getattr(api, "Status", None)
    code_cls = getattr(api, "StatusCode", None)
    if status_cls is not None and code_cls is not None:
        span.set_status(status_cls(code_cls.ERROR, str(exc)))


@contextlib.contextmanager
def operation(
    verb: str, *, key: str | None = None, artifact_id: str | None = None
) -> Iterator[Operation]:
    """Wraps one Store verb (retries included): records
    ``tc_store_operation_latency_seconds{verb}``, counts
    ``tc_store_operation_errors_total{verb,status}`` when an `ArtifactError`
    escapes, and opens the span ``Store/<Verb>`` when OpenTelemetry is
    importable. Log records carry ``tc.store.key`` / ``tc.store.artifact_id``."""
    attributes = {"tc.store.verb": verb}
    if key:
        attributes["tc.store.key"] = key
    if artifact_id:
        attributes["tc.store.artifact_id"] = artifact_id
    start = time.perf_counter()
    with _span(verb, attributes) as span:
        op = Operation(verb, key, artifact_id, span)
        try:
            yield op
        except ArtifactError as err:
            OPERATION_ERRORS.labels(verb=verb, status=err.status_code).inc()
            log.warning(
                "%s failed: %s (%s, retryable=%s)",
                verb,
                err.message,
                err.status_code,
                err.retryable,
                extra=op.log_extra(),
            )
            raise
        finally:
            OPERATION_LATENCY.labels(verb=verb).observe(time.perf_counter() - start)
        log.debug("%s done", verb, extra=op.log_extra())
