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


def test_the_server_settings_reach_llama_server_and_the_client(bench: ModuleType) -> None:
    plain = bench.Serving("llama-server")
    cached = bench.Serving("llama-server", cache_ram=0, routing=False)
    assert "--cache-ram" not in plain.server_args()  # the server's own default
    assert cached.server_args()[-2:] == ["--cache-ram", "0"]
    assert plain.llm("http://127.0.0.1:1/v1?model=m") == "http://127.0.0.1:1/v1?model=m"
    assert cached.llm("http://127.0.0.1:1/v1?model=m").endswith("&slot_routing=0")


def test_the_prompt_cache_events_are_counted_from_the_log(bench: ModuleType,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("slot get_availabl: id  1 | task 7 | saving idle slot to prompt cache\n"
                   "srv  get_availabl: updating prompt cache\n"
                   "srv          load:  - found better prompt with f_keep = 0.9, f_sim = 0.8\n"
                   "slot get_availabl: id  0 | task 9 | saving idle slot to prompt cache\n")
    assert bench.cache_events(log) == {"saved idle": 2, "updated": 1, "restored": 1}
    assert bench.cache_events(tmp_path / "none.log") == {"saved idle": 0, "updated": 0,
                                                         "restored": 0}
