"""Outputs leave no mess: ``--force`` replaces only a regular file, temporaries
go on every exit path and what a killed writer left is swept by the next write to the folder,
and a folder output (report, hf export) appears whole or not at all."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import personahub.core.outputs as outputs
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.outputs import (
    HOST_TAG,
    STALE_AFTER_S,
    atomic_file,
    check_output,
    staged_folder,
    sweep_temps,
)
from tests.cli_helpers import invoke, usage_error
from tests.synth_helpers import run_default_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("run") / "hub.duckdb"
    return db, run_default_scenario(db, steps=1).run_id


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- --force


def _special_files(tmp: Path) -> dict[str, Path]:
    """A FIFO, a socket and (as root, which could replace /dev/null) a character device, all
    made under ``tmp``: the test never points an output at a real device."""
    made = {"fifo": tmp / "fifo", "socket": tmp / "sock"}
    os.mkfifo(made["fifo"])
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(made["socket"]))
    sock.close()
    if os.geteuid() == 0:
        made["char device"] = tmp / "null"
        os.mknod(made["char device"], stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    return made


def test_force_replaces_only_a_regular_file(tmp_path: Path) -> None:
    for what, path in _special_files(tmp_path).items():
        mode = os.lstat(path).st_mode
        with pytest.raises(UsageError, match="--force replaces only a regular file"):
            check_output(path, db=None, force=True)
        # the last step checks again: a device put there during a long job is not replaced
        with pytest.raises(PersonahubError, match="replaces only a regular file"):
            with atomic_file(path, overwrite=True) as f:
                f.write("x")
        assert os.lstat(path).st_mode == mode, what
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.slow
def test_export_force_onto_a_device_is_one_line_and_keeps_it(run_db, tmp_path) -> None:
    db, run = run_db
    target = _special_files(tmp_path)["char device" if os.geteuid() == 0 else "fifo"]
    mode = os.lstat(target).st_mode
    line = usage_error(invoke("export", "--db", db, "--run", run, "--out", target, "--force"))
    assert "--force replaces only a regular file" in line and str(target) in line
    assert os.lstat(target).st_mode == mode
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_out_in_a_folder_that_takes_no_file_is_one_line(run_db) -> None:
    db, run = run_db
    line = usage_error(invoke("export", "--db", db, "--run", run, "--out", "/proc/x.jsonl"))
    assert "--out /proc/x.jsonl: cannot create a file in /proc" in line


def test_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("earlier\n")

    class Full(OSError):
        pass

    with pytest.raises(PersonahubError, match="No space left on device"):
        with atomic_file(target, overwrite=True) as f:
            f.write("half")
            raise Full(28, "No space left on device")
    assert target.read_text() == "earlier\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


# --------------------------------------------------------------------------- temporaries


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_interrupt_while_writing_leaves_no_temp(tmp_path, stop) -> None:
    with pytest.raises(stop):
        with atomic_file(tmp_path / "out.jsonl", overwrite=False) as f:
            f.write("half")
            raise stop()
    assert list(tmp_path.iterdir()) == []


def test_temp_names_carry_host_and_pid(tmp_path) -> None:
    name = outputs._temp_name(tmp_path / "x.jsonl").name
    assert name.startswith(".x.jsonl.") and name.endswith(f".{HOST_TAG}-{os.getpid()}.tmp")
    assert outputs._TEMP_NAME.match(name)


@pytest.mark.slow  # starts a process
def test_sweep_removes_only_stale_temporaries_of_ours(tmp_path) -> None:
    dead, live = _dead_pid(), os.getpid()
    old = time.time() - STALE_AFTER_S - 60
    names = {
        "dead writer": f".a.jsonl.{'1' * 16}.{HOST_TAG}-{dead}.tmp",
        "dead writer's folder": f".report.{'2' * 16}.{HOST_TAG}-{dead}.tmp",
        "live writer": f".b.jsonl.{'3' * 16}.{HOST_TAG}-{live}.tmp",
        "other host, recent": f".c.jsonl.{'4' * 16}.0badc0de-{dead}.tmp",
        "other host, old": f".d.jsonl.{'5' * 16}.0badc0de-{dead}.tmp",
        "older version, recent": f".e.jsonl.{'6' * 16}.tmp",
        "older version, old": f".f.jsonl.{'7' * 16}.tmp",
        "not ours": ".g.jsonl.notours.tmp",
        "user file": "notes.tmp",
    }
    for label, name in names.items():
        path = tmp_path / name
        if "folder" in label:
            path.mkdir()
            (path / "index.html").write_text("half")
        else:
            path.write_text(label)
        if label.endswith(", old") or label == "not ours":
            os.utime(path, (old, old))
    planted = tmp_path / f".h.jsonl.{'8' * 16}.{HOST_TAG}-{dead}.tmp"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    planted.symlink_to(victim)  # a link under our name is never followed nor removed
    removed = {p.name for p in sweep_temps(tmp_path)}
    gone = {"dead writer", "dead writer's folder", "other host, old", "older version, old"}
    assert removed == {names[label] for label in gone}
    for label, name in names.items():
        assert (tmp_path / name).exists() == (label not in gone), label
    assert planted.is_symlink() and victim.read_text() == "keep\n"


_WRITER = textwrap.dedent("""\
    import sys, time
    from personahub.core import outputs
    from personahub.core.interrupts import sigterm_as_interrupt
    from personahub.core.outputs import atomic_file

    if sys.argv[2] == "named":  # as where the system makes no file without a name
        outputs._unnamed_temp = lambda folder: None
    with sigterm_as_interrupt():
        with atomic_file(sys.argv[1], overwrite=False) as f:
            f.write("x" * 100_000)
            f.flush()
            print("writing", flush=True)
            time.sleep(120)
    """)


def _writer(target: Path, temp: str = "named") -> subprocess.Popen[str]:
    """A process writing target through atomic_file, paused mid-write; temp: "named" (the hidden
    temporary) or "unnamed" (whatever the system gives)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), temp],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if outputs._TEMP_NAME.match(p.name)]


@pytest.mark.slow
def test_sigterm_while_writing_removes_the_temp(tmp_path) -> None:
    proc = _writer(tmp_path / "out.jsonl")
    assert len(_temps(tmp_path)) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_kill_9_leaves_a_temp_the_next_write_sweeps(run_db, tmp_path) -> None:
    proc = _writer(tmp_path / "out.jsonl")
    proc.kill()
    proc.wait(timeout=60)
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].endswith(f"-{proc.pid}.tmp")
    db, run = run_db
    done = invoke("export", "--db", db, "--run", run, "--out", tmp_path / "other.jsonl")
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.jsonl"]


def _need_unnamed(folder: Path) -> None:
    """Skip where the system makes no file without a name in the folder (not Linux, or a file
    system without O_TMPFILE)."""
    fd = outputs._unnamed_temp(folder)
    if fd is None:
        pytest.skip("no O_TMPFILE files in the test's folder")
    os.close(fd)


def test_a_file_being_written_has_no_name_until_it_is_complete(tmp_path) -> None:
    """A kill can come at any instant of a write: what the folder shows then is what it leaves."""
    _need_unnamed(tmp_path)
    for overwrite in (False, True):
        with atomic_file(tmp_path / "out.jsonl", overwrite=overwrite) as f:
            f.write("half")
            f.flush()
            assert sorted(p.name for p in tmp_path.iterdir()) == (["out.jsonl"] if overwrite
                                                                  else [])
        assert (tmp_path / "out.jsonl").read_text() == "half"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_system_refusing_the_link_gets_the_file_through_a_named_temp(
        tmp_path, monkeypatch, overwrite) -> None:
    _need_unnamed(tmp_path)
    monkeypatch.setattr(outputs, "_link_unnamed", lambda fd, target, overwrite: False)
    if overwrite:
        (tmp_path / "out.jsonl").write_text("earlier\n")
    with atomic_file(tmp_path / "out.jsonl", overwrite=overwrite) as f:
        f.write("whole\n" * 1000)
    assert (tmp_path / "out.jsonl").read_text() == "whole\n" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


@pytest.mark.slow
def test_kill_9_while_writing_leaves_nothing_visible(tmp_path) -> None:
    _need_unnamed(tmp_path)
    proc = _writer(tmp_path / "out.jsonl", "unnamed")
    assert list(tmp_path.iterdir()) == []
    proc.kill()
    proc.wait(timeout=60)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- folder outputs


def test_staged_folder_is_all_or_nothing(tmp_path) -> None:
    out = tmp_path / "report"
    with pytest.raises(RuntimeError):
        with staged_folder(out, overwrite=False, names=("index.html", "a.png")) as staged:
            (staged / "a.png").write_text("chart")
            raise RuntimeError("the embedder is missing")
    assert list(tmp_path.iterdir()) == []
    with staged_folder(out, overwrite=False, names=("index.html", "a.png")) as staged:
        (staged / "a.png").write_text("chart")
        (staged / "index.html").write_text("page")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "index.html"]
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_staged_folder_replaces_an_earlier_output_whole(tmp_path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    for name, text in (("index.html", "old"), ("survey.png", "old"), ("notes.txt", "mine")):
        (out / name).write_text(text)
    names = ("index.html", "survey.png", "graph.png")
    with pytest.raises(PersonahubError, match="already exists"):
        with staged_folder(out, overwrite=False, names=names) as staged:
            (staged / "index.html").write_text("new")
    assert (out / "index.html").read_text() == "old"
    with staged_folder(out, overwrite=True, names=names) as staged:
        (staged / "index.html").write_text("new")
        (staged / "graph.png").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["graph.png", "index.html", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"  # not ours: kept
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


@pytest.mark.slow
def test_a_report_that_fails_half_way_writes_nothing(run_db, tmp_path) -> None:
    """The diversity section comes last: an embedder failing there used to leave the PNGs of
    the sections before it and no index.html."""
    import duckdb

    from personahub.analysis.report import write_report
    from personahub.personas.embedding import HashEmbedder

    class Broken(HashEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            raise PersonahubError("the embedder's model is not installed")

    db, run = run_db
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "index.html").write_text("an earlier report\n")
    con = duckdb.connect(str(db), read_only=True)
    try:
        for out, overwrite in ((tmp_path / "new", False), (kept, True)):
            with pytest.raises(PersonahubError, match="not installed"):
                write_report(con, out, run_id=run, overwrite=overwrite, embedder=Broken())
    finally:
        con.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert [p.name for p in kept.iterdir()] == ["index.html"]
    assert (kept / "index.html").read_text() == "an earlier report\n"
