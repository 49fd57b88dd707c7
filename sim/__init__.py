"""Simulation: the scenario contract, the Mesa society model, the runner, the run log and the CLI."""

if __name__ == "sim":  # the repository root is on sys.path: this folder is not a top-level package
    raise ModuleNotFoundError(
        "No module named 'sim' (this folder is personahub.sim)", name="sim")

import sys  # noqa: E402


def main(scenario_file: str) -> None:
    """Entry point for ``python SCENARIO.py [options]``: same as ``personahub run SCENARIO``."""
    from personahub.sim.cli import app

    app(["run", scenario_file, *sys.argv[1:]], prog_name="personahub")
