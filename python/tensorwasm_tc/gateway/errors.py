"""The HTTP error envelope ``{"error": {"kind", "message"}}`` and the one
table that maps every failure to a kind and a status.

Messages are written for the caller and never carry paths, tracebacks or
secrets: core errors are re-worded from their kind where they could."""

from __future__ import annotations

from typing import Final

import orjson
from starlette.responses import Response

from tensorwasm_tc import TensorWasmError

# kind -> HTTP status. `docs/API.md` lists the same table.
STATUS: Final[dict[str, int]] = {
    "invalid_json": 400,
    "invalid_name": 400,
    "invalid_base64": 400,
    "invalid_wasm": 400,
    "invalid_args": 400,
    "invalid_tensor": 400,
    "invalid_tenant": 400,
    "too_many_args": 400,
    "missing_export": 400,
    "missing_tenant": 400,
    "snapshot_invalid": 400,
    "snapshot_signature_invalid": 400,
    "module_too_large": 413,
    "unknown_import": 400,
    "unauthorized": 401,
    "tenant_scope_denied": 403,
    "not_found": 404,
    "function_not_found": 404,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "trap": 422,
    "memory_limit": 422,
    "instance_closed": 409,
    "instance_exists": 409,
    "snapshot_incompatible": 409,
    "rate_limited": 429,
    "internal": 500,
    "interrupted": 500,
    "artifact_unavailable": 424,
    "artifact_store_unavailable": 503,
    "resource_exhausted": 503,
    "overloaded": 503,
    "not_ready": 503,
    # Retired: answered by snapshot and restore before they were supported.
    "snapshot_unsupported": 501,
    "invoke_timeout": 504,
    "request_timeout": 504,
}


class ApiError(Exception):
    """A failure to send back as the envelope; `kind` picks the status."""

    def __init__(self, kind: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = STATUS.get(kind, 500)
        self.headers = headers or {}


def envelope(kind: str, message: str) -> bytes:
    return orjson.dumps({"error": {"kind": kind, "message": message}})


def error_response(
    kind: str, message: str, *, status: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    resp = Response(
        envelope(kind, message),
        status_code=status or STATUS.get(kind, 500),
        media_type="application/json",
        headers=headers,
    )
    return resp


# Core kinds whose messages are about the guest or the request, never the
# host: they are passed through. Anything else is re-worded.
_PASS_THROUGH: Final = frozenset(
    {
        "invalid_wasm",
        "module_too_large",
        "missing_export",
        "invalid_args",
        "unknown_import",
        "trap",
        "invoke_timeout",
        "memory_limit",
        "instance_closed",
        "snapshot_invalid",
        "snapshot_incompatible",
        "snapshot_signature_invalid",
    }
)


def from_core(err: TensorWasmError) -> ApiError:
    """Maps an executor error to the envelope."""
    kind = err.kind
    if kind in ("dtype_mismatch", "shape_mismatch", "unknown_op", "read_only"):
        return ApiError("invalid_args", str(err))
    if kind == "resource_exhausted":
        return ApiError("resource_exhausted", "the server has no free instance slot; retry later")
    if kind in _PASS_THROUGH:
        return ApiError(kind, str(err))
    return ApiError("internal", "the executor failed; see the server log")
