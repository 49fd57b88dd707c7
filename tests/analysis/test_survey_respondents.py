"""Human answers as they arrive: one row per respondent, CSV or Parquet, with
an optional weight column, aggregated into the survey model; and a long CSV with one row per
respondent (``count`` 1), whose repeated rows add up."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personahub.analysis.calibration_scores import score_survey
from personahub.analysis.survey import OVERALL
from personahub.analysis.survey_csv import read_long_csv
from personahub.analysis.survey_read import read_survey
from personahub.analysis.survey_respondents import read_respondents
from personahub.core.errors import InputFileError
from tests.cli_helpers import invoke, one_line_error
from tests.pipelines.calibrate_fixtures import make_population

SAFE = ["Very safe", "Somewhat safe", "Not safe", "Refused"]
WHY = ["Commuting", "Exercise", "Fun"]
CODEBOOK = ("question_id,question,options,ordinal\n"
            "SAFE,How safe is your street?,Very safe | Somewhat safe | Not safe | Refused,1 | 2 | 3\n"
            "WHY,Why a bicycle?,Commuting | Exercise | Fun,\n")


def _people(n: int = 40, seed: int = 3) -> pd.DataFrame:
    """Seeded respondents: sex, party, a weight and two answers (some left empty)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "respondent_id": [f"r{i}" for i in range(n)],
        "sex": rng.choice(["Female", "Male"], n),
        "party": rng.choice(["Democrat", "Republican", ""], n),
        "weight": rng.uniform(0.2, 3.0, n).round(3),
        "SAFE": rng.choice(SAFE + [""], n),
        "WHY": rng.choice(WHY, n)})


def _respondent_csv(path: Path, people: pd.DataFrame, codebook: bool = True) -> Path:
    people.to_csv(path, index=False)
    if codebook:
        path.with_name(f"{path.stem}.questions.csv").write_text(CODEBOOK, encoding="utf-8")
    return path


def _weighted_long_csv(path: Path, people: pd.DataFrame) -> Path:
    """The same answers as weighted counts (weights rescaled to a mean of 1), long layout."""
    scale = len(people) / people["weight"].sum()
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question_id", "question", "options", "ordinal", "attribute", "group",
                         "option", "count"])
        for qid, text, options, ordinal in (("SAFE", "How safe is your street?", SAFE, "1 | 2 | 3"),
                                            ("WHY", "Why a bicycle?", WHY, "")):
            answered = people[people[qid] != ""]
            for attribute in ("sex", "party", "Overall"):
                groups = (answered.groupby(attribute) if attribute != "Overall"
                          else [("all", answered)])
                for group, rows in groups:
                    if group == "":
                        continue
                    for option in options:
                        count = float(rows.loc[rows[qid] == option, "weight"].sum()) * scale
                        writer.writerow([qid, text, " | ".join(options), ordinal, attribute,
                                         group, option, count])
    return path


def test_a_weighted_respondent_file_equals_its_weighted_counts(tmp_path: Path) -> None:
    people = _people()
    by_row = read_survey(_respondent_csv(tmp_path / "people.csv", people))
    by_count = read_survey(_weighted_long_csv(tmp_path / "long.csv", people))
    assert by_row.questions == by_count.questions
    assert by_row.questions["SAFE"].is_ordinal and by_row.questions["SAFE"].refusals == ("Refused",)
    assert set(by_row.counts) == set(by_count.counts)
    for qid, groups in by_count.counts.items():
        assert set(by_row.counts[qid]) == set(groups)
        for key, vector in groups.items():
            np.testing.assert_allclose(by_row.counts[qid][key], vector, rtol=1e-12)
    # the weighted counts sum to the respondents who answered, not to the weights' sum
    assert sum(by_row.counts["WHY"][(OVERALL, (OVERALL,))]) == pytest.approx(len(people))
    assert "weighted by column weight" in by_row.weighting
    model: dict[tuple[str, str, tuple[str, ...]], list[float]] = {
        ("SAFE", "sex", ("Female",)): [3, 1, 1, 0], ("WHY", "party", ("Democrat",)): [1, 2, 2]}
    keys = ["question_id", "attribute", "group", "source"]
    by_row_scores, by_count_scores = (score_survey(s, model, seed=1).sort_values(keys)
                                      .reset_index(drop=True) for s in (by_row, by_count))
    assert by_row_scores["representativeness"].notna().sum() > 10
    pd.testing.assert_frame_equal(by_row_scores, by_count_scores)


def test_without_weight_each_respondent_counts_one_and_parquet_reads_alike(tmp_path: Path) -> None:
    people = _people().drop(columns="weight")
    survey = read_respondents(_respondent_csv(tmp_path / "people.csv", people))
    assert survey.weighting.startswith("unweighted")
    female = people[(people["sex"] == "Female") & (people["SAFE"] != "")]
    expected = [float((female["SAFE"] == o).sum()) for o in SAFE]
    assert list(survey.counts["SAFE"][("sex", ("Female",))]) == expected
    people.to_parquet(tmp_path / "people.parquet", index=False)
    # the codebook beside it (people.questions.csv) serves the Parquet file too
    assert read_survey(tmp_path / "people.parquet") == survey


def test_without_a_codebook_questions_are_nominal_over_the_values_seen(tmp_path: Path) -> None:
    survey = read_respondents(_respondent_csv(tmp_path / "p.csv", _people(), codebook=False))
    assert survey.questions["SAFE"].options == ("Not safe", "Somewhat safe", "Very safe", "Refused")
    assert not survey.questions["SAFE"].is_ordinal
    assert "respondent_id" not in survey.questions  # an identifier, not a question


@pytest.mark.parametrize(("edit", "where", "reason"), [
    (lambda t: t.replace(",1.0,", ",heavy,", 1), ":2: ", "column weight: weight 'heavy' is not a number"),
    (lambda t: t.replace(",1.0,", ",-1,", 1), ":2: ", "column weight: weight '-1' must be"),
    (lambda t: t.replace("Very safe", "Safe-ish", 1), ":2: ", "column SAFE: 'Safe-ish' is not an option"),
    (lambda t: t.replace("Exercise\n", "Exercise,x\n", 1), ":3: ", "expected 4 fields, got 5"),
])
def test_bad_respondent_files_name_file_line_and_column(tmp_path: Path, edit: object, where: str,
                                                        reason: str) -> None:
    path = tmp_path / "p.csv"
    path.with_name("p.questions.csv").write_text(CODEBOOK, encoding="utf-8")
    path.write_text(edit("sex,weight,SAFE,WHY\nFemale,1.0,Very safe,Fun\n"  # type: ignore[operator]
                         "Male,1.0,Very safe,Exercise\n"), encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        read_survey(path)
    assert str(info.value).startswith(f"{path}{where}") and reason in str(info.value)
    assert "\n" not in str(info.value)


@pytest.fixture
def hub(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "hub.duckdb"
    return db, make_population(tmp_path, db, n=30)


@pytest.mark.slow
def test_calibrate_reads_respondent_files_and_says_if_weighted(tmp_path: Path,
                                                                hub: tuple[Path, str]) -> None:
    db, population = hub
    path = _respondent_csv(tmp_path / "people.csv", _people())
    result = invoke("calibrate", path, "--population", population, "--n", 3, "--no-persona-n", 1,
                    "--db", db)
    assert result.exit_code == 0, result.output
    assert "human answers: one row per respondent, weighted by column weight" in result.stdout
    unweighted = _respondent_csv(tmp_path / "plain.csv", _people().drop(columns="weight"))
    result = invoke("calibrate", unweighted, "--population", population, "--n", 3,
                    "--no-persona-n", 1, "--db", db)
    assert result.exit_code == 0, result.output
    assert "human answers: one row per respondent, unweighted" in result.stdout
    bad = tmp_path / "bad.csv"
    bad.with_name("bad.questions.csv").write_text(CODEBOOK, encoding="utf-8")
    bad.write_text("sex,weight,SAFE,WHY\nFemale,lots,Very safe,Fun\n", encoding="utf-8")
    line = one_line_error(invoke("calibrate", bad, "--population", population, "--db", db))
    assert f"{bad}:2: column weight" in line


def test_a_long_csv_with_one_row_per_respondent_sums_its_counts(tmp_path: Path,
                                                               hub: tuple[Path, str]) -> None:
    db, population = hub
    head = "question_id,question,options,attribute,group,option,count\n"
    row = "OFTEN,How often?,Never | Sometimes | Often,sex,{},{},1\n"
    answers = [("Female", "Never")] * 3 + [("Female", "Often"), ("Male", "Never")]
    path = tmp_path / "each.csv"
    path.write_text(head + "".join(row.format(*a) for a in answers), encoding="utf-8")
    survey = read_long_csv(path)
    assert survey.counts["OFTEN"][("sex", ("Female",))] == (3.0, 0.0, 1.0)
    result = invoke("calibrate", path, "--population", population, "--n", 3, "--no-persona-n", 1,
                    "--db", db)
    assert result.exit_code == 0, result.output
    assert "given twice" not in result.output
    assert "human answers: one row per respondent" not in result.stdout  # counts as given


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_full_width_column_name_is_the_demographic_it_spells(tmp_path: Path,
                                                               suffix: str) -> None:
    """Ｓｅｘ typed on a full-width keyboard is the column sex (NFKC), not a question; a codebook's
    question ids are read alike."""
    from personahub.analysis.survey_respondents import read_respondent_rows

    people = _people(12)[["sex", "SAFE"]].rename(columns={"sex": "ＳＥＸ", "SAFE": "ＳＡＦＥ"})
    path = tmp_path / f"people{suffix}"
    if suffix == ".csv":
        people.to_csv(path, index=False)
        header, safe, _ = CODEBOOK.splitlines()
        (tmp_path / "people.questions.csv").write_text(
            f"{header}\n{safe.replace('SAFE,', 'ＳＡＦＥ,', 1)}\n", encoding="utf-8")
    else:
        people.to_parquet(path)
    read = read_respondent_rows(path)
    assert read.demographics == ("SEX",)
    assert list(read.questions) == ["SAFE"]
    assert {groups["SEX"] for _, groups, _ in read.rows} == {"Female", "Male"}
