"""The gateway's spans: one server span per HTTP request (continuing a W3C
``traceparent``), and a ``tensor_wasm.invoke`` child per invoke, made on the
executor thread from the context the request captured.

Only called while `tensorwasm_tc._tracing.ENABLED` is true (the caller
checks, so tracing off costs one boolean test per request). Never raises:
a telemetry failure leaves the request alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any, Final

from tensorwasm_tc import _tracing

log = logging.getLogger("tensorwasm_tc.gateway")

INVOKE_SPAN: Final = "tensor_wasm.invoke"
# The middleware's template for a path that matches no route.
_UNMATCHED: Final = "unknown"


class RequestSpan:
    """The server span of one request and the context token that makes it
    current while the request runs."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any, token: object) -> None:
        self.span = span
        self.token = token


def start_request(
    method: str,
    route: str,
    request_id: str,
    headers: dict[str, str],
    scope: MutableMapping[str, Any],
) -> RequestSpan | None:
    """Starts the request's server span (child of the caller's
    ``traceparent`` when it sent one) and makes it current."""
    try:
        api = _tracing.API
        parent = api.propagate.extract(headers)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "tensor_wasm.request.id": request_id,
        }
        if route != _UNMATCHED:
            attributes["http.route"] = route
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        agent = headers.get("user-agent")
        if agent:
            attributes["user_agent.original"] = agent
        span = _tracing.TRACER.start_span(
            f"{method} {route}" if route != _UNMATCHED else method,
            context=parent,
            kind=api.SpanKind.SERVER,
            attributes=attributes,
        )
        token = api.context.attach(api.trace.set_span_in_context(span, parent))
        return RequestSpan(span, token)
    except Exception:
        log.debug("request span could not start", exc_info=True)
        return None


def end_request(traced: RequestSpan, status: int, state: dict[str, Any]) -> None:
    """Ends the span with what the request came to: status, tenant, the
    resources it named and its error kind (5xx also sets an ERROR status)."""
    span = traced.span
    try:
        _tracing.API.context.detach(traced.token)
        span.set_attribute("http.response.status_code", status)
        resources = state.get("audit") or {}
        tenant = resources.get("tenant_id")
        if tenant is not None:
            span.set_attribute("tensor_wasm.tenant.id", tenant)
        for key in ("function_id", "instance_id"):
            if resources.get(key):
                span.set_attribute(f"tensor_wasm.{key.replace('_id', '.id')}", resources[key])
        kind = state.get("error_kind")
        if kind:
            span.set_attribute("error.type", kind)
            span.set_attribute("tensor_wasm.error.kind", kind)
        if status >= 500:
            api = _tracing.API
            span.set_status(api.Status(api.StatusCode.ERROR, kind or str(status)))
    except Exception:
        log.debug("request span could not be completed", exc_info=True)
    finally:
        span.end()


def current_context() -> Any:
    """The calling thread's context (the request's), to hand to the
    executor thread that runs the invoke."""
    return _tracing.API.context.get_current()


def traced_invoke(
    parent: Any,
    call: Callable[[], bytes],
    function_id: str,
    export: str | None,
    instance_id: str | None,
    error_kind: Callable[[BaseException], str],
) -> bytes:
    """Runs `call` (on the executor thread) inside a ``tensor_wasm.invoke``
    span, child of `parent`, current while it runs so the TensorCast verbs
    that bind the function's artifacts nest under it."""
    api = _tracing.API
    span: Any = None
    token: object = None
    try:
        attributes: dict[str, Any] = {"tensor_wasm.function.id": function_id}
        # None: the executor's default (_start, then main); left out.
        if export is not None:
            attributes["tensor_wasm.invoke.export"] = export
        if instance_id is not None:
            attributes["tensor_wasm.instance.id"] = instance_id
        span = _tracing.TRACER.start_span(INVOKE_SPAN, context=parent, attributes=attributes)
        token = api.context.attach(api.trace.set_span_in_context(span, parent))
    except Exception:
        log.debug("invoke span could not start", exc_info=True)
    if span is None:
        return call()
    try:
        return call()
    except BaseException as exc:
        try:
            _tracing.mark_error(span, error_kind(exc), getattr(exc, "message", ""))
        except Exception:
            log.debug("invoke span error not recorded", exc_info=True)
        raise
    finally:
        try:
            if token is not None:
                api.context.detach(token)
        finally:
            span.end()


def record_duration(duration_ms: float) -> None:
    """Puts the guest's own run time on the current invoke span."""
    try:
        span = _tracing.API.trace.get_current_span()
        span.set_attribute("tensor_wasm.invoke.duration_ms", float(duration_ms))
    except Exception:
        log.debug("invoke duration not recorded", exc_info=True)
