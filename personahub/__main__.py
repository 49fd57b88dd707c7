"""``python -m personahub``: the same as the ``personahub`` command."""

from personahub.sim.cli import app

app(prog_name="personahub")
