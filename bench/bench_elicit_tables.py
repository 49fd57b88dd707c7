"""Compare two revisions' calibration tables and console on an OpinionQA-format wave, every
elicitation method at once.

A refactoring of how calibration elicits answers must leave what it stores and prints unchanged.
This checks out ``--before`` and ``--after`` as temporary git worktrees, writes a self-made
OpinionQA wave (info.csv and <ATTRIBUTE>_data.json, invented counts) and a seeded population,
and runs with each revision's code, offline, two calibrations: every method, both sample
steerings, ``--dispersion temper`` and ``--archetypes 3``; then the group-level methods before
``sample``, in another order. Every table is compared row for row (``bench_house.table_rows``:
job ids by order of start, times left out) and the console output line for line.

Usage: python bench/bench_elicit_tables.py --before REV [--after REV | --after-tree PATH]
       [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_house import ROOT, compare, personahub, table_rows  # noqa: E402

# question -> (text, options, ordinal positions of the substantive options)
QUESTIONS = {
    "SAFE_W9": ("How safe is your street at night?",
                ["Very safe", "Somewhat safe", "Not too safe", "Not at all safe", "Refused"],
                [1.0, 2.0, 3.0, 4.0]),
    "WORLD_W9": ("Compared to 50 years ago, is the world",
                 ["Safer", "More dangerous", "Neither", "Refused"], [1.0, 2.0, 1.5]),
    "WHY_W9": ("Why do you own a bicycle?", ["Exercise", "Commuting", "Fun", "Refused"],
               [1.0, 1.0, 1.0]),
    "TRUST_W9": ("How much do you trust your neighbours?",
                 ["A lot", "Some", "Not much", "Not at all", "Refused"], [1.0, 2.0, 3.0, 4.0]),
    "NEWS_W9": ("Where do you get most of your news?",
                ["Television", "Websites", "Radio", "Print", "Refused"], [1.0, 1.0, 1.0, 1.0]),
    "JOBS_W9": ("Will there be more jobs in your town in five years?",
                ["More", "Fewer", "About the same", "Refused"], [1.0, 3.0, 2.0]),
    "PARK_W9": ("How often do you visit a park?",
                ["Weekly", "Monthly", "Rarely", "Never", "Refused"], [1.0, 2.0, 3.0, 4.0]),
    "TAX_W9": ("Should the town raise taxes to fix the roads?", ["Yes", "No", "Refused"],
               [1.0, 2.0]),
}
GROUPS = {"SEX": ("Female", "Male"), "POLPARTY": ("Democrat", "Republican")}
MARGINALS = ("attribute,value,share\nsex,female,0.5\nsex,male,0.5\nparty,democrat,0.5\n"
             "party,republican,0.5\n")
CALIBRATIONS = (
    ("--elicit", "sample", "--elicit", "distribution", "--elicit", "distribution:panel",
     "--elicit", "few-shot:2", "--elicit", "logprobs", "--steering", "persona", "--steering",
     "attributes", "--dispersion", "temper", "--archetypes", "3", "--n", "5", "--no-persona-n",
     "2", "--seed", "4"),
    ("--elicit", "few-shot:1", "--elicit", "distribution", "--elicit", "sample", "--n", "4",
     "--no-persona-n", "1", "--seed", "1"),
)
JOB_ID = re.compile(r"calib-[0-9a-z-]+")
# tables a reader returns in stored order (ORDER BY rowid): compared in that order too
ORDERED = ("calibration_scores", "calibration_summary")


def write_wave(folder: Path) -> Path:
    """A self-made OpinionQA wave folder: info.csv and one data file per attribute."""
    wave = folder / "wave"
    wave.mkdir()
    lines = [",key,question,references,option_ordinal"]
    for i, (qid, (text, options, ordinal)) in enumerate(QUESTIONS.items()):
        lines.append(f'{i},{qid},"{text}","{options!r}","{ordinal!r}"')
    (wave / "info.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for attribute, labels in GROUPS.items():
        data = {}
        for q, (qid, (text, options, _)) in enumerate(QUESTIONS.items()):
            entry: dict[str, object] = {"MC_options": options, "question_text": text}
            for g, label in enumerate(labels):
                entry[label] = {o: float(5 + (7 * q + 11 * g + 3 * k + len(attribute)) % 23)
                                for k, o in enumerate(options)}
            data[qid] = entry
        (wave / f"{attribute}_data.json").write_text(json.dumps(data), encoding="utf-8")
    return wave


def workflow(tree: Path, folder: Path) -> tuple[Path, list[str]]:
    """The population and both calibrations with ``tree``'s code; the database and the console."""
    wave = write_wave(folder)
    marginals = folder / "marginals.csv"
    marginals.write_text(MARGINALS, encoding="utf-8")
    db = folder / "elicit.duckdb"
    out = personahub(tree, folder, "personas", "sample-population", "--marginals", marginals,
                     "--n", 60, "--seed", 3, "--db", db)
    population = out.split()[1].rstrip(":")
    console = []
    for flags in CALIBRATIONS:
        printed = personahub(tree, folder, "calibrate", wave, "--population", population,
                             *flags, "--db", db)
        console += [JOB_ID.sub("<job>", line).replace(str(folder), "<folder>")
                    for line in printed.splitlines()]
    return db, console


def stored_order(db: Path) -> dict[str, list[tuple[str, ...]]]:
    """The ORDERED tables' rows in stored order, each job id replaced by its order of start."""
    with duckdb.connect(str(db), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT job_id FROM jobs ORDER BY started_at").fetchall()]
        named = {job: f"J{i}" for i, job in enumerate(ids, 1)}
        return {table: [tuple(named.get(str(v), str(v)) for v in row) for row in con.execute(
            f"SELECT * FROM {table} ORDER BY rowid").fetchall()] for table in ORDERED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--after-tree", type=Path,
                        help="Use this checkout as it is (uncommitted changes too) for after.")
    parser.add_argument("--keep", type=Path, help="Copy the two databases into this folder.")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_elicit_") as tmp:
        trees, made = {}, []
        for name in ("before", "after"):
            if name == "after" and options.after_tree:
                trees[name] = options.after_tree.resolve()
                continue
            trees[name] = Path(tmp) / name
            made.append(trees[name])
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                            str(trees[name]), getattr(options, name)], check=True)
        try:
            tables, consoles, orders = {}, {}, {}
            for name, tree in trees.items():
                folder = Path(tmp) / f"{name}_run"
                folder.mkdir()
                db, consoles[name] = workflow(tree, folder)
                tables[name] = table_rows(db)
                orders[name] = stored_order(db)
                if options.keep:
                    options.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(db, options.keep / f"{name}.duckdb")
                calibration = {t: len(r) - 1 for t, r in tables[name].items()
                               if t.startswith("calibration_")}
                revision = trees[name] if name == "after" and options.after_tree else \
                    getattr(options, name)
                print(f"{name} ({revision}): {len(tables[name])} tables, "
                      f"{sum(len(r) - 1 for r in tables[name].values())} rows; calibration rows "
                      f"{calibration}; {len(consoles[name])} console lines")
            differ = compare(tables["before"], tables["after"])
            print("tables equal" if not differ else "tables differ:\n  " + "\n  ".join(differ))
            for table in ORDERED:
                same = orders["before"][table] == orders["after"][table]
                print(f"{table} in stored order: {'equal' if same else 'DIFFERS'}")
            changed = [(b, a) for b, a in zip(consoles["before"], consoles["after"], strict=False)
                       if b != a]
            if len(consoles["before"]) != len(consoles["after"]) or changed:
                print(f"console differs ({len(consoles['before'])} / {len(consoles['after'])} "
                      "lines):")
                for b, a in changed[:10]:
                    print(f"  - {b}\n  + {a}")
            else:
                print("console equal")
        finally:
            for tree in made:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)


if __name__ == "__main__":
    main()
