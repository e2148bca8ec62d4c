"""The Global Store gRPC server: the service, its cluster-token and metrics
interceptor, the Prometheus endpoint, and the foreground process loop.

The servicer is thin: it hands each request to `MetadataStore` (``store.py``),
which owns every rule. `StoreError`s become gRPC status codes in one place,
the interceptor; an unexpected exception becomes INTERNAL with a generic
message (the traceback goes to the log, never to the caller).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from types import FrameType
from typing import Any, Final, NoReturn
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tensorwasm_tc import _tracing
from tensorwasm_tc.tensorcast._metrics_http import start_metrics_http
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import (
    global_store_pb2 as pb,
)
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import (
    global_store_pb2_grpc as pb_grpc,
)
from tensorwasm_tc.tensorcast.global_store.config import GlobalStoreConfig
from tensorwasm_tc.tensorcast.global_store.schema import SCHEMA_VERSION
from tensorwasm_tc.tensorcast.global_store.store import MetadataStore, StoreError
from tensorwasm_tc.tensorcast.sessions import (
    SessionRecord,
    pid_alive,
    remove_session,
    session_dir,
    write_session,
)

log = logging.getLogger(__name__)

#: Metadata header that carries the cluster token (lower case: gRPC metadata keys are).
TOKEN_METADATA_KEY: Final = "tensorcast-cluster-token"
#: How often the foreground loop checks the owner process and the session file.
_TICK_S: Final = 1.0


class _Metrics:
    """The Global Store's Prometheus metrics, on a registry of their own (never
    the process-wide default, so an embedding process's metrics stay apart)."""

    def __init__(self, store: MetadataStore, build: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tc_global_store_requests",
            "Global Store RPCs by method and gRPC status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tc_global_store_request_duration_seconds",
            "Global Store RPC handling time.",
            ["method"],
            registry=self.registry,
        )
        alive = Gauge(
            "tc_global_store_workers_alive",
            "Workers whose last heartbeat is within the timeout.",
            registry=self.registry,
        )
        artifacts = Gauge(
            "tc_global_store_artifacts", "Registered artifacts.", registry=self.registry
        )
        keys = Gauge("tc_global_store_keys", "Keys mapped to artifacts.", registry=self.registry)
        info = Gauge(
            "tc_global_store_build_info",
            "Build and schema version of this Global Store (value 1).",
            ["build", "schema_version"],
            registry=self.registry,
        )
        info.labels(build=build, schema_version=str(SCHEMA_VERSION)).set(1)

        def count(i: int) -> Callable[[], float]:
            def read() -> float:
                try:
                    return float(store.counts()[i])
                except StoreError:
                    return float("nan")

            return read

        alive.set_function(count(0))
        artifacts.set_function(count(1))
        keys.set_function(count(2))


class _Interceptor(grpc.ServerInterceptor):
    """Checks the cluster token, maps `StoreError` to a status, counts calls."""

    def __init__(self, cluster_token: str, metrics: _Metrics) -> None:
        self._token = cluster_token.encode()
        self._metrics = metrics

    def _authorised(self, details: grpc.HandlerCallDetails) -> bool:
        if not self._token:
            return True
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                got = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(got, self._token)
        return False

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        metrics = self._metrics

        if not self._authorised(handler_call_details):

            def deny(request: Any, context: grpc.ServicerContext) -> NoReturn:
                metrics.requests.labels(method=method, code="PERMISSION_DENIED").inc()
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "cluster token mismatch")

            return grpc.unary_unary_rpc_method_handler(
                deny,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        inner = handler.unary_unary

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return inner(request, context)
            except StoreError as e:
                code = e.code.name
                context.abort(e.code, e.message)
            except Exception:
                code = "INTERNAL"
                log.exception("Global Store %s failed", method)
                context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}")
            finally:
                metrics.requests.labels(method=method, code=code).inc()
                metrics.latency.labels(method=method).observe(time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _Servicer:
    """The GlobalStore service: one line per RPC, the store does the work."""

    def __init__(self, store: MetadataStore, build: str) -> None:
        self._s = store
        self._build = build

    def RegisterWorker(self, req: pb.RegisterWorkerRequest, ctx: object) -> Any:
        return self._s.register_worker(req)

    def Heartbeat(self, req: pb.HeartbeatRequest, ctx: object) -> Any:
        return self._s.heartbeat(req)

    def UnregisterWorker(self, req: pb.UnregisterWorkerRequest, ctx: object) -> Any:
        return self._s.unregister_worker(req)

    def ListWorkers(self, req: pb.ListWorkersRequest, ctx: object) -> Any:
        return self._s.list_workers(req)

    def RegisterArtifact(self, req: pb.RegisterArtifactRequest, ctx: object) -> Any:
        return self._s.register_artifact(req)

    def GetArtifact(self, req: pb.GetArtifactRequest, ctx: object) -> Any:
        return self._s.get_artifact(req)

    def AddReplica(self, req: pb.AddReplicaRequest, ctx: object) -> Any:
        return self._s.add_replica(req)

    def RemoveReplica(self, req: pb.RemoveReplicaRequest, ctx: object) -> Any:
        return self._s.remove_replica(req)

    def PutKey(self, req: pb.PutKeyRequest, ctx: object) -> Any:
        return self._s.put_key(req)

    def GetKey(self, req: pb.GetKeyRequest, ctx: object) -> Any:
        return self._s.get_key(req)

    def DeleteKey(self, req: pb.DeleteKeyRequest, ctx: object) -> Any:
        return self._s.delete_key(req)

    def ListKeys(self, req: pb.ListKeysRequest, ctx: object) -> Any:
        return self._s.list_keys(req)

    def PickSource(self, req: pb.PickSourceRequest, ctx: object) -> Any:
        return self._s.pick_source(req)

    def GetStatus(self, req: pb.GetStatusRequest, ctx: object) -> Any:
        alive, artifacts, keys = self._s.counts()
        return pb.GetStatusResponse(
            schema_version=SCHEMA_VERSION,
            build=self._build,
            workers_alive=alive,
            artifacts=artifacts,
            keys=keys,
        )


def _client_host(host: str) -> str:
    """The host a local client dials for a server bound to ``host``."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _default_build() -> str:
    try:
        from tensorwasm_tc.tensorcast.version import build_string

        return build_string()
    except Exception:  # the native core may be missing in a stripped install
        return "unknown"


class GlobalStoreServer:
    """A Global Store in this process: `start` binds and serves, `stop` drains."""

    def __init__(self, config: GlobalStoreConfig, *, build: str | None = None) -> None:
        self.config = config
        self.build = build if build is not None else _default_build()
        self.store: MetadataStore | None = None
        self._server: grpc.Server | None = None
        self._metrics_http: WSGIServer | None = None
        self.port = 0
        self.metrics_port = 0

    @property
    def address(self) -> str:
        return f"{_client_host(self.config.listen_host)}:{self.port}"

    @property
    def metrics_address(self) -> str:
        if self.metrics_port <= 0:
            return ""
        return f"{_client_host(self.config.metrics_host)}:{self.metrics_port}"

    def start(self) -> None:
        cfg = self.config
        self.store = MetadataStore(
            cfg.resolved_database_path(),
            heartbeat_interval_ms=cfg.heartbeat_interval_ms,
            heartbeat_timeout_ms=cfg.heartbeat_timeout_ms,
        )
        try:
            metrics = _Metrics(self.store, self.build)
            server = grpc.server(
                futures.ThreadPoolExecutor(
                    max_workers=cfg.max_workers, thread_name_prefix="global-store"
                ),
                # The span interceptor (tracing on) goes outermost: its span
                # sees the status the auth/metrics interceptor settles on.
                interceptors=[
                    *_tracing.grpc_server_interceptors(),
                    _Interceptor(cfg.cluster_token, metrics),
                ],
                # Without this, gRPC sets SO_REUSEPORT and a second Global Store
                # would silently share the port with the first.
                options=[("grpc.so_reuseport", 0)],
            )
            pb_grpc.add_GlobalStoreServicer_to_server(  # type: ignore[no-untyped-call]
                _Servicer(self.store, self.build), server
            )
            host = cfg.listen_host
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"
            bind = f"{host}:{cfg.listen_port}"
            try:
                port = server.add_insecure_port(bind)
            except RuntimeError as e:
                raise OSError(f"cannot listen on {bind}: {e}") from e
            if port == 0:
                raise OSError(f"cannot listen on {bind} (address in use?)")
            self.port = port
            if cfg.metrics_port >= 0:
                httpd = start_metrics_http(
                    cfg.metrics_host, cfg.metrics_port, metrics.registry, "global-store-metrics"
                )
                self._metrics_http = httpd
                self.metrics_port = int(httpd.server_port)
            server.start()
            self._server = server
        except BaseException:
            self.stop(0)
            raise
        log.info(
            "Global Store serving on %s (metrics %s, database %s, schema %d)",
            self.address,
            self.metrics_address or "off",
            cfg.resolved_database_path(),
            SCHEMA_VERSION,
        )

    def stop(self, grace: float | None = None) -> None:
        """Stops accepting calls, lets in-flight ones finish within ``grace``
        seconds (the config's ``shutdown_grace_ms`` by default), closes the
        database."""
        if grace is None:
            grace = self.config.shutdown_grace_ms / 1000
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
            self._metrics_http = None
        if self.store is not None:
            self.store.close()
            self.store = None


def serve(
    config: GlobalStoreConfig,
    *,
    session_id: str | None = None,
    owner_pid: int = 0,
    home: Path | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Runs a Global Store in the foreground until SIGTERM/SIGINT (or
    ``stop_event``, or the death of ``owner_pid`` when non-zero); writes the
    session record when ready and removes it on the way out. Returns the
    process exit status."""
    # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set (a span per RPC);
    # flushed at exit by the provider itself.
    _tracing.setup_from_env("tensorcast-global-store")
    stop = stop_event or threading.Event()
    sid = session_id or f"global_store-{os.getpid()}"
    server = GlobalStoreServer(config)
    server.start()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("Global Store received signal %d; shutting down", signum)
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    record = SessionRecord(
        session_id=sid,
        kind="global_store",
        address=server.address,
        pid=os.getpid(),
        config_hash=config.config_hash(),
        build=server.build,
        metrics_address=server.metrics_address,
        owner_pid=owner_pid,
    )
    path = session_dir(home) / f"{sid}.json"
    try:
        write_session(record, home)
        while not stop.wait(_TICK_S):
            if owner_pid and not pid_alive(owner_pid):
                log.info("owner process %d is gone; shutting down", owner_pid)
                break
            if not path.exists():  # someone cleared the session directory
                write_session(record, home)
    finally:
        remove_session(sid, home)
        server.stop()
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
    log.info("Global Store stopped")
    return 0
