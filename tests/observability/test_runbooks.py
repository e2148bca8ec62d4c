"""The alert runbooks and docs/SLO.md are usable under pressure: every
runbook of an alert has the same sections, in the same order, and every
relative link in them (and in the dashboards' README) leads to a file that
exists. docs/runbooks/rollback.md is another document's and is only linked
to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "docs" / "runbooks"
SECTIONS = ("What it means", "Confirm", "Likely causes", "Mitigate", "Escalate")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def alert_names() -> list[str]:
    groups = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yaml").read_text())
    return [r["alert"] for g in groups["groups"] for r in g["rules"] if "alert" in r]


@pytest.mark.parametrize("alert", alert_names())
def test_runbook_has_the_standard_sections_in_order(alert: str) -> None:
    text = (RUNBOOKS / f"{alert}.md").read_text()
    assert text.startswith(f"# {alert}\n"), "the title is the alert's name"
    headings = re.findall(r"^## (.+)$", text, re.M)
    positions = []
    for section in SECTIONS:
        found = [i for i, h in enumerate(headings) if h.startswith(section)]
        assert found, f"{alert}.md has no '## {section}' section"
        positions.append(found[0])
    assert positions == sorted(positions), f"{alert}.md sections out of order: {headings}"
    assert "**Severity:**" in text


def test_relative_links_resolve() -> None:
    docs = [
        REPO / "docs" / "SLO.md",
        REPO / "docs" / "dashboards" / "README.md",
        *(RUNBOOKS / f"{a}.md" for a in alert_names()),
    ]
    broken = []
    for doc in docs:
        for target in _LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert broken == []
