"""Probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

import hmac

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from tensorwasm_tc import __version__
from tensorwasm_tc.gateway.errors import ApiError, error_response
from tensorwasm_tc.gateway.models import Health

router = APIRouter(tags=["system"])

_OK = b'{"status":"ok","version":"' + __version__.encode() + b'"}'


@router.get("/healthz", response_model=Health, summary="Liveness: the process serves HTTP")
async def healthz() -> Response:
    return Response(_OK, media_type="application/json")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: functions loaded and not shutting down",
    responses={503: {"description": "not_ready"}},
)
async def readyz(request: Request) -> Response:
    gw = request.app.state.gw
    if not gw.ready or gw.stopping:
        return error_response("not_ready", "the server is starting or stopping")
    # Ready means ready to serve functions; the TensorCast link is reported
    # (functions without artifacts run whatever its state).
    body = {"status": "ready", "tensorcast": gw.link.status()}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get(
    "/metrics",
    summary="Prometheus metrics (bearer TENSOR_WASM_API_METRICS_TOKEN when set)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    gw = request.app.state.gw
    want = gw.config.metrics_token
    if want is not None:
        got = request.headers.get("authorization", "")
        scheme, _, token = got.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), want.encode()
        )
        if not ok:
            raise ApiError("unauthorized", "the metrics endpoint needs its bearer token")
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)
