"""The shared validators (``core/validate.py``) and the option objects that call them: a bad value
is a UsageError naming the setting, raised before any database is opened."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from personahub.core import validate
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.validate import (
    MAX_SEED,
    MAX_TOKENS,
    check_int,
    check_number,
    check_seed,
    check_text_file,
    check_weights,
    json_depth,
    persona_text_problem,
    read_text_file,
)
from personahub.models.generation import Generation
from personahub.models.settings import LLMConfigError, LLMSettings
from personahub.pipelines.run import RunConfig
from personahub.pipelines.synthesize import SynthConfig
from personahub.sim.scenario import Scenario, ScenarioValueError


@pytest.mark.parametrize("value", [-1, MAX_SEED + 1, 2**80, 1.0, "3", True, None])
def test_seed_outside_the_range_or_not_an_int_is_refused(value) -> None:
    with pytest.raises(UsageError, match="--seed must be an integer"):
        check_seed(value)


@pytest.mark.parametrize("value", [0, 7, MAX_SEED])
def test_seeds_in_range_pass(value) -> None:
    assert check_seed(value) == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1", None, False])
def test_numbers_must_be_finite(value) -> None:
    with pytest.raises(UsageError, match="x must be a"):
        check_number(value, "x")


def test_number_bounds() -> None:
    assert check_number(1, "x", above=0, high=1) == 1.0
    with pytest.raises(UsageError, match="x must be > 0, got 0"):
        check_number(0, "x", above=0)
    with pytest.raises(UsageError, match="x must be <= 2, got 3"):
        check_number(3, "x", high=2)
    with pytest.raises(UsageError, match="n must be an integer within 1..3, got 4"):
        check_int(4, "n", low=1, high=3)


def test_weights() -> None:
    assert check_weights([1, 0.5], "w", 2) == (1, 0.5)
    for weights, says in (([1], "one weight per kind"), ([1, math.inf], r"w\[1\] must be a finite"),
                          ([0, 0], "all zero"), ([1, -1], r"w\[1\] must be >= 0"),
                          ([1, "a"], "must be a number")):
        with pytest.raises(UsageError, match=says):
            check_weights(weights, "w", 2)


def test_json_depth_without_recursion() -> None:
    assert json_depth("x") == 0 and json_depth([]) == 1 and json_depth({"a": [1, {"b": 2}]}) == 3
    deep: list = []
    for _ in range(100_000):  # far deeper than Python's recursion limit
        deep = [deep]
    assert json_depth(deep, limit=64) == 65  # counted only up to the limit + 1


def test_persona_text_problems() -> None:
    assert persona_text_problem("A nurse from Lisbon.") is None
    assert "at most 20,000" in persona_text_problem("x" * 20_001)
    assert "NUL" in persona_text_problem("A nurse\x00")


# --------------------------------------------------------------------------- files


def test_read_text_file(tmp_path: Path) -> None:
    path = tmp_path / "w.md"
    path.write_bytes("\ufeffLe café\n".encode())
    assert read_text_file(path, "--world") == "Le café\n"
    path.write_bytes(b"line one\nline two caf\xe9\n")
    with pytest.raises(PersonahubError, match=r"--world .*w.md: line 2: not UTF-8 text"):
        read_text_file(path, "--world")
    path.write_bytes(b"\x7fELF\x02\x01\x00\x00")
    with pytest.raises(PersonahubError, match="is a binary file"):
        read_text_file(path, "--world")
    with pytest.raises(PersonahubError, match="is a folder"):
        read_text_file(tmp_path, "--world")
    with pytest.raises(PersonahubError, match="file not found"):
        read_text_file(tmp_path / "none.md", "--world")
    path.write_bytes(b"x" * 2048)
    with pytest.raises(PersonahubError, match="larger than"):
        read_text_file(path, "--world", max_bytes=1024)


def test_check_text_file_reads_gzip_to_its_end(tmp_path: Path) -> None:
    text = "".join(f"line {i}: Übung macht den Meister\n" for i in range(50_000)).encode()
    whole = tmp_path / "c.txt.gz"
    whole.write_bytes(gzip.compress(text))
    check_text_file(whole, "corpus")
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(gzip.compress(text)[:-100])
    with pytest.raises(PersonahubError, match="corpus .*cut.txt.gz: damaged or truncated gzip"):
        check_text_file(cut, "corpus")


def test_check_text_file_finds_the_line_across_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(validate, "_CHUNK", 5)  # characters split across reads
    path = tmp_path / "c.txt"
    path.write_bytes("ééé\nüüü\n".encode() + b"bad \xff\n")
    with pytest.raises(PersonahubError, match=r"line 3: not UTF-8 text .* at byte 18"):
        check_text_file(path, "corpus")
    path.write_bytes("ééé\nüüü\n".encode())
    check_text_file(path, "corpus")  # split characters are not errors
    path.write_bytes(b"ok\n" + "é".encode()[:1])
    with pytest.raises(PersonahubError, match="ends inside a character"):
        check_text_file(path, "corpus")
    check_text_file(path, "corpus", strict_utf8=False)  # --skip-bad: records decide
    path.write_bytes(b"text\n" * 10 + b"\x00")
    with pytest.raises(PersonahubError, match="a NUL byte at byte 50"):
        check_text_file(path, "corpus", strict_utf8=False)


# --------------------------------------------------------------------------- option objects


@pytest.mark.parametrize("kwargs, says", [
    ({"seed": -5}, "--seed must be an integer within"),
    ({"seed": 2**80}, "--seed must be an integer within"),
    ({"max_tokens": 10**12}, f"--max-tokens must be an integer within 1..{MAX_TOKENS}"),
    ({"steps": 1.5}, "--steps must be an integer"),
    ({"timeout_s": math.nan}, "--timeout must be a finite number"),
    ({"rps": math.inf}, "--rps must be a finite number"),
    ({"temperature": math.nan}, "--temperature must be a finite number"),
    ({"price_in": -1}, "--price-in must be >= 0"),
])
def test_run_options_refuse_bad_values(tmp_path: Path, kwargs, says) -> None:
    with pytest.raises(UsageError, match=says):
        RunConfig(db=tmp_path / "x.duckdb", **kwargs)
    assert not (tmp_path / "x.duckdb").exists()


@pytest.mark.parametrize("kwargs, says", [
    ({"seed": -5}, "--seed must be an integer"),
    ({"n": 2.5}, "--n must be an integer"),
    ({"max_tokens": 0}, "--max-tokens must be an integer within"),
    ({"sample": "first"}, "--sample 'first'"),
])
def test_synth_options_refuse_bad_values(kwargs, says) -> None:
    with pytest.raises(UsageError, match=says):
        SynthConfig(task="instruction", **kwargs)


def test_client_settings_refuse_bad_values() -> None:
    for kwargs, says in (({"seed": -1}, "--seed"), ({"timeout_s": math.inf}, "--timeout"),
                         ({"offline_latency_s": math.nan}, "--offline-latency")):
        with pytest.raises(LLMConfigError, match=says):
            LLMSettings(**kwargs)
    with pytest.raises(UsageError, match="--top-p must be > 0"):
        Generation(top_p=0)


@pytest.mark.parametrize("kwargs, says", [
    ({"steps": 1.5}, "scenario.steps must be an integer, got 1.5"),
    ({"steps": True}, "scenario.steps must be an integer, got True"),
    ({"seed": "abc"}, "scenario.seed must be an integer, got 'abc'"),
    ({"seed": 2**80}, "scenario.seed must be an integer within 0.."),
    ({"tasks": ("instruction", "npc_dialogue"), "task_weights": (1, math.inf)},
     r"scenario.task_weights\[1\] must be a finite number"),
    ({"tasks": ("instruction",), "task_weights": "1"}, "must be a tuple of numbers"),
    ({"activation": math.nan}, "scenario.activation must be a finite number"),
    ({"inbox_size": 2.5}, "scenario.inbox_size must be an integer"),
    ({"world": 5}, "scenario.world must be a string"),
])
def test_scenario_values_are_usage_errors(kwargs, says) -> None:
    with pytest.raises(ScenarioValueError, match=says) as info:
        Scenario(name="s", **kwargs)
    assert isinstance(info.value, UsageError)
