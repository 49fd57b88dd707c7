"""``export --format hf``: the Hub's layout (``data/*.parquet`` and a card whose YAML names them)
that ``datasets.load_dataset(DIR)`` reads, with typed struct columns, and ``push_to_hub``
uploading that same folder (``huggingface_hub`` replaced by a recorder; no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from personahub.analysis.export_hf import (
    HUB_DATA,
    card_data_files,
    check_hub_folder,
    push_to_hub,
)
from personahub.api import run_synthesis
from personahub.core.errors import PersonahubError
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke, usage_error
from tests.optional import need_hf
from tests.synth_helpers import run_default_scenario

#: a job without an evaluation: one train file and its card
ONE_SPLIT = sorted(["README.md", HUB_DATA])


@pytest.fixture(autouse=True)
def _hf() -> None:
    need_hf()


def _load(folder: Path, tmp_path: Path) -> Any:
    import datasets

    return datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "cache"))


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_job_export_loads_with_load_dataset(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    job = run_synthesis(SynthConfig(task="math_problem", n=5, solve=True, db=str(db)))
    out = tmp_path / "math_hf"
    result = invoke("export", "--db", db, "--job", job.job_id, "--format", "hf", "--out", out)
    assert result.exit_code == 0, result.output
    assert _files(out) == ONE_SPLIT
    assert card_data_files(out) == [HUB_DATA]
    dataset = _load(out, tmp_path)
    assert dataset.num_rows == 5
    row = dataset[0]
    assert row["task"] == "math_problem" and row["input_persona"]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert set(row["content"]) == {"problem", "question"} and row["content"]["question"]
    assert set(row["solution"]) == {"solution", "answer"} and row["solution"]["answer"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlicense: other")
    for said in (job.job_id, "task `math_problem`", "offline engine", "not a language model",
                 "**Prompting:** zero-shot", "**Persona source:**", "CC BY-NC-SA 4.0"):
        assert said in card, said
    assert "  - `seed`: 5 personas" in card
    # an existing export is not replaced without --force, and is with it
    again = invoke("export", "--db", db, "--job", job.job_id, "--format", "hf", "--out", out)
    assert "--force" in usage_error(again)
    forced = invoke("export", "--db", db, "--job", job.job_id, "--format", "hf", "--out", out,
                    "--force")
    assert forced.exit_code == 0 and _load(out, tmp_path / "again").num_rows == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.slow
def test_run_export_types_every_column(tmp_path: Path) -> None:
    """A run's tool specs are structs (args a list of structs, ``return`` a struct) and its
    ``solution`` a struct of nulls, not ``Value('null')``; values equal what the run stored."""
    import datasets

    db = tmp_path / "r.duckdb"
    summary = run_default_scenario(db, steps=1)
    out = tmp_path / "run_hf"
    result = invoke("export", "--db", db, "--run", summary.run_id, "--format", "hf", "--out", out)
    assert result.exit_code == 0, result.output
    dataset = _load(out, tmp_path)
    features = dataset.features
    assert features["solution"] == {"solution": datasets.Value("string"),
                                    "answer": datasets.Value("string")}
    content = features["content"]
    assert content["function_name"] == datasets.Value("string")
    assert content["return"] == {"type": datasets.Value("string"),
                                 "description": datasets.Value("string")}
    assert content["input_args"] == datasets.List({"name": datasets.Value("string"),
                                                   "type": datasets.Value("string"),
                                                   "description": datasets.Value("string")})
    assert content["depend"] == datasets.List(datasets.Value("string"))
    con = duckdb.connect(str(db), read_only=True)
    stored = {r[0]: json.loads(r[1]) for r in con.execute(
        "SELECT emission_id, content FROM emissions WHERE run_id = ?", [summary.run_id]).fetchall()}
    con.close()
    assert dataset.num_rows == len(stored)
    for row in dataset:
        exported = {k: v for k, v in row["content"].items() if v is not None}
        assert exported == stored[row["item_id"]], row["task"]
        assert row["solution"] is None
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "scenario `riverside_town`" in card
    sources = card.split("**Persona source:**")[1].split("- **Near")[0]
    # the shipped seed personas by their one source name, never this machine's paths
    assert "`seed`: 120 personas" in sources and "/" not in sources


class _Recorder:
    """Stands in for ``huggingface_hub.HfApi``: records what would be created and uploaded."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, token: str | None = None) -> None:
        self.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, **kwargs: Any) -> None:
        self.calls.append(("upload_folder", kwargs))


def _uploaded(kwargs: dict[str, Any]) -> list[str]:
    """The files ``upload_folder`` sends: those of the folder its allow_patterns match."""
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(kwargs["folder_path"])
    return sorted(filter_repo_objects(_files(folder), allow_patterns=kwargs["allow_patterns"]))


@pytest.mark.slow
def test_push_to_hub_uploads_the_export_folder_as_it_is(tmp_path, monkeypatch) -> None:
    import huggingface_hub

    db = tmp_path / "p.duckdb"
    job = run_synthesis(SynthConfig(task="instruction", n=3, db=str(db)))
    out = tmp_path / "hf"
    assert invoke("export", "--db", db, "--job", job.job_id, "--format", "hf",
                  "--out", out).exit_code == 0
    (out / "notes.txt").write_text("mine, not for the Hub\n")
    _Recorder.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", _Recorder)
    url = push_to_hub(out, "someone/instructions", token="hf_test")
    assert url == "https://huggingface.co/datasets/someone/instructions"
    names = [name for name, _ in _Recorder.calls]
    assert names == ["init", "create_repo", "upload_folder"]
    create, upload = _Recorder.calls[1][1], _Recorder.calls[2][1]
    assert create["repo_type"] == "dataset" and create["private"] is True
    assert upload["repo_type"] == "dataset" and Path(upload["folder_path"]) == out
    assert _uploaded(upload) == ONE_SPLIT  # the card and the data it names, nothing else
    assert [str(p.relative_to(out)) for p in check_hub_folder(out)] == ONE_SPLIT


def test_push_refuses_a_folder_whose_card_names_missing_data(tmp_path, monkeypatch) -> None:
    import huggingface_hub

    _Recorder.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", _Recorder)
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                      f"  - split: train\n    path: {HUB_DATA}\n---\n# card\n")
    (folder / "data-00000-of-00001.arrow").write_bytes(b"a save_to_disk shard")
    with pytest.raises(PersonahubError, match=f"the card names {HUB_DATA}, which is not there"):
        push_to_hub(folder, "someone/x")
    (folder / "README.md").write_text("# no YAML header\n")
    with pytest.raises(PersonahubError, match="names no data files"):
        push_to_hub(folder, "someone/x")
    assert _Recorder.calls == []  # nothing was created or sent


@pytest.mark.slow
def test_hf_needs_one_job_or_run(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    run_default_scenario(db, steps=1)
    result = invoke("export", "--db", db, "--format", "hf", "--out", tmp_path / "x")
    assert "exactly one of --job or --run" in usage_error(result)


def test_npc_rows_hold_the_npc_line_as_the_assistant_turn(tmp_path: Path) -> None:
    """An NPC's ``messages`` alternate: the player meets the character (user), the character
    says its line (assistant); not one user turn holding everything."""
    import pyarrow.parquet as pq

    db = tmp_path / "npc.duckdb"
    assert invoke("synthesize", "npc", "--n", 3, "--db", db, "--preview", 0).exit_code == 0
    job = duckdb.connect(str(db), read_only=True).execute(
        "SELECT job_id FROM synth_jobs").fetchone()[0]  # type: ignore[index]
    out = tmp_path / "npc_hf"
    result = invoke("export", "--db", db, "--job", job, "--format", "hf", "--out", out)
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out / HUB_DATA).to_pylist()
    assert len(rows) == 3
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["messages"][1]["content"] == row["content"]["line"]
        assert row["content"]["name"] in row["messages"][0]["content"]
