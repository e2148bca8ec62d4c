"""The gateway's configuration: read once, from flags and the environment,
into one immutable object that every component receives.

Token entries (``TENSOR_WASM_API_TOKENS``) are parsed here as well, since a
malformed entry must be reported at startup, by position, never by value.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from tensorwasm_tc import TensorWasmError
from tensorwasm_tc._tracing import TracingConfig
from tensorwasm_tc.runtime import default_home, snapshot_key_from_env

log = logging.getLogger("tensorwasm_tc.gateway")

U64_MAX: Final = (1 << 64) - 1
DEFAULT_RATE_QPS: Final = 100.0
DEFAULT_RATE_BURST: Final = 200.0
# The snapshot codec's bounds on a signing key (HMAC-SHA256), in bytes.
SNAPSHOT_KEY_MIN_BYTES: Final = 16
SNAPSHOT_KEY_MAX_BYTES: Final = 4096
# A restore body holds at most a 4 GiB memory (the executor's ceiling), the
# module (64 MiB) and the framing; 5 GiB is also the reader's section cap.
DEFAULT_MAX_SNAPSHOT_BYTES: Final = 5 << 30
BARE_TOKEN_WARNING: Final = (
    "bare bearer tokens in TENSOR_WASM_API_TOKENS are deprecated and get wildcard scope; "
    "rewrite each as token:tenant=* or token:tenant=1,2,3"
)


def _off(raw: str) -> bool:
    """``TENSOR_WASM_TENSORCAST``: on unless 0/off/false/no/none."""
    value = raw.lower()
    if value not in ("", "1", "on", "true", "yes", "auto", "0", "off", "false", "no", "none"):
        raise ConfigError("TENSOR_WASM_TENSORCAST must be auto (on) or off")
    return value in ("0", "off", "false", "no", "none")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class TokenEntry:
    """One bearer token and the tenants it may act for (``None`` = all)."""

    secret: str
    tenants: frozenset[int] | None
    position: int
    bare: bool = False

    def allows(self, tenant: int) -> bool:
        return self.tenants is None or tenant in self.tenants

    @property
    def scope(self) -> str | list[int]:
        return "*" if self.tenants is None else sorted(self.tenants)


@dataclass(frozen=True)
class TokenParse:
    entries: tuple[TokenEntry, ...]
    malformed: tuple[tuple[int, str], ...]  # (1-based position, reason)
    bare_positions: tuple[int, ...]


_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


def parse_tokens(raw: str) -> TokenParse:
    """Parses ``TENSOR_WASM_API_TOKENS``.

    Entries are comma-separated: ``token:tenant=*`` (every tenant),
    ``token:tenant=1,2,3`` (those tenants) or a bare ``token`` (deprecated;
    every tenant). Because the tenant list uses commas too, a piece made only
    of digits continues the tenant list of the entry before it when that
    entry has a list; anywhere else it is malformed (never a token: a stray
    tenant id must not become a wildcard secret). Whitespace around pieces
    is ignored; empty pieces are skipped.
    """
    entries: list[TokenEntry] = []
    malformed: list[tuple[int, str]] = []
    bare: list[int] = []
    position = 0
    list_open = False  # the previous entry was token:tenant=<list>
    for piece in (p.strip() for p in raw.split(",")):
        if not piece:
            continue
        if piece.isdigit() and list_open:
            tenant = int(piece)
            last = entries[-1]
            if tenant > U64_MAX:
                malformed.append((last.position, "tenant id out of range"))
                entries.pop()
                list_open = False
                continue
            assert last.tenants is not None
            entries[-1] = TokenEntry(last.secret, last.tenants | {tenant}, last.position)
            continue
        position += 1
        list_open = False
        if piece.isdigit():
            malformed.append(
                (position, "a tenant id with no token:tenant=<list> entry before it to continue")
            )
            continue
        token, sep, rest = piece.partition(":")
        if not token or not _TOKEN_CHARS.match(token):
            malformed.append(
                (position, "token is empty or has characters outside [A-Za-z0-9._~+/=-]")
            )
            continue
        if not sep:
            entries.append(TokenEntry(token, None, position, bare=True))
            bare.append(position)
            continue
        key, eq, value = rest.partition("=")
        if key.strip() != "tenant" or not eq:
            malformed.append((position, "expected token:tenant=* or token:tenant=1,2,3"))
            continue
        value = value.strip()
        if value == "*":
            entries.append(TokenEntry(token, None, position))
            continue
        if not value.isdigit():
            malformed.append((position, "tenant must be * or a list of unsigned integers"))
            continue
        tenant = int(value)
        if tenant > U64_MAX:
            malformed.append((position, "tenant id out of range"))
            continue
        entries.append(TokenEntry(token, frozenset({tenant}), position))
        list_open = True
    secrets = [e.secret for e in entries]
    if len(set(secrets)) != len(secrets):
        # The same secret twice with different scopes is ambiguous: keep the first.
        seen: set[str] = set()
        unique: list[TokenEntry] = []
        for e in entries:
            if e.secret in seen:
                malformed.append((e.position, "duplicate token; the first entry wins"))
            else:
                seen.add(e.secret)
                unique.append(e)
        entries = unique
    return TokenParse(tuple(entries), tuple(malformed), tuple(bare))


@dataclass(frozen=True)
class GatewayConfig:
    """Every knob of `tensor-wasm serve`. Build with `GatewayConfig.from_env`."""

    host: str = "127.0.0.1"
    port: int = 8080
    home: Path = field(default_factory=default_home)
    tokens_raw: str = ""
    tokens: tuple[TokenEntry, ...] = ()
    token_problems: tuple[tuple[int, str], ...] = ()
    bare_token_positions: tuple[int, ...] = ()
    require_tenant: bool = False
    rate_limit_qps: float = 0.0
    rate_limit_burst: float = 0.0
    audit_log: str = "stdout"  # stdout | none | file:/path
    metrics_token: str | None = None
    max_body_bytes: int = 64 << 20
    max_concurrent_invokes: int = 256
    max_concurrent_writes: int = 64
    max_concurrent_reads: int = 512
    request_timeout_s: float = 300.0
    shutdown_grace_s: float = 30.0
    executor_threads: int = 0  # 0 = 4 x CPUs, at least 8
    max_memory_bytes: int = 4 << 30
    max_deadline_ms: int = 600_000
    default_memory_bytes: int = 256 << 20
    default_deadline_ms: int = 30_000
    max_args: int = 64
    max_async_jobs: int = 10_000
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES
    # Signs every snapshot the gateway writes and checks every one it
    # restores; kept out of repr so it never reaches a log line.
    snapshot_key: bytes | None = field(default=None, repr=False)
    snapshot_require_signature: bool = False
    # TensorCast: auto (attach to or start a daemon under TENSORCAST_HOME),
    # connect (to tensorcast_address) or off.
    tensorcast_mode: str = "auto"
    tensorcast_address: str | None = None
    # OpenTelemetry tracing (the standard OTEL_* variables); off by default.
    tracing: TracingConfig = field(default_factory=TracingConfig)
    # Who listens on the port under `tensor-wasm serve`: the native front
    # (function invokes served without Python, the rest forwarded to this
    # app) or the app itself ("python").
    front: str = "native"

    @property
    def dev_mode(self) -> bool:
        """No tokens configured at all: every request is allowed."""
        return not self.tokens_raw.strip()

    @property
    def rate_limited(self) -> bool:
        return self.rate_limit_qps > 0 and self.rate_limit_burst > 0

    @property
    def threads(self) -> int:
        return self.executor_threads or max(8, 4 * (os.cpu_count() or 1))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        home: Path | str | None = None,
        tensorcast_address: str | None = None,
        tensorcast: bool | None = None,
    ) -> GatewayConfig:
        env = os.environ if environ is None else environ

        def text(name: str) -> str:
            return env.get(name, "").strip()

        def number(name: str, default: float, *, minimum: float = 0) -> float:
            raw = text(name)
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if value != value or value < minimum or value == float("inf"):
                raise ConfigError(f"{name} must be a finite number >= {minimum}")
            return value

        def integer(name: str, default: int, *, minimum: int = 0) -> int:
            raw = text(name)
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"{name} must be >= {minimum}")
            return value

        qps = number("TENSOR_WASM_API_RATE_LIMIT_QPS", 0.0)
        burst = number("TENSOR_WASM_API_RATE_LIMIT_BURST", 0.0)
        if qps > 0 and burst <= 0:
            burst = DEFAULT_RATE_BURST
        elif burst > 0 and qps <= 0:
            qps = DEFAULT_RATE_QPS

        audit = text("TENSOR_WASM_API_AUDIT_LOG") or "stdout"
        if audit not in ("stdout", "none") and not (
            audit.startswith("file:") and len(audit) > len("file:")
        ):
            raise ConfigError("TENSOR_WASM_API_AUDIT_LOG must be stdout, none or file:/path")

        require = text("TENSOR_WASM_API_REQUIRE_TENANT").lower()
        if require not in ("", "0", "1", "true", "false", "yes", "no"):
            raise ConfigError("TENSOR_WASM_API_REQUIRE_TENANT must be 0 or 1")

        def flag(name: str) -> bool:
            raw = text(name).lower()
            if raw not in ("", "0", "1", "true", "false", "yes", "no", "on", "off"):
                raise ConfigError(f"{name} must be 0 or 1")
            return raw in ("1", "true", "yes", "on")

        try:
            snapshot_key = snapshot_key_from_env(env)
        except TensorWasmError:
            raise ConfigError("TENSOR_WASM_SNAPSHOT_KEY_FILE cannot be read") from None
        if snapshot_key is not None and not (
            SNAPSHOT_KEY_MIN_BYTES <= len(snapshot_key) <= SNAPSHOT_KEY_MAX_BYTES
        ):
            raise ConfigError(
                f"the snapshot signing key (TENSOR_WASM_SNAPSHOT_KEY_FILE or "
                f"TENSOR_WASM_SNAPSHOT_KEY) must be {SNAPSHOT_KEY_MIN_BYTES} to "
                f"{SNAPSHOT_KEY_MAX_BYTES} bytes"
            )
        require_signature = flag("TENSOR_WASM_SNAPSHOT_REQUIRE_SIGNATURE")
        if require_signature and snapshot_key is None:
            raise ConfigError(
                "TENSOR_WASM_SNAPSHOT_REQUIRE_SIGNATURE=1 needs a signing key: set "
                "TENSOR_WASM_SNAPSHOT_KEY_FILE (or TENSOR_WASM_SNAPSHOT_KEY)"
            )

        tc_address = tensorcast_address or text("TENSOR_WASM_TENSORCAST_ADDRESS") or None
        if tc_address is not None and not re.match(r"^[^\s:]+:\d{1,5}$", tc_address):
            raise ConfigError(
                f"the TensorCast address must be host:port, got {tc_address!r} "
                "(--tensorcast-address / TENSOR_WASM_TENSORCAST_ADDRESS)"
            )
        tc_on = tensorcast if tensorcast is not None else not _off(text("TENSOR_WASM_TENSORCAST"))
        tc_mode = "off" if not tc_on else ("connect" if tc_address else "auto")

        try:
            tracing = TracingConfig.from_env(env)
        except ValueError as err:
            raise ConfigError(str(err)) from None

        front = text("TENSOR_WASM_API_FRONT").lower() or "native"
        if front not in ("native", "python"):
            raise ConfigError("TENSOR_WASM_API_FRONT must be native or python")

        raw_tokens = env.get("TENSOR_WASM_API_TOKENS", "")
        parsed = parse_tokens(raw_tokens)
        home_path = Path(home).expanduser() if home is not None else default_home(env)
        return cls(
            host=host or text("TENSOR_WASM_API_HOST") or "127.0.0.1",
            port=port if port is not None else integer("TENSOR_WASM_API_PORT", 8080),
            home=home_path,
            tokens_raw=raw_tokens,
            tokens=parsed.entries,
            token_problems=parsed.malformed,
            bare_token_positions=parsed.bare_positions,
            require_tenant=require in ("1", "true", "yes"),
            rate_limit_qps=qps,
            rate_limit_burst=burst,
            audit_log=audit,
            metrics_token=text("TENSOR_WASM_API_METRICS_TOKEN") or None,
            max_body_bytes=integer("TENSOR_WASM_API_MAX_BODY_BYTES", 64 << 20, minimum=1024),
            max_concurrent_invokes=integer(
                "TENSOR_WASM_API_MAX_CONCURRENT_INVOKES", 256, minimum=1
            ),
            max_concurrent_writes=integer("TENSOR_WASM_API_MAX_CONCURRENT_WRITES", 64, minimum=1),
            max_concurrent_reads=integer("TENSOR_WASM_API_MAX_CONCURRENT_READS", 512, minimum=1),
            request_timeout_s=number("TENSOR_WASM_API_REQUEST_TIMEOUT_S", 300.0, minimum=0.001),
            shutdown_grace_s=number("TENSOR_WASM_API_SHUTDOWN_GRACE_S", 30.0),
            executor_threads=integer("TENSOR_WASM_EXECUTOR_THREADS", 0),
            max_memory_bytes=integer("TENSOR_WASM_API_MAX_MEMORY_BYTES", 4 << 30, minimum=1 << 16),
            max_deadline_ms=integer("TENSOR_WASM_API_MAX_DEADLINE_MS", 600_000, minimum=1),
            max_async_jobs=integer("TENSOR_WASM_API_MAX_ASYNC_JOBS", 10_000, minimum=1),
            max_snapshot_bytes=integer(
                "TENSOR_WASM_API_MAX_SNAPSHOT_BYTES", DEFAULT_MAX_SNAPSHOT_BYTES, minimum=1024
            ),
            snapshot_key=snapshot_key,
            snapshot_require_signature=require_signature,
            tensorcast_mode=tc_mode,
            tensorcast_address=tc_address,
            tracing=tracing,
            front=front,
        )

    def log_startup(self) -> None:
        """The startup lines operators look for (auth, rate limit, audit sink)."""
        for position, reason in self.token_problems:
            log.warning("TENSOR_WASM_API_TOKENS entry #%d ignored: %s", position, reason)
        if self.bare_token_positions:
            log.warning(
                BARE_TOKEN_WARNING + " (entries %s)",
                ", ".join(f"#{p}" for p in self.bare_token_positions),
            )
        if self.dev_mode:
            log.warning(
                "DEV MODE: TENSOR_WASM_API_TOKENS is empty, so every request is allowed "
                "without a token. Never expose this server beyond localhost."
            )
        elif not self.tokens:
            log.error(
                "TENSOR_WASM_API_TOKENS has no usable entry: every authenticated request "
                "will be refused with 401"
            )
        else:
            log.info("auth: %d bearer token(s) configured", len(self.tokens))
        if self.rate_limited:
            log.info(
                "rate limit: per token, %g requests/s, burst %g",
                self.rate_limit_qps,
                self.rate_limit_burst,
            )
        else:
            log.info("rate limit: off")
        log.info("audit log: %s", self.audit_log)
        if self.tensorcast_mode == "off":
            log.info("TensorCast: off (functions cannot bind artifacts)")
        elif self.tensorcast_mode == "connect":
            log.info("TensorCast: connecting to the daemon at %s", self.tensorcast_address)
        else:
            log.info("TensorCast: auto (a daemon under TENSORCAST_HOME, started if none runs)")
        if self.snapshot_key is None:
            log.info("snapshots: unsigned (no TENSOR_WASM_SNAPSHOT_KEY_FILE)")
        else:
            log.info(
                "snapshots: signed; restore %s",
                "requires a valid signature"
                if self.snapshot_require_signature
                else "checks signatures when present",
            )
