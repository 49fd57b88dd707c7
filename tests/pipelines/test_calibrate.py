"""``personahub calibrate``: matched panels asked a survey's questions (one structured call each,
the options as an enum), answers and scores in the calibration tables, per-attribute
representativeness beside the baselines, resume through ``personahub resume`` and the API, the
report and the comparison. Fixtures: ``tests/pipelines/calibrate_fixtures.py`` (self-made)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

import personahub
from personahub import runtime
from personahub.analysis.calibration_dispersion import temper
from personahub.analysis.calibration_report import answer_bars, group_bars, group_marks
from personahub.analysis.survey import Question
from personahub.core.errors import UsageError
from personahub.core.interrupts import Stopped
from personahub.core.kernel import BatchOutcome
from personahub.pipelines import calibrate as calibrate_module
from personahub.pipelines.calibrate import CALIBRATION, CalibrateConfig
from tests.cli_helpers import invoke, one_line_error, usage_error
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import COUNTS, QUESTIONS, make_population, write_survey


@pytest.fixture
def hub(tmp_path: Path) -> dict[str, Any]:
    db = tmp_path / "hub.duckdb"
    population = make_population(tmp_path, db)
    return {"db": db, "survey": write_survey(tmp_path / "survey.csv"), "population": population}


def answers(db: Path, job_id: str) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT question_id, steering, respondent, persona_id, answer, refused "
                    "FROM calibration_answers WHERE job_id = ? ORDER BY ALL", [job_id])


@pytest.mark.slow
def test_calibrate_asks_matched_panels_and_prints_per_attribute_scores(hub: dict[str, Any]) -> None:
    db = hub["db"]
    result = invoke("calibrate", hub["survey"], "--population", hub["population"], "--n", 6,
                    "--no-persona-n", 4, "--db", db, "-v")  # -v: every table
    assert result.exit_code == 0, result.output
    (job_id,) = [r[0] for r in rows(db, "SELECT job_id FROM calibration_jobs")]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("attribute"))
    assert header.split() == ["attribute", "model", "uniform", "human_overall", "no_persona",
                              "human_resample", "perfect_panel", "human_overall_panel"]
    assert {line.split()[0] for line in lines} >= {"overall", "SEX", "POLPARTY"}
    assert "AGE=65+" in result.stdout  # a group nobody in the population matches, said so
    assert "offline engine" in result.stdout
    (sizes_line,) = [line for line in lines if line.startswith("effective panel size of model")]
    assert "SEX " in sizes_line and "POLPARTY " in sizes_line
    assert any(line.startswith("verdict: overall: ") and " wins (" in line for line in lines)
    assert any("the best at its panel size (perfect_panel, a perfect simulator with as many "
               "answers)" in line for line in lines)
    assert any(line.startswith("  model is ") and " uniform" in line for line in lines)
    assert any(line.startswith("  model is ") and " no_persona" in line for line in lines)
    (span_line,) = [line for line in lines if line.startswith("95% intervals of model overall")]
    assert "over questions [" in span_line and "over panel answers [" in span_line

    panels = rows(db, "SELECT attribute, grp, persona_id FROM calibration_panels WHERE job_id = ?",
                  [job_id])
    sizes: dict[tuple[str, str], int] = {}
    for attribute, grp, _ in panels:
        sizes[(attribute, grp)] = sizes.get((attribute, grp), 0) + 1
    assert sizes == {("SEX", "Female"): 6, ("SEX", "Male"): 6, ("POLPARTY", "Democrat"): 6,
                     ("POLPARTY", "Republican"): 6}
    people = {pid for _, _, pid in panels}
    got = answers(db, job_id)
    assert len(got) == 3 * (len(people) + 4)  # each persona once per question, + no-persona
    for qid, steering, respondent, persona_id, answer, refused in got:
        options = QUESTIONS[qid][1]
        assert answer in options and refused == (answer == "Refused")
        assert (steering, respondent) == (("persona", persona_id) if persona_id else
                                          ("none", respondent))
    attributes = dict(rows(db, "SELECT persona_id, attributes FROM personas"))
    for attribute, grp, pid in panels:  # each panel member is of its group
        key, value = {"SEX": "sex", "POLPARTY": "party"}[attribute], grp.lower()
        assert json.loads(attributes[pid])[key] == value


def _model_counts(db: Path, job_id: str, qid: str, attribute: str, grp: str) -> np.ndarray:
    options = QUESTIONS[qid][1]
    counts = np.zeros(len(options))
    for (answer,) in rows(db, "SELECT a.answer FROM calibration_answers a JOIN calibration_panels "
                              "p ON p.job_id = a.job_id AND p.persona_id = a.persona_id WHERE "
                              "a.job_id = ? AND a.question_id = ? AND p.attribute = ? AND "
                              "p.grp = ?", [job_id, qid, attribute, grp]):
        counts[options.index(answer)] += 1
    return counts


def _expected(qid: str, human: list[float], model: np.ndarray) -> float:
    """Representativeness computed here with scipy (refusals left out)."""
    ordinal = QUESTIONS[qid][2]
    k = len(ordinal) if ordinal else len(QUESTIONS[qid][1]) - 1
    h, m = np.asarray(human[:k], float), model[:k]
    if ordinal is None:
        return 1 - float(jensenshannon(h / h.sum(), m / m.sum(), base=2))
    spread = max(ordinal) - min(ordinal)
    return 1 - wasserstein_distance(ordinal, ordinal, h, m) / spread


@pytest.mark.slow
def test_stored_scores_are_the_answers_scored_against_the_people(hub: dict[str, Any]) -> None:
    db = hub["db"]
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=8, seed=3)
    scores = job.scores()
    assert "AGE" not in set(scores["attribute"])  # no persona is 65+: not scored, by any source
    population = scores[scores["attribute"] == "(population)"]  # rows of their own
    assert set(zip(population["question_id"], population["group"], strict=True)) == {
        (q, a) for q in QUESTIONS for a in ("SEX", "POLPARTY")}
    scores = scores[scores["attribute"] != "(population)"]
    model = scores[scores["source"] == "model"]
    assert set(zip(model["question_id"], model["attribute"], strict=True)) == {
        (q, a) for q in QUESTIONS for a in ("SEX", "POLPARTY")}
    checked = 0
    for row in model.itertuples(index=False):
        counts = _model_counts(db, job.job_id, row.question_id, row.attribute, row.group)
        assert json.loads(row.counts) == counts.tolist()
        if counts[: len(counts) - 1].sum() == 0:
            assert np.isnan(row.representativeness)  # every panel member refused
            continue
        human = COUNTS[(row.attribute, row.group)][row.question_id]
        assert row.representativeness == pytest.approx(_expected(row.question_id, human, counts))
        assert row.metric == ("jensen_shannon" if QUESTIONS[row.question_id][2] is None
                              else "wasserstein")
        checked += 1
    assert checked >= 10
    baselines = scores[scores["source"] != "model"]
    assert set(baselines["source"]) == {"uniform", "human_overall", "no_persona",
                                        "human_resample", "perfect_panel", "human_overall_panel"}
    # the ceiling is drawn at the model's effective panel size: its substantive answers
    perfect = scores[scores["source"] == "perfect_panel"].set_index(
        ["question_id", "attribute", "group"])["sim_n"]
    assert (perfect == model.set_index(["question_id", "attribute", "group"])["sim_n"]
            .reindex(perfect.index)).all()
    uniform = baselines[(baselines["source"] == "uniform") & (baselines["question_id"] == "SAFE")
                        & (baselines["group"] == "Male")]
    assert uniform["representativeness"].item() == pytest.approx(
        _expected("SAFE", COUNTS[("SEX", "Male")]["SAFE"], np.ones(5)))
    table = job.per_attribute()
    assert list(table.columns) == ["model", "uniform", "human_overall", "no_persona",
                                   "human_resample", "perfect_panel", "human_overall_panel"]
    assert list(table.index) == ["overall", "SEX", "POLPARTY", "population by SEX",
                                 "population by POLPARTY"]
    assert table.loc["overall", "model"] == pytest.approx(
        model.groupby("attribute")["representativeness"].mean().mean())
    # the effective panel size: substantive answers (refusals out) per question x group
    sizes = job.panel_sizes().set_index("attribute")
    assert sizes.loc["overall", "min"] == model["sim_n"].min()
    assert sizes.loc["overall", "median"] == model["sim_n"].median()
    spans = job.intervals().set_index(["attribute", "who"])
    assert spans.loc[("overall", "model"), "mean"] == pytest.approx(table.loc["overall", "model"])
    assert spans.loc[("overall", "model"), "low"] <= table.loc["overall", "model"]
    # the model has panels: an interval over panel answers too; a baseline has none
    model_span = spans.loc[("overall", "model")]
    assert model_span["panel_low"] < model_span["mean"] < model_span["panel_high"]
    assert np.isnan(spans.loc[("overall", "uniform"), "panel_low"])
    summary_panel = job.summary.panel_intervals.set_index(["attribute", "who"])
    assert summary_panel.loc[("overall", "model"), "panel_low"] == model_span["panel_low"]
    assert job.verdict == job.summary.verdict  # the handle recomputes what the run printed
    assert any(line.startswith("model's worst group: ") for line in job.verdict)
    spread = job.question_spread().set_index(["who", "attribute"]).loc[("model", "overall")]
    assert spread["min"] <= spread["mean"] <= spread["max"] and spread["questions"] == 3
    assert spread["mean"] == pytest.approx(table.loc["overall", "model"], abs=0.1)


@pytest.mark.slow
def test_three_steerings_in_one_calibration(hub: dict[str, Any]) -> None:
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=hub["db"], n=4,
                               steering=("persona", "attributes", "attributes+persona"),
                               questions=("SAFE",))
    table = job.per_attribute()
    assert list(table.columns) == ["model[persona]", "model[attributes]",
                                   "model[attributes+persona]", "uniform", "human_overall",
                                   "no_persona", "human_resample", "perfect_panel[persona]",
                                   "perfect_panel[attributes]",
                                   "perfect_panel[attributes+persona]",
                                   "human_overall_panel[persona]",
                                   "human_overall_panel[attributes]",
                                   "human_overall_panel[attributes+persona]"]
    got = job.answers()
    assert set(got["steering"]) == {"persona", "attributes", "attributes+persona", "none"}
    per = got[got["steering"] != "none"].groupby("steering")["respondent"].apply(set)
    assert per["persona"] == per["attributes"] == per["attributes+persona"]


def _interrupted(db: Path, config: CalibrateConfig, monkeypatch: pytest.MonkeyPatch) -> str:
    """Start ``config`` and stop it with Ctrl-C as its second batch commits; its id."""
    real, seen = calibrate_module.CalibrationSpec.commit, []

    def stops(self: Any, ctx: Any, batch: Any, result: Any) -> BatchOutcome:
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(self, ctx, batch, result)

    monkeypatch.setattr(calibrate_module.CalibrationSpec, "commit", stops)
    with pytest.raises(Stopped, match="resume with personahub resume"):
        runtime.run(CALIBRATION, config, db)
    monkeypatch.setattr(calibrate_module.CalibrationSpec, "commit", real)
    (job_id,) = [r[0] for r in rows(db, "SELECT job_id FROM jobs WHERE status = 'interrupted'")]
    return job_id


@pytest.mark.parametrize("through", ["cli", "api"])
@pytest.mark.slow
def test_an_interrupted_calibration_resumes_to_the_uninterrupted_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, through: str) -> None:
    survey = write_survey(tmp_path / "survey.csv")

    def config(population: str) -> CalibrateConfig:
        return CalibrateConfig(survey=str(survey), population=population, n=5, seed=2,
                               no_persona_n=3, batch_size=7)

    whole_db, cut_db = tmp_path / "whole.duckdb", tmp_path / "cut.duckdb"
    whole = runtime.run(CALIBRATION, config(make_population(tmp_path, whole_db)), whole_db)
    job_id = _interrupted(cut_db, config(make_population(tmp_path, cut_db)), monkeypatch)
    assert 0 < len(answers(cut_db, job_id)) < len(answers(whole_db, whole.job_id))
    if through == "cli":
        result = invoke("resume", job_id, "--db", cut_db)
        assert result.exit_code == 0, result.output
        assert "already done" in result.stdout
    else:
        handle = personahub.calibrate(resume=job_id, db=cut_db)
        assert handle.job_id == job_id and handle.summary.skipped_done == 7
    assert answers(cut_db, job_id) == answers(whole_db, whole.job_id)
    score_sql = ("SELECT question_id, attribute, grp, source, steering, representativeness, "
                 "dispersion, modal_agreement FROM calibration_scores WHERE job_id = ? "
                 "ORDER BY ALL")
    assert rows(cut_db, score_sql, [job_id]) == rows(whole_db, score_sql, [whole.job_id])
    assert rows(cut_db, "SELECT status FROM jobs WHERE job_id = ?", [job_id]) == [("finished",)]


@pytest.mark.slow  # a calibration and its resume
def test_a_disk_that_fills_while_the_scores_are_stored_is_one_line(
        hub: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The answers are in and the job finished; storing its scores filled the disk: one line
    naming the command that stores them once space is back (it was a traceback)."""
    db = hub["db"]
    full = ('TransactionContext Error: Failed to commit: IO Error: Could not write file '
            f'"{db}.wal": No space left on device')

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise duckdb.TransactionException(full)

    monkeypatch.setattr("personahub.analysis.calibration_store.replace_scores", no_space)
    stopped = invoke("calibrate", hub["survey"], "--population", hub["population"], "--n", 4,
                     "--no-persona-n", 2, "--db", db)
    assert stopped.exit_code == 1 and "Traceback" not in stopped.output
    (job_id,) = [r[0] for r in rows(db, "SELECT job_id FROM calibration_jobs")]
    assert stopped.stderr.splitlines()[-1] == (
        f"error: calibration {job_id} finished, but the disk filled while its summary was "
        f"written (could not write {db}.wal: no space left on device); free space, then "
        f"personahub resume {job_id} --db {db} writes it")
    assert rows(db, "SELECT count(*) FROM calibration_scores") == [(0,)]
    monkeypatch.undo()
    resumed = invoke("resume", job_id, "--db", db)
    assert resumed.exit_code == 0, resumed.output
    assert rows(db, "SELECT count(*) > 0 FROM calibration_scores") == [(True,)]


@pytest.mark.slow
def test_the_report_shows_per_group_bars_with_the_baselines(hub: dict[str, Any],
                                                            tmp_path: Path) -> None:
    db = hub["db"]
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=5)
    out = tmp_path / "report"
    result = invoke("report", "--calibration", job.job_id, "--db", db, "--out", out)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"index.html", "calibration_groups.png",
                                               "calibration_answers.png"}
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f"calibration {job.job_id}" in page and "offline engine" in page
    for line in job.verdict:  # the console's verdict and the API's intervals are on the page
        assert html.escape(line) in page, line
    shown = job.intervals()
    overall = shown[shown.who.str.startswith("model") & (shown.attribute == "overall")].iloc[0]
    assert f"{overall['low']:.3f} to {overall['high']:.3f}" in page
    con = duckdb.connect(str(db), read_only=True)
    try:
        bars, answered = group_bars(con, job.job_id), answer_bars(con, job.job_id)
        marks = group_marks(con, job.job_id)
        stored = dict(con.execute(
            "SELECT attribute || '=' || grp, representativeness FROM calibration_summary "
            "WHERE job_id = ? AND level = 'group' AND source = 'human_resample'",
            [job.job_id]).fetchall())
    finally:
        con.close()
    assert list(bars.columns) == ["model", "uniform", "human_overall", "no_persona"]
    # each group's bars read against its floor and ceiling marks, as stored
    assert list(marks.columns) == ["human_resample", "perfect_panel"]
    assert set(marks.index) == set(bars.index)
    assert marks["human_resample"].to_dict() == pytest.approx(stored)
    assert (marks["perfect_panel"].between(0, 1)).all()
    assert "best the data allows" in page and "best at this panel size" in page
    assert set(bars.index) == {"SEX=Female", "SEX=Male", "POLPARTY=Democrat",
                               "POLPARTY=Republican"}
    safe = answered[0]
    assert safe.question_id == "SAFE" and safe.labels[:2] == ["everyone · people",
                                                              "no persona · model"]
    people = safe.shares[safe.labels.index("SEX=Male · people")]
    assert people.tolist() == pytest.approx([45 / 95, 40 / 95, 10 / 95, 0])
    assert np.all((np.isclose(safe.shares.sum(axis=1), 1)) | (safe.shares.sum(axis=1) == 0))
    again = invoke("report", "--calibration", job.job_id, "--db", db, "--out", out)
    assert again.exit_code != 0  # files of the earlier report: --force needed
    missing = invoke("report", "--calibration", "calib-nope", "--db", db, "--out",
                     tmp_path / "r2")
    assert "calib-nope" in one_line_error(missing)


@pytest.mark.slow
def test_two_seeds_compare_with_their_spread(hub: dict[str, Any]) -> None:
    db = hub["db"]
    ids = [personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=4,
                                seed=seed).job_id for seed in (1, 2)]
    result = invoke("calibrations", "--compare", ids[0], "--compare", ids[1], "--db", db, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {j["seed"] for j in data["jobs"]} == {1, 2}
    spread = [s for s in data["spread"] if s["who"] == "model[persona]" and s["level"] == "overall"
              and s["score"] == "representativeness"]
    (overall,) = spread
    assert overall["seeds"] == 2 and overall["min"] <= overall["mean"] <= overall["max"]
    listed = invoke("calibrations", "--db", db, "--json")
    assert {j["job_id"] for j in json.loads(listed.stdout)} == set(ids)


def test_bad_input_is_one_line(hub: dict[str, Any], tmp_path: Path) -> None:
    db, survey, population = hub["db"], hub["survey"], hub["population"]
    assert "--population" in usage_error(invoke("calibrate", survey, "--db", db))
    assert "--steering" in usage_error(invoke("calibrate", survey, "--population", population,
                                              "--steering", "vibes", "--db", db))
    assert "--question NOPE" in usage_error(invoke("calibrate", survey, "--population",
                                                   population, "--question", "NOPE", "--db", db))
    missing = one_line_error(invoke("calibrate", tmp_path / "nope.csv", "--population",
                                    population, "--db", db))
    assert "nope.csv" in missing
    bad = tmp_path / "bad.csv"
    bad.write_text(survey.read_text(encoding="utf-8").replace(",30\n", ",-30\n"),
                   encoding="utf-8")
    assert "bad.csv" in one_line_error(invoke("calibrate", bad, "--population", population,
                                              "--db", db))
    nobody = one_line_error(invoke("calibrate", survey, "--population", "pop-none", "--db", db))
    assert "pop-none" in nobody
    assert rows(db, "SELECT count(*) FROM calibration_jobs") == [(0,)]  # nothing half-written


@pytest.mark.slow
def test_a_calibration_on_ray_makes_the_local_rows(tmp_path: Path) -> None:
    from tests.optional import need_ray

    need_ray()
    import ray

    survey = write_survey(tmp_path / "survey.csv")
    local_db, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"

    def config(population: str, **engine: Any) -> CalibrateConfig:
        return CalibrateConfig(survey=str(survey), population=population, n=4, seed=1,
                               no_persona_n=2, batch_size=9, **engine)

    local = runtime.run(CALIBRATION, config(make_population(tmp_path, local_db)), local_db)
    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False)
    try:
        remote = runtime.run(CALIBRATION, config(make_population(tmp_path, ray_db),
                                                 executor="ray", ray_workers=2), ray_db)
    finally:
        ray.shutdown()
    assert remote.status == "finished"
    assert answers(ray_db, remote.job_id) == answers(local_db, local.job_id)
    score_sql = ("SELECT question_id, attribute, grp, source, representativeness FROM "
                 "calibration_scores WHERE job_id = ? ORDER BY ALL")
    assert rows(ray_db, score_sql, [remote.job_id]) == rows(local_db, score_sql, [local.job_id])


def test_a_result_that_changes_sign_is_named_a_flip() -> None:
    import pandas as pd

    from personahub.pipelines.calibrate_compare import flips

    def row(variant: str, seed: int, who: str, value: float) -> dict[str, Any]:
        return {"variant": variant, "seed": seed, "who": who, "level": "overall",
                "representativeness": value}

    scores = pd.DataFrame([
        row("llm=a", 1, "model[persona]", 0.80), row("llm=a", 1, "uniform", 0.75),
        row("llm=a", 2, "model[persona]", 0.70), row("llm=a", 2, "uniform", 0.75),  # flips
        row("llm=b", 1, "model[persona]", 0.60), row("llm=b", 1, "uniform", 0.75),
        row("llm=b", 2, "model[persona]", 0.90), row("llm=b", 2, "uniform", 0.75),  # flips
    ])
    found = flips(scores)
    within = found[(found["across"] == "seeds") & (found["variant"] != "")]
    assert set(within["variant"]) == {"llm=a", "llm=b"}
    assert set(within["result"]) == {"model[persona] vs uniform"}
    # a beats b on seed 1 and loses on seed 2: the variant comparison flips too
    between = found[found["result"] == "model[persona]: llm=a vs llm=b"]
    assert list(between["detail"]) == ["seed 1: +0.200, seed 2: -0.200"]
    steady = scores.assign(representativeness=[0.8, 0.7, 0.8, 0.7, 0.9, 0.7, 0.9, 0.7])
    assert flips(steady).empty


def test_calibrate_json_prints_one_object(hub: dict[str, Any]) -> None:
    db = hub["db"]
    result = invoke("calibrate", hub["survey"], "--population", hub["population"], "--n", 3,
                    "--no-persona-n", 0, "--limit", 1, "--db", db, "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # the score table went to stderr
    record = json.loads(lines[0])
    (job_id,) = [r[0] for r in rows(db, "SELECT job_id FROM calibration_jobs")]
    assert record["command"] == "calibrate" and record["job_id"] == job_id
    assert record["status"] == "finished" and record["paths"] == {"db": str(db)}
    asked = rows(db, "SELECT count(*) FROM calibration_answers WHERE job_id = ?", [job_id])[0][0]
    assert record["counts"]["answered"] == asked > 0 and record["counts"]["questions"] == 1
    assert "attribute" in result.stderr


def test_progress_counts_answers_as_they_arrive_not_committed_batches(hub: dict[str, Any]) -> None:
    """``calibrating … 0`` stayed at 0 until a batch of 256 answers was
    committed. With one batch larger than all the job's answers, the hook hears every answer:
    counts rising by one, below the batch's size, against the total, before the commit."""
    seen: list[tuple[str, int, int | None]] = []
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=hub["db"], n=4,
                               questions=("SAFE",), batch_size=1000,
                               progress=lambda phase, done, total: seen.append((phase, done, total)))
    total = len(job.answers())
    done = [d for phase, d, _ in seen if phase == "calibration"]
    assert total > 2 and done == [*range(1, total + 1), total]  # each answer, then the commit
    assert {t for phase, _, t in seen if phase == "calibration"} == {total}


@pytest.mark.slow
def test_dispersion_temper_scores_the_panels_tempered_towards_peoples_spread(
        hub: dict[str, Any]) -> None:
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=hub["db"], n=8,
                               seed=3, dispersion="temper")
    scores = job.scores()
    model = scores[scores["source"] == "model"]
    plain = model[model["steering"] == "persona"].set_index(["question_id", "attribute", "group"])
    tempered = model[model["steering"] == "persona:tempered"].set_index(
        ["question_id", "attribute", "group"])
    assert set(tempered.index) == set(plain.index)  # every group, and the population rows
    assert np.allclose(tempered["sim_n"], plain["sim_n"].reindex(tempered.index),
                       equal_nan=True)  # the same panels
    assert tempered["sim_failed"].isna().all()  # fitted, not asked
    # the offline engine's personas agree with each other: under-dispersed before, nearer 1 after
    sd = job.per_attribute("sd_ratio").loc["overall"]
    assert sd["model[persona]"] < 0.6
    assert abs(np.log(sd["model[persona:tempered]"])) < abs(np.log(sd["model[persona]"]))
    per_question = job.sd_ratios()
    assert list(per_question.columns) == ["persona", "persona:tempered"]
    assert (abs(np.log(per_question["persona:tempered"]))
            < abs(np.log(per_question["persona"]))).all()
    # the asked answers are the same: tempering is scoring only
    assert job.summary.asks == job.summary.answered
    # the temperatures are stored with the tempered rows, one per half of the questions, and
    # are the ones the rows were tempered with
    fitted = job.temperatures()
    assert list(fitted["steering"]) == ["persona:tempered"] * 2
    assert fitted["questions"].sum() == len(QUESTIONS)
    assert fitted.equals(job.summary.temperatures)
    assert plain["temperature"].isna().all()
    by_row = tempered[tempered.index.get_level_values("attribute") != "(population)"]
    for (qid, _, _), row in by_row.iterrows():
        question = Question(qid, "", tuple(QUESTIONS[qid][1]),
                            tuple(QUESTIONS[qid][2] or [1.0] * (len(QUESTIONS[qid][1]) - 1)))
        before = json.loads(plain.loc[row.name, "counts"])
        assert json.loads(row["counts"]) == pytest.approx(
            temper(question, before, row["temperature"]).tolist())
    console = CALIBRATION.report(job.summary, hub["db"])
    (line,) = [line for line in console if line.startswith("dispersion temper: temperatures")]
    # the untempered panels have an interval over panel answers; the tempered row has none
    spans = job.intervals().set_index(["attribute", "who"])
    assert spans.loc[("overall", "model[persona]"), "panel_low"] < spans.loc[
        ("overall", "model[persona]"), "mean"]
    assert np.isnan(spans.loc[("overall", "model[persona:tempered]"), "panel_low"])
    assert any(c.startswith("95% intervals of model[persona] overall") for c in console)
    for t in fitted["temperature"]:
        assert f"T={t:.3g}" in line
    with pytest.raises(UsageError, match="use none or temper"):
        personahub.calibrate(hub["survey"], population=hub["population"], db=hub["db"],
                             dispersion="mixture")
