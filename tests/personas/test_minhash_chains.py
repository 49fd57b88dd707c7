"""Stage 1 on chains of near-duplicates: a copy of a text that is itself a duplicate of a third.

The marks keep no two texts at Jaccard >= the threshold and mark no text onto one below it, so a
copy whose original was marked stays kept exactly when it is below the threshold to every kept
text of its chain; marks never follow a chain to a text they do not duplicate.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from personahub.personas.minhash import MinHashConfig, exact_jaccard, minhash_duplicates, sketch

_WORDS = [f"w{i}" for i in range(400)]


def chained_hub(chains: int = 60, background: int = 2000,
                seed: int = 7) -> tuple[list[str], list[tuple[int, int, int, int]]]:
    """Templated texts of 24 words with planted chains, as (root, original, copy, near) indexes.

    original is root with its number changed (J 23/25 = 0.92, a duplicate of root); copy is the
    original with one more word changed (J 0.92 to the original, 22/26 = 0.85 to root); near is
    root with a word added (J 0.96 to root, 0.88 to the original). Background texts share the
    template but few words with each other.
    """
    rng = random.Random(seed)

    def body() -> list[str]:
        return rng.sample(_WORDS, 12) + ["a", "person", "from", "the", "town", "who", "likes",
                                         "long", "walks", "and", "old", "books"]

    texts = [" ".join([*body(), f"no{i}"]) for i in range(background)]
    planted = []
    for c in range(chains):
        words = body()
        root = [*words[:-1], f"root{c}"]
        original = [*words[:-1], f"orig{c}"]
        copy = [*original[:3], f"changed{c}", *original[4:]]
        near = [*root, f"extra{c}"]
        at = len(texts)
        texts += [" ".join(root), " ".join(original), " ".join(copy), " ".join(near)]
        planted.append((at, at + 1, at + 2, at + 3))
    return texts, planted


@pytest.mark.slow
def test_a_copy_of_a_marked_original_is_kept_only_below_the_threshold_to_every_kept_text() -> None:
    texts, planted = chained_hub()
    config = MinHashConfig()
    dup = minhash_duplicates(texts, config)
    features = sketch(texts, config)[1]
    idx = np.array([i for chain in planted for i in chain])
    a, b = np.triu_indices(idx.size, k=1)
    pairs = np.stack([idx[a], idx[b]], axis=1)
    near = pairs[exact_jaccard(features, pairs) >= config.threshold]
    assert len(near) >= 3 * len(planted)  # root-original, original-copy, root-near at least
    kept = dup < 0
    assert not (kept[near[:, 0]] & kept[near[:, 1]]).any()  # no two kept at >= 0.9
    marked = np.flatnonzero(dup >= 0)
    assert kept[dup[marked]].all()  # a mark points to a kept text
    assert (exact_jaccard(features, np.stack([dup[marked], marked], axis=1))
            >= config.threshold).all()  # and duplicates it
    for root, original, copy, near_root in planted:
        assert dup[original] == root and dup[near_root] == root
        assert kept[copy]  # 0.85 to the kept root: not a duplicate of anything kept
