"""`personahub report`: a run's and a job's report, read as a person would (headless Chromium)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from personahub.analysis.report import write_report
from personahub.api import run_synthesis
from personahub.cli.app import app
from personahub.core.errors import PersonahubError
from personahub.pipelines.synthesize import SynthConfig
from tests.cli_helpers import invoke, one_line_error
from tests.optional import CHROMIUM, CHROMIUM_ARGS, need_browser


def ro(db: object) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db), read_only=True)


@pytest.mark.slow
def test_run_report_opens_with_its_facts(launch_db: dict, tmp_path: Path) -> None:
    con = ro(launch_db["db"])
    index = write_report(con, tmp_path / "r", run_id=launch_db["run"])
    con.close()
    page = index.read_text(encoding="utf-8")
    head = page[:page.index("<h2>")]  # the facts come before any section
    for fact in ("product_launch", "<th>seed</th><td>21</td>", "offline engine — not a language model",
                 "<th>model calls</th>", "<th>failed calls</th>", "<th>tokens</th>", "<th>cost</th>"):
        assert fact in head, fact
    assert "shares per step" in page and "E1 step 2" in page
    assert "purchase_intent" in page and "definitely" in page


def test_job_report(launch_db: dict, tmp_path: Path) -> None:
    out = tmp_path / "job"
    result = CliRunner().invoke(app, ["report", "--db", str(launch_db["db"]), "--out", str(out),
                                      "--job", launch_db["job"]])
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f"synthesis job {launch_db['job']}" in page
    for section in ("Items per task", "Failures", "Near-duplicate rate", "Diversity"):
        assert f"<h2>{section}" in page, section
    assert "Emissions over steps" not in page and "Relationship graph" not in page
    assert "offline engine — not a language model" in page
    assert {p.name for p in out.iterdir()} == {"index.html", "duplicate_rate.png", "diversity.png"}


def test_run_report_leaves_out_the_synthesis_jobs_beside_it(launch_db: dict,
                                                          tmp_path: Path) -> None:
    """The database holds a run and a math_problem job: the run's report (the default) charts
    the run's near-duplicates and diversity only."""
    out = tmp_path / "run"
    result = invoke("report", "--db", launch_db["db"], "--out", out)
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f"run {launch_db['run']}" in page
    dup = page[page.index("<h2>Near-duplicate rate"):page.index("<h2>Degree distribution")]
    assert "<td>run</td>" in dup and "<td>job</td>" not in dup
    assert launch_db["job"] not in page and "synth math_problem" not in page
    assert "run npc_dialogue" in page


def test_report_of_a_database_with_only_synthesis_jobs(tmp_path: Path) -> None:
    """No run: the report is the latest synthesis job's, and says so; not a page saying "No
    run in the database". A database with neither is one error line."""
    db = tmp_path / "jobs.duckdb"
    run_synthesis(SynthConfig(task="instruction", n=4, db=str(db)))
    job = run_synthesis(SynthConfig(task="math_problem", n=4, db=str(db)))
    result = invoke("report", "--db", db, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert f"synthesis job {job.job_id}" in page and "No run in the database" not in page
    assert "synth math_problem" in page and "synth instruction" not in page
    empty = tmp_path / "empty.duckdb"
    people = tmp_path / "people.jsonl"
    people.write_text('{"persona": "A ferry pilot on the wide river who knows every bank"}\n',
                      encoding="utf-8")
    assert invoke("personas", "import", people, "--db", empty).exit_code == 0
    error = one_line_error(invoke("report", "--db", empty, "--out", tmp_path / "e"))
    assert "nothing to report" in error and not (tmp_path / "e").exists()


def test_report_refuses_run_and_job_together(launch_db: dict, tmp_path: Path) -> None:
    con = ro(launch_db["db"])
    with pytest.raises(PersonahubError, match="give one"):
        write_report(con, tmp_path / "x", run_id=launch_db["run"], job_id=launch_db["job"])
    with pytest.raises(PersonahubError, match="--job nope: not found"):
        write_report(con, tmp_path / "y", job_id="nope")
    con.close()


def _non_blank(png: bytes) -> bool:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    low, high = image.getextrema()
    return high - low > 64 and sum(image.histogram()[:200]) > 500  # dark pixels: drawn


@pytest.mark.slow
def test_report_renders_in_chromium(launch_db: dict, tmp_path: Path) -> None:
    need_browser()
    from playwright.sync_api import sync_playwright

    con = ro(launch_db["db"])
    index = write_report(con, tmp_path / "r", run_id=launch_db["run"])
    con.close()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            text = page.inner_text("body")
            for fact in ("product_launch", "offline engine — not a language model", "seed\t21",
                         "model calls", "failed calls", "tokens", "cost"):
                assert fact in text, fact
            assert re.search(r"dates\t\d{4}-\d\d-\d\d", text)
            images = page.query_selector_all("img")
            assert len(images) >= 6
            for image in images:
                assert image.evaluate("i => i.complete && i.naturalWidth > 0"), image.get_attribute("src")
                assert _non_blank(image.screenshot()), image.get_attribute("src")
            assert _non_blank(page.screenshot(full_page=True))
        finally:
            browser.close()
