"""Read-path latency of the CLI: exports, reports and listings over one offline database per size.

Issue 27 moved these reads into the analysis views (``v_items``, ``v_runs``, ``v_synth_jobs``,
...) and into each table family's owner module (``personas/store``, ``core/call_log``,
``sim/run_queries``, ...). This bench times the commands a user runs to read what a job or a run
wrote, as whole CLI invocations (interpreter start and imports included, as a user pays them),
so two trees can be compared: run it once per tree, interleaved.

For each ``--sizes`` N it builds a database in a scratch folder, offline: ``personas import`` of N
generated persona lines, ``synthesize instruction --n N`` and ``run scenarios/riverside_town.py
--steps 2`` (the scenario draws its own 120 shipped personas, so the run is the same size at every
N). Then it times each read ``--repeats`` times and prints the minimum and median seconds:
``export --format chat`` and ``--format personahub`` of the synthesis job, ``report`` of the run
and ``report --job`` of the job, ``runs``, ``jobs --json``, ``show`` of one item, and ``sql`` over
``v_synth_jobs`` (a view both trees have) and over ``v_items`` (only where the tree's database has
that view; issue 27 added it, so an older tree prints ``n/a``).

The CLI runs as ``sys.executable -m personahub`` with ``PYTHONPATH`` set to ``--tree`` (the
checkout whose code is measured) and the scratch folder as working directory; the rest of the
environment is inherited. Only commands and options present before and after issue 27 are used.

    python bench/bench_reads.py --tree /path/to/checkout [--sizes 1000,10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOBS = ("nurse", "ferry skipper", "carpenter", "data analyst", "beekeeper", "school librarian",
        "bus driver", "violinist", "pharmacist", "plumber", "translator", "chef", "geologist",
        "tax adviser", "florist", "paramedic", "surveyor", "potter", "archivist", "welder")
CITIES = ("Lisbon", "Oslo", "Porto", "Leeds", "Lyon", "Turin", "Ghent", "Bergen", "Cork", "Graz",
          "Malmo", "Utrecht", "Kraków", "Seville", "Tartu", "Basel", "Bilbao", "Brno", "Riga", "Split")
HOBBIES = ("chess", "birdwatching", "sourdough baking", "rock climbing", "old maps", "jazz piano",
           "allotment gardening", "trail running", "film photography", "model trains", "sailing",
           "crossword puzzles", "pottery", "astronomy", "local history", "cycling", "knitting",
           "board games", "wild swimming", "calligraphy")


def persona_lines(n: int) -> list[str]:
    """N distinct persona lines, deterministic."""
    lines = []
    for i in range(n):
        job = JOBS[i % len(JOBS)]
        city = CITIES[(i // len(JOBS)) % len(CITIES)]
        hobby = HOBBIES[(i // (len(JOBS) * len(CITIES))) % len(HOBBIES)]
        age = 20 + (i * 7) % 55
        text = (f"A {job} from {city} aged {age} who loves {hobby} and keeps a notebook "
                f"of small projects, number {i}.")
        lines.append(json.dumps({"persona": text}))
    return lines


class Cli:
    def __init__(self, tree: Path, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONPATH": str(tree)}
        self.env.pop("PERSONAHUB_DB", None)

    def __call__(self, *args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "personahub", *args], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"personahub {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc.stdout

    def ok(self, *args: str) -> bool:
        proc = subprocess.run([sys.executable, "-m", "personahub", *args], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, check=False)
        return proc.returncode == 0

    def timed(self, *args: str) -> float:
        start = time.perf_counter()
        self(*args)
        return time.perf_counter() - start


def build(cli: Cli, folder: Path, n: int, tree: Path) -> tuple[Path, str, str, str, dict]:
    """Build one database of size n; returns (db, job_id, run_id, item_id, build seconds)."""
    db = folder / f"reads-{n}.duckdb"
    source = folder / f"personas-{n}.jsonl"
    source.write_text("\n".join(persona_lines(n)) + "\n", encoding="utf-8")
    spent = {}
    spent["import"] = cli.timed("personas", "import", str(source), "--db", str(db), "-q")
    start = time.perf_counter()
    out = cli("synthesize", "instruction", "--n", str(n), "--db", str(db), "--json", "--preview", "0",
              "-q")
    spent["synthesize"] = time.perf_counter() - start
    job_id = json.loads(out)["job_id"]
    start = time.perf_counter()
    out = cli("run", str(tree / "scenarios" / "riverside_town.py"), "--steps", "2", "--db", str(db),
              "--json", "--preview", "0", "-q")
    spent["run"] = time.perf_counter() - start
    run_id = json.loads(out)["run_id"]
    item_id = cli("sql", "SELECT min(item_id) FROM synth_items", "--db", str(db), "--scalar",
                  "-q").strip()
    return db, job_id, run_id, item_id, spent


def reads(cli: Cli, db: Path, job_id: str, run_id: str, item_id: str, out: Path) -> dict:
    d = ("--db", str(db), "-q")
    cases = {
        "export --format chat": ("export", "--job", job_id, "--format", "chat",
                                 "--out", str(out / "job.chat.jsonl"), "--force", *d),
        "export --format personahub": ("export", "--job", job_id, "--format", "personahub",
                                       "--out", str(out / "job.personahub.jsonl"), "--force", *d),
        "report (run)": ("report", "--run", run_id, "--out", str(out / "report-run"), "--force", *d),
        "report --job": ("report", "--job", job_id, "--out", str(out / "report-job"), "--force", *d),
        "runs": ("runs", *d),
        "jobs --json": ("jobs", "--json", *d),
        "show ITEM": ("show", item_id, *d),
        "sql v_synth_jobs": ("sql", "SELECT * FROM v_synth_jobs", "--format", "csv", *d),
    }
    if cli.ok("sql", "SELECT count(*) FROM v_items", "--scalar", *d):
        cases["sql v_items"] = ("sql", "SELECT source, kind, count(*) AS n, sum(length(text)) AS chars "
                                "FROM v_items GROUP BY ALL ORDER BY ALL", "--format", "csv", *d)
    else:
        cases["sql v_items"] = None
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="checkout whose code is measured")
    parser.add_argument("--sizes", default="1000,10000",
                        help="personas and items per database, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None,
                        help="folder for the databases (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="leave the scratch folder")
    args = parser.parse_args()
    tree = args.tree.resolve()
    if not (tree / "personahub" / "__init__.py").is_file():
        raise SystemExit(f"--tree {tree}: no personahub package there")
    folder = Path(tempfile.mkdtemp(prefix="bench-reads-", dir=args.scratch))
    cli = Cli(tree, folder)
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip() or "?"
    print(f"tree {tree} (commit {head}); {cli('--version').strip()}; python {sys.version.split()[0]}")
    print(f"scratch {folder}; sizes {args.sizes}; repeats {args.repeats}")
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            db, job_id, run_id, item_id, spent = build(cli, folder, n, tree)
            print(f"n={n}: built in " + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items())
                  + f" (job {job_id}, run {run_id}, item {item_id})")
            out = folder / f"out-{n}"
            out.mkdir()
            for name, argv in reads(cli, db, job_id, run_id, item_id, out).items():
                if argv is None:
                    rows.append((n, name, None, None))
                    continue
                times = [cli.timed(*argv) for _ in range(args.repeats)]
                rows.append((n, name, min(times), statistics.median(times)))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(f"{'n':>7}  {'command':<28} {'min s':>8} {'median s':>9}")
    for n, name, low, mid in rows:
        if low is None:
            print(f"{n:>7}  {name:<28} {'n/a':>8} {'n/a':>9}  (no v_items in this tree's database)")
        else:
            print(f"{n:>7}  {name:<28} {low:>8.3f} {mid:>9.3f}")
    total = sum(mid for _, name, _, mid in rows if mid is not None and name != "sql v_items")
    print(f"RESULT tree={head} sum_of_medians_s={total:.2f} (without sql v_items)")


if __name__ == "__main__":
    main()
