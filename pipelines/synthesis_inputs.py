"""What a synthesis job reads before asking: demonstrations, world text, and the personas it draws
(stored with the job, so a resume asks the same ones in the same order).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import duckdb

from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.core.store import insert_columns, transaction
from personahub.core.validate import read_text_file
from personahub.personas.gate_labels import DRAWN
from personahub.personas.importers import iter_personas, seed_file
from personahub.personas.record import Persona
from personahub.personas.sampling import HubQuery, draw
from personahub.personas.store import fetch_personas, persona_count, upsert_personas
from personahub.personas.text_to_persona import TEXT_TO_PERSONA_MAX_TOKENS
from personahub.pipelines.prompts.synthesis import demo_persona_messages, world_for_prompt
from personahub.tasks import synthesis_task
from personahub.tasks.shipped_demos import builtin_text, is_builtin
from personahub.tasks.synthesis_schemas import InferredPersona

DEFAULT_NPC_WORLD = "worlds/fantasy_village.md"


@dataclass(frozen=True)
class Demo:
    """One demonstration: its text and (for persona-few-shot) its persona."""

    text: str
    persona: str | None = None


def load_examples(path: str | Path) -> list[Demo]:
    """Demonstrations from JSONL, a Persona Hub synthesis file, or a shipped "builtin:<task>" set;
    errors name the file and line.
    """
    if isinstance(path, str) and is_builtin(path):
        return _parse_examples(builtin_text(path).splitlines(), path)
    path = Path(path)
    return _parse_examples(read_text_file(path, "--examples").splitlines(), path)


def _parse_examples(lines: list[str], path: str | Path) -> list[Demo]:
    """Parse the demonstrations in a file's lines (the path only names the file in errors)."""
    demos = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PersonahubError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        except RecursionError:  # json's parser gives up near 1,000 nested levels
            raise PersonahubError(f"{path}:{number}: JSON nested too deeply") from None
        if isinstance(record, dict) and "synthesized text" in record:
            record = _personahub_demo(record)
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) \
                or not record["text"].strip():
            raise PersonahubError(f"{path}:{number}: expected an object with a non-empty 'text' "
                                  "(or a Persona Hub row with 'synthesized text')")
        persona = record.get("persona")
        if persona is not None and (not isinstance(persona, str) or not persona.strip()):
            raise PersonahubError(f"{path}:{number}: 'persona' must be a non-empty string")
        demos.append(Demo(record["text"].strip(), persona.strip() if persona else None))
    if not demos:
        raise PersonahubError(f"--examples {path}: no demonstrations in the file")
    return demos


def _personahub_demo(row: dict[str, object]) -> dict[str, object]:
    """Return a Persona Hub row as a text and persona, with the extra layer of JSON string quoting that
    some tools add taken off.
    """
    text = row.get("synthesized text")
    if isinstance(text, str) and text.startswith('"'):
        try:
            inner = json.loads(text)
        except json.JSONDecodeError:
            inner = None
        if isinstance(inner, str):
            text = inner
    return {"text": text, "persona": row.get("input persona")}


async def infer_personas(client: StructuredCaller,
                         demos: list[Demo]) -> tuple[list[Demo], list[StructuredResult[Any]]]:
    """Give each demonstration without a persona one inferred by a text-to-persona call; returns the
    demonstrations and the calls' results.
    """
    async def fill(demo: Demo) -> tuple[Demo, StructuredResult[Any] | None]:
        if demo.persona:
            return demo, None
        result = await client.structured(InferredPersona, demo_persona_messages(demo.text),
                                         purpose="text_to_persona",
                                         max_tokens=TEXT_TO_PERSONA_MAX_TOKENS)
        if result.value is None:
            raise PersonahubError("--examples: text-to-persona failed for a demonstration "
                                  f"starting {demo.text[:40]!r}; give it a 'persona'")
        return replace(demo, persona=result.value.persona), result

    filled = await asyncio.gather(*(fill(d) for d in demos))
    return [demo for demo, _ in filled], [result for _, result in filled if result is not None]


class _WorldConfig(Protocol):
    """What load_world reads of a synthesis config."""

    @property
    def task(self) -> str: ...
    @property
    def world(self) -> str | None: ...


def load_world(config: _WorldConfig) -> str:
    """Load the world text for a config's task and world (npc defaults to the shipped fantasy village).
    """
    if config.world:
        path = Path(config.world)
    elif synthesis_task(config.task).synthesis_spec().needs_world:
        path = Path(str(resources.files("personahub.scenarios").joinpath(DEFAULT_NPC_WORLD)))
    else:
        return ""
    return world_for_prompt(read_text_file(path, "--world"))


def select_personas(con: duckdb.DuckDBPyConnection, where: str | None, n: int, *,
                    carve: Sequence[str] = (), seed: int = 0, sample: str = "uniform",
                    gates: Sequence[str] | None = DRAWN) -> list[Persona]:
    """Draw n non-duplicate personas matching the SQL filter, carve conditions and gates: a seeded
    uniform sample, or the first in hub order with sample="head". Finding none is an error.
    """
    return draw(con, HubQuery(where=where or None, carve=tuple(carve)), n, seed=seed, mode=sample,
                gates=gates)


def job_personas(con: duckdb.DuckDBPyConnection, job_id: str) -> list[Persona] | None:
    """Return the personas a job drew, in its order (None for a job that stored none)."""
    ids = [r[0] for r in con.execute("SELECT persona_id FROM synth_job_personas WHERE job_id = ? "
                                     "ORDER BY position", [job_id]).fetchall()]
    if not ids:
        return None
    found = {p.persona_id: p for p in fetch_personas(con, ids)}
    return [found[i] for i in ids if i in found]


def store_selection(con: duckdb.DuckDBPyConnection, job_id: str, personas: Sequence[Persona]) -> None:
    """Write the personas a job drew, in order (inside the transaction recording the job)."""
    insert_columns(con, "synth_job_personas", {
        "job_id": [job_id] * len(personas), "position": list(range(len(personas))),
        "persona_id": [p.persona_id for p in personas]})


def seed_hub_if_empty(con: duckdb.DuckDBPyConnection) -> int:
    """Import the shipped seed personas into an empty hub, so a fresh database just works."""
    if persona_count(con):
        return 0
    with transaction(con):
        return upsert_personas(con, iter_personas(seed_file()))


def item_facets(con: duckdb.DuckDBPyConnection,
                item_ids: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """Return the task, prompting and persona id of each synthesized item found, by item id."""
    return {item: (task, prompting, persona) for item, task, prompting, persona in con.execute(
        "SELECT item_id, task, prompting, persona_id FROM synth_items "
        "WHERE item_id IN (SELECT unnest(?::VARCHAR[]))", [list(item_ids)]).fetchall()}
