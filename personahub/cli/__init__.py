"""The personahub command line: one module per command group, assembled in app."""

import sys


def main(scenario_file: str) -> None:
    """Entry point for python SCENARIO.py [options]: same as personahub run SCENARIO."""
    from personahub.cli.app import app

    app(["run", scenario_file, *sys.argv[1:]], prog_name="personahub")
