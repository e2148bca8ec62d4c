"""Request and response shapes, for validation and for ``/openapi.json``.

Handlers validate requests through these models; responses are built as
plain dicts of exactly these shapes and serialised with orjson (tests check
them against the OpenAPI document).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Number = int | float | str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorJSON(Strict):
    """A tensor: row-major ``data`` (numbers, flat or nested) or ``data_b64``
    (little-endian bytes, base64). Non-finite floats are ``"nan"``, ``"inf"``,
    ``"-inf"``."""

    dtype: Literal["f32", "f16", "bf16", "f64", "i32", "i64", "u8", "i8", "bool"]
    shape: list[int]
    data: list[Any] | None = None
    data_b64: str | None = None


class Limits(Strict):
    max_memory_bytes: int | None = Field(
        default=None, description="Linear memory plus host tensors, bytes"
    )
    deadline_ms: int | None = Field(default=None, description="Wall-clock limit per invoke")


class CreateFunction(Strict):
    name: str = Field(description="1-128 characters of [A-Za-z0-9._-], starting alphanumeric")
    wasm_b64: str = Field(description="The module's binary bytes, base64")
    artifacts: dict[str, str] | None = Field(
        default=None, description="alias -> TensorCast artifact key"
    )
    limits: Limits | None = None
    init_export: str | None = Field(
        default=None,
        description="Export run once at deploy (and when the server restarts); every "
        "instance starts from the state it leaves (a pre-initialised function)",
    )


class FunctionOut(BaseModel):
    id: str
    name: str
    tenant_id: int
    module_hash: str
    exports: dict[str, Any] = Field(description="name -> [[param types], [result types]]")
    limits: dict[str, int]
    artifacts: dict[str, str]
    init_export: str | None
    created_unix_ms: int


class FunctionList(BaseModel):
    functions: list[FunctionOut]


class InvokeRequest(Strict):
    export: str | None = Field(default=None, description="Default: _start, then main")
    args: list[Number] | None = None
    inputs: dict[str, TensorJSON] | None = None
    output_encoding: Literal["data", "data_b64"] = "data"


class InvokeResponse(BaseModel):
    function_id: str
    instance_id: str | None = None
    result: list[Any]
    outputs: dict[str, TensorJSON]
    stdout: str
    stderr: str
    duration_ms: float


class JobAccepted(BaseModel):
    job_id: str


class ErrorBody(BaseModel):
    kind: str
    message: str


class JobOut(BaseModel):
    id: str
    function_id: str
    tenant_id: int
    status: Literal["pending", "running", "completed", "failed"]
    result: list[Any] | None = None
    outputs: dict[str, TensorJSON] | None = None
    stdout: str | None = None
    duration_ms: float | None = None
    error: ErrorBody | None = None
    created_unix_ms: int
    finished_unix_ms: int | None = None


class CreateInstance(Strict):
    function_id: str


class InstanceCreated(BaseModel):
    instance_id: str
    function_id: str
    tenant_id: int
    created_unix_ms: int


class InstanceList(BaseModel):
    instances: list[InstanceCreated]


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    version: str | None = None
    tensorcast: dict[str, Any] | None = Field(
        default=None,
        description="/readyz: the TensorCast link (mode, state, address, error)",
    )
