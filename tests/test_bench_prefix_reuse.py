"""The prefix-reuse bench's tally: exact repeats (an identical prompt asked again, reused whole)
and attempts the server never reported on are told apart from the share the prompts' shape gives."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_prefix_reuse  # type: ignore[import-not-found]

    return bench_prefix_reuse


def calls_db(tmp_path: Path, rows: list[tuple[int, int | None]]) -> Path:
    """Write an ``llm_calls`` table of (prompt tokens, cached tokens) rows."""
    path = tmp_path / "run.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE llm_calls (tokens_in INTEGER, cached_prompt_tokens INTEGER)")
    con.executemany("INSERT INTO llm_calls VALUES (?, ?)", rows)
    con.close()
    return path


def test_repeats_and_unlogged_attempts_are_counted_apart(bench: ModuleType,
                                                          tmp_path: Path) -> None:
    # a family's first call, a warm call, a retry of the warm call, an attempt that timed out
    db = calls_db(tmp_path, [(100, 4), (100, 80), (100, 99), (100, None)])
    calls, prompt, cached = bench.reuse(db)
    assert (calls, prompt, cached) == (3, 300, 183)
    counts = bench.tally(db)
    assert (counts.unlogged, counts.repeats, counts.repeat_tokens, counts.repeat_cached) == (
        1, 1, 100, 99)
    assert counts.without_repeats(prompt, cached) == pytest.approx(84 / 200)


def test_a_run_without_repeats_keeps_its_share(bench: ModuleType, tmp_path: Path) -> None:
    db = calls_db(tmp_path, [(100, 0), (120, 90)])
    calls, prompt, cached = bench.reuse(db)
    counts = bench.tally(db)
    assert (counts.unlogged, counts.repeats) == (0, 0)
    assert counts.without_repeats(prompt, cached) == pytest.approx(90 / 220)
