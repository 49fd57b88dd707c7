"""Outputs never destroy inputs: every --out writer refuses the database, existing files without
--force, folders given as files, and never follows a symlink planted at its temporary name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import personahub.core.outputs as outputs
from personahub.core.errors import PersonahubError
from personahub.core.outputs import atomic_file, check_output
from tests.cli_helpers import invoke, usage_error
from tests.synth_helpers import run_default_scenario

runner = CliRunner()


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A database with a one-step offline run (copied per test, so each test may damage it)."""
    db = tmp_path_factory.mktemp("master") / "hub.duckdb"
    return db, run_default_scenario(db, steps=1).run_id


@pytest.fixture
def hub(master: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "hub.duckdb"
    shutil.copyfile(master[0], db)
    return db, master[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()




# Each command that writes an --out, as argv for (db, run id, out).
COMMANDS: dict[str, Callable[[Path, str, str], list[object]]] = {
    "export": lambda db, run, out: ["export", "--db", db, "--run", run, "--out", out],
    "export-parquet": lambda db, run, out: ["export", "--db", db, "--run", run, "--format",
                                            "parquet", "--out", out],
    "synthesize": lambda db, run, out: ["synthesize", "instruction", "--n", "2", "--db", db,
                                        "--out", out],
    "personas-sample": lambda db, run, out: ["personas", "sample", "--db", db, "-k", "3",
                                             "--out", out],
    "export-graph": lambda db, run, out: ["personas", "export-graph", "--db", db, "--out", out],
    "report": lambda db, run, out: ["report", "--db", db, "--out", out],
}


def _absolute(tmp: Path, db: Path) -> str:
    return str(db)


def _relative(tmp: Path, db: Path) -> str:
    return db.name  # the test runs in db's folder


def _dotted(tmp: Path, db: Path) -> str:
    (tmp / "sub").mkdir()
    return "./sub/../" + db.name


def _symlink(tmp: Path, db: Path) -> str:
    (tmp / "link.duckdb").symlink_to(db)
    return str(tmp / "link.duckdb")


def _linked_folder(tmp: Path, db: Path) -> str:
    (tmp / "alias").symlink_to(tmp, target_is_directory=True)
    return str(tmp / "alias" / db.name)


def _hard_link(tmp: Path, db: Path) -> str:
    os.link(db, tmp / "hard.duckdb")
    return str(tmp / "hard.duckdb")


def _wal(tmp: Path, db: Path) -> str:
    return str(db) + ".wal"


SPELLINGS = [_absolute, _relative, _dotted, _symlink, _linked_folder, _hard_link, _wal]


def _spelling_matrix() -> list[object]:
    """Every spelling x command x --force; the fast subset keeps a diagonal in which each command
    and each spelling appears at least once, with and without --force (the rest is marked slow;
    there are more spellings than commands)."""
    params = []
    for i, spelling in enumerate(SPELLINGS):
        for j, command in enumerate(sorted(COMMANDS)):
            for force in (False, True):
                fast = j == i % len(COMMANDS) and force == bool(i % 2)
                name = f"{'force' if force else 'plain'}-{command}-{spelling.__name__.strip('_')}"
                params.append(pytest.param(command, spelling, force, id=name,
                                           marks=() if fast else pytest.mark.slow))
    return params


@pytest.mark.parametrize(("command", "spelling", "force"), _spelling_matrix())
def test_out_naming_the_database_is_refused(hub, tmp_path, monkeypatch, command, spelling,
                                            force) -> None:
    db, run = hub
    monkeypatch.chdir(tmp_path)
    before = digest(db)
    listing = sorted(p.name for p in tmp_path.iterdir())
    target = spelling(tmp_path, db)
    listing_with_spelling = sorted(p.name for p in tmp_path.iterdir())
    argv = COMMANDS[command](db, run, target) + (["--force"] if force else [])
    line = usage_error(invoke(*argv))
    assert "--out" in line and "database" in line
    assert digest(db) == before
    assert not os.path.lexists(str(db) + ".wal")
    assert sorted(p.name for p in tmp_path.iterdir()) == listing_with_spelling
    assert set(listing) <= set(listing_with_spelling)


def _existing(tmp: Path, command: str) -> Path:
    """An --out that already holds someone's file (for report: a folder holding index.html)."""
    if command == "report":
        folder = tmp / "report"
        folder.mkdir()
        (folder / "index.html").write_text("precious\n")
        return folder
    path = tmp / "precious.out"
    path.write_text("precious\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_existing_output_needs_force(hub, tmp_path, command) -> None:
    db, run = hub
    out = _existing(tmp_path, command)
    precious = out / "index.html" if command == "report" else out
    db_before = digest(db)
    line = usage_error(invoke(*COMMANDS[command](db, run, out)))
    assert "already exists" in line and "--force" in line
    assert precious.read_text() == "precious\n"
    assert digest(db) == db_before  # refused before doing any work (synthesize wrote no job)
    result = invoke(*COMMANDS[command](db, run, out), "--force")
    assert result.exit_code == 0, result.output
    assert precious.read_bytes() != b"precious\n" and precious.stat().st_size > 0
    assert not [p.name for p in precious.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_new_output_is_written_without_force(hub, tmp_path, command) -> None:
    db, run = hub
    out = tmp_path / ("fresh" if command == "report" else "fresh.out")
    result = invoke(*COMMANDS[command](db, run, out))
    assert result.exit_code == 0, result.output
    written = out / "index.html" if command == "report" else out
    assert written.stat().st_size > 0


@pytest.mark.parametrize(("command", "make", "message"), [
    ("export", lambda t: t / "folder", "is a folder"),
    ("export-graph", lambda t: t / "folder", "is a folder"),
    ("personas-sample", lambda t: t / "folder", "is a folder"),
    ("synthesize", lambda t: t / "folder", "is a folder"),
    ("report", lambda t: t / "file.txt", "is a file"),
    ("export", lambda t: t / "missing" / "x.jsonl", "does not exist"),
    ("report", lambda t: t / "missing" / "report", "does not exist"),
    ("export", lambda t: t / "file.txt" / "x.jsonl", "is not a folder"),
], ids=["export-folder", "graph-folder", "sample-folder", "synthesize-folder", "report-file",
        "export-no-parent", "report-no-parent", "export-parent-is-file"])
def test_wrong_kind_or_missing_folder_is_one_line(hub, tmp_path, command, make, message) -> None:
    db, run = hub
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("keep\n")
    listing = sorted(p.name for p in tmp_path.iterdir())
    line = usage_error(invoke(*COMMANDS[command](db, run, make(tmp_path)), "--force"))
    assert message in line and "--out" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
    assert (tmp_path / "file.txt").read_text() == "keep\n"
    assert not list((tmp_path / "folder").iterdir())


def test_symlink_at_the_old_predictable_temp_name_is_not_followed(hub, tmp_path) -> None:
    db, run = hub
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    out = tmp_path / "out.jsonl"
    planted = tmp_path / f".{out.name}.tmp-{os.getpid()}"  # the name the old writer used
    planted.symlink_to(victim)
    result = invoke("export", "--db", db, "--run", run, "--out", out)
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "do not touch\n"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert out.read_text().count("\n") > 0


def test_writer_never_opens_a_path_that_already_exists(tmp_path, monkeypatch) -> None:
    """Even if the random name is guessed, exclusive creation skips a planted link or file."""
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    link, squatter = tmp_path / ".out.jsonl.guess1.tmp", tmp_path / ".out.jsonl.guess2.tmp"
    link.symlink_to(victim)
    squatter.write_text("someone else's\n")
    dangling = tmp_path / ".out.jsonl.guess3.tmp"
    dangling.symlink_to(tmp_path / "would-be-created")
    names = iter([link, squatter, dangling, tmp_path / ".out.jsonl.mine.tmp"])
    monkeypatch.setattr(outputs, "_temp_name", lambda target: next(names))
    with atomic_file(tmp_path / "out.jsonl", overwrite=False) as f:
        f.write("new\n")
    assert (tmp_path / "out.jsonl").read_text() == "new\n"
    assert victim.read_text() == "do not touch\n" and squatter.read_text() == "someone else's\n"
    assert not (tmp_path / "would-be-created").exists()
    assert link.is_symlink() and dangling.is_symlink()
    assert not (tmp_path / ".out.jsonl.mine.tmp").exists()


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("binary", [False, True])
def test_failing_writer_leaves_target_and_no_temp(tmp_path, overwrite, binary) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("previous complete export\n")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_file(target, overwrite=overwrite, binary=binary) as f:
            f.write(b"half" if binary else "half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "previous complete export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_file_appearing_during_a_write_is_not_overwritten(tmp_path) -> None:
    """Without overwrite the final step refuses an existing target, however late it appeared."""
    target = tmp_path / "out.jsonl"
    with pytest.raises(PersonahubError, match="already exists"):
        with atomic_file(target, overwrite=False) as f:
            f.write("ours\n")
            target.write_text("theirs\n")
    assert target.read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_overwrite_replaces_a_symlink_not_its_target(tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    target = tmp_path / "out.jsonl"
    target.symlink_to(victim)
    with pytest.raises(PersonahubError, match="already exists"):
        check_output(target, db=None, force=False)
    with atomic_file(check_output(target, db=None, force=True), overwrite=True) as f:
        f.write("new\n")
    assert not target.is_symlink() and target.read_text() == "new\n"
    assert victim.read_text() == "do not touch\n"


def test_output_mode_follows_the_umask(tmp_path) -> None:
    """Exports are ordinary files (0o666 less the umask), not mkstemp's private 0o600."""
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "out.parquet", overwrite=False, binary=True) as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.parquet").stat().st_mode & 0o777 == 0o644


@pytest.mark.slow
def test_report_refuses_only_files_it_would_write(hub, tmp_path) -> None:
    db, run = hub
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    assert invoke("report", "--db", db, "--out", folder).exit_code == 0
    assert (folder / "notes.txt").read_text() == "mine\n"
    line = usage_error(invoke("report", "--db", db, "--out", folder))
    assert "index.html" in line or ".png" in line


def test_synthesize_out_writes_the_job(hub, tmp_path) -> None:
    db, _ = hub
    out = tmp_path / "items.jsonl"
    result = invoke("synthesize", "instruction", "--n", "2", "--db", db, "--out", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and set(rows[0]) == {"input persona", "synthesized text", "description"}


@pytest.mark.parametrize("command", [["export"], ["synthesize"], ["report"],
                                     ["personas", "sample"], ["personas", "export-graph"]])
def test_help_mentions_force(command) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "--force" in result.output
