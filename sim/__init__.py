"""Simulation: the scenario contract, the Mesa society model, the runner, the run log and the CLI."""

from __future__ import annotations

import sys


def main(scenario_file: str) -> None:
    """Entry point for ``python SCENARIO.py [options]``: same as ``personahub run SCENARIO``."""
    from sim.cli import app

    app(["run", scenario_file, *sys.argv[1:]], prog_name="personahub")
