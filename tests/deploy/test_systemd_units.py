"""deploy/systemd/: the units parse, run the release `current` points at
with flags the CLIs accept, and pass `systemd-analyze verify` where it is
installed; their configs load; install.sh is valid shell."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from tensorwasm_tc.tensorcast.daemon.config import DaemonConfig
from tensorwasm_tc.tensorcast.global_store.config import load_config

from tests.deploy import _assets

SYSTEMD = _assets.REPO / "deploy" / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))
CURRENT = "/usr/local/lib/tensor-wasm/current/bin/"


def _unit(path: Path) -> configparser.RawConfigParser:
    # systemd allows repeated keys (Environment=); strict=False keeps the last,
    # which is enough for the keys checked here.
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


def _environment(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.removeprefix("Environment=")):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_the_three_units_exist() -> None:
    assert [u.name for u in UNITS] == [
        "tensor-wasm.service",
        "tensorcast-daemon.service",
        "tensorcast-global-store.service",
    ]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_units_run_current_with_real_flags(path: Path) -> None:
    unit = _unit(path)
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].startswith(CURRENT), "the unit must follow the `current` symlink"
    parsed = _assets.parse_command(argv)
    assert parsed.options.get("blocking", True) is True  # stays in the foreground
    assert service["User"] == "tensorwasm"  # one uid: the fd socket is 0600
    assert service["Type"] == "exec"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_gateway_unit_drains_and_finds_its_daemon() -> None:
    path = SYSTEMD / "tensor-wasm.service"
    service = _unit(path)["Service"]
    # More than 2 x TENSOR_WASM_API_SHUTDOWN_GRACE_S (30 s), docs/API.md.
    assert int(service["TimeoutStopSec"]) > 60
    assert service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"] == "/etc/tensor-wasm/tensor-wasm.env"
    # No MemoryDenyWriteExecute: the Wasm JIT maps the code it compiles.
    assert "MemoryDenyWriteExecute" not in service
    env = _environment(path)
    daemon = DaemonConfig.load(SYSTEMD / "store_daemon_config.yaml")
    assert env["TENSOR_WASM_TENSORCAST_ADDRESS"] == f"{daemon.host}:{daemon.listen_port}"
    argv = shlex.split(service["ExecStart"])
    assert f"--home={env['TENSOR_WASM_HOME']}" in argv or (
        argv[argv.index("--home") + 1] == env["TENSOR_WASM_HOME"]
    )


def test_the_daemon_socket_is_where_the_gateway_may_write() -> None:
    daemon_unit = _unit(SYSTEMD / "tensorcast-daemon.service")["Service"]
    gateway_unit = _unit(SYSTEMD / "tensor-wasm.service")["Service"]
    cfg = DaemonConfig.load(SYSTEMD / "store_daemon_config.yaml")
    runtime_dir = Path("/run") / daemon_unit["RuntimeDirectory"]
    assert Path(cfg.socket_path).parent == runtime_dir
    assert gateway_unit["ReadWritePaths"].lstrip("-") == str(runtime_dir)
    assert Path(cfg.storage_path).is_relative_to(Path("/var/lib") / daemon_unit["StateDirectory"])


def test_configs_and_env_example_load(tmp_path: Path) -> None:
    cfg = DaemonConfig.load(SYSTEMD / "store_daemon_config.yaml")
    assert cfg.global_store.mode == "connect"
    gs = load_config(SYSTEMD / "global_store_config.yaml")
    assert f"{gs.listen_host}:{gs.listen_port}" == cfg.global_store.address
    assert gs.database_path.startswith("/var/lib/tensorcast/")
    from tensorwasm_tc.gateway.config import GatewayConfig

    env: dict[str, str] = {}
    for line in (SYSTEMD / "tensor-wasm.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    GatewayConfig.from_env(environ=env)  # every value is one the gateway accepts


def test_install_script_is_valid_bash_and_uses_the_layout() -> None:
    script = SYSTEMD / "install.sh"
    assert script.stat().st_mode & 0o111, "install.sh must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    text = script.read_text()
    assert "PREFIX=/usr/local/lib/tensor-wasm" in text
    assert 'ln -sfn "v$VERSION" "$PREFIX/current"' in text
    for unit in UNITS:
        assert unit.name in text
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(script)], check=True, timeout=60)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    system_units = Path("/usr/lib/systemd/system")
    if not (system_units / "multi-user.target").exists():
        pytest.skip("no systemd unit library under /usr/lib/systemd/system to verify against")
    # A root with the release layout (stub executables behind `current`) and
    # the host's standard units, so verify checks ExecStart= resolves.
    bin_dir = tmp_path / "usr/local/lib/tensor-wasm/v0.0.0/bin"
    bin_dir.mkdir(parents=True)
    for name in ("tensor-wasm", "tensorcast-cli"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "usr/local/lib/tensor-wasm/current").symlink_to("v0.0.0")
    shutil.copytree(system_units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, unit_dir / unit.name)
    proc = subprocess.run(
        [tool, "verify", "--man=no", f"--root={tmp_path}", *(u.name for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on warnings (unknown keys, bad values): any output fails.
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not out, out
