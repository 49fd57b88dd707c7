"""``personas expand`` and ``personas stats`` right after it count the same graph alike (its
edges, pairs of related personas, and its degrees), and a rejection by the quality gate is
said to be an answered call's, beside the calls kept."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import invoke

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def expanded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Fourteen seed personas expanded two hops (the offline engine echoes one answer)."""
    tmp = tmp_path_factory.mktemp("expanded")
    seeds = tmp / "seeds.jsonl"
    lines = (ROOT / "personas" / "data" / "seed_personas.jsonl").read_text("utf-8").splitlines()
    seeds.write_text("\n".join(lines[:14]) + "\n", encoding="utf-8")
    db = tmp / "hub.duckdb"
    assert invoke("personas", "import", seeds, "--db", db).exit_code == 0
    result = invoke("personas", "expand", "--hops", 2, "--fanout", 2, "--db", db, "--preview", 0)
    assert result.exit_code == 0, result.output
    return {"db": db, "output": result.output}


@pytest.mark.slow
def test_expand_and_stats_count_the_same_edges_and_degrees(expanded: dict[str, Any]) -> None:
    """expand said 2,946 edges where stats right after said 3,090, with other degrees."""
    db = expanded["db"]
    said = re.search(r"graph of the expansion: (\d+) nodes, (\d+) edges.*degrees (\{.*\})",
                     expanded["output"])
    assert said, expanded["output"]
    stats = json.loads(invoke("personas", "stats", "--db", db, "--json").stdout)
    assert (stats["nodes"], stats["edges"]) == (int(said[1]), int(said[2]))
    assert stats["degree_histogram"] == json.loads(said[3].replace("'", '"'))
    assert stats["relations"] >= stats["edges"]  # a pair may hold several relations
    table = invoke("personas", "stats", "--db", db).stdout
    row = next(line for line in table.splitlines() if "edges (pairs of related personas)" in line)
    assert row.split("│")[2].strip() == str(stats["edges"])


@pytest.mark.slow
def test_a_rejection_is_said_to_be_an_answered_calls(expanded: dict[str, Any]) -> None:
    """"9 rejected" stood beside "522 of 522 calls kept (100%)" with nothing saying how both
    can hold: a call is kept when the model answers; the gate then judges the answer."""
    lines = expanded["output"].splitlines()
    rejected = next(line for line in lines if "rejected by the quality gate: " in line)
    assert rejected.startswith("personas rejected by the quality gate: 1 (top reasons: echo 1)")
    assert "its call counts as kept, the gate refused what it said" in rejected
    assert any(re.search(r": (\d+) of \1 calls kept \(100%\)", line) for line in lines)
