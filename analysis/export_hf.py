"""Export a job or run as a Hugging Face dataset folder in the Hub's layout.

Parquet files plus a README card naming them, so load_dataset(DIR) reads it and it uploads
unchanged. Written into a staged folder, so a failed export leaves DIR as it was.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from personahub.analysis.export import (
    EvaluationSides,
    ExportAccount,
    ExportItem,
    account,
    chat_row,
    item_columns,
    load_items,
)
from personahub.analysis.export_arrow import MESSAGES_TYPE
from personahub.core.errors import PersonahubError
from personahub.core.jobs_store import find_job
from personahub.core.outputs import atomic_file, staged_folder
from personahub.personas.store import source_counts

HUB_DATA = "data/train-00000-of-00001.parquet"
HUB_TEST = "data/test-00000-of-00001.parquet"  # the test split, when the job has an evaluation
# files the hf export writes into DIR (refused unless overwriting)
HF_FILES = ("README.md", HUB_DATA, HUB_TEST)
# what earlier versions wrote (Dataset.save_to_disk): removed from DIR by --force
_OLD_FILES = ("dataset_info.json", "state.json", "data-00000-of-00001.arrow")
INSTALL_HINT = "the hf format needs the datasets package: pip install 'personahub[hf]'"
UPLOADED = ("README.md", "data/*.parquet")  # what push_to_hub sends


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise PersonahubError(INSTALL_HINT) from None
    return datasets


def hf_table(items: Sequence[ExportItem]) -> tuple[pa.Table, list[str]]:
    """Return the rows as an Arrow table plus messages, and the content fields kept as JSON text."""
    columns, as_json = item_columns(items)
    columns["messages"] = pa.array([chat_row(item)["messages"] for item in items], MESSAGES_TYPE)
    return pa.table(columns), as_json


def _source(con: duckdb.DuckDBPyConnection, job: str | None, run: str | None) -> dict[str, object]:
    """Return what produced the items: the job's task and prompting, or the run's scenario and seed."""
    if job is not None:
        task, prompting, llm = con.execute(
            "SELECT made_by, prompting, llm FROM v_item_sources WHERE source = 'job' AND "
            "source_id = ?", [job]).fetchall()[0]
        stored = find_job(con, job)
        examples = stored.config.get("examples") if stored is not None else None
        return {"kind": "synthesis job", "id": job, "what": f"task `{task}`", "llm": llm,
                "prompting": prompting + (f" (demonstrations: {examples})" if examples else "")}
    assert run is not None
    scenario, llm = con.execute("SELECT made_by, llm FROM v_item_sources WHERE source = 'run' "
                                "AND source_id = ?", [run]).fetchall()[0]
    found = find_job(con, run)
    seed = found.seed if found is not None else None
    return {"kind": "simulation run", "id": run, "what": f"scenario `{scenario}`, seed {seed}",
            "llm": llm, "prompting": "agent prompts of the scenario's output kinds (simulation)"}


def _size_category(rows: int) -> str:
    bounds = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
              (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))
    return next((label for bound, label in bounds if rows < bound), "10M<n<100M")


def _persona_sources(con: duckdb.DuckDBPyConnection, items: Sequence[ExportItem]) -> list[tuple[str, int]]:
    """(source, personas) of the items' personas; a file by its name only, so a published card does
    not carry the exporting machine's paths.
    """
    ids = sorted({item.persona_id for item in items})
    return [(Path(s).name if "/" in s else s, n) for s, n in source_counts(con, ids)]


def _card_split_lines(splits: Mapping[str, int] | None) -> list[str]:
    """Return the card's data file entries: one train file, or each side of the split."""
    files = {"train": HUB_DATA, "test": HUB_TEST}
    return [line for side in (splits or {"train": 0}) for line in
            (f"  - split: {side}", f"    path: {files[side]}")]


def _holds(held: ExportAccount | None, archetypes: str | None) -> list[str]:
    """Return the card's section on what the export left out and kept, and why."""
    if held is None:
        return []
    lines = [f"- **Left out:** {held.of - held.written} of the {held.of} items: "
             + "; ".join(f"{n} {why}" for n, why in held.left_out) if held.left_out
             else f"- **Left out:** nothing: all {held.of} items are here."]
    lines += [f"- **Kept:** {n} {what}." for n, what in held.kept]
    if archetypes is not None:
        lines.append(f"- **Archetypes:** the run grouped its agents ({archetypes}); an "
                     "archetype's members answer from one call, so a row drawn from its pool "
                     "(`messages` alike across members) speaks for many people, not for one.")
    return ["## What this export holds", "", *lines, ""]


def dataset_card(con: duckdb.DuckDBPyConnection, items: Sequence[ExportItem], *,
                 job: str | None = None, run: str | None = None, task: str | None = None,
                 drop_duplicates: bool = False, as_json: Sequence[str] = (),
                 splits: Mapping[str, int] | None = None, evaluation: str | None = None,
                 quality: Sequence[str] = (), held: ExportAccount | None = None) -> str:
    """Return the README of an exported dataset; with splits and quality, an evaluation section; with
    held, what the export left out and kept."""
    from personahub import __version__

    source = _source(con, job, run)
    offline = source["llm"] == "offline"
    model = ("the offline engine: a seeded template generator, not a language model"
             if offline else f"`{source['llm']}`")
    tasks = sorted({item.task for item in items})
    personas = "\n".join(f"  - `{name}`: {n} personas" for name, n in _persona_sources(con, items))
    duplicates = sum(item.is_duplicate for item in items)
    lines = [
        "---", "license: other", "language:", "- en", "tags:", "- synthetic", "- personahub",
        "- persona-hub", "size_categories:", f"- {_size_category(len(items))}",
        "configs:", "- config_name: default", "  data_files:", *_card_split_lines(splits),
        "---", "",
        f"# personahub {source['kind']} {source['id']}", "",
        f"Synthetic data written by personahub {__version__} (the Persona Hub method, Tencent AI "
        f"Lab 2024: one persona per prompt) from {source['kind']} `{source['id']}`, "
        f"{source['what']}.", "",
        f"- **Rows:** {len(items)} ({', '.join(tasks) or 'none'}"
        f"{f'; only task {task}' if task else ''})",
        f"- **Model:** {model}",
        f"- **Prompting:** {source['prompting']}",
        f"- **Persona source:**\n{personas or '  - none'}",
        f"- **Near-duplicates:** {'left out' if drop_duplicates else f'{duplicates} flagged'} "
        "(`is_duplicate`: MinHash, Jaccard >= 0.9, never deleted)",
        "",
        "Columns: `source`, `source_id`, `item_id`, `persona_id`, `input_persona` (the persona "
        "text), `task`, `text` (the item as one text), `content` (a struct of the item's fields: "
        "each task's own, the others null; a tool's spec with its `input_args` list and `return` "
        "struct), `solution` (a struct `solution`, `answer`; null when not solved), "
        "`is_duplicate`, and `messages` (chat turns, user first)."
        + (f" Content fields kept as JSON text: {', '.join(f'`{n}`' for n in as_json)}."
           if as_json else ""), "",
        *_holds(held, _archetypes(con, run)),
        *(["## Evaluation", "",
            f"Split and figures of evaluation `{evaluation}` (`personahub evaluate`): "
            + ", ".join(f"{side} {n} rows" for side, n in (splits or {}).items())
            + ". Items a benchmark file flagged are in neither split unless the evaluation kept "
            "them. Shares of items carry a 95% Wilson interval.", "", *quality, ""]
          if evaluation is not None else []),
        "## Licence", "",
        "personahub's code is Apache-2.0; that licence does not decide the terms of this data. "
        "Generated text is subject to the terms of the model that wrote it, and personas taken "
        "from Tencent's Persona Hub release are CC BY-NC-SA 4.0 (non-commercial). Check both "
        "before you publish or train on it; `license: other` above is a placeholder to replace.",
    ]
    if offline:
        lines += ["", "**Note:** the offline engine fills templates with the persona's words; "
                  "this data tests pipelines and is not meant for training."]
    return "\n".join(lines) + "\n"


def _archetypes(con: duckdb.DuckDBPyConnection, run: str | None) -> str | None:
    """Return a run's archetypes in a few words (None: not a run, or a run without archetypes)."""
    if run is None:
        return None
    from personahub.sim.store import archetype_lines

    lines = archetype_lines(con, run)
    return lines[0].removeprefix("archetypes: ") if lines else None


def export_hf(con: duckdb.DuckDBPyConnection, out_dir: str | Path, *, job: str | None = None,
              run: str | None = None, task: str | None = None, drop_duplicates: bool = False,
              overwrite: bool = False, splits: Mapping[str, Collection[str]] | None = None,
              evaluation: str | None = None, quality: Sequence[str] = (),
              split: EvaluationSides | None = None) -> int:
    """Write the items of a job or run into a folder in the Hub's layout; returns the rows
    written (export_hf_accounted: with what it left out and kept)."""
    return export_hf_accounted(con, out_dir, job=job, run=run, task=task,
                               drop_duplicates=drop_duplicates, overwrite=overwrite,
                               splits=splits, evaluation=evaluation, quality=quality,
                               split=split).written


def export_hf_accounted(con: duckdb.DuckDBPyConnection, out_dir: str | Path, *,
                        job: str | None = None, run: str | None = None, task: str | None = None,
                        drop_duplicates: bool = False, overwrite: bool = False,
                        splits: Mapping[str, Collection[str]] | None = None,
                        evaluation: str | None = None, quality: Sequence[str] = (),
                        split: EvaluationSides | None = None) -> ExportAccount:
    """Write the items of a job or run into a folder in the Hub's layout.

    Args:
        con: the database.
        out_dir: the folder, already checked by the caller.
        job: the job whose items to write.
        run: the run whose items to write.
        task: only items of this task.
        drop_duplicates: leave near-duplicates out.
        overwrite: replace earlier files.
        splits: an evaluation's sides (train, test ids); None writes all as train.
        evaluation: the evaluation's id, named in the card.
        quality: the evaluation's figures as markdown lines.
        split: the evaluation's sides, so the card and the account say what was left out.

    Returns:
        The rows written (counted from the files read back), left out and kept, and why.
    """
    datasets = _datasets()
    items = load_items(con, job=job, run=run, task=task, drop_duplicates=drop_duplicates)
    parts = ({"train": items} if splits is None else
             {side: [item for item in items if item.item_id in ids]
              for side, ids in splits.items()})
    tables = {side: hf_table(part) for side, part in parts.items()}
    for table, _ in tables.values():
        try:
            datasets.Features.from_arrow_schema(table.schema)
        except (TypeError, ValueError) as exc:  # a type datasets cannot read: write nothing
            raise PersonahubError(f"{out_dir}: datasets cannot read these columns ({exc})") \
                from None
    kept = [item for part in parts.values() for item in part]
    held = dataclasses.replace(
        account(con, kept, "hf", job=job, run=run, task=task, drop_duplicates=drop_duplicates,
                split=split),
        sides=tuple((side, len(part)) for side, part in parts.items()) if splits else ())
    card = dataset_card(con, kept, job=job, run=run, task=task, drop_duplicates=drop_duplicates,
                        as_json=sorted({n for _, as_json in tables.values() for n in as_json}),
                        splits=None if splits is None else {s: len(p) for s, p in parts.items()},
                        evaluation=evaluation, quality=quality, held=held)
    files = {"train": HUB_DATA, "test": HUB_TEST}
    out_dir = Path(out_dir)
    with staged_folder(out_dir, overwrite=overwrite, names=HF_FILES + _OLD_FILES) as staged:
        (staged / "data").mkdir()
        for side, (table, _) in tables.items():
            with atomic_file(staged / files[side], overwrite=False, binary=True) as f:
                pq.write_table(table, f)
            if pq.read_metadata(staged / files[side]).num_rows != len(parts[side]):
                raise PersonahubError(f"{out_dir}: the dataset did not read back")
        with atomic_file(staged / "README.md", overwrite=False) as f:
            f.write(card)
    return held


def card_data_files(folder: str | Path) -> list[str]:
    """Return the data file paths a dataset card's YAML lists (what load_dataset reads)."""
    card = Path(folder) / "README.md"
    try:
        text = card.read_text(encoding="utf-8")
    except OSError as exc:
        raise PersonahubError(f"{card}: {exc.strerror or exc}; export with --format hf") from None
    header = text.split("---", 2)[1] if text.startswith("---") else ""
    return re.findall(r"^\s+path:\s*(\S+)\s*$", header, flags=re.MULTILINE)


def check_hub_folder(folder: str | Path) -> list[Path]:
    """Check that the card's data files exist, then return the files push_to_hub uploads."""
    folder = Path(folder)
    named = card_data_files(folder)
    if not named:
        raise PersonahubError(f"{folder}/README.md: the card names no data files (configs); "
                              "export with --format hf")
    missing = [name for name in named if not list(folder.glob(name))]
    if missing:
        raise PersonahubError(f"{folder}: the card names {missing[0]}, which is not there")
    return sorted(p for pattern in UPLOADED for p in folder.glob(pattern) if p.is_file())


def push_to_hub(dataset_dir: str | Path, repo_id: str, *, private: bool = True,
                token: str | None = None) -> str:
    """Publish an exported hf folder to the Hub as a dataset repository, unchanged.

    Uploads the card and Parquet files only, with the given token, else the stored login or
    HF_TOKEN. Private by default. Returns the repository URL.
    """
    from huggingface_hub import HfApi

    check_hub_folder(dataset_dir)
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(dataset_dir), repo_id=repo_id, repo_type="dataset",
                      allow_patterns=list(UPLOADED), commit_message="personahub export")
    return str(url)
