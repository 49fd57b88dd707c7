"""Every job kind runs on Ray to the rows it makes locally (``local`` and ``ray`` run any spec's
batches; no spec knows its executor).

Each shipped kind's case (its row's sample config, ``tests/pipelines/every_kind.py``) runs on
copies of one fixture: twice as written (local) and once with ``executor="ray"`` and
``ray_workers=2``. What it makes (where the two local jobs agree) and the answers it kept are
the same; the Ray executor was asked for the job's batches (a kind that fell back to the local
path would pass the comparison without it); the job records that it ran on Ray; and no shard
folder is left beside the database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline_helpers import rows
from tests.pipelines.every_kind import KEPT_CALLS, KINDS, Agreement, Kind, prepared, snapshot, start


def ray_batches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds whose batches the Ray executor is asked for from now on, in order."""
    from personahub.executors.ray_executor import RayExecutor

    asked: list[str] = []
    real = RayExecutor.batches

    def counting(self: RayExecutor, spec: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(spec.kind)
        return real(self, spec, *args, **kwargs)

    monkeypatch.setattr(RayExecutor, "batches", counting)
    return asked


def runs_on_ray_as_it_does_locally(case: Kind, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that the case's job makes on Ray what it makes locally (a local Ray running)."""
    asked = ray_batches(monkeypatch)
    names, dbs = prepared(case, tmp_path, ("local", "again", "ray"))
    template = names.pop("template")
    names.pop("folder")
    local, again = (start(case, names, dbs[n]).job_id for n in ("local", "again"))
    assert not asked
    on_ray = start(case, names, dbs["ray"], executor="ray", ray_workers=2).job_id
    assert case.kind in asked

    agreed = Agreement.of(snapshot(dbs["local"], local), snapshot(dbs["again"], again))
    expected = agreed.made(snapshot(dbs["local"], local))
    assert expected != agreed.made(snapshot(template, None)), "the local job made no rows"
    assert agreed.made(snapshot(dbs["ray"], on_ray)) == expected
    assert rows(dbs["ray"], KEPT_CALLS) == rows(dbs["local"], KEPT_CALLS)
    (config,), = rows(dbs["ray"], "SELECT config FROM jobs WHERE job_id = ?", [on_ray])
    assert json.loads(config)["executor"] == "ray"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("ray.duckdb.")]


@pytest.mark.slow
@pytest.mark.parametrize("case", KINDS, ids=[k.kind for k in KINDS])
def test_every_kind_on_ray_makes_the_local_rows(local_ray: None, case: Kind, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    runs_on_ray_as_it_does_locally(case, tmp_path, monkeypatch)
