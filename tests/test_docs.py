"""The docs a newcomer reads hold together: every relative link in README.md and docs/*.md
resolves (file and heading anchor), every ``personahub ...`` command in their bash blocks names a
real command and real flags of the CLI app, every repository path they quote in backticks exists,
and CHANGELOG.md is Keep a Changelog with one line per entry.

Here the commands are parsed against the app object, which is fast and catches a renamed flag;
they also *run*, offline, in tests/test_readme.py and tests/test_docs_run.py (slow).
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from personahub.cli.app import app
from tests.doc_commands import ROOT, shell_blocks

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "RESULTS.md"]
# Top-level folders whose files docs name by path (`personahub/models/client.py`): such a path must exist.
REPO_FOLDERS = ("agents", "analysis", "bench", "docs", "examples", "personahub", "personas",
                "pipelines", "scenarios", "sim", "tests", ".ci")
CHANGELOG_SECTIONS = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _without_code(text: str) -> str:
    """The text with fenced blocks and inline code removed (links inside them are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip())
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """Every heading anchor of a page, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for line in text.splitlines():
        match = re.match(r"^#{1,6} +(.*?) *#*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return frozenset(found)


def relative_links(page: Path) -> list[str]:
    targets = re.findall(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)", _without_code(page.read_text("utf-8")))
    targets += re.findall(r"^\[[^\]]+\]: +(\S+)", page.read_text("utf-8"), flags=re.M)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def link_cases() -> list[tuple[str, str]]:
    return [(_page_id(page), link) for page in PAGES for link in relative_links(page)]


@pytest.mark.parametrize(("page_id", "link"), link_cases())
def test_every_relative_link_resolves(page_id: str, link: str) -> None:
    page = ROOT / page_id
    path_part, _, anchor = link.partition("#")
    target = (page.parent / path_part).resolve() if path_part else page
    assert target.exists(), f"{page_id}: link to a missing file: {link}"
    if anchor:
        assert target.suffix == ".md", f"{page_id}: anchor into a non-Markdown file: {link}"
        assert anchor in anchors(target), f"{page_id}: no heading for #{anchor} in {path_part}"


def test_the_pages_link_to_each_other() -> None:
    """The README links every docs page, and the link checks above have links to check."""
    readme_links = {link.partition("#")[0] for link in relative_links(ROOT / "README.md")}
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme_links, f"README.md does not link docs/{page.name}"
    assert len(link_cases()) > 40


def test_the_slug_is_githubs() -> None:
    assert slug("Before a big job: `personahub doctor` and `--concurrency auto`") == \
        "before-a-big-job-personahub-doctor-and---concurrency-auto"
    assert slug("3. Deduplication — `personas dedup`") == "3-deduplication--personas-dedup"
    assert slug("The quality gate") == "the-quality-gate"


# --- commands ------------------------------------------------------------------------------

def personahub_invocations(block: str) -> list[list[str]]:
    """Each ``personahub`` invocation in a shell block, as its argument words (comments,
    continuations, pipes, ``&&``, ``$(...)`` and trailing ``&`` handled)."""
    text = re.sub(r"\\\n", " ", block)
    found = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        line = line.replace("$(", " ( ")
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
            lexer.whitespace_split = True
            words = list(lexer)
        except ValueError as exc:  # an unclosed quote spanning lines: join and try again
            raise AssertionError(f"cannot split shell line: {line!r} ({exc})") from exc
        current: list[str] | None = None
        for word in words:
            if current is None:
                if word == "personahub":
                    current = []
                continue
            if word and set(word) <= set(";&|()"):
                found.append(current)
                current = None
                continue
            current.append(word)
        if current is not None:
            found.append(current)
    return found


def command_cases() -> list[tuple[str, str]]:
    cases = []
    for page in PAGES:
        for block in shell_blocks(page.read_text("utf-8")):
            for words in personahub_invocations(block):
                cases.append((_page_id(page), shlex.join(words)))
    return cases


# Typer's command objects are click's or, from typer 0.2x, its own copy of them: duck-typed here
# (a group has ``commands``; an option has ``opts`` and ``secondary_opts``).

@cache
def root_command() -> Any:
    command = typer.main.get_command(app)
    assert hasattr(command, "commands")
    return command


def is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def resolve(words: list[str]) -> tuple[list[str], Any, list[str]]:
    """(the subcommand path, its command object, the words after it)."""
    command = root_command()
    path: list[str] = []
    rest = list(words)
    while is_group(command) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"no command `personahub {' '.join([*path, rest[0]])}`"
        path.append(rest.pop(0))
        command = sub
    return path, command, rest


def flags_of(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


@cache
def help_exit(path: tuple[str, ...]) -> int:
    return CliRunner().invoke(app, [*path, "--help"]).exit_code


@pytest.mark.parametrize(("page_id", "command"), command_cases())
def test_every_documented_command_parses(page_id: str, command: str) -> None:
    words = shlex.split(command)
    path, cmd, rest = resolve(words)
    assert not is_group(cmd) or "--help" in rest or "--version" in rest, \
        f"{page_id}: `personahub {command}` names a group, not a command"
    assert help_exit(tuple(path)) == 0, f"{page_id}: `personahub {' '.join(path)} --help` fails"
    known = flags_of(cmd)
    for word in rest:
        if word.startswith("-") and word != "-" and not re.match(r"^-\d", word):
            flag = word.split("=", 1)[0]
            assert flag in known, f"{page_id}: `personahub {' '.join(path)}` has no {flag}"


def test_the_commands_are_found() -> None:
    """The extraction finds the commands (so the parametrised test cannot pass on nothing)."""
    commands = [c for _, c in command_cases()]
    assert len(commands) > 60
    assert "run scenarios/riverside_town.py" in commands
    assert any(c.startswith("sql --scalar") for c in commands)  # inside $(...)
    assert personahub_invocations('x=$(personahub sql "a | b" | tail -1) && personahub run f &') \
        == [["sql", "a | b"], ["run", "f"]]


def test_an_unknown_flag_or_command_is_caught() -> None:
    with pytest.raises(AssertionError):
        resolve(["personas", "nosuch"])
    _, cmd, _ = resolve(["synthesize", "math_problem"])
    assert "--n" in flags_of(cmd) and "--bogus" not in flags_of(cmd)


# --- repository paths ----------------------------------------------------------------------

def quoted_paths(page: Path) -> list[str]:
    found = []
    for code in re.findall(r"`([^`\n]+)`", page.read_text("utf-8")):
        if re.search(r"[<*{]", code):  # a pattern (`tests/golden/offline_<section>.jsonl`)
            continue
        for token in re.findall(r"[\w./-]+", code):
            first = token.split("/", 1)[0]
            if "/" in token and first in REPO_FOLDERS and "..." not in token:
                found.append(token.rstrip(".,:;"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_quoted_repository_path_exists(page: Path) -> None:
    missing = sorted({p for p in quoted_paths(page) if not (ROOT / p).exists()
                      and not (ROOT / p).with_suffix("").exists()})
    assert not missing, f"{_page_id(page)} names paths that do not exist: {missing}"


# --- changelog -----------------------------------------------------------------------------

def test_the_changelog_is_keep_a_changelog_with_one_line_entries() -> None:
    lines = (ROOT / "CHANGELOG.md").read_text("utf-8").splitlines()
    assert lines[0] == "# Changelog"
    releases = [line for line in lines if line.startswith("## ")]
    assert releases and releases[0] == "## [Unreleased]", releases[:1]
    for line in releases[1:]:
        assert re.match(r"^## \[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}$", line), line
    section = None
    entries = 0
    for number, line in enumerate(lines, 1):
        where = f"CHANGELOG.md:{number}"
        if line.startswith("### "):
            section = line[4:]
            assert section in CHANGELOG_SECTIONS, f"{where}: unknown section {section!r}"
        elif line.startswith("## "):
            section = None
        elif line.startswith("- "):
            assert section is not None, f"{where}: an entry outside Added/Changed/...: {line!r}"
            assert len(line) > 10, f"{where}: an empty entry"
            entries += 1
        elif line.strip() and section is not None:
            raise AssertionError(f"{where}: not a one-line entry (continuation?): {line!r}")
    assert entries > 20
