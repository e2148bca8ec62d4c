"""helm/tensor-wasm: lint and render the chart with Helm itself (the `helm`
binary when it is on PATH, else Helm's Go SDK through helm-python-sdk, a test
dependency), validate what it renders against the Kubernetes schemas, and
check the templates statically, which needs no Helm at all."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tensorwasm_tc
import yaml
from tensorwasm_tc.gateway.config import GatewayConfig
from tensorwasm_tc.tensorcast.daemon.config import DaemonConfig
from tensorwasm_tc.tensorcast.global_store.config import load_config

from tests.deploy import _assets

TEMPLATES = _assets.CHART / "templates"
VALUES = yaml.safe_load((_assets.CHART / "values.yaml").read_text())

PRODUCTION: dict[str, Any] = {
    "image": {"repository": "registry.example/tensor-wasm", "tag": "0.2.0"},
    "auth": {"tokens": "ops:tenant=*,team7:tenant=7", "metricsToken": "scrape-me"},
    "rateLimit": {"qps": 50, "burst": 100},
    "gpu": {"enabled": True, "count": 2},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "tensorcast": {"clusterToken": {"value": "cluster-secret"}},
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for dotted, value in changes.items():
        node = out
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "production": PRODUCTION,
    "tokens-changed": _with(PRODUCTION, auth__tokens="ops:tenant=*"),
    "rate-changed": _with(PRODUCTION, rateLimit__qps=7),
    "existing-secret": {
        "auth": {"existingSecret": "my-tokens"},
        "serviceMonitor": {
            "enabled": True,
            "bearerTokenSecret": {"name": "my-tokens", "key": "TENSOR_WASM_API_METRICS_TOKEN"},
        },
    },
    "auto": {"tensorcast": {"mode": "auto"}},
    "off": {"tensorcast": {"mode": "off"}},
    "replicas": {
        "replicaCount": 3,
        "strategy": {"type": "RollingUpdate"},
        "service": {"sessionAffinity": "ClientIP"},
    },
    "external-global-store": {
        "tensorcast": {"globalStore": {"enabled": False, "externalAddress": "gs.example:50051"}}
    },
    "no-persistence": {"persistence": {"enabled": False}},
    "metrics-token-only": {"auth": {"metricsToken": "scrape-me"}},
    "rolling-one-replica": {"strategy": {"type": "RollingUpdate"}},
    "bad-mode": {"tensorcast": {"mode": "sidecar"}},
}
FAILING = {"rolling-one-replica", "bad-mode"}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> _assets.HelmRun:
    if _assets.helm_backend() is None:
        pytest.skip(
            "neither a `helm` binary on PATH nor helm-python-sdk (pip install '.[test]') "
            "is available to lint and render the chart; the static checks still ran"
        )
    return _assets.run_helm(CASES, tmp_path_factory.mktemp("helm"))


_PARSED: dict[str, list[dict[str, Any]]] = {}


def _objects(helm: _assets.HelmRun, case: str) -> list[dict[str, Any]]:
    """The case's rendered objects (parsed once; callers must not change them)."""
    assert case in helm.rendered, helm.errors.get(case)
    if case not in _PARSED:
        _PARSED[case] = _assets.objects_of(helm.rendered[case])
    return list(_PARSED[case])


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def _gateway(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    dep = _one(objects, "Deployment", "tensor-wasm")
    return dep, dep["spec"]["template"]["spec"]["containers"][0]


# --------------------------------------------------------------------------
# static: no Helm needed


def _template_files() -> list[Path]:
    return sorted(p for p in TEMPLATES.iterdir() if p.suffix in {".yaml", ".tpl", ".txt"})


def _values_paths() -> dict[str, set[str]]:
    """Each file's references into .Values, as dotted paths; `$d := .Values.x`
    aliases are followed."""
    refs: dict[str, set[str]] = {}
    for path in _template_files():
        text = path.read_text()
        aliases = dict(re.findall(r"\$(\w+)\s*:=\s*\.Values((?:\.\w+)+)", text))
        found = {m[1:] for m in re.findall(r"\.Values((?:\.\w+)+)", text)}
        for var, target in aliases.items():
            found |= {target[1:] + m for m in re.findall(rf"\${var}((?:\.\w+)+)", text)}
        refs[path.name] = found
    return refs


def _lookup(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _leaves(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def test_every_value_the_templates_read_is_in_values_yaml() -> None:
    missing = {
        f"{name}: .Values.{ref}"
        for name, refs in _values_paths().items()
        for ref in refs
        if not _lookup(VALUES, ref)
    }
    assert not missing, sorted(missing)


def test_every_value_in_values_yaml_is_read_by_a_template() -> None:
    refs = set().union(*_values_paths().values())
    unused = [
        leaf
        for leaf in _leaves(VALUES)
        if not any(leaf == r or leaf.startswith(r + ".") for r in refs)
    ]
    assert not unused, f"values.yaml documents keys no template reads: {unused}"


@pytest.mark.parametrize(
    "path", [p for p in _template_files() if p.suffix == ".yaml"], ids=lambda p: p.name
)
def test_every_template_is_yaml_once_its_actions_are_removed(path: Path) -> None:
    text = path.read_text()
    assert text.count("{{") == text.count("}}"), "unbalanced template actions"
    lines = []
    for line in text.splitlines():
        if re.fullmatch(r"\s*\{\{.*\}\}\s*", line):
            continue  # a line that is only control flow, an include or a comment
        lines.append(re.sub(r"\{\{.*?\}\}", "X", line))
    docs = [d for d in yaml.safe_load_all("\n".join(lines)) if d is not None]
    assert docs, "no object"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc


def test_chart_metadata_and_default_image_follow_the_package_version() -> None:
    chart = yaml.safe_load((_assets.CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == _assets.CHART.name == "tensor-wasm"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["appVersion"] == tensorwasm_tc.__version__
    assert VALUES["image"]["tag"] == ""  # i.e. appVersion
    assert VALUES["strategy"]["type"] == "Recreate"
    assert VALUES["replicaCount"] == 1
    for name in ("_helpers.tpl", "NOTES.txt"):
        assert (TEMPLATES / name).is_file()


def test_helm_readme_names_every_top_level_value() -> None:
    readme = (_assets.CHART.parent / "README.md").read_text()
    for key in ("replicaCount", "strategy.type", "auth.existingSecret", "rateLimit.qps"):
        assert f"`{key}" in readme, key
    for key in ("gpu.enabled", "tensorcast.mode", "serviceMonitor.enabled", "persistence"):
        assert key in readme, key


# --------------------------------------------------------------------------
# rendered by Helm


def test_lint_is_clean(helm: _assets.HelmRun) -> None:
    assert not helm.lint_errors, f"{helm.backend}: {helm.lint_errors}"


@pytest.mark.parametrize("case", sorted(set(CASES) - FAILING))
def test_rendered_objects_are_valid_kubernetes(helm: _assets.HelmRun, case: str) -> None:
    objects = _objects(helm, case)
    for obj in objects:
        _assets.validate_object(obj)
    _assets.check_pods(objects)
    _assets.check_services(objects)
    _assets.check_commands(objects)
    _assets.check_gateway_reads_env(objects)


def test_values_the_chart_refuses(helm: _assets.HelmRun) -> None:
    assert "replicaCount > 1" in helm.errors["rolling-one-replica"]
    assert "tensorcast.mode" in helm.errors["bad-mode"]


def test_defaults_run_one_gateway_per_release_and_a_daemon_per_node(
    helm: _assets.HelmRun,
) -> None:
    objects = _objects(helm, "defaults")
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("ConfigMap", "tensor-wasm"),
        ("ConfigMap", "tensor-wasm-global-store"),
        ("ConfigMap", "tensor-wasm-tensorcast-daemon"),
        ("DaemonSet", "tensor-wasm-tensorcast-daemon"),
        ("Deployment", "tensor-wasm"),
        ("Deployment", "tensor-wasm-global-store"),
        ("PersistentVolumeClaim", "tensor-wasm-global-store"),
        ("PersistentVolumeClaim", "tensor-wasm-home"),
        ("Service", "tensor-wasm"),
        ("Service", "tensor-wasm-global-store"),
        ("Service", "tensor-wasm-tensorcast-daemon"),
    ]
    dep, gw = _gateway(objects)
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "--tensorcast-address=$(TENSOR_WASM_NODE_IP):50052" in gw["args"]
    node_ip = next(e for e in gw["env"] if e["name"] == "TENSOR_WASM_NODE_IP")
    assert node_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    # Dev mode: no token Secret at all.
    assert not [o for o in objects if o["kind"] == "Secret"]
    assert all("secretRef" not in e for e in gw["envFrom"])
    pvc = _one(objects, "PersistentVolumeClaim", "tensor-wasm-home")
    home = next(m for m in gw["volumeMounts"] if m["name"] == "home")
    assert home["mountPath"] == VALUES["gateway"]["home"]
    assert f"--home={home['mountPath']}" in gw["args"]
    claim = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "home")
    assert claim["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_notes_warn_about_dev_mode_only_without_tokens(helm: _assets.HelmRun) -> None:
    if not helm.has_notes:
        pytest.skip(f"{helm.backend}: `helm template` does not render NOTES.txt")
    notes = helm.rendered["defaults"]["tensor-wasm/templates/NOTES.txt"]
    assert "DEV MODE" in notes
    assert "helm rollback tensor-wasm" in notes
    assert "DEV MODE" not in helm.rendered["production"]["tensor-wasm/templates/NOTES.txt"]
    assert "sticky routing" in helm.rendered["replicas"]["tensor-wasm/templates/NOTES.txt"]
    # A metrics token alone protects /metrics, not the API.
    assert "DEV MODE" in helm.rendered["metrics-token-only"]["tensor-wasm/templates/NOTES.txt"]


def test_tokens_and_rate_limits_reach_the_gateway_config(helm: _assets.HelmRun) -> None:
    objects = _objects(helm, "production")
    _, gw = _gateway(objects)
    cm = _one(objects, "ConfigMap", "tensor-wasm")["data"]
    secret = _one(objects, "Secret", "tensor-wasm-tokens")["stringData"]
    assert cm["TENSOR_WASM_API_RATE_LIMIT_QPS"] == "50"
    assert cm["TENSOR_WASM_API_RATE_LIMIT_BURST"] == "100"
    assert secret["TENSOR_WASM_API_TOKENS"] == "ops:tenant=*,team7:tenant=7"
    refs = {next(iter(e.values()))["name"] for e in gw["envFrom"]}
    assert refs == {"tensor-wasm", "tensor-wasm-tokens"}
    cfg = GatewayConfig.from_env(environ={**cm, **secret})
    assert (cfg.rate_limit_qps, cfg.rate_limit_burst) == (50, 100)
    assert not cfg.dev_mode
    assert cfg.metrics_token == "scrape-me"
    assert gw["image"] == "registry.example/tensor-wasm:0.2.0"


def test_changed_settings_or_tokens_roll_the_pods(helm: _assets.HelmRun) -> None:
    def checksums(case: str) -> tuple[str, str]:
        dep, _ = _gateway(_objects(helm, case))
        a = dep["spec"]["template"]["metadata"]["annotations"]
        return a["checksum/config"], a["checksum/secret"]

    config, secret = checksums("production")
    config_t, secret_t = checksums("tokens-changed")
    config_r, secret_r = checksums("rate-changed")
    assert config_t == config and secret_t != secret
    assert config_r != config and secret_r == secret


def test_an_existing_secret_replaces_the_chart_made_one(helm: _assets.HelmRun) -> None:
    objects = _objects(helm, "existing-secret")
    assert not [o for o in objects if o["kind"] == "Secret"]
    _, gw = _gateway(objects)
    assert {"secretRef": {"name": "my-tokens"}} in gw["envFrom"]
    monitor = _one(objects, "ServiceMonitor")
    http = next(ep for ep in monitor["spec"]["endpoints"] if ep["port"] == "http")
    assert http["bearerTokenSecret"]["name"] == "my-tokens"


def test_gpu_values_request_gpus_on_gpu_nodes(helm: _assets.HelmRun) -> None:
    dep, gw = _gateway(_objects(helm, "production"))
    pod = dep["spec"]["template"]["spec"]
    assert gw["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert gw["resources"]["limits"]["memory"] == VALUES["gateway"]["resources"]["limits"]["memory"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    _, plain = _gateway(_objects(helm, "defaults"))
    assert "nvidia.com/gpu" not in plain["resources"].get("limits", {})


def test_the_service_monitor_scrapes_gateway_and_daemons(helm: _assets.HelmRun) -> None:
    objects = _objects(helm, "production")
    _assets.check_service_monitor_targets(objects)
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    http = next(ep for ep in monitor["spec"]["endpoints"] if ep["port"] == "http")
    assert http["bearerTokenSecret"] == {
        "name": "tensor-wasm-tokens",
        "key": "TENSOR_WASM_API_METRICS_TOKEN",
    }
    assert not [o for o in _objects(helm, "defaults") if o["kind"] == "ServiceMonitor"]


def test_the_daemon_and_gateway_share_the_socket_dir_and_uid(helm: _assets.HelmRun) -> None:
    objects = _objects(helm, "defaults")
    gw_pod = _one(objects, "Deployment", "tensor-wasm")["spec"]["template"]["spec"]
    ds_pod = _one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert ds_pod["hostNetwork"] is True and ds_pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert gw_pod["securityContext"]["runAsUser"] == ds_pod["securityContext"]["runAsUser"]
    socket_dir = VALUES["tensorcast"]["socketDir"]
    for pod, name in ((gw_pod, "gateway"), (ds_pod, "store-daemon")):
        vol = next(v for v in pod["volumes"] if v.get("hostPath", {}).get("path") == socket_dir)
        c = next(c for c in pod["containers"] if c["name"] == name)
        assert {"name": vol["name"], "mountPath": socket_dir} in c["volumeMounts"]
    cm = _one(objects, "ConfigMap", "tensor-wasm-tensorcast-daemon")["data"]
    cfg = yaml.safe_load(cm["store_daemon_config.yaml"])
    assert cfg["socket_path"] == f"{socket_dir}/daemon.sock"


def test_the_rendered_tensorcast_configs_load(helm: _assets.HelmRun, tmp_path: Path) -> None:
    objects = _objects(helm, "production")
    cm = _one(objects, "ConfigMap", "tensor-wasm-tensorcast-daemon")["data"]
    (tmp_path / "t.yaml").write_text(cm["store_daemon_config.yaml"])
    (tmp_path / "render.py").write_text(cm["render-config.py"])
    subprocess.run(
        [sys.executable, "render.py", "t.yaml", "daemon.yaml"],
        cwd=tmp_path,
        env={**os.environ, "TENSORCAST_NODE_IP": "10.0.0.9", "TENSORCAST_CLUSTER_TOKEN": "c1"},
        check=True,
        timeout=60,
    )
    daemon = DaemonConfig.load(tmp_path / "daemon.yaml")
    assert daemon.host == "10.0.0.9" and daemon.global_store.cluster_token == "c1"
    assert daemon.global_store.address == (
        "tensor-wasm-global-store.tensor-wasm.svc.cluster.local:50051"
    )
    ds_pod = _one(objects, "DaemonSet")["spec"]["template"]["spec"]
    render = next(c for c in ds_pod["initContainers"] if c["name"] == "render-config")
    token_env = next(e for e in render["env"] if e["name"] == "TENSORCAST_CLUSTER_TOKEN")
    assert token_env["valueFrom"]["secretKeyRef"] == {
        "name": "tensor-wasm-cluster-token",
        "key": "cluster-token",
    }
    _one(objects, "Secret", "tensor-wasm-cluster-token")

    gs_text = _one(objects, "ConfigMap", "tensor-wasm-global-store")["data"][
        "global_store_config.yaml"
    ]
    gs_raw = yaml.safe_load(gs_text)
    token_file = gs_raw["global_store"]["cluster_token_file"]
    gs_pod = _one(objects, "Deployment", "tensor-wasm-global-store")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in gs_pod["containers"][0]["volumeMounts"]}
    assert mounts[str(Path(token_file).parent)] == "cluster-token"
    (tmp_path / "cluster-token").write_text("c1\n")
    gs_raw["global_store"]["cluster_token_file"] = str(tmp_path / "cluster-token")
    (tmp_path / "gs.yaml").write_text(yaml.safe_dump(gs_raw))
    gs = load_config(tmp_path / "gs.yaml")
    assert gs.cluster_token == "c1" and gs.listen_host == "0.0.0.0"


@pytest.mark.parametrize(
    ("case", "flag"), [("auto", None), ("off", "--no-tensorcast")], ids=["auto", "off"]
)
def test_tensorcast_modes_without_a_daemonset(
    helm: _assets.HelmRun, case: str, flag: str | None
) -> None:
    objects = _objects(helm, case)
    assert not [o for o in objects if o["kind"] == "DaemonSet"]
    assert not [o for o in objects if "global-store" in o["metadata"]["name"]]
    _, gw = _gateway(objects)
    assert not [a for a in gw["args"] if a.startswith("--tensorcast-address")]
    assert (flag in gw["args"]) if flag else ("--no-tensorcast" not in gw["args"])


def test_several_replicas_roll_and_stick(helm: _assets.HelmRun) -> None:
    objects = _objects(helm, "replicas")
    dep, _ = _gateway(objects)
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert _one(objects, "Service", "tensor-wasm")["spec"]["sessionAffinity"] == "ClientIP"


def test_an_external_global_store_and_no_volume(helm: _assets.HelmRun) -> None:
    objects = _objects(helm, "external-global-store")
    assert not [o for o in objects if "global-store" in o["metadata"]["name"]]
    cm = _one(objects, "ConfigMap", "tensor-wasm-tensorcast-daemon")["data"]
    gs = yaml.safe_load(cm["store_daemon_config.yaml"])["global_store"]
    assert gs == {"mode": "connect", "address": "gs.example:50051"}
    objects = _objects(helm, "no-persistence")
    assert not [o for o in objects if o["metadata"]["name"] == "tensor-wasm-home"]
    dep, _ = _gateway(objects)
    home = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "home")
    assert home == {"name": "home", "emptyDir": {}}
