"""``python -m personahub``: the same as the ``personahub`` command."""

from personahub.cli.app import app

app(prog_name="personahub")
