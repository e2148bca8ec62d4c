"""Options of the TensorCast SDK: ports, retries, and per-verb settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Source = Literal["auto", "local_only", "disk_first", "disk_only", "prefer_p2p"]
SOURCES: Final = ("auto", "local_only", "disk_first", "disk_only", "prefer_p2p")
Policy = Literal["cache", "pinned", "durable"]
POLICIES: Final = ("cache", "pinned", "durable")
Verb = Literal["register", "put", "get", "get_into"]


@dataclass(frozen=True, slots=True)
class PortConfig:
    """Ports of processes the SDK starts (``create``/``auto``); 0 picks a free
    port. Ignored in ``connect`` mode; the Global Store ports are ignored
    unless ``global_store_mode="start"``."""

    daemon_listen_port: int | None = None
    daemon_p2p_port: int | None = None
    global_store_listen_port: int | None = None
    global_store_metrics_port: int | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries of one verb: at most ``max_attempts`` calls within
    ``deadline_seconds``, sleeping ``base_backoff_seconds * backoff_multiplier
    ** (attempt - 1)`` between them, times a random factor in
    ``[1 - jitter, 1 + jitter]``."""

    deadline_seconds: float
    max_attempts: int
    base_backoff_seconds: float = 0.1
    backoff_multiplier: float = 2.0
    jitter: float = 0.5


#: Upstream defaults: register 30 s/2, put 45 s/2, get 40 s/3, get_into 40 s/3.
DEFAULT_RETRY: Final[dict[str, RetryPolicy]] = {
    "register": RetryPolicy(30.0, 2),
    "put": RetryPolicy(45.0, 2),
    "get": RetryPolicy(40.0, 3),
    "get_into": RetryPolicy(40.0, 3),
}


@dataclass(frozen=True, slots=True)
class GetArtifactOptions:
    """Where ``get``/``artifact`` may take bytes from."""

    source: Source = "auto"


@dataclass(frozen=True, slots=True)
class StoreOptions:
    get: GetArtifactOptions = field(default_factory=GetArtifactOptions)
    retry_overrides: Mapping[str, RetryPolicy] = field(default_factory=dict)

    def retry_for(self, verb: str) -> RetryPolicy:
        return self.retry_overrides.get(verb) or DEFAULT_RETRY[verb]
