"""The task registry: one module per output kind, and a kind added from outside the package.

A toy kind (a haiku about the persona's day) is registered from this module and used as an
emission kind in a scenario run, as a synthesis task, and in every export format; nothing
else in the project is edited for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from pydantic import BaseModel, Field

from personahub.analysis.export import export, load_items
from personahub.api import run_simulation, run_synthesis
from personahub.core.errors import PersonahubError
from personahub.models import offline_text
from personahub.models.field_writers import builtin_writer, writer_for
from personahub.personas.quality import QualityIssue
from personahub.pipelines.prompts.evaluate import SOLVE_MAX_TOKENS
from personahub.pipelines.run import RunConfig
from personahub.pipelines.synthesize import SynthConfig
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, ScenarioError
from personahub.tasks import (
    EmissionSpec,
    SynthesisSpec,
    Task,
    UnknownTaskError,
    addressed_kinds,
    emission_kinds,
    emission_task,
    get,
    register,
    stored_task,
    synthesis_names,
    synthesis_task,
    tasks,
    unregister,
)
from personahub.tasks.base import Content
from personahub.tasks.instruction import Instruction, InstructionItem
from personahub.tasks.max_tokens import kind_max_tokens, synthesis_max_tokens
from personahub.tasks.registry import offline_writer


class Haiku(BaseModel):
    """Three short lines about the persona's day."""

    haiku_lines: list[str] = Field(min_length=3, max_length=3, description="three lines")
    season: str = Field(description="the season word")


def check_haiku(content: Content) -> QualityIssue | None:
    """Three lines that each say something."""
    if not all(line.strip() for line in content.get("haiku_lines") or []):
        return QualityIssue("empty_line", "a haiku line is empty")
    return None


def write_season(maker: offline_text.TextMaker) -> str:
    """The toy's own offline writer: a season picked by the engine's seeded RNG."""
    return maker.rng.choice(("spring", "summer", "autumn", "winter"))


TOY = Task(
    name="haiku",
    schema=Haiku,
    check=check_haiku,
    describe=lambda content: " / ".join(content["haiku_lines"]),
    emission=EmissionSpec(prompt="Write a haiku about your day.", max_tokens=99),
    synthesis=SynthesisSpec(summary="a haiku", instruction="Write a haiku this persona would "
                                                           "write about their work."),
    offline_writers={"haiku_line": "sentence", "season": write_season},
)


@pytest.fixture
def toy() -> Iterator[Task]:
    """The toy kind, registered for one test (the registry is left as it was)."""
    register(TOY)
    try:
        yield TOY
    finally:
        unregister(TOY.name)


def toy_scenario() -> Scenario:
    return Scenario(name="haiku_town", personas=PersonaSource(limit=6),
                    graph=GraphGrowth(hops=0, acquaintances=2), steps=2,
                    tasks=("haiku", "npc_dialogue"), seed=3)


def test_a_kind_added_from_outside_runs_in_simulation_synthesis_and_export(
        toy: Task, tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    run = run_simulation(RunConfig(scenario=toy_scenario(), db=db))
    job = run_synthesis(SynthConfig(task="haiku", n=4, db=str(db)))
    assert job.written == 4

    con = duckdb.connect(str(db))
    emitted = con.execute("SELECT content, text FROM emissions WHERE run_id = ? AND task = 'haiku'",
                          [run.run_id]).fetchall()
    assert emitted, "no haiku emitted"
    for content, text in emitted:
        value = Haiku.model_validate_json(content)
        assert text == " / ".join(value.haiku_lines)
        assert value.season in ("spring", "summer", "autumn", "winter")  # the toy's own writer
    items = con.execute("SELECT task, content, text FROM synth_items WHERE job_id = ?",
                        [job.job_id]).fetchall()
    assert {task for task, _, _ in items} == {"haiku"}
    for _, content, text in items:
        assert text == " / ".join(Haiku.model_validate_json(content).haiku_lines)

    out = tmp_path / "run.jsonl"
    assert export(con, out, "chat", run=run.run_id, task="haiku") == len(emitted)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["messages"][0]["content"] for r in rows} == {text for _, text in emitted}
    out = tmp_path / "job.jsonl"
    assert export(con, out, "personahub", job=job.job_id) == 4
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["description"] for r in rows} == {"haiku"}
    assert export(con, tmp_path / "job.parquet", "parquet", job=job.job_id) == 4
    assert {i.task for i in load_items(con, job=job.job_id)} == {"haiku"}
    con.close()


def test_unregistering_the_toy_forgets_it_everywhere(toy: Task) -> None:
    assert "haiku" in emission_kinds() and "haiku" in synthesis_names()
    assert kind_max_tokens("haiku") == 99
    assert writer_for("season", offline_writer) is write_season
    unregister("haiku")
    try:
        assert "haiku" not in emission_kinds() and "haiku" not in synthesis_names()
        assert writer_for("season", offline_writer) == "sentence"
        with pytest.raises(ScenarioError, match="unknown task"):
            toy_scenario()
        with pytest.raises(PersonahubError, match="choose one of"):
            SynthConfig(task="haiku")
    finally:
        register(TOY)  # the fixture unregisters it again


def test_registering_a_kind_writes_nothing_below_the_tasks(toy: Task) -> None:
    """The engine's own rules stay as they are; it reads the kind's writer through the lookup."""
    assert builtin_writer("season") == "sentence"
    assert writer_for("season") == "sentence"
    assert writer_for("season", offline_writer) is write_season


def test_registration_refuses_clashes(toy: Task) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(TOY)
    # the engine sees field names only: a task may not change how an existing field is written
    rewriter = Task(name="liner", schema=Haiku, check=check_haiku,
                    offline_writers={"season": write_season, "line": "sentence"})
    with pytest.raises(ValueError, match="'line' is already written"):
        register(rewriter)
    assert writer_for("line", offline_writer) == "spoken_line"
    assert "liner" not in [t.name for t in tasks()]


def test_lookups_name_what_is_known() -> None:
    with pytest.raises(UnknownTaskError, match="unknown emission kind 'tools'"):
        emission_task("tools")
    with pytest.raises(UnknownTaskError, match="unknown task 'tools'"):
        get("tools")


def test_every_kind_has_one_name_and_its_former_name_still_answers() -> None:
    for task in tasks():
        assert stored_task(task.name, emission=False) is task
        if task.emission is not None:
            assert emission_task(task.name) is task is stored_task(task.name, emission=True)
    tool = get("tool_spec")
    assert tool.name == "tool_spec" and "tool" not in [t.name for t in tasks()]
    # ``tool``, the kind's synthesis name before 0.1.0, is an unknown kind everywhere
    for lookup in (emission_task, synthesis_task, get):
        with pytest.raises(UnknownTaskError, match="'tool'"):
            lookup("tool")
    assert stored_task("tool", emission=False) is None is stored_task("tool", emission=True)
    with pytest.raises(ScenarioError, match="tool"):
        Scenario(name="s", tasks=("instruction", "tool"))
    with pytest.raises(KeyError):
        synthesis_task("npc_dialogue")  # emitted in runs, not made by synthesis jobs
    assert addressed_kinds() == {"npc_dialogue", "conversation"}


def test_built_in_kinds_keep_their_offline_writers_and_limits() -> None:
    for task in tasks():
        for field_name, writer in task.offline_writers.items():
            assert writer_for(field_name, offline_writer) == writer, (task.name, field_name)
    assert [kind_max_tokens("instruction"), kind_max_tokens("tool_spec"),
            synthesis_max_tokens("tool_spec"), synthesis_max_tokens("math_problem"),
            synthesis_max_tokens("multi_turn"), SOLVE_MAX_TOKENS] == [256, 400, 450, 640, 600, 600]


def test_instruction_is_one_schema_under_two_wire_titles() -> None:
    assert issubclass(InstructionItem, Instruction)
    item, emitted = InstructionItem.model_json_schema(), Instruction.model_json_schema()
    assert item["properties"] == emitted["properties"] and item["required"] == emitted["required"]
    assert (item["title"], emitted["title"]) == ("InstructionItem", "Instruction")
    assert get("instruction").schema is Instruction
    assert get("instruction").synthesis_schema() is InstructionItem
