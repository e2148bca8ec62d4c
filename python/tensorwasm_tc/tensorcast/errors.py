"""`ArtifactError`: the one exception the TensorCast SDK raises.

``status_code`` is a gRPC canonical code name (a stable, interoperable
taxonomy); ``retryable`` is the SDK's judgement that waiting may clear it.
"""

from __future__ import annotations

from typing import Final

import grpc

#: Codes the SDK may retry (when also ``retryable``).
RETRYABLE_CODES: Final = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"})

#: Every code the SDK raises, with whether it is retryable by default.
DEFAULT_RETRYABLE: Final[dict[str, bool]] = {
    "INVALID_ARGUMENT": False,
    "FAILED_PRECONDITION": False,
    "NOT_FOUND": False,
    "ALREADY_EXISTS": False,
    "PERMISSION_DENIED": False,
    "RESOURCE_EXHAUSTED": False,
    "UNAVAILABLE": True,
    "DEADLINE_EXCEEDED": True,
    "ABORTED": True,
    "DATA_LOSS": False,
    "INTERNAL": False,
    "UNKNOWN": False,
    "CANCELLED": False,
    "UNIMPLEMENTED": False,
    "UNAUTHENTICATED": False,
    "OUT_OF_RANGE": False,
}


class ArtifactError(Exception):
    """A TensorCast operation failed.

    ``status_code``: the gRPC canonical code name (``"NOT_FOUND"``, ...).
    ``retryable``: whether retrying the same call may succeed.
    """

    def __init__(
        self, message: str, status_code: str = "UNKNOWN", retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        if retryable is None:
            retryable = DEFAULT_RETRYABLE.get(status_code, False)
        self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"ArtifactError({self.message!r}, status_code={self.status_code!r}, "
            f"retryable={self.retryable})"
        )


def from_rpc_error(err: grpc.RpcError, context: str = "") -> ArtifactError:
    """Maps a gRPC failure (from a daemon call) to an `ArtifactError`."""
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    name = code.name if code is not None else "UNKNOWN"
    msg = f"{context}: {details}" if context else (details or name)
    return ArtifactError(msg, status_code=name)
