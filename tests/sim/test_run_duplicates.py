"""A run's near-duplicate flags, with planted near-duplicate emissions, equal those of the
dict-of-buckets index, also after ``run --resume`` and with a ``duplicate_window``."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import duckdb
import pytest

import personahub.personas.near_dup as near_dup
from personahub.api import resume_run, run_simulation
from personahub.core.errors import PersonahubError
from personahub.models.client import StructuredResult
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import Scenario, ScenarioError, load_scenario
from personahub.tasks.instruction import Instruction
from tests._dict_index import DictNearDuplicateIndex
from tests._planted import planted_corpus
from tests.conftest import persona_texts
from tests.fakes import Call, FakeClient, unreachable_from_step
from tests.personas.test_near_dup import _windowed_flags

SCENARIO = """
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario

SCENARIO = Scenario(name="planted", personas=PersonaSource(path="people.jsonl"),
                    graph=GraphGrowth(hops=0, acquaintances=4), steps=6,
                    tasks=("instruction", "npc_dialogue"), seed=5, duplicate_window={window})
"""

# sources and their near-duplicates (a word swapped or replaced, case and punctuation changed)
TEXTS = planted_corpus(30, 60, seed=9, length=(12, 24)).texts


def planted_instructions(call: Call, result: StructuredResult) -> StructuredResult:
    """Instructions become planted texts, picked by (persona, step) so a resumed run gets the
    same ones."""
    if call.schema is Instruction and result.value is not None:
        pick = zlib.crc32(f"{call.persona_id}:{call.step}".encode()) % len(TEXTS)
        result.value = Instruction(instruction=TEXTS[pick])
    return result


def planted_client(fail_at: int | None = None) -> FakeClient:
    """The offline client with planted instructions, unreachable from step ``fail_at`` on."""
    answer = unreachable_from_step(fail_at) if fail_at is not None else None
    return FakeClient(answer, planted_instructions, seed=5)


def _scenario(tmp_path: Path, window: int | None) -> Path:
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(40)))
    path = tmp_path / "planted.py"
    path.write_text(SCENARIO.format(window=window))
    return path


def _emissions(db: Path) -> dict[str, list[tuple[str, str, str | None]]]:
    """Per kind, in the order the run indexed them: (emission_id, text, duplicate_of)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT task, emission_id, text, duplicate_of FROM emissions "
                           "ORDER BY step, agent_id").fetchall()
    finally:
        con.close()
    by_kind: dict[str, list[tuple[str, str, str | None]]] = {}
    for kind, emission_id, text, duplicate_of in rows:
        by_kind.setdefault(kind, []).append((emission_id, text, duplicate_of))
    return by_kind


def _reference(by_kind: dict[str, list[tuple[str, str, str | None]]],
               window: int | None) -> dict[str, list[str | None]]:
    out = {}
    for kind, rows in by_kind.items():
        items = [(emission_id, text) for emission_id, text, _ in rows]
        out[kind] = (DictNearDuplicateIndex().check_and_add_many(items) if window is None
                     else _windowed_flags(items, window))
    return out


def _flags(by_kind: dict[str, list[tuple[str, str, str | None]]]) -> dict[str, list[str | None]]:
    return {kind: [duplicate_of for *_, duplicate_of in rows] for kind, rows in by_kind.items()}


def _without_run_id(flags: dict[str, list[str | None]]) -> dict[str, list[str | None]]:
    """Flags as 'step:agent' (emission ids start with the run id, which differs between runs)."""
    return {kind: [None if f is None else f.split(":", 1)[1] for f in column]
            for kind, column in flags.items()}


# (the default window beyond the stream flags as no window does: that row is in the slow run only)
@pytest.mark.parametrize(("window", "hot"), [(None, None),
                                             pytest.param(1_000_000, None, marks=pytest.mark.slow),
                                             pytest.param(1_000_000, 4, marks=pytest.mark.slow),
                                             pytest.param(12, None, marks=pytest.mark.slow), (12, 4)])
@pytest.mark.slow
def test_run_flags_equal_the_reference_uninterrupted_and_resumed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: int | None, hot: int | None) -> None:
    if hot is not None:  # most signatures read back from the emissions table
        monkeypatch.setattr(near_dup, "BLOCK", hot)
        monkeypatch.setattr(near_dup, "HOT", hot)
    scenario = load_scenario(_scenario(tmp_path, window))
    whole = tmp_path / "whole.duckdb"
    run_simulation(RunConfig(scenario=scenario, db=whole), client=planted_client())
    by_kind = _emissions(whole)
    flags = _flags(by_kind)
    assert flags == _reference(by_kind, window)
    if window is None or window > len(by_kind["instruction"]):
        planted = [f for f in flags["instruction"] if f is not None]
        assert len(planted) > 50  # the planted texts do repeat, exactly and nearly
    else:
        assert flags != _reference(by_kind, None)  # the window is narrow enough to matter

    broken = tmp_path / "broken.duckdb"
    with pytest.raises(PersonahubError, match="unreachable"):
        run_simulation(RunConfig(scenario=scenario, db=broken), client=planted_client(fail_at=4))
    con = duckdb.connect(str(broken), read_only=True)
    run_id = con.execute("SELECT run_id FROM runs").fetchone()[0]  # type: ignore[index]
    con.close()
    resume_run(run_id, db=broken, client=planted_client())
    resumed = _emissions(broken)
    assert _flags(resumed) == _reference(resumed, window)
    assert _without_run_id(_flags(resumed)) == _without_run_id(flags)


def test_duplicate_window_validation() -> None:
    for bad in (0, -5, 2.5):
        with pytest.raises(ScenarioError, match="duplicate_window"):
            Scenario(name="x", duplicate_window=bad)  # type: ignore[arg-type]
    assert Scenario(name="x", duplicate_window=None).duplicate_window is None
