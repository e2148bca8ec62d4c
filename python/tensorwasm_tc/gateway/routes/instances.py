"""Persistent instances: create, list, invoke, delete, snapshot, restore."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from tensorwasm_tc import Instance, TensorWasmError
from tensorwasm_tc.gateway import snapshots
from tensorwasm_tc.gateway.app import Gateway, json_response, owned_function, visible
from tensorwasm_tc.gateway.errors import ApiError, from_core
from tensorwasm_tc.gateway.models import (
    CreateInstance,
    InstanceCreated,
    InstanceList,
    InvokeRequest,
    InvokeResponse,
)
from tensorwasm_tc.gateway.registry import FunctionRecord, InstanceRecord, new_id, now_ms
from tensorwasm_tc.gateway.routes import _invoke

router = APIRouter(tags=["instances"])

# A chosen instance id (restore's ?instance_id=): one safe path segment.
INSTANCE_ID: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


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

    def start() -> Instance:
        # A pre-initialised function's instance starts from its init image;
        # one bound to artifacts keeps the artifacts its keys name now.
        fn = gw.function_for(fn_rec)
        try:
            return fn.instantiate()
        except TensorWasmError as err:
            raise from_core(err) from None

    inst = await gw.run(start)
    rec = _register(gw, request, fn_rec, inst, new_id("in"))
    return json_response(rec.public(), 201)


def _register(
    gw: Gateway, request: Request, fn_rec: FunctionRecord, inst: Instance, instance_id: str
) -> InstanceRecord:
    """Makes a started (or restored) instance live under `instance_id`."""
    if instance_id in gw.registry.instances:
        inst.close()
        raise ApiError("instance_exists", f"an instance {instance_id!r} already exists")
    gw.metrics.stats.spawned()
    rec = InstanceRecord(
        id=instance_id,
        function_id=fn_rec.id,
        tenant_id=fn_rec.tenant_id,
        instance=inst,
        created_unix_ms=now_ms(),
    )
    gw.registry.instances[rec.id] = rec
    request.state.audit["instance_id"] = rec.id
    return rec


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
    summary="Restore an instance from a snapshot (application/octet-stream body) onto a "
    "function the acting tenant has deployed",
    responses={
        400: {"description": "snapshot_invalid, snapshot_signature_invalid, invalid_args"},
        404: {"description": "function_not_found, not_found"},
        409: {"description": "snapshot_incompatible, instance_exists"},
        413: {"description": "body_too_large (TENSOR_WASM_API_MAX_SNAPSHOT_BYTES)"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def restore_instance(
    request: Request,
    instance_id: Annotated[
        str | None,
        Query(
            pattern=INSTANCE_ID,
            max_length=128,
            description="Id of the new instance (default: a new in_... id); 409 if taken",
        ),
    ] = None,
    function_id: Annotated[
        str | None,
        Query(
            max_length=256,
            description="Restore onto this function (default: the acting tenant's newest "
            "function whose module_hash is the snapshot's)",
        ),
    ] = None,
) -> Response:
    gw: Gateway = request.app.state.gw
    tenant: int = request.state.tenant
    if function_id is not None:
        owned_function(request, function_id)
    if instance_id is not None and instance_id in gw.registry.instances:
        raise ApiError("instance_exists", f"an instance {instance_id!r} already exists")
    path = await snapshots.spool_upload(gw, request)
    try:
        if function_id is None:
            # One pass over the file to learn its module (and check it
            # whole) before a function is chosen; the restore is the second.
            meta = await gw.run(snapshots.describe, gw, path)
            fn_rec = snapshots.target(gw, tenant, meta["function_hash"])
        else:
            # The restore itself checks the snapshot is of this function.
            fn_rec = owned_function(request, function_id)
        request.state.audit["function_id"] = fn_rec.id
        inst = await gw.run(snapshots.restore, gw, path, fn_rec)
    finally:
        await gw.run(snapshots.discard, path)
    if fn_rec.id not in gw.registry.functions:  # deleted while restoring
        inst.close()
        raise ApiError("not_found", "the function was deleted during the restore")
    rec = _register(gw, request, fn_rec, inst, instance_id or new_id("in"))
    return json_response(rec.public(), 201)


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
        _invoke.work(run, rec.function_id, export, body.output_encoding, rec.id)
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
    summary="Snapshot an instance: the file (application/octet-stream) restores it here or "
    "on another server that has the function deployed",
    response_class=Response,
    responses={
        200: {
            "description": "The snapshot file (module embedded; signed when the server has "
            "a snapshot key)",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "headers": {
                "Content-Disposition": {
                    "description": 'attachment; filename="<instance id>.twsnap"',
                    "schema": {"type": "string"},
                },
                "X-Snapshot-Function-Id": {
                    "description": "The instance's function (fn_...)",
                    "schema": {"type": "string"},
                },
                "X-Snapshot-Module-Hash": {
                    "description": "BLAKE3 of the function's module (its module_hash)",
                    "schema": {"type": "string"},
                },
                "X-Snapshot-Signed": {
                    "description": "true when the file carries an HMAC-SHA256 signature",
                    "schema": {"type": "string", "enum": ["true", "false"]},
                },
            },
        },
        409: {"description": "instance_closed"},
    },
)
async def snapshot_instance(
    id: str,
    request: Request,
    compression: Annotated[
        Literal["none", "zstd"], Query(description="Compress memory and module with zstd")
    ] = "none",
    level: Annotated[int, Query(ge=1, le=19, description="zstd level")] = 3,
) -> Response:
    gw: Gateway = request.app.state.gw
    rec = _owned(request, id)
    codec = None if compression == "none" else compression
    saved = await gw.run(snapshots.save, gw, rec, codec, level)
    headers = {
        "Content-Length": str(saved.size),
        "Content-Disposition": f'attachment; filename="{rec.id}.twsnap"',
        "Cache-Control": "no-store",
        "X-Snapshot-Function-Id": rec.function_id,
        "X-Snapshot-Module-Hash": rec.instance.function_id,
        "X-Snapshot-Signed": "true" if saved.signed else "false",
    }
    return StreamingResponse(
        snapshots.stream(gw, saved), media_type="application/octet-stream", headers=headers
    )
