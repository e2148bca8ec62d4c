"""Running the gateway under uvicorn, with graceful SIGTERM handling.

With the native front (the default, ``TENSOR_WASM_API_FRONT=native``) the
port belongs to the core's HTTP front (``_core.Front``): it answers function
invokes itself and forwards every other request to this app, which uvicorn
serves on a Unix socket in a private directory. With
``TENSOR_WASM_API_FRONT=python`` uvicorn serves the app on the port.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from tensorwasm_tc import _core, _tracing
from tensorwasm_tc.gateway.config import GatewayConfig

if TYPE_CHECKING:
    from tensorwasm_tc.gateway.app import Gateway

log = logging.getLogger("tensorwasm_tc.gateway")


def configure_logging() -> None:
    root = logging.getLogger("tensorwasm_tc")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def start_front(gw: Gateway, upstream: str) -> _core.Front:
    """The native front on the configured host and port, sharing the app's
    token table, rate limiter, counters, invoke slots, audit writer and
    function table."""
    cfg = gw.config
    table = gw.registry.table
    assert table is not None, "create_app gives the registry a function table"
    return _core.Front(
        cfg.host,
        cfg.port,
        upstream,
        tokens=[
            (
                e.secret,
                gw.auth.token_id(e.secret),
                None if e.tenants is None else sorted(e.tenants),
            )
            for e in cfg.tokens
        ],
        dev=cfg.dev_mode,
        require_tenant=cfg.require_tenant,
        limiter=None if gw.limiter is None else gw.limiter.core,
        stats=gw.metrics.stats,
        invoke_slots=gw.slots["invoke"],
        audit=gw.audit.share_stdout(),
        table=table,
        max_body_bytes=cfg.max_body_bytes,
        max_args=cfg.max_args,
        request_timeout_s=cfg.request_timeout_s,
        workers=max(2, min(8, os.cpu_count() or 1)),
        blocking_threads=cfg.threads,
        # With tracing on, the app serves invokes too: it makes the spans.
        serve_invokes=not _tracing.ENABLED,
    )


def serve(config: GatewayConfig) -> None:
    """Serves until SIGTERM/SIGINT: then stops accepting, lets in-flight
    requests finish (up to the shutdown grace), waits for async jobs within
    the same grace, and flushes the audit log and the registry."""
    from tensorwasm_tc.gateway.app import create_app

    configure_logging()
    app = create_app(config)
    gw: Gateway = app.state.gw
    native = config.front == "native"
    sockdir = tempfile.mkdtemp(prefix="tensor-wasm-") if native else None
    upstream = os.path.join(sockdir, "app.sock") if sockdir else None
    where = {"uds": upstream} if upstream else {"host": config.host, "port": config.port}
    uv = uvicorn.Config(
        app,
        **where,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=max(0.001, config.shutdown_grace_s),  # type: ignore[arg-type]
        # Behind the front, its pooled connections are the only clients.
        timeout_keep_alive=75 if native else 5,
        server_header=False,
        proxy_headers=False,
        loop="auto",
        http="auto",
    )
    failed: list[str] = []

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if upstream is None or self.should_exit:
                return
            try:
                gw.front = await asyncio.get_running_loop().run_in_executor(
                    None, start_front, gw, upstream
                )
            except OSError as err:
                log.error("cannot listen on %s:%d: %s", config.host, config.port, err.strerror)
                failed.append(str(err))
                # uvicorn still shuts down what started (the app's lifespan).
                self.should_exit = True
                return
            host, port = gw.front.address
            log.info("listening on http://%s:%d (native front)", host, port)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # The shutdown grace starts now: the drain of in-flight requests
            # and the wait for async jobs share it.
            if gw.stop_requested_at is None:
                gw.stop_requested_at = time.monotonic()
                gw.stopping = True
            if gw.front is not None:
                gw.front.stop_accepting()
            super().handle_exit(sig, frame)

    server = Server(uv)
    # Everything alive now (modules, the app, compiled functions) lives as
    # long as the process: keep it out of the collector's generations, and
    # collect young objects less often. Requests parked on the executor
    # otherwise get promoted and make full collections (~80 ms) frequent.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    if not native:
        log.info("listening on http://%s:%d", config.host, config.port)
    try:
        server.run()
    finally:
        if gw.front is not None:
            gw.front.close()
        if sockdir is not None:
            shutil.rmtree(sockdir, ignore_errors=True)
    if failed:
        raise SystemExit(1)
