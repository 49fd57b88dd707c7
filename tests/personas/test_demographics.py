"""The demographic column set: vocabularies, Nemotron-style imports, carving and the view."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from personahub.analysis.views import install_views
from personahub.cli.app import app
from personahub.core.errors import PersonaFileError
from personahub.core.store import connect
from personahub.personas.demographic_columns import normalise_row, parse, region_of_state
from personahub.personas.demographics import (
    KEYS,
    OPINIONQA_ATTRIBUTES,
    VOCABULARY,
    _fold,
    age_group_of,
    attribute_keys,
    canonical,
    group_conditions,
    income_bracket_of,
)
from personahub.personas.importers import ImportStats, detect_format, iter_personas

# OpinionQA's metadata.csv groups (tatsu-lab/opinions_qa, data/human_resp/*/metadata.csv)
OPINIONQA_GROUPS = {
    "CREGION": ["Northeast", "Midwest", "South", "West"],
    "AGE": ["18-29", "30-49", "50-64", "65+"],
    "SEX": ["Male", "Female"],
    "EDUCATION": ["Less than high school", "High school graduate", "Some college, no degree",
                  "Associate's degree", "College graduate/some postgrad", "Postgraduate"],
    "MARITAL": ["Married", "Divorced", "Separated", "Widowed", "Never been married"],
    "POLPARTY": ["Republican", "Democrat", "Independent", "Other"],
    "INCOME": ["Less than $30,000", "$30,000-$50,000", "$50,000-$75,000", "$75,000-$100,000",
               "$100,000 or more"],
    "POLIDEOLOGY": ["Very conservative", "Conservative", "Moderate", "Liberal", "Very liberal"],
    "RACE": ["White", "Black", "Asian", "Hispanic", "Other"],
}
# Nemotron-Personas (USA) categorical values
NEMOTRON = {
    "sex": ["Male", "Female"],
    "education_level": ["less_than_9th", "9th_12th_no_diploma", "high_school", "some_college",
                        "associates", "bachelors", "graduate"],
    "marital_status": ["never_married", "married_present", "divorced", "widowed", "separated"],
}


def test_no_spelling_stands_for_two_values() -> None:
    for key, values in VOCABULARY.items():
        seen: dict[str, str] = {}
        for value in values:
            for spelling in {value.slug, value.label, *value.synonyms}:
                folded = _fold(spelling)
                assert seen.setdefault(folded, value.slug) == value.slug, (key, spelling)


def test_every_opinionqa_group_maps_to_a_distinct_value() -> None:
    for attribute, groups in OPINIONQA_GROUPS.items():
        key = OPINIONQA_ATTRIBUTES[attribute]
        slugs = [canonical(key, g) for g in groups]
        assert None not in slugs, attribute
        assert len(set(slugs)) == len(groups), attribute  # no two groups merge
    assert canonical("race_ethnicity", "Mixed Race") is None  # outside OpinionQA's groups
    assert canonical("party", "Refused") is None


def test_every_nemotron_value_maps() -> None:
    assert [parse("sex", v) for v in NEMOTRON["sex"]] == ["male", "female"]
    assert [parse("education", v) for v in NEMOTRON["education_level"]] == [
        "less_than_high_school", "less_than_high_school", "high_school", "some_college",
        "associates", "bachelors", "postgraduate"]
    assert [parse("marital_status", v) for v in NEMOTRON["marital_status"]] == [
        "never_married", "married", "divorced", "widowed", "separated"]


@pytest.mark.parametrize(("age", "group"), [
    (0, "0-17"), (17.9, "0-17"), (18, "18-29"), (29, "18-29"), (30, "30-49"), (49, "30-49"),
    (50, "50-64"), (64, "50-64"), (65, "65+"), (104, "65+")])
def test_age_groups(age: float, group: str) -> None:
    assert age_group_of(age) == group


def test_income_brackets_states_and_bad_numbers() -> None:
    assert [income_bracket_of(x) for x in (0, 29_999, 30_000, 74_999.5, 99_999, 100_000)] == [
        "under_30k", "under_30k", "30k_50k", "50k_75k", "75k_100k", "100k_plus"]
    assert parse("income", "$52,000") == "50k_75k"
    assert parse("income", "Less than $30,000") == "under_30k"
    assert parse("age_group", 140) is None and parse("age_group", "forty") is None
    with pytest.raises(ValueError):
        age_group_of(-1)
    assert (region_of_state("TX"), region_of_state("new york"), region_of_state("DC")) == (
        "south", "northeast", "south")
    assert region_of_state("Tokyo") is None


def test_attribute_keys_and_group_conditions() -> None:
    assert attribute_keys("SEX") == ("sex",)
    assert attribute_keys("race_ethnicity") == ("race_ethnicity",)  # its own "_" is not a cross
    assert attribute_keys("POLPARTY_RACE") == ("party", "race_ethnicity")
    assert attribute_keys("party+sex") == ("party", "sex")
    assert attribute_keys("RELIG") is None
    assert group_conditions("EDUCATION", ("College graduate/some postgrad",)) == (
        ("education", "bachelors"),)
    assert group_conditions("POLPARTY_RACE", ("Democrat",)) == ()  # one label for two attributes
    assert group_conditions("RELIG", ("Jewish",)) == ()


def test_normalise_row_direct_keys_strict_derived_lenient() -> None:
    row = {"age": 42, "sex": "Female", "education_level": "bachelors", "state": "WA",
           "marital_status": "married_present", "occupation": "nurse"}
    out, unmapped = normalise_row(row)
    assert out == {**row, "age_group": "30-49", "sex": "female", "education": "bachelors",
                   "region": "west", "marital_status": "married"}
    assert unmapped == []
    out, unmapped = normalise_row({"age": "unknown", "state": "Okinawa", "gender": "woman"})
    assert "age_group" not in out and "region" not in out and out["sex"] == "female"
    assert unmapped == ["age", "state"]
    out, _ = normalise_row({"party": "GOP", "political_party": "Democrat"})
    assert out["party"] == "republican"  # a key given directly wins
    with pytest.raises(ValueError, match='column "sex" holds \'X\', not one of female, male'):
        normalise_row({"sex": "X"})


def _nemotron_csv(path: Path, rows: list[list[str]]) -> Path:
    header = ["uuid", "persona", "sex", "age", "marital_status", "education_level",
              "occupation", "city", "state", "zipcode", "country"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def test_nemotron_table_imports_with_canonical_demographics(tmp_path: Path) -> None:
    path = _nemotron_csv(tmp_path / "nemotron.csv", [
        ["u1", "A retired machinist who restores tractors.", "Male", "71", "widowed",
         "high_school", "not_in_workforce", "Dayton", "OH", "45402", "USA"],
        ["u2", "A nurse who runs a choir.", "Female", "34", "never_married", "bachelors",
         "registered_nurse", "Austin", "TX", "78701", "USA"],
        ["u3", "A student of marine biology.", "Female", "19", "never_married", "some_college",
         "student", "Hilo", "Hawaii", "96720", "USA"],
    ])
    assert detect_format(path) == "attributes"
    stats = ImportStats()
    first, second, third = iter_personas(path, stats=stats)
    assert {k: first.attributes[k] for k in ("age_group", "sex", "education", "region",
                                             "marital_status")} == {
        "age_group": "65+", "sex": "male", "education": "high_school", "region": "midwest",
        "marital_status": "widowed"}
    assert first.attributes["age"] == 71 and first.attributes["education_level"] == "high_school"
    assert (second.attributes["region"], third.attributes["region"]) == ("south", "west")
    assert third.attributes["age_group"] == "18-29"
    assert not stats.unmapped


def test_a_bad_canonical_value_is_a_bad_record_naming_the_line(tmp_path: Path) -> None:
    path = _nemotron_csv(tmp_path / "n.csv", [
        ["u1", "A welder.", "Male", "40", "married_present", "graduate", "welder", "Erie", "PA",
         "1", "USA"],
        ["u2", "A baker.", "Unknown", "40", "divorced", "graduate", "baker", "Erie", "PA", "1",
         "USA"],
        ["u3", "A cook.", "Female", "forty", "divorced", "doctorate", "cook", "Osaka", "Kansai",
         "1", "JP"],
    ])
    with pytest.raises(PersonaFileError) as info:
        list(iter_personas(path))
    assert info.value.line == 3 and 'column "sex" holds \'Unknown\'' in info.value.reason
    stats = ImportStats()
    kept = list(iter_personas(path, skip_bad=True, stats=stats))
    assert [p.attributes["uuid"] for p in kept] == ["u1", "u3"]
    assert stats.bad == 1
    assert stats.unmapped == {"age": 1, "state": 1}  # u3: kept, without age_group and region
    assert "age_group" not in kept[1].attributes and kept[1].attributes["education"] == "postgraduate"


def test_parquet_table_and_cli_import_reports_unmapped(tmp_path: Path) -> None:
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"persona": ["A ranger in Montana.", "A teacher in Lyon."],
                             "age": pa.array([52, 38], pa.int64()),
                             "state": ["MT", "Rhône"], "party": ["Independent", None]}), path)
    db = tmp_path / "hub.duckdb"
    result = CliRunner().invoke(app, ["personas", "import", str(path), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "left unmapped (state 1)" in result.output
    con = connect(db, read_only=True)
    try:
        rows = con.execute("SELECT json_extract_string(attributes, '$.region'), "
                           "json_extract_string(attributes, '$.party') FROM personas "
                           "ORDER BY seq").fetchall()
    finally:
        con.close()
    assert rows == [("west", "independent"), (None, None)]


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    people = [
        {"persona": "A young organiser.", "age_group": "18-29", "party": "Democrat",
         "education": "College graduate/some postgrad", "sex": "F"},
        {"persona": "A retired farmer.", "age_group": "65 or older", "party": "Republican",
         "education": "high school graduate", "sex": "male"},
        {"persona": "A mid-career pharmacist.", "age_group": "30 to 49", "party": "independent",
         "education": "postgraduate", "sex": "female"},
    ]
    with open(tmp_path / "people.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(people[0]))
        writer.writeheader()
        writer.writerows(people)
    db = tmp_path / "hub.duckdb"
    result = CliRunner().invoke(app, ["personas", "import", str(tmp_path / "people.csv"),
                                      "--db", str(db)])
    assert result.exit_code == 0, result.output
    return db


@pytest.mark.parametrize(("conditions", "expected"), [
    (["age_group=30-49"], ["A mid-career pharmacist."]),
    (["age_group=65+"], ["A retired farmer."]),
    (["party=Democrat"], ["A young organiser."]),
    (["education=College graduate/some postgrad"], ["A young organiser."]),
    (["sex=Female", "party!=Democrat"], ["A mid-career pharmacist."]),
    (["sex=woman"], ["A young organiser.", "A mid-career pharmacist."]),
])
@pytest.mark.slow
def test_carve_takes_any_spelling_of_a_demographic_value(hub: Path, conditions: list[str],
                                                         expected: list[str]) -> None:
    args = ["personas", "sample", "--db", str(hub), "--format", "jsonl"]
    for condition in conditions:
        args += ["--carve", condition]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["persona"] for line in result.stdout.splitlines()] == expected


def test_demographics_view_has_a_column_per_key(hub: Path) -> None:
    con = connect(hub, read_only=True)
    try:
        install_views(con)
        columns = [r[0] for r in con.execute("DESCRIBE v_persona_demographics").fetchall()]
        rows = con.execute("SELECT age_group, sex, party, education FROM v_persona_demographics "
                           "ORDER BY age_group").fetchall()
    finally:
        con.close()
    assert [c for c in columns if c in KEYS] == list(KEYS)  # every key, in vocabulary order
    assert rows == [("18-29", "female", "democrat", "bachelors"),
                    ("30-49", "female", "independent", "postgraduate"),
                    ("65+", "male", "republican", "high_school")]
