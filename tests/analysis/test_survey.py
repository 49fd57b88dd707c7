"""Human survey inputs: OpinionQA's wave layout and the long CSV read into one structure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from personahub.analysis.survey import OVERALL, Question
from personahub.analysis.survey_csv import read_long_csv
from personahub.analysis.survey_opinionqa import read_opinionqa
from personahub.analysis.survey_read import read_survey
from personahub.core.errors import InputFileError

FIXTURES = Path(__file__).parent / "fixtures"
WAVE = FIXTURES / "opinionqa_wave"
LONG = FIXTURES / "survey_long.csv"
HEADER = "question_id,question,options,ordinal,attribute,group,option,count\n"


def test_both_layouts_give_equal_surveys() -> None:
    wave, long = read_opinionqa(WAVE), read_long_csv(LONG)
    assert wave == long
    assert list(wave.questions) == ["SAFE_W1", "WORLD_W1", "REASON_W1"]
    assert read_survey(WAVE) == read_survey(LONG) == wave  # the dispatcher picks the reader


def test_questions_keep_order_ordinal_positions_and_refusals() -> None:
    survey = read_opinionqa(WAVE)
    safe, world, reason = (survey.questions[q] for q in ("SAFE_W1", "WORLD_W1", "REASON_W1"))
    assert safe.substantive == ("Very safe", "Somewhat safe", "Not too safe", "Not at all safe")
    assert safe.refusals == ("Refused",) and safe.is_ordinal
    assert world.ordinal == (1.0, 2.0, 1.5) and world.is_ordinal  # "neither" sits in between
    assert reason.options[2] == "For my job, or a friend's"  # a comma inside an option survives
    assert not reason.is_ordinal  # equal positions: nominal


def test_counts_groups_and_conditions() -> None:
    survey = read_opinionqa(WAVE)
    counts = survey.counts["SAFE_W1"]
    assert counts[("SEX", ("Male",))] == (45.0, 40.0, 10.0, 0.0, 1.0)  # absent option: zero
    assert counts[("POLPARTY_RACE", ("Democrat", "Black"))] == (8.0, 12.0, 6.0, 2.0, 0.0)
    assert ("POLPARTY_RACE", ("Democrat", "Mixed Race")) not in counts  # empty subgroup
    assert not any(a == "marginals" or "marginals" in g for a, g in counts)
    assert "NONE" not in survey.attributes()  # the release's copy of POLPARTY is skipped
    # a case slip in a data file's option ("neither SAFER") still lands on info.csv's option
    assert survey.counts["WORLD_W1"][("SEX", ("Female",))] == (10.0, 70.0, 20.0, 0.0)
    assert survey.conditions("SEX", ("Female",)) == (("sex", "female"),)
    assert survey.conditions("AGE", ("65+",)) == (("age_group", "65+"),)
    assert survey.conditions("POLPARTY_RACE", ("Republican", "White")) == (
        ("party", "republican"), ("race_ethnicity", "white"))
    assert survey.conditions("AGE", ("Refused",)) == ()  # read, matched to no persona
    assert survey.carve("POLPARTY_RACE", ("Republican", "White")) == (
        "party=republican", "race_ethnicity=white")
    assert survey.carve("AGE", ("Refused",)) == ()
    assert survey.conditions("POLPARTY_RACE", ("Democrat", "Mixed Race")) == ()


def test_overall_is_the_widest_single_attribute_or_an_explicit_row(tmp_path: Path) -> None:
    survey = read_opinionqa(WAVE)
    # SEX covers 198 answers, AGE 161: everyone's answers are SEX's groups summed
    assert survey.overall("SAFE_W1").tolist() == [75.0, 90.0, 25.0, 5.0, 3.0]
    path = tmp_path / "s.csv"
    path.write_text(HEADER + "Q,q,A | B,,sex,female,A,3\nQ,q,A | B,,sex,female,B,1\n"
                    "Q,q,A | B,,Overall,all,A,7\nQ,q,A | B,,Overall,all,B,9\n")
    survey = read_long_csv(path)
    assert survey.overall("Q").tolist() == [7.0, 9.0]
    assert [(a, g) for a, g, _ in survey.groups("Q")] == [("sex", ("female",))]
    assert (OVERALL, (OVERALL,)) in survey.counts["Q"]


def test_unscorable_questions_are_skipped_with_a_reason(tmp_path: Path) -> None:
    wave = tmp_path / "wave"
    shutil.copytree(WAVE, wave)
    info = (wave / "info.csv").read_text()
    # W43 lists one key five times with five texts; its data cannot tell them apart
    duplicate = info.splitlines()[1].replace("at night?", "by day?")
    (wave / "info.csv").write_text(info + duplicate + "\n")
    survey = read_opinionqa(wave)
    assert "SAFE_W1" not in survey.questions and "SAFE_W1" not in survey.counts
    assert "cannot tell them apart" in survey.skipped["SAFE_W1"]
    assert survey.skipped["UNASKED_W1"] == "no answers in the data files"


def test_long_csv_without_ordinal_is_nominal_with_refused_last(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("question_id,question,options,attribute,group,option,count\n"
                    'Q,q,"[""Refused"", ""Tea"", ""Coffee""]",party,Democrat,Tea,2\n')
    question = read_long_csv(path).questions["Q"]
    assert question == Question("Q", "q", ("Tea", "Coffee", "Refused"), (1.0, 1.0))
    crossed = tmp_path / "c.csv"
    crossed.write_text(HEADER + "Q,q,A | B,,party+sex,Democrat / Female,A,2\n")
    survey = read_long_csv(crossed)
    assert survey.conditions("party+sex", ("Democrat", "Female")) == (
        ("party", "democrat"), ("sex", "female"))


ROW = "Q,q,A | B | Refused,1 | 2,sex,female,A,3\n"


@pytest.mark.parametrize(("rows", "line", "reason"), [
    (ROW + "Q,q,A | B | Refused,1 | 2,sex,female,C,1\n", 3, "option 'C' is not an option of question Q"),
    (ROW + "Q,q,A | B | Refused,1 | 2,sex,male,A,-1\n", 3, "count '-1' must be a number >= 0"),
    (ROW + "Q,q,A | B | Refused,1 | 2,sex,male,A,many\n", 3, "count 'many' is not a number"),
    (ROW + "Q,q,A | B,1 | 2,sex,male,A,1\n", 3, "question Q differs from its row on line 2"),
    (ROW + "Q,q,A | B | Refused,1 | 2,POLPARTY_RACE,Democrat,A,1\n", 3, "must give 2 labels"),
    (ROW + "Q,q,A | B | Refused,1 | x,sex,male,A,1\n", 3, "not numbers"),
    (ROW + "Q,q,A | B | Refused,1 | 2 | 3 | 4,sex,male,A,1\n", 3, "4 ordinal values for 3 options"),
    (ROW + "Q,q,A | B | Refused,1 | 2,sex,male,A\n", 3, "expected 8 fields, got 7"),
    (ROW + 'Q,q,"[""A"", 3",1 | 2,sex,male,A,1\n', 3, "options: invalid JSON array"),
    (ROW + 'Q,"unclosed,A,1,sex,male,A,1\n', 3, "bad CSV"),
])
def test_long_csv_errors_name_file_and_line(tmp_path: Path, rows: str, line: int,
                                            reason: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(InputFileError) as info:
        read_long_csv(path)
    assert (info.value.path, info.value.line) == (str(path), line)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert "\n" not in str(info.value)


def test_long_csv_file_level_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("question_id,question,options\nQ,q,A\n")
    with pytest.raises(InputFileError, match=r"s\.csv:1: missing column attribute, group"):
        read_long_csv(path)
    path.write_text(HEADER)
    with pytest.raises(InputFileError, match="no data rows"):
        read_long_csv(path)
    with pytest.raises(InputFileError, match="no such file or folder"):
        read_survey(tmp_path / "missing.csv")


def _wave(tmp_path: Path, info_rows: list[str], data: dict[str, object]) -> Path:
    wave = tmp_path / "wave"
    wave.mkdir()
    (wave / "info.csv").write_text(",key,question,references,option_ordinal\n"
                                   + "".join(r + "\n" for r in info_rows))
    for attribute, body in data.items():
        (wave / f"{attribute}_data.json").write_text(
            body if isinstance(body, str) else json.dumps(body))
    return wave


GOOD_INFO = "0,Q,q?,\"['A', 'B', 'Refused']\",\"[1.0, 2.0]\""


@pytest.mark.parametrize(("info", "data", "where", "reason"), [
    ([GOOD_INFO, "1,R,r?,\"['A', 'B']\",\"[1.0, oops]\""], {"SEX": {}}, "info.csv:3",
     "option_ordinal is not a list literal"),
    (["0,Q,q?,\"__import__('os')\",\"[1.0]\""], {"SEX": {}}, "info.csv:2",
     "references is not a list literal"),
    (["0,Q,q?,\"['A', 'B']\",\"[1.0, 2.0, 3.0]\""], {"SEX": {}}, "info.csv:2",
     "3 ordinal values for 2 options"),
    ([GOOD_INFO], {"SEX": {"Q": {"Female": {"C": 1}}}}, "SEX_data.json",
     "Q, group 'Female': option 'C' is not an option of question Q"),
    ([GOOD_INFO], {"SEX": {"Z": {"Female": {"A": 1}}}}, "SEX_data.json",
     "question Z is not in info.csv"),
    ([GOOD_INFO], {"SEX": {"Q": {"Female": {"A": "many"}}}}, "SEX_data.json",
     "count 'many' for 'A' is not a number >= 0"),
    ([GOOD_INFO], {"SEX": "{\n  \"Q\": {oops}\n}"}, "SEX_data.json:2", "invalid JSON"),
    ([GOOD_INFO], {"SEX": {"Q": {"Female": {"A": 1, "Black": {"A": 1}}}}}, "SEX_data.json",
     "mixes counts and subgroups"),
])
def test_opinionqa_errors_name_the_file(tmp_path: Path, info: list[str], data: dict[str, object],
                                        where: str, reason: str) -> None:
    wave = _wave(tmp_path, info, data)
    with pytest.raises(InputFileError) as error:
        read_opinionqa(wave)
    assert str(error.value).startswith(f"{wave}/{where}: ")
    assert reason in str(error.value) and "\n" not in str(error.value)


def test_opinionqa_folder_without_data_files(tmp_path: Path) -> None:
    wave = _wave(tmp_path, [GOOD_INFO], {})
    with pytest.raises(InputFileError, match="no <ATTRIBUTE>_data.json files"):
        read_opinionqa(wave)
    (wave / "info.csv").unlink()
    with pytest.raises(InputFileError, match="info.csv: file not found"):
        read_opinionqa(wave)


def test_groups_yield_count_vectors() -> None:
    survey = read_long_csv(LONG)
    groups = {(a, g): c for a, g, c in survey.groups("WORLD_W1")}
    np.testing.assert_array_equal(groups[("SEX", ("Male",))], [25, 50, 25, 4])
    assert survey.attributes() == ["SEX", "AGE", "POLPARTY_RACE"]


def test_survey_groups_carve_the_personas_of_a_drawn_population(tmp_path: Path) -> None:
    from personahub.core.store import connect
    from personahub.personas.carve import Selection, carve
    from personahub.personas.population import draw_population, template_personas
    from personahub.personas.population_files import Marginals
    from personahub.personas.store import upsert_personas

    marginals = Marginals({"party": {"democrat": .5, "republican": .5},
                           "race_ethnicity": {"black": .2, "white": .8},
                           "sex": {"female": .5, "male": .5}, "age_group": {"65+": 1.0}})
    population = draw_population(200, seed=2, marginals=marginals)
    con = connect(tmp_path / "hub.duckdb")
    try:
        upsert_personas(con, template_personas(population))
        survey = read_opinionqa(WAVE)
        matched = {}
        for attribute, group, _ in survey.groups("SAFE_W1"):
            where = survey.carve(attribute, group)
            if where:
                matched[(attribute, group)] = carve(con, Selection(where=where))
    finally:
        con.close()
    assert len(matched[("SEX", ("Female",))]) == 100
    assert len(matched[("AGE", ("65+",))]) == 200 and len(matched[("AGE", ("18-29",))]) == 0
    black_democrats = matched[("POLPARTY_RACE", ("Democrat", "Black"))]
    assert black_democrats and all(p.attributes["party"] == "democrat"
                                   and p.attributes["race_ethnicity"] == "black"
                                   for p in black_democrats)
    expected = sum(p["party"] == "democrat" and p["race_ethnicity"] == "black"
                   for p in population.people)
    assert len(black_democrats) == expected
