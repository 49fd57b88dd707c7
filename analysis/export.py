"""Export synthesized items and simulation emissions as personahub, chat or parquet files.

The personahub format is Persona Hub's release shape. Files are written atomically: a failed
export leaves nothing half-written.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from personahub.analysis.export_arrow import (
    SOLUTION_TYPE,
    content_array,
    content_type,
    model_type,
    task_models,
)
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.outputs import atomic_file
from personahub.personas.persona_texts import iter_source_rows, resolve_source
from personahub.tasks import Task, stored_task

if TYPE_CHECKING:
    import pandas as pd

EXPORT_FORMATS = ("personahub", "chat", "parquet")


@dataclass(frozen=True)
class ExportItem:
    """One exportable item, whichever table it came from."""

    source: str  # job | run
    source_id: str
    item_id: str
    persona_id: str
    persona: str
    kind: str  # task name, or the emission kind for runs
    content: dict[str, object]
    text: str
    solution: dict[str, object] | None
    is_duplicate: bool

    @property
    def output_task(self) -> Task | None:
        """The registered task of the item (None for a kind no longer registered)."""
        return stored_task(self.kind, emission=self.source == "run")

    @property
    def task(self) -> str:
        """The name of the item's kind."""
        task = self.output_task
        return task.name if task is not None else self.kind


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def load_items(con: duckdb.DuckDBPyConnection, *, job: str | None = None,
               run: str | None = None, task: str | None = None,
               drop_duplicates: bool = False,
               only: Collection[str] | None = None) -> list[ExportItem]:
    """Items of one job or one run; optionally just some ids (one side of a split)."""
    if (job is None) == (run is None):
        raise UsageError("export: give exactly one of --job or --run")
    source, key = ("job", job) if job is not None else ("run", run)
    assert key is not None  # exactly one of job / run, checked above
    sql = ("SELECT source, source_id, item_id, persona_id, persona, task, content, text, solution, "
           "is_duplicate FROM v_items WHERE source = ? AND source_id = ?")
    order = "created_at, item_id" if source == "job" else "step, agent_id, item_id"
    if not con.execute("SELECT count(*) FROM v_item_sources WHERE source = ? AND source_id = ?",
                       [source, key]).fetchall()[0][0]:
        flag = "--job" if job is not None else "--run"
        raise PersonahubError(f"{flag} {key}: not found in the database")
    params: list[object] = [source, key]
    if task:
        kinds = [r[0] for r in con.execute(
            "SELECT DISTINCT task FROM v_items WHERE source = ? AND source_id = ? ORDER BY 1",
            [source, key]).fetchall()]
        if task not in kinds:  # an empty export file would look like a successful one
            what = "job" if job is not None else "run"
            raise PersonahubError(f"--task {task!r}: {what} {key} has no such items "
                                  f"(it has: {', '.join(kinds) or 'none'})")
        sql += " AND task = ?"
        params.append(task)
    if drop_duplicates:
        sql += " AND NOT coalesce(is_duplicate, false)"
    rows = con.execute(f"{sql} ORDER BY {order}", params).fetchall()
    if only is not None:
        rows = [r for r in rows if r[2] in only]
    return [ExportItem(r[0], r[1], r[2], r[3], r[4] or "", r[5], _loads(r[6]), r[7],
                       _loads(r[8]), bool(r[9])) for r in rows]


def personahub_row(item: ExportItem) -> dict[str, str]:
    """Persona Hub's JSONL shape (a tool is JSON text inside a JSON string, as released)."""
    task = item.output_task
    if task is None:
        return {"input persona": item.persona, "synthesized text": item.text,
                "description": item.kind.replace("_", " ")}
    return {"input persona": item.persona,
            "synthesized text": task.personahub_text(item.content, item.text),
            "description": task.export_description}


def chat_row(item: ExportItem) -> dict[str, Any]:
    """Chat-format row: alternating user/assistant messages (assistant only when known)."""
    task = item.output_task
    if task is None:
        return {"messages": [{"role": "user", "content": item.text}]}
    row: dict[str, object] = {"messages": task.chat_messages(item.content, item.solution,
                                                          persona=item.persona)}
    tools = task.chat_tools(item.content)
    if tools is not None:
        row["tools"] = tools
    return row


def item_columns(items: Sequence[ExportItem]) -> tuple[dict[str, pa.Array], list[str]]:
    """Return the export's columns as typed Arrow arrays, and the content fields kept as JSON text."""
    kinds = {(i.kind, i.source == "run"): i.output_task for i in items}
    structs = [model_type(model) for (_, emission), task in kinds.items() if task is not None
               for model in task_models(task, emission=emission)]
    kind, as_json = content_type(structs, [i.content for i in items])
    string = pa.string()
    return {
        "source": pa.array([i.source for i in items], string),
        "source_id": pa.array([i.source_id for i in items], string),
        "item_id": pa.array([i.item_id for i in items], string),
        "persona_id": pa.array([i.persona_id for i in items], string),
        "input_persona": pa.array([i.persona for i in items], string),
        "task": pa.array([i.task for i in items], string),
        "text": pa.array([i.text for i in items], string),
        "content": content_array([i.content for i in items], kind, as_json),
        "solution": pa.array([i.solution or None for i in items], SOLUTION_TYPE),
        "is_duplicate": pa.array([i.is_duplicate for i in items], pa.bool_()),
    }, as_json


def parquet_table(items: Sequence[ExportItem]) -> pa.Table:
    """Items as an Arrow table, content and solution as structs."""
    columns, _ = item_columns(items)
    return pa.table(columns)


def items_frame(con: duckdb.DuckDBPyConnection, *, job: str | None = None,
                run: str | None = None) -> pd.DataFrame:
    """Return a synthesis job's or a run's items as a DataFrame, in the export's column layout."""
    return parquet_table(load_items(con, job=job, run=run)).to_pandas()


def write_export(items: Sequence[ExportItem], path: str | Path, fmt: str, *,
                 overwrite: bool = False) -> int:
    """Write items to a file in a format, replacing a file only when overwriting; returns the count."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet":
        with atomic_file(path, overwrite=overwrite, binary=True) as f:
            pq.write_table(parquet_table(items), f)
        return len(items)
    convert = personahub_row if fmt == "personahub" else chat_row
    with atomic_file(path, overwrite=overwrite) as f:
        for item in items:
            f.write(json.dumps(convert(item), ensure_ascii=False) + "\n")
    return len(items)


def validate_export(path: str | Path, fmt: str) -> int:
    """Check an export file reads back; returns its record count, raises PersonahubError."""
    path = Path(path)
    if fmt == "parquet":
        try:
            con = duckdb.connect()
            return int(con.execute("SELECT count(*) FROM read_parquet(?)",  # a list: no glob
                                   [[str(path)]]).fetchall()[0][0])
        except duckdb.Error as exc:
            raise PersonahubError(f"{path}: not readable as Parquet ({exc})") from exc
    count = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PersonahubError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            problem = _check_row(row, fmt)
            if problem:
                raise PersonahubError(f"{path}:{number}: {problem}")
            count += 1
    return count


def _check_row(row: object, fmt: str) -> str | None:
    if fmt == "personahub":
        keys = {"input persona", "synthesized text", "description"}
        if not isinstance(row, dict) or set(row) != keys:
            return f"expected exactly the keys {sorted(keys)}"
        return None
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        return "expected a non-empty 'messages' list"
    for i, message in enumerate(messages):
        want = "user" if i % 2 == 0 else "assistant"
        if not isinstance(message, dict) or message.get("role") != want:
            return f"message {i} should have role {want!r} (roles must alternate)"
        if not isinstance(message.get("content"), str):
            return f"message {i} has no text content"
    return None


@dataclass(frozen=True)
class EvaluationSides:
    """The split an export follows: its evaluation's id, each item's side (train, test or
    excluded: contaminated) and the sides written (None: every item)."""

    evaluation: str
    sides: Mapping[str, str]
    written: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ExportAccount:
    """What an export wrote of a job's or run's items, what it left out and what it kept that a
    reader of the data should know, each with its count and why.

    Attributes:
        written: the rows written.
        of: the job's or run's items.
        left_out: (count, why) of the items not written.
        kept: (count, what) of notable items written: flagged near-duplicates, contaminated
            items, rows without an assistant turn, rows drawn from an archetype's one call.
        sides: the rows of each side of a split written (a Hugging Face folder's files).
    """

    written: int
    of: int
    left_out: tuple[tuple[int, str], ...] = ()
    kept: tuple[tuple[int, str], ...] = ()
    sides: tuple[tuple[str, int], ...] = ()  # rows per side of a split, as written

    def lines(self) -> list[str]:
        """Return the account as console lines (none when nothing was left out or is notable)."""
        out = []
        if self.left_out:
            out.append(f"left out {self.of - self.written} of {self.of}: "
                       + "; ".join(f"{n} {why}" for n, why in self.left_out))
        if self.kept:
            out.append("kept: " + "; ".join(f"{n} {what}" for n, what in self.kept))
        return out


def account(con: duckdb.DuckDBPyConnection, items: Sequence[ExportItem], fmt: str, *,
            job: str | None = None, run: str | None = None, task: str | None = None,
            drop_duplicates: bool = False, split: EvaluationSides | None = None
            ) -> ExportAccount:
    """Account for what an export of these items left out of the job's or run's items and kept, and why.

    Args:
        con: the database.
        items: the items written.
        fmt: the format written (personahub, chat, parquet or hf).
        job: the synthesis job exported.
        run: the run exported.
        task: the --task asked for.
        drop_duplicates: whether flagged near-duplicates were left out.
        split: the evaluation whose split the export follows.

    Returns:
        The counts, in the order the filters apply.
    """
    source, key = ("job", job) if job is not None else ("run", run)
    every = con.execute("SELECT item_id, task, coalesce(is_duplicate, false), archetype FROM "
                        "v_items WHERE source = ? AND source_id = ?", [source, key]).fetchall()
    left: list[tuple[int, str]] = []
    rest = every
    if task is not None:
        left.append((sum(r[1] != task for r in rest), f"of other tasks than {task} (--task)"))
        rest = [r for r in rest if r[1] == task]
    if drop_duplicates:
        left.append((sum(r[2] for r in rest), "flagged near-duplicates (--drop-duplicates)"))
        rest = [r for r in rest if not r[2]]
    if split is not None and split.written is not None:
        out = [r for r in rest if split.sides.get(r[0]) not in split.written]
        dirty = sum(split.sides.get(r[0]) == "excluded" for r in out)
        left.append((dirty, f"contaminated: flagged by --against in evaluation "
                            f"{split.evaluation}, in neither side"))
        left.append((len(out) - dirty, f"on the other side of evaluation {split.evaluation}'s "
                                       f"split (--split {'/'.join(split.written)})"))
    kept: list[tuple[int, str]] = []
    if not drop_duplicates:
        kept.append((sum(item.is_duplicate for item in items),
                     "flagged near-duplicates (is_duplicate; --drop-duplicates leaves them out)"))
    if split is not None:
        kept.append((sum(split.sides.get(item.item_id) == "excluded" for item in items),
                     f"contaminated: flagged by --against in evaluation {split.evaluation} "
                     "(--split leaves them out)"))
    if fmt in ("chat", "hf"):
        bare: dict[str, int] = {}
        for item in items:
            if len(chat_row(item)["messages"]) == 1:
                bare[item.task] = bare.get(item.task, 0) + 1
        kept += [(n, f"{task} rows with the user's turn only: no answer is known (synthesize "
                     "--solve, or multi_turn --with-assistant, adds one)")
                 for task, n in sorted(bare.items())]
    drawn = {r[0] for r in every if r[3] is not None}
    if drawn:
        kept.append((sum(item.item_id in drawn for item in items),
                     "rows drawn from an archetype's pool: one call answered for its members, "
                     "so their texts repeat (scenario.archetypes)"))
    return ExportAccount(len(items), len(every), tuple(c for c in left if c[0]),
                         tuple(c for c in kept if c[0]))


def export(con: duckdb.DuckDBPyConnection, path: str | Path, fmt: str, *,
           job: str | None = None, run: str | None = None, task: str | None = None,
           drop_duplicates: bool = False, overwrite: bool = False,
           only: Collection[str] | None = None) -> int:
    """Load a job's or run's items, write them and validate the file; returns the count."""
    return export_accounted(con, path, fmt, job=job, run=run, task=task,
                            drop_duplicates=drop_duplicates, overwrite=overwrite,
                            only=only).written


def export_accounted(con: duckdb.DuckDBPyConnection, path: str | Path, fmt: str, *,
                     job: str | None = None, run: str | None = None, task: str | None = None,
                     drop_duplicates: bool = False, overwrite: bool = False,
                     only: Collection[str] | None = None,
                     split: EvaluationSides | None = None) -> ExportAccount:
    """Export as export does; returns what was written, left out and kept (ExportAccount)."""
    items = load_items(con, job=job, run=run, task=task, drop_duplicates=drop_duplicates,
                       only=only)
    write_export(items, path, fmt, overwrite=overwrite)
    written = validate_export(path, fmt)
    if written != len(items):
        raise PersonahubError(f"{path}: {written} records read back of {len(items)} written")
    return account(con, items, fmt, job=job, run=run, task=task,
                   drop_duplicates=drop_duplicates, split=split)


def export_source_file(con: duckdb.DuckDBPyConnection, path: str | Path, source: str, *,
                       fmt: str = "personahub", overwrite: bool = False) -> int:
    """Write an imported Persona Hub synthesis file back, row for row, duplicates included."""
    if fmt != "personahub":
        raise PersonahubError(f"--source-file exports the file's own rows: use --format "
                              f"personahub, not {fmt!r}")
    stored = resolve_source(con, source)
    written = 0
    with atomic_file(path, overwrite=overwrite) as f:
        for row in iter_source_rows(con, stored):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    with open(path, encoding="utf-8") as f:  # one JSON object per line
        if sum(1 for line in f if isinstance(json.loads(line), dict)) != written:
            raise PersonahubError(f"{path}: export did not read back")
    return written
