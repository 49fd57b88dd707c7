"""Wall time of ``run`` and ``synthesize`` through ``personahub serve`` with injected faults.

    python bench/bench_faults.py [--cases clean hang10 error30 mixed30] [--jobs run synth]
                                 [--timeout 60] [--repeat 1] [--scenario scenarios/riverside_town.py]
                                 [--n 400]

For each case, ``personahub serve`` starts in a child process with the case's fault flags
(``hang10``: ``--hang-rate 0.1``; ``error30``: ``--error-rate 0.3``; ``mixed30``: 10% each of
errors, malformed answers and hangs; ``hang100``: ``--hang-rate 1.0``), and each job runs as
the CLI does, in its own process, against it (``--llm URL``, the default ``--concurrency 16``,
the given ``--timeout``). A hang lasts ``serve``'s default 30 s. Printed per job and case: wall
seconds, the ratio to the clean case, exit code, the job's ``llm_calls`` rows by status, and
whether its tables equal the clean run's (emissions, or synthesis items). Issue 32's target: with
``--hang-rate 0.1`` a run takes at most 3x the fault-free time, and at 30% errors the tables
equal the fault-free ones.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
CASES: dict[str, list[str]] = {
    "clean": [],
    "hang10": ["--hang-rate", "0.1"],
    "error30": ["--error-rate", "0.3"],
    "mixed30": ["--error-rate", "0.1", "--malformed-rate", "0.1", "--hang-rate", "0.1"],
    "hang100": ["--hang-rate", "1.0"],
}
TABLES = {
    "run": "SELECT step, persona_id, kind, text FROM emissions ORDER BY ALL",
    "synth": "SELECT persona_id, content, is_duplicate FROM synth_items ORDER BY ALL",
}


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAHUB_")}
    return {**clean, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def serve(flags: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "personahub", "serve", "--port", "0",
                             *flags], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        if found:
            return proc, found.group(1)
    raise SystemExit("serve did not start")


def command(job: str, args: argparse.Namespace, url: str, db: Path) -> list[str]:
    common = ["--db", str(db), "--llm", url, "--timeout", str(args.timeout)]
    if job == "run":
        return ["run", str(ROOT / args.scenario), *common]
    return ["synthesize", "instruction", "--n", str(args.n), *common]


def tables(db: Path, job: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(TABLES[job]).fetchall()
    finally:
        con.close()


def calls(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT status, count(*) FROM llm_calls GROUP BY 1 ORDER BY 1")
                    .fetchall())
    finally:
        con.close()


def one(job: str, case: str, args: argparse.Namespace, folder: Path) -> tuple[float, int, Path, str]:
    proc, url = serve(CASES[case])
    db = folder / f"{job}-{case}-{time.monotonic_ns()}.duckdb"
    try:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "personahub", *command(job, args, url, db)],
                              cwd=ROOT, env=env(), capture_output=True, text=True,
                              timeout=args.limit)
        wall = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or [""]
    return wall, done.returncode, db, last[0][:160]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["clean", "hang10", "error30", "mixed30"],
                        choices=list(CASES))
    parser.add_argument("--jobs", nargs="+", default=["run", "synth"], choices=list(TABLES))
    parser.add_argument("--timeout", type=float, default=60.0, help="the jobs' --timeout")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--scenario", default="scenarios/riverside_town.py")
    parser.add_argument("--n", type=int, default=400, help="synthesize --n")
    parser.add_argument("--limit", type=float, default=1800, help="seconds before a job is killed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for job in args.jobs:
            clean_wall: float | None = None
            clean_rows: list[tuple] | None = None
            for case in args.cases:
                for _ in range(args.repeat):
                    wall, code, db, last = one(job, case, args, folder)
                    rows = tables(db, job) if db.exists() else []
                    if case == "clean" and clean_rows is None:
                        clean_wall, clean_rows = wall, rows
                    ratio = f"{wall / clean_wall:5.1f}x" if clean_wall else "    -"
                    same = "-" if clean_rows is None or case == "clean" else \
                        ("equal" if rows == clean_rows else f"DIFFER ({len(rows)} vs {len(clean_rows)})")
                    print(f"{job:5} {case:8} {wall:7.1f} s {ratio} rc={code} calls="
                          f"{calls(db) if db.exists() else {}} tables: {same}", flush=True)
                    if code:
                        print(f"      {last}", flush=True)


if __name__ == "__main__":
    main()
