"""How `tensor-wasm serve` picks its TensorCast link (flags and env)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tensorwasm_tc.gateway import ConfigError, GatewayConfig

from tests.integration._gateway import SERVE_COMMAND


@pytest.mark.parametrize(
    ("env", "kwargs", "mode", "address"),
    [
        ({}, {}, "auto", None),
        ({"TENSOR_WASM_TENSORCAST": "auto"}, {}, "auto", None),
        ({"TENSOR_WASM_TENSORCAST": "OFF"}, {}, "off", None),
        ({"TENSOR_WASM_TENSORCAST": "0"}, {}, "off", None),
        ({"TENSOR_WASM_TENSORCAST_ADDRESS": "10.0.0.7:50052"}, {}, "connect", "10.0.0.7:50052"),
        ({}, {"tensorcast_address": "localhost:6000"}, "connect", "localhost:6000"),
        ({"TENSOR_WASM_TENSORCAST": "off"}, {"tensorcast": True}, "auto", None),
        ({}, {"tensorcast": False}, "off", None),
    ],
)
def test_mode_and_address(
    tmp_path: Path, env: dict[str, str], kwargs: dict[str, object], mode: str, address: str | None
) -> None:
    cfg = GatewayConfig.from_env(env, home=tmp_path, **kwargs)  # type: ignore[arg-type]
    assert (cfg.tensorcast_mode, cfg.tensorcast_address) == (mode, address)


@pytest.mark.parametrize(
    "env",
    [
        {"TENSOR_WASM_TENSORCAST": "maybe"},
        {"TENSOR_WASM_TENSORCAST_ADDRESS": "no-port"},
        {"TENSOR_WASM_TENSORCAST_ADDRESS": "host:port"},
    ],
)
def test_bad_settings_name_the_variable(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="TENSOR_WASM_TENSORCAST"):
        GatewayConfig.from_env(env, home=tmp_path)


def test_the_two_flags_exclude_each_other(tmp_path: Path) -> None:
    r = subprocess.run(
        [*SERVE_COMMAND, "--home", str(tmp_path), "--no-tensorcast",
         "--tensorcast-address", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "exclude each other" in r.stderr
