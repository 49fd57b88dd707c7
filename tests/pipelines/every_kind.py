"""Every job kind as a test case, derived from its row in ``pipelines/labels.py``.

A case runs its row's sample config (a stored config of a small offline job). Its database
starts as the standard hub (``hub``: eight personas, then near-duplicates for dedup to find),
and each field of the sample that names an input (``INPUTS``: a file, a population, an earlier
job) gets one, made in the case's folder and database, in place of the sample's value. The job
runs through ``personahub.runtime.run``, what every command and job function calls, with the
config built from those values.

What a job made is the whole database but the jobs' and the calls' own tables (``snapshot``),
compared only where two uninterrupted jobs of the same config agree (``Agreement``): ids a job
draws afresh are masked, and columns that differ anyway (times, insertion order) are left out.
So no case lists the rows its kind makes.

``test_every_kind_resumes.py`` stops and resumes each kind; ``test_every_kind_on_ray.py`` runs
each on Ray; ``tests/pipelines/test_a_new_kind.py`` runs a kind of its own through both.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personahub import runtime
from personahub.core.kernel import JobResult, JobSpec, spec_for
from personahub.pipelines.labels import SHIPPED, ShippedKind
from tests._planted import planted_corpus
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import MARGINALS, make_population, write_survey

SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="every", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=2), steps=3,
                    tasks=("npc_dialogue", "instruction"), seed=4)
"""
# the answers a job kept, by purpose (a stopped job's uncommitted answers are 'discarded')
KEPT_CALLS = "SELECT purpose, count(*) FROM llm_calls WHERE status = 'ok' GROUP BY 1 ORDER BY 1"
#: tables no job makes: the jobs' and the calls' own (a stopped job's calls differ by design;
#: KEPT_CALLS compares the answers kept)
NOT_MADE = frozenset({"jobs", "schema_meta", "llm_calls", "llm_cache", "prices", "provider_batches"})


@dataclass(frozen=True)
class Kind:
    """One job kind: its row, and which batch commit a stop hits."""

    kind: str
    row: ShippedKind
    stop_at_write: int = 3  # the job's own row, one batch, then the stop


def import_people(folder: Path, db: Path, n: int = 8) -> dict[str, Any]:
    people = folder / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(n)))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    return {}


def hub(folder: Path, db: Path) -> None:
    """Eight personas, then 70 texts with planted near-duplicates (hub order: the eight first)."""
    import_people(folder, db)
    texts = planted_corpus(40, 30, length=(60, 60), kinds=("swap", "edit_block"), seed=7).texts
    near = folder / "near.jsonl"
    near.write_text("".join(json.dumps({"persona": t}) + "\n" for t in texts))
    assert invoke("personas", "import", near, "--db", db).exit_code == 0


def _scenario(folder: Path, db: Path) -> dict[str, Any]:
    from personahub.sim.scenario import load_scenario

    (folder / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(6)))
    (folder / "every.py").write_text(SCENARIO)
    return {"scenario": load_scenario(folder / "every.py")}


def _corpus(folder: Path, db: Path) -> dict[str, Any]:
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(f"Notes {i}: how to repair a bicycle chain, oil it and check "
                                  f"its wear on day {i}." for i in range(6)) + "\n")
    return {"corpus": corpus.name, "path": str(corpus)}


def _synthesized(folder: Path, db: Path) -> dict[str, Any]:
    return {"job": start(case_of("synthesis"), {}, db).job_id}


def _ran(folder: Path, db: Path) -> dict[str, Any]:
    return {"run_id": start(case_of("run"), _scenario(folder, db), db).job_id}


def _marginals(folder: Path, db: Path) -> dict[str, Any]:
    marginals = folder / "marginals.csv"
    marginals.write_text(MARGINALS, encoding="utf-8")
    return {"marginals": str(marginals)}


#: what a sample's field names, made for a case: (folder, db) -> the fields' values
INPUTS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "scenario": _scenario,  # a scenario file and its people
    "corpus": _corpus,  # a text file
    "job": _synthesized,  # a finished job of the synthesis row's sample
    "run_id": _ran,  # a finished run of the run row's sample
    "survey": lambda folder, db: {"survey": str(write_survey(folder / "survey.csv"))},
    "population": lambda folder, db: {"population": make_population(folder, db)},
    "marginals": _marginals,
}


def case_of(kind: str) -> Kind:
    return Kind(kind, SHIPPED[kind])


#: every shipped kind's case
KINDS = [case_of(kind) for kind in SHIPPED]


def spec_of(case: Kind) -> JobSpec[Any, Any, Any, Any]:
    """The case's registered spec (the shipped ones are registered on first use)."""
    spec = runtime.registered_spec(case.kind) if case.kind in SHIPPED else spec_for(case.kind)
    assert spec is not None, f"{case.kind}: not registered"
    return spec


def config_of(case: Kind, names: Mapping[str, Any], db: Path, **engine: Any) -> Any:
    """The case's config: its sample, the inputs made for it, the database, ``engine``."""
    config_type = spec_of(case).config_type
    fields = {f.name for f in dataclasses.fields(config_type)}
    values = {**case.row.sample, **names, "db": str(db), **engine}
    return config_type(**{name: tuple(value) if isinstance(value, list) else value
                          for name, value in values.items() if name in fields})


def start(case: Kind, names: Mapping[str, Any], db: Path, **engine: Any) -> JobResult[Any]:
    """Run the case's job in ``db`` to its end."""
    return runtime.run(spec_of(case), config_of(case, names, db, **engine), db)


def prepared(case: Kind, tmp_path: Path, copies: tuple[str, ...]) -> tuple[dict[str, Any],
                                                                            dict[str, Path]]:
    """The case's fixture made once (the hub, then the inputs its sample names) and a database
    copy of it per name: (the inputs' values, with the folder and template; name -> database)."""
    folder = tmp_path / "fixture"
    folder.mkdir()
    template = folder / "template.duckdb"
    hub(folder, template)
    names: dict[str, Any] = {}
    for field in case.row.sample:
        if field in INPUTS and field not in names:
            names |= INPUTS[field](folder, template)
    dbs = {}
    for name in copies:
        dbs[name] = tmp_path / f"{name}.duckdb"
        shutil.copy(template, dbs[name])
    return names | {"folder": folder, "template": template}, dbs


# -- what a job made -----------------------------------------------------------------------------

Table = tuple[list[str], list[tuple[str, ...]]]  # columns, rows (each cell as _plain makes it)


def snapshot(db: Path, job_id: str | None) -> dict[str, Table]:
    """Every table a job may make, without its timestamps, the job's id written ``<job>``."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [t for (t,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "ORDER BY 1").fetchall() if t not in NOT_MADE]
        found = {}
        for table in names:
            columns = [c for c, kind in con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()
                if not kind.startswith("TIMESTAMP")]
            picked = ", ".join(f'"{c}"' for c in columns)
            found[table] = (columns, [tuple(_plain(v, job_id) for v in r) for r in
                                      con.execute(f"SELECT {picked} FROM {table}").fetchall()])
        return found
    finally:
        con.close()


def _plain(value: Any, job_id: str | None) -> str:
    """A cell as a comparable string, the job's id as ``<job>``; any other value as its repr
    after a NUL, so it is never taken for an id."""
    text = value if isinstance(value, str) else "\x00" + repr(value)
    return text.replace(job_id, "<job>") if job_id else text


def _id_like(value: str) -> bool:
    """Whether a cell may be an id a job drew: a text of six or more characters, no space."""
    return len(value) >= 6 and not value.startswith("\x00") and not re.search(r"\s", value)


def _column(table: Table, column: str) -> list[Any]:
    return sorted(r[table[0].index(column)] for r in table[1])


def _masked(snap: Mapping[str, Table], id_columns: set[tuple[str, str]]) -> dict[str, Table]:
    """The snapshot with every value of its id columns written ``<id>``, wherever it occurs."""
    tokens = {v for (t, c) in id_columns for v in _column(snap[t], c) if _id_like(v)}
    if not tokens:
        return dict(snap)
    pattern = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))
    return {t: (cols, [tuple(pattern.sub("<id>", v) for v in r) for r in data])
            for t, (cols, data) in snap.items()}


def _rows(table: Table, columns: list[str]) -> list[tuple[Any, ...]]:
    at = [table[0].index(c) for c in columns]
    return sorted(tuple(r[i] for i in at) for r in table[1])


@dataclass(frozen=True)
class Agreement:
    """What two uninterrupted jobs of one config agree on: the columns whose values are ids
    each drew afresh (masked), and per table the columns compared."""

    id_columns: frozenset[tuple[str, str]]
    columns: Mapping[str, list[str]]

    @classmethod
    def of(cls, one: Mapping[str, Table], two: Mapping[str, Table]) -> Agreement:
        """Find the columns two uninterrupted jobs' snapshots agree on."""
        id_columns = frozenset(
            (t, c) for t, table in one.items() for c in table[0]
            if _column(table, c) != _column(two[t], c)
            and any(_id_like(v) for v in _column(table, c)))
        one, two = _masked(one, set(id_columns)), _masked(two, set(id_columns))
        columns = {}
        for t, table in one.items():
            keep = [c for c in table[0] if _column(table, c) == _column(two[t], c)]
            while keep and _rows(table, keep) != _rows(two[t], keep):  # paired differently
                costs = {c: _cost(one[t], two[t], keep, c) for c in keep}
                keep.remove(min(keep, key=costs.__getitem__))
            columns[t] = keep
        return cls(id_columns, columns)

    def made(self, snap: Mapping[str, Table]) -> dict[str, list[tuple[Any, ...]]]:
        """A snapshot's rows on the agreed columns, its own fresh ids masked."""
        masked = _masked(snap, set(self.id_columns))
        return {t: _rows(table, self.columns[t]) for t, table in masked.items()}


def _cost(one: Table, two: Table, keep: list[str], column: str) -> tuple[int, bool, int]:
    """What leaving ``column`` out of ``keep`` costs: the rows that still differ, then a text
    column before a number (an insertion order goes first), then the earlier column first."""
    rest = [c for c in keep if c != column]
    a, b = Counter(_rows(one, rest)), Counter(_rows(two, rest))
    numbers = all(v.startswith("\x00") for v in _column(one, column))
    return sum(((a - b) + (b - a)).values()), not numbers, keep.index(column)


def newest_job(db: Path, kind: str) -> str:
    (job_id,), = rows(db, "SELECT job_id FROM jobs WHERE kind = ? ORDER BY started_at DESC "
                          "LIMIT 1", [kind])
    return str(job_id)
