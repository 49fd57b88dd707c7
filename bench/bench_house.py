"""Behaviour before and after a refactoring, in one run: the tables of a full offline workflow and
the benchmarks of the offline engine, the model path and the end-to-end run.

Issue 43 moved modules and declarations without meaning to change behaviour. This checks it: it
checks out two revisions (``--before``, ``--after``) as temporary git worktrees, runs the same
workflow with each (import, from-text, expand, dedup, four synthesis tasks, two runs, a judge, an
interview, a calibration) into its own database, and compares every table row for row, leaving out
what differs between any two runs (times, latencies, hosts). Differences a later issue made on
purpose are named by ``INTENDED`` and mapped before the comparison, each with the reason.
Then it runs the three benchmarks alternately for both revisions and prints the ratios.

Usage: python bench/bench_house.py [--before REV] [--after REV] [--no-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
# columns whose values differ between any two runs of the same workflow
VOLATILE = re.compile(r".*(_at|_ms|_s|latency.*|elapsed.*|duration.*|host|pid|_seconds|"
                      r"_path|cache_n)|survey|path|db|source_file")
# ids hashed from a job's id (which holds its start time): left out; the job ids themselves are
# replaced by their order of start (J1, J2, ...) wherever they appear, so what refers to which
# job is still compared
# the workflow's folder as a path names it (also in databases compared later with --compare)
RUN_FOLDER = re.compile(r"/[^\s\"']*/(before|after)_run")
HASHED_IDS = {"call_id", "item_id", "judge_id", "interview_id"}
PERSONAS = [
    "A retired nurse who volunteers at the community garden and reads mystery novels.",
    "A high-school physics teacher who coaches the robotics club on weekends.",
    "A long-haul truck driver who listens to history podcasts between cities.",
    "A pastry chef who runs a small bakery and experiments with sourdough.",
    "A software tester who plays chess online and collects vinyl records.",
    "A wildlife biologist who counts migrating birds along the coast every spring.",
    "A city bus mechanic who restores old motorcycles in a rented garage.",
    "A primary-school librarian who writes picture books about local animals.",
]
SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="house", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=2), steps=3,
                    tasks=("npc_dialogue", "instruction", "tool_spec"), seed={seed})
"""
SURVEY_ROWS = [
    ("SAFE", "How safe is your street at night?", ["Very safe", "Somewhat safe", "Not safe"],
     {("sex", "female"): [30, 50, 20], ("sex", "male"): [45, 40, 15],
      ("party", "democrat"): [20, 50, 30], ("party", "republican"): [55, 35, 10]}),
    ("WHY", "Why do you own a bicycle?", ["Exercise", "Commuting", "Fun"],
     {("sex", "female"): [5, 3, 2], ("sex", "male"): [2, 6, 2],
      ("party", "democrat"): [4, 4, 2], ("party", "republican"): [3, 5, 2]}),
]
MARGINALS = "attribute,value,share\nsex,female,0.5\nsex,male,0.5\nparty,democrat,0.5\n" \
            "party,republican,0.5\n"

# Mapped before comparing: (what, why). Each is a change an issue made on purpose.
INTENDED = {
    "llm_calls.model -> llm": "issue 44: the engine label column is named as in runs and jobs",
    "personas.source of seed rows -> seed": "issue 44: one source name however a file was read",
    "llm_calls.run_id of non-run jobs -> NULL": "issue 44: run_id holds a scenario run's id only",
    "synthesis task tool -> tool_spec": "issue 44: one name for the tool kind",
    "a calibration's stored elicit ['sample'] -> absent": "issue 45: --elicit, whose default "
                                                          "is the one way asked before",
    "emissions/judgments/rejected.kind -> task, a judge's stored kind -> task":
        "issue 61: the output kind has one name, task, as synth_items.task",
    "llm_batches -> provider_batches, llm_calls.batch_id -> provider_batch_id, "
    "prices.batch_price_in/out -> provider_batch_price_in/out, a stored config's batch, "
    "batch_file, batch_window, batch_fallback, batch_poll_s -> provider_batch...":
        "issue 61: batch is the commit unit; the provider's Batch API is the provider batch",
}
# columns renamed on purpose, per table (before's name -> after's); INTENDED names each
RENAMED = {"llm_calls": {"model": "llm", "batch_id": "provider_batch_id"},
           "emissions": {"kind": "task"}, "judgments": {"kind": "task"},
           "rejected": {"kind": "task"},
           "prices": {"batch_price_in": "provider_batch_price_in",
                      "batch_price_out": "provider_batch_price_out"}}
# tables renamed on purpose (before's name -> after's); INTENDED names each
RENAMED_TABLES = {"llm_batches": "provider_batches"}
# stored config keys renamed on purpose (before's name -> after's); INTENDED names each
RENAMED_CONFIG = {"batch": "provider_batch", "batch_file": "provider_batch_file",
                  "batch_window": "provider_batch_window",
                  "batch_fallback": "provider_batch_fallback",
                  "batch_poll_s": "provider_batch_poll_s"}
# Left out of the comparison, each with the reason: what later issues added on purpose.
ADDED = {
    "schema_meta": "the schema's version and digests change with every change of schema.sql",
    "eval_answers": "issue 46 (evaluate)", "eval_contamination": "issue 46 (evaluate)",
    "eval_splits": "issue 46 (evaluate)", "eval_verified": "issue 46 (evaluate)",
    "experiments": "issue 47 (experiments)",
    "calibration_scores.sd_ratio": "issue 45 (dispersion as SD ratio)",
    "calibration_summary.sd_ratio": "issue 45 (dispersion as SD ratio)",
}
# Rows later issues added on purpose: table -> (column, values, why)
ADDED_ROWS = {
    table: ("source", {"human_resample", "perfect_panel", "human_overall_panel"},
            "issue 45: the floor, the ceiling and human_overall at the panel's size")
    for table in ("calibration_scores", "calibration_summary")}


def fixtures(folder: Path) -> dict[str, Path]:
    """The workflow's input files, made here."""
    people = folder / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in PERSONAS))
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(f"Notes {i}: how to repair a bicycle chain, oil it and check "
                                  f"its wear on day {i}." for i in range(6)) + "\n")
    for seed in (1, 2):
        (folder / f"house{seed}.py").write_text(SCENARIO.replace("{seed}", str(seed)))
    survey = folder / "survey.csv"
    lines = ["question_id,question,options,ordinal,attribute,group,option,count"]
    for qid, text, options, counts in SURVEY_ROWS:
        for (attribute, group), vector in counts.items():
            for option, count in zip(options, vector, strict=True):
                lines.append(f'{qid},"{text}","{" | ".join(options)}",,{attribute},{group},'
                             f"{option},{count}")
    survey.write_text("\n".join(lines) + "\n")
    marginals = folder / "marginals.csv"
    marginals.write_text(MARGINALS)
    return {"people": people, "corpus": corpus, "survey": survey, "marginals": marginals}


def personahub(tree: Path, folder: Path, *args: object) -> str:
    """Run ``personahub ARGS`` from ``tree``'s source in ``folder``; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "personahub", "-q", *map(str, args)], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{tree.name}: personahub {' '.join(map(str, args))} exited "
                         f"{done.returncode}: {done.stderr.strip()[-400:]}")
    return done.stdout


def one(db: Path, sql: str) -> str:
    with duckdb.connect(str(db), read_only=True) as con:
        return str(con.execute(sql).fetchone()[0])


def workflow(tree: Path, folder: Path) -> Path:
    """The full offline workflow with ``tree``'s code; the database it wrote."""
    files = fixtures(folder)
    db = folder / "house.duckdb"
    ph: Callable[..., str] = lambda *a: personahub(tree, folder, *a, "--db", db)  # noqa: E731
    ph("personas", "import", files["people"])
    ph("personas", "from-text", files["corpus"], "--relations", "read,like")
    ph("personas", "expand", "--hops", 2, "--fanout", 2)
    ph("personas", "dedup")
    for task in ("math_problem", "instruction", "npc", "tool_spec"):
        ph("synthesize", task, "--n", 6)
    ph("run", folder / "house1.py")
    ph("run", folder / "house2.py")
    job = one(db, "SELECT job_id FROM jobs WHERE kind = 'synthesis' ORDER BY started_at LIMIT 1")
    ph("judge", "--job", job)
    run = one(db, "SELECT job_id FROM jobs WHERE kind = 'run' ORDER BY started_at LIMIT 1")
    ph("interview", "--run", run, "--carve", "hop=0", "What did you notice this week?")
    out = personahub(tree, folder, "personas", "sample-population", "--marginals",
                     files["marginals"], "--n", 40, "--seed", 3, "--db", db)
    population = out.split()[1].rstrip(":")
    ph("calibrate", files["survey"], "--population", population, "--n", 5, "--seed", 2)
    return db


def table_rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every base table's rows, without volatile columns, sorted; intended changes mapped."""
    found: dict[str, list[tuple[object, ...]]] = {}
    with duckdb.connect(str(db), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT job_id FROM jobs ORDER BY started_at").fetchall()]
        named = {job: f"J{i}" for i, job in enumerate(ids, 1)}
        named[str(db.parent)] = "<folder>"
        pattern = re.compile("|".join(re.escape(j) for j in sorted(named, key=len, reverse=True)))
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema = 'main' ORDER BY 1").fetchall()]
        for table in (t for t in tables if t not in ADDED):
            columns = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "AND table_schema = 'main' ORDER BY ordinal_position", [table]).fetchall()]
            rename = RENAMED.get(table, {})
            kept = [c for c in columns if not VOLATILE.fullmatch(c) and c not in HASHED_IDS
                    and f"{table}.{c}" not in ADDED]
            if not kept:
                continue
            select = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{rename.get(c, c)}"' for c in kept)
            frame = con.execute(f'SELECT {select} FROM "{table}"').fetch_df()
            frame = _intended(table, frame, con)
            if table in ADDED_ROWS and ADDED_ROWS[table][0] in frame:
                column, values, _ = ADDED_ROWS[table]
                frame = frame[~frame[column].isin(values)]
            frame = frame[sorted(frame.columns)].map(
                lambda v: RUN_FOLDER.sub("<folder>", pattern.sub(lambda m: named[m.group(0)], v))
                if isinstance(v, str) else v)
            name = RENAMED_TABLES.get(table, table)
            found[name] = sorted(tuple("" if v is None else str(v) for v in row)
                                 for row in frame.itertuples(index=False))
            found[name].insert(0, tuple(frame.columns))
    return found


def _intended(table: str, frame, con):  # type: ignore[no-untyped-def]
    """Map the changes ``INTENDED`` names onto a frame of ``table``."""
    frame = frame.replace({"tool": "tool_spec"})
    if table == "personas" and "source" in frame:
        frame["source"] = frame["source"].where(frame["hop"].astype(str) != "0", "seed") \
            if "hop" in frame else frame["source"]
    if table == "jobs" and "config" in frame:
        frame["config"] = [_provider_batch_keys(_without_default_elicit(c))
                           for c in frame["config"]]
        if "kind" in frame:
            frame["config"] = [_kind_as_task(c) if k == "judge" else c
                               for k, c in zip(frame["kind"], frame["config"], strict=True)]
    if table == "judgments" and "config" in frame:
        frame["config"] = [_kind_as_task(c) for c in frame["config"]]
    if table == "llm_calls" and "run_id" in frame:
        runs = {r[0] for r in con.execute("SELECT job_id FROM jobs WHERE kind = 'run'").fetchall()}
        frame["run_id"] = frame["run_id"].where(frame["run_id"].isin(runs), None)
    return frame


def _kind_as_task(config: str | None) -> str | None:
    """A judge's stored settings with the output kind under its new name (``task``)."""
    if not config:
        return config
    data = json.loads(config)
    if "kind" in data:
        data["task"] = data.pop("kind")
    return json.dumps(data, sort_keys=True)


def _provider_batch_keys(config: str | None) -> str | None:
    """A stored config with the provider batch settings under their new names."""
    if not config:
        return config
    data = json.loads(config)
    for old, new in RENAMED_CONFIG.items():
        if old in data:
            data[new] = data.pop(old)
    return json.dumps(data, sort_keys=True)


def _without_default_elicit(config: str | None) -> str | None:
    """A stored config without ``elicit`` when it holds the default ``["sample"]``."""
    if not config:
        return config
    data = json.loads(config)
    if data.get("elicit") == ["sample"]:
        del data["elicit"]
    return json.dumps(data, sort_keys=True)


def compare(before: dict[str, list[tuple[object, ...]]],
            after: dict[str, list[tuple[object, ...]]]) -> list[str]:
    """Lines naming each table that differs (columns or rows)."""
    lines = []
    for table in sorted(set(before) | set(after)):
        if table not in before or table not in after:
            lines.append(f"{table}: only {'after' if table in after else 'before'}")
            continue
        b, a = before[table], after[table]
        if b[0] != a[0]:
            lines.append(f"{table}: columns differ: -{sorted(set(b[0]) - set(a[0]))} "
                         f"+{sorted(set(a[0]) - set(b[0]))}")
        elif b != a:
            columns = [c for i, c in enumerate(b[0])
                       if sorted(r[i] for r in b[1:]) != sorted(r[i] for r in a[1:])]
            lines.append(f"{table}: {len(set(b) ^ set(a))} rows differ of {len(b) - 1}/"
                         f"{len(a) - 1}; columns whose values differ: {columns}")
    return lines


def bench(tree: Path, script: str, args: list[str]) -> str:
    """A benchmark of ``tree`` run with ``tree``'s code; its output's last lines."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(tree / "bench" / script), *args], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=3600)
    return (done.stdout + done.stderr).strip()


def seconds(tree: Path, argv: list[str], folder: Path) -> float:
    start = time.perf_counter()
    personahub(tree, folder, *argv)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="45fede0")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--no-bench", action="store_true", help="The tables only.")
    parser.add_argument("--no-tables", action="store_true", help="The benchmarks only.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="e2e,loopback,offline",
                        help="Benchmarks to run, comma-separated (default: all three).")
    parser.add_argument("--keep", type=Path, help="Copy the two databases into this folder.")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE_DB", "AFTER_DB"),
                        help="Only compare two databases the workflow wrote (with --keep).")
    options = parser.parse_args()
    if options.compare:
        differ = compare(*(table_rows(db) for db in options.compare))
        print("tables equal" if not differ else "tables differ:\n  " + "\n  ".join(differ))
        return
    with tempfile.TemporaryDirectory(prefix="bench_house_") as tmp:
        trees = {}
        for name in ("before", "after"):
            trees[name] = Path(tmp) / name
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                            str(trees[name]), getattr(options, name)], check=True)
        try:
            tables = {}
            for name, tree in ([] if options.no_tables else trees.items()):
                folder = Path(tmp) / f"{name}_run"
                folder.mkdir()
                start = time.perf_counter()
                db = workflow(tree, folder)
                tables[name] = table_rows(db)
                if options.keep:
                    options.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(db, options.keep / f"{name}.duckdb")
                print(f"workflow {name} ({getattr(options, name)}): {len(tables[name])} tables, "
                      f"{sum(len(r) - 1 for r in tables[name].values())} rows, "
                      f"{time.perf_counter() - start:.1f} s")
            differ = compare(tables["before"], tables["after"]) if tables else []
            print("mapped as intended:", "; ".join(f"{k} ({v})" for k, v in INTENDED.items()))
            print("left out as added:", "; ".join(f"{k} ({v})" for k, v in ADDED.items()))
            print("rows left out as added:", "; ".join(
                f"{t}.{c} in {sorted(v)} ({why})" for t, (c, v, why) in ADDED_ROWS.items()))
            if tables:
                print("tables equal" if not differ else
                      "tables differ:\n  " + "\n  ".join(differ))
            if not options.no_bench:
                run_benches(trees, Path(tmp), options.repeats, options.cases.split(","))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)


def run_benches(trees: dict[str, Path], tmp: Path, repeats: int, chosen: list[str]) -> None:
    """The end-to-end offline run, the offline engine and the model path (through the loopback
    server), alternately before and after; medians and the after/before ratio."""
    cases = {
        "e2e": lambda tree, folder: seconds(
            tree, ["run", folder / "house1.py", "--db", folder / f"e2e{time.time_ns()}.duckdb"],
            folder),
        "loopback": lambda tree, folder: _loopback(tree, folder),
        "offline": lambda tree, folder: _offline(tree, folder),
    }
    labels = {"e2e": "end-to-end offline run of 3 steps (s)",
              "loopback": "synthesize 40 through the loopback server (s)",
              "offline": "synthesize 200 with the offline engine (s)"}
    for chosen_case in chosen:
        label, case = labels[chosen_case], cases[chosen_case]
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(repeats):
            for name, tree in trees.items():
                folder = tmp / f"bench_{name}"
                if not folder.exists():
                    folder.mkdir()
                    fixtures(folder)
                    personahub(tree, folder, "personas", "import", folder / "people.jsonl",
                               "--db", folder / "people.duckdb")
                times[name].append(case(tree, folder))
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        print(f"{label}: before {med['before']:.2f}  after {med['after']:.2f}  "
              f"ratio after/before {med['after'] / med['before']:.2f}")


def _offline(tree: Path, folder: Path) -> float:
    """Seconds to synthesize 200 items (8 personas x 25) with the offline engine."""
    db = folder / f"s{time.time_ns()}.duckdb"
    personahub(tree, folder, "personas", "import", folder / "people.jsonl", "--db", db)
    return seconds(tree, ["synthesize", "instruction", "--n", 8, "--per-persona", 25, "--db", db],
                   folder)


def _loopback(tree: Path, folder: Path) -> float:
    """Seconds to synthesize 40 items through ``tree``'s loopback server (its own process)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "personahub", "serve", "--port", "0"],
                              cwd=folder, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        url = None
        for line in server.stdout:
            found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            raise SystemExit(f"{tree.name}: the loopback server printed no URL")
        db = folder / f"l{time.time_ns()}.duckdb"
        personahub(tree, folder, "personas", "import", folder / "people.jsonl", "--db", db)
        return seconds(tree, ["synthesize", "instruction", "--n", 8, "--per-persona", 5,
                              "--llm", url, "--db", db], folder)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
