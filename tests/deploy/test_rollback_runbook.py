"""docs/runbooks/rollback.md names only things that exist: repository paths,
Kubernetes objects of the chart and of deploy/k8s/, compose services, and
tensor-wasm / tensorcast-cli commands the CLIs accept."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import _assets

RUNBOOK = _assets.REPO / "docs" / "runbooks" / "rollback.md"
TEXT = RUNBOOK.read_text()


def _shell_lines() -> list[str]:
    """Commands in ```sh blocks: continuations and multi-line quotes joined,
    comments dropped."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", TEXT, flags=re.S):
        pending = ""
        for raw in block.splitlines():
            if not pending and raw.lstrip().startswith("#"):
                continue
            line = raw.split("  #")[0].rstrip() if "  #" in raw else raw.rstrip()
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            full = (pending + line).strip()
            try:
                shlex.split(full)
            except ValueError:  # a quote spans lines
                pending = full + "\n"
                continue
            pending = ""
            if full and not full.startswith("#"):
                lines.append(full)
        assert not pending, f"unterminated command in a sh block: {pending}"
    return lines


def test_every_deployment_shape_has_a_section_with_a_time() -> None:
    for heading in (
        "## A. systemd",
        "## B. Docker",
        "## C. docker-compose",
        "## D. Helm",
        "## E. Plain manifests",
        "## F. TensorCast Global Store database",
        "## G. When the rollback fails",
    ):
        assert heading in TEXT, heading
    sections = re.split(r"^## [A-F]\. ", TEXT, flags=re.M)[1:]
    for section in sections:
        assert re.search(r"~\d+(\u2013\d+)? minutes?", section), section.splitlines()[0]


def test_repository_paths_exist() -> None:
    paths = set(
        re.findall(r"`((?:helm|deploy|docs)/[\w./-]+|docker-compose\.yml|Dockerfile)`", TEXT)
    )
    assert "deploy/k8s/20-deployment.yaml" in TEXT
    paths |= set(re.findall(r"\b(deploy/[\w./-]+\.(?:yaml|sh))\b", TEXT))
    assert paths
    for path in paths:
        assert (_assets.REPO / path.rstrip("/")).exists(), path


def _k8s_names() -> set[tuple[str, str]]:
    names: set[tuple[str, str]] = set()
    for f in _assets.K8S_DIR.glob("*.yaml"):
        for obj in _assets.load_objects(f.read_text()):
            names.add((obj["kind"], obj["metadata"]["name"]))
    return names


def _helm_names(tmp: Path) -> set[tuple[str, str]] | None:
    if _assets.helm_backend() is None:
        return None
    run = _assets.run_helm({"defaults": {}}, tmp)
    return {
        (o["kind"], o["metadata"]["name"]) for o in _assets.objects_of(run.rendered["defaults"])
    }


def test_kubernetes_objects_exist(tmp_path: Path) -> None:
    kinds = {
        "deployment": "Deployment",
        "deploy": "Deployment",
        "daemonset": "DaemonSet",
        "svc": "Service",
        "pod": "Pod",
    }
    referenced = {
        (kinds[k], name)
        for k, name in re.findall(
            r"(?<![\w/.-])(deployment|deploy|daemonset|svc)/([a-z0-9][a-z0-9-]*)(?![\w./-])", TEXT
        )
    }
    referenced |= {
        ("PersistentVolumeClaim", n) for n in re.findall(r'"claimName":"([a-z0-9-]+)"', TEXT)
    }
    known = _k8s_names()
    helm = _helm_names(tmp_path)
    missing = referenced - known - (helm or set())
    if missing and helm is None:
        pytest.skip(f"cannot render the chart here to check {sorted(missing)}")
    assert not missing, sorted(missing)


def _commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, split at && || | ; (quotes kept)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", "|", ";", "&", "(", ")", ">", ">>", "<"}:
            out.append([])
        else:
            out[-1].append(token)
    return [c for c in out if c]


def test_cli_commands_parse() -> None:
    checked = 0
    inline = re.findall(r"`((?:tensor-wasm|tensorcast-cli) [^`]+)`", TEXT)
    for line in _shell_lines() + inline:
        for argv in _commands(line):
            while argv and (argv[0] == "sudo" or ("=" in argv[0] and not argv[0].startswith("-"))):
                argv.pop(0)  # sudo, VAR=value prefixes
            if not argv:
                continue
            program = Path(argv[0]).name
            if program not in {"tensor-wasm", "tensor-wasm-cli", "tensorcast-cli"}:
                continue
            if argv[1:] == ["--version"]:
                continue  # the group's own option
            _assets.parse_command(argv)
            checked += 1
    assert checked >= 3


def test_compose_and_install_commands_match_the_assets() -> None:
    compose: dict[str, Any] = yaml.safe_load((_assets.REPO / "docker-compose.yml").read_text())
    lines = _shell_lines()
    for line in lines:
        m = re.search(r"docker compose up -d --no-deps ([\w -]+)$", line)
        if m:
            for service in m.group(1).split():
                assert service in compose["services"], service
    assert "TENSOR_WASM_TAG" in compose["services"]["tensor-wasm"]["image"]
    install = (_assets.REPO / "deploy" / "systemd" / "install.sh").read_text()
    assert re.search(r"deploy/systemd/install\.sh 0\.1\.0 \S+ --activate", TEXT)
    assert '"--activate"' in install
    for line in lines:
        if line.startswith("sudo ln -sfn"):
            assert line.split()[-1] == "/usr/local/lib/tensor-wasm/current"
