"""deploy/k8s/: every object is valid Kubernetes (strict schemas of
kubernetes-validate), every command is one the package's CLIs accept, and
the configs the daemon and the Global Store get are ones they load."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tensorwasm_tc.gateway.config import GatewayConfig
from tensorwasm_tc.tensorcast.daemon.config import DaemonConfig
from tensorwasm_tc.tensorcast.global_store.config import load_config

from tests.deploy import _assets

FILES = [*sorted(_assets.K8S_DIR.glob("*.yaml")), _assets.K8S_DIR / "10-secret.yaml.example"]


@functools.cache
def _parsed() -> tuple[dict[str, Any], ...]:
    return tuple(obj for f in FILES for obj in _assets.load_objects(f.read_text()))


def _objects() -> list[dict[str, Any]]:
    """The objects of every file (parsed once; callers must not change them)."""
    return list(_parsed())


def _find(kind: str, name: str) -> dict[str, Any]:
    return next(o for o in _objects() if o["kind"] == kind and o["metadata"]["name"] == name)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_object_matches_the_kubernetes_schema(path: Path) -> None:
    objects = _assets.load_objects(path.read_text())
    assert objects, f"{path.name} holds no object"
    for obj in objects:
        # Custom resources (the ServiceMonitor) are not in the schemas:
        # validate_object checks their structure field by field instead.
        _assets.validate_object(obj)
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "tensor-wasm", obj["metadata"]["name"]


def test_the_files_hold_the_objects_the_runbooks_name() -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in _objects()}
    assert {
        ("Namespace", "tensor-wasm"),
        ("Secret", "tensor-wasm-tokens"),
        ("ConfigMap", "tensor-wasm-api"),
        ("PersistentVolumeClaim", "tensor-wasm-home"),
        ("Deployment", "tensor-wasm-api"),
        ("Service", "tensor-wasm-api"),
        ("DaemonSet", "tensorcast-daemon"),
        ("Deployment", "tensorcast-global-store"),
        ("Service", "tensorcast-global-store"),
        ("PersistentVolumeClaim", "tensorcast-global-store"),
        ("ServiceMonitor", "tensor-wasm-api"),
    } <= names
    # The upgrade playbook edits the gateway's image in this file.
    deployment = _assets.load_objects((_assets.K8S_DIR / "20-deployment.yaml").read_text())
    assert [(o["kind"], o["metadata"]["name"]) for o in deployment] == [
        ("Deployment", "tensor-wasm-api")
    ]


def test_every_command_parses_with_the_real_cli() -> None:
    parsed = _assets.check_commands(_objects())
    by_path = {(p.program, p.path): p for p in parsed}
    serve = by_path[("tensor-wasm", ("serve",))]
    assert serve.options["host"] == "0.0.0.0"
    assert serve.options["tensorcast_address"] == f"{_assets.SAMPLE_NODE_IP}:50052"
    daemon = by_path[("tensorcast-cli", ("daemon", "start"))]
    assert daemon.options["blocking"] is True
    glob = by_path[("tensorcast-cli", ("global", "start"))]
    assert glob.options["blocking"] is True


def test_pods_run_unprivileged_and_services_reach_them() -> None:
    objects = _objects()
    _assets.check_pods(objects)
    _assets.check_services(objects)
    _assets.check_service_monitor_targets(objects)


def test_the_gateway_probes_and_drains_as_docs_api_md_says() -> None:
    spec = _find("Deployment", "tensor-wasm-api")["spec"]
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    (gw,) = pod["containers"]
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["terminationGracePeriodSeconds"] > 2 * 30
    mounts = {m["mountPath"]: m["name"] for m in gw["volumeMounts"]}
    assert mounts["/var/lib/tensor-wasm"] == "home"
    assert "/tmp" in mounts


def test_the_gateway_environment_is_accepted_by_its_config_reader() -> None:
    objects = _objects()
    _assets.check_gateway_reads_env(objects)
    env = dict(_find("ConfigMap", "tensor-wasm-api")["data"])
    env.update(_find("Secret", "tensor-wasm-tokens")["stringData"])
    cfg = GatewayConfig.from_env(environ=env, host="0.0.0.0", home="/var/lib/tensor-wasm")
    assert not cfg.dev_mode
    assert str(cfg.home) == env["TENSOR_WASM_HOME"] == "/var/lib/tensor-wasm"


def test_the_daemon_shares_its_socket_with_the_gateway_not_ipc() -> None:
    gw_pod = _find("Deployment", "tensor-wasm-api")["spec"]["template"]["spec"]
    ds_pod = _find("DaemonSet", "tensorcast-daemon")["spec"]["template"]["spec"]
    assert ds_pod["hostNetwork"] is True
    assert ds_pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert not ds_pod.get("hostIPC") and not gw_pod.get("hostIPC")
    # The same uid: the socket is mode 0600.
    assert gw_pod["securityContext"]["runAsUser"] == ds_pod["securityContext"]["runAsUser"]

    def socket_mount(pod: dict[str, Any], container: str) -> tuple[str, str]:
        c = next(c for c in _assets.containers(pod) if c["name"] == container)
        vols = {v["name"]: v for v in pod["volumes"]}
        for m in c["volumeMounts"]:
            host = vols[m["name"]].get("hostPath", {}).get("path")
            if host == "/run/tensorcast":
                return host, m["mountPath"]
        raise AssertionError(f"{container} does not mount /run/tensorcast")

    assert socket_mount(gw_pod, "gateway") == socket_mount(ds_pod, "store-daemon")
    cm = _find("ConfigMap", "tensorcast-daemon")["data"]
    socket_path = yaml.safe_load(cm["store_daemon_config.yaml"])["socket_path"]
    assert Path(socket_path).parent == Path("/run/tensorcast")


def test_the_daemon_config_renders_into_one_the_daemon_loads(tmp_path: Path) -> None:
    cm = _find("ConfigMap", "tensorcast-daemon")["data"]
    (tmp_path / "template.yaml").write_text(cm["store_daemon_config.yaml"])
    (tmp_path / "render-config.py").write_text(cm["render-config.py"])
    env = {**os.environ, "TENSORCAST_NODE_IP": "10.9.8.7", "TENSORCAST_CLUSTER_TOKEN": "tok-1"}
    subprocess.run(
        [sys.executable, str(tmp_path / "render-config.py"), "template.yaml", "out.yaml"],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=60,
    )
    assert (tmp_path / "out.yaml").stat().st_mode & 0o077 == 0  # holds the token
    cfg = DaemonConfig.load(tmp_path / "out.yaml")
    assert cfg.host == "10.9.8.7"
    assert cfg.global_store.cluster_token == "tok-1"
    assert cfg.global_store.mode == "connect"
    assert cfg.global_store.address == "tensorcast-global-store.tensor-wasm.svc.cluster.local:50051"
    ds = _find("DaemonSet", "tensorcast-daemon")["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in ds["containers"][0]["ports"]}
    assert (cfg.listen_port, cfg.p2p_port, cfg.metrics_port) == (
        ports["grpc"],
        ports["p2p"],
        ports["metrics"],
    )


def test_the_global_store_config_loads_and_serves_other_pods(tmp_path: Path) -> None:
    cm = _find("ConfigMap", "tensorcast-global-store")["data"]
    (tmp_path / "global_store_config.yaml").write_text(cm["global_store_config.yaml"])
    cfg = load_config(tmp_path / "global_store_config.yaml")
    assert cfg.listen_host == "0.0.0.0" and cfg.metrics_host == "0.0.0.0"
    assert cfg.database_path.startswith("/var/lib/tensorcast/")
    dep = _find("Deployment", "tensorcast-global-store")["spec"]
    assert dep["replicas"] == 1 and dep["strategy"]["type"] == "Recreate"
    mounts = {m["mountPath"] for m in dep["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert "/var/lib/tensorcast" in mounts
