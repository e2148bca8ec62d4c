"""Bearer tokens, tenants and token ids.

Tokens are compared in constant time against every configured token (the
loop never stops early), so timing reveals neither a match nor its
position. Audit records and rate-limit buckets name a token by its
*token id*: a keyed BLAKE2b hash whose key is kept in
``$TENSOR_WASM_HOME/gateway/token-id.key`` so ids stay stable across
restarts but cannot be recomputed from a guessed token elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tensorwasm_tc.gateway.config import U64_MAX, GatewayConfig, TokenEntry
from tensorwasm_tc.gateway.errors import ApiError

TENANT_HEADER: Final = "x-tensorwasm-tenant"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``kind`` is bearer, dev or anonymous."""

    kind: str
    token_id: str | None
    entry: TokenEntry | None

    def allows(self, tenant: int) -> bool:
        if self.kind == "dev":
            return True
        return self.entry is not None and self.entry.allows(tenant)

    @property
    def scope(self) -> str | list[int] | None:
        if self.kind == "dev":
            return "*"
        return None if self.entry is None else self.entry.scope

    def audit_actor(self) -> dict[str, object]:
        return {"kind": self.kind, "token_id": self.token_id, "scope": self.scope}


def load_or_create_key(home: Path) -> bytes:
    """The token-id key: 32 random bytes, created once with mode 0600."""
    path = home / "gateway" / "token-id.key"
    try:
        data = path.read_bytes()
        if len(data) == 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


class Authenticator:
    def __init__(self, config: GatewayConfig, key: bytes) -> None:
        self._key = key
        self._dev = config.dev_mode
        # Compare digests, not secrets, so every comparison has one length.
        self._entries = [(self._digest(e.secret), e) for e in config.tokens]
        self._ids = {e.secret: self.token_id(e.secret) for e in config.tokens}
        self._cache: dict[str, Principal] = {}

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def token_id(self, token: str) -> str:
        return hashlib.blake2b(token.encode(), key=self._key, digest_size=12).hexdigest()

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller, or `ApiError("unauthorized")`."""
        if self._dev:
            return Principal("dev", None, None)
        token = _bearer(authorization)
        if token is None:
            raise ApiError(
                "unauthorized",
                "missing bearer token: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = self._digest(token)
        found: TokenEntry | None = None
        for candidate, entry in self._entries:
            if hmac.compare_digest(candidate, digest) and found is None:
                found = entry
        if found is None:
            raise ApiError(
                "unauthorized", "invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        principal = self._cache.get(found.secret)
        if principal is None:
            principal = Principal("bearer", self._ids[found.secret], found)
            self._cache[found.secret] = principal
        return principal

    def anonymous(self, authorization: str | None) -> Principal:
        """The audit actor for a refused request: the presented token's id, if any."""
        token = _bearer(authorization)
        return Principal("anonymous", None if token is None else self.token_id(token), None)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def parse_tenant(raw: str | None, *, required: bool) -> int:
    """The acting tenant from ``X-TensorWasm-Tenant`` (default 0)."""
    if raw is None:
        if required:
            raise ApiError(
                "missing_tenant", "the X-TensorWasm-Tenant header is required on this server"
            )
        return 0
    raw = raw.strip()
    if not raw.isdigit() or int(raw) > U64_MAX:
        raise ApiError("invalid_tenant", "X-TensorWasm-Tenant must be an unsigned 64-bit integer")
    return int(raw)
