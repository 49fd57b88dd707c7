"""Export a synthesis job or a simulation run as a Hugging Face ``datasets`` dataset, with a card.

``export --format hf --out DIR`` writes ``Dataset.save_to_disk`` files (one shard) and a
``README.md`` dataset card into DIR: what produced the data (personahub version, job or run,
task or scenario), the model, the prompting, where the personas came from, and a licence note.
The rows are the Parquet export's columns (``analysis.export.parquet_table``) plus ``messages``,
the chat-format turns. The files are written into a hidden folder next to DIR, read back with
``datasets.load_from_disk``, and only then moved into place, so a failed export leaves DIR as
it was.

``push_to_hub`` publishes such a folder: ``hub_folder`` lays it out as a Hub dataset repository
(``data/train-00000-of-00001.parquet`` and the card), which ``huggingface_hub`` uploads. Needs
the ``[hf]`` extra (``pip install 'personahub[hf]'``).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from personahub.analysis.export import ExportItem, chat_row, load_items, parquet_table
from personahub.core.errors import PersonahubError
from personahub.core.jobs_store import find_job

if TYPE_CHECKING:
    import datasets

#: the files ``export --format hf`` writes into DIR (``check_output`` refuses to overwrite them)
HF_FILES = ("README.md", "dataset_info.json", "state.json", "data-00000-of-00001.arrow")
HUB_DATA = "data/train-00000-of-00001.parquet"
INSTALL_HINT = "the hf format needs the datasets package: pip install 'personahub[hf]'"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise PersonahubError(INSTALL_HINT) from None
    return datasets


def hf_dataset(items: Sequence[ExportItem]) -> datasets.Dataset:
    """The items as a ``datasets.Dataset``: the Parquet columns plus ``messages`` (chat turns)."""
    columns = parquet_table(items).to_pydict()
    columns["messages"] = [chat_row(item)["messages"] for item in items]
    return _datasets().Dataset.from_dict(columns)


def _source(con: duckdb.DuckDBPyConnection, job: str | None, run: str | None) -> dict[str, Any]:
    """What produced the items: the job's task and prompting, or the run's scenario and seed."""
    if job is not None:
        task, prompting, llm = con.execute(
            "SELECT task, prompting, llm FROM synth_jobs WHERE job_id = ?", [job]).fetchall()[0]
        stored = find_job(con, job)
        examples = stored.config.get("examples") if stored is not None else None
        return {"kind": "synthesis job", "id": job, "what": f"task `{task}`", "llm": llm,
                "prompting": prompting + (f" (demonstrations: {examples})" if examples else "")}
    assert run is not None
    scenario, llm = con.execute("SELECT scenario, llm FROM runs WHERE run_id = ?",
                                [run]).fetchall()[0]
    found = find_job(con, run)
    seed = found.seed if found is not None else None
    return {"kind": "simulation run", "id": run, "what": f"scenario `{scenario}`, seed {seed}",
            "llm": llm, "prompting": "agent prompts of the scenario's output kinds (simulation)"}


def _size_category(rows: int) -> str:
    """The Hub's ``size_categories`` value for ``rows``."""
    bounds = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
              (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))
    return next((label for bound, label in bounds if rows < bound), "10M<n<100M")


def _persona_sources(con: duckdb.DuckDBPyConnection, items: Sequence[ExportItem]) -> list[tuple[str, int]]:
    """(source, personas) of the items' personas; a file source by its name only, so a card
    published on the Hub does not carry the exporting machine's paths."""
    ids = sorted({item.persona_id for item in items})
    return [(Path(str(s)).name if "/" in str(s) else str(s), int(n)) for s, n in con.execute(
        "SELECT coalesce(source, 'unknown'), count(*) FROM personas WHERE list_contains(?, persona_id) "
        "GROUP BY 1 ORDER BY 2 DESC, 1", [ids]).fetchall()]


def dataset_card(con: duckdb.DuckDBPyConnection, items: Sequence[ExportItem], *,
                 job: str | None = None, run: str | None = None, kind: str | None = None,
                 drop_duplicates: bool = False) -> str:
    """The ``README.md`` of an exported dataset (Hub card: YAML header, then prose)."""
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
        "configs:", "- config_name: default", "  data_files:", "  - split: train",
        f"    path: {HUB_DATA}", "---", "",
        f"# personahub {source['kind']} {source['id']}", "",
        f"Synthetic data written by personahub {__version__} (the Persona Hub method, Tencent AI "
        f"Lab 2024: one persona per prompt) from {source['kind']} `{source['id']}`, "
        f"{source['what']}.", "",
        f"- **Rows:** {len(items)} ({', '.join(tasks) or 'none'}"
        f"{f'; only kind {kind}' if kind else ''})",
        f"- **Model:** {model}",
        f"- **Prompting:** {source['prompting']}",
        f"- **Persona source:**\n{personas or '  - none'}",
        f"- **Near-duplicates:** {'left out' if drop_duplicates else f'{duplicates} flagged'} "
        "(`is_duplicate`: MinHash, Jaccard >= 0.9, never deleted)",
        "",
        "Columns: `source`, `source_id`, `item_id`, `persona_id`, `input_persona` (the persona "
        "text), `task`, `text`, `content` and `solution` (JSON text), `is_duplicate`, and "
        "`messages` (chat turns, user first).", "",
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


def _move_into(staged: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.replace(staged, out_dir)
        return
    for entry in staged.iterdir():
        os.replace(entry, out_dir / entry.name)
    staged.rmdir()


def export_hf(con: duckdb.DuckDBPyConnection, out_dir: str | Path, *, job: str | None = None,
              run: str | None = None, kind: str | None = None,
              drop_duplicates: bool = False) -> int:
    """Write the items of a job or run as a ``save_to_disk`` dataset with its card into
    ``out_dir`` (checked by the caller: ``check_output(kind="dir", names=HF_FILES)``); returns
    the row count, after reading the dataset back."""
    datasets = _datasets()
    items = load_items(con, job=job, run=run, kind=kind, drop_duplicates=drop_duplicates)
    out_dir = Path(out_dir)
    staged = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(8)}.tmp")
    try:
        hf_dataset(items).save_to_disk(str(staged), num_shards=1)
        (staged / "README.md").write_text(dataset_card(
            con, items, job=job, run=run, kind=kind, drop_duplicates=drop_duplicates), encoding="utf-8")
        if datasets.load_from_disk(str(staged)).num_rows != len(items):
            raise PersonahubError(f"{out_dir}: the dataset did not read back")
        _move_into(staged, out_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return len(items)


def hub_folder(dataset_dir: str | Path, repo_dir: str | Path) -> Path:
    """Lay out an exported dataset as a Hub dataset repository in ``repo_dir`` (created; must
    not exist): ``data/train-00000-of-00001.parquet`` and the card as ``README.md``."""
    datasets = _datasets()
    repo = Path(repo_dir)
    if repo.exists():
        raise PersonahubError(f"{repo}: exists; give a new folder")
    dataset = datasets.load_from_disk(str(dataset_dir))
    (repo / "data").mkdir(parents=True)
    dataset.to_parquet(str(repo / HUB_DATA))
    shutil.copyfile(Path(dataset_dir) / "README.md", repo / "README.md")
    return repo


def push_to_hub(dataset_dir: str | Path, repo_id: str, *, private: bool = True,
                token: str | None = None, staging: str | Path | None = None) -> str:
    """Publish an ``export --format hf`` folder to the Hugging Face Hub as dataset ``repo_id``.

    The repository is laid out locally first (``hub_folder``, in ``staging`` or a temporary
    folder), then uploaded with ``huggingface_hub`` (the token: ``token``, else the one
    ``huggingface-cli login`` stored or ``HF_TOKEN``). Private unless ``private=False``.
    Returns the repository URL.
    """
    import tempfile

    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as scratch:
        repo = hub_folder(dataset_dir, Path(staging) if staging else Path(scratch) / "repo")
        api = HfApi(token=token)
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(repo), repo_id=repo_id, repo_type="dataset",
                          commit_message="personahub export")
        return str(url)
