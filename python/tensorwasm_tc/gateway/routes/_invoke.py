"""What an invoke does on the executor thread: decode inputs, call, encode
the result. Everything heavy runs off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from tensorwasm_tc import Function, InvokeResult, TensorWasmError, _tracing
from tensorwasm_tc.gateway import tracing
from tensorwasm_tc.gateway.config import GatewayConfig
from tensorwasm_tc.gateway.errors import ApiError, from_core
from tensorwasm_tc.gateway.models import InvokeRequest
from tensorwasm_tc.gateway.registry import FunctionRecord
from tensorwasm_tc.gateway.tensors import decode, encode, number_in, number_out


def prepare(
    body: InvokeRequest, max_args: int, max_bytes: int
) -> tuple[list[int | float] | None, dict[str, Any] | None]:
    args: list[int | float] | None = None
    if body.args is not None:
        if len(body.args) > max_args:
            raise ApiError("too_many_args", f"at most {max_args} arguments per invoke")
        args = [number_in(a, f"args[{i}]") for i, a in enumerate(body.args)]
    inputs: dict[str, Any] | None = None
    if body.inputs:
        inputs = {
            name: decode(name, t.model_dump(exclude_none=True), max_bytes)
            for name, t in body.inputs.items()
        }
    return args, inputs


def response(
    res: InvokeResult, function_id: str, encoding: str, instance_id: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "function_id": function_id,
        "result": [number_out(v) for v in res.values],
        "outputs": {name: encode(t, encoding) for name, t in res.outputs.items()},
        "stdout": res.stdout,
        "stderr": res.stderr,
        "duration_ms": res.duration_ms,
    }
    if instance_id is not None:
        out["instance_id"] = instance_id
    return out


def invoker(
    rec: FunctionRecord,
    config: GatewayConfig,
    spawned: Callable[[], None],
    body: InvokeRequest,
    function_for: Callable[[FunctionRecord], Function],
) -> partial[bytes]:
    """The executor-thread work of one function invoke, on a fresh instance
    (of a pre-initialised function: one that starts from the image its
    init export left at load time; of one bound to artifacts: loaded against
    the artifacts its keys name at this moment)."""
    if rec.fn is None:
        raise ApiError("internal", "the function failed to load on this server")
    args, inputs = prepare(body, config.max_args, config.max_body_bytes)
    export = body.export

    def run() -> Any:
        fn = function_for(rec)
        spawned()
        return fn.invoke(export, args, inputs=inputs)

    return work(run, rec.id, export, body.output_encoding)


def work(
    invoke: Callable[[], InvokeResult],
    function_id: str,
    export: str | None,
    encoding: str,
    instance_id: str | None = None,
) -> partial[bytes]:
    """The executor-thread call of one invoke. Built on the event loop: with
    tracing on, it carries the request's context to the executor thread
    (which does not inherit it) for the ``tensor_wasm.invoke`` span."""
    if _tracing.ENABLED:
        return partial(
            _traced_call,
            tracing.current_context(),
            invoke,
            function_id,
            export,
            encoding,
            instance_id,
        )
    return partial(call, invoke, function_id, encoding, instance_id)


def call(
    invoke: Callable[[], InvokeResult],
    function_id: str,
    encoding: str,
    instance_id: str | None = None,
) -> bytes:
    """Runs `invoke` and returns the JSON body (on the executor thread)."""
    try:
        res = invoke()
    except TensorWasmError as err:
        raise from_core(err) from None
    return orjson.dumps(response(res, function_id, encoding, instance_id))


def _traced_call(
    parent: Any,
    invoke: Callable[[], InvokeResult],
    function_id: str,
    export: str | None,
    encoding: str,
    instance_id: str | None,
) -> bytes:
    def timed() -> InvokeResult:
        res = invoke()
        tracing.record_duration(res.duration_ms)
        return res

    return tracing.traced_invoke(
        parent,
        partial(call, timed, function_id, encoding, instance_id),
        function_id,
        export,
        instance_id,
        _error_kind,
    )


def _error_kind(exc: BaseException) -> str:
    return exc.kind if isinstance(exc, ApiError) else "internal"
