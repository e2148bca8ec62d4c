"""The Global Store's configuration: one frozen dataclass, read once from a
YAML file (``examples/config/global_store_config.yaml`` is the reference).

Every knob has a default, so an empty file is a valid configuration. Command
line overrides (``--listen-port``, ``--metrics-port``) are applied with
`GlobalStoreConfig.with_overrides`; nothing below this module reads the
environment except `default_database_path` (``$TENSORCAST_HOME``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from tensorwasm_tc.tensorcast.sessions import tensorcast_home

#: gRPC port of the Global Store when the config names none (upstream default).
DEFAULT_LISTEN_PORT: Final = 50051
#: Prometheus port when the config names none (upstream example's value).
DEFAULT_METRICS_PORT: Final = 18008
#: File name of the config shipped inside the package.
BUNDLED_CONFIG_NAME: Final = "global_store_config.yaml"

_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """The configuration file is missing, malformed or out of range."""


def default_database_path() -> Path:
    return tensorcast_home() / "global_store" / "metadata.db"


def bundled_config_path() -> Path:
    """The reference config shipped in the wheel (``tensorwasm_tc._bundled``)."""
    return Path(str(resources.files("tensorwasm_tc._bundled").joinpath(BUNDLED_CONFIG_NAME)))


@dataclass(frozen=True, slots=True)
class GlobalStoreConfig:
    """Everything the Global Store process needs.

    ``listen_port``/``metrics_port`` 0 pick a free port; ``metrics_port`` -1
    disables the metrics endpoint. ``database_path`` empty means
    ``$TENSORCAST_HOME/global_store/metadata.db``; ``":memory:"`` keeps
    nothing across restarts (tests only).
    """

    listen_host: str = "127.0.0.1"
    listen_port: int = DEFAULT_LISTEN_PORT
    metrics_host: str = "127.0.0.1"
    metrics_port: int = DEFAULT_METRICS_PORT
    database_path: str = ""
    heartbeat_interval_ms: int = 2_000
    heartbeat_timeout_ms: int = 10_000
    cluster_token: str = ""
    log_level: str = "INFO"
    max_workers: int = 16
    shutdown_grace_ms: int = 5_000

    def __post_init__(self) -> None:
        for name in ("listen_port", "metrics_port"):
            v = getattr(self, name)
            low = -1 if name == "metrics_port" else 0
            if not low <= v <= 65535:
                raise ConfigError(f"{name} must be in [{low}, 65535], got {v}")
        if self.heartbeat_interval_ms <= 0:
            raise ConfigError("heartbeat_interval_ms must be > 0")
        if self.heartbeat_timeout_ms <= self.heartbeat_interval_ms:
            raise ConfigError("heartbeat_timeout_ms must be greater than heartbeat_interval_ms")
        if self.max_workers <= 0:
            raise ConfigError("max_workers must be > 0")
        if self.shutdown_grace_ms < 0:
            raise ConfigError("shutdown_grace_ms must be >= 0")
        if self.log_level.upper() not in _LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}")

    def resolved_database_path(self) -> str:
        if not self.database_path:
            return str(default_database_path())
        if self.database_path == ":memory:":
            return self.database_path
        return str(Path(self.database_path).expanduser())

    def with_overrides(
        self, *, listen_port: int | None = None, metrics_port: int | None = None
    ) -> GlobalStoreConfig:
        changes: dict[str, Any] = {}
        if listen_port is not None:
            changes["listen_port"] = listen_port
        if metrics_port is not None:
            changes["metrics_port"] = metrics_port
        return dataclasses.replace(self, **changes) if changes else self

    def config_hash(self) -> str:
        """A stable digest of the effective settings (the token is hashed in,
        never stored in clear anywhere else)."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# YAML layout -> dataclass field. Nested sections keep the file readable;
# flat keys are accepted too so a one-line override is easy to write.
_NESTED: Final[dict[tuple[str, str], str]] = {
    ("listen", "host"): "listen_host",
    ("listen", "port"): "listen_port",
    ("metrics", "host"): "metrics_host",
    ("metrics", "port"): "metrics_port",
    ("database", "path"): "database_path",
    ("heartbeat", "interval_ms"): "heartbeat_interval_ms",
    ("heartbeat", "timeout_ms"): "heartbeat_timeout_ms",
    ("server", "max_workers"): "max_workers",
    ("server", "shutdown_grace_ms"): "shutdown_grace_ms",
}
_FLAT: Final = frozenset(f.name for f in dataclasses.fields(GlobalStoreConfig))


def config_from_mapping(data: dict[str, Any], base_dir: Path | None = None) -> GlobalStoreConfig:
    """Builds a config from parsed YAML. ``cluster_token_file`` is read here
    (relative to ``base_dir``); unknown keys are an error, so typos surface."""
    values: dict[str, Any] = {}
    token_file: str | None = None
    for key, val in data.items():
        if isinstance(val, dict) and any((key, k) in _NESTED for k in val):
            for sub, subval in val.items():
                field_name = _NESTED.get((key, sub))
                if field_name is None:
                    raise ConfigError(f"unknown config key {key}.{sub}")
                values[field_name] = subval
        elif key == "cluster_token_file":
            token_file = None if val in (None, "") else str(val)
        elif key in _FLAT:
            values[key] = val
        else:
            raise ConfigError(f"unknown config key {key}")
    if token_file is not None:
        if values.get("cluster_token"):
            raise ConfigError("set cluster_token or cluster_token_file, not both")
        path = Path(token_file).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            values["cluster_token"] = path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read cluster_token_file {path}: {e.strerror}") from e
    for name in ("listen_host", "metrics_host", "database_path", "cluster_token", "log_level"):
        if name in values:
            values[name] = "" if values[name] is None else str(values[name])
    for name in (
        "listen_port",
        "metrics_port",
        "heartbeat_interval_ms",
        "heartbeat_timeout_ms",
        "max_workers",
        "shutdown_grace_ms",
    ):
        if name in values:
            v = values[name]
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name} must be an integer, got {v!r}")
    return GlobalStoreConfig(**values)


def load_config(path: str | Path) -> GlobalStoreConfig:
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config {p} is not valid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {p} must be a mapping at the top level")
    section = data.get("global_store", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config {p}: global_store must be a mapping")
    return config_from_mapping(section, base_dir=p.parent)
