"""calibrate --fit and run --survey-profile on a real model: SmolLM2-135M-Instruct served by
xllamacpp (one thread, two slots) on 127.0.0.1.

Twelve questions of the self-made wave, two attributes (SEX, POLPARTY), panels of two, the
logprobs and distribution methods with the attributes steering. The console says whether the
fitted profile beats uniform on the held-out questions; the test prints it and does not require
it (measured, not tuned to). A run of the population's agents asked the held-out questions,
each answer drawn from the profile, gives group shares whose representativeness lies within the
calibration's held-out interval.

Marked ``real_model``: skips without xllamacpp or the GGUF; CI sets
``PERSONAHUB_REQUIRE_REAL_MODEL=1`` so that a missing one fails instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from personahub.analysis.survey_read import read_survey
from personahub.models import llamacpp
from personahub.models.llamacpp import LlamaServer
from tests.cli_helpers import invoke
from tests.optional import need_xllamacpp
from tests.pipelines.calibrate_fixtures import make_population
from tests.pipelines.fit_fixtures import write_wave

pytestmark = pytest.mark.real_model

SCENARIO = '''
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SURVEYS = {surveys!r}
SCENARIO = Scenario(
    name="profiled", personas=PersonaSource(path="hub", carve=("population={population}",)),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=1, tasks=("instruction",),
    activation=Activation(mode="count", count=1),
    surveys=tuple(Survey(id=i, steps=(1,), question=q, options=o) for i, q, o in SURVEYS))
'''


@pytest.fixture(scope="module")
def smollm2() -> Iterator[LlamaServer]:
    need_xllamacpp()
    with llamacpp.local_xllamacpp_server(threads=1) as server:
        yield server


def test_a_fit_on_smollm2_and_a_run_that_reproduces_it(smollm2: LlamaServer,
                                                        tmp_path: Path) -> None:
    import personahub
    from tests.sim.test_survey_profile_run import _answers, _group_scores

    db = tmp_path / "smollm2.duckdb"
    wave = write_wave(tmp_path / "wave")
    population = make_population(tmp_path, db, n=40)
    engine = ("--llm", smollm2.spec, "--timeout", "120", "--concurrency", "2")
    fitted = invoke("calibrate", wave, "--population", population, "--n", 2,
                    "--no-persona-n", 1, "--fit", "--elicit", "logprobs", "--elicit",
                    "distribution", "--steering", "attributes", "--db", db, *engine)
    assert fitted.exit_code == 0, fitted.output
    console = fitted.stdout
    job_id = re.search(r"^calibration (calib-\S+): ", console, re.MULTILINE).group(1)  # type: ignore[union-attr]
    said = next(x for x in console.splitlines() if x.startswith("held out: the fitted profile"))
    print(f"\nSmolLM2-135M, calibrate --fit: {said}")
    print("\n".join(x for x in console.splitlines() if x.startswith(("  logprobs/",
                                                                       "  distribution/",
                                                                       "profile ", "warning:",
                                                                       "held-out repr"))))
    cal = personahub.Calibration(job_id=job_id, db=db)
    profile = cal.profile()
    assert profile is not None and profile["model"] == "smollm2-135m"
    held = sorted(q for q, f in profile["folds"].items() if f == 0)
    survey = read_survey(wave)
    asked = [(q, survey.questions[q].text, survey.questions[q].options) for q in held]
    scenario = tmp_path / "held.py"
    scenario.write_text(SCENARIO.format(surveys=asked, population=population))
    ran = invoke("run", scenario, "--db", db, "--survey-profile", job_id, "--preview", 0, *engine)
    assert ran.exit_code == 0, ran.output
    run_id = re.search(r"run (\d{8}-\d{6}-[0-9a-f]{6})", ran.output).group(1)  # type: ignore[union-attr]
    answers = _answers(db, run_id)
    assert answers and {c["profile"] for _, _, c, _ in answers} == {job_id}
    fixture = {"survey": survey}
    drawn, expected = _group_scores(fixture, answers), _group_scores(fixture, answers, True)
    overall = cal.intervals().set_index(["attribute", "who"]).loc[("overall", "model")]
    print(f"held-out {overall['mean']:.3f} [{overall['low']:.3f}, {overall['high']:.3f}] on "
          f"{len(held)} questions; the run ({len(answers)} answers): drawn {drawn:.3f}, "
          f"expected {expected:.3f}")
    assert overall["low"] <= expected <= overall["high"]
    assert overall["low"] <= drawn <= overall["high"]
