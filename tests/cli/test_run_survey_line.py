"""The run summary's survey line: its shares sum to 100%, or it says how many answers it left
out ("top 3 of 10 answers given")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_helpers import invoke

LAUNCH = Path(__file__).resolve().parents[2] / "scenarios" / "product_launch.py"


@pytest.mark.slow
def test_a_surveys_line_shows_every_answer_or_says_it_shows_the_top(tmp_path: Path) -> None:
    """The line showed the top 3 of 5 answers, so its shares did not sum to 100%."""
    result = invoke("run", LAUNCH, "--db", tmp_path / "run.duckdb", "--preview", 0, "--steps", 5)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.replace("│", " ").split())
    intent = re.search(r'purchase_intent, step \d: "[^"]+" (.*?) \(of \d+ answers\)', flat)
    assert intent, flat
    options = ("definitely", "probably", "unsure", "probably not", "definitely not")
    shares = [int(n) for n in re.findall(r"(\d+)%", intent[1])]
    assert len(shares) == len(options) and 97 <= sum(shares) <= 103, intent[1]
    fairness = re.search(r'price_fairness, step \d: "[^"]+" (.*?) \((top 3 of (\d+) answers '
                         r'given, )?of \d+ answers\)', flat)
    assert fairness, flat
    assert fairness[2] or len(re.findall(r"\d+%", fairness[1])) <= 5
