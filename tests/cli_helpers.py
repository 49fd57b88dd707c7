"""Driving the CLI in-process or as a subprocess, and what a one-line error looks like."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from typer.testing import CliRunner, Result

from personahub.cli.app import app

runner = CliRunner()


def invoke(*args: object) -> Result:
    """Run ``personahub ARGS`` in this process (exceptions propagate)."""
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result: Result) -> str:
    """The one ``error:`` line a failed command printed (exit 1, nothing else on stderr)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def usage_error(result: Result) -> str:
    """The one ``error:`` line of a usage error (a flag, option or scenario value): exit 2."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    return lines[0]


ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> list[str]:
    """The command line that runs ``personahub ARGS`` in a fresh interpreter (for kills)."""
    return [sys.executable, "-c", "from personahub.cli.app import app; app()", *args]


def env() -> dict[str, str]:
    """The environment of such a subprocess: this checkout's code, no ``PERSONAHUB_*``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAHUB_")}
    return {**clean, "PYTHONPATH": str(ROOT)}


def kill_when(args: list[str], ready: Callable[[], bool], what: str, *,
              stderr: IO[str] | int = subprocess.DEVNULL, within_s: float = 120,
              sig: int = signal.SIGKILL, delay_s: float = 0) -> int:
    """Start ``cli(*args)``, ``kill -9`` it (or send ``sig``) ``delay_s`` after ``ready()``
    holds (``what``: the assertion message if it never does within ``within_s`` seconds);
    returns its exit code. ``stderr``: where its stderr goes (a file lets ``ready`` read what
    it said)."""
    proc = subprocess.Popen(cli(*args), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                            stderr=stderr)
    try:
        deadline = time.monotonic() + within_s
        while not ready() and proc.poll() is None:
            assert time.monotonic() < deadline, what
            time.sleep(0.05)
        time.sleep(delay_s)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode



def kill_in_step_two_and_resume(path: Path, db: Path, tmp_path: Path) -> str:
    """Run a column society's scenario, kill -9 it in step 2 (step 1 committed, calls under way),
    resume it from the command line and return its run id."""
    import duckdb

    said = tmp_path / "stderr.txt"
    with said.open("w") as err:
        code = kill_when(["run", str(path), "--db", str(db), "--society", "columns",
                          "--offline-latency", "0.4"],
                         lambda: "step 1/3 committed" in said.read_text(), "step 1 committed",
                         stderr=err, delay_s=0.2)
    assert code == -signal.SIGKILL, said.read_text()
    con = duckdb.connect(str(db))
    run_id, done = con.execute("SELECT run_id, steps_done FROM runs").fetchall()[0]
    con.close()
    assert done < 3
    resumed = subprocess.run(cli("run", "--resume", run_id, "--db", str(db)), env=env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    return str(run_id)
