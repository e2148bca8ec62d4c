from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2 as _global_store_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_AUTO: _ClassVar[Source]
    SOURCE_LOCAL_ONLY: _ClassVar[Source]
    SOURCE_DISK_FIRST: _ClassVar[Source]
    SOURCE_DISK_ONLY: _ClassVar[Source]
    SOURCE_PREFER_P2P: _ClassVar[Source]
SOURCE_AUTO: Source
SOURCE_LOCAL_ONLY: Source
SOURCE_DISK_FIRST: Source
SOURCE_DISK_ONLY: Source
SOURCE_PREFER_P2P: Source

class RegisterRequest(_message.Message):
    __slots__ = ("key", "policy", "tensors", "total_bytes", "upload_token", "inline_data", "session_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    policy: str
    tensors: _containers.RepeatedCompositeFieldContainer[_global_store_pb2.TensorSpec]
    total_bytes: int
    upload_token: str
    inline_data: bytes
    session_id: str
    def __init__(self, key: _Optional[str] = ..., policy: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[_global_store_pb2.TensorSpec, _Mapping]]] = ..., total_bytes: _Optional[int] = ..., upload_token: _Optional[str] = ..., inline_data: _Optional[bytes] = ..., session_id: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("artifact_id", "key_version", "already_present")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    key_version: int
    already_present: bool
    def __init__(self, artifact_id: _Optional[str] = ..., key_version: _Optional[int] = ..., already_present: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("key", "artifact_id", "source", "session_id", "want_inline")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WANT_INLINE_FIELD_NUMBER: _ClassVar[int]
    key: str
    artifact_id: str
    source: Source
    session_id: str
    want_inline: bool
    def __init__(self, key: _Optional[str] = ..., artifact_id: _Optional[str] = ..., source: _Optional[_Union[Source, str]] = ..., session_id: _Optional[str] = ..., want_inline: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("manifest", "lease_id", "key", "key_version", "served_from", "inline_data")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVED_FROM_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    manifest: _global_store_pb2.ArtifactManifest
    lease_id: str
    key: str
    key_version: int
    served_from: str
    inline_data: bytes
    def __init__(self, manifest: _Optional[_Union[_global_store_pb2.ArtifactManifest, _Mapping]] = ..., lease_id: _Optional[str] = ..., key: _Optional[str] = ..., key_version: _Optional[int] = ..., served_from: _Optional[str] = ..., inline_data: _Optional[bytes] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ("key", "artifact_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    artifact_id: str
    def __init__(self, key: _Optional[str] = ..., artifact_id: _Optional[str] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("exists", "manifest", "local_tiers", "key", "key_version")
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    LOCAL_TIERS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    manifest: _global_store_pb2.ArtifactManifest
    local_tiers: _containers.RepeatedScalarFieldContainer[str]
    key: str
    key_version: int
    def __init__(self, exists: _Optional[bool] = ..., manifest: _Optional[_Union[_global_store_pb2.ArtifactManifest, _Mapping]] = ..., local_tiers: _Optional[_Iterable[str]] = ..., key: _Optional[str] = ..., key_version: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ImportSafetensorsRequest(_message.Message):
    __slots__ = ("path", "key", "policy", "session_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    key: str
    policy: str
    session_id: str
    def __init__(self, path: _Optional[str] = ..., key: _Optional[str] = ..., policy: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class ImportSafetensorsResponse(_message.Message):
    __slots__ = ("artifact_id", "key_version")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    key_version: int
    def __init__(self, artifact_id: _Optional[str] = ..., key_version: _Optional[int] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "opened_unix_ms", "leases", "pid")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OPENED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    opened_unix_ms: int
    leases: int
    pid: int
    def __init__(self, session_id: _Optional[str] = ..., opened_unix_ms: _Optional[int] = ..., leases: _Optional[int] = ..., pid: _Optional[int] = ...) -> None: ...

class ArtifactStatus(_message.Message):
    __slots__ = ("artifact_id", "key", "policy", "total_bytes", "tiers", "leases", "last_used_unix_ms")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    key: str
    policy: str
    total_bytes: int
    tiers: _containers.RepeatedScalarFieldContainer[str]
    leases: int
    last_used_unix_ms: int
    def __init__(self, artifact_id: _Optional[str] = ..., key: _Optional[str] = ..., policy: _Optional[str] = ..., total_bytes: _Optional[int] = ..., tiers: _Optional[_Iterable[str]] = ..., leases: _Optional[int] = ..., last_used_unix_ms: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("build", "worker_id", "address", "p2p_address", "socket_path", "stable_bytes_used", "stable_bytes_capacity", "sessions", "artifacts", "leases", "in_flight", "global_store_address", "global_store_connected", "pid", "reserve_bytes", "reserve_ready_bytes")
    BUILD_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    P2P_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SOCKET_PATH_FIELD_NUMBER: _ClassVar[int]
    STABLE_BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    STABLE_BYTES_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_STORE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_STORE_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RESERVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESERVE_READY_BYTES_FIELD_NUMBER: _ClassVar[int]
    build: str
    worker_id: str
    address: str
    p2p_address: str
    socket_path: str
    stable_bytes_used: int
    stable_bytes_capacity: int
    sessions: _containers.RepeatedCompositeFieldContainer[SessionInfo]
    artifacts: _containers.RepeatedCompositeFieldContainer[ArtifactStatus]
    leases: int
    in_flight: int
    global_store_address: str
    global_store_connected: bool
    pid: int
    reserve_bytes: int
    reserve_ready_bytes: int
    def __init__(self, build: _Optional[str] = ..., worker_id: _Optional[str] = ..., address: _Optional[str] = ..., p2p_address: _Optional[str] = ..., socket_path: _Optional[str] = ..., stable_bytes_used: _Optional[int] = ..., stable_bytes_capacity: _Optional[int] = ..., sessions: _Optional[_Iterable[_Union[SessionInfo, _Mapping]]] = ..., artifacts: _Optional[_Iterable[_Union[ArtifactStatus, _Mapping]]] = ..., leases: _Optional[int] = ..., in_flight: _Optional[int] = ..., global_store_address: _Optional[str] = ..., global_store_connected: _Optional[bool] = ..., pid: _Optional[int] = ..., reserve_bytes: _Optional[int] = ..., reserve_ready_bytes: _Optional[int] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = ("session_id", "pid")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pid: int
    def __init__(self, session_id: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
