"""`create_app(config)`: the FastAPI application behind `tensor-wasm serve`.

One pure-ASGI middleware does what every request needs, in this order:
request id, route template, metrics, concurrency class caps, body-size cap,
authentication, rate limit, acting tenant, request timeout, the handler,
and the audit record. Handlers only do their route's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import re
import secrets
import threading
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    MutableMapping,
    Sequence,
)
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from tensorwasm_tc import Function, Runtime, TensorWasmError, __version__, _core, _tracing
from tensorwasm_tc.gateway import tracing
from tensorwasm_tc.gateway.artifacts import TensorCastLink
from tensorwasm_tc.gateway.audit import AuditLog
from tensorwasm_tc.gateway.auth import (
    TENANT_HEADER,
    Authenticator,
    Principal,
    load_or_create_key,
    parse_tenant,
)
from tensorwasm_tc.gateway.config import GatewayConfig
from tensorwasm_tc.gateway.errors import STATUS, ApiError, error_response, from_core
from tensorwasm_tc.gateway.metrics import Metrics
from tensorwasm_tc.gateway.models import ErrorEnvelope, InvokeRequest
from tensorwasm_tc.gateway.ratelimit import RateLimiter
from tensorwasm_tc.gateway.registry import FunctionRecord, Registry, now_ms
from tensorwasm_tc.gateway.routes import _invoke

log = logging.getLogger("tensorwasm_tc.gateway")
T = TypeVar("T")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes that need no token (probes, metrics with their own token, docs).
OPEN_ROUTES: Final = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"}
)
AUDITED: Final[dict[tuple[str, str], str]] = {
    ("POST", "/functions"): "create_function",
    ("DELETE", "/functions/{id}"): "delete_function",
    ("POST", "/functions/{id}/invoke"): "invoke_function",
    ("POST", "/functions/{id}/invoke-async"): "invoke_function_async",
    ("POST", "/instances"): "create_instance",
    ("DELETE", "/instances/{id}"): "delete_instance",
    ("POST", "/instances/{id}/invoke"): "invoke_instance",
    ("POST", "/instances/{id}/snapshot"): "snapshot_instance",
    ("POST", "/instances/restore"): "restore_instance",
}
# GET listings that, without X-TensorWasm-Tenant, show every tenant the token
# may act for (so they skip the acting-tenant scope check).
LIST_ROUTES: Final = frozenset({"/functions", "/instances"})
# POST routes whose body is not JSON.
BINARY_BODY_ROUTES: Final = frozenset({"/instances/restore", "/instances/{id}/snapshot"})
# The one route whose body may be larger than TENSOR_WASM_API_MAX_BODY_BYTES
# (TENSOR_WASM_API_MAX_SNAPSHOT_BYTES instead); it spools the body to disk.
RESTORE_ROUTE: Final = "/instances/restore"
FAST_INVOKE: Final = "/functions/{id}/invoke"
INVOKE_ROUTES: Final = frozenset(
    {"/functions/{id}/invoke", "/functions/{id}/invoke-async", "/instances/{id}/invoke"}
)
# Request ids: a random per-process prefix and a counter (unique without a
# getrandom(2) call per request), 32 hex digits like a client-sent UUID.
_REQUEST_ID_PREFIX: Final = secrets.token_hex(8)
_request_ids = (f"{_REQUEST_ID_PREFIX}{n:016x}" for n in itertools.count(1))
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# Set by the native front on every request it forwards (see _peer).
PEER_HEADER: Final = "x-tensorwasm-peer"
# GatewayMiddleware's cache of route templates (see _template).
_TEMPLATE_CACHE_SIZE: Final = 4096
_TEMPLATE_CACHE_PATH_MAX: Final = 256


@dataclass
class Gateway:
    """Everything the handlers share; one per app."""

    config: GatewayConfig
    registry: Registry
    auth: Authenticator
    limiter: RateLimiter | None
    audit: AuditLog
    metrics: Metrics
    pool: ThreadPoolExecutor
    link: TensorCastLink
    ready: bool = False
    stopping: bool = False
    stop_requested_at: float | None = None
    jobs: dict[str, Future[Any]] = field(default_factory=dict)
    jobs_lock: threading.Lock = field(default_factory=threading.Lock)
    # Concurrency caps per route class (the invoke slots are shared with
    # the native front).
    slots: dict[str, _core.Slots] = field(init=False)
    # The native front serving this app's port (`server.serve`), if any:
    # requests then arrive over its Unix socket, with the client's address
    # in X-TensorWasm-Peer.
    front: _core.Front | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        self.slots = {
            "invoke": _core.Slots(cfg.max_concurrent_invokes),
            "writes": _core.Slots(cfg.max_concurrent_writes),
            "reads": _core.Slots(cfg.max_concurrent_reads),
        }

    @property
    def snapshot_dir(self) -> Path:
        """Where snapshots are spooled while they are written or uploaded."""
        return self.config.home / "gateway" / "snapshots"

    def runtime_for(self, limits: dict[str, int]) -> Runtime:
        cfg = self.config
        return Runtime(
            max_memory_bytes=limits["max_memory_bytes"],
            deadline_ms=limits["deadline_ms"],
            cache_dir=cfg.home / "modules",
            # The config is the one source: no key there means none at all,
            # never one picked up from this process's environment.
            snapshot_key=cfg.snapshot_key if cfg.snapshot_key is not None else False,
            require_signature=cfg.snapshot_require_signature,
        )

    def function_for(self, rec: FunctionRecord) -> Function:
        """The function to run for `rec` (executor thread): its compiled
        function, or, when it binds artifacts, that function loaded against
        the artifacts its keys name now (424 artifact_unavailable when they
        cannot be had)."""
        if not rec.artifacts:
            if rec.fn is None:
                raise ApiError("internal", "the function failed to load on this server")
            return rec.fn
        wasm = rec.wasm
        if wasm is None:
            raise ApiError("internal", "the function failed to load on this server")
        runtime = self.runtime_for(rec.limits)

        def load(bindings: dict[str, dict[str, Any]]) -> Function:
            try:
                return runtime.load(wasm, bindings=bindings, init_export=rec.init_export)
            except TensorWasmError as err:
                raise from_core(err) from None

        return self.link.function(rec.id, rec.artifacts, load)

    def clear_snapshot_spool(self) -> None:
        """Removes spool files a crashed process left behind (between writing
        a snapshot and streaming it, or mid-upload). Only files older than
        the request timeout go: no live request of another process sharing
        this home can still be using them."""
        directory = self.snapshot_dir
        # Snapshots hold tenants' memory: the directory is the server's alone.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        cutoff = time.time() - self.config.request_timeout_s
        for leftover in directory.iterdir():
            with contextlib.suppress(OSError):
                if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def load_stored_functions(self) -> None:
        loaded = failed = 0
        self.clear_snapshot_spool()
        for rec, wasm in self.registry.stored_functions():
            try:
                # A pre-initialised function runs its init_export here, once
                # per process, and every instance starts from that image. One
                # bound to artifacts is only compiled here: it is loaded with
                # its artifacts (and initialised) on first use.
                init = None if rec.artifacts else rec.init_export
                rec.fn = self.runtime_for(rec.limits).load(wasm, init_export=init)
                if rec.artifacts:
                    rec.wasm = wasm
                loaded += 1
            except Exception as err:
                failed += 1
                log.error("function %s (%s) failed to load: %s", rec.id, rec.name, err)
            self.registry.publish(rec)
        if loaded or failed:
            log.info("registry: %d function(s) loaded, %d failed", loaded, failed)
        if self.registry.interrupted_at_open:
            log.warning(
                "registry: %d job(s) left unfinished by the previous run marked interrupted",
                self.registry.interrupted_at_open,
            )

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs blocking work (an invoke, a compile) on the executor pool."""
        loop = asyncio.get_running_loop()
        if _tracing.ENABLED:
            # Executor threads do not inherit the request's context: hand it
            # over, so spans made there (TensorCast verbs binding artifacts
            # at deploy) nest under the request's.
            return await loop.run_in_executor(self.pool, contextvars.copy_context().run, fn, *args)
        return await loop.run_in_executor(self.pool, fn, *args)


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, routes: list[Any]) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._routes = [(r, r.path) for r in routes if hasattr(r, "path")]
        # (method, root_path, path) -> _template's answer. The route table is
        # fixed once the app is built, so an answer never goes stale; the
        # cache is bounded (cleared when full, short paths only) because
        # paths come from clients.
        self._templates: dict[tuple[str, str, str], tuple[str, bool]] = {}

    def _template(self, scope: Scope) -> tuple[str, bool]:
        """The route template for the path, and whether the method matches."""
        key = (scope["method"], scope.get("root_path", ""), scope["path"])
        known = self._templates.get(key)
        if known is not None:
            return known
        partial: str | None = None
        found: tuple[str, bool] | None = None
        for route, path in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                found = (path, True)
                break
            if match is Match.PARTIAL and partial is None:
                partial = path
        if found is None:
            found = (partial, False) if partial is not None else ("unknown", False)
        if len(scope["path"]) <= _TEMPLATE_CACHE_PATH_MAX:
            if len(self._templates) >= _TEMPLATE_CACHE_SIZE:
                self._templates.clear()
            self._templates[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gw: Gateway = self.fastapi_app.state.gw
        cfg = gw.config
        start = time.perf_counter()
        method: str = scope["method"]
        route, method_ok = self._template(scope)
        headers = _headers(scope)
        rid = headers.get("x-request-id", "")
        if not _REQUEST_ID.match(rid):
            rid = next(_request_ids)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        state["audit"] = _path_resources(route, scope["path"])
        action = AUDITED.get((method, route)) if method_ok else None
        # The server span (current while the request runs); tracing off
        # costs this one test, no span is made.
        traced = (
            tracing.start_request(method, route, rid, headers, scope) if _tracing.ENABLED else None
        )
        status_box = [500]
        extra_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", rid.encode())]
        principal: Principal | None = None
        audited = False

        def write_audit() -> None:
            # Once per request, before the response's last body chunk goes
            # out: a client that has its response finds the line written.
            nonlocal audited
            if action is None or audited:
                return
            audited = True
            actor = principal
            if actor is None:
                # Refused before authentication (caps, body size): still
                # name the caller when its token is valid.
                authz = headers.get("authorization")
                try:
                    actor = gw.auth.authenticate(authz)
                except ApiError:
                    actor = gw.auth.anonymous(authz)
            audit = state["audit"]
            gw.audit.write(
                {
                    "ts_unix_ms": now_ms(),
                    "request_id": rid,
                    "actor": actor.audit_actor(),
                    "action": action,
                    "resource": {
                        "function_id": audit.get("function_id"),
                        "instance_id": audit.get("instance_id"),
                        "tenant_id": audit.get("tenant_id"),
                    },
                    "outcome": {
                        "status_code": status_box[0],
                        "error_kind": state.get("error_kind"),
                    },
                    "latency_ms": round((time.perf_counter() - start) * 1000, 3),
                    "peer_addr": _peer(gw, scope, headers),
                }
            )

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                message["headers"] = list(message.get("headers", [])) + extra_headers
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                write_audit()
            await send(message)

        stats = gw.metrics.stats
        stats.begin(method, route)
        klass = (
            "invoke"
            if route in INVOKE_ROUTES
            else ("reads" if method in ("GET", "HEAD") else "writes")
        )
        slots = gw.slots[klass]
        counted = False
        try:
            try:
                # Concurrency caps per route class.
                if not slots.try_acquire():
                    raise ApiError(
                        "overloaded",
                        f"too many concurrent {klass} requests; retry shortly",
                        headers={"Retry-After": "1"},
                    )
                counted = True
                # Body size: declared length first, then counted while read.
                cap = (
                    cfg.max_snapshot_bytes
                    if route == RESTORE_ROUTE and method_ok
                    else cfg.max_body_bytes
                )
                length = headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > cap):
                    raise ApiError("body_too_large", f"request bodies are limited to {cap} bytes")
                receive = _capped_receive(receive, cap, state)
                if method == "POST" and route not in BINARY_BODY_ROUTES and method_ok:
                    ctype = headers.get("content-type")
                    if ctype is not None and not _is_json(ctype):
                        raise ApiError(
                            "unsupported_media_type",
                            "send the request body as JSON with Content-Type: application/json",
                        )
                if route not in OPEN_ROUTES and method_ok:
                    authz = headers.get("authorization")
                    try:
                        principal = gw.auth.authenticate(authz)
                    except ApiError:
                        principal = gw.auth.anonymous(authz)
                        raise
                    if gw.limiter is not None:
                        key = principal.token_id or principal.kind
                        decision = gw.limiter.check(key)
                        extra_headers.extend(
                            (k.lower().encode(), v.encode()) for k, v in decision.headers.items()
                        )
                        if not decision.allowed:
                            stats.limited()
                            raise ApiError("rate_limited", "rate limit exceeded for this token")
                    tenant = parse_tenant(headers.get(TENANT_HEADER), required=cfg.require_tenant)
                    given = TENANT_HEADER in headers
                    state["audit"]["tenant_id"] = tenant
                    listing = method == "GET" and route in LIST_ROUTES and not given
                    if not principal.allows(tenant) and not listing:
                        raise ApiError(
                            "tenant_scope_denied",
                            f"this token may not act for tenant {tenant}",
                        )
                    state["principal"] = principal
                    state["tenant"] = tenant
                    state["tenant_given"] = given
                try:
                    async with asyncio.timeout(cfg.request_timeout_s):
                        if route == FAST_INVOKE and method_ok and principal is not None:
                            await _fast_invoke(gw, scope, receive, send_wrapped)
                        else:
                            await self.app(scope, receive, send_wrapped)
                except TimeoutError:
                    if status_box[0] == 500 and not state.get("started"):
                        raise ApiError(
                            "request_timeout", "the request took longer than the server allows"
                        ) from None
                    raise
            except ApiError as err:
                state["error_kind"] = err.kind
                await error_response(err.kind, err.message, headers=err.headers)(
                    scope, receive, send_wrapped
                )
        except Exception:
            log.exception("unhandled error in %s %s", method, route)
            state["error_kind"] = "internal"
            if status_box[0] == 500:
                await error_response("internal", "internal server error")(
                    scope, receive, send_wrapped
                )
        finally:
            if counted:
                slots.release()
            status = status_box[0]
            stats.end(method, route, status, time.perf_counter() - start)
            write_audit()  # when no response went out (a disconnected client)
            if traced is not None:
                tracing.end_request(traced, status, state)


def _peer(gw: Gateway, scope: Scope, headers: dict[str, str]) -> str | None:
    """The client's ``host:port``: from the front's X-TensorWasm-Peer when
    the front serves this app (only it can reach the app's socket), else
    from the connection."""
    if gw.front is not None:
        return headers.get(PEER_HEADER)
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def _path_resources(route: str, path: str) -> dict[str, Any]:
    """Ids named by the path, for audit records of refused requests too."""
    if route.startswith("/functions/{id}"):
        return {"function_id": path.split("/")[2]}
    if route.startswith("/instances/{id}"):
        return {"instance_id": path.split("/")[2]}
    return {}


def _is_json(ctype: str) -> bool:
    media = ctype.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope["headers"]:
        out[k.decode("latin-1")] = v.decode("latin-1")
    return out


def _capped_receive(receive: Receive, cap: int, state: dict[str, Any]) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                state["body_too_large"] = True
                raise ApiError("body_too_large", f"request bodies are limited to {cap} bytes")
        return message

    return wrapped


# --- exception handlers -----------------------------------------------------


def _record(request: Request, kind: str) -> None:
    request.state.error_kind = kind


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    _record(request, exc.kind)
    return error_response(exc.kind, exc.message, headers=exc.headers)


def validation_failure(errors: Sequence[Any]) -> ApiError:
    """The envelope for a request body that failed its model."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError("invalid_json", "the request body is not valid JSON")
    first = errors[0] if errors else {}
    path = [str(p) for p in first.get("loc", ()) if p != "body"]
    loc = ".".join(path)
    kind = "invalid_tensor" if path[:1] == ["inputs"] and len(path) > 1 else "invalid_args"
    return ApiError(kind, f"{loc or 'body'}: {first.get('msg', 'invalid value')}")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    err = validation_failure(exc.errors())
    _record(request, err.kind)
    return error_response(err.kind, err.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if getattr(request.state, "body_too_large", False):
        kind, message = "body_too_large", "the request body is larger than the server allows"
    elif exc.status_code == 404:
        kind, message = "not_found", "no such route"
    elif exc.status_code == 405:
        kind, message = "method_not_allowed", "method not allowed on this route"
    elif exc.status_code == 400:
        kind, message = "invalid_json", "the request body could not be read"
    else:
        kind, message = "internal", "request failed"
    _record(request, kind)
    return error_response(kind, message, status=STATUS.get(kind, exc.status_code))


async def _unhandled(request: Request, exc: Exception) -> Response:
    log.error("internal error: %s", type(exc).__name__, exc_info=exc)
    _record(request, "internal")
    return error_response("internal", "internal server error")


# --- OpenAPI ------------------------------------------------------------------

_ERROR_STATUSES: Final = {
    "400": "Bad request (invalid_json, invalid_args, missing_tenant, ...)",
    "401": "unauthorized",
    "403": "tenant_scope_denied",
    "404": "not_found",
    "413": "body_too_large",
    "429": "rate_limited",
    "500": "internal",
    "503": "overloaded, resource_exhausted",
    "504": "request_timeout",
}


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title="tensorwasm_tc gateway",
            version=__version__,
            description="Sandboxed tensor functions over HTTP. Errors are "
            '`{"error": {"kind", "message"}}`; see docs/API.md.',
            routes=app.routes,
        )
        comps = schema.setdefault("components", {})
        comps.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
        schemas = comps.setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
        # No route returns the envelope model, so FastAPI did not emit it.
        error_schema = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in error_schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas["ErrorEnvelope"] = error_schema
        for path, ops in schema.get("paths", {}).items():
            for _method, op in ops.items():
                responses = op.setdefault("responses", {})
                responses.pop("422", None) if "422" in responses and _is_default_422(
                    responses["422"]
                ) else None
                for code, desc in _ERROR_STATUSES.items():
                    responses.setdefault(
                        code,
                        {"description": desc, "content": {"application/json": {"schema": ref}}},
                    )
                # Route-declared error statuses (422 trap, 501, ...) carry the envelope too.
                for code, resp in responses.items():
                    if code[0] in "45" and "content" not in resp:
                        resp["content"] = {"application/json": {"schema": ref}}
                responses.setdefault(
                    "405",
                    {
                        "description": "method_not_allowed",
                        "content": {"application/json": {"schema": ref}},
                    },
                )
                if path not in OPEN_ROUTES:
                    op["security"] = [{"bearer": []}]
                    params = op.setdefault("parameters", [])
                    params.append(
                        {
                            "name": "X-TensorWasm-Tenant",
                            "in": "header",
                            "required": False,
                            "description": "Acting tenant (u64, default 0)",
                            "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"},
                        }
                    )
                params = op.setdefault("parameters", [])
                params.append(
                    {
                        "name": "X-Request-Id",
                        "in": "header",
                        "required": False,
                        "description": "Echoed back; generated when absent",
                        "schema": {"type": "string"},
                    }
                )
        app.openapi_schema = schema
        return schema

    return build


def _is_default_422(resp: dict[str, Any]) -> bool:
    content = resp.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(content.get("$ref", "").endswith("/HTTPValidationError"))


# --- the factory ------------------------------------------------------------


def create_app(config: GatewayConfig | None = None) -> FastAPI:
    """The gateway app. Its lifespan opens the registry, loads functions and,
    on shutdown, waits (bounded) for async jobs and flushes everything."""
    cfg = config or GatewayConfig.from_env()
    cfg.home.mkdir(parents=True, exist_ok=True)
    cfg.log_startup()
    registry = Registry(cfg.home, table=_core.FunctionTable())

    def active_instances() -> int:
        return len(registry.instances)

    def jobs_in_flight() -> int:
        return registry.jobs_in_flight

    link = TensorCastLink(cfg.tensorcast_mode, cfg.tensorcast_address)  # type: ignore[arg-type]
    gw = Gateway(
        config=cfg,
        registry=registry,
        auth=Authenticator(cfg, load_or_create_key(cfg.home)),
        limiter=RateLimiter(cfg.rate_limit_qps, cfg.rate_limit_burst) if cfg.rate_limited else None,
        audit=AuditLog(cfg.audit_log),
        metrics=Metrics(active_instances, jobs_in_flight, link.status),
        pool=ThreadPoolExecutor(max_workers=cfg.threads, thread_name_prefix="tw-exec"),
        link=link,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before anything that may make spans; flushed after everything.
        traces = _tracing.setup(cfg.tracing)
        try:
            await asyncio.get_running_loop().run_in_executor(gw.pool, gw.load_stored_functions)
            gw.link.start_background()
            gw.ready = True
            log.info("tensor-wasm %s ready (home %s)", __version__, cfg.home)
            try:
                yield
            finally:
                await _shutdown(gw)
        finally:
            if traces is not None:
                traces.shutdown()

    app = FastAPI(
        title="tensorwasm_tc gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        # OpenTelemetry off: /metrics is this server's telemetry, and the
        # check alone costs every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gw = gw
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)

    from tensorwasm_tc.gateway.routes import functions, instances, jobs, system

    routers = (system.router, functions.router, instances.router, jobs.router)
    # The routers' routes go straight into the app's route list: included
    # routers would be matched as nested routers, one extra pass each.
    for router in routers:
        app.router.routes.extend(router.routes)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    table = [r for r in app.router.routes if hasattr(r, "path")]
    app.add_middleware(GatewayMiddleware, fastapi_app=app, routes=table)
    return app


async def _shutdown(gw: Gateway) -> None:
    """Bounded wait for async jobs, then flush and close everything."""
    gw.stopping = True
    gw.ready = False
    if gw.front is not None:
        # Invokes the front is serving finish (bounded by the grace) before
        # the audit log and the registry close under them.
        grace = gw.config.shutdown_grace_s
        if gw.stop_requested_at is not None:
            grace -= time.monotonic() - gw.stop_requested_at
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, gw.front.drain, max(grace, 0.001)):
            log.warning("shutdown: connections of the native front still open; closed")
    with gw.jobs_lock:
        pending = list(gw.jobs.values())
    if pending:
        log.info(
            "shutdown: waiting up to %gs for %d async job(s)",
            gw.config.shutdown_grace_s,
            len(pending),
        )
        wrapped = [asyncio.wrap_future(f) for f in pending]
        grace = gw.config.shutdown_grace_s
        if gw.stop_requested_at is not None:
            grace -= time.monotonic() - gw.stop_requested_at
        _done, not_done = await asyncio.wait(wrapped, timeout=max(grace, 0.001))
        if not_done:
            log.warning("shutdown: %d job(s) did not finish; marked interrupted", len(not_done))
    unfinished = gw.registry.unfinished_jobs()
    if unfinished:
        gw.registry.interrupt_jobs(unfinished)
    gw.pool.shutdown(wait=False, cancel_futures=True)
    for rec in list(gw.registry.instances.values()):
        rec.instance.close()
    gw.registry.instances.clear()
    gw.link.close()
    gw.audit.flush()
    gw.audit.close()
    gw.registry.close()
    log.info("shutdown complete")


def function_limits(cfg: GatewayConfig, raw: dict[str, int | None] | None) -> dict[str, int]:
    """Per-function limits, defaulted and bounded by the server's caps."""
    raw = raw or {}
    memory = raw.get("max_memory_bytes")
    deadline = raw.get("deadline_ms")
    memory = cfg.default_memory_bytes if memory is None else memory
    deadline = cfg.default_deadline_ms if deadline is None else deadline
    if not 1 << 16 <= memory <= cfg.max_memory_bytes:
        raise ApiError(
            "invalid_args",
            f"limits.max_memory_bytes must be between 65536 and {cfg.max_memory_bytes}",
        )
    if not 1 <= deadline <= cfg.max_deadline_ms:
        raise ApiError(
            "invalid_args", f"limits.deadline_ms must be between 1 and {cfg.max_deadline_ms}"
        )
    return {"max_memory_bytes": memory, "deadline_ms": deadline}


def owned_function(request: Request, function_id: str) -> FunctionRecord:
    """The function, if it exists and belongs to the acting tenant."""
    return _owned_function(request.app.state.gw, request.scope["state"], function_id)


def _owned_function(gw: Gateway, state: dict[str, Any], function_id: str) -> FunctionRecord:
    rec = gw.registry.functions.get(function_id)
    state["audit"]["function_id"] = function_id
    if rec is None:
        raise ApiError("not_found", "no such function")
    if rec.tenant_id != state["tenant"]:
        raise ApiError("tenant_scope_denied", "the function belongs to another tenant")
    return rec


async def _fast_invoke(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /functions/{id}/invoke`` without FastAPI's routing, dependency
    and response layers (the hot path; its FastAPI route documents it and
    gives the same answers). Validation and errors are shared with it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    if not raw:
        raise ApiError("invalid_args", "body: Field required")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError("invalid_json", "the request body is not valid JSON") from None
    try:
        body = InvokeRequest.model_validate(obj)
    except ValidationError as err:
        raise validation_failure(err.errors()) from None
    rec = _owned_function(gw, scope["state"], scope["path"].split("/")[2])
    work = _invoke.invoker(rec, gw.config, gw.metrics.stats.spawned, body, gw.function_for)
    out: bytes = await gw.run(work)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(out)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": out})


def visible(request: Request, records: Iterable[T]) -> list[T]:
    """What a listing shows: the acting tenant's records when the caller sent
    X-TensorWasm-Tenant, else those of every tenant its token may act for."""
    if request.state.tenant_given:
        tenant = request.state.tenant
        return [r for r in records if r.tenant_id == tenant]  # type: ignore[attr-defined]
    allows = request.state.principal.allows
    return [r for r in records if allows(r.tenant_id)]  # type: ignore[attr-defined]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


__all__ = ["Gateway", "create_app"]
