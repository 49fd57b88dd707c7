"""README.md stays a short page a newcomer reads through: at most 200 lines (detail lives in
docs/), and its extras table names every extra pyproject.toml declares."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 200


def test_the_readme_is_at_most_200_lines() -> None:
    lines = README.read_text("utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md is {len(lines)} lines; move detail to docs/"


def test_the_extras_table_lists_every_extra() -> None:
    """The table lacked `local`, the extra of the README's own real-model section."""
    text = README.read_text("utf-8")
    table = text.split("| extra | adds |", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^\| `([a-z]+)` \|", table, re.M))
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
                   ["project"]["optional-dependencies"])
    assert listed == declared, f"missing {sorted(declared - listed)}, unknown {sorted(listed - declared)}"
