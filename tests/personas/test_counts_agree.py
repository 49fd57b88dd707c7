"""``personas expand`` and ``personas stats`` right after it count the same graph alike: its
edges (pairs of related personas) and its degrees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_helpers import invoke

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_expand_and_stats_count_the_same_edges_and_degrees(tmp_path: Path) -> None:
    """expand said 2,946 edges where stats right after said 3,090, with other degrees."""
    seeds = tmp_path / "seeds.jsonl"
    lines = (ROOT / "personas" / "data" / "seed_personas.jsonl").read_text("utf-8").splitlines()
    seeds.write_text("\n".join(lines[:12]) + "\n", encoding="utf-8")
    db = tmp_path / "hub.duckdb"
    assert invoke("personas", "import", seeds, "--db", db).exit_code == 0
    expanded = invoke("personas", "expand", "--hops", 2, "--fanout", 2, "--db", db, "--preview", 0)
    assert expanded.exit_code == 0, expanded.output
    said = re.search(r"graph of the expansion: (\d+) nodes, (\d+) edges.*degrees (\{.*\})",
                     expanded.output)
    assert said, expanded.output
    stats = json.loads(invoke("personas", "stats", "--db", db, "--json").stdout)
    assert (stats["nodes"], stats["edges"]) == (int(said[1]), int(said[2]))
    assert stats["degree_histogram"] == json.loads(said[3].replace("'", '"'))
    assert stats["relations"] >= stats["edges"]  # a pair may hold several relations
    table = invoke("personas", "stats", "--db", db).stdout
    row = next(line for line in table.splitlines() if "edges (pairs of related personas)" in line)
    assert row.split("│")[2].strip() == str(stats["edges"])
