"""Driving the CLI in-process, and what a one-line error looks like."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from personahub.cli.app import app

runner = CliRunner()


def invoke(*args: object) -> Result:
    """Run ``personahub ARGS`` in this process (exceptions propagate)."""
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result: Result) -> str:
    """The one ``error:`` line a failed command printed (exit 1, nothing else on stderr)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def usage_error(result: Result) -> str:
    """The one ``error:`` line of a usage error (a flag, option or scenario value): exit 2."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    return lines[0]
