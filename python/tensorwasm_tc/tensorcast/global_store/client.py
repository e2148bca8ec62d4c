"""`GlobalStoreClient`: a thin, typed wrapper over the GlobalStore gRPC stub.

One method per RPC, named in snake_case; each takes the request message (or
its fields as keyword arguments) and returns the response message. Failures
raise `GlobalStoreError`, which is both an `ArtifactError` (``status_code``,
``retryable``) and a `grpc.RpcError` (``code()``, ``details()``), so callers
may handle it either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.message import Message

from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import (
    global_store_pb2 as pb,
)
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import (
    global_store_pb2_grpc as pb_grpc,
)
from tensorwasm_tc.tensorcast.errors import ArtifactError

#: Metadata header that carries the cluster token.
TOKEN_METADATA_KEY: Final = "tensorcast-cluster-token"

R = TypeVar("R", bound=Message)


class GlobalStoreError(ArtifactError, grpc.RpcError, grpc.Call):
    """A Global Store call failed. Also a finished `grpc.Call`, so
    `errors.from_rpc_error` maps it like any other RPC failure."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message, status_code=code.name)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self.message

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


def _error(err: grpc.RpcError, method: str, address: str) -> GlobalStoreError:
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    if code == grpc.StatusCode.UNAVAILABLE:
        details = f"Global Store at {address} is unavailable: {details}"
    return GlobalStoreError(f"{method}: {details or code.name}", code)


class GlobalStoreClient:
    def __init__(
        self, address: str, cluster_token: str | None = None, timeout: float = 5.0
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (
            ((TOKEN_METADATA_KEY, cluster_token),) if cluster_token else ()
        )
        self._channel = grpc.insecure_channel(address)
        self._stub = pb_grpc.GlobalStoreStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GlobalStoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        request_type: type[Message],
        request: Message | None,
        fields: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        if request is None:
            request = request_type(**fields)
        elif fields:
            raise TypeError("pass either a request message or its fields, not both")
        rpc: Callable[..., Any] = getattr(self._stub, method)
        try:
            return rpc(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as e:
            raise _error(e, method, self.address) from None

    def register_worker(
        self,
        request: pb.RegisterWorkerRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.RegisterWorkerResponse:
        r: pb.RegisterWorkerResponse = self._call(
            "RegisterWorker", pb.RegisterWorkerRequest, request, fields, timeout
        )
        return r

    def heartbeat(
        self,
        request: pb.HeartbeatRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.HeartbeatResponse:
        r: pb.HeartbeatResponse = self._call(
            "Heartbeat", pb.HeartbeatRequest, request, fields, timeout
        )
        return r

    def unregister_worker(
        self,
        request: pb.UnregisterWorkerRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.UnregisterWorkerResponse:
        r: pb.UnregisterWorkerResponse = self._call(
            "UnregisterWorker", pb.UnregisterWorkerRequest, request, fields, timeout
        )
        return r

    def list_workers(
        self,
        request: pb.ListWorkersRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.ListWorkersResponse:
        r: pb.ListWorkersResponse = self._call(
            "ListWorkers", pb.ListWorkersRequest, request, fields, timeout
        )
        return r

    def register_artifact(
        self,
        request: pb.RegisterArtifactRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.RegisterArtifactResponse:
        r: pb.RegisterArtifactResponse = self._call(
            "RegisterArtifact", pb.RegisterArtifactRequest, request, fields, timeout
        )
        return r

    def get_artifact(
        self,
        request: pb.GetArtifactRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.GetArtifactResponse:
        r: pb.GetArtifactResponse = self._call(
            "GetArtifact", pb.GetArtifactRequest, request, fields, timeout
        )
        return r

    def add_replica(
        self,
        request: pb.AddReplicaRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.AddReplicaResponse:
        r: pb.AddReplicaResponse = self._call(
            "AddReplica", pb.AddReplicaRequest, request, fields, timeout
        )
        return r

    def remove_replica(
        self,
        request: pb.RemoveReplicaRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.RemoveReplicaResponse:
        r: pb.RemoveReplicaResponse = self._call(
            "RemoveReplica", pb.RemoveReplicaRequest, request, fields, timeout
        )
        return r

    def put_key(
        self,
        request: pb.PutKeyRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.PutKeyResponse:
        r: pb.PutKeyResponse = self._call("PutKey", pb.PutKeyRequest, request, fields, timeout)
        return r

    def get_key(
        self,
        request: pb.GetKeyRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.GetKeyResponse:
        r: pb.GetKeyResponse = self._call("GetKey", pb.GetKeyRequest, request, fields, timeout)
        return r

    def delete_key(
        self,
        request: pb.DeleteKeyRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.DeleteKeyResponse:
        r: pb.DeleteKeyResponse = self._call(
            "DeleteKey", pb.DeleteKeyRequest, request, fields, timeout
        )
        return r

    def list_keys(
        self,
        request: pb.ListKeysRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.ListKeysResponse:
        r: pb.ListKeysResponse = self._call(
            "ListKeys", pb.ListKeysRequest, request, fields, timeout
        )
        return r

    def pick_source(
        self,
        request: pb.PickSourceRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.PickSourceResponse:
        r: pb.PickSourceResponse = self._call(
            "PickSource", pb.PickSourceRequest, request, fields, timeout
        )
        return r

    def get_status(
        self,
        request: pb.GetStatusRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb.GetStatusResponse:
        r: pb.GetStatusResponse = self._call(
            "GetStatus", pb.GetStatusRequest, request, fields, timeout
        )
        return r
