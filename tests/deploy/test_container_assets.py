"""Dockerfile, .dockerignore, docker-compose.yml and
deploy/prometheus/prometheus.yml, checked without a container engine: what
the Dockerfile copies exists and is not ignored, the runtime stage is
unprivileged and runs the gateway, compose runs real commands on real paths,
and Prometheus scrapes what compose runs."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tensorwasm_tc
import yaml
from tensorwasm_tc.tensorcast.daemon.config import DaemonConfig
from tensorwasm_tc.tensorcast.global_store.config import load_config

from tests.deploy import _assets

REPO = _assets.REPO
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
#: Written by other work on the same issue (SLO alerts, dashboards): the
#: compose file mounts them; their content is tested elsewhere.
MOUNTED_FROM_ELSEWHERE = {"deploy/prometheus/alerts.yaml", "docs/dashboards"}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continuation"
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in _instructions():
        if word == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, flags=re.I)
            assert m, f"every stage is named: FROM {rest}"
            current = stages.setdefault(m.group(2), [])
        if current is not None:
            current.append((word, rest))
    return stages


def _args() -> dict[str, str]:
    return dict(
        re.match(r"(\w+)=(\S+)", rest).groups()  # type: ignore[union-attr]
        for word, rest in _instructions()
        if word == "ARG" and "=" in rest
    )


def _json_array(rest: str) -> list[str]:
    value = yaml.safe_load(rest)
    assert isinstance(value, list), f"exec form expected: {rest}"
    return [str(v) for v in value]


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [p.strip().rstrip("/") for p in lines if p.strip() and not p.startswith("#")]


def test_the_builder_copies_existing_sources_the_context_keeps() -> None:
    builder = _stages()["builder"]
    ignored = _dockerignore()
    copied = []
    for word, rest in builder:
        if word == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            copied.extend(parts[:-1])
    assert {"Cargo.toml", "Cargo.lock", "pyproject.toml", "rust/", "python/"} <= set(copied)
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        name = src.rstrip("/")
        assert not any(fnmatch.fnmatch(name, pat) for pat in ignored), f"{src} is dockerignored"
    runs = " ".join(rest for word, rest in builder if word == "RUN")
    assert "pip wheel" in runs or "maturin build" in runs
    assert _args()["RUST_VERSION"].startswith(
        re.search(r'rust-version = "([\d.]+)"', (REPO / "Cargo.toml").read_text()).group(1)  # type: ignore[union-attr]
    )


def test_the_context_leaves_out_build_outputs() -> None:
    ignored = _dockerignore()
    for path in ("target", ".git", ".venv", "python/tensorwasm_tc/_core.abi3.so"):
        assert any(fnmatch.fnmatch(path, pat) for pat in ignored), path


def test_the_runtime_stage_is_slim_unprivileged_and_serves() -> None:
    stages = _stages()
    assert list(stages)[-1] == "runtime", "the last stage is the image"
    runtime = stages["runtime"]
    assert "slim" in runtime[0][1]
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert copies == ["--from=builder /dist/ /tmp/dist/"], "only the wheel comes in"
    assert any("pip install" in rest and "/tmp/dist/*.whl" in rest for w, rest in runtime)
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0].replace("${UID}", _args()["UID"])
    assert uid not in {"0", "root"}
    # The uid the chart and deploy/k8s run the gateway and daemon as.
    chart_values = yaml.safe_load((_assets.CHART / "values.yaml").read_text())
    assert int(uid) == chart_values["podSecurityContext"]["runAsUser"]
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "TENSOR_WASM_HOME=/var/lib/tensor-wasm" in env
    health = next(rest for word, rest in runtime if word == "HEALTHCHECK")
    assert "/healthz" in health
    entrypoint = _json_array(next(rest for word, rest in runtime if word == "ENTRYPOINT"))
    cmd = _json_array(next(rest for word, rest in runtime if word == "CMD"))
    parsed = _assets.parse_command(entrypoint + cmd)
    assert parsed.path == ("serve",)
    assert parsed.options["host"] == "0.0.0.0"
    expose = next(rest for word, rest in runtime if word == "EXPOSE")
    assert expose == str(parsed.options.get("port", 8080))


# --------------------------------------------------------------------------
# docker-compose.yml


def _service(name: str) -> dict[str, Any]:
    return COMPOSE["services"][name]


def _argv(name: str) -> list[str]:
    svc = _service(name)
    entrypoint = svc.get("entrypoint") or _json_array(
        next(rest for word, rest in _stages()["runtime"] if word == "ENTRYPOINT")
    )
    return [*entrypoint, *svc["command"]]


def _compose_config(name: str, tmp: Path) -> Path:
    path = tmp / name
    path.write_text(COMPOSE["configs"][name]["content"])
    return path


def test_compose_runs_the_whole_stack() -> None:
    assert set(COMPOSE["services"]) == {
        "tensor-wasm",
        "tensorcast-daemon",
        "tensorcast-global-store",
        "prometheus",
        "grafana",
    }
    gateway = _service("tensor-wasm")
    # The upgrade playbook addresses the container by this name.
    assert gateway["container_name"] == "tensor-wasm"
    assert (REPO / gateway["build"]["context"] / gateway["build"]["dockerfile"]).is_file()
    image = gateway["image"]
    version = tensorwasm_tc.__version__
    assert image == "${TENSOR_WASM_IMAGE:-tensor-wasm}:${TENSOR_WASM_TAG:-" + version + "}"
    for name in ("tensorcast-daemon", "tensorcast-global-store"):
        assert _service(name)["image"] == image  # one image, one release
    for name in ("prometheus", "grafana"):
        ref = _service(name)["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", ref), f"{name}: pin a version: {ref}"


def test_compose_commands_parse_with_the_real_cli() -> None:
    parsed = {n: _assets.parse_command(_argv(n)) for n in ("tensor-wasm", "tensorcast-daemon")}
    parsed["tensorcast-global-store"] = _assets.parse_command(_argv("tensorcast-global-store"))
    assert parsed["tensor-wasm"].path == ("serve",)
    assert parsed["tensorcast-daemon"].path == ("daemon", "start")
    assert parsed["tensorcast-global-store"].path == ("global", "start")
    assert parsed["tensorcast-daemon"].options["blocking"] is True
    assert parsed["tensorcast-global-store"].options["blocking"] is True


def test_compose_wires_gateway_daemon_and_global_store(tmp_path: Path) -> None:
    daemon = DaemonConfig.load(_compose_config("store-daemon-config", tmp_path))
    gateway = _assets.parse_command(_argv("tensor-wasm")).options
    daemon_opts = _assets.parse_command(_argv("tensorcast-daemon")).options
    # The daemon binds and advertises its service name; the gateway dials it.
    assert daemon.host == "tensorcast-daemon"
    assert gateway["tensorcast_address"] == f"{daemon.host}:{daemon.listen_port}"
    gs = load_config(_compose_config("global-store-config", tmp_path))
    assert daemon_opts["global_store_address"] == f"tensorcast-global-store:{gs.listen_port}"
    assert gs.listen_host == "0.0.0.0"
    # Both mount the socket volume where the daemon puts its socket.
    socket_dir = str(Path(daemon.socket_path).parent)
    for name in ("tensor-wasm", "tensorcast-daemon"):
        assert f"tensorcast-run:{socket_dir}" in _service(name)["volumes"], name
    for name in ("tensor-wasm", "tensorcast-daemon", "tensorcast-global-store"):
        svc = _service(name)
        assert svc["read_only"] is True and "/tmp" in svc["tmpfs"]
        for target in [c["target"] for c in svc.get("configs", [])]:
            assert target in " ".join(_argv(name)), f"{name}: {target} is not used"
    assert _service("tensor-wasm")["stop_grace_period"] == "75s"


def test_compose_publishes_on_loopback_and_mounts_real_paths() -> None:
    for name, svc in COMPOSE["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (
                f"{name}: {port} is published beyond localhost"
            )
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                rel = source[2:]
                if rel in MOUNTED_FROM_ELSEWHERE and not (REPO / rel).exists():
                    continue  # not written yet by the work that owns it
                assert (REPO / rel).exists(), f"{name}: {source} does not exist"
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"
        for cfg in svc.get("configs", []):
            assert cfg["source"] in COMPOSE["configs"]


def test_compose_grafana_provisioning_is_valid_yaml() -> None:
    datasource = yaml.safe_load(COMPOSE["configs"]["grafana-datasource"]["content"])
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(COMPOSE["configs"]["grafana-dashboards"]["content"])
    path = providers["providers"][0]["options"]["path"]
    assert f"./docs/dashboards:{path}:ro" in _service("grafana")["volumes"]


# --------------------------------------------------------------------------
# deploy/prometheus/prometheus.yml


def test_prometheus_scrapes_what_compose_runs(tmp_path: Path) -> None:
    cfg = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in cfg["scrape_configs"]
    }
    daemon = DaemonConfig.load(_compose_config("store-daemon-config", tmp_path))
    gs = load_config(_compose_config("global-store-config", tmp_path))
    gateway_port = _assets.parse_command(_argv("tensor-wasm")).options["port"]
    assert targets[_assets.SCRAPE_JOBS["gateway"]] == [f"tensor-wasm:{gateway_port}"]
    assert targets[_assets.SCRAPE_JOBS["store-daemon"]] == [f"{daemon.host}:{daemon.metrics_port}"]
    assert targets["tensorcast-global-store"] == [f"tensorcast-global-store:{gs.metrics_port}"]
    assert cfg["rule_files"] == ["alerts.yaml"]
    mounts = _service("prometheus")["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "./deploy/prometheus/alerts.yaml:/etc/prometheus/alerts.yaml:ro" in mounts


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    # --syntax-only: the rule file is checked by the alerting rules' own tests.
    proc = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
