"""Text-to-persona (Persona Hub section 2.1), data side: ask who is likely to read, write, like or
dislike a text.

Persona ids derive from the text and each batch commits with its text_done rows, so a resumed job
gives the same hub. Corpora are JSONL, CSV, Parquet or plain text (a text per paragraph).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pyarrow as pa
from pydantic import BaseModel, Field, create_model

from personahub.core.commit import JobRef
from personahub.core.errors import PersonaFileError
from personahub.core.input_files import check_input_file
from personahub.core.text_bounds import DIGITS
from personahub.personas.importers import ImportStats, container_of, iter_rows
from personahub.personas.quality import (
    PERSONA_MAX_CHARS,
    gate_item,
    rejected_row,
)
from personahub.personas.record import Persona

SOURCE = "text-to-persona"
# who a text implies: the relations the prompts word
RELATIONS: tuple[str, ...] = ("read", "write", "like", "dislike")
TEXT_FIELDS = ("text", "content", "body", "document")
SPLITS = ("paragraph", "line")
MAX_CHARS = 6000
# Output limit of a text-to-persona call: persona fields are bounded at one character a token
# (a small model's runaway), so this fits the worst case per text
TEXT_TO_PERSONA_MAX_TOKENS = 400


class TextPersona(BaseModel):
    """One person likely to read / write / like / dislike a text."""

    # one sentence, bounded at one character a token: a small model copying the text's figures
    # writes them
    persona: Annotated[str, DIGITS] = Field(min_length=12, max_length=PERSONA_MAX_CHARS,
                                            description="a specific one-sentence persona description")


@lru_cache(maxsize=32)
def text_personas_schema(count: int) -> type[BaseModel]:
    """Build a schema asking for 1 to count personas."""
    if count < 1:
        raise ValueError(f"per-text must be >= 1, got {count}")
    return create_model(
        "TextPersonas",
        __doc__="People likely to stand in the given relation to the text.",
        personas=(list[TextPersona], Field(min_length=1, max_length=count)),
    )


@dataclass(frozen=True, slots=True)
class SourceText:
    """One text of a corpus and its id (the resume key, with corpus and relation)."""

    text_id: str
    text: str


@dataclass
class TextToPersonaSummary:
    """What a text-to-persona job did in this session."""

    texts: int = 0
    already_done: int = 0
    asked: int = 0
    failed_calls: int = 0
    rejected_answers: int = 0  # answered, but the gate kept none of its personas
    personas: int = 0
    new_personas: int = 0
    batches: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    corpus: str = ""
    path: str = ""
    relations: int = 0
    bad_records: int = 0
    bad_examples: list[str] = field(default_factory=list)
    provider_batches: str | None = None


def parse_relations(value: str | Sequence[str]) -> tuple[str, ...]:
    """Parse "read,like" or a list into a validated tuple of relations, in order."""
    items = value.split(",") if isinstance(value, str) else list(value)
    relations = tuple(dict.fromkeys(r.strip().lower() for r in items if r.strip()))
    unknown = [r for r in relations if r not in RELATIONS]
    if unknown or not relations:
        raise ValueError(f"--relations: unknown {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(RELATIONS)}")
    return relations


def iter_texts(
    path: str | Path,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    split: str = "paragraph",
    name: str | None = None,
    skip_bad: bool = False,
    stats: ImportStats | None = None,
) -> Iterator[SourceText]:
    """Stream the texts of a corpus file."""
    path = Path(path)
    label = name or path.name
    check_input_file(path, max_bytes=None)  # streamed: any size, but a regular file
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if container_of(path) is None:
        if id_column:
            raise PersonaFileError(str(path), None, "--id-column needs a JSONL, CSV or Parquet corpus")
        return _plain_texts(path, label, split)
    rows = iter_rows(path, skip_bad=skip_bad, stats=stats)
    ref = "row" if container_of(path) == "parquet" else "line"
    return _table_texts(rows, str(path), label, ref, text_column, id_column, skip_bad, stats)


def _table_texts(rows: Iterator[tuple[int, dict[str, object]]], path: str, label: str, ref: str,
                 text_column: str | None, id_column: str | None, skip_bad: bool,
                 stats: ImportStats | None) -> Iterator[SourceText]:
    candidates = (text_column,) if text_column else TEXT_FIELDS
    for number, row in rows:
        field = next((c for c in candidates if c in row), None)
        text = row.get(field) if field else None
        problem = None
        if field is None:
            problem = f"no text field ({' or '.join(candidates)})"
        elif not isinstance(text, str):
            problem = f"field {field!r} is not a string"
        elif id_column and row.get(id_column) in (None, ""):
            problem = f"id field {id_column!r} is missing"
        if problem:
            error = PersonaFileError(path, number, problem)
            if not skip_bad:
                raise error
            if stats is not None:
                stats.note_bad(error)
            continue
        assert isinstance(text, str)
        if not text.strip():
            continue
        text_id = str(row[id_column]) if id_column else f"{label}:{number}"
        yield SourceText(text_id, text.strip())


def _plain_texts(path: Path, label: str, split: str) -> Iterator[SourceText]:
    """Yield paragraphs (blank-line separated) or non-blank lines of a UTF-8 text file."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        lines: list[str] = []
        start = 0
        for number, line in enumerate(f, 1):
            if split == "line":
                if line.strip():
                    yield SourceText(f"{label}:{number}", line.strip())
                continue
            if line.strip():
                if not lines:
                    start = number
                lines.append(line.rstrip("\n"))
            elif lines:
                yield SourceText(f"{label}:{start}", "\n".join(lines).strip())
                lines = []
        if lines:
            yield SourceText(f"{label}:{start}", "\n".join(lines).strip())


def done_pairs(con: duckdb.DuckDBPyConnection, corpus: str, text_ids: list[str]) -> set[tuple[str, str]]:
    """Return (text_id, relation) pairs already answered for a corpus."""
    con.register("_t2p_ids", pa.table({"text_id": text_ids}))
    try:
        rows = con.execute(
            "SELECT text_id, relation FROM text_done WHERE corpus = ? "
            "AND text_id IN (SELECT text_id FROM _t2p_ids)", [corpus]).fetchall()
    finally:
        con.unregister("_t2p_ids")
    return {(r[0], r[1]) for r in rows}


def text_job_persona_ids(con: duckdb.DuckDBPyConnection, job_id: str) -> list[str]:
    """Return the ids of the personas a job's corpus produced, in no set order."""
    return [r[0] for r in con.execute(
        "SELECT DISTINCT unnest(CAST(persona_ids AS VARCHAR[])) FROM text_done WHERE corpus = "
        "(SELECT corpus FROM text_jobs WHERE job_id = ?)", [job_id]).fetchall()]


def screen(items: Sequence[Any], corpus: str, text_id: str, relation: str, language: str | None,
            job: JobRef) -> tuple[list[Persona], list[dict[str, object]]]:
    """Return the answered personas that pass the quality gate, and rejected rows for the others."""
    kept: list[Persona] = []
    refused: list[dict[str, object]] = []
    for position, item in enumerate(items):
        text, issue = gate_item(item, language=language)
        if issue is None:
            kept.append(Persona(text=text, source=SOURCE, source_ref=text_id,
                                attributes={"relation": relation, "text_id": text_id,
                                            "corpus": corpus}))
            continue
        refused.append(rejected_row(
            "text_to_persona", issue,
            {"persona": item.persona, "corpus": corpus, "text_id": text_id, "relation": relation},
            key=f"{corpus}\0{text_id}\0{relation}\0{position}", run_id=job.run_id, job_id=job.job_id,
            task="persona"))
    return kept, refused
