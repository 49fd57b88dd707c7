"""The Python API speaks Python. Ids are numbers or text, errors name the
caller's keywords (not the command's flags), every job function takes the common arguments,
a handle's ``repr`` is one line, and a run's sampled rows carry their step and agent."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import personahub
from personahub import runtime
from personahub.core.errors import PersonahubError
from personahub.core.kernel import JobResult
from personahub.pipelines.calibrate import CalibrationSummary
from personahub.python_names import python_message
from personahub.results import Job

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "scenarios" / "product_launch.py"

#: every job function of the API (each has an ``_async`` twin)
JOBS = ["run_scenario", "synthesize", "text_to_persona", "expand", "dedup", "interview", "judge",
        "calibrate", "write_population"]
#: what every one of them takes (``llm`` too where the job asks a model: all but dedup)
COMMON = {"db", "progress"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> personahub.Run:
    db = tmp_path_factory.mktemp("manners") / "run.duckdb"
    return personahub.run_scenario(LAUNCH, db=db, steps=1, progress=False)


def test_interview_takes_an_agent_id_as_a_number(run: personahub.Run) -> None:
    """``interview(..., agent=1)`` raised ``'int' object has no attribute 'strip'``."""
    answers = personahub.interview("Would you buy it?", run=run.run_id, db=run.db, agent=1)
    assert answers["agent_id"].tolist() == [1]
    again = run.interview("Would you buy it?", agent=1)
    assert again["answer"].tolist() == answers["answer"].tolist()


def test_a_handle_takes_its_id_as_a_number(tmp_path: Path) -> None:
    job = Job(kind="synthesis", job_id=12, db=str(tmp_path / "x.duckdb"))  # type: ignore[arg-type]
    assert job.job_id == "12" and job.db == tmp_path / "x.duckdb"


def test_export_over_an_existing_file_names_overwrite(tmp_path: Path) -> None:
    """``job.export(path)`` said ``--out ...: already exists; add --force``."""
    db = tmp_path / "s.duckdb"
    job = personahub.synthesize("math_problem", db=db, n=2, progress=False)
    path = tmp_path / "math.jsonl"
    assert job.export(path) == 2
    with pytest.raises(PersonahubError) as caught:
        job.export(path)
    message = str(caught.value)
    assert "--" not in message and "overwrite=True" in message and f"path={path}" in message
    assert job.export(path, overwrite=True) == 2


@pytest.mark.parametrize(("flagged", "python"), [
    ("--out a.jsonl: already exists; add --force", "path=a.jsonl: already exists; add overwrite=True"),
    ("--n 5 but only 2 personas match (allowed by --allow-fewer)",
     "n=5 but only 2 personas match (allowed by allow_fewer=True)"),
    ("--db /x/h.duckdb: no such database", "db=/x/h.duckdb: no such database"),
    ("give --marginals FILE, --joint FILE or both", "give marginals=FILE, joint=FILE or both"),
    ("--population/--carve 'age>3': bad", "population/carve='age>3': bad"),
    ("held back (3 failed; --include-ungated, or include_ungated=True from Python, draws those)",
     "held back (3 failed; include_ungated=True draws those)"),
    ("failed (resume to retry: personahub synthesize --resume J --db d)",
     "failed (resume to retry: personahub.resume('J', db='d'))"),
])
def test_flags_are_said_as_keywords(flagged: str, python: str) -> None:
    assert python_message(flagged, {"out": "path", "force": "overwrite"}) == python


def _twins() -> list[Callable[..., Any]]:
    return [getattr(personahub, name + suffix) for name in JOBS for suffix in ("", "_async")]


@pytest.mark.parametrize("function", _twins(), ids=lambda f: f.__name__)
def test_every_job_function_takes_the_common_arguments(function: Callable[..., Any]) -> None:
    """``progress=`` was refused by ``interview`` and ``calibrate`` as an unknown option."""
    keywords = {name for name, p in inspect.signature(function).parameters.items()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    wanted = COMMON | ({"llm"} if not function.__name__.startswith("dedup") else set())
    assert wanted <= keywords, f"{function.__name__} lacks {wanted - keywords}"


def test_interview_and_calibrate_report_progress(run: personahub.Run,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    personahub.interview("Why?", run=run.run_id, db=run.db, carve="hop=0", limit=2,
                         progress=lambda phase, done, total: seen.append(phase))
    assert seen
    handed: list[Any] = []

    def fake_run(spec: Any, config: Any, db: Any, **kwargs: Any) -> JobResult[Any]:
        handed.append(kwargs["progress"])
        summary = CalibrationSummary(job_id="calib-x", survey="s", population="p",
                                     steering=("persona",))
        return JobResult("calib-x", "finished", summary)

    monkeypatch.setattr(runtime, "run", fake_run)
    personahub.calibrate("survey.csv", population="pop-1", db=run.db, progress=lambda *a: None)
    assert handed and callable(handed[0])


def _handle_classes() -> list[type[Job]]:
    found, todo = [], [Job]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


@pytest.mark.parametrize("cls", _handle_classes(), ids=lambda c: c.__name__)
def test_every_handles_repr_is_one_line(cls: type[Job], tmp_path: Path) -> None:
    """``repr`` of a ``Calibration`` dumped its summary (DataFrames, many lines)."""
    summary = pd.DataFrame({"a": range(30), "b": ["x\ny"] * 30})
    handle = cls(kind=getattr(cls, "kind", "synthesis") if cls is not Job else "synthesis",
                 job_id="job-1", db=tmp_path / "x.duckdb", summary=summary)
    text = repr(handle)
    assert "\n" not in text and "job-1" in text and len(text) < 200, text
    assert callable(handle._repr_html_)  # the notebook's card is the rich display


def test_a_runs_sampled_rows_carry_step_and_agent(run: personahub.Run) -> None:
    """A run's card and ``Run.sample()`` showed ``step None``, ``agent_id None``."""
    rows = run.sample()
    assert len(rows) and rows["step"].notna().all() and rows["agent_id"].notna().all(), rows
    assert set(rows["step"]) <= {1} and "<td>None</td>" not in run._repr_html_()
