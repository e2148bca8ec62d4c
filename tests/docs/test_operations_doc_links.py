"""The relative links of the operations docs (CONFIG, UPGRADE, MIGRATION,
RELEASE) lead somewhere: the file exists and, for a ``#fragment`` into a
Markdown file, a heading of that file has that GitHub anchor.

Links into docs owned elsewhere (the rollback runbook, API.md, ...) are
checked too: a renamed heading there breaks these docs."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OPERATIONS_DOCS = ("CONFIG.md", "UPGRADE.md", "MIGRATION.md", "RELEASE.md")

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation other than
    ``-`` and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"`", "", heading.strip().lstrip("#").strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    out: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence and re.match(r"^#{1,6}\s", line):
            base = github_anchor(line)
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def links(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.extend((number, target) for target in _LINK.findall(line))
    return out


@pytest.mark.parametrize("name", OPERATIONS_DOCS)
def test_relative_links_resolve(name: str) -> None:
    doc = REPO / "docs" / name
    bad = []
    for line, target in links(doc):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        file_part, _, fragment = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            bad.append(f"docs/{name}:{line}: {target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            bad.append(f"docs/{name}:{line}: {target}: no heading with that anchor")
    assert not bad, "\n".join(bad)


def test_anchor_rules() -> None:
    assert github_anchor("### 3.2 Blue/green (recommended)") == "32-bluegreen-recommended"
    assert github_anchor("## token_id") == "token_id"
    assert (
        github_anchor("### Store Daemon: `examples/config/store_daemon_config.yaml`")
        == "store-daemon-examplesconfigstore_daemon_configyaml"
    )
