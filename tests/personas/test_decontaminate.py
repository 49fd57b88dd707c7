"""Decontamination: planted benchmark items are flagged, and only they."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personahub.personas.decontaminate import decontaminate, read_benchmark

VOCAB = [f"w{i}" for i in range(3000)]
PHRASES = ["solve for x", "what is the value of", "how many apples", "in total, how many"]


def _text(rng: random.Random, words: int) -> str:
    """Random words with a common short phrase in the middle (shared by many texts, < 13 words)."""
    body = rng.choices(VOCAB, k=words)
    body.insert(words // 2, rng.choice(PHRASES))
    return " ".join(body).capitalize() + "?"


@pytest.fixture(scope="module")
def planted() -> tuple[list[str], list[str], dict[int, int]]:
    """500 items; a benchmark of 400 other texts with 20 items planted at known rows:
    7 verbatim (punctuation and case changed), 7 with one word changed, 6 with one added."""
    rng = random.Random(46)
    items = [_text(rng, rng.randint(25, 40)) for _ in range(500)]
    bench = [_text(rng, rng.randint(20, 40)) for _ in range(400)]
    chosen = rng.sample(range(500), 20)
    rows: dict[int, int] = {}
    for k, item in enumerate(chosen):
        words = items[item].split()
        mid = len(words) // 2
        if k < 7:
            text = items[item].upper().replace("?", " !!")
        elif k < 14:
            words[mid] = "changed"
            text = " ".join(words)
        else:
            words.insert(mid, "added")
            text = " ".join(words)
        row = rng.randrange(len(bench) + 1)
        bench.insert(row, text)
        rows = {i: (r + 1 if r >= row else r) for i, r in rows.items()}
        rows[item] = row
    return items, bench, rows


def test_exactly_the_planted_items_are_flagged(planted: tuple[list[str], list[str], dict[int, int]]
                                               ) -> None:
    items, bench, rows = planted
    matches = decontaminate(items, {"bench.jsonl": bench})
    assert {m.item: m.benchmark_row for m in matches} == rows
    assert {m.kind for m in matches} == {"ngram"}
    assert all(m.benchmark == "bench.jsonl" for m in matches)
    for m in matches:  # the stored n-gram is 13 normalised words of both texts
        words = m.detail.split()
        assert len(words) == 13
        assert m.detail in " ".join(items[m.item].lower().replace("?", "").split())


def test_the_ngram_size_matters(planted: tuple[list[str], list[str], dict[int, int]]) -> None:
    items, bench, rows = planted
    # a 3-word n-gram is shared through the common phrases: far more than the planted items
    assert len(decontaminate(items, {"b": bench}, ngram=3, minhash=False)) > 100
    # an n-gram longer than the items: only whole equal texts (the 7 verbatim ones) match
    whole = decontaminate(items, {"b": bench}, ngram=60, minhash=False)
    assert {m.item for m in whole} < set(rows) and len(whole) == 7


def test_a_short_reworded_item_is_caught_by_minhash_only() -> None:
    item = "a b c d e f g h i j k l m n o p q r s t"  # 20 words
    near = "a b c d e f g h i j k l m n o p q r s zz"  # one word changed: J = 19/21
    far = "a b c d e f g h i j zz yy xx ww vv uu tt ss rr qq"  # J = 10/30
    assert decontaminate([item], {"b": [far, near]}, ngram=25, minhash=False) == []
    (match,) = decontaminate([item], {"b": [far, near]}, ngram=25)
    assert (match.kind, match.benchmark_row) == ("minhash", 1)
    assert 0.8 <= float(match.detail) <= 1.0


def test_short_texts_are_their_own_ngram() -> None:
    bench = ["What is 2 + 2?", "Name a prime."]
    matches = decontaminate(["what is 2+2", "what is 2 + 2 + 2", "NAME A PRIME!"], {"b": bench},
                            minhash=False)
    assert [(m.item, m.benchmark_row, m.detail) for m in matches] == [
        (0, 0, "what is 2 2"), (2, 1, "name a prime")]


def test_each_benchmark_is_reported_apart() -> None:
    text = " ".join(f"t{i}" for i in range(20))
    matches = decontaminate([text, "other words"], {"gsm8k": ["x", text], "math": [text]})
    assert [(m.benchmark, m.item, m.benchmark_row) for m in matches] == [
        ("gsm8k", 0, 1), ("math", 0, 0)]


def _write(path: Path, column: str, texts: list[str]) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": i, column: t}) + "\n" for i, t in enumerate(texts)))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", column])
            writer.writerows(enumerate(texts))
    else:
        pq.write_table(pa.table({"id": list(range(len(texts))), column: texts}), path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_each_format_reads_its_text_column(tmp_path: Path, suffix: str) -> None:
    texts = ["Natalia sold clips, to 48 friends.", "Find x: 2x = 4"]
    _write(tmp_path / f"q{suffix}", "question", texts)
    assert read_benchmark(tmp_path / f"q{suffix}") == texts  # guessed: question
    _write(tmp_path / f"b{suffix}", "body", texts)
    assert read_benchmark(tmp_path / f"b{suffix}", text_column="body") == texts


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_file_without_a_text_column_names_its_columns(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"bad{suffix}"
    _write(path, "body", ["a"])
    with pytest.raises(ValueError, match=r"bad\.\w+: no text column text / question.*its columns "
                                         r"are id, body") as err:
        read_benchmark(path)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no text column answer; its columns are id, body"):
        read_benchmark(path, text_column="answer")


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match="unknown benchmark format"):
        read_benchmark(path)


def test_batches_do_not_change_the_matches(planted: tuple[list[str], list[str], dict[int, int]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Items are checked a batch at a time; indices and matches do not depend on the batch size."""
    import personahub.personas.decontaminate as decon

    items, bench, rows = planted
    monkeypatch.setattr(decon, "_BATCH", 37)
    assert {m.item: m.benchmark_row for m in decontaminate(items, {"b": bench})} == rows


def test_empty_texts_and_benchmarks_match_nothing() -> None:
    assert decontaminate(["x y"], {"b": []}) == []
    assert decontaminate([], {"b": ["x"]}) == []
    assert [(m.item, m.benchmark_row) for m in decontaminate(["", "a b"], {"b": ["", "a b"]})] == [
        (1, 1)]
