"""The queries a run's summary suggests ("Try:") are about that run, not every run the database
holds, and the views they use are there for them."""

from __future__ import annotations

import json
import shlex
from collections import Counter

import duckdb
import pytest

from tests.cli_helpers import invoke


def _hints(output: str) -> list[list[str]]:
    lines = output.splitlines()
    start = lines.index("Try:")
    return [shlex.split(line) for line in lines[start + 1:] if line.startswith("  personahub sql ")]


@pytest.mark.slow
def test_run_hints_filter_by_the_run_just_made(scenario_file, tmp_path):
    db = tmp_path / "two.duckdb"
    path = scenario_file()
    assert invoke("run", path, "--db", db, "--steps", "2", "--seed", "1").exit_code == 0
    second = invoke("run", path, "--db", db, "--steps", "1", "--seed", "2")
    assert second.exit_code == 0, second.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        run_id = con.execute("SELECT job_id FROM jobs WHERE kind = 'run' "
                             "ORDER BY started_at DESC LIMIT 1").fetchall()[0][0]
        ours = Counter(dict(con.execute("SELECT task, count(*) FROM emissions WHERE run_id = ? "
                                        "GROUP BY 1", [run_id]).fetchall()))
        total = con.execute("SELECT count(*) FROM emissions").fetchall()[0][0]
    finally:
        con.close()
    assert sum(ours.values()) < total  # the database holds both runs
    hints = _hints(second.output)
    assert len(hints) >= 2 and all(run_id in " ".join(h) for h in hints)
    first = invoke(*hints[0][1:], "--format", "jsonl")
    assert first.exit_code == 0, first.output
    counted = {row["task"]: row["count_star()"] for row in map(json.loads, first.output.splitlines())}
    assert counted == dict(ours)
    for hint in hints[1:]:  # every suggestion runs (the views it names exist)
        assert invoke(*hint[1:], "--format", "jsonl").exit_code == 0
