"""Running the gateway under uvicorn, with graceful SIGTERM handling."""

from __future__ import annotations

import gc
import logging
import sys
import time
from types import FrameType

import uvicorn

from tensorwasm_tc.gateway.config import GatewayConfig


def configure_logging() -> None:
    root = logging.getLogger("tensorwasm_tc")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def serve(config: GatewayConfig) -> None:
    """Serves until SIGTERM/SIGINT: then stops accepting, lets in-flight
    requests finish (up to the shutdown grace), waits for async jobs within
    the same grace, and flushes the audit log and the registry."""
    from tensorwasm_tc.gateway.app import create_app

    configure_logging()
    app = create_app(config)
    uv = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=max(0.001, config.shutdown_grace_s),  # type: ignore[arg-type]
        server_header=False,
        proxy_headers=False,
        loop="auto",
        http="auto",
    )
    gw = app.state.gw

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # The shutdown grace starts now: uvicorn's drain of in-flight
            # requests and the wait for async jobs share it.
            if gw.stop_requested_at is None:
                gw.stop_requested_at = time.monotonic()
                gw.stopping = True
            super().handle_exit(sig, frame)

    server = Server(uv)
    # Everything alive now (modules, the app, compiled functions) lives as
    # long as the process: keep it out of the collector's generations, and
    # collect young objects less often. Requests parked on the executor
    # otherwise get promoted and make full collections (~80 ms) frequent.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    logging.getLogger("tensorwasm_tc.gateway").info(
        "listening on http://%s:%d", config.host, config.port
    )
    server.run()
