"""Seeded populations: marginals met, joints raked, template text, and the CLI."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from personahub.cli.app import app
from personahub.core.errors import InputFileError, PersonahubError
from personahub.core.store import connect
from personahub.personas.demographics import VOCABULARY, values_of
from personahub.personas.persona_consistency import check_persona_text
from personahub.personas.persona_template import template_text
from personahub.personas.population import (
    draw_population,
    exact_counts,
    marginal_errors,
    rake,
    template_personas,
)
from personahub.personas.population_files import Joint, Marginals, read_joint, read_marginals
from personahub.personas.quality import screen_persona

# Roughly US adult shares (invented to the nearest point; only their sums matter here)
US = {
    "age_group": {"18-29": .20, "30-49": .33, "50-64": .25, "65+": .22},
    "sex": {"female": .51, "male": .49},
    "race_ethnicity": {"white": .62, "black": .12, "asian": .06, "hispanic": .17, "other": .03},
    "region": {"northeast": .17, "midwest": .21, "south": .38, "west": .24},
    "education": {"less_than_high_school": .09, "high_school": .27, "some_college": .20,
                  "associates": .10, "bachelors": .21, "postgraduate": .13},
    "income": {"under_30k": .22, "30k_50k": .17, "50k_75k": .17, "75k_100k": .13,
               "100k_plus": .31},
    "party": {"republican": .29, "democrat": .30, "independent": .33, "other": .08},
    "ideology": {"very_conservative": .08, "conservative": .27, "moderate": .36,
                 "liberal": .20, "very_liberal": .09},
    "occupation": {"nurse": .3, "teacher": .3, "driver": .4},  # a free attribute
}


def _largest_gap(population) -> float:  # type: ignore[no-untyped-def]
    errors = marginal_errors(population.people, population.targets)
    return max(abs(gap) for per_key in errors.values() for gap in per_key.values())


def test_ten_thousand_people_match_every_marginal_within_one_point() -> None:
    population = draw_population(10_000, seed=7, marginals=Marginals(US))
    assert len(population.people) == 10_000
    assert set(population.targets) == set(US)
    gap = _largest_gap(population)
    assert gap < 0.01  # the bar: 1 percentage point per value
    assert gap <= 0.5 / 10_000 + 1e-12  # what the method gives: half a person at most


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_joint_raked_to_marginals_keeps_its_associations(seed: int) -> None:
    # party x ideology, strongly associated; the marginals move party's shares
    conditional = {"republican": {"conservative": .7, "moderate": .2, "liberal": .1},
                   "democrat": {"conservative": .1, "moderate": .3, "liberal": .6},
                   "independent": {"conservative": .25, "moderate": .5, "liberal": .25}}
    cells = tuple((p, i) for p, per in conditional.items() for i in per)
    shares = tuple(per[i] / 3 for per in conditional.values() for i in per)
    joint = Joint(("party", "ideology"), cells, shares)
    targets = Marginals({"party": {"republican": .45, "democrat": .35, "independent": .20},
                         "sex": {"female": .5, "male": .5}})
    population = draw_population(10_000, seed=seed, marginals=targets, joint=joint)
    assert _largest_gap(population) < 0.01
    assert population.targets["party"] == pytest.approx(targets.shares["party"])
    counts = Counter((p["party"], p["ideology"]) for p in population.people)
    republicans = sum(n for (party, _), n in counts.items() if party == "republican")
    assert counts[("republican", "conservative")] / republicans == pytest.approx(0.7, abs=0.02)
    democrats = sum(n for (party, _), n in counts.items() if party == "democrat")
    assert counts[("democrat", "liberal")] / democrats == pytest.approx(0.6, abs=0.02)


def test_ipf_matches_marginals_and_refuses_what_a_joint_cannot_give() -> None:
    joint = Joint(("sex", "party"), (("female", "democrat"), ("female", "republican"),
                                     ("male", "republican")), (.4, .2, .4))
    weights = rake(joint, Marginals({"party": {"democrat": .5, "republican": .5}}))
    assert weights.tolist() == pytest.approx([.5, 1 / 6, 1 / 3])  # republicans keep 1:2
    with pytest.raises(PersonahubError, match="party=independent .* no weight on it"):
        rake(joint, Marginals({"party": {"democrat": .5, "independent": .5}}))
    with pytest.raises(PersonahubError, match="did not converge"):
        # men are all republicans in the joint: 80% men cannot go with 50% democrats
        rake(joint, Marginals({"party": {"democrat": .5, "republican": .5},
                               "sex": {"female": .2, "male": .8}}))


def test_same_seed_same_people_other_seed_other_order() -> None:
    first = draw_population(500, seed=3, marginals=Marginals(US))
    again = draw_population(500, seed=3, marginals=Marginals(US))
    other = draw_population(500, seed=4, marginals=Marginals(US))
    assert first == again and first.population_id == again.population_id
    assert other.people != first.people and other.population_id != first.population_id


def test_exact_counts_sum_to_n_by_largest_remainder() -> None:
    assert exact_counts({"a": .5, "b": .3, "c": .2}, 7) == {"a": 4, "b": 2, "c": 1}
    assert sum(exact_counts(US["education"], 999).values()) == 999


def test_template_personas_are_distinct_labelled_and_pass_the_gate() -> None:
    population = draw_population(300, seed=1, marginals=Marginals(US))
    personas = template_personas(population)
    assert len({p.persona_id for p in personas}) == 300  # alike attributes, still 300 people
    for persona in personas[:50]:
        assert persona.source == "population"
        assert persona.attributes["text_origin"] == "template"
        assert persona.attributes["population"] == population.population_id
        assert screen_persona(persona.text) is None, persona.text
        assert check_persona_text(persona.text, persona.attributes) == []
    assert "Other details: occupation:" in personas[0].text


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    key: st.sampled_from(values_of(key)) for key in VOCABULARY}).filter(bool))
def test_template_text_never_contradicts_its_attributes(attributes: dict[str, str]) -> None:
    text = template_text(attributes)
    assert check_persona_text(text, attributes) == []
    assert screen_persona(text) is None


# --------------------------------------------------------------------------- input files


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_marginals_csv_and_json_read_alike(tmp_path: Path) -> None:
    from_csv = read_marginals(_write(tmp_path / "m.csv", "attribute,value,share\n"
                                     "SEX,Female,0.52\nSEX,Male,0.48\nAGE,18 to 29,1\n"))
    from_json = read_marginals(_write(tmp_path / "m.json", json.dumps(
        {"sex": {"female": 0.52, "male": 0.48}, "age_group": {"18-29": 1}})))
    assert from_csv == from_json
    counts = read_marginals(_write(tmp_path / "c.csv", "attribute,value,count\n"
                                   "religion,Jewish,2\nreligion,Catholic,6\n"))
    assert counts.shares == {"religion": {"Jewish": .25, "Catholic": .75}}


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("attribute,value,share\nsex,female,.5\nsex,nonbinary,.5\n", 3, "'nonbinary' is not a value of sex"),
    ("attribute,value,share\nsex,female,.5\nsex,F,.5\n", 3, "sex=female is given twice"),
    ("attribute,value,share\nsex,female,lots\n", 2, "share 'lots' is not a number"),
    ("attribute,value,share\nsex,female,-1\n", 2, "share '-1' must be a number >= 0"),
    ("attribute,value,share\nsex,female\n", 2, "expected 3 fields, got 2"),
    ("attribute,value\nsex,female\n", 1, "missing column share (or count, weight)"),
    ("attribute,value,share\nsex,female,.6\nsex,male,.6\n", None, "the shares sum to 1.2, not 1"),
    ("attribute,value,share\n", None, "no data rows"),
])
def test_marginals_errors_name_file_and_line(tmp_path: Path, text: str, line: int | None,
                                             reason: str) -> None:
    path = _write(tmp_path / "m.csv", text)
    with pytest.raises(InputFileError) as info:
        read_marginals(path)
    assert (info.value.path, info.value.line) == (str(path), line)
    assert reason in info.value.reason


def test_joint_file_reads_and_refuses_repeats(tmp_path: Path) -> None:
    joint = read_joint(_write(tmp_path / "j.csv", "party,POLIDEOLOGY,count\nDemocrat,Liberal,3\n"
                              "Republican,Conservative,1\n"))
    assert joint.keys == ("party", "ideology")
    assert joint.cells == (("democrat", "liberal"), ("republican", "conservative"))
    assert joint.shares == pytest.approx((.75, .25))
    with pytest.raises(InputFileError, match=r"j2\.csv:3: the combination democrat, liberal"):
        read_joint(_write(tmp_path / "j2.csv", "party,ideology,share\ndemocrat,liberal,.5\n"
                          "Democrat,Liberal,.5\n"))


# --------------------------------------------------------------------------- the command


@pytest.mark.slow
def test_sample_population_command_writes_the_hub(tmp_path: Path) -> None:
    marginals = _write(tmp_path / "m.json", json.dumps(US))
    db = tmp_path / "hub.duckdb"
    args = ["personas", "sample-population", "--marginals", str(marginals), "-n", "2000",
            "--seed", "5", "--db", str(db)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2000 people (seed 5)" in result.stdout and "2000 new" in result.stdout
    assert "text_origin=template" in result.stdout
    assert "largest gap 0.0" in result.output
    again = CliRunner().invoke(app, args)  # the same population: nothing new
    assert again.exit_code == 0 and "0 new" in again.stdout
    con = connect(db, read_only=True)
    try:
        shares = dict(con.execute(
            "SELECT json_extract_string(attributes, '$.party'), count(*) / 2000 FROM personas "
            "GROUP BY 1").fetchall())
    finally:
        con.close()
    assert shares == pytest.approx(US["party"], abs=0.001)
    carved = CliRunner().invoke(app, ["personas", "sample", "--db", str(db), "--carve",
                                      "age_group=30-49", "--carve", "party=Democrat",
                                      "--format", "ids"])
    assert carved.exit_code == 0
    expected = round(2000 * .33) * .30  # independent keys: about age share x party share
    assert abs(len(carved.stdout.split()) - expected) < 60


def test_sample_population_out_table_imports_back(tmp_path: Path) -> None:
    joint = _write(tmp_path / "j.csv", "sex,party,share\nfemale,democrat,.4\nmale,republican,.6\n")
    table = tmp_path / "people.csv"
    result = CliRunner().invoke(app, ["personas", "sample-population", "--joint", str(joint),
                                      "-n", "50", "--out", str(table), "--db",
                                      str(tmp_path / "never.duckdb")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "never.duckdb").exists()
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 50 and Counter(r["sex"] for r in rows) == {"male": 30, "female": 20}
    assert all((r["sex"], r["party"]) in {("female", "democrat"), ("male", "republican")}
               for r in rows)
    db = tmp_path / "hub.duckdb"
    imported = CliRunner().invoke(app, ["personas", "import", str(table), "--db", str(db)])
    assert imported.exit_code == 0, imported.output
    # texts repeat (two kinds of people): an imported table collapses them by text
    assert "50 personas, 2 new" in imported.stdout


@pytest.mark.parametrize(("args", "code", "message"), [
    ([], 2, "give --marginals FILE, --joint FILE or both"),
    (["--marginals", "missing.csv"], 1, "missing.csv: file not found"),
    (["--marginals", "bad.csv"], 1, "bad.csv:3: sex: 'x' is not a value of sex"),
    (["--marginals", "good.csv", "--out", "people.txt"], 1, "give a .jsonl or .csv file"),
    (["--marginals", "good.csv", "-n", "0"], 2, "-n"),
])
def test_sample_population_errors_leave_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                args: list[str], code: int, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "bad.csv", "attribute,value,share\nsex,female,.5\nsex,x,.5\n")
    _write(tmp_path / "good.csv", "attribute,value,share\nsex,female,.5\nsex,male,.5\n")
    result = CliRunner().invoke(app, ["personas", "sample-population", *args,
                                      "--db", "hub.duckdb"])
    assert result.exit_code == code
    assert message in result.output
    assert not (tmp_path / "hub.duckdb").exists() and not (tmp_path / "people.txt").exists()
