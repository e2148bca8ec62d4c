"""The HTTP gateway behind `tensor-wasm serve` (contract: docs/API.md)."""

from __future__ import annotations

from tensorwasm_tc.gateway.app import create_app
from tensorwasm_tc.gateway.config import ConfigError, GatewayConfig
from tensorwasm_tc.gateway.server import serve

__all__ = ["ConfigError", "GatewayConfig", "create_app", "serve"]
