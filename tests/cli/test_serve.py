"""``personahub serve`` passes its options to the loopback server."""

import pytest
from typer.testing import CliRunner

from personahub.cli.app import app
from personahub.models.fake_server import server as server_module


class _Stop(Exception):
    """Raised in place of starting the server: the options are all the test needs."""


def test_serve_model_options_become_the_served_names(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def capture(options, host, port):
        seen.append(options)
        raise _Stop

    monkeypatch.setattr(server_module, "start_server", capture)
    result = CliRunner().invoke(app, ["serve", "--port", "0", "--model", "qwen2.5",
                                      "--model", "org/served"])
    assert isinstance(result.exception, _Stop)
    assert seen[0].models == ("qwen2.5", "org/served")


def test_serve_runaway_rate_reaches_the_server_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def capture(options, host, port):
        seen.append(options)
        raise _Stop

    monkeypatch.setattr(server_module, "start_server", capture)
    result = CliRunner().invoke(app, ["serve", "--port", "0", "--runaway-rate", "0.25"])
    assert isinstance(result.exception, _Stop)
    assert seen[0].runaway_rate == 0.25
    monkeypatch.undo()
    bad = CliRunner().invoke(app, ["serve", "--port", "0", "--runaway-rate", "1.5"])
    assert bad.exit_code != 0 and "--runaway-rate must be within [0, 1]" in bad.output
