"""Helpers shared by the synthesis / export / analysis tests (no fixtures files on disk)."""

from __future__ import annotations

import json
from pathlib import Path

from personahub.api import run_simulation
from personahub.pipelines.run import RunConfig, RunSummary
from personahub.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def run_default_scenario(db: Path, steps: int = 2) -> RunSummary:
    """The default scenario (riverside_town), a few steps, offline, into ``db``."""
    scenario = load_scenario(ROOT / "scenarios" / "riverside_town.py")
    return run_simulation(RunConfig(scenario=scenario, db=db, steps=steps))


def write_examples(path: Path, with_personas: bool = True) -> Path:
    """A small demonstrations file; the second line has a persona when asked."""
    rows = [
        {"text": "A bakery sells 240 loaves a day; prices rise 5% and 3% of customers leave. "
                 "What happens to revenue?"},
        {"text": "A ferry carries 12 cars per crossing and 4 crossings an hour; how long to "
                 "clear a queue of 130 cars?"},
    ]
    if with_personas:
        rows[1]["persona"] = "A ferry deckhand on an island route"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
