"""A full disk: a run stops in one line as ``interrupted`` and resumes to the
tables of an uninterrupted run once space is back; the damage check tells a live WAL (with the
tail an unfinished checkpoint wrote) from a truncated file."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from personahub.core import kernel
from personahub.core.dbcheck import DatabaseFileError, block_count
from personahub.core.diskfull import is_disk_full, what_filled
from personahub.core.store import connect
from tests.cli_helpers import invoke, one_line_error
from tests.conftest import persona_texts
from tests.sim.test_resume import SCENARIO, snapshot

HEADERS = 3 * 4096
ROOT = Path(__file__).resolve().parents[2]
NO_SPACE = 'IO Error: Could not write file "{db}.wal": No space left on device'


# -- the damage check -------------------------------------------------------------------------------

def live_wal(db: Path) -> int:
    """A checkpointed database with more rows only in its WAL (as a run that filled its disk
    leaves it); returns the rows it holds."""
    con = connect(db)  # personahub's tables, and one of rows
    con.execute("CREATE TABLE marks AS SELECT range AS n, repeat('x', 200) AS pad FROM range(20000)")
    con.execute("CHECKPOINT")
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("INSERT INTO marks SELECT range, 'wal' FROM range(20000, 25000)")
    con.close()
    assert Path(f"{db}.wal").stat().st_size > 0
    return 25000


def test_a_live_wal_after_an_unfinished_checkpoint_is_not_damage(tmp_path: Path) -> None:
    db = tmp_path / "full.duckdb"
    rows = live_wal(db)
    held = block_count(db)
    assert held is not None and db.stat().st_size == HEADERS + held * 262144
    with open(db, "ab") as f:  # a checkpoint's new blocks, cut off by the full disk
        f.write(bytes(range(256)) * 400)
    con = connect(db)  # a writer: every block checked
    try:
        assert con.execute("SELECT count(*) FROM marks").fetchall() == [(rows,)]
    finally:
        con.close()


@pytest.mark.parametrize("cut", [100_000])  # inside a block
def test_a_truncated_file_is_damage_with_or_without_a_wal(tmp_path: Path, cut: int) -> None:
    db = tmp_path / "cut.duckdb"
    live_wal(db)
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size - cut)
    before = db.read_bytes()
    with pytest.raises(DatabaseFileError, match=r"damaged \(it ends inside block \d+: truncated\?\)"):
        connect(db)
    Path(f"{db}.wal").unlink()
    with pytest.raises(DatabaseFileError, match="truncated"):
        connect(db)
    assert db.read_bytes() == before  # nothing written to it


def test_what_counts_as_a_full_disk() -> None:
    assert is_disk_full(duckdb.IOException(NO_SPACE.format(db="x")))
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device", "/tmp/x.jsonl"))
    try:
        try:
            raise duckdb.IOException(NO_SPACE.format(db="/d/x.duckdb"))
        except duckdb.Error as exc:
            raise RuntimeError("database has been invalidated") from exc
    except RuntimeError as chained:
        assert is_disk_full(chained) and what_filled(chained) == "could not write /d/x.duckdb.wal"
    assert not is_disk_full(duckdb.IOException("Could not read file: permission denied"))
    assert what_filled(OSError(errno.ENOSPC, "full", "/tmp/a.tmp")) == "could not write /tmp/a.tmp"


# -- a run that fills its disk ----------------------------------------------------------------------

@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(12)))
    path = tmp_path / "resumable.py"
    path.write_text(SCENARIO)
    return path


def fill_at(monkeypatch: pytest.MonkeyPatch, db: Path, commit: int) -> None:
    """The ``commit``-th commit of the job fails as DuckDB fails a commit on a full disk."""
    real = kernel.commit_batch
    seen = {"n": 0}

    def commit_batch(*args: Any, **kwargs: Any) -> Any:
        seen["n"] += 1
        if seen["n"] == commit:
            raise duckdb.TransactionException(
                f"TransactionContext Error: Failed to commit: {NO_SPACE.format(db=db)}")
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel, "commit_batch", commit_batch)


def status(db: Path) -> list[tuple[str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT status, error FROM jobs JOIN runs ON run_id = job_id").fetchall()
    finally:
        con.close()


def run_id_of(db: Path) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return str(con.execute("SELECT run_id FROM runs").fetchall()[0][0])
    finally:
        con.close()


@pytest.mark.parametrize("own_connection", [True, False])
@pytest.mark.slow
def test_a_run_that_fills_its_disk_stops_in_one_line_and_resumes(
        scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        own_connection: bool) -> None:
    """``own_connection`` False: DuckDB invalidated the job's connection (a checkpoint that
    ran out of space), so the job is marked through a fresh one after it is closed."""
    db = tmp_path / "full.duckdb"
    fill_at(monkeypatch, db, commit=4)  # the run's row, then steps 1 and 2: step 3 fills it
    if not own_connection:
        monkeypatch.setattr(kernel, "mark", lambda con, job_id, reason: False)
    stopped = invoke("run", scenario, "--db", db)
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert stopped.exit_code == 1 and "Traceback" not in stopped.output
    run_id = run_id_of(db)
    assert lines[-1] == (f"error: run {run_id} interrupted: the disk is full (could not write "
                         f"{db}.wal: no space left on device); free space, then resume with "
                         f"personahub run --resume {run_id} --db {db}")
    assert status(db) == [("interrupted", f"disk full: could not write {db}.wal")]
    monkeypatch.undo()  # space is back
    resumed = invoke("run", "--resume", run_id, "--db", db)
    assert resumed.exit_code == 0, resumed.output
    whole = tmp_path / "whole.duckdb"
    assert invoke("run", scenario, "--db", whole).exit_code == 0
    got = snapshot(db, run_id)
    discarded = [c for c in got["llm_calls"] if c[2] == "discarded"]
    assert discarded and discarded[0][0] == 3  # step 3's answers: billed, asked again
    got["llm_calls"] = [c for c in got["llm_calls"] if c[2] != "discarded"]
    assert got == snapshot(whole, run_id_of(whole))
    assert status(db) == [("finished", None)]


def test_a_disk_that_stays_full_leaves_the_run_running_and_says_so(
        scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "full.duckdb"
    fill_at(monkeypatch, db, commit=3)
    monkeypatch.setattr(kernel, "mark", lambda con, job_id, reason: False)
    monkeypatch.setattr("personahub.core.diskfull.mark", lambda con, job_id, reason: False)
    stopped = invoke("run", scenario, "--db", db)
    assert stopped.exit_code == 1 and "Traceback" not in stopped.output
    assert "it stays marked running until space is back; free space" in stopped.stderr
    assert [s for s, _ in status(db)] == ["running"]  # a resume takes it all the same
    monkeypatch.undo()
    assert invoke("run", "--resume", run_id_of(db), "--db", db).exit_code == 0
    assert [s for s, _ in status(db)] == ["finished"]


def test_copying_a_live_wal_keeps_it_whole(tmp_path: Path) -> None:
    """The files a full disk leaves, moved where there is space, open as they are."""
    db = tmp_path / "a.duckdb"
    rows = live_wal(db)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(db, moved / db.name)
    shutil.copy(f"{db}.wal", moved / f"{db.name}.wal")
    con = connect(moved / db.name)
    try:
        assert con.execute("SELECT count(*) FROM marks").fetchall() == [(rows,)]
    finally:
        con.close()


# -- a real small filesystem ------------------------------------------------------------------------

def _can_mount_tmpfs(where: Path) -> bool:
    """True when this user may mount a tmpfs in a user namespace of its own (``unshare -rm``:
    no root on the machine needed, where the kernel allows unprivileged user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {where}"],
                           capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.slow
def test_a_run_on_a_filesystem_that_fills_up_resumes_to_the_end(tmp_path: Path) -> None:
    """1,000 agents on a 20 MB tmpfs: the WAL outgrows DuckDB's checkpoint threshold and the
    checkpoint runs out of space, which invalidates the database (the audit's case: 98 lines of
    tracebacks, the run left ``running``, then refused as truncated)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if not _can_mount_tmpfs(mount):
        pytest.skip("cannot mount a tmpfs here (no unprivileged user namespaces)")
    sys.path.insert(0, str(ROOT / "bench"))
    from _synthetic import write_personas, write_scenario

    people = write_personas(tmp_path / "people.jsonl", 1000, seed=7)
    scenario = write_scenario(tmp_path / "full.py", people, steps=10, name="full")
    saved = tmp_path / "saved"
    saved.mkdir()
    db = mount / "f.duckdb"
    script = (f"mount -t tmpfs -o size=20m tmpfs {mount} && cd {ROOT} && "
              f"{sys.executable} -m personahub run {scenario} --db {db}; echo rc=$?; "
              f"cp {mount}/* {saved}/")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600, check=False)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "rc=1" in done.stdout and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert re.fullmatch(r"error: run \S+ interrupted: the disk is full \(could not write "
                        rf"{re.escape(str(db))}(\.wal)?: no space left on device\)"
                        r"(; it stays marked running until space is back)?; free space, "
                        r"then resume with personahub run --resume \S+ --db \S+", lines[-1]), lines[-1]
    copy = saved / "f.duckdb"
    run_id = run_id_of(copy)
    # where the disk fills decides whether the stop could still be marked: the line says which
    marked = "stays marked running" not in lines[-1]
    assert [s for s, _ in status(copy)] == (["interrupted"] if marked else ["running"])
    resumed = subprocess.run([sys.executable, "-m", "personahub", "run", "--resume", run_id,
                              "--db", str(copy)], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = tmp_path / "whole.duckdb"
    assert invoke("run", scenario, "--db", whole).exit_code == 0
    got = snapshot(copy, run_id)
    got["llm_calls"] = [c for c in got["llm_calls"] if c[2] != "discarded"]
    assert got == snapshot(whole, run_id_of(whole))


# -- every command: a full disk outside a job's batches ---------------------------------------------

FAILED_COMMIT = f"TransactionContext Error: Failed to commit: {NO_SPACE}"


def test_a_full_disk_in_a_command_that_runs_no_job_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "hub.duckdb"
    people = tmp_path / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(3)))

    def full(*args: Any, **kwargs: Any) -> Any:
        raise duckdb.TransactionException(FAILED_COMMIT.format(db=db))

    monkeypatch.setattr("personahub.personas.hub_import.stage_personas", full)
    line = one_line_error(invoke("personas", "import", people, "--db", db))
    assert line == (f"error: the disk is full (could not write {db}.wal: no space left on "
                    "device); free space, then run the command again")
