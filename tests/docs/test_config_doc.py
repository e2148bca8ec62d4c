"""``docs/CONFIG.md`` lists exactly the environment variables the code reads
and exactly the keys of the example config files, and ``docs/MIGRATION.md``
gives every one of those variables its first release.

Environment variables are found in the source, not imported: every
``TENSOR_WASM_*`` / ``TENSORCAST_*`` name anywhere in ``python/`` (generated
protobuf stubs aside), ``rust/src/`` and ``rust/build.rs``, plus any name read
by an explicit environment lookup (``os.environ.get("X")``,
``os.environ["X"]``, ``os.getenv("X")``, ``env.get("X")``, click's
``envvar="X"``, Rust's ``std::env::var("X")``/``var_os``), held by a
``*_ENV`` constant, or passed as the first argument of a helper call in a
file that reads the environment (``text("OTEL_SERVICE_NAME")``). The
documented ones are the first-column names of the tables in CONFIG.md.
Config keys are the dotted paths of every key of each
``examples/config/*.yaml`` (commented-out optional keys such as
``# cluster_token_file: cluster_token.txt`` included) against the key tables
under the CONFIG.md heading that names that file.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG_MD = REPO / "docs" / "CONFIG.md"
EXAMPLE_CONFIGS = sorted((REPO / "examples" / "config").glob("*.yaml"))

# Names with the project's prefixes, wherever they appear (messages and
# docstrings name the variables the code reads).
_PREFIXED = re.compile(r"\b(?:TENSOR_WASM|TENSORCAST)_[A-Z0-9_]*[A-Z0-9]\b")
# Explicit lookups, whatever the name.
_LOOKUPS = (
    re.compile(r"""environ(?:\.get|\.setdefault|\.pop)?\s*[(\[]\s*["']([A-Z][A-Z0-9_]*)["']"""),
    re.compile(r"""getenv\(\s*["']([A-Z][A-Z0-9_]*)["']"""),
    re.compile(r"""\benv\.get\(\s*["']([A-Z][A-Z0-9_]*)["']"""),
    re.compile(r"""envvar\s*=\s*["']([A-Z][A-Z0-9_]*)["']"""),
    re.compile(r"""env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"\s*\)"""),
    # FOO_ENV = "NAME" / FOO_ENV: Final = "NAME" / const FOO_ENV: &str = "NAME"
    re.compile(r"""\b[A-Z0-9_]*_ENV\b\s*(?::\s*[\w\[\], &']+)?=\s*["']([A-Z][A-Z0-9_]*)["']"""),
)
# In a file that reads the environment, a call whose first argument is a
# variable-shaped literal reads it through a local helper
# (`text("OTEL_SERVICE_NAME")`, `integer("TENSOR_WASM_API_PORT", 8080)`).
_READS_ENV = re.compile(r"environ|getenv|env::var")
_HELPER_CALL = re.compile(r"""\b\w+\(\s*["']([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)["']""")
# Build scripts also read what cargo sets (RUSTC, PROFILE, TARGET): only
# project-prefixed names count there.
_PREFIXED_ONLY = ("rust/build.rs",)


def _sources() -> list[Path]:
    python = [
        p for p in (REPO / "python").rglob("*.py") if "_proto" not in p.relative_to(REPO).parts
    ]
    rust = sorted((REPO / "rust" / "src").rglob("*.rs"))
    build = [REPO / rel for rel in _PREFIXED_ONLY if (REPO / rel).is_file()]
    return sorted(python) + rust + build


@cache
def env_vars_in_code() -> dict[str, frozenset[str]]:
    """Variable name → the files that mention or read it."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in _sources():
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        names = set(_PREFIXED.findall(text))
        if rel not in _PREFIXED_ONLY:
            for pattern in _LOOKUPS:
                names.update(pattern.findall(text))
            if _READS_ENV.search(text):
                names.update(_HELPER_CALL.findall(text))
        for name in names:
            found[name].add(rel)
    return {name: frozenset(files) for name, files in found.items()}


def _table_first_cells(text: str) -> list[str]:
    cells = []
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if m:
            cells.append(m.group(1))
    return cells


def env_vars_in_doc() -> set[str]:
    cells = _table_first_cells(CONFIG_MD.read_text(encoding="utf-8"))
    return {c for c in cells if re.fullmatch(r"[A-Z][A-Z0-9_]+", c)}


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) for every heading of the doc, body up to the next heading."""
    out: list[tuple[str, str]] = []
    heading, body = "", list[str]()
    in_fence = False
    for line in text.splitlines():
        if re.match(r"^\s*(```|~~~)", line):
            in_fence = not in_fence
        if line.startswith("#") and not in_fence:
            out.append((heading, "\n".join(body)))
            heading, body = line, []
        else:
            body.append(line)
    out.append((heading, "\n".join(body)))
    return out


def keys_in_doc(config: Path) -> set[str] | None:
    """Keys of the tables under the CONFIG.md heading naming ``config``;
    ``None`` when no heading names it."""
    rel = config.relative_to(REPO).as_posix()
    keys: set[str] | None = None
    for heading, body in _sections(CONFIG_MD.read_text(encoding="utf-8")):
        if rel in heading:
            keys = (keys or set()) | {
                c for c in _table_first_cells(body) if re.fullmatch(r"[a-z][a-z0-9_.]*", c)
            }
    return keys


_KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w-]*)\s*:(?:\s|$)")
# An optional key shown commented out: `# name: value` with a single value.
_COMMENTED_KEY_LINE = re.compile(r"^(\s*)#\s*([a-z][a-z0-9_]*):\s+(\S+)\s*(?:#.*)?$")


def keys_in_yaml(config: Path) -> set[str]:
    """Dotted paths of the leaf keys (and commented-out optional keys)."""
    keys: set[str] = set()
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    lines = config.read_text(encoding="utf-8").splitlines()
    for line in lines:
        m = _KEY_LINE.match(line) or _COMMENTED_KEY_LINE.match(line)
        if not m or (line.lstrip().startswith("#") and not _COMMENTED_KEY_LINE.match(line)):
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        # A parent's path is replaced by its children's as they come.
        if stack:
            keys.discard(".".join(k for _, k in stack))
        keys.add(path)
        if not line.lstrip().startswith("#"):
            stack.append((indent, key))
    return keys


def _flatten(data: object, prefix: str = "") -> set[str]:
    if isinstance(data, dict) and data:
        return {k for key, value in data.items() for k in _flatten(value, f"{prefix}{key}.")}
    return {prefix.rstrip(".")}


# --------------------------------------------------------------------------


def test_every_env_var_the_code_reads_is_documented() -> None:
    code = env_vars_in_code()
    missing = sorted(set(code) - env_vars_in_doc())
    assert not missing, "read by the code but not in docs/CONFIG.md:\n" + "\n".join(
        f"  {name} ({', '.join(sorted(code[name]))})" for name in missing
    )


def test_every_documented_env_var_is_still_read() -> None:
    stale = sorted(env_vars_in_doc() - set(env_vars_in_code()))
    assert not stale, f"in docs/CONFIG.md but no longer read by the code: {stale}"


def test_migration_guide_dates_every_documented_env_var() -> None:
    """docs/MIGRATION.md's variable table (with each one's first release)
    covers exactly the variables of CONFIG.md."""
    text = (REPO / "docs" / "MIGRATION.md").read_text(encoding="utf-8")
    dated = {c for c in _table_first_cells(text) if re.fullmatch(r"[A-Z][A-Z0-9_]+", c)}
    documented = env_vars_in_doc()
    assert not documented - dated, (
        f"in CONFIG.md, not in MIGRATION.md: {sorted(documented - dated)}"
    )
    assert not dated - documented, (
        f"in MIGRATION.md, not in CONFIG.md: {sorted(dated - documented)}"
    )


def test_example_configs_exist() -> None:
    assert EXAMPLE_CONFIGS, "examples/config/*.yaml is empty"


@pytest.mark.parametrize("config", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_config_keys_match_the_doc(config: Path) -> None:
    documented = keys_in_doc(config)
    rel = config.relative_to(REPO).as_posix()
    assert documented is not None, f"docs/CONFIG.md has no section headed with `{rel}`"
    in_file = keys_in_yaml(config)
    # The line reader must agree with YAML on the keys that are not commented out.
    parsed = _flatten(yaml.safe_load(config.read_text(encoding="utf-8")) or {})
    assert parsed <= in_file, sorted(parsed - in_file)
    missing = sorted(in_file - documented)
    stale = sorted(documented - in_file)
    assert not missing, f"keys of {rel} not documented in docs/CONFIG.md: {missing}"
    assert not stale, f"keys documented in docs/CONFIG.md that {rel} no longer has: {stale}"


def test_extractors_see_lookups_and_commented_keys(tmp_path: Path) -> None:
    src = (
        'FOO_ENV: Final = "OTHER_NAME"\nx = os.environ.get("HOME_DIR")\nTENSORCAST_X_Y\n'
        'y = text("OTEL_SERVICE_NAME")\nraise ValueError("NOT_A_VAR must be set")\n'
    )
    names = (
        {n for p in _LOOKUPS for n in p.findall(src)}
        | set(_PREFIXED.findall(src))
        | set(_HELPER_CALL.findall(src))
    )
    assert names == {"OTHER_NAME", "HOME_DIR", "TENSORCAST_X_Y", "OTEL_SERVICE_NAME"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "# Header: text\ntop:\n  a: 1  # note\n  # b_file: x.txt\n  sub:\n    c: 2\nflat: 3\n"
    )
    assert keys_in_yaml(cfg) == {"top.a", "top.b_file", "top.sub.c", "flat"}
