"""`DaemonConfig`: every knob of the Store Daemon, read once from YAML.

Defaults and units are documented in ``examples/config/store_daemon_config.yaml``
(a copy ships in the wheel as ``tensorwasm_tc/_bundled/store_daemon_config.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from tensorwasm_tc.tensorcast.daemon.layout import DEFAULT_CHUNK_BYTES


def _default_reserve() -> int:
    """1 GiB, or 1/16 of the host's memory when that is less (small hosts)."""
    try:
        names = os.sysconf_names
        phys = os.sysconf(names["SC_PHYS_PAGES"]) * os.sysconf(names["SC_PAGE_SIZE"])
    except (ValueError, OSError, AttributeError, KeyError):
        return 1 << 30
    return int(min(1 << 30, max(0, phys) // 16))


DEFAULT_RESERVE_BYTES = _default_reserve()
#: Overrides ``memory_tiers.reserve_bytes`` (e.g. 0 on small machines and in tests).
RESERVE_ENV = "TENSORCAST_RESERVE_BYTES"

GlobalStoreMode = Literal["none", "connect", "start"]
GLOBAL_STORE_MODES = ("none", "connect", "start")


@dataclass(frozen=True, slots=True)
class GlobalStoreConfig:
    mode: GlobalStoreMode = "none"
    address: str = ""
    config_path: str = ""
    cluster_token: str = ""
    timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class P2PConfig:
    streams: int = 4
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    timeout_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    host: str = "127.0.0.1"
    listen_port: int = 50052
    p2p_port: int = 0
    stable_bytes: int = 8 << 30
    # Warm shared memory kept for the next incoming artifact (see reserve.py).
    reserve_bytes: int = DEFAULT_RESERVE_BYTES
    storage_path: str = ""
    socket_path: str = ""
    max_inline_bytes: int = 256 << 20
    worker_id: str = ""
    # Prometheus /metrics port: 0 = a free port (recorded in the session
    # file and in Status), -1 = off.
    metrics_port: int = 0
    global_store: GlobalStoreConfig = field(default_factory=GlobalStoreConfig)
    p2p: P2PConfig = field(default_factory=P2PConfig)
    #: Test-only fault injection: flip one byte of every chunk this daemon serves
    #: over P2P (its receivers must answer DATA_LOSS). Never set in production.
    p2p_corrupt_chunks: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DaemonConfig:
        tiers = raw.get("memory_tiers") or {}
        gs = raw.get("global_store") or {}
        p2p = raw.get("p2p") or {}
        mode = str(gs.get("mode") or "none")
        if mode not in GLOBAL_STORE_MODES:
            raise ValueError(f"global_store.mode must be one of {GLOBAL_STORE_MODES}, not {mode!r}")
        cfg = cls(
            host=str(raw.get("host") or "127.0.0.1"),
            listen_port=int(raw.get("listen_port", 50052)),
            p2p_port=int(raw.get("p2p_port", 0)),
            stable_bytes=int(tiers.get("stable_bytes", 8 << 30)),
            reserve_bytes=_reserve_bytes(tiers),
            storage_path=str(raw.get("storage_path") or ""),
            socket_path=str(raw.get("socket_path") or ""),
            max_inline_bytes=int(raw.get("max_inline_bytes", 256 << 20)),
            worker_id=str(raw.get("worker_id") or ""),
            metrics_port=int(raw.get("metrics_port", 0)),
            global_store=GlobalStoreConfig(
                mode=mode,  # type: ignore[arg-type]
                address=str(gs.get("address") or ""),
                config_path=str(gs.get("config_path") or ""),
                cluster_token=str(gs.get("cluster_token") or ""),
                timeout_seconds=float(gs.get("timeout_seconds", 5.0)),
            ),
            p2p=P2PConfig(
                streams=max(1, int(p2p.get("streams", 4))),
                chunk_bytes=int(p2p.get("chunk_bytes", DEFAULT_CHUNK_BYTES)),
                timeout_seconds=float(p2p.get("timeout_seconds", 30.0)),
            ),
            p2p_corrupt_chunks=bool(raw.get("p2p_corrupt_chunks", False)),
        )
        if cfg.stable_bytes <= 0 or cfg.p2p.chunk_bytes <= 0:
            raise ValueError("memory_tiers.stable_bytes and p2p.chunk_bytes must be positive")
        if cfg.reserve_bytes < 0:
            raise ValueError("memory_tiers.reserve_bytes must be >= 0")
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> DaemonConfig:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a daemon config is a YAML mapping")
        return cls.from_dict(raw)

    def with_overrides(
        self,
        *,
        listen_port: int | None = None,
        p2p_port: int | None = None,
        global_store_mode: str | None = None,
        global_store_address: str | None = None,
        global_store_config: str | None = None,
    ) -> DaemonConfig:
        cfg = self
        if listen_port is not None:
            cfg = replace(cfg, listen_port=listen_port)
        if p2p_port is not None:
            cfg = replace(cfg, p2p_port=p2p_port)
        gs = cfg.global_store
        if global_store_mode is not None:
            if global_store_mode not in GLOBAL_STORE_MODES:
                raise ValueError(f"global store mode must be one of {GLOBAL_STORE_MODES}")
            gs = replace(gs, mode=global_store_mode)  # type: ignore[arg-type]
        if global_store_address is not None:
            gs = replace(gs, address=global_store_address)
        if global_store_config is not None:
            gs = replace(gs, config_path=global_store_config)
        return replace(cfg, global_store=gs)

    def config_hash(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _reserve_bytes(tiers: dict[str, Any]) -> int:
    env = os.environ.get(RESERVE_ENV, "").strip()
    if env:
        try:
            return int(env)
        except ValueError:
            raise ValueError(f"{RESERVE_ENV} must be a byte count, not {env!r}") from None
    return int(tiers.get("reserve_bytes", DEFAULT_RESERVE_BYTES))


def packaged_config_path() -> Path:
    """The daemon config shipped in the wheel."""
    return Path(str(resources.files("tensorwasm_tc._bundled").joinpath("store_daemon_config.yaml")))
