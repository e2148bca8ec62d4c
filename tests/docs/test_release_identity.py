"""The release identity operators compare (docs/RELEASE.md, docs/UPGRADE.md)
is one build everywhere: ``tensor-wasm --version``, the
``tensor_wasm_build_info`` labels and ``/healthz`` of a running gateway, the
installed wheel's version and the TensorCast version triplet agree on the
version and the git sha."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from tensorwasm_tc.cli.tensorcast import main as tensorcast_main

from tests.integration._gateway import running_gateway

BUILD_FIELDS = ("version", "git_sha", "rustc_version", "profile", "target")


def _tensor_wasm_version() -> dict[str, str]:
    """``tensor-wasm --version``, run as operators run it (the console script
    of this interpreter's environment), parsed."""
    script = Path(sysconfig.get_path("scripts")) / "tensor-wasm"
    cmd = (
        [str(script), "--version"]
        if script.is_file()
        else [
            sys.executable,
            "-c",
            "from tensorwasm_tc.cli.tensor_wasm import main; main()",
            "--version",
        ]
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    first, *rest = out.strip().splitlines()
    m = re.fullmatch(r"tensor-wasm (\S+)", first.strip())
    assert m, f"first line of `tensor-wasm --version` is {first!r}"
    fields = {"version": m.group(1)}
    for line in rest:
        key, sep, value = line.partition(": ")
        assert sep, f"unexpected line in `tensor-wasm --version`: {line!r}"
        fields[key.strip()] = value.strip()
    return fields


@pytest.fixture(scope="module")
def cli_identity() -> dict[str, str]:
    fields = _tensor_wasm_version()
    assert set(BUILD_FIELDS) <= set(fields), fields
    assert fields["git_sha"] and fields["version"], fields
    return fields


def test_gateway_build_info_matches_tensor_wasm_version(
    cli_identity: dict[str, str], tmp_path: Path
) -> None:
    with running_gateway(tmp_path / "home") as server:
        metrics = server.client().get("/metrics")
        health = server.client().get("/healthz")
    assert metrics.status_code == 200, metrics.text
    samples = [
        s
        for family in text_string_to_metric_families(metrics.text)
        for s in family.samples
        if s.name == "tensor_wasm_build_info"
    ]
    assert len(samples) == 1, samples
    labels, value = samples[0].labels, samples[0].value
    assert value == 1.0
    assert labels["version"] == cli_identity["version"]
    assert labels["git_sha"] == cli_identity["git_sha"]
    assert {k: labels[k] for k in BUILD_FIELDS} == {k: cli_identity[k] for k in BUILD_FIELDS}
    assert health.status_code == 200, health.text
    assert health.json()["version"] == cli_identity["version"]


def test_wheel_version_matches_tensor_wasm_version(cli_identity: dict[str, str]) -> None:
    assert importlib.metadata.version("tensorwasm_tc") == cli_identity["version"]


def test_tensorcast_triplet_names_the_same_build(cli_identity: dict[str, str]) -> None:
    out = CliRunner().invoke(tensorcast_main, ["--version"]).output.strip()
    m = re.fullmatch(
        r"tensorcast (\S+), daemon build (\S+)\+(\w+)\.(\w+), global store schema (\d+)", out
    )
    assert m, f"`tensorcast-cli --version` printed {out!r}"
    package, daemon_version, sha, profile, _schema = m.groups()
    assert package == daemon_version == cli_identity["version"]
    assert cli_identity["git_sha"].startswith(sha)
    assert profile == cli_identity["profile"]
