"""User text reaches the report's charts as written: a survey option
``"$5 to $10"`` is not matplotlib math (an italic "5to10"), and ``"$\\notacommand$"`` does not
stop the report."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import matplotlib
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from personahub.analysis.report import LITERAL_TEXT, write_report
from personahub.api import run_simulation
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.conftest import persona_texts

OPTIONS = ("$5 to $10", "$\\notacommand$", "100% {sure} _maybe_ ^no^")


def _width(text: str) -> float:
    """The drawn width of ``text`` in a figure (Agg), in pixels."""
    canvas = FigureCanvasAgg(Figure())
    label = canvas.figure.text(0, 0, text)
    return float(label.get_window_extent(canvas.get_renderer()).width)


def test_text_is_drawn_literally_inside_the_report_style() -> None:
    with matplotlib.rc_context(LITERAL_TEXT):
        literal = _width("$5 to $10")
        assert literal > _width("5to10") * 1.5  # both dollars and both spaces are drawn
        _width("$\\notacommand$")  # no ParseFatalException
    assert _width("$5 to $10") < literal  # outside it matplotlib parses math (what it did)


@pytest.fixture(scope="module")
def survey_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("survey")
    (folder / "people.jsonl").write_text(
        "".join(f'{{"persona": "{t}"}}\n' for t in persona_texts(6)), encoding="utf-8")
    (folder / "s.py").write_text(textwrap.dedent(f"""\
        from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey

        SCENARIO = Scenario(
            name="dollars", personas=PersonaSource(path="people.jsonl"),
            graph=GraphGrowth(hops=0, acquaintances=2), steps=1, tasks=("instruction",),
            surveys=(Survey(id="price", question="Pay $5 or $\\\\alpha?", steps=(1,),
                            options={OPTIONS!r}),),
        )
        """), encoding="utf-8")
    db = folder / "hub.duckdb"
    return db, run_simulation(RunConfig(scenario=load_scenario(folder / "s.py"), db=db)).run_id


@pytest.mark.slow
def test_report_with_dollar_options_is_written(survey_db, tmp_path) -> None:
    db, run = survey_db
    con = duckdb.connect(str(db), read_only=True)
    try:
        index = write_report(con, tmp_path / "r", run_id=run)
    finally:
        con.close()
    page = index.read_text(encoding="utf-8")
    assert "survey_answers.png" in page
    assert (tmp_path / "r" / "survey_answers.png").stat().st_size > 0
    assert matplotlib.rcParams["text.parse_math"]  # the style did not leak out of the report
