"""``calibrate --elicit logprobs``: option probabilities from the server's
token log-probabilities, temperature scaling fitted on held-out questions, and a clear refusal
from a server that returns none. Offline, over the loopback server, and on llama.cpp's server."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import convert_to_openai_messages

import personahub
from personahub.analysis.calibration_scores import POPULATION
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.fake_server.logprobs import letter_logprobs
from personahub.models.fake_server.server import running_server
from personahub.models.option_logprobs import LogprobsUnavailable, offline_probabilities
from personahub.pipelines.calibrate import Ask, CalibrationAsker
from personahub.pipelines.calibrate_scores import elicit_lines
from personahub.pipelines.elicit.logprobs import LOGPROBS, Logprobs
from personahub.pipelines.elicit.temperature import LOG_T_BOUNDS, at_bound, fit_temperature, scaled
from personahub.pipelines.prompts.calibration import logprobs_messages
from tests.cli_helpers import invoke, usage_error
from tests.pipeline_helpers import rows
from tests.pipelines.calibrate_fixtures import COUNTS as THREE_COUNTS
from tests.pipelines.calibrate_fixtures import FOUR_COUNTS as COUNTS
from tests.pipelines.calibrate_fixtures import FOUR_QUESTIONS as QUESTIONS
from tests.pipelines.calibrate_fixtures import QUESTIONS as THREE_QUESTIONS
from tests.pipelines.calibrate_fixtures import make_population, write_survey
from tests.pipelines.test_calibrate_elicit import GROUPS, _expected

LETTERS = "ABCDE"


@pytest.fixture
def hub(tmp_path: Path) -> dict[str, Any]:
    db = tmp_path / "hub.duckdb"
    population = make_population(tmp_path, db)
    return {"db": db, "survey": write_survey(tmp_path / "survey.csv", QUESTIONS, COUNTS),
            "population": population}


def _raw(db: Path, job_id: str) -> dict[tuple[str, str], np.ndarray]:
    """(question, group key) -> the stored raw probabilities over the question's options."""
    out = {}
    for qid, key, reason in rows(db, "SELECT question_id, respondent, reason FROM "
                                     "calibration_answers WHERE job_id = ? AND steering = ?",
                                 [job_id, LOGPROBS]):
        shares = json.loads(reason)
        assert list(shares) == QUESTIONS[qid][1]
        out[(qid, key)] = np.array(list(shares.values()))
    return out


def _check_scaled(db: Path, job: Any, seed: int) -> float:
    """Every question x group is asked; the held-out question fits the temperature (computed
    here from the human counts) and leaves the score; every scored row is the scaled raw
    probabilities, scored as a panel's distribution. Returns the temperature."""
    raw = _raw(db, job.job_id)
    assert set(raw) == {(q, f"{a}={g}") for q in QUESTIONS for a, g in GROUPS}
    fit = Logprobs().held_out(tuple(QUESTIONS), seed)
    assert len(fit) == 3  # at least three questions fit the temperature
    pairs = []
    for qid in fit:
        keep = [i for i, o in enumerate(QUESTIONS[qid][1]) if o != "Refused"]
        pairs += [(raw[(qid, f"{a}={g}")][keep], np.asarray(COUNTS[(a, g)][qid], float)[keep])
                  for a, g in GROUPS]
    temperature = fit_temperature(pairs)
    assert job.summary.logprobs_temperature == pytest.approx(temperature)
    assert abs(math.log(temperature)) > 0.05  # a temperature that matters
    scores = job.scores()
    model = scores[(scores["source"] == "model") & (scores["steering"] == LOGPROBS)
                   & (scores["attribute"] != POPULATION)]  # population rows mix the groups'
    assert set(model["question_id"]) == set(QUESTIONS) - set(fit)
    for row in model.itertuples(index=False):
        vector = scaled(raw[(row.question_id, f"{row.attribute}={row.group}")], temperature)
        assert not np.allclose(vector, raw[(row.question_id, f"{row.attribute}={row.group}")])
        assert json.loads(row.counts) == pytest.approx(vector.tolist())
        assert row.representativeness == pytest.approx(
            _expected(row.question_id, COUNTS[(row.attribute, row.group)][row.question_id],
                      vector))
    return temperature


def test_the_fitted_temperature_recovers_a_known_one() -> None:
    rng = np.random.default_rng(0)
    models = [rng.dirichlet(np.ones(4)) for _ in range(30)]
    pairs = [(m, 1000 * scaled(m, 2.5)) for m in models]
    assert fit_temperature(pairs) == pytest.approx(2.5, rel=1e-3)
    assert fit_temperature([]) == 1.0
    assert scaled([0.5, 0.5, 0.0], 3.0).tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert scaled([0.8, 0.2], 0.5).tolist() == pytest.approx([0.64 / 0.68, 0.04 / 0.68])


def test_offline_probabilities_are_seeded_and_recorded() -> None:
    messages = logprobs_messages("Q?", ["x", "y", "z"], group="- Sex: female", letters="ABC")
    client = LLMClient(LLMSettings(spec="offline", seed=4))
    result = asyncio.run(client.option_probabilities(messages, list("ABC"), purpose="p"))
    assert result.value is not None
    assert result.value.probabilities == offline_probabilities(4, messages, "ABC")
    assert sum(result.value.probabilities.values()) == pytest.approx(1.0)
    assert offline_probabilities(5, messages, "ABC") != result.value.probabilities
    (record,) = result.records
    assert (record.status, record.purpose, record.structured_mode) == ("ok", "p", "logprobs")
    assert client.stats.attempts == 1


@pytest.mark.slow
def test_logprobs_is_a_row_of_its_own_offline(hub: dict[str, Any], tmp_path: Path) -> None:
    db = hub["db"]
    job = personahub.calibrate(hub["survey"], population=hub["population"], db=db, n=4,
                               no_persona_n=1, seed=5, elicit=("sample", "logprobs"))
    assert job.summary.offline
    assert "model[logprobs]" in job.per_attribute().columns
    # one call per question x group, held-out question included; scored on the other two
    assert job.summary.calls["logprobs"] == 4 * 4
    assert job.summary.cells["logprobs"] == 1 * 4
    assert job.summary.logprobs_fit_questions == 3
    _check_scaled(db, job, seed=5)
    out = tmp_path / "report"
    report = invoke("report", "--calibration", job.job_id, "--db", db, "--out", out)
    assert report.exit_code == 0, report.output
    assert "model[logprobs]" in (out / "index.html").read_text(encoding="utf-8")


def test_the_console_prints_the_logprobs_calls_and_temperature(hub: dict[str, Any]) -> None:
    result = invoke("calibrate", hub["survey"], "--population", hub["population"], "--n", 2,
                    "--db", hub["db"], "--no-persona-n", 1, "--seed", 5, "--elicit", "logprobs",
                    "-v")  # -v: the calls per method
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("calls per method")]
    assert "logprobs 16, one per question x group asked (4 scored)" in line
    (scaled_line,) = [x for x in result.stdout.splitlines() if x.startswith("logprobs: temp")]
    assert "fitted on 3 held-out questions" in scaled_line
    assert "warning: logprobs: the temperature stopped at its upper bound" in result.stdout


def test_too_few_questions_to_fit_the_temperature_are_refused_in_one_line(
        hub: dict[str, Any], tmp_path: Path) -> None:
    three = write_survey(tmp_path / "three.csv", THREE_QUESTIONS, THREE_COUNTS)
    line = usage_error(invoke("calibrate", three, "--population", hub["population"], "--n", 2,
                              "--elicit", "logprobs", "--db", hub["db"]))
    assert line == ("error: --elicit logprobs: the calibration asks 3 questions; its temperature "
                    "is fitted on 3 held-out questions and one more is needed to score (4 in all)")
    assert rows(hub["db"], "SELECT count(*) FROM calibration_jobs") == [(0,)]
    many = tuple(f"Q{i}" for i in range(20))
    assert len(Logprobs().held_out(many[:4], 0)) == 3  # at least three fit it
    assert len(Logprobs().held_out(many, 0)) == 5  # else a quarter


def test_a_temperature_at_an_end_of_its_search_is_warned_of() -> None:
    def lines(temperature: float) -> list[str]:
        return elicit_lines(SimpleNamespace(
            elicit=("logprobs",), calls={"logprobs": 16}, answered_calls={"logprobs": 16},
            cells={"logprobs": 4}, logprobs_temperature=temperature, logprobs_fit_questions=3))

    assert lines(2.0)[1:] == ["logprobs: temperature 2, fitted on 3 held-out questions (not "
                              "scored in its row)"]
    upper = lines(math.exp(LOG_T_BOUNDS[1]))
    assert upper[2].startswith("warning: logprobs: the temperature stopped at its upper bound "
                               "(54.6)")
    assert "nearly uniform" in upper[3]
    assert "upper" not in " ".join(lines(math.exp(LOG_T_BOUNDS[1]) * 0.9))
    lower = lines(math.exp(LOG_T_BOUNDS[0]))
    assert "its lower bound (0.0183)" in lower[2] and "one option" in lower[3]
    assert all(len(line) <= 100 for line in upper + lower)
    # random offline probabilities fit people worse than guessing: the fit ends at the top
    assert at_bound(fit_temperature([([0.98, 0.01, 0.01], [1, 1, 1])])) == "upper"


def test_logprobs_over_the_loopback_server_reads_the_servers_probabilities(
        hub: dict[str, Any]) -> None:
    # the asker alone: its shares are the server's letter probabilities, renormalised
    text, options = QUESTIONS["SAFE"][0], QUESTIONS["SAFE"][1]
    asker = CalibrationAsker({"SAFE": (text, tuple(options))}, {},
                             groups={"SEX=Female": "- Sex: female"})
    messages = logprobs_messages(text, options, group="- Sex: female", letters=LETTERS)
    with running_server(seed=3) as server:
        client = LLMClient(LLMSettings(spec=server.base_url + "?model=offline"))
        (answer,) = asyncio.run(asker.run_batch([Ask("SAFE", LOGPROBS, "SEX=Female", None)],
                                                client))
        job = personahub.calibrate(hub["survey"], population=hub["population"], db=hub["db"],
                                   n=3, no_persona_n=1, seed=2, llm=server.base_url + "?model=offline",
                                   elicit=("logprobs",))
    sent = [{"role": m["role"], "content": m["content"]}
            for m in convert_to_openai_messages(messages)]
    letters = letter_logprobs(3, sent, 20)
    total = sum(math.exp(letters[x]) for x in LETTERS)
    assert answer.reason is not None
    assert json.loads(answer.reason) == pytest.approx(
        {o: math.exp(letters[x]) / total for x, o in zip(LETTERS, options, strict=True)})
    assert not job.summary.offline and job.summary.failed == 0
    _check_scaled(hub["db"], job, seed=2)
    calls = rows(hub["db"], "SELECT purpose, structured_mode, count(*) FROM llm_calls WHERE "
                            "job_id = ? AND status = 'ok' GROUP BY ALL ORDER BY ALL",
                 [job.job_id])
    # the 16 asks and the probe that checks the server before anything is written
    assert calls == [("survey:calibrate", "json_schema", 4),
                     ("survey:calibrate-logprobs", "logprobs", 17)]


def test_a_server_without_logprobs_is_refused_in_one_line(hub: dict[str, Any]) -> None:
    db = hub["db"]
    with running_server(seed=3, logprobs=False) as server:
        result = invoke("calibrate", hub["survey"], "--population", hub["population"], "--n", 3,
                        "--db", db, "--llm", server.base_url + "?model=offline",
                        "--elicit", "sample", "--elicit", "logprobs")
        assert result.exit_code == 1, result.output
        (message,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        client = LLMClient(LLMSettings(spec=server.base_url + "?model=offline"))
        with pytest.raises(LogprobsUnavailable):
            asyncio.run(client.option_probabilities(
                logprobs_messages("Q?", ["x", "y"], group="g", letters="AB"), ["A", "B"],
                purpose="p"))
    assert "log-probabilities" in message and "/chat/completions" in message
    assert server.base_url in message
    # no half-written calibration: no job, no answers, no scores
    for table in ("calibration_jobs", "calibration_answers", "calibration_scores"):
        assert rows(db, f"SELECT count(*) FROM {table}") == [(0,)]


@pytest.mark.real_model
def test_logprobs_on_llama_server_with_smollm2(hub: dict[str, Any]) -> None:
    from personahub.models.llamacpp import local_llama_cpp
    from tests.optional import need_llama_cpp

    need_llama_cpp()
    with local_llama_cpp() as server:
        job = personahub.calibrate(hub["survey"], population=hub["population"], db=hub["db"],
                                   n=2, no_persona_n=0, seed=1, llm=server.spec,
                                   elicit=("logprobs",), attributes=("SEX",), timeout_s=120)
    raw = rows(hub["db"], "SELECT reason FROM calibration_answers WHERE job_id = ? AND "
                          "steering = 'logprobs'", [job.job_id])
    assert len(raw) == 4 * 2, raw  # four questions x two groups
    shares = [json.loads(r) for (r,) in raw]
    assert all(sum(s.values()) == pytest.approx(1.0) for s in shares)
    # a model's letter probabilities (SmolLM2's are close to uniform), not a constant
    assert all(max(s.values()) - min(s.values()) > 1e-3 for s in shares), shares
    assert len({json.dumps(s) for s in shares}) == len(shares)
    calls = rows(hub["db"], "SELECT status, structured_mode, tokens_in FROM llm_calls WHERE "
                            "job_id = ? AND purpose = 'survey:calibrate-logprobs'", [job.job_id])
    assert len(calls) >= 4 * 2 + 1, calls  # the asks and the probe
    assert all(mode == "logprobs" and tokens for _, mode, tokens in calls), calls
    print(f"\nSmolLM2 letter probabilities: {shares}; temperature "
          f"{job.summary.logprobs_temperature:.3g}")
    assert job.summary.logprobs_temperature is not None
    assert np.isfinite(job.per_attribute().loc["overall", "model"])


def test_top_logprobs_are_read_per_label_and_a_body_without_them_is_none() -> None:
    from personahub.models.option_logprobs import read_top_logprobs

    tops = [{"token": " A", "logprob": math.log(0.3)}, {"token": "A", "logprob": math.log(0.1)},
            {"token": "B", "logprob": math.log(0.2)}, {"token": "The", "logprob": math.log(0.4)}]
    body = {"choices": [{"logprobs": {"content": [{"token": "The", "logprob": math.log(0.4),
                                                   "top_logprobs": tops}]}}]}
    assert read_top_logprobs(body, ["A", "B", "C"]) == pytest.approx(
        {"A": 0.4 / 0.6, "B": 0.2 / 0.6, "C": 0.0})
    assert read_top_logprobs({"choices": [{"logprobs": None}]}, ["A"]) is None
    assert read_top_logprobs({"choices": []}, ["A"]) is None
