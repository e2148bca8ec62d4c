"""Async jobs: GET /jobs/{id}."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from tensorwasm_tc.gateway.app import Gateway
from tensorwasm_tc.gateway.errors import ApiError
from tensorwasm_tc.gateway.models import JobOut

router = APIRouter(tags=["jobs"])


@router.get("/jobs/{id}", response_model=JobOut, summary="An async job's status and result")
async def get_job(id: str, request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    job = await gw.run(gw.registry.get_job, id)
    if job is None:
        raise ApiError("not_found", "no such job")
    if job["tenant_id"] != request.state.tenant:
        raise ApiError("tenant_scope_denied", "the job belongs to another tenant")
    return Response(orjson.dumps(job), media_type="application/json")
