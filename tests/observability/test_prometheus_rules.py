"""deploy/prometheus/alerts.yaml is valid, every alert is proven by promtool
unit tests (deploy/prometheus/tests/*.yaml) to fire when it should and to
stay silent otherwise, and every alert carries what an on-call engineer
needs: severity, summary, description and a runbook that exists.

The promtool tests are skipped when promtool is missing (.ci/run installs
the Debian package ``prometheus``); the checks of the file's content are not.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yaml"
UNIT_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks"
SLO_DOC = REPO / "docs" / "SLO.md"
SEVERITIES = ("page", "ticket")
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def alert_rule_tests() -> list[dict[str, Any]]:
    cases = []
    for path in UNIT_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


@needs_promtool
def test_promtool_check_rules_accepts_the_file() -> None:
    assert PROMTOOL is not None
    run = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    """Each file runs in its own promtool, all at once (the burn-rate tests
    evaluate hours of synthetic series)."""
    assert PROMTOOL is not None and UNIT_TESTS
    procs = {
        path.name: subprocess.Popen(
            [PROMTOOL, "test", "rules", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in UNIT_TESTS
    }
    failed = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failed[name] = out
    assert failed == {}, "\n".join(f"--- {n}\n{o}" for n, o in failed.items())


def test_every_alert_is_tested_both_firing_and_silent() -> None:
    cases = alert_rule_tests()
    missing = []
    for rule in alerts():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        if not any(c.get("exp_alerts") for c in mine):
            missing.append(f"{name}: no test expects it to fire")
        if not any(not c.get("exp_alerts") for c in mine):
            missing.append(f"{name}: no test expects it to stay silent")
    assert missing == []


def test_unit_tests_only_name_alerts_that_exist() -> None:
    names = {r["alert"] for r in alerts()}
    assert {c["alertname"] for c in alert_rule_tests()} <= names


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    problems = []
    names = [r["alert"] for r in alerts()]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in alerts():
        name = rule["alert"]
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity must be one of {SEVERITIES}")
        notes = rule.get("annotations", {})
        for key in ("summary", "description"):
            if not str(notes.get(key, "")).strip():
                problems.append(f"{name}: no {key}")
        url = notes.get("runbook_url")
        if url != f"docs/runbooks/{name}.md":
            problems.append(f"{name}: runbook_url {url!r} is not docs/runbooks/{name}.md")
        elif not (REPO / url).is_file():
            problems.append(f"{name}: {url} does not exist")
    assert problems == []


def test_slo_doc_maps_every_alert_to_its_runbook() -> None:
    text = SLO_DOC.read_text()
    missing = [r["alert"] for r in alerts() if f"(runbooks/{r['alert']}.md)" not in text]
    assert missing == []


def test_every_runbook_belongs_to_an_alert() -> None:
    """A renamed alert leaves no stale runbook (rollback.md is the rollback
    procedure, not an alert's)."""
    names = {r["alert"] for r in alerts()} | {"rollback", "README"}
    stale = [p.name for p in RUNBOOKS.glob("*.md") if p.stem not in names]
    assert stale == []
