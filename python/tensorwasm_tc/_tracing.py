"""OpenTelemetry tracing of the package's server processes: the gateway
(``tensor-wasm serve``), the Store Daemon and the Global Store.

This module owns the process's tracer provider. `setup` configures it once,
at process start, from the standard ``OTEL_*`` variables (read by
`TracingConfig.from_env`), exporting over OTLP/HTTP, and only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is
set; `Tracing.shutdown` flushes it when the process stops.

`ENABLED` is the one flag hot paths check. While it is False nothing here
creates spans, and nothing from ``opentelemetry`` is imported: the packages
are optional (``pip install 'tensorwasm_tc[otel]'``). Once tracing is on,
telemetry never fails a request: span helpers swallow their own errors.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger("tensorwasm_tc.tracing")

#: True while a tracer provider of this module is installed. Checked once per
#: request by the gateway; everything span-related sits behind it.
ENABLED: bool = False
#: The tracer of the package's own spans (set with ENABLED).
TRACER: Any = None
#: ``opentelemetry`` API modules and names, resolved once at install time so
#: span helpers do no imports per request (set with ENABLED).
API: Any = None

_provider: Any = None
_global_installed = False

DEFAULT_SERVICE_NAME: Final = "tensor-wasm"
DEFAULT_SAMPLER: Final = "parentbased_always_on"
#: OTEL_TRACES_SAMPLER values (the SDK's built-in samplers).
SAMPLERS: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
#: The only OTLP protocol this package exports with (the exporter it ships in
#: its ``otel`` extra).
PROTOCOL: Final = "http/protobuf"
#: Bound on the flush at shutdown, so a collector that is down cannot hold
#: up the process's exit for long.
FLUSH_TIMEOUT_MS: Final = 5000


def _pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """``k1=v1,k2=v2`` (values percent-decoded), as OTEL_RESOURCE_ATTRIBUTES
    and OTEL_EXPORTER_OTLP_HEADERS are written; malformed entries skipped."""
    out: list[tuple[str, str]] = []
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key:
            out.append((urllib.parse.unquote(key), urllib.parse.unquote(value.strip())))
    return tuple(out)


@dataclass(frozen=True)
class TracingConfig:
    """Tracing settings of one process. The default is off."""

    #: Full URL spans are POSTed to (``.../v1/traces``); None: tracing off.
    endpoint: str | None = None
    service_name: str = DEFAULT_SERVICE_NAME
    sampler: str = DEFAULT_SAMPLER
    sampler_arg: float = 1.0
    #: OTLP request headers (often an API key): kept out of repr.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    resource_attributes: tuple[tuple[str, str], ...] = ()
    protocol: str = PROTOCOL
    #: Why tracing is off, for the startup line (empty when on).
    off_reason: str = "OTEL_EXPORTER_OTLP_ENDPOINT is unset"

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        service_name: str = DEFAULT_SERVICE_NAME,
    ) -> TracingConfig:
        """Reads the standard variables. Raises ValueError (naming the
        variable) for a sampler that cannot be used."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str:
            return env.get(name, "").strip()

        resource = _pairs(text("OTEL_RESOURCE_ATTRIBUTES"))
        name = text("OTEL_SERVICE_NAME") or dict(resource).get("service.name") or service_name
        sampler = (text("OTEL_TRACES_SAMPLER") or DEFAULT_SAMPLER).lower()
        if sampler not in SAMPLERS:
            raise ValueError(f"OTEL_TRACES_SAMPLER must be one of {', '.join(SAMPLERS)}")
        arg = 1.0
        if sampler.endswith("traceidratio") and text("OTEL_TRACES_SAMPLER_ARG"):
            try:
                arg = float(text("OTEL_TRACES_SAMPLER_ARG"))
            except ValueError:
                arg = -1.0
            if not 0.0 <= arg <= 1.0:
                raise ValueError("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1")
        headers = _pairs(
            text("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or text("OTEL_EXPORTER_OTLP_HEADERS")
        )
        protocol = (
            text("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or text("OTEL_EXPORTER_OTLP_PROTOCOL")
            or PROTOCOL
        )
        endpoint = text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
        if endpoint is None and text("OTEL_EXPORTER_OTLP_ENDPOINT"):
            base = text("OTEL_EXPORTER_OTLP_ENDPOINT")
            endpoint = base + ("v1/traces" if base.endswith("/") else "/v1/traces")
        exporters = {e.strip().lower() for e in text("OTEL_TRACES_EXPORTER").split(",")} - {""}
        if text("OTEL_SDK_DISABLED").lower() == "true":
            endpoint, off = None, "OTEL_SDK_DISABLED=true"
        elif exporters and "otlp" not in exporters:
            endpoint = None
            off = f"OTEL_TRACES_EXPORTER={text('OTEL_TRACES_EXPORTER')} (only otlp is supported)"
        else:
            off = "" if endpoint is not None else "OTEL_EXPORTER_OTLP_ENDPOINT is unset"
        return cls(
            endpoint=endpoint,
            service_name=name,
            sampler=sampler,
            sampler_arg=arg,
            headers=headers,
            resource_attributes=resource,
            protocol=protocol,
            off_reason=off,
        )

    def describe(self) -> str:
        """The startup line's text."""
        if not self.enabled:
            return f"off ({self.off_reason})"
        ratio = f" {self.sampler_arg:g}" if self.sampler.endswith("traceidratio") else ""
        return (
            f"on, OTLP/HTTP to {self.endpoint} "
            f"(service {self.service_name}, sampler {self.sampler}{ratio})"
        )


class Tracing:
    """The provider `setup` installed; `shutdown` flushes and removes it
    (also run at interpreter exit, for processes that never call it)."""

    def __init__(self, provider: Any, config: TracingConfig) -> None:
        self.provider = provider
        self.config = config
        self._closed = False
        atexit.register(self.shutdown)

    def shutdown(self) -> None:
        """Stops tracing and sends the spans still held, waiting at most
        `FLUSH_TIMEOUT_MS` (the exporter's retries against a collector that
        is down would take longer; what is left then is dropped)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.shutdown)
        if _provider is self.provider:
            uninstall()
        flusher = threading.Thread(target=self._flush, name="tw-otel-flush", daemon=True)
        flusher.start()
        flusher.join(FLUSH_TIMEOUT_MS / 1000)
        if flusher.is_alive():
            log.warning(
                "tracing: spans not sent within %d ms (is %s reachable?); dropped",
                FLUSH_TIMEOUT_MS,
                self.config.endpoint,
            )

    def _flush(self) -> None:
        try:
            self.provider.force_flush(FLUSH_TIMEOUT_MS)
            self.provider.shutdown()
        except Exception:  # the process is stopping: never fail that
            log.warning("tracing: flushing spans at shutdown failed", exc_info=True)


def _sampler(config: TracingConfig) -> Any:
    from opentelemetry.sdk.trace import sampling

    base = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(config.sampler_arg),
    }
    name = config.sampler
    if name.startswith("parentbased_"):
        return sampling.ParentBased(base[name.removeprefix("parentbased_")])
    return base[name]


def setup(config: TracingConfig) -> Tracing | None:
    """Configures tracing for this process as `config` says and logs one line
    saying whether it is on and where spans go. Returns the handle to shut
    it down with, or None when tracing stays off (unset endpoint, packages
    missing, or already configured in this process)."""
    if not config.enabled:
        log.info("tracing: %s", config.describe())
        return None
    if ENABLED:
        log.info("tracing: already configured in this process; %s ignored", config.endpoint)
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as err:
        log.warning(
            "tracing: off: OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry packages "
            "are missing (%s); install tensorwasm_tc[otel]",
            err.name or err,
        )
        return None
    if config.protocol != PROTOCOL:
        log.warning(
            "tracing: OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; exporting over %s",
            config.protocol,
            PROTOCOL,
        )
    from tensorwasm_tc import __version__

    attributes: dict[str, str] = {"service.version": __version__}
    attributes.update(config.resource_attributes)
    attributes["service.name"] = config.service_name
    # Shut down by Tracing (bounded), not by the SDK's own exit hook.
    provider = TracerProvider(
        resource=Resource.create(attributes), sampler=_sampler(config), shutdown_on_exit=False
    )
    exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers) or None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    log.info("tracing: %s", config.describe())
    return Tracing(provider, config)


def setup_from_env(service_name: str) -> Tracing | None:
    """`setup` from this process's environment, for the TensorCast servers:
    a setting that cannot be used is logged and leaves tracing off."""
    try:
        config = TracingConfig.from_env(service_name=service_name)
    except ValueError as err:
        log.error("tracing: off: %s", err)
        return None
    return setup(config)


class _Api:
    """The API names span helpers use, bound once."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace

        self.context = context
        self.propagate = propagate
        self.trace = trace
        self.SpanKind = trace.SpanKind
        self.Status = trace.Status
        self.StatusCode = trace.StatusCode


def install(provider: Any) -> None:
    """Makes `provider` this process's: the package's spans go to it, and so
    do those made through the global API (the TensorCast SDK's ``Store/*``
    verbs) unless the application installed a global provider of its own.
    Tests install an in-memory one this way."""
    global ENABLED, TRACER, API, _provider, _global_installed
    from opentelemetry import trace

    API = _Api()
    _provider = provider
    TRACER = provider.get_tracer("tensorwasm_tc")
    if not _global_installed:
        # The global provider can be set once per process: set a delegate to
        # whichever provider is installed now, so a later setup (another app
        # in this process, a test) is followed too.
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(_delegate(trace))
        else:
            log.info("tracing: a global tracer provider is already set; SDK spans go there")
        _global_installed = True
    ENABLED = True


def uninstall() -> None:
    """Turns the package's tracing off again (the provider is not shut down)."""
    global ENABLED, TRACER, _provider
    ENABLED = False
    TRACER = None
    _provider = None


def _delegate(trace: Any) -> Any:
    class _Delegating(trace.TracerProvider):  # type: ignore[misc]
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            provider = _provider
            if provider is None:
                return trace.NoOpTracer()
            return provider.get_tracer(*args, **kwargs)

    return _Delegating()


def mark_error(span: Any, kind: str, message: str = "") -> None:
    """An error of kind `kind` (the gateway's error kinds): ``error.type``,
    ``tensor_wasm.error.kind`` and an ERROR status."""
    span.set_attribute("error.type", kind)
    span.set_attribute("tensor_wasm.error.kind", kind)
    span.set_status(API.Status(API.StatusCode.ERROR, message or kind))


# --- gRPC servers (Store Daemon, Global Store) ----------------------------


def grpc_server_interceptors() -> list[Any]:
    """``[interceptor]`` making a server span per RPC while tracing is on
    (``[]`` when off: the server then has no per-call overhead at all)."""
    if not ENABLED:
        return []
    import grpc

    class _Spans(grpc.ServerInterceptor):
        def intercept_service(
            self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
        ) -> Any:
            handler = continuation(details)
            if handler is None or not ENABLED:
                return handler
            full = str(details.method)
            service, _, method = full.lstrip("/").rpartition("/")
            metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
            for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
                behavior = getattr(handler, kind)
                if behavior is not None:
                    wrapped = _grpc_traced(
                        behavior, service, method, metadata, streams=kind.endswith("stream")
                    )
                    return handler._replace(**{kind: wrapped})
            return handler

    return [_Spans()]


def _grpc_traced(
    behavior: Callable[[Any, Any], Any],
    service: str,
    method: str,
    metadata: dict[str, str],
    *,
    streams: bool,
) -> Callable[[Any, Any], Any]:
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}

    @contextlib.contextmanager
    def span_for(ctx: Any, current: bool) -> Iterator[Any]:
        span = None
        token = None
        with contextlib.suppress(Exception):
            parent = API.propagate.extract(metadata)
            span = TRACER.start_span(
                f"{service}/{method}",
                context=parent,
                kind=API.SpanKind.SERVER,
                attributes=attributes,
            )
            if current:
                token = API.context.attach(API.trace.set_span_in_context(span, parent))
        try:
            yield span
        except BaseException as exc:
            if span is not None:
                with contextlib.suppress(Exception):
                    span.record_exception(exc)
                    span.set_status(API.Status(API.StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            if span is not None:
                with contextlib.suppress(Exception):
                    if token is not None:
                        API.context.detach(token)
                    code = ctx.code() if hasattr(ctx, "code") else None
                    if code is not None:
                        span.set_attribute("rpc.grpc.status_code", int(code.value[0]))
                        if code.value[0] != 0:
                            span.set_status(API.Status(API.StatusCode.ERROR, code.name))
                    else:
                        span.set_attribute("rpc.grpc.status_code", 0)
                    span.end()

    if streams:
        # The response is iterated by gRPC after the handler returns: the
        # span covers the iteration, and is not made current (a context
        # attached across yields could leak into the thread's next call).
        def traced_stream(request: Any, ctx: Any) -> Iterator[Any]:
            with span_for(ctx, False):
                yield from behavior(request, ctx)

        return traced_stream

    def traced(request: Any, ctx: Any) -> Any:
        with span_for(ctx, True):
            return behavior(request, ctx)

    return traced


__all__ = [
    "ENABLED",
    "Tracing",
    "TracingConfig",
    "grpc_server_interceptors",
    "install",
    "mark_error",
    "setup",
    "setup_from_env",
    "uninstall",
]
