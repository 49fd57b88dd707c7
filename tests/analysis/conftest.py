"""A product-launch run (offline) and a synthesis job in one database, shared by the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from personahub.api import run_simulation, run_synthesis
from personahub.pipelines.run import RunConfig
from personahub.pipelines.synthesize import SynthConfig
from personahub.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def launch_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """scenarios/product_launch.py run offline, plus a 6-item math_problem job."""
    db = tmp_path_factory.mktemp("launch") / "launch.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(ROOT / "scenarios" / "product_launch.py"),
                                       db=db))
    job = run_synthesis(SynthConfig(task="math_problem", n=6, db=str(db)))
    return {"db": db, "run": summary.run_id, "job": job.job_id}
