"""``export --format hf``: a datasets folder with its card that ``load_from_disk`` reads, and the
Hub repository layout ``push_to_hub`` uploads (built locally; no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personahub.analysis.export_hf import HF_FILES, HUB_DATA, hub_folder
from personahub.api import run_synthesis
from personahub.pipelines.synthesize import SynthOptions
from tests.cli_helpers import invoke, one_line_error
from tests.optional import need_hf
from tests.synth_helpers import run_default_scenario


@pytest.fixture(autouse=True)
def _hf() -> None:
    need_hf()


@pytest.mark.slow
def test_job_export_loads_with_load_from_disk(tmp_path: Path) -> None:
    import datasets

    db = tmp_path / "h.duckdb"
    job = run_synthesis(SynthOptions(task="math_problem", n=5, solve=True, db=str(db)))
    out = tmp_path / "math_hf"
    result = invoke("export", "--db", db, "--job", job.job_id, "--format", "hf", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(HF_FILES)
    dataset = datasets.load_from_disk(str(out))
    assert dataset.num_rows == 5
    row = dataset[0]
    assert row["task"] == "math_problem" and row["input_persona"]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert json.loads(row["content"])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlicense: other")
    for said in (job.job_id, "task `math_problem`", "offline engine", "not a language model",
                 "**Prompting:** zero-shot", "**Persona source:**", "CC BY-NC-SA 4.0"):
        assert said in card, said
    assert "  - `seed`: 5 personas" in card
    # an existing export is not replaced without --force, and is with it
    again = invoke("export", "--db", db, "--job", job.job_id, "--format", "hf", "--out", out)
    assert "--force" in one_line_error(again)
    forced = invoke("export", "--db", db, "--job", job.job_id, "--format", "hf", "--out", out, "--force")
    assert forced.exit_code == 0 and datasets.load_from_disk(str(out)).num_rows == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.slow
def test_run_export_and_hub_layout(tmp_path: Path) -> None:
    import datasets

    db = tmp_path / "r.duckdb"
    summary = run_default_scenario(db, steps=1)
    out = tmp_path / "run_hf"
    result = invoke("export", "--db", db, "--run", summary.run_id, "--format", "hf", "--out", out,
                    "--kind", "instruction")
    assert result.exit_code == 0, result.output
    dataset = datasets.load_from_disk(str(out))
    assert dataset.num_rows == summary.emissions_by_kind["instruction"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "scenario `riverside_town`" in card
    sources = card.split("**Persona source:**")[1].split("- **Near")[0]
    assert ".jsonl`" in sources and "/" not in sources  # file names, not this machine's paths
    repo = hub_folder(out, tmp_path / "repo")  # what push_to_hub uploads
    assert (repo / HUB_DATA).is_file() and (repo / "README.md").is_file()
    as_hub = datasets.load_dataset(str(repo), split="train", cache_dir=str(tmp_path / "cache"))
    assert as_hub.num_rows == dataset.num_rows
    assert as_hub.column_names == dataset.column_names


def test_hf_needs_one_job_or_run(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    run_default_scenario(db, steps=1)
    result = invoke("export", "--db", db, "--format", "hf", "--out", tmp_path / "x")
    assert "exactly one of --job or --run" in one_line_error(result)
