"""Functions: deploy, list, show, delete, invoke and invoke-async."""

from __future__ import annotations

import base64
import binascii
import re

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from tensorwasm_tc import Function, TensorWasmError
from tensorwasm_tc.gateway.app import (
    Gateway,
    function_limits,
    json_response,
    owned_function,
    visible,
)
from tensorwasm_tc.gateway.artifacts import check_aliases
from tensorwasm_tc.gateway.errors import ApiError, from_core
from tensorwasm_tc.gateway.models import (
    CreateFunction,
    FunctionList,
    FunctionOut,
    InvokeRequest,
    InvokeResponse,
    JobAccepted,
)
from tensorwasm_tc.gateway.registry import FunctionRecord, new_id, now_ms
from tensorwasm_tc.gateway.routes import _invoke

router = APIRouter(tags=["functions"])

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
EXPORT = re.compile(r"^[^\x00]{1,1024}$")


@router.post(
    "/functions",
    status_code=201,
    response_model=FunctionOut,
    summary="Deploy a function",
    responses={
        400: {"description": "invalid_name, invalid_base64, invalid_wasm, missing_export, ..."},
        424: {"description": "artifact_unavailable (init_export with artifacts)"},
        503: {"description": "artifact_store_unavailable (--no-tensorcast)"},
    },
)
async def create_function(body: CreateFunction, request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    tenant: int = request.state.tenant
    if not NAME.match(body.name):
        raise ApiError(
            "invalid_name",
            "name must be 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit",
        )
    try:
        wasm = base64.b64decode(body.wasm_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("invalid_base64", "wasm_b64 is not valid base64") from None
    if not wasm:
        raise ApiError("invalid_wasm", "wasm_b64 decodes to an empty module")
    limits = function_limits(gw.config, body.limits.model_dump() if body.limits else None)
    if body.init_export is not None and not EXPORT.match(body.init_export):
        raise ApiError("invalid_args", "init_export must be a non-empty export name")
    artifacts = body.artifacts or {}
    if artifacts:
        check_aliases(artifacts)
        if not gw.link.enabled:
            raise ApiError(
                "artifact_store_unavailable",
                "this server runs without TensorCast (--no-tensorcast), so artifacts cannot "
                "be bound",
            )

    # A function bound to artifacts is compiled here without them (its
    # exports are checked now); it is loaded with its artifacts, and its
    # init_export run, on first use and whenever a key moves.
    init = None if artifacts else body.init_export

    def compile_() -> Function:
        if not wasm.startswith(b"\0asm"):
            raise ApiError("invalid_wasm", "wasm_b64 must hold a binary module (\\0asm header)")
        try:
            # With init_export the initialiser runs here, once: its traps and
            # limits are the deploy's errors, and every later instance starts
            # from the state it leaves.
            return gw.runtime_for(limits).load(wasm, init_export=init)
        except TensorWasmError as err:
            if init is not None and err.kind == "missing_export":
                raise ApiError(
                    "missing_export", f"init_export {init!r} is not an exported function"
                ) from None
            raise from_core(err) from None

    fn = await gw.run(compile_)
    rec = FunctionRecord(
        id=new_id("fn"),
        name=body.name,
        tenant_id=tenant,
        module_hash=fn.id,
        limits=limits,
        artifacts=artifacts,
        init_export=body.init_export,
        exports={k: [list(v[0]), list(v[1])] for k, v in fn.exports.items()},
        created_unix_ms=now_ms(),
        fn=fn,
        wasm=wasm if artifacts else None,
    )
    if artifacts and body.init_export is not None:
        # Pre-initialised with its artifacts: init runs now, against the
        # artifacts the keys name (424 when they are not there yet).
        await gw.run(gw.function_for, rec)
    await gw.run(gw.registry.add_function, rec, wasm)
    request.state.audit["function_id"] = rec.id
    return json_response(rec.public(), 201)


@router.get(
    "/functions",
    response_model=FunctionList,
    summary="Functions of the acting tenant (X-TensorWasm-Tenant), or of every tenant "
    "the token may act for when the header is absent",
)
async def list_functions(request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    records = visible(request, gw.registry.functions.values())
    return json_response({"functions": [r.public() for r in records]})


@router.get("/functions/{id}", response_model=FunctionOut, summary="One function")
async def get_function(id: str, request: Request) -> Response:
    return json_response(owned_function(request, id).public())


@router.delete(
    "/functions/{id}",
    status_code=204,
    response_class=Response,
    summary="Delete a function and close its instances",
)
async def delete_function(id: str, request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    owned_function(request, id)
    await gw.run(gw.registry.remove_function, id)
    gw.link.forget(id)
    return Response(status_code=204)


@router.post(
    "/functions/{id}/invoke",
    response_model=InvokeResponse,
    summary="Invoke an export on a fresh instance",
    responses={
        422: {"description": "trap, memory_limit"},
        424: {"description": "artifact_unavailable"},
        504: {"description": "invoke_timeout"},
    },
)
async def invoke_function(id: str, body: InvokeRequest, request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    rec = owned_function(request, id)
    out: bytes = await gw.run(
        _invoke.invoker(rec, gw.config, gw.metrics.stats.spawned, body, gw.function_for)
    )
    return Response(out, media_type="application/json")


@router.post(
    "/functions/{id}/invoke-async",
    status_code=202,
    response_model=JobAccepted,
    summary="Queue an invoke; poll GET /jobs/{id}",
)
async def invoke_function_async(id: str, body: InvokeRequest, request: Request) -> Response:
    gw: Gateway = request.app.state.gw
    rec = owned_function(request, id)
    work = _invoke.invoker(rec, gw.config, gw.metrics.stats.spawned, body, gw.function_for)
    reg = gw.registry
    if gw.stopping:
        raise ApiError("overloaded", "the server is shutting down")
    with gw.jobs_lock:
        if reg.jobs_in_flight >= gw.config.max_async_jobs:
            raise ApiError("overloaded", "too many async jobs in flight; retry later")
        reg.jobs_in_flight += 1
    job_id = new_id("job")
    try:
        await gw.run(reg.add_job, job_id, rec.id, rec.tenant_id, now_ms())
    except BaseException:
        with gw.jobs_lock:
            reg.jobs_in_flight -= 1
        raise

    def job() -> None:
        try:
            reg.job_running(job_id)
            try:
                out = work()
            except ApiError as err:
                reg.finish_job(job_id, None, {"kind": err.kind, "message": err.message})
            except Exception:
                reg.finish_job(job_id, None, {"kind": "internal", "message": "the job failed"})
            else:
                reg.finish_job(job_id, orjson.loads(out), None)
        finally:
            with gw.jobs_lock:
                reg.jobs_in_flight -= 1
                gw.jobs.pop(job_id, None)

    with gw.jobs_lock:
        gw.jobs[job_id] = gw.pool.submit(job)
    return json_response({"job_id": job_id}, 202)
