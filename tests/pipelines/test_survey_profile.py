"""A survey profile (pipelines/survey_profile.py) in small pieces: its few-shot examples as one
persona's prompt text, its temperature, its answer for one agent (tagged with the agent and the
step, the same prompt a fit asks), its model check, and its report section."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest

from personahub.analysis import calibration_store as store
from personahub.analysis.calibration_profile_view import NOT_PROMISED, profile_html
from personahub.core.errors import UsageError
from personahub.core.store import connect
from personahub.models.endpoint_specs import served_models
from personahub.pipelines.elicit import parse
from personahub.pipelines.survey_profile import (
    Example,
    GroupAnswers,
    ProfileConfig,
    SurveyProfile,
    examples_from_json,
    examples_json,
    examples_text,
    load_profile,
    tempered,
)
from personahub.sim.survey_profiles import drawn_answer
from tests.fakes import FakeClient

EXAMPLE = Example("Q1", "Is the bus on time?", ("Yes", "No", "Refused"), (
    GroupAnswers("SEX", "Female", (("sex", "female"),), (30.0, 10.0, 0.0)),
    GroupAnswers("POLPARTY", "Democrat", (("party", "democrat"),), (20.0, 20.0, 10.0))),
    (50.0, 40.0, 10.0))


def test_examples_show_the_groups_the_persona_is_in_else_everyone() -> None:
    assert examples_text([EXAMPLE], {"sex": "female", "party": "democrat"}) == (
        "Question: Is the bus on time?\nPeople with SEX Female:\n- Yes: 75%\n- No: 25%\n"
        "- Refused: 0%\nPeople with POLPARTY Democrat:\n- Yes: 40%\n- No: 40%\n- Refused: 20%")
    assert examples_text([EXAMPLE], {"sex": "male"}) == (
        "Question: Is the bus on time?\nEveryone:\n- Yes: 50%\n- No: 40%\n- Refused: 10%")
    assert examples_from_json(examples_json([EXAMPLE])) == (EXAMPLE,)


def test_the_temperature_flattens_or_sharpens_and_keeps_zeros() -> None:
    p = [0.6, 0.3, 0.1, 0.0]
    np.testing.assert_allclose(tempered(p, 1.0), p)
    flat, sharp = tempered(p, 4.0), tempered(p, 0.25)
    assert flat[0] < 0.6 < sharp[0] and flat[3] == sharp[3] == 0.0
    np.testing.assert_allclose(flat[:3], np.power(p[:3], 0.25) / np.power(p[:3], 0.25).sum())


def test_a_profiles_answer_is_the_fits_prompt_tagged_with_the_agent_and_step() -> None:
    """A profile asks what a fit asks of the same persona (the same messages), tagged with the
    agent's persona and step in the run's call log, and tempers the shares."""
    config = ProfileConfig(parse("distribution"), "attributes")
    profile = SurveyProfile("calib-x", config, 2.0, "offline")
    fake, fit = FakeClient(seed=0), FakeClient(seed=0)
    shares, call = asyncio.run(profile.shares(
        "Is the bus on time?", ("Yes", "No"), text="A nurse.", attributes={"sex": "female"},
        persona_id="p1", situation="", step=3, caller=fake))
    raw = asyncio.run(config.reading("Is the bus on time?", ("Yes", "No"), text="A nurse.",
                                     attributes={"sex": "female"}, caller=fit))
    assert fake.prompts[0][2] == fit.prompts[0][2]  # the same prompt
    assert (fake.prompts[0][0], fake.prompts[0][1]) == ("survey:profile", "p1")
    assert fake.by_step[(3, "survey:profile")] == 1
    assert raw.shares is not None and shares is not None
    np.testing.assert_allclose(shares, tempered([raw.shares["Yes"], raw.shares["No"]], 2.0))
    assert call.value is not None


def test_another_served_model_is_refused_in_one_line() -> None:
    profile = SurveyProfile("calib-x", ProfileConfig(parse("logprobs"), "persona"), 1.0,
                            "smollm2-135m")
    profile.check_served("smollm2-135m")
    with pytest.raises(UsageError) as refused:
        profile.check_served(served_models("offline"))
    assert "\n" not in str(refused.value) and "fitted on smollm2-135m" in str(refused.value)
    assert served_models("http://127.0.0.1:8812/v1?model=smollm2-135m") == "smollm2-135m"
    assert served_models("offline?seed=3") == "offline"
    assert served_models("openai:gpt-4o-mini") == "gpt-4o-mini"


def test_a_draw_is_seeded() -> None:
    options, shares = ("a", "b", "c"), (0.2, 0.5, 0.3)
    first = [drawn_answer(options, shares, random.Random(i)) for i in range(300)]
    assert first == [drawn_answer(options, shares, random.Random(i)) for i in range(300)]
    assert abs(first.count("b") / 300 - 0.5) < 0.1


def _stored(tmp_path: Path) -> Path:
    db = tmp_path / "profile.duckdb"
    con = connect(db)
    try:
        store.replace_profile(con, {
            "job_id": "calib-x", "method": "few-shot:1", "steering": "attributes",
            "temperature": 1.7, "params": {"k": 1}, "examples": examples_json([EXAMPLE]),
            "model": "offline", "llm": "offline",
            "candidates": [{"label": "few-shot:1#0/attributes", "method": "few-shot:1",
                            "steering": "attributes", "temperature": 1.7, "training": 0.81,
                            "cells": 12, "examples": ["Q1"], "chosen": True}]})
        con.executemany("INSERT INTO calibration_folds VALUES ('calib-x', ?, ?)",
                        [("Q1", 1), ("Q2", 0), ("Q3", 2)])
    finally:
        con.close()
    return db


def test_a_stored_profile_reads_back_and_shows_in_the_report(tmp_path: Path) -> None:
    db = _stored(tmp_path)
    con = connect(db, read_only=True)
    try:
        profile = load_profile(con, "calib-x")
        page = "\n".join(profile_html(con, "calib-x"))
        with pytest.raises(UsageError, match="is no calibration of this --db"):
            load_profile(con, "calib-y")
    finally:
        con.close()
    assert profile.config.method.label == "few-shot:1" and profile.temperature == 1.7
    assert profile.config.examples == (EXAMPLE,)
    assert "few-shot:1, steering attributes, T=1.7, 1 example question" in profile.describe()
    for shown in ("<h2>Survey profile</h2>", "held-out fold</th><td>1 questions, never seen by "
                  "the fit: Q2", "few-shot:1#0/attributes", "0.810", NOT_PROMISED[:40]):
        assert shown in page
