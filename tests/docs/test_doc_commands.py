"""Every ``tensor-wasm``, ``tensor-wasm-cli``, ``tensorcast`` and
``tensorcast-cli`` command line the docs show must run: its subcommands
exist and every flag it passes is one the command declares.

Command lines are taken from ``README.md`` and ``docs/**/*.md``: shell-like
fenced code blocks (``sh``, ``bash``, ``console``, no language, ...; with
``\\`` continuations joined) and inline code spans (which may wrap across
lines). A line is split into simple commands the way a shell would (``|``,
``&&``, ``;``, ``$(...)``, redirections, comments), and a simple command whose
first word (after ``sudo``, ``env``, ``VAR=value``, ...) is one of the four
programs is checked against the click command tree in-process: each command
path's ``--help`` is run with click's ``CliRunner`` (it must exit 0), and the
flags are compared with the options the command declares. Usage syntax is
understood: ``[--flag VALUE]``, ``a|b`` alternatives and placeholders such as
``<id>``, ``ID`` or ``$ID`` (a word that cannot be a subcommand name ends the
check of that line, so output lines like ``tensor-wasm 0.1.0`` pass).

A failure names the doc, the line and the command. Failures in docs this
test's owner may not edit are listed in `KNOWN_BAD` instead of being fixed
here.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from tensorwasm_tc.cli.tensor_wasm import main as tensor_wasm_main
from tensorwasm_tc.cli.tensorcast import main as tensorcast_main

REPO = Path(__file__).resolve().parents[2]

PROGRAMS: dict[str, click.Command] = {
    "tensor-wasm": tensor_wasm_main,
    "tensor-wasm-cli": tensor_wasm_main,
    "tensorcast": tensorcast_main,
    "tensorcast-cli": tensorcast_main,
}

# Fenced blocks whose lines are shell commands (or a command's usage line).
SHELL_FENCES = frozenset({"", "sh", "bash", "shell", "console", "zsh", "text"})

# Known failures in docs owned by other engineers, which this test's owner
# must not edit. Key: (doc path relative to the repo, problem as reported,
# without the line number). Remove an entry as soon as its doc is fixed: a
# stale entry is reported as a warning, never as a failure, so a fix by the
# doc's owner does not break this test.
KNOWN_BAD: dict[tuple[str, str], str] = {}

# Words that may precede the program in a simple command.
_PREFIX_WORDS = frozenset(
    {"sudo", "env", "exec", "nohup", "time", "command", "then", "do", "!", "xargs", "watch"}
)
# Options of those words that take a value (`sudo -u tensorwasm`, `watch -n 5`).
_PREFIX_OPTIONS_WITH_VALUE = frozenset({"-u", "-g", "-n", "-C", "-D"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SUBCOMMAND_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|inf\b|nan\b)", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<[^<>\s]+>")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([A-Za-z0-9_+-]*)")
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    """One logical line of code from a doc."""

    path: str  # relative to the repo
    line: int  # 1-based line where it starts
    text: str


# --------------------------------------------------------------------------
# Markdown → code snippets


def doc_files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file()]


def snippets(path: Path) -> Iterator[Snippet]:
    """Fenced shell lines (continuations joined) and inline code spans."""
    rel = path.relative_to(REPO).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    fence: str | None = None  # the opening fence while inside a block
    lang = ""
    pending: list[str] = []  # a command continued with a trailing backslash
    pending_line = 0
    paragraph: list[str] = []
    paragraph_line = 0

    def flush_paragraph() -> Iterator[Snippet]:
        text = "\n".join(paragraph)
        for m in _INLINE_CODE.finditer(text):
            line = paragraph_line + text.count("\n", 0, m.start())
            yield Snippet(rel, line, m.group(2).replace("\n", " ").strip())
        paragraph.clear()

    for number, raw in enumerate(lines, start=1):
        m = _FENCE.match(raw)
        if fence is None:
            if m:
                yield from flush_paragraph()
                fence, lang = m.group(2), m.group(3).lower()
                continue
            stripped = raw.strip()
            if stripped.startswith(("|", "#")):
                # A table row or a heading: code spans never continue past it.
                yield from flush_paragraph()
                paragraph_line = number
                paragraph.append(raw)
                yield from flush_paragraph()
            elif stripped:
                if not paragraph:
                    paragraph_line = number
                paragraph.append(raw)
            else:
                yield from flush_paragraph()
            continue
        if m and m.group(2)[0] == fence[0] and len(m.group(2)) >= len(fence) and not m.group(3):
            if pending:
                yield Snippet(rel, pending_line, " ".join(pending))
                pending.clear()
            fence = None
            continue
        if lang not in SHELL_FENCES:
            continue
        text = raw.strip()
        if lang == "console":
            if not text.startswith("$ "):
                continue  # output
            text = text[2:]
        if not pending:
            pending_line = number
        if text.endswith("\\"):
            pending.append(text[:-1])
            continue
        pending.append(text)
        yield Snippet(rel, pending_line, " ".join(pending))
        pending.clear()
    yield from flush_paragraph()


# --------------------------------------------------------------------------
# Shell-like splitting


def simple_commands(text: str) -> list[list[str]]:
    """Splits a line into simple commands, each a list of words.

    Quotes are removed, ``#`` starts a comment, ``|``/``;``/``&``/``$(``/
    backticks/parentheses separate commands, a redirection drops the word it
    redirects to, ``[`` and ``]`` (usage syntax) are dropped, a ``|`` inside
    brackets or between two non-blank characters (``a|b``) separates
    alternatives instead of piping, and ``<name>`` is a placeholder word."""
    commands: list[list[str]] = [[]]
    word: list[str] = []
    in_word = False
    skip_next = False
    quote: str | None = None
    depth = 0
    i, n = 0, len(text)

    def end_word() -> None:
        nonlocal in_word, skip_next
        if in_word:
            if skip_next:
                skip_next = False
            else:
                commands[-1].append("".join(word))
        word.clear()
        in_word = False

    def end_command() -> None:
        end_word()
        if commands[-1]:
            commands.append([])

    while i < n:
        c = text[i]
        if quote is not None:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"' and i + 1 < n and text[i + 1] in '"\\$`':
                i += 1
                word.append(text[i])
            else:
                word.append(c)
            i += 1
            continue
        if c in "'\"":
            quote = c
            in_word = True
        elif c == "\\" and i + 1 < n:
            word.append(text[i + 1])
            in_word = True
            i += 1
        elif c.isspace():
            end_word()
        elif c == "#" and not in_word:
            break
        elif c == "$" and text[i + 1 : i + 2] == "(":
            end_command()
            i += 1
        elif c in "`()":
            end_command()
        elif c == "[":
            end_word()
            depth += 1
        elif c == "]":
            end_word()
            depth = max(0, depth - 1)
        elif c == "|":
            nxt = text[i + 1 : i + 2]
            if depth > 0:
                end_word()
            elif in_word and nxt and not nxt.isspace() and nxt not in "|&;":
                word.append(c)
            else:
                end_command()
        elif c in ";&":
            end_command()
        elif c == "<" and (m := _PLACEHOLDER.match(text, i)):
            word.append(m.group(0))
            in_word = True
            i = m.end() - 1
        elif c in "<>":
            end_word()
            skip_next = True
            while i + 1 < n and text[i + 1] in "<>&":
                i += 1
        else:
            word.append(c)
            in_word = True
        i += 1
    end_word()
    return [c for c in commands if c]


def _invocation(words: list[str]) -> tuple[str, list[str]] | None:
    i = 0
    prefixed = False
    while i < len(words):
        w = words[i]
        if _ASSIGNMENT.match(w) or w in _PREFIX_WORDS:
            prefixed = prefixed or w in _PREFIX_WORDS
            i += 1
        elif w in ("uv", "timeout") and i + 1 < len(words):
            i += 2  # `uv run`, `timeout 30`
        elif prefixed and w.startswith("-"):
            i += 2 if w in _PREFIX_OPTIONS_WITH_VALUE else 1
        else:
            break
    if i < len(words):
        program = words[i].rsplit("/", 1)[-1]
        if program in PROGRAMS:
            return program, words[i + 1 :]
    if "--" in words[:i] or "--" not in words:
        return None
    # `kubectl exec POD -- tensor-wasm --version`: the command after `--`.
    return _invocation(words[words.index("--") + 1 :])


def program_invocations(text: str) -> Iterator[tuple[str, list[str]]]:
    """(program, words after it) for every simple command that runs one."""
    for words in simple_commands(text):
        found = _invocation(words)
        if found is not None:
            yield found


# --------------------------------------------------------------------------
# The click command tree


@cache
def command_at(program: str, path: tuple[str, ...]) -> click.Command | None:
    cmd: click.Command = PROGRAMS[program]
    for name in path:
        if not isinstance(cmd, click.Group) or name not in cmd.commands:
            return None
        cmd = cmd.commands[name]
    return cmd


@cache
def accepted_flags(program: str, path: tuple[str, ...]) -> frozenset[str]:
    """The flags of ``program path...``: its ``--help`` must exit 0, and the
    flags are those its help lists plus every option it declares."""
    cmd = command_at(program, path)
    assert cmd is not None
    result = CliRunner().invoke(PROGRAMS[program], [*path, "--help"], prog_name=program)
    assert result.exit_code == 0, (
        f"`{program} {' '.join(path)} --help` exited {result.exit_code}:\n{result.output}"
    )
    flags: set[str] = set()
    in_options = False
    for line in result.output.splitlines():
        if line.rstrip().endswith(":") and not line.startswith(" "):
            in_options = line.strip() == "Options:"
            continue
        if in_options and line.startswith("  ") and line.lstrip().startswith("-"):
            head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
            flags.update(re.findall(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)", head))
    for param in cmd.params:
        if isinstance(param, click.Option):
            flags.update(param.opts)
            flags.update(param.secondary_opts)
    return frozenset(flags)


def _flag_problems(program: str, paths: list[tuple[str, ...]], word: str) -> list[str]:
    problems = []
    for flag in word.split("|"):
        flag = flag.split("=", 1)[0]
        if not flag.startswith("-") or flag in ("-", "--") or _NEGATIVE_NUMBER.match(flag):
            continue
        if not flag.startswith("--") and len(flag) > 2:
            short = flag[:2]  # `-n50`: a short option with its value attached
            if any(short in accepted_flags(program, p) for p in paths):
                continue
        if flag.rstrip(".,") != flag and any(
            flag.rstrip(".,") in accepted_flags(program, p) for p in paths
        ):
            continue  # prose punctuation after a flag
        if not any(flag in accepted_flags(program, p) for p in paths):
            where = " | ".join(" ".join((program, *p)) for p in paths)
            problems.append(f"`{where}` has no option {flag}")
    return problems


def check_invocation(program: str, words: list[str]) -> list[str]:
    """Problems with ``program words...``; empty when it would be accepted."""
    path: tuple[str, ...] = ()
    i = 0
    while i < len(words):
        cmd = command_at(program, path)
        assert cmd is not None
        if not isinstance(cmd, click.Group):
            break
        w = words[i]
        if w == "--":
            return []
        if w.startswith("-"):
            group_problems = _flag_problems(program, [path], w)
            if group_problems or w in ("--help", "-h", "--version"):
                return group_problems  # a group flag that ends parsing, or a bad one
            i += 1
            continue
        names = w.split("|")
        if not all(_SUBCOMMAND_NAME.match(name) for name in names):
            return []  # a placeholder (<id>, ID, $CMD) or output: nothing to check
        missing = [name for name in names if command_at(program, (*path, name)) is None]
        if missing:
            return [f"`{' '.join((program, *path))}` has no subcommand {missing[0]!r}"]
        if len(names) > 1:
            paths = [(*path, name) for name in names]
            return [p for word in words[i + 1 :] for p in _flag_problems(program, paths, word)]
        path = (*path, w)
        i += 1
    accepted_flags(program, path)  # its --help must work even with no flags
    problems: list[str] = []
    for w in words[i:]:
        if w == "--":
            break
        problems.extend(_flag_problems(program, [path], w))
    return problems


def doc_problems(path: Path) -> list[tuple[int, str, str]]:
    """(line, command text, problem) for every bad command line of a doc."""
    out = []
    for snip in snippets(path):
        for program, words in program_invocations(snip.text):
            for problem in check_invocation(program, words):
                out.append((snip.line, " ".join((program, *words)), problem))
    return out


# --------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_doc_command_lines_are_accepted(doc: Path) -> None:
    rel = doc.relative_to(REPO).as_posix()
    bad = []
    seen_known = set()
    for line, command, problem in doc_problems(doc):
        if (rel, problem) in KNOWN_BAD:
            seen_known.add((rel, problem))
            continue
        bad.append(f"{rel}:{line}: {command}\n    {problem}")
    for key in KNOWN_BAD:
        if key[0] == rel and key not in seen_known:
            warnings.warn(f"stale KNOWN_BAD entry (the doc is fixed): {key}", stacklevel=1)
    assert not bad, "command lines in the docs that the CLIs do not accept:\n" + "\n".join(bad)


def test_every_documented_program_is_seen() -> None:
    """The extractor finds commands at all: the README runs each CLI."""
    found = {
        program
        for snip in snippets(REPO / "README.md")
        for program, _words in program_invocations(snip.text)
    }
    assert {"tensor-wasm", "tensor-wasm-cli", "tensorcast-cli"} <= found, found


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "ID=$(tensor-wasm deploy x.wasm --name v)  # id",
            [("tensor-wasm", ["deploy", "x.wasm", "--name", "v"])],
        ),
        (
            "tensor-wasm serve [--host H] [--tensorcast-address A | --no-tensorcast]",
            [
                (
                    "tensor-wasm",
                    ["serve", "--host", "H", "--tensorcast-address", "A", "--no-tensorcast"],
                )
            ],
        ),
        (
            "sudo TENSORCAST_HOME=/x tensorcast-cli daemon status --json | jq .",
            [("tensorcast-cli", ["daemon", "status", "--json"])],
        ),
        (
            "tensor-wasm-cli snapshot inspect <path> > /tmp/tensor-wasm",
            [("tensor-wasm-cli", ["snapshot", "inspect", "<path>"])],
        ),
        (
            "tensor-wasm-cli artifacts list\\|show",
            [("tensor-wasm-cli", ["artifacts", "list|show"])],
        ),
        ("systemctl restart tensor-wasm && tensor-wasm -h", [("tensor-wasm", ["-h"])]),
        ("import tensorwasm_tc.tensorcast as tc", []),
        (
            "kubectl -n tw exec pod/x -- tensor-wasm --version | head -2",
            [("tensor-wasm", ["--version"])],
        ),
        (
            "sudo -u tensorwasm tensorcast-cli daemon status",
            [("tensorcast-cli", ["daemon", "status"])],
        ),
        ("docker compose up -d -- x", []),
    ],
)
def test_command_lines_are_split_like_a_shell(
    line: str, expected: list[tuple[str, list[str]]]
) -> None:
    assert list(program_invocations(line)) == expected


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("tensor-wasm serve --port 1 --host h", None),
        ("tensor-wasm invoke $ID -e add --arg 2 --arg -3 --json", None),
        ("tensorcast-cli global start --config=x.yaml", None),
        ("tensor-wasm 0.1.0", None),
        ("tensorcast-cli daemon logs -n50", None),
        ("tensor-wasm serve --prot 1", "`tensor-wasm serve` has no option --prot"),
        ("tensorcast-cli daemon restart", "`tensorcast-cli daemon` has no subcommand 'restart'"),
        ("tensor-wasm-cli --versoin", "`tensor-wasm-cli` has no option --versoin"),
    ],
)
def test_bad_flags_and_subcommands_are_reported(line: str, problem: str | None) -> None:
    [(program, words)] = program_invocations(line)
    assert check_invocation(program, words) == ([] if problem is None else [problem])
