"""The compiled kernels of stage 1 give what the numpy steps they replace give, and run only
on inputs large enough to pay for their compile."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personahub.personas import minhash
from personahub.personas import minhash_kernels as kernels
from personahub.personas.minhash import FeatureSets, MinHashConfig, exact_jaccard, sketch
from tests._planted import planted_corpus


def _reference_verified_pairs(sigs: np.ndarray, features: FeatureSets,
                              config: MinHashConfig) -> np.ndarray:
    """The stage before the kernels: band_bucket_pairs, slot_prefilter, exact_jaccard."""
    n = sigs.shape[0]
    bands, rows = minhash.recall_lsh_params(float(config.threshold), config.num_perm)
    members = np.flatnonzero(sigs[:, 0] != minhash._EMPTY)
    keys, signature = minhash._keys_by_band(sigs[members], bands, rows)
    head = minhash._slot_bytes(sigs[members], 64, bits=4)
    prefilter = minhash.slot_prefilter(sigs, config)
    found = [prefilter(minhash.band_bucket_pairs(keys[b], members, head, b, config))
             for b in range(bands)]
    pairs = minhash._unique_pairs([minhash._bucket_pairs(signature, members, 1), *found], n)
    return pairs[exact_jaccard(features, pairs) >= config.threshold]


def _templated(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"A {rng.choice(['calm', 'bold'])} {rng.choice(['nurse', 'baker', 'welder'])} from "
            f"{rng.choice(['Oslo', 'Lima', 'Pune'])} who likes {rng.choice(['chess', 'jazz'])} "
            f"and {rng.choice(['tea', 'art', 'rowing'])}, no. {i % 500}" for i in range(count)]


@pytest.mark.parametrize(("max_pairs", "threads"), [(1, 1), (2, 2), (5, 1)])
def test_verified_pairs_are_the_band_prefilter_and_exact_pairs(max_pairs: int,
                                                               threads: int) -> None:
    """The kernels' pairs equal band_bucket_pairs', pre-filtered and checked exactly, on
    templated texts (over-full buckets, split) with planted copies and an empty text."""
    texts = _templated(2500, 3) + planted_corpus(300, 60, length=(10, 20)).texts + ["", "..."]
    config = MinHashConfig(max_bucket_pairs=max_pairs, threads=threads)
    sigs, features = sketch(texts, config)
    got = minhash.verified_pairs(sigs, features, config, compiled=True)
    want = _reference_verified_pairs(sigs, features, config)
    assert len(want) > 50
    assert np.array_equal(got, want)
    assert np.array_equal(minhash.verified_pairs(sigs, features, config, compiled=False), want)


@pytest.mark.parametrize("ngram", [1, 3])
def test_compiled_signing_gives_the_numpy_signatures(ngram: int) -> None:
    """sketch folded by the kernel and by numpy: the same signatures and feature sets, the
    compiled ones sorted and without repeats in the signing threads."""
    texts = _templated(700, 5) + planted_corpus(200, 40, length=(5, 90)).texts + ["", "..."]
    texts += ["Ärztin aus Köln, 東京 の 教師", "naïve café owner " * 12]  # a batch through the regex
    config = MinHashConfig(ngram=ngram, threads=2)
    sigs, features = sketch(texts, config, compiled=True)
    want_sigs, want_features = sketch(texts, config, compiled=False)
    assert np.array_equal(sigs, want_sigs)
    assert features.sorted_distinct and not want_features.sorted_distinct
    for t in range(len(texts)):
        got = features.values[features.offsets[t] : features.offsets[t + 1]]
        want = want_features.values[want_features.offsets[t] : want_features.offsets[t + 1]]
        assert np.array_equal(got, np.unique(want))
    again = want_features.sorted_sets()
    assert np.array_equal(again.values, features.values)
    assert np.array_equal(again.offsets, features.offsets)


@given(st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=30),
                max_size=6))
@settings(max_examples=60, deadline=None)
def test_merged_sorted_codes_are_the_distinct_pairs(runs: list[list[tuple[int, int]]]) -> None:
    """Pairs coded and sorted a run at a time, then merged: _unique_pairs' distinct pairs."""
    arrays = [np.array(run, dtype=np.int64).reshape(-1, 2) for run in runs]
    merged = minhash._pairs_of_sorted_codes([minhash._sorted_pair_codes(a) for a in arrays])
    assert np.array_equal(merged, minhash._unique_pairs(arrays, 41))


@pytest.mark.parametrize("threads", [1, 2])
def test_slot_rows_in_threads_are_the_slot_bytes(threads: int) -> None:
    """Every text's nibbles and low bytes, packed in chunks in threads, as _slot_bytes packs them."""
    rng = np.random.default_rng(4)
    sigs = rng.integers(0, 2**32, size=(minhash._KEY_CHUNK * 2 + 77, 128), dtype=np.uint32)
    nib, low = minhash._slot_rows(sigs, threads)
    assert np.array_equal(nib, minhash._slot_bytes(sigs, bits=4))
    assert np.array_equal(low, minhash._slot_bytes(sigs))


def test_kernels_run_from_kernel_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    """minhash_duplicates signs and verifies with the kernels from KERNEL_TEXTS texts on,
    with numpy below, and the marks are the same."""
    texts = _templated(1200, 9) + planted_corpus(200, 40, length=(10, 20)).texts
    calls: list[str] = []
    fold, band = kernels.fold_signatures, kernels.band_candidates
    monkeypatch.setattr(kernels, "fold_signatures", lambda *a: calls.append("fold") or fold(*a))
    monkeypatch.setattr(kernels, "band_candidates", lambda *a: calls.append("band") or band(*a))
    plain = minhash.minhash_duplicates(texts)
    assert calls == []
    monkeypatch.setattr(minhash, "KERNEL_TEXTS", len(texts))
    assert np.array_equal(minhash.minhash_duplicates(texts), plain)
    assert calls[0] == "fold" and calls[-1] == "band"
    assert (plain >= 0).sum() > 30


def test_a_small_dedup_does_not_load_numba() -> None:
    """A dedup below KERNEL_TEXTS (tests, the quick start, a fresh CI worker) neither imports
    numba nor compiles a kernel: checked in a fresh process, whatever this one loaded."""
    code = ("import sys\n"
            "from personahub.personas.minhash import KERNEL_TEXTS, minhash_duplicates\n"
            "texts = [f'a calm nurse from Oslo who likes chess, no. {i % 700}' for i in range(3000)]\n"
            "assert KERNEL_TEXTS > len(texts)\n"
            "assert (minhash_duplicates(texts) >= 0).sum() > 2000\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')\n"
            "             or m.endswith('minhash_kernels')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), distinct=st.integers(1, 12),
       max_pairs=st.integers(1, 4), agree=st.floats(0.0, 1.0))
def test_band_candidates_are_band_bucket_pairs_the_prefilter_keeps(
        seed: int, n: int, distinct: int, max_pairs: int, agree: float) -> None:
    """On random keys from a few values (large buckets) and signatures near a few originals
    (pairs around the pre-filter's floors), the kernel keeps band_bucket_pairs' pairs that
    pass the head look and slot_prefilter, no more and no fewer."""
    rng = np.random.default_rng(seed)
    config = MinHashConfig(max_bucket_pairs=max_pairs)
    origins = rng.integers(0, 2**32, size=(3, 128), dtype=np.uint32)
    sigs = origins[rng.integers(0, 3, n)]
    noise = rng.random((n, 128)) > agree * 0.3 + 0.7
    sigs = np.where(noise, rng.integers(0, 2**32, size=(n, 128), dtype=np.uint32), sigs)
    members = np.sort(rng.choice(max(n, 1) * 2, size=n, replace=False)).astype(np.int64)
    full = np.zeros((2 * max(n, 1), 128), dtype=np.uint32)
    full[members] = sigs
    keys = rng.integers(0, distinct, n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    head = minhash._slot_bytes(sigs, 64, bits=4)
    nib, low = minhash._slot_bytes(full, bits=4), minhash._slot_bytes(full)
    prefilter = minhash.slot_prefilter(full, config)
    for band in (0, 7):
        want = prefilter(minhash.band_bucket_pairs(keys, members, head, band, config, 44))
        order = minhash._group_order(keys)
        slots = minhash.split_slots(band, 8, 64).astype(np.int64)
        got = kernels.band_candidates(keys[order], members[order], nib[members[order]], low,
                                      slots, max_pairs, 64, 44, 128, 99)
        assert {tuple(p) for p in got.tolist()} == {tuple(p) for p in want.tolist()}


@settings(max_examples=60, deadline=None)
@given(sets=st.lists(st.lists(st.integers(0, 40), max_size=90), min_size=2, max_size=30),
       seed=st.integers(0, 2**32 - 1))
def test_sorted_jaccard_is_exact_jaccard(sets: list[list[int]], seed: int) -> None:
    """Sets sorted once (repeats dropped, long ones by a heap sort) and merged pair by pair give
    exact_jaccard's values, empty sets included."""
    sets = [*sets, [7]]  # exact_jaccard reads a value even of empty sets: one must exist
    values = np.array([v for s in sets for v in s], dtype=np.uint32)
    features = FeatureSets.from_counts(values, np.array([len(s) for s in sets]))
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, len(sets), size=(50, 2))
    sorted_values, offsets = kernels.sorted_sets(features.values, features.offsets)
    for t, s in enumerate(sets):
        assert sorted_values[offsets[t] : offsets[t + 1]].tolist() == sorted(set(s))
    got = kernels.sorted_jaccard(sorted_values, offsets, pairs)
    assert np.array_equal(got, exact_jaccard(features, pairs))


@settings(max_examples=60, deadline=None)
@given(tokens=st.lists(st.text(max_size=150), max_size=30), start=st.integers(0, 3),
       large=st.booleans())
def test_sha1_heads_are_hashlibs(tokens: list[str], start: int, large: bool) -> None:
    """The compiled SHA-1 of an Arrow array's strings (any length across the 55- and 64-byte
    block edges, any Unicode, an offset slice, 32- or 64-bit offsets) is hashlib's."""
    import pyarrow as pa

    array = pa.array(tokens, type=pa.large_string() if large else pa.string())[start:]
    assert np.array_equal(kernels.token_hashes(array), minhash.token_hashes(array.to_pylist()))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), texts=st.integers(0, 60), width=st.sampled_from([16, 128]))
def test_fold_signatures_is_the_min_of_permuted_rows(seed: int, texts: int, width: int) -> None:
    """The permuted values computed in registers fold to _segment_min over _permuted's rows
    (texts without features stay all-max)."""
    rng = np.random.default_rng(seed)
    config = MinHashConfig(num_perm=width, seed=seed % 1000)
    hashes = rng.integers(0, 2**64, size=20, dtype=np.uint64)
    counts = rng.integers(0, 6, size=texts)
    codes = rng.integers(0, 20, size=int(counts.sum()))
    want = minhash._segment_min(minhash._permuted(hashes, config), codes, counts)
    got = np.zeros((texts, width), dtype=np.uint32)
    minhash._compiled_fold(hashes, codes, counts, config, got)
    assert np.array_equal(got, want)
