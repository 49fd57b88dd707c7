"""Every shipped job kind as a test case: what its database needs first, how the command starts
it, and the rows it makes. ``test_every_kind_resumes.py`` stops and resumes each kind;
``test_every_kind_on_ray.py`` runs each on Ray. ``KINDS`` must name every shipped kind
(``test_every_registered_kind_has_a_case``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests._planted import planted_corpus
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import MARGINALS, make_population, write_survey

SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="every", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=2), steps=3,
                    kinds=("npc_dialogue", "instruction"), seed=4)
"""
QUESTION = "What did you notice this week?"
# the answers a job kept, by purpose (a stopped job's uncommitted answers are 'discarded')
KEPT_CALLS = "SELECT purpose, count(*) FROM llm_calls WHERE status = 'ok' GROUP BY 1 ORDER BY 1"


@dataclass(frozen=True)
class Kind:
    """One job kind: what its database needs first, how the command starts it, the rows it
    makes (without ids that differ between two jobs), and which batch commit the stop hits."""

    kind: str
    prepare: Callable[[Path, Path], dict[str, Any]]  # (folder, db) -> names the start uses
    start: Callable[[Path, dict[str, Any]], list[object]]  # personahub ARGS, without --db
    made: str
    stop_at_write: int = 3  # the job's own row, one batch, then the stop


def import_people(folder: Path, db: Path, n: int = 8) -> dict[str, Any]:
    people = folder / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(n)))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    return {}


def _near_duplicates(folder: Path, db: Path) -> dict[str, Any]:
    texts = planted_corpus(40, 30, length=(60, 60), kinds=("swap", "edit_block"), seed=7).texts
    people = folder / "near.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in texts))
    assert invoke("personas", "import", people, "--db", db).exit_code == 0
    return {}


def _corpus(folder: Path, db: Path) -> dict[str, Any]:
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(f"Notes {i}: how to repair a bicycle chain, oil it and check "
                                  f"its wear on day {i}." for i in range(6)) + "\n")
    return {"corpus": corpus}


def _scenario(folder: Path, db: Path) -> dict[str, Any]:
    import_people(folder, db, 6)
    (folder / "every.py").write_text(SCENARIO)
    return {"scenario": folder / "every.py"}


def _synthesized(folder: Path, db: Path) -> dict[str, Any]:
    import_people(folder, db)
    assert invoke("synthesize", "instruction", "--n", 8, "--db", db).exit_code == 0
    return {"job": rows(db, "SELECT job_id FROM jobs WHERE kind = 'synthesis'")[0][0]}


def _ran(folder: Path, db: Path) -> dict[str, Any]:
    names = _scenario(folder, db)
    assert invoke("run", names["scenario"], "--db", db).exit_code == 0
    return {"run": rows(db, "SELECT job_id FROM jobs WHERE kind = 'run'")[0][0]}


def _population(folder: Path, db: Path) -> dict[str, Any]:
    return {"population": make_population(folder, db), "survey": write_survey(folder / "s.csv")}


def _marginals(folder: Path, db: Path) -> dict[str, Any]:
    marginals = folder / "marginals.csv"
    marginals.write_text(MARGINALS, encoding="utf-8")
    return {"marginals": marginals}


KINDS = [
    Kind("run", _scenario, lambda f, n: ["run", n["scenario"]],
         "SELECT step, agent_id, persona_id, kind, content, text FROM emissions ORDER BY ALL"),
    Kind("synthesis", lambda f, db: import_people(f, db),
         lambda f, n: ["synthesize", "instruction", "--n", 8, "--batch-size", 3],
         "SELECT persona_id, content, text, is_duplicate FROM synth_items ORDER BY ALL"),
    Kind("text_to_persona", _corpus,
         lambda f, n: ["personas", "from-text", n["corpus"], "--relations", "read,like",
                       "--batch-size", 2],
         "SELECT text, source, hop FROM personas ORDER BY ALL"),
    Kind("expansion", lambda f, db: import_people(f, db, 4),
         lambda f, n: ["personas", "expand", "--hops", 2, "--fanout", 2, "--batch-size", 2],
         "SELECT text, source, hop FROM personas ORDER BY ALL"),
    Kind("dedup", _near_duplicates, lambda f, n: ["personas", "dedup", "--batch-size", 10],
         "SELECT p.text, p.is_duplicate, p.duplicate_of, p.dup_stage, e.model, e.vector "
         "FROM personas p LEFT JOIN persona_embeddings e USING (persona_id) ORDER BY ALL"),
    Kind("judge", _synthesized,
         lambda f, n: ["judge", "--job", n["job"], "--batch-size", 3],
         "SELECT item_id, kind, criteria, valid, reason FROM judgments ORDER BY ALL"),
    Kind("interview", _ran,
         lambda f, n: ["interview", "--run", n["run"], "--carve", "hop=0", "--batch-size", 2,
                       QUESTION],
         "SELECT agent_id, persona_id, step, question, answer, status, error FROM interviews "
         "ORDER BY ALL"),
    Kind("calibration", _population,
         lambda f, n: ["calibrate", n["survey"], "--population", n["population"], "--n", 5,
                       "--seed", 2, "--no-persona-n", 3, "--batch-size", 7],
         "SELECT question_id, steering, respondent, persona_id, answer, refused "
         "FROM calibration_answers ORDER BY ALL"),
    Kind("population_write", _marginals,
         lambda f, n: ["personas", "sample-population", "--marginals", n["marginals"], "--n", 80,
                       "--seed", 5, "--llm", "offline"],  # two batches of the default 64
         "SELECT text, json_extract_string(attributes, '$.sex'), "
         "json_extract_string(attributes, '$.party') FROM personas ORDER BY ALL"),
    Kind("evaluation", _synthesized,
         lambda f, n: ["evaluate", "--job", n["job"], "--test-n", 3, "--solver", "offline?seed=1",
                       "--solver", "offline?seed=2", "--model", "offline?seed=3", "--agree", 1],
         "SELECT item_id, role, spec, mode, sample, answer FROM eval_answers ORDER BY ALL"),
]


def prepared(case: Kind, tmp_path: Path, copies: tuple[str, ...]) -> tuple[dict[str, Any],
                                                                            dict[str, Path]]:
    """The case's fixture made once (``case.prepare``) and a database copy of it per name:
    (the names its start uses, name -> database)."""
    folder = tmp_path / "fixture"
    folder.mkdir()
    template = folder / "template.duckdb"
    names = case.prepare(folder, template)
    dbs = {}
    for name in copies:
        dbs[name] = tmp_path / f"{name}.duckdb"
        if template.exists():
            shutil.copy(template, dbs[name])
    return names | {"folder": folder, "template": template}, dbs
