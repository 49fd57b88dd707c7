"""Messages print verbatim: file names, hints and data text go through no
Rich markup, so ``[embed]`` stays and a ``[/]`` in a path is text, not a closing tag."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest
from rich.console import Console

from personahub.cli import common as cli_common
from tests.cli_helpers import invoke

TRICKY = "pip install 'personahub[embed]' from a[/]b [bold]c[/bold]"


def test_say_and_error_line_print_every_character(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(cli_common, "console", Console(file=buffer, markup=False, width=40))
    monkeypatch.setattr(cli_common, "errors", cli_common.console)
    cli_common.say("x ", (TRICKY, "bold"))
    cli_common.error_line(TRICKY)
    assert buffer.getvalue().splitlines() == [f"x {TRICKY}", f"error: {TRICKY}"]


def test_both_consoles_leave_markup_alone() -> None:
    for console in (cli_common.console, cli_common.errors, cli_common.out):
        assert console._markup is False  # noqa: SLF001 - the setting under test


def test_paths_with_brackets_print_verbatim(tmp_path: Path, persona_file) -> None:
    folder = tmp_path / "a["  # with the file name below: ".../a[/]b [x].jsonl"
    folder.mkdir()
    db = folder / "]hub [bold].duckdb"
    assert invoke("personas", "import", persona_file(4), "--db", db).exit_code == 0
    target = folder / "]b [x].jsonl"
    result = invoke("personas", "sample", "--db", db, "--out", target)
    assert result.exit_code == 0, result.output
    assert f"wrote 4 personas to {target}" in result.stderr
    assert "[/]b [x].jsonl" in str(target)


def test_run_banner_names_a_bracketed_database(tmp_path: Path, scenario_file) -> None:
    db = tmp_path / "x[/]y"
    (tmp_path / "x[").mkdir()
    result = invoke("run", scenario_file(n_personas=6), "--db", db, "--steps", "1")
    assert result.exit_code == 0, result.output
    assert f"db={db}" in result.stderr and f"started in {db}" in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("faiss") is not None, reason="faiss is installed")
def test_ann_hint_names_the_ann_extra_verbatim(tmp_path: Path, persona_file) -> None:
    db = tmp_path / "hub.duckdb"
    invoke("personas", "import", persona_file(4), "--db", db)
    result = invoke("personas", "dedup", "--db", db, "--embedder", "hash", "--ann", "faiss")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == ("error: ANN index 'faiss' is not installed: "
                                              "pip install 'personahub[ann]'")


def test_the_ann_extra_holds_faiss_and_usearch() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    names = {spec.split(">")[0].split("=")[0].strip() for spec in extras["ann"]}
    assert names == {"faiss-cpu", "usearch"}
    assert not any(n in " ".join(pyproject["project"]["dependencies"]) for n in names)


def test_concurrency_help_says_the_offline_engine_ignores_it() -> None:
    result = invoke("run", "--help")
    text = " ".join(result.output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())
    assert "offline engine answers in process and ignores it" in text
