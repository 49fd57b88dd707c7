"""``personahub serve`` passes its options to the loopback server."""

from pathlib import Path

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


def test_serve_no_logprobs_reaches_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def capture(options, host, port):
        seen.append(options)
        raise _Stop

    monkeypatch.setattr(server_module, "start_server", capture)
    for flags, expected in (([], True), (["--no-logprobs"], False)):
        result = CliRunner().invoke(app, ["serve", "--port", "0", *flags])
        assert isinstance(result.exception, _Stop)
        assert seen[-1].logprobs is expected


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


def _float_flags() -> list[str]:
    """Every float option of ``serve``, read from its signature (a new one is covered too)."""
    import typing

    from personahub.cli.serve import serve

    hints = typing.get_type_hints(serve, include_extras=True)
    flags = []
    for name, hint in hints.items():
        base, *meta = typing.get_args(hint) if typing.get_origin(hint) is typing.Annotated else (hint,)
        if base in (float, float | None):
            declared = [d for m in meta for d in getattr(m, "param_decls", ()) or ()]
            flags.append(declared[0] if declared else "--" + name.replace("_", "-"))
    return sorted(flags)


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
@pytest.mark.parametrize("flag", _float_flags())
def test_serve_refuses_a_non_finite_float_before_starting(
        monkeypatch: pytest.MonkeyPatch, flag: str, value: str) -> None:
    """``serve --latency inf`` started, then answered every request with a 500
    (``time.sleep(inf)``: OverflowError). Every float option is refused up front, exit 2."""
    from tests.cli_helpers import usage_error

    started = []
    monkeypatch.setattr(server_module, "start_server", lambda *a, **k: started.append(a))
    result = CliRunner().invoke(app, ["serve", "--port", "0", flag, value])
    line = usage_error(result)
    assert not started
    assert flag in line  # typer refuses some (nan and -inf below a min=0), the options the rest
    if value == "inf":
        assert line == f"error: {flag} must be a finite number, got inf"


def test_serve_float_flags_are_the_expected_ones() -> None:
    """The parametrised check above sees the float options (not an empty list)."""
    assert {"--latency", "--hang-seconds", "--retry-after", "--batch-delay",
            "--error-rate"} <= set(_float_flags())


def _threads(pid: int) -> int:
    """The thread count of process ``pid`` (Linux's /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


@pytest.mark.slow  # starts a `personahub serve` process
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc for thread counts")
def test_serve_closes_partial_heads_and_bounds_its_threads() -> None:
    """``serve`` held connections sending partial headers for as long as they liked,
    a thread each (3,004 threads for 3,000). As a user starts it, with a small --header-timeout
    and --max-connections: the connections are closed, threads stay under the cap, and a
    normal request is answered meanwhile."""
    from contextlib import ExitStack

    import httpx

    from tests.models.fake_server.test_server_connections import CHAT, open_partial, wait_closed
    from tests.models.fake_server.test_server_fuzz import Serve

    serve = Serve("--header-timeout", "1", "--max-connections", "40")
    try:
        before = _threads(serve.proc.pid)
        with ExitStack() as stack:
            socks = open_partial(serve.url, 30, stack)
            answer = httpx.post(serve.url + "/chat/completions", json=CHAT, timeout=30)
            assert answer.status_code == 200, answer.text
            assert _threads(serve.proc.pid) <= before + 40
            assert wait_closed(socks) == [b""] * 30
    finally:
        serve.stop()
