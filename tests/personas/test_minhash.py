from __future__ import annotations

import numpy as np
import pytest
from personahub.personas.minhash import (
    MinHashConfig,
    lsh_params,
    minhash_duplicates,
    signatures,
    tokenize,
)

from tests._planted import planted_corpus, recall_precision


def test_config_validation() -> None:
    for bad in (
        {"threshold": 0.0},
        {"threshold": 1.0},
        {"threshold": 1.5},
        {"num_perm": 8},
        {"ngram": 0},
        {"seed": -1},
        {"max_bucket_pairs": 0},
    ):
        with pytest.raises(ValueError):
            MinHashConfig(**bad)
    with pytest.raises(TypeError):
        MinHashConfig(0.9)  # type: ignore[misc]  # keyword-only


def test_lsh_params_match_datasketch_choice() -> None:
    datasketch_lsh = pytest.importorskip("datasketch.lsh")
    for threshold, num_perm in ((0.9, 128), (0.8, 128), (0.5, 64)):
        expected = datasketch_lsh._optimal_param(threshold, num_perm, 0.5, 0.5)
        assert lsh_params(threshold, num_perm) == expected


def test_tokenize_lowercases_and_splits_on_punctuation() -> None:
    assert tokenize("A Nurse, who-loves  hiking!") == ["a", "nurse", "who", "loves", "hiking"]


def test_signatures_shape_dtype_and_case_punctuation_insensitivity() -> None:
    cfg = MinHashConfig()
    sigs = signatures(["Hello, World", "hello world", "", "über straße"], cfg)
    assert sigs.shape == (4, 128) and sigs.dtype == np.uint32
    assert np.array_equal(sigs[0], sigs[1])
    assert (sigs[2] == np.iinfo(np.uint32).max).all()  # no words: never matched
    assert not np.array_equal(sigs[0], sigs[3])


def test_signatures_do_not_depend_on_batching() -> None:
    corpus = planted_corpus(60, 10, length=(10, 20))
    cfg = MinHashConfig()
    whole = signatures(corpus.texts, cfg)
    parts = np.concatenate([signatures(corpus.texts[i : i + 7], cfg) for i in range(0, 70, 7)])
    assert np.array_equal(whole, parts)


@pytest.mark.parametrize("ngram", [1, 2])
def test_planted_near_duplicates_recall_precision(ngram: int) -> None:
    corpus = planted_corpus(600, 300, length=(100, 140))
    if ngram == 2:  # a swap breaks bigrams; only edits/variants stay above 0.9 there
        corpus = planted_corpus(600, 300, length=(100, 140), kinds=("edit1", "variant"))
    dup = minhash_duplicates(corpus.texts, MinHashConfig(ngram=ngram))
    recall, precision = recall_precision(dup, corpus.truth())
    print(f"minhash ngram={ngram}: recall={recall:.3f} precision={precision:.3f}")
    assert recall >= 0.95
    assert precision >= 0.95
    assert (dup[:600] == -1).all(), "distinct texts were merged"


def test_distinct_but_overlapping_texts_are_kept() -> None:
    corpus = planted_corpus(200, 0, length=(30, 30))
    texts = list(corpus.texts)
    # half the words shared with an earlier text: Jaccard ~0.33, far below 0.9
    texts += [" ".join(t.split()[:15] + texts[-1 - i].split()[15:]) for i, t in enumerate(texts)]
    assert (minhash_duplicates(texts) == -1).all()


def test_earliest_kept_contract_and_determinism() -> None:
    corpus = planted_corpus(300, 300, length=(100, 140))
    cfg = MinHashConfig(seed=5)
    dup = minhash_duplicates(corpus.texts, cfg)
    assert dup.dtype == np.int64
    marked = np.flatnonzero(dup >= 0)
    assert (dup[marked] < marked).all()  # always an earlier text
    assert (dup[dup[marked]] == -1).all()  # ... which is itself kept
    assert np.array_equal(dup, minhash_duplicates(corpus.texts, cfg))
    assert np.array_equal(signatures(corpus.texts, cfg), signatures(corpus.texts, cfg))


def test_exact_copies_collapse_onto_first() -> None:
    text = " ".join(f"word{i}" for i in range(40))
    texts = ["unrelated persona text about sailing"] + [text] * 100 + [text.upper()]
    dup = minhash_duplicates(texts, MinHashConfig(max_bucket_pairs=4))
    assert dup[0] == -1 and dup[1] == -1
    assert (dup[2:] == 1).all()


def test_empty_input() -> None:
    assert minhash_duplicates([]).shape == (0,)
    assert signatures([], MinHashConfig()).shape == (0, 128)


def test_signatures_are_bit_identical_to_datasketch():
    import numpy as np
    from datasketch import MinHash
    from personahub.personas.minhash import MinHashConfig, signatures, tokenize

    texts = ["A retired nurse from Leeds who bakes bread on Sundays",
             "Ein Bäcker aus München, der gerne wandert", "naïve café owner", "x"]
    for seed in (1, 7):
        ours = signatures(texts, MinHashConfig(seed=seed))
        for text, row in zip(texts, ours, strict=True):
            theirs = MinHash(num_perm=128, seed=seed)
            theirs.update_batch([t.encode("utf-8") for t in set(tokenize(text))])
            assert np.array_equal(theirs.hashvalues.astype(np.uint32), row)
