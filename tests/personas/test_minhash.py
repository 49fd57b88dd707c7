from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from personahub.personas.minhash import (
    FeatureSets,
    MinHashConfig,
    batch_codes,
    candidate_pairs,
    exact_jaccard,
    lsh_params,
    minhash_duplicates,
    recall_lsh_params,
    signatures,
    sketch,
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
        {"threads": -1},
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


# -- recall at the threshold -------------------------------------------------
def _word_jaccard(a: str, b: str) -> float:
    sa, sb = set(tokenize(a)), set(tokenize(b))
    return len(sa & sb) / max(1, len(sa | sb))


def _near_threshold_corpus(n: int = 400, seed: int = 11) -> tuple[list[str], list[int]]:
    """Short texts (18-22 distinct words) and one- or two-word edits of them: true Jaccard
    spread over 0.8-1.0, many right at 0.9, where datasketch's optimal bands miss most."""
    corpus = planted_corpus(n, 0, seed=seed, length=(18, 22))
    texts = [" ".join(dict.fromkeys(t.split())) for t in corpus.texts]  # no repeated words
    rng = np.random.default_rng(seed)
    source = [-1] * n
    for i in range(n):
        words = texts[i].split()
        for j in rng.choice(len(words), int(rng.integers(1, 3)), replace=False):
            words[j] = f"edit{i}x{j}"
        texts.append(" ".join(words))
        source.append(i)
    return texts, source


def test_recall_bands_propose_pairs_at_the_threshold() -> None:
    bands, rows = recall_lsh_params(0.9, 128)
    assert (bands, rows) == (16, 8)
    assert 1 - (1 - 0.9**rows) ** bands >= 0.999  # S-curve at the threshold
    b, r = lsh_params(0.9, 128)  # datasketch's optimum proposes a third of them
    assert 1 - (1 - 0.9**r) ** b < 0.35


def test_exact_jaccard_equals_python_sets() -> None:
    texts, _ = _near_threshold_corpus(60)
    texts += ["", "the the the cat", "cat the"]
    _, features = sketch(texts, MinHashConfig())
    rng = np.random.default_rng(0)
    pairs = np.concatenate([rng.integers(0, len(texts), (300, 2)),
                            [[i, i + 60] for i in range(60)], [[120, 121], [121, 122]]])
    want = [_word_jaccard(texts[a], texts[b]) for a, b in pairs]
    assert np.allclose(exact_jaccard(features, pairs), want)


def test_exact_jaccard_of_texts_without_features_is_zero() -> None:
    _, features = sketch(["", "", "   "], MinHashConfig())
    assert exact_jaccard(features, np.array([[0, 1], [1, 2], [0, 0]])).tolist() == [0.0] * 3


def test_sketch_features_do_not_depend_on_batching() -> None:
    texts, _ = _near_threshold_corpus(50)
    cfg = MinHashConfig()
    sigs, whole = sketch(texts, cfg)
    parts = [sketch(texts[i : i + 13], cfg) for i in range(0, len(texts), 13)]
    joined = FeatureSets.concat([f for _, f in parts])
    assert np.array_equal(sigs, signatures(texts, cfg))
    assert np.array_equal(whole.values, joined.values)
    assert np.array_equal(whole.offsets, joined.offsets)


def test_planted_pairs_at_the_threshold_are_all_marked_and_none_below() -> None:
    texts, source = _near_threshold_corpus()
    dup = minhash_duplicates(texts)
    jac = np.array([_word_jaccard(texts[i], texts[s]) for i, s in enumerate(source) if s >= 0])
    planted = np.arange(len(texts))[np.asarray(source) >= 0]
    above = jac >= 0.9
    assert above.sum() > 100 and (~above).sum() > 50  # both sides of the threshold are tested
    assert (dup[planted[above]] >= 0).mean() >= 0.99
    marked = np.flatnonzero(dup >= 0)
    assert all(_word_jaccard(texts[i], texts[dup[i]]) >= 0.9 for i in marked)  # exact precision


def test_marks_cover_datasketch_minhashlsh_on_true_near_duplicates() -> None:
    """Not equality any more: datasketch's ``MinHashLSH`` with its optimal bands and an
    estimated-Jaccard check misses most pairs right at 0.9 and admits some just below it. The
    stage must mark every text datasketch marks whose exact Jaccard is >= 0.9 (ours contains
    theirs there), and nothing under 0.9 (precision w.r.t. exact Jaccard, checked above)."""
    datasketch = pytest.importorskip("datasketch")
    texts, _ = _near_threshold_corpus()
    cfg = MinHashConfig()
    sigs = signatures(texts, cfg)
    lsh = datasketch.MinHashLSH(threshold=0.9, num_perm=128)
    sketches = [datasketch.LeanMinHash(seed=cfg.seed, hashvalues=s, scheme="affine32")
                for s in sigs]
    theirs = np.full(len(texts), -1)
    for i, m in enumerate(sketches):
        found = [j for j in sorted(lsh.query(m)) if sketches[j].jaccard(m) >= 0.9]
        if found:
            theirs[i] = found[0]
        else:
            lsh.insert(i, m)
    ours = minhash_duplicates(texts, cfg)
    true_theirs = [i for i in np.flatnonzero(theirs >= 0)
                   if _word_jaccard(texts[i], texts[theirs[i]]) >= 0.9]
    assert true_theirs and all(ours[i] >= 0 for i in true_theirs)
    assert (ours >= 0).sum() > (theirs >= 0).sum()  # and finds more


def test_candidate_pairs_take_explicit_bands() -> None:
    texts, _ = _near_threshold_corpus(100)
    sigs = signatures(texts, MinHashConfig())
    few = candidate_pairs(sigs, MinHashConfig(), lsh_params(0.9, 128))
    many = candidate_pairs(sigs, MinHashConfig())
    assert {tuple(p) for p in few.tolist()} <= {tuple(p) for p in many.tolist()}


def _naive_candidates(sigs: np.ndarray, bands: int, rows: int, max_pairs: int) -> set[tuple[int, int]]:
    """Band buckets in plain Python: each text paired with the earliest ``max_pairs`` texts
    already in any bucket it falls into."""
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for i, sig in enumerate(sigs):
            if sig[0] == np.iinfo(np.uint32).max:
                continue
            members = buckets.setdefault(sig[band * rows:(band + 1) * rows].tobytes(), [])
            pairs.update((j, i) for j in members[:max_pairs])
            members.append(i)
    return pairs


def test_candidate_pairs_equal_plain_band_buckets() -> None:
    """The vectorised buckets (all bands keyed at once, a counting pre-filter before the sort)
    propose exactly the pairs of a dictionary per band, empty signatures excluded."""
    rng = np.random.default_rng(3)
    sigs = rng.integers(0, 3, size=(600, 128), dtype=np.uint32)  # 3 values: many shared bands
    sigs[::50] = np.iinfo(np.uint32).max  # texts without words
    for bands, rows, cap in ((16, 8, 32), (5, 25, 2), (64, 2, 4)):
        got = candidate_pairs(sigs, MinHashConfig(max_bucket_pairs=cap), (bands, rows))
        assert {tuple(p) for p in got.tolist()} == _naive_candidates(sigs, bands, rows, cap)


def test_prefilter_floor_is_the_binomial_tail() -> None:
    """The floor rejects a pair at the threshold with probability <= 1e-5, one more slot would not."""
    from math import comb

    from personahub.personas.minhash import prefilter_floor

    def below(m: int, n: int, p: float) -> float:
        return sum(comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(m))

    for threshold, num_perm in ((0.9, 128), (0.8, 64), (0.5, 256)):
        floor = prefilter_floor(threshold, num_perm)
        assert below(floor, num_perm, threshold) <= 1e-5 < below(floor + 1, num_perm, threshold)


def test_prefilter_keeps_every_pair_the_exact_check_keeps() -> None:
    """Pairs built right at and above the threshold (J = 0.9 .. 1 on 20-60 word sets) and just
    below it: the marks with the pre-filter are those of band candidates checked exactly."""
    from personahub.personas.minhash import (
        _bucket_pairs,
        _equal_slots,
        _slot_bytes,
        prefilter_floor,
        resolve_first_seen,
        verified_pairs,
    )

    rng = np.random.default_rng(5)
    texts: list[str] = []
    for size in range(20, 61):
        for _ in range(6):
            base = [f"w{v}" for v in rng.choice(1_000_000, size, replace=False)]
            texts.append(" ".join(base))
            for keep in range(size, size - 4, -1):  # J = keep / size (drop words)
                texts.append(" ".join(rng.permutation(base[:keep])))
    config = MinHashConfig(max_bucket_pairs=64)
    sigs, feats = sketch(texts, config)
    got = verified_pairs(sigs, feats, config)
    cand = candidate_pairs(sigs, config)
    exact = exact_jaccard(feats, cand)
    want = cand[exact >= 0.9]
    assert want.size and (exact >= 0.9).sum() >= 300
    assert {tuple(p) for p in want} <= {tuple(p) for p in got}
    assert (exact_jaccard(feats, got) >= 0.9).all()
    n = len(texts)
    assert (resolve_first_seen(n, got) == resolve_first_seen(n, want)).all()
    # the pre-filter on its own: no pair at J >= 0.9 falls under the floor
    low = _slot_bytes(sigs)
    floor = prefilter_floor(0.9, 128)
    assert (_equal_slots(low, want, 128) >= floor).all()
    equal = (sigs[want[:, 0]] == sigs[want[:, 1]]).sum(axis=1)
    assert (_equal_slots(low, want, 128) >= equal).all()  # low bytes only add chance matches
    assert _bucket_pairs(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), 2).shape == (0, 2)


def test_templated_texts_keep_their_copies() -> None:
    """Templated personas (shared words, no id word): each copy with two words swapped is
    marked, and nothing is marked below the threshold."""
    rng = np.random.default_rng(9)
    roles = ["nurse", "baker", "welder", "farmer", "teacher", "plumber", "florist", "barista"]
    places = ["Lisbon", "Accra", "Osaka", "Leeds", "Quito", "Tartu", "Perth", "Cork"]
    hobbies = ["chess", "poetry", "rowing", "jazz", "hiking", "pottery", "cycling", "knitting"]
    texts: list[str] = []
    copies: list[int] = []
    for i in range(4000):
        if texts and rng.random() < 0.1:
            words = texts[int(rng.integers(0, len(texts)))].split()
            a, b = rng.choice(len(words), 2, replace=False)
            words[a], words[b] = words[b], words[a]
            copies.append(i)
            texts.append(" ".join(words))
            continue
        texts.append(f"A {rng.choice(roles)} from {rng.choice(places)}, aged "
                     f"{rng.integers(19, 80)}, who likes {rng.choice(hobbies)} and "
                     f"{rng.choice(hobbies)}.")
    dup = minhash_duplicates(texts)
    assert (dup[copies] >= 0).mean() >= 0.99
    marked = np.flatnonzero(dup >= 0)
    sets = [set(tokenize(t)) for t in texts]
    assert all(len(sets[i] & sets[dup[i]]) / len(sets[i] | sets[dup[i]]) >= 0.9 for i in marked)
    assert (dup[marked] < marked).all()


def test_segment_min_equals_the_min_of_each_texts_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunked fold (texts longest first, buffers reused) is each text's column-wise min
    over its features' rows, texts without features all-max, whatever the chunk size."""
    from personahub.personas import minhash

    rng = np.random.default_rng(11)
    table = rng.integers(0, 2**32, size=(50, 16), dtype=np.uint32)
    counts = rng.integers(0, 9, size=300)
    counts[[0, 7, 299]] = 0
    index = rng.integers(0, 50, size=int(counts.sum()))
    starts = np.cumsum(counts) - counts
    want = np.full((300, 16), np.iinfo(np.uint32).max, dtype=np.uint32)
    for i in range(300):
        if counts[i]:
            want[i] = table[index[starts[i] : starts[i] + counts[i]]].min(axis=0)
    for rows in (1, 7, 64, 4096):
        monkeypatch.setattr(minhash, "_SEGMENT_ROWS", rows)
        assert np.array_equal(minhash._segment_min(table, index, counts), want)
        out = np.zeros((300, 16), dtype=np.uint32)
        minhash._segment_min(table, index, counts, out)
        assert np.array_equal(out, want)


@pytest.mark.parametrize(("bands", "rows"), [(16, 8), (14, 9), (5, 25)])
def test_keys_by_band_are_band_keys_and_signature_keys(bands: int, rows: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """verified_pairs' keys, laid out by band chunk by chunk, are the public band keys and
    signature keys the Ray shuffle computes."""
    from personahub.personas import minhash

    monkeypatch.setattr(minhash, "_KEY_CHUNK", 37)
    sigs = np.random.default_rng(2).integers(0, 2**32, size=(200, 128), dtype=np.uint32)
    keys, signature = minhash._keys_by_band(sigs, bands, rows)
    full = minhash._band_keys(sigs, bands, rows)
    assert np.array_equal(keys, full.T)
    assert np.array_equal(signature, minhash.signature_keys(full))


def test_slot_prefilter_compares_rows_or_packed_bits_alike() -> None:
    """Few pairs are compared from the signatures' rows, many from packed low bits; both keep
    the same pairs, on signatures and on their low bytes alike."""
    from personahub.personas.minhash import slot_low_bytes, slot_prefilter

    rng = np.random.default_rng(4)
    base = rng.integers(0, 2**32, size=(40, 128), dtype=np.uint32)
    sigs = np.repeat(base, 10, axis=0)
    change = rng.random(sigs.shape) < rng.uniform(0.0, 0.5, size=(400, 1))  # J from ~1 to ~0.5
    sigs[change] = rng.integers(0, 2**32, size=int(change.sum()), dtype=np.uint32)
    sigs[::3, :5] ^= np.uint32(1 << 20)  # unequal slots with equal low bytes
    pairs = np.array([(i, j) for i in range(400) for j in range(i + 1, min(400, i + 12))])
    config = MinHashConfig()
    packed = slot_prefilter(sigs, config)(pairs)  # more pairs than texts: packed bits
    rows = np.concatenate([slot_prefilter(sigs, config)(pairs[lo : lo + 50])
                           for lo in range(0, len(pairs), 50)])  # few pairs a call: rows
    assert 0 < len(packed) < len(pairs)
    assert np.array_equal(packed, rows)
    for few in (pairs[:50], pairs):
        assert np.array_equal(slot_prefilter(slot_low_bytes(sigs), config)(few),
                              slot_prefilter(sigs, config)(few))


def test_verified_pairs_do_not_depend_on_when_band_pairs_are_filtered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Band pairs held to the end, compacted every band, or past the first look in the band or
    not: the same verified pairs (the pre-filter and the dedup commute)."""
    from personahub.personas import minhash

    rng = np.random.default_rng(8)
    texts = [f"A {rng.choice(['nurse', 'baker', 'welder'])} from {rng.choice(['Oslo', 'Lima'])} "
             f"who likes {rng.choice(['chess', 'jazz', 'rowing'])} and {rng.choice(['tea', 'art'])}"
             for _ in range(1500)]
    corpus = planted_corpus(300, 60, length=(10, 20))
    texts += corpus.texts
    config = MinHashConfig()
    sigs, feats = sketch(texts, config)
    results = []
    plain = minhash.band_bucket_pairs
    for first_look, pending in ((True, 1 << 22), (True, 1), (False, 1 << 22), (False, 1)):
        monkeypatch.setattr(minhash, "_PENDING_PAIRS", pending)
        monkeypatch.setattr(minhash, "band_bucket_pairs",
                            plain if first_look else lambda *args: plain(*args[:5]))
        results.append(minhash.verified_pairs(sigs, feats, config))
    assert len(results[0]) > 100
    for other in results[1:]:
        assert np.array_equal(other, results[0])


def test_signatures_past_the_hash_cache_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens past the hash cache (a templated corpus's numbers) are hashed per batch; the
    signatures and feature sets stay bit for bit what a cache of every token gives."""
    from personahub.personas import minhash

    corpus = planted_corpus(200, 30, length=(5, 15))
    texts = [*corpus.texts, "", "only words seen before", *(f"resident no {i}" for i in range(50))]
    config = MinHashConfig()
    want_sigs, want_feats = sketch(texts, config)
    monkeypatch.setattr(minhash, "_CACHED_TOKENS", 40)
    monkeypatch.setattr(minhash, "_BATCH_TEXTS", 23)
    sigs, feats = sketch(texts, config)
    assert np.array_equal(sigs, want_sigs)
    assert np.array_equal(feats.values, want_feats.values)
    assert np.array_equal(feats.offsets, want_feats.offsets)


def _tokens_by_text(texts: list[str]) -> list[list[str]]:
    codes, counts, uniques = batch_codes(texts)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [[uniques[c] for c in codes[lo:hi]] for lo, hi in zip(bounds[:-1], bounds[1:],
                                                                  strict=True)]


_ASCII_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=40)
_UNICODE_TEXT = st.text(
    st.one_of(st.characters(), st.sampled_from(list("ǅİẞﬁΣς_ \x00\t\u00a0\u2028٣"))),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_ASCII_TEXT, _UNICODE_TEXT), min_size=1, max_size=8))
@example(["", "A b", "\x00", "x\x00y"])
@example(["Straße İstanbul ǅ", "ﬁne ΣΑΣ"])
def test_batch_tokens_are_tokenize_tokens(texts: list[str]) -> None:
    """The batch tokeniser (numpy on ASCII batches, the regex on others) cuts every text into
    exactly tokenize()'s tokens, Unicode case and word characters included."""
    assert _tokens_by_text(texts) == [tokenize(t) for t in texts]


@settings(max_examples=200, deadline=None)
@given(st.lists(_ASCII_TEXT, min_size=1, max_size=8))
def test_ascii_batch_tokens_are_tokenize_tokens(texts: list[str]) -> None:
    """ASCII-only batches take the numpy cut: punctuation, digits, underscores and controls."""
    assert _tokens_by_text(texts) == [tokenize(t) for t in texts]


@pytest.mark.slow
def test_threads_do_not_change_signatures_or_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches signed and bands bucketed in several threads give the one-thread signatures,
    feature sets and marks, bit for bit."""
    from personahub.personas import minhash

    corpus = planted_corpus(3000, 600, length=(5, 25))
    texts = [*corpus.texts, "", *(f"resident no {i} of the town" for i in range(300))]
    monkeypatch.setattr(minhash, "_BATCH_TEXTS", 97)
    monkeypatch.setattr(minhash, "_CACHED_TOKENS", 500)
    results = []
    for threads in (1, 2, 3):
        config = MinHashConfig(threads=threads)
        sigs, feats = sketch(texts, config)
        results.append((sigs, feats.values, feats.offsets, minhash_duplicates(texts, config)))
    for other in results[1:]:
        for got, want in zip(other, results[0], strict=True):
            assert np.array_equal(got, want)
    assert (results[0][3] >= 0).sum() > 0


def test_thread_count_defaults_to_the_cores_this_process_may_use() -> None:
    """threads=0 means one per usable core; an explicit count is taken as given."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert MinHashConfig().thread_count == cores
    assert MinHashConfig(threads=3).thread_count == 3


def test_group_order_is_a_stable_sort_by_key_even_when_packed_bits_collide() -> None:
    """Keys alike above the position's bits but unequal below them fall back to the stable
    argsort; other keys are grouped by the packed sort. Fails if the packing decided groups."""
    from personahub.personas.minhash import _group_order

    rng = np.random.default_rng(3)
    for keys in (rng.integers(0, 40, 5000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15),
                 (rng.integers(0, 40, 5000).astype(np.uint64) << np.uint64(40))
                 | rng.integers(0, 2, 5000).astype(np.uint64),  # differ in the low bits only
                 np.arange(3000, dtype=np.uint64)):
        order = _group_order(keys)
        shared = np.flatnonzero(np.unique(keys, return_counts=True)[1][
            np.unique(keys, return_inverse=True)[1]] > 1)
        want = shared[np.argsort(keys[shared], kind="stable")]
        assert set(want.tolist()) <= set(order.tolist())
        kept = order[np.isin(order, want)]
        assert np.array_equal(kept, want)
        assert np.array_equal(order, order[np.argsort(keys[order], kind="stable")])


@pytest.mark.parametrize("max_pairs", [1, 2, pytest.param(5, marks=pytest.mark.slow)])
def test_band_bucket_pairs_are_the_bucket_and_split_pairs(max_pairs: int) -> None:
    """One sort of the band, splitting only over-full buckets, gives the pairs of
    _bucket_pairs and split_bucket_pairs over every row, and with head_floor those of them with
    enough equal head slots. Fails if the split or the first look lost or added a pair."""
    from personahub.personas import minhash
    from personahub.personas.minhash import (
        _bucket_pairs,
        _equal_slots,
        _keys_by_band,
        _slot_bytes,
        band_bucket_pairs,
        split_bucket_pairs,
        split_slots,
    )

    rng = np.random.default_rng(4)
    texts = [f"A {rng.choice(['calm', 'bold'])} {rng.choice(['nurse', 'baker', 'welder'])} from "
             f"{rng.choice(['Oslo', 'Lima', 'Pune'])} who likes {rng.choice(['chess', 'jazz'])}, "
             f"no. {i % 700}" for i in range(3000)]
    config = MinHashConfig(max_bucket_pairs=max_pairs)
    sigs, _ = sketch(texts, config)
    bands, rows = recall_lsh_params(0.9, 128)
    keys, _ = _keys_by_band(sigs, bands, rows)
    head = _slot_bytes(sigs, 64, bits=4)
    members = np.arange(len(texts))
    split_seen = 0
    for band in range(bands):
        plain = _bucket_pairs(keys[band], members, max_pairs)
        split = split_bucket_pairs(keys[band], members, head, split_slots(band, rows, 64),
                                   max_pairs)
        want = {tuple(p) for p in np.concatenate([plain, split]).tolist()}
        split_seen += len(want) - len({tuple(p) for p in plain.tolist()})
        got = band_bucket_pairs(keys[band], members, head, band, config)
        assert {tuple(p) for p in got.tolist()} == want
        looked = band_bucket_pairs(keys[band], members, head, band, config, 44)
        kept = got[_equal_slots(head, got, 64, bits=4) >= 44]
        assert {tuple(p) for p in looked.tolist()} == {tuple(p) for p in kept.tolist()}
        with pytest.MonkeyPatch.context() as patch:  # made and looked at a few rows at a time
            patch.setattr(minhash, "_PAIR_SLICE_ROWS", 7)
            sliced = band_bucket_pairs(keys[band], members, head, band, config, 44)
        assert np.array_equal(np.unique(sliced, axis=0), np.unique(looked, axis=0))
        assert len(sliced) == len(looked)
    assert split_seen > 0  # the split found pairs the capped buckets did not
