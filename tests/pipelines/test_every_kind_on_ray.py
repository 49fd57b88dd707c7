"""Every job kind runs on Ray to the rows it makes locally (issue 27: "``local`` and ``ray`` run
any spec's batches ... No spec knows its executor").

Each shipped kind's command (``tests/pipelines/every_kind.py``) runs twice on copies of one
fixture: as written (local) and with ``--executor ray --ray-workers 2``. The rows it makes and
the answers it kept are the same; the Ray executor was asked for the job's batches (a kind that
fell back to the local path would pass the comparison without it); the job records that it ran
on Ray; and no shard folder is left beside the database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import invoke
from tests.pipeline_helpers import rows
from tests.pipelines.every_kind import KEPT_CALLS, KINDS, Kind, prepared


@pytest.fixture
def ray_batches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds whose batches the Ray executor was asked for, in order."""
    from personahub.executors.ray_executor import RayExecutor

    asked: list[str] = []
    real = RayExecutor.batches

    def counting(self: RayExecutor, spec: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(spec.kind)
        return real(self, spec, *args, **kwargs)

    monkeypatch.setattr(RayExecutor, "batches", counting)
    return asked


@pytest.mark.slow
@pytest.mark.parametrize("case", KINDS, ids=[k.kind for k in KINDS])
def test_every_kind_on_ray_makes_the_local_rows(local_ray: None, ray_batches: list[str],
                                                case: Kind, tmp_path: Path) -> None:
    names, dbs = prepared(case, tmp_path, ("local", "ray"))
    command = case.start(names["folder"], names)
    local = invoke(*command, "--db", dbs["local"])
    assert local.exit_code == 0, local.output
    assert not ray_batches
    on_ray = invoke(*command, "--db", dbs["ray"], "--executor", "ray", "--ray-workers", 2)
    assert on_ray.exit_code == 0, on_ray.output
    assert case.kind in ray_batches

    expected = rows(dbs["local"], case.made)
    assert expected, "the local job made no rows"
    assert rows(dbs["ray"], case.made) == expected
    assert rows(dbs["ray"], KEPT_CALLS) == rows(dbs["local"], KEPT_CALLS)
    (config,), = rows(dbs["ray"], "SELECT config FROM jobs WHERE kind = ? "
                                  "ORDER BY started_at DESC LIMIT 1", [case.kind])
    assert json.loads(config)["executor"] == "ray"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("ray.duckdb.")]
