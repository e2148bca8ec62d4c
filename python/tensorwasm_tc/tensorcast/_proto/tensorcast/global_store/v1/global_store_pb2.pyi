from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_MEMORY: _ClassVar[Tier]
    TIER_DISK: _ClassVar[Tier]
TIER_UNSPECIFIED: Tier
TIER_MEMORY: Tier
TIER_DISK: Tier

class TensorSpec(_message.Message):
    __slots__ = ("name", "dtype", "shape", "offset", "nbytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    offset: int
    nbytes: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., offset: _Optional[int] = ..., nbytes: _Optional[int] = ...) -> None: ...

class ArtifactManifest(_message.Message):
    __slots__ = ("artifact_id", "tensors", "total_bytes", "chunk_bytes", "chunk_checksums", "policy", "created_unix_ms")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    tensors: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    total_bytes: int
    chunk_bytes: int
    chunk_checksums: _containers.RepeatedScalarFieldContainer[bytes]
    policy: str
    created_unix_ms: int
    def __init__(self, artifact_id: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., total_bytes: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., chunk_checksums: _Optional[_Iterable[bytes]] = ..., policy: _Optional[str] = ..., created_unix_ms: _Optional[int] = ...) -> None: ...

class Replica(_message.Message):
    __slots__ = ("worker_id", "tier", "p2p_address", "load")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    P2P_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    tier: Tier
    p2p_address: str
    load: int
    def __init__(self, worker_id: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., p2p_address: _Optional[str] = ..., load: _Optional[int] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("worker_id", "address", "p2p_address", "build", "registered_unix_ms", "last_heartbeat_unix_ms", "stable_bytes_used", "stable_bytes_capacity", "active_transfers", "alive")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    P2P_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STABLE_BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    STABLE_BYTES_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    p2p_address: str
    build: str
    registered_unix_ms: int
    last_heartbeat_unix_ms: int
    stable_bytes_used: int
    stable_bytes_capacity: int
    active_transfers: int
    alive: bool
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., p2p_address: _Optional[str] = ..., build: _Optional[str] = ..., registered_unix_ms: _Optional[int] = ..., last_heartbeat_unix_ms: _Optional[int] = ..., stable_bytes_used: _Optional[int] = ..., stable_bytes_capacity: _Optional[int] = ..., active_transfers: _Optional[int] = ..., alive: _Optional[bool] = ...) -> None: ...

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "address", "p2p_address", "build", "stable_bytes_capacity")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    P2P_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    STABLE_BYTES_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    p2p_address: str
    build: str
    stable_bytes_capacity: int
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., p2p_address: _Optional[str] = ..., build: _Optional[str] = ..., stable_bytes_capacity: _Optional[int] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("heartbeat_interval_ms", "heartbeat_timeout_ms")
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ..., heartbeat_timeout_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "stable_bytes_used", "active_transfers")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STABLE_BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    stable_bytes_used: int
    active_transfers: int
    def __init__(self, worker_id: _Optional[str] = ..., stable_bytes_used: _Optional[int] = ..., active_transfers: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    def __init__(self, known: _Optional[bool] = ...) -> None: ...

class UnregisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class UnregisterWorkerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("include_dead",)
    INCLUDE_DEAD_FIELD_NUMBER: _ClassVar[int]
    include_dead: bool
    def __init__(self, include_dead: _Optional[bool] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ...) -> None: ...

class RegisterArtifactRequest(_message.Message):
    __slots__ = ("manifest", "worker_id", "tier")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    manifest: ArtifactManifest
    worker_id: str
    tier: Tier
    def __init__(self, manifest: _Optional[_Union[ArtifactManifest, _Mapping]] = ..., worker_id: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ...) -> None: ...

class RegisterArtifactResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class GetArtifactRequest(_message.Message):
    __slots__ = ("artifact_id",)
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    def __init__(self, artifact_id: _Optional[str] = ...) -> None: ...

class GetArtifactResponse(_message.Message):
    __slots__ = ("manifest", "replicas")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    manifest: ArtifactManifest
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    def __init__(self, manifest: _Optional[_Union[ArtifactManifest, _Mapping]] = ..., replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ...) -> None: ...

class AddReplicaRequest(_message.Message):
    __slots__ = ("artifact_id", "worker_id", "tier")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    worker_id: str
    tier: Tier
    def __init__(self, artifact_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ...) -> None: ...

class AddReplicaResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveReplicaRequest(_message.Message):
    __slots__ = ("artifact_id", "worker_id", "tier")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    worker_id: str
    tier: Tier
    def __init__(self, artifact_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ...) -> None: ...

class RemoveReplicaResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PutKeyRequest(_message.Message):
    __slots__ = ("key", "artifact_id", "expected_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    artifact_id: str
    expected_version: int
    def __init__(self, key: _Optional[str] = ..., artifact_id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class PutKeyResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class GetKeyRequest(_message.Message):
    __slots__ = ("key", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    version: int
    def __init__(self, key: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetKeyResponse(_message.Message):
    __slots__ = ("key", "artifact_id", "version", "updated_unix_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    key: str
    artifact_id: str
    version: int
    updated_unix_ms: int
    def __init__(self, key: _Optional[str] = ..., artifact_id: _Optional[str] = ..., version: _Optional[int] = ..., updated_unix_ms: _Optional[int] = ...) -> None: ...

class DeleteKeyRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class DeleteKeyResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[GetKeyResponse]
    def __init__(self, keys: _Optional[_Iterable[_Union[GetKeyResponse, _Mapping]]] = ...) -> None: ...

class PickSourceRequest(_message.Message):
    __slots__ = ("artifact_id", "worker_id", "prefer_disk")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PREFER_DISK_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    worker_id: str
    prefer_disk: bool
    def __init__(self, artifact_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., prefer_disk: _Optional[bool] = ...) -> None: ...

class PickSourceResponse(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: Replica
    def __init__(self, source: _Optional[_Union[Replica, _Mapping]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("schema_version", "build", "workers_alive", "artifacts", "keys")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    WORKERS_ALIVE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    build: str
    workers_alive: int
    artifacts: int
    keys: int
    def __init__(self, schema_version: _Optional[int] = ..., build: _Optional[str] = ..., workers_alive: _Optional[int] = ..., artifacts: _Optional[int] = ..., keys: _Optional[int] = ...) -> None: ...
