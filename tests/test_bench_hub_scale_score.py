"""The hub bench's dedup score: a planted pair counts as found when at most one of its texts is
kept, whichever way round the mark points."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import duckdb
import numpy as np
import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_hub_scale  # type: ignore[import-not-found]

    return bench_hub_scale


def planted(bench: ModuleType, n: int, tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Write the truth of a hub of n lines; return its path and the pairs at J >= 0.9."""
    hub_corpus = bench.hub_corpus
    lines = hub_corpus.plan(0, n, 0)
    texts = hub_corpus.texts(lines, 0)
    copies = np.flatnonzero(lines.kind > 0)
    sources = lines.source[copies]
    jaccard = np.array([hub_corpus.jaccard(texts[c], texts[s])
                        for c, s in zip(copies.tolist(), sources.tolist(), strict=True)])
    truth = tmp_path / "truth.npz"
    np.savez(truth, lines=copies, sources=sources, jaccard=jaccard)
    above = jaccard >= bench.THRESHOLD
    return truth, copies[above], sources[above]


def hub_db(path: Path, n: int, marks: dict[int, int]) -> Path:
    """A personas table as the import leaves it, each line a persona, with the given marks."""
    rows = pa.table({
        "persona_id": [f"p{i}" for i in range(n)], "seq": list(range(n)),
        "source_ref": [f"line {i + 1}" for i in range(n)],
        "is_duplicate": [i in marks for i in range(n)],
        "duplicate_of": [f"p{marks[i]}" if i in marks else None for i in range(n)]})
    con = duckdb.connect(str(path))
    con.register("rows", rows)
    con.execute("CREATE TABLE personas AS SELECT * FROM rows")
    con.close()
    return path


@pytest.mark.slow
def test_an_original_marked_onto_its_copy_is_a_found_pair(bench: ModuleType, tmp_path: Path) -> None:
    """Half the planted pairs marked the other way round (the import put the copy first):
    every pair has one text kept, so recall is 1; copies marked is the other half."""
    n = 3000
    truth, copies, sources = planted(bench, n, tmp_path)
    assert copies.size > 100
    marks: dict[int, int] = {}
    for k, (c, s) in enumerate(zip(copies.tolist(), sources.tolist(), strict=True)):
        if s in marks or c in marks:
            continue
        if k % 2:
            marks[s] = c
        else:
            marks[c] = s
    got = bench.score(hub_db(tmp_path / "hub.duckdb", n, marks), truth, n)
    assert got["recall"] == 1.0
    assert got["missed"] == 0
    assert got["reversed"] > 0.3 * copies.size
    assert got["copy_marked"] < 0.7
    assert got["precision"] == 1.0


@pytest.mark.slow
def test_both_kept_is_a_miss_and_a_chain_is_not(bench: ModuleType, tmp_path: Path) -> None:
    """An original marked onto a third text leaves its copy kept (a found pair); a pair with
    both texts kept is a miss."""
    n = 3000
    truth, copies, sources = planted(bench, n, tmp_path)
    marks = {int(c): int(s) for c, s in zip(copies.tolist(), sources.tolist(), strict=True)}
    chained, both_kept = int(copies[0]), int(copies[1])
    assert sources[0] != sources[1]
    del marks[chained], marks[both_kept]
    planted_lines = {*copies.tolist(), *sources.tolist()}
    third = next(i for i in range(n) if i not in planted_lines)
    marks[int(sources[0])] = third  # the chained copy's original onto a third text
    got = bench.score(hub_db(tmp_path / "hub.duckdb", n, marks), truth, n)
    assert (got["chained"], got["missed"]) == (1, 1)
    assert got["recall"] == pytest.approx(1 - 1 / copies.size)
