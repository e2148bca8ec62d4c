"""Persistent instances: create, list, invoke, delete, snapshot, restore."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from tensorwasm_tc import Instance, TensorWasmError
from tensorwasm_tc.gateway.app import Gateway, json_response, owned_function, visible
from tensorwasm_tc.gateway.errors import ApiError, from_core
from tensorwasm_tc.gateway.models import (
    CreateInstance,
    InstanceCreated,
    InstanceList,
    InvokeRequest,
    InvokeResponse,
)
from tensorwasm_tc.gateway.registry import InstanceRecord, new_id, now_ms
from tensorwasm_tc.gateway.routes import _invoke

router = APIRouter(tags=["instances"])


def _owned(request: Request, instance_id: str) -> InstanceRecord:
    gw: Gateway = request.app.state.gw
    rec = gw.registry.instances.get(instance_id)
    request.state.audit["instance_id"] = instance_id
    if rec is None:
        raise ApiError("not_found", "no such instance")
    request.state.audit["function_id"] = rec.function_id
    if rec.tenant_id != request.state.tenant:
        raise ApiError("tenant_scope_denied", "the instance belongs to another tenant")
    return rec


@router.post(
    "/instances",
    status_code=201,
    response_model=InstanceCreated,
    summary="Start a persistent instance of a function",
)
async def create_instance(body: CreateInstance, request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    fn_rec = owned_function(request, body.function_id)
    fn = fn_rec.fn
    if fn is None:
        raise ApiError("internal", "the function failed to load on this server")
    init = fn_rec.init_export

    def start() -> Instance:
        try:
            inst = fn.instantiate()
            if init is not None:
                inst.invoke(init)
            return inst
        except TensorWasmError as err:
            raise from_core(err) from None

    inst = await gw.run(start)
    gw.metrics.spawns.inc()
    rec = InstanceRecord(
        id=new_id("in"),
        function_id=fn_rec.id,
        tenant_id=fn_rec.tenant_id,
        instance=inst,
        created_unix_ms=now_ms(),
    )
    gw.registry.instances[rec.id] = rec
    request.state.audit["instance_id"] = rec.id
    return json_response(rec.public(), 201)


@router.get(
    "/instances",
    response_model=InstanceList,
    summary="Live instances of the acting tenant (or of the token's tenants without the header)",
)
async def list_instances(request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    records = visible(request, gw.registry.instances.values())
    return json_response({"instances": [r.public() for r in records]})


@router.post(
    "/instances/restore",
    status_code=201,
    response_model=InstanceCreated,
    summary="Restore an instance from a snapshot (application/octet-stream body)",
    responses={501: {"description": "snapshot_unsupported"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def restore_instance(request: Request) -> Response:
    raise ApiError(
        "snapshot_unsupported", "this release cannot restore instances from snapshots yet"
    )


@router.post(
    "/instances/{id}/invoke",
    response_model=InvokeResponse,
    summary="Invoke an export on a persistent instance (its state carries over)",
    responses={
        409: {"description": "instance_closed"},
        422: {"description": "trap, memory_limit"},
        504: {"description": "invoke_timeout"},
    },
)
async def invoke_instance(id: str, body: InvokeRequest, request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    rec = _owned(request, id)
    args, inputs = _invoke.prepare(body, gw.config.max_args, gw.config.max_body_bytes)
    inst = rec.instance
    export = body.export

    def run() -> Any:
        with rec.lock:
            return inst.invoke(export, args, inputs=inputs)

    out: bytes = await gw.run(
        partial(_invoke.call, run, rec.function_id, body.output_encoding, rec.id)
    )
    return Response(out, media_type="application/json")


@router.delete(
    "/instances/{id}", status_code=204, response_class=Response, summary="Close an instance"
)
async def delete_instance(id: str, request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    rec = _owned(request, id)
    gw.registry.instances.pop(id, None)
    await gw.run(rec.instance.close)
    return Response(status_code=204)


@router.post(
    "/instances/{id}/snapshot",
    summary="Snapshot an instance (application/octet-stream response)",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
        501: {"description": "snapshot_unsupported"},
    },
)
async def snapshot_instance(id: str, request: Request) -> Response:
    _owned(request, id)
    raise ApiError("snapshot_unsupported", "this release cannot snapshot instances yet")
