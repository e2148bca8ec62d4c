"""What the deploy-asset tests share: loading YAML objects, validating them
against the Kubernetes schemas, parsing container and unit commands with the
package's real option parsers, and rendering the Helm chart.

Never contacts a cluster, a registry or a container engine; tools that may be
missing (helm, systemd-analyze, promtool) are looked up by the tests that use
them, which skip without them.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import kubernetes_validate.utils
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "tensor-wasm"
K8S_DIR = REPO / "deploy" / "k8s"

#: The Kubernetes release the manifests are validated against: the oldest
#: minor still in wide use that kubernetes-validate ships schemas for. The
#: chart's Chart.yaml promises >= 1.25; nothing it uses is newer than 1.25.
K8S_VERSION = "1.30.0"

#: API groups of custom resources: not in the Kubernetes schemas, so their
#: structure is checked by hand (check_service_monitor).
CRD_GROUPS = frozenset({"monitoring.coreos.com"})

# kubernetes-validate parses its schema files (the definitions alone are
# megabytes of JSON) on every call; they never change, so parse each once.
# Cuts validation from ~60 ms to ~20 ms per object.
kubernetes_validate.utils.schema_contents = functools.cache(  # type: ignore[method-assign]
    kubernetes_validate.utils.schema_contents
)

#: The scrape job names deploy/prometheus/alerts.yaml selects on.
SCRAPE_JOBS = {"gateway": "tensor-wasm", "store-daemon": "tensorcast-daemon"}


#: libyaml's loader when PyYAML was built with it: several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_objects(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``text``."""
    return [d for d in yaml.load_all(text, Loader=_LOADER) if d]


def api_group(obj: dict[str, Any]) -> str:
    api_version = str(obj["apiVersion"])
    return api_version.split("/")[0] if "/" in api_version else ""


def validate_object(obj: dict[str, Any]) -> None:
    """Validates a built-in object against the strict schemas (unknown fields
    fail), or a custom resource's structure. Raises AssertionError."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if api_group(obj) in CRD_GROUPS:
        assert obj["kind"] == "ServiceMonitor", f"{name}: unexpected custom resource"
        check_service_monitor(obj)
        return
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.path)
        raise AssertionError(f"{name}: {path}: {e.message}") from None


def check_service_monitor(obj: dict[str, Any]) -> None:
    """The fields of monitoring.coreos.com/v1 ServiceMonitor the assets use,
    with their types (prometheus-operator's CRD is not in the schemas)."""
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    meta = obj["metadata"]
    assert isinstance(meta.get("name"), str) and meta["name"]
    assert set(obj) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = obj["spec"]
    known = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels"}
    assert set(spec) <= known, f"unknown ServiceMonitor fields {set(spec) - known}"
    selector = spec["selector"]
    assert set(selector) <= {"matchLabels", "matchExpressions"}
    assert all(isinstance(v, str) for v in selector.get("matchLabels", {}).values())
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] in {"In", "NotIn", "Exists", "DoesNotExist"}
        assert isinstance(expr["key"], str)
        assert all(isinstance(v, str) for v in expr.get("values", []))
    if "namespaceSelector" in spec:
        assert set(spec["namespaceSelector"]) <= {"any", "matchNames"}
    if "jobLabel" in spec:
        assert isinstance(spec["jobLabel"], str)
    endpoint_fields = {"port", "path", "interval", "scrapeTimeout", "bearerTokenSecret", "scheme"}
    assert spec["endpoints"], "a ServiceMonitor without endpoints scrapes nothing"
    for ep in spec["endpoints"]:
        assert set(ep) <= endpoint_fields, f"unknown endpoint fields {set(ep) - endpoint_fields}"
        assert isinstance(ep["port"], str), "endpoints name the Service port"
        assert ep.get("path", "/metrics").startswith("/")
        for key in ("interval", "scrapeTimeout"):
            if key in ep:
                assert re.fullmatch(r"\d+(ms|s|m|h)", ep[key]), ep[key]
        if "bearerTokenSecret" in ep:
            assert set(ep["bearerTokenSecret"]) == {"name", "key"}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] in {"Deployment", "DaemonSet", "StatefulSet"}:
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return None


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def expand_k8s_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args."""
    return re.sub(
        r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text
    )


# --------------------------------------------------------------------------
# commands


@dataclass(frozen=True)
class ParsedCommand:
    program: str
    path: tuple[str, ...]  # sub-commands, e.g. ("daemon", "start")
    options: dict[str, Any]  # parameter name -> raw value, as click parsed it


def _cli_groups() -> dict[str, click.Command]:
    from tensorwasm_tc.cli.tensor_wasm import main as tensor_wasm_main
    from tensorwasm_tc.cli.tensorcast import main as tensorcast_main

    return {
        "tensor-wasm": tensor_wasm_main,
        "tensor-wasm-cli": tensor_wasm_main,
        "tensorcast": tensorcast_main,
        "tensorcast-cli": tensorcast_main,
    }


def parse_command(argv: list[str]) -> ParsedCommand:
    """Parses ``argv`` with the real click parser of the named program.

    Unknown options, options missing their value, stray arguments, values of
    the wrong type (ints, choices) and missing required options fail with a
    click.UsageError, as they would at run time. File arguments are not
    checked for existence: they name paths on the target machine.
    """
    program = Path(argv[0]).name
    groups = _cli_groups()
    if program not in groups:
        raise click.UsageError(f"{program!r} is not one of the package's programs {sorted(groups)}")
    cmd: click.Command = groups[program]
    ctx = click.Context(cmd, info_name=program)
    args = list(argv[1:])
    path: list[str] = []
    while isinstance(cmd, click.Group):
        if not args:
            raise click.UsageError(f"{program} {' '.join(path)}: no sub-command given")
        name = args.pop(0)
        sub = cmd.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"{program}: no command {name!r} under {path or '(top)'}")
        path.append(name)
        ctx = click.Context(sub, info_name=name, parent=ctx)
        cmd = sub
    parser = cmd.make_parser(ctx)
    opts, rest, _order = parser.parse_args(args)
    takes_args = any(isinstance(p, click.Argument) for p in cmd.params)
    if rest and not takes_args:
        raise click.UsageError(f"{program} {' '.join(path)}: unexpected arguments {rest}")
    for param in cmd.params:
        name = param.name or ""
        if name in opts and not isinstance(param.type, click.Path):
            param.type_cast_value(ctx, opts[name])  # raises BadParameter
        if param.required and name not in opts:
            raise click.UsageError(f"{program} {' '.join(path)}: missing {name}")
    return ParsedCommand(program, tuple(path), dict(opts))


# --------------------------------------------------------------------------
# Helm


#: Runs in a child process: Helm's Go runtime (helm-python-sdk) stays out of
#: the test process. argv[1]: the chart; stdin: {case: values}; stdout:
#: {"lint": report, "cases": {case: {"manifests": {...}} | {"error": str}}}.
_SDK_RENDER = r"""
import json, sys
import helm_python as helm

chart_dir = sys.argv[1]
cases = json.load(sys.stdin)
out = {"lint": helm.lint(chart_dir, strict=True, kube_version="v1.30.0"), "cases": {}}
with helm.Chart.load(chart_dir) as chart:
    for name, values in cases.items():
        try:
            out["cases"][name] = {"manifests": chart.render(
                values, name="tensor-wasm", namespace="tensor-wasm", is_install=True)}
        except helm.HelmError as e:
            out["cases"][name] = {"error": str(e)}
json.dump(out, sys.stdout)
"""


@dataclass(frozen=True)
class HelmRun:
    backend: str  # "helm <version>" or "helm-python-sdk <version>"
    lint_errors: list[str]
    rendered: dict[str, dict[str, str]]  # case -> template path -> text
    errors: dict[str, str]  # case -> render error
    has_notes: bool


@functools.cache
def helm_backend() -> str | None:
    """'binary' when helm is on PATH, 'sdk' when helm-python-sdk imports,
    else None."""
    if shutil.which("helm"):
        return "binary"
    probe = subprocess.run(
        [sys.executable, "-c", "import helm_python; helm_python.helm_sdk_version()"],
        capture_output=True,
        timeout=60,
    )
    return "sdk" if probe.returncode == 0 else None


def run_helm(cases: dict[str, dict[str, Any]], tmp: Path) -> HelmRun:
    backend = helm_backend()
    if backend == "binary":
        return _run_helm_binary(cases, tmp)
    if backend == "sdk":
        return _run_helm_sdk(cases)
    raise RuntimeError("no helm")


def _run_helm_binary(cases: dict[str, dict[str, Any]], tmp: Path) -> HelmRun:
    version = subprocess.run(
        ["helm", "version", "--short"], capture_output=True, text=True, check=True
    ).stdout.strip()
    lint = subprocess.run(
        ["helm", "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120
    )
    lint_errors = [] if lint.returncode == 0 else [lint.stdout + lint.stderr]
    rendered: dict[str, dict[str, str]] = {}
    errors: dict[str, str] = {}
    for name, values in cases.items():
        values_file = tmp / f"values-{name}.json"
        values_file.write_text(json.dumps(values))  # JSON is YAML
        proc = subprocess.run(
            [
                *("helm", "template", "tensor-wasm", str(CHART), "--namespace", "tensor-wasm"),
                *("--kube-version", "v1.30.0", "-f", str(values_file)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            errors[name] = proc.stderr
            continue
        # helm template separates templates with "# Source: <path>" lines.
        docs: dict[str, str] = {}
        for chunk in re.split(r"^---\s*$", proc.stdout, flags=re.M):
            m = re.search(r"^# Source: (\S+)", chunk, flags=re.M)
            if m:
                docs[m.group(1)] = docs.get(m.group(1), "") + "\n---\n" + chunk
        rendered[name] = docs
    return HelmRun(f"helm {version}", lint_errors, rendered, errors, has_notes=False)


def _run_helm_sdk(cases: dict[str, dict[str, Any]]) -> HelmRun:
    proc = subprocess.run(
        [sys.executable, "-c", _SDK_RENDER, str(CHART)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    lint = out["lint"]
    lint_errors = list(lint.get("errors") or [])
    # Severity 3 is an error, 2 a warning; lint runs strict (warnings fail).
    lint_errors += [
        f"{m['path']}: {m['error']}" for m in lint.get("messages") or [] if m["severity"] >= 2
    ]
    version = subprocess.run(
        [sys.executable, "-c", "import helm_python as h; print(h.helm_sdk_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    rendered = {k: v["manifests"] for k, v in out["cases"].items() if "manifests" in v}
    errors = {k: v["error"] for k, v in out["cases"].items() if "error" in v}
    return HelmRun(f"helm-python-sdk (Helm {version})", lint_errors, rendered, errors, True)


def objects_of(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """Every object rendered, NOTES.txt left out."""
    out: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        out.extend(load_objects(text))
    return out


# --------------------------------------------------------------------------
# checks shared by the chart's output and deploy/k8s/

#: What the daemon's render-config init container gets for status.hostIP.
SAMPLE_NODE_IP = "10.1.2.3"


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's literal env values, with status.hostIP as SAMPLE_NODE_IP."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.hostIP":
            env[item["name"]] = SAMPLE_NODE_IP
    return env


def check_commands(objects: list[dict[str, Any]]) -> list[ParsedCommand]:
    """Parses the command of every container that runs one of the package's
    programs; returns them. Other commands must be the known helpers."""
    parsed: list[ParsedCommand] = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for c in containers(spec):
            argv = [*c.get("command", []), *c.get("args", [])]
            assert argv, f"{obj['metadata']['name']}/{c['name']}: relies on the image's entrypoint"
            env = container_env(c)
            argv = [expand_k8s_vars(a, env) for a in argv]
            unexpanded = [a for a in argv if "$(" in a]
            assert not unexpanded, f"{c['name']}: $(VAR) without a matching env entry: {unexpanded}"
            if argv[0] in ("sh", "python3"):
                assert c["name"] in {"prepare-host-dirs", "render-config"}, c["name"]
                continue
            parsed.append(parse_command(argv))
    return parsed


def check_pods(objects: list[dict[str, Any]]) -> None:
    """Non-root, read-only root filesystems, mounts backed by volumes."""
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        name = obj["metadata"]["name"]
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, f"{name}: pods run as non-root"
        assert pod_sc.get("runAsUser", 0) != 0
        assert not spec.get("hostIPC"), f"{name}: hostIPC is not needed (memfds travel by fd)"
        assert not spec.get("hostPID")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(spec):
            sc = c.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, f"{name}/{c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, f"{name}/{c['name']}"
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{name}/{c['name']}"
            assert not sc.get("privileged")
            if sc.get("runAsUser") == 0:
                # The one root container: hands hostPath dirs to the pod's uid.
                assert c["name"] == "prepare-host-dirs", f"{name}/{c['name']} runs as root"
                assert set(sc["capabilities"].get("add", [])) <= {"CHOWN", "FOWNER"}
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{name}/{c['name']}: no volume {m['name']}"


def check_services(objects: list[dict[str, Any]]) -> None:
    """Every Service selects some pod template and targets ports it declares."""
    templates = [
        (obj["spec"]["template"]["metadata"]["labels"], obj["spec"]["template"]["spec"])
        for obj in objects
        if obj["kind"] in {"Deployment", "DaemonSet"}
    ]
    for svc in (o for o in objects if o["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        matches = [
            spec
            for labels, spec in templates
            if all(labels.get(k) == v for k, v in selector.items())
        ]
        assert matches, f"Service {svc['metadata']['name']} selects no pod"
        port_names = {
            p["name"] for spec in matches for c in containers(spec) for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                assert target in port_names, f"{svc['metadata']['name']}: no port {target}"


def check_service_monitor_targets(objects: list[dict[str, Any]]) -> None:
    """The ServiceMonitor selects the gateway's and daemons' Services and
    names their jobs as the alerting rules expect."""
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert len(monitors) == 1
    spec = monitors[0]["spec"]
    job_label = spec["jobLabel"]
    match_labels = spec["selector"].get("matchLabels", {})
    components = {
        v for e in spec["selector"].get("matchExpressions", []) for v in e.get("values", [])
    }
    selected = {}
    for svc in (o for o in objects if o["kind"] == "Service"):
        labels = svc["metadata"]["labels"]
        if all(labels.get(k) == v for k, v in match_labels.items()) and (
            labels.get("app.kubernetes.io/component") in components
        ):
            selected[labels["app.kubernetes.io/component"]] = svc
    for component, job in SCRAPE_JOBS.items():
        assert component in selected, f"no Service of {component} is scraped"
        assert selected[component]["metadata"]["labels"][job_label] == job
    ports = {ep["port"] for ep in spec["endpoints"]}
    gateway_ports = {p["name"] for p in selected["gateway"]["spec"]["ports"]}
    daemon_ports = {p["name"] for p in selected["store-daemon"]["spec"]["ports"]}
    assert ports & gateway_ports and ports & daemon_ports


def check_gateway_reads_env(objects: list[dict[str, Any]]) -> None:
    """Every TENSOR_WASM_*/TENSORCAST_* variable a ConfigMap or Secret gives
    the gateway is one the package reads (it appears in its source)."""
    source = "\n".join(
        p.read_text()
        for p in (REPO / "python" / "tensorwasm_tc").rglob("*.py")
        if "_proto" not in p.parts
    )
    for obj in objects:
        if obj["kind"] not in {"ConfigMap", "Secret"}:
            continue
        keys = set(obj.get("data", {})) | set(obj.get("stringData", {}))
        for key in keys:
            if key.startswith(("TENSOR_WASM_", "TENSORCAST_")):
                assert key in source, f"{obj['metadata']['name']}: nothing reads {key}"
