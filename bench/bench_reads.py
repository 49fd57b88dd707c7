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
With ``--baseline OTHER_CHECKOUT`` each tree builds its own databases and the two trees' reads
are timed alternately, repeat by repeat, and each command's ratio (the tree's median over the
baseline's) is printed: both measured in the same run, under the same load.

    python bench/bench_reads.py --tree /path/to/checkout [--baseline /path/to/older] \
        [--sizes 1000,10000] [--repeats 3]
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
        cases["sql v_items"] = ("sql", "SELECT source, task, count(*) AS n, sum(length(text)) AS chars "
                                "FROM v_items GROUP BY ALL ORDER BY ALL", "--format", "csv", *d)
    else:
        cases["sql v_items"] = None
    return cases


def describe(cli: Cli, tree: Path) -> str:
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip() or "?"
    print(f"tree {tree} (commit {head}); {cli('--version').strip()}")
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="checkout whose code is measured")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="an older checkout timed alternately with --tree, for ratios")
    parser.add_argument("--sizes", default="1000,10000",
                        help="personas and items per database, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None,
                        help="folder for the databases (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="leave the scratch folder")
    args = parser.parse_args()
    trees = [args.tree.resolve()] + ([args.baseline.resolve()] if args.baseline else [])
    for tree in trees:
        if not (tree / "personahub" / "__init__.py").is_file():
            raise SystemExit(f"{tree}: no personahub package there")
    folder = Path(tempfile.mkdtemp(prefix="bench-reads-", dir=args.scratch))
    clis = []
    for i, tree in enumerate(trees):
        (folder / str(i)).mkdir()
        clis.append(Cli(tree, folder / str(i)))
    heads = [describe(cli, tree) for cli, tree in zip(clis, trees, strict=True)]
    print(f"python {sys.version.split()[0]}; scratch {folder}; sizes {args.sizes}; "
          f"repeats {args.repeats}")
    # (n, command) -> one list of seconds per tree
    times: dict[tuple[int, str], list[list[float] | None]] = {}
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            cases = []
            for cli, tree in zip(clis, trees, strict=True):
                db, job_id, run_id, item_id, spent = build(cli, cli.cwd, n, tree)
                print(f"n={n} {tree.name}: built in "
                      + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items()))
                out = cli.cwd / f"out-{n}"
                out.mkdir()
                cases.append(reads(cli, db, job_id, run_id, item_id, out))
            for name in cases[0]:
                times[(n, name)] = [None if c[name] is None else [] for c in cases]
            for _ in range(args.repeats):  # the trees alternate, repeat by repeat
                for name in cases[0]:
                    for i, (cli, c) in enumerate(zip(clis, cases, strict=True)):
                        argv = c[name]
                        slot = times[(n, name)][i]
                        if argv is not None and slot is not None:
                            slot.append(cli.timed(*argv))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    header = f"{'n':>7}  {'command':<28} {'min s':>8} {'median s':>9}"
    if len(trees) == 2:
        header += f" {'baseline median s':>18} {'ratio':>6}"
    print(header)
    sums = [0.0] * len(trees)
    for (n, name), per_tree in times.items():
        meds = [None if t is None else statistics.median(t) for t in per_tree]
        line = f"{n:>7}  {name:<28} "
        line += (f"{'n/a':>8} {'n/a':>9}" if per_tree[0] is None else
                 f"{min(per_tree[0]):>8.3f} {meds[0]:>9.3f}")
        if len(trees) == 2:
            base, mine = meds[1], meds[0]
            line += f" {'n/a' if base is None else f'{base:.3f}':>18}"
            line += f" {'' if base is None or mine is None else f'{mine / base:.2f}':>6}"
        print(line)
        if name != "sql v_items" and all(m is not None for m in meds):
            for i, m in enumerate(meds):
                sums[i] += m or 0.0
    result = f"RESULT tree={heads[0]} sum_of_medians_s={sums[0]:.2f}"
    if len(trees) == 2:
        result += f" baseline={heads[1]} baseline_s={sums[1]:.2f} ratio={sums[0] / sums[1]:.2f}"
    print(result + " (without sql v_items)")


if __name__ == "__main__":
    main()
