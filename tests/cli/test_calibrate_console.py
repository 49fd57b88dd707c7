"""What ``personahub calibrate`` prints: by default lines that fit 100 columns (the verdict, a
row per method with its intervals, the price of archetypes in words), every table under -v;
the scoring phase named while it runs; and words that say what each figure is."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from personahub.analysis.calibration_console import fitted, method_table
from personahub.analysis.calibration_ppi import ppi_lines
from personahub.analysis.calibration_report import MARKS
from personahub.analysis.calibration_verdict import _share_above, _warnings
from personahub.pipelines.calibrate_scores import elicit_lines, temperature_lines
from tests.cli_helpers import invoke
from tests.pipelines.calibrate_fixtures import FOUR_COUNTS, FOUR_QUESTIONS, make_population, write_survey


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One calibration with several methods, archetypes and tempering, printed both ways."""
    tmp = tmp_path_factory.mktemp("console")
    db = tmp / "hub.duckdb"
    population = make_population(tmp, db, n=80)
    survey = write_survey(tmp / "survey.csv", FOUR_QUESTIONS, FOUR_COUNTS)
    args = ["calibrate", survey, "--population", population, "--n", 6, "--db", db,
            "--no-persona-n", 2, "--elicit", "sample", "--elicit", "distribution",
            "--elicit", "few-shot:1", "--archetypes", 2, "--dispersion", "temper"]
    brief = invoke(*args)
    assert brief.exit_code == 0, brief.output
    full = invoke(*args, "--seed", 1, "-v")  # -v: every table, and a progress line per update
    assert full.exit_code == 0, full.output
    return {"brief": brief, "full": full, "db": db, "tmp": tmp}


@pytest.mark.slow
def test_the_default_console_fits_100_columns(calibrated: dict[str, Any]) -> None:
    """A calibration with several methods printed tables 300 characters wide."""
    lines = calibrated["brief"].stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    text = "\n".join(lines)
    assert "verdict: overall: " in text
    header = next(line for line in lines if line.startswith("row "))
    assert header.split() == ["row", "mean", "over", "questions", "over", "panel", "answers",
                              "questions", "calls"]
    rows = {line.split()[0] for line in lines[lines.index(header) + 1:] if line[:1].strip()}
    assert {"model[persona]", "model[distribution]", "model[few-shot:1]",
            "model[archetypes:2]", "uniform", "no_persona", "human_resample"} <= rows
    assert "dispersion (simulated / human" not in text  # under -v and in the report
    assert "personahub report --calibration " in text


@pytest.mark.slow
def test_resume_prints_the_same_console(calibrated: dict[str, Any]) -> None:
    job_id = calibrated["brief"].stdout.split()[1].rstrip(":")
    result = invoke("resume", job_id, "--db", calibrated["db"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100 and any(line.startswith("row ") for line in lines)


@pytest.mark.slow
def test_verbose_prints_every_table(calibrated: dict[str, Any]) -> None:
    text = calibrated["full"].stdout
    assert "dispersion (simulated / human" in text and "effective panel size of" in text
    assert "the price of archetypes (archetype row vs per-agent sample" in text


@pytest.mark.slow
def test_the_archetype_price_has_a_verdict_in_words(calibrated: dict[str, Any]) -> None:
    lines = calibrated["brief"].stdout.splitlines()
    start = lines.index("the price of archetypes:")
    said = " ".join(line.strip() for line in lines[start + 1:start + 5])
    assert said.startswith("archetypes:2: ") and " calls instead of " in said
    assert any(words in said for words in ("the saving costs accuracy", "cheaper and no worse",
                                           "the saving costs no accuracy"))


@pytest.mark.slow
def test_the_report_holds_what_the_default_console_leaves_out(calibrated: dict[str, Any]) -> None:
    job_id = calibrated["brief"].stdout.split()[1].rstrip(":")
    out = calibrated["tmp"] / "report"
    result = invoke("report", "--calibration", job_id, "--db", calibrated["db"], "--out", out)
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<h2>The price of archetypes</h2>" in page and "archetypes:2: " in page
    assert "Effective panel size" in page and "dispersion" in page


@pytest.mark.slow
def test_calibrate_names_the_scoring_phase(calibrated: dict[str, Any]) -> None:
    """It sat at "N/N, ETA 0:00" while it scored, unlabelled."""
    assert "· every answer in; scoring them (scores, intervals, verdict) " in calibrated["full"].stderr


def test_the_two_temperatures_have_labels_of_their_own() -> None:
    """--dispersion temper's two halves were both labelled "persona:tempered"."""
    table = pd.DataFrame({"steering": ["persona:tempered"] * 2, "temperature": [0.87, 0.39],
                          "questions": [5, 5]})
    (line,) = temperature_lines(table)
    assert "half 1: T=0.87 on its 5 questions" in line and "half 2: T=0.39" in line


def test_logprobs_calls_count_the_question_x_group_pairs_asked() -> None:
    """"logprobs 770, 1.29 per question x group" divided by the pairs scored, not asked."""
    summary = SimpleNamespace(elicit=("sample", "logprobs"), calls={"sample": 40, "logprobs": 16},
                              answered_calls={"sample": 40, "logprobs": 16},
                              cells={"sample": 16, "logprobs": 4}, archetypes=())
    line = elicit_lines(summary)[0]
    assert "logprobs 16, one per question x group asked (4 scored)" in line
    assert "4.00" not in line


def _rows(counts: list[list[float]], sim_n: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"who": "model[x]", "dispersion": 0.5, "sim_n": sim_n,
                         "counts": [str(c) for c in counts]})


def test_a_refusal_share_reads_above_its_threshold() -> None:
    """"25% of its answers (above 25%)" read as at, not above."""
    assert _share_above(0.2526, 0.25) == "25.3%" and _share_above(0.31, 0.25) == "31%"
    (line,) = _warnings(_rows([[30, 40, 24], [31, 40, 24]], [70, 71]), ["model[x]"])
    assert "in 25.4% of its answers (above 25%)" in line


def test_stated_shares_are_not_called_answers() -> None:
    """The refusal warning read a stated distribution's refusal share as answers chosen."""
    (line,) = _warnings(_rows([[0.3, 0.3, 0.4], [0.35, 0.25, 0.4]], [0.6, 0.6]), ["model[x]"])
    assert "of its stated shares on refusal options" in line and "answers" not in line


def test_the_ceilings_are_named_for_what_they_are() -> None:
    """The report's "noise floor" (about 0.99) sat above its "ceiling" (about 0.79)."""
    labels = [label for _, _, label in MARKS.values()]
    assert labels == ["best the data allows (human_resample)",
                      "best at this panel size (perfect_panel)"]
    assert not any("floor" in label for label in labels)


def test_a_zero_width_interval_is_not_printed_as_one() -> None:
    """PPI printed "simulated 0.28 [0.28, 0.28]" where no answer varied."""
    row = {"question_id": "Q", "attribute": "SEX", "group": "Female", "option": "Yes",
           "humans_n": 5, "sim_n": 6, "ppi": 1.0, "ppi_low": 1.0, "ppi_high": 1.0,
           "humans": 1.0, "humans_low": 1.0, "humans_high": 1.0, "simulated": 0.5,
           "simulated_low": 0.19, "simulated_high": 0.81}
    line = ppi_lines(pd.DataFrame([row]))[2]
    assert "[1.00, 1.00]" not in line and "1.00 (no interval: its answers do not vary)" in line
    assert "simulated 0.50 [0.19, 0.81]" in line


def test_the_method_table_has_a_row_per_source_within_100_columns() -> None:
    intervals = pd.DataFrame({
        "who": ["model[persona]", "model[distribution]", "uniform", "no_persona",
                "human_resample", "perfect_panel[persona]", "human_overall_panel[persona]"],
        "attribute": "overall", "mean": [0.84, 0.82, 0.87, 0.85, 0.97, 0.92, 0.82],
        "low": [0.82, 0.79, 0.85, 0.83, 0.96, 0.91, 0.80],
        "high": [0.86, 0.85, 0.89, 0.87, 0.97, 0.92, 0.85], "questions": 10})
    panel = pd.DataFrame({"who": ["model[persona]"], "attribute": ["overall"],
                          "panel_low": [0.821], "panel_high": [0.861]})
    lines = method_table(intervals, panel, ("persona",),
                         {"sample": 600, "distribution": 40, "no_persona": 200})
    assert max(len(line) for line in lines) <= 100
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line[:1].strip()}
    assert rows["model[persona]"] == ["0.840", "[0.820,", "0.860]", "[0.821,", "0.861]", "10",
                                      "600"]
    assert rows["model[distribution]"][-1] == "40" and rows["no_persona"][-1] == "200"
    assert "human_overall_panel[persona]" not in rows  # under -v only
    assert any("best the data allows" in line for line in lines)
    assert fitted(["x " * 80]) == ["x " * 49 + "x", "  " + "x " * 29 + "x"]
