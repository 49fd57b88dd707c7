"""``personahub calibrate --archetypes K``: one call per archetype and question, each member's
answer drawn from its archetype's stated shares, scored as row ``archetypes:K``, and its price
per group against the per-agent row. Fixtures:
``tests/pipelines/calibrate_fixtures.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import personahub
from personahub.analysis.survey import Question
from personahub.core.errors import UsageError
from personahub.models.fake_server.server import running_server
from personahub.pipelines.calibrate_archetypes import (
    archetype_respondent,
    check_archetypes,
    draw_members,
    grouping,
    price_table,
)
from tests.cli_helpers import invoke, usage_error
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import QUESTIONS, make_population, write_survey


@pytest.fixture
def hub(tmp_path: Path) -> dict[str, Any]:
    db = tmp_path / "hub.duckdb"
    population = make_population(tmp_path, db)
    return {"db": db, "survey": write_survey(tmp_path / "survey.csv"), "population": population}


def test_the_price_is_computed_as_by_hand() -> None:
    """Known per-agent and archetype counts: similarity and TVD worked out on paper."""
    question = Question("Q", "Q?", ("Low", "Mid", "High", "Refused"), (1.0, 2.0, 3.0))
    nominal = Question("N", "N?", ("A", "B", "Refused"), (0.0, 0.0))  # nominal

    def row(qid: str, source: str, steering: str, counts: list[float] | None,
            rep: float) -> dict[str, Any]:
        return {"question_id": qid, "attribute": "SEX", "group": "Female", "source": source,
                "steering": steering, "representativeness": rep,
                "counts": None if counts is None else json.dumps(counts)}

    scores = pd.DataFrame([
        # opinions: archetype (.5, .25, .25), the panel's (.25, .25, .5); the panel refuses 7/11
        row("Q", "model", "persona", [1, 1, 2, 7], 0.8),
        row("Q", "model", "archetypes:10", [2, 1, 1, 0], 0.6),
        row("Q", "human_resample", "", None, 0.9),
        # nominal: identical opinions; the archetype refuses 5/13, the panel never
        row("N", "model", "persona", [3, 1, 0], 0.7),
        row("N", "model", "archetypes:10", [6, 2, 5], 0.5),
        row("N", "human_resample", "", None, 0.95),
    ])
    table = price_table(scores, {"Q": question, "N": nominal},
                        {"persona": 40, "archetypes:10": 20, "none": 2})
    (got,) = table.to_dict("records")
    # similarity over the opinions, as representativeness:
    # Q: W1 = |.5-.25| + |.75-.5| = .5 over a span of 2 -> .75; N: the same distribution -> 1
    assert got["similarity"] == pytest.approx((0.75 + 1.0) / 2)
    # TVD over the answers with refusal as one class:
    # Q: (.5, .25, .25, 0) vs (1, 1, 2, 7)/11 -> (.5 - 1/11 + .25 - 1/11 + .25 - 2/11 + 7/11)/2
    #    = 7/11 (the panel's refusals; opinions alone would be .25)
    # N: (6, 2, 5)/13 vs (.75, .25, 0) -> (.75 - 6/13 + .25 - 2/13 + 5/13)/2 = 5/13 (not 0)
    assert got["tvd"] == pytest.approx((7 / 11 + 5 / 13) / 2)
    assert got["archetype_refusal"] == pytest.approx((0 + 5 / 13) / 2)
    assert got["sample_refusal"] == pytest.approx((7 / 11 + 0) / 2)
    assert got["questions"] == 2 and got["k"] == 10
    assert got["archetype_representativeness"] == pytest.approx(0.55)
    assert got["sample_representativeness"] == pytest.approx(0.75)
    assert got["human_resample"] == pytest.approx(0.925)
    assert (got["calls"], got["sample_calls"]) == (20, 40)
    assert price_table(scores[scores["steering"] != "archetypes:10"],
                       {"Q": question, "N": nominal}, {}).empty


def test_the_price_compares_only_with_a_row_that_asked_every_agent() -> None:
    """A group-level row (logprobs, distribution, few-shot, distribution:panel) is not the
    per-agent row the price is against: without a sampled row there is no price."""
    question = Question("Q", "Q?", ("Low", "High", "Refused"), (1.0, 2.0))

    def row(steering: str, counts: list[float]) -> dict[str, Any]:
        return {"question_id": "Q", "attribute": "SEX", "group": "Female", "source": "model",
                "steering": steering, "representativeness": 0.9, "counts": json.dumps(counts)}

    for stated in ("logprobs", "distribution", "distribution:panel", "few-shot:2"):
        scores = pd.DataFrame([row(stated, [0.5, 0.5, 0.0]), row("archetypes:4", [3, 1, 0])])
        assert price_table(scores, {"Q": question}, {}).empty, stated
    sampled = pd.DataFrame([row("logprobs", [0.5, 0.5, 0.0]), row("attributes", [1, 3, 0]),
                            row("archetypes:4", [3, 1, 0])])
    (got,) = price_table(sampled, {"Q": question}, {"attributes": 8}).to_dict("records")
    assert got["sample_calls"] == 8  # against the sampled row, not the first one


def test_the_price_counts_refusals_as_an_answer() -> None:
    """Archetypes that refuse 5% where asking every agent refuses 20%, with the same opinions:
    the price shows the gap (TVD .15 and both refusal shares), not a perfect match."""
    question = Question("Q", "Q?", ("Low", "High", "Refused", "Don't know"), (1.0, 2.0))

    def row(steering: str, counts: list[float] | None, source: str = "model") -> dict[str, Any]:
        return {"question_id": "Q", "attribute": "AGE", "group": "18-29", "source": source,
                "steering": steering, "representativeness": 0.9,
                "counts": None if counts is None else json.dumps(counts)}

    scores = pd.DataFrame([row("persona", [40, 40, 15, 5]), row("archetypes:4", [57, 38, 5, 0]),
                           row("", None, "human_resample")])
    table = price_table(scores, {"Q": question}, {"persona": 100, "archetypes:4": 4})
    (got,) = table.to_dict("records")
    # opinions (.5, .5) vs (.6, .4): similarity 1 - .1; answers (.4, .4, .2) vs (.57, .38, .05)
    assert got["similarity"] == pytest.approx(0.9)
    assert got["tvd"] == pytest.approx((0.17 + 0.02 + 0.15) / 2)
    assert (got["archetype_refusal"], got["sample_refusal"]) == pytest.approx((0.05, 0.20))
    from personahub.pipelines.calibrate_archetypes import price_lines

    lines = price_lines(table)
    assert "mean TVD 0.170, refusals 5% vs 20% per agent" in lines[1]
    assert "AGE=18-29: similarity 0.900, TVD 0.170, refusals 5% (per agent 20%)" in lines[2]
    # every answer refused: no opinion to compare, but the refusal gap still counts
    none = price_table(pd.DataFrame([row("persona", [40, 40, 15, 5]),
                                     row("archetypes:4", [0, 0, 3, 1])]),
                       {"Q": question}, {})
    (got,) = none.to_dict("records")
    assert np.isnan(got["similarity"]) and got["tvd"] == pytest.approx(0.8)
    assert got["questions"] == 1


def test_members_draw_from_their_archetype_with_their_own_seed() -> None:
    shares = np.array([0.2, 0.5, 0.3])
    members = [f"p{i}" for i in range(2000)]
    draws = draw_members(shares, members, 7, "Q")
    assert draws == draw_members(shares, members, 7, "Q")  # seeded
    assert draws[:50] == draw_members(shares, members[:50], 7, "Q")  # per member, not per list
    assert draws != draw_members(shares, members, 8, "Q")
    assert np.bincount(draws, minlength=3) / len(draws) == pytest.approx(shares, abs=0.04)
    assert draw_members(np.array([0.0, 1.0, 0.0]), members[:5], 1, "Q") == [1] * 5


@pytest.mark.slow
def test_archetype_rows_cost_k_calls_per_question_offline(hub: dict[str, Any],
                                                          tmp_path: Path) -> None:
    db = hub["db"]
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=6,
                               no_persona_n=1, seed=5, archetypes=[2, 3])
    summary = job.summary
    people = {p for (p,) in rows(db, "SELECT DISTINCT persona_id FROM calibration_panels "
                                     "WHERE job_id = ?", [job.job_id])}
    # calls per archetype row: K x questions, not the panel's size
    assert summary.calls == {"sample": 3 * len(people), "archetypes:2": 2 * 3,
                             "archetypes:3": 3 * 3, "no_persona": 3}
    assert summary.asks == sum(summary.calls.values()) == summary.answered
    scores = job.scores()
    panels = rows(db, "SELECT attribute, grp, persona_id FROM calibration_panels "
                      "WHERE job_id = ?", [job.job_id])
    stated = {(s, q, r): json.loads(reason) for s, q, r, reason in rows(
        db, "SELECT steering, question_id, respondent, reason FROM calibration_answers "
            "WHERE job_id = ? AND steering LIKE 'archetypes:%'", [job.job_id])}
    texts = dict(rows(db, "SELECT persona_id, text FROM personas"))
    attrs = {p: json.loads(a) for p, a in rows(db, "SELECT persona_id, attributes FROM personas")}
    from personahub.pipelines.calibrate_data import demographics_of

    personas = {p: (texts[p], demographics_of(attrs[p])) for p in people}
    for k in (2, 3):
        ids, grouped = grouping(personas, k, 5)
        archetype_of = {ids[i]: a for a in range(len(grouped)) for i in grouped.members(a)}
        for qid, (_, options, _) in QUESTIONS.items():
            for attribute, group in {(a, g) for a, g, _ in panels}:
                members = sorted(p for a, g, p in panels if (a, g) == (attribute, group))
                expected = np.zeros(len(options))
                for pid in members:  # each member's draw, by hand from its archetype's shares
                    shares = stated[(f"archetypes:{k}", qid,
                                     archetype_respondent(k, archetype_of[pid]))]
                    (option,) = draw_members(np.array([shares[o] for o in options]), [pid], 5,
                                             qid)
                    expected[option] += 1
                (row,) = scores[(scores["source"] == "model")
                                & (scores["steering"] == f"archetypes:{k}")
                                & (scores["question_id"] == qid) & (scores["attribute"] == attribute)
                                & (scores["group"] == group)].itertuples(index=False)
                assert json.loads(row.counts) == expected.tolist()
                assert row.sim_failed == 0
    price = job.archetype_price()
    assert set(price["method"]) == {"archetypes:2", "archetypes:3"}
    assert len(price) == 2 * 4  # four groups matched personas
    assert price["similarity"].between(0, 1).all() and price["tvd"].between(0, 1).all()
    assert set(price["calls"]) == {6, 9}
    assert price.equals(summary.price)
    # seeded: the same population and seed in another hub price the same
    other = tmp_path / "again"
    other.mkdir()
    again = personahub.calibrate(hub["survey"], population=make_population(other, other / "h.db"),
                                 db=other / "h.db", n=6, no_persona_n=1, seed=5,
                                 archetypes=[2, 3])
    pd.testing.assert_frame_equal(again.archetype_price(), price)


@pytest.mark.slow
def test_the_cli_prints_the_price_and_refuses_bad_values(hub: dict[str, Any]) -> None:
    db, survey, population = hub["db"], hub["survey"], hub["population"]
    result = invoke("calibrate", survey, "--population", population, "--n", 3, "--db", db,
                    "--no-persona-n", 1, "--archetypes", 2, "-v")  # -v: the price per group
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "the price of archetypes" in out
    assert "archetypes:2: 6 calls vs" in out
    assert "SEX=Female: similarity" in out
    (line,) = [x for x in out.splitlines() if x.startswith("calls per method")]
    assert "archetypes:2 6" in line
    too_many = usage_error(invoke("calibrate", survey, "--population", population, "--n", 3,
                                  "--archetypes", 500, "--db", db))
    assert "--archetypes 500" in too_many
    with pytest.raises(UsageError, match="twice"):
        check_archetypes([2, 2])
    with pytest.raises(UsageError, match="whole number"):
        check_archetypes([0])


@pytest.mark.slow
def test_archetypes_over_the_loopback_server(hub: dict[str, Any]) -> None:
    db = hub["db"]
    with running_server(seed=3) as server:
        job = personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=3,
                                   no_persona_n=1, seed=2, llm=server.base_url + "?model=offline",
                                   archetypes=[2])
    assert not job.summary.offline and job.summary.failed == 0
    answered = dict(rows(db, "SELECT steering, count(*) FROM calibration_answers "
                             "WHERE job_id = ? GROUP BY ALL", [job.job_id]))
    assert answered["archetypes:2"] == 2 * 3
    purposes = {p for (p,) in rows(db, "SELECT DISTINCT purpose FROM llm_calls WHERE job_id = ?",
                                   [job.job_id])}
    assert "survey:calibrate-archetypes:2" in purposes
    assert not job.archetype_price().empty
