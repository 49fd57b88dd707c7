"""Decontamination of synthesized items against a benchmark: time and peak memory.

    python bench/bench_decontaminate.py [--items 1000000] [--bench 50000] [--datasketch 10000]

Items and benchmark texts are seeded synthetic questions (20-60 words drawn from a Zipf-like
vocabulary of 50,000 words, so common words repeat as in real text; ranks past the vocabulary
are capped to its last word, about 32% of all words, so a few items and benchmark rows truly
share a 13-gram of it); ``--bench // 50``
benchmark rows are planted items (a third verbatim, a third one word changed, a third one
word added), which must all be flagged. Runs ``personas.decontaminate.decontaminate`` with
both checks (13-gram and MinHash at 0.8), then the 13-gram check alone, then, as a baseline,
datasketch's ``MinHashLSH`` (threshold 0.8, 128 permutations, one ``MinHash`` per text) over
the whole benchmark queried by the first ``--datasketch`` items. Prints seconds, items per
second and the process's peak resident memory (``ru_maxrss``, texts included).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from _synthetic import ROOT  # noqa: F401  (puts this checkout first on sys.path)

from personahub.personas.decontaminate import decontaminate
from personahub.personas.minhash import tokenize


def peak_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_texts(n: int, rng: np.random.Generator, vocab: np.ndarray) -> list[str]:
    """``n`` texts of 20-60 words, word ranks drawn Zipf-like (a ~ 1.1, capped to the vocab)."""
    lengths = rng.integers(20, 61, size=n)
    ranks = np.minimum(rng.zipf(1.1, size=int(lengths.sum())) - 1, vocab.size - 1)
    words = vocab[ranks].tolist()
    out, at = [], 0
    for length in lengths.tolist():
        out.append(" ".join(words[at : at + length]) + "?")
        at += length
    return out


def plant(items: list[str], bench: list[str], count: int, rng: np.random.Generator) -> set[int]:
    """Overwrite ``count`` benchmark rows with (reworded) items; the items' indices."""
    chosen = rng.choice(len(items), size=count, replace=False).tolist()
    rows = rng.choice(len(bench), size=count, replace=False).tolist()
    for k, (item, row) in enumerate(zip(chosen, rows, strict=True)):
        words = items[item].split()
        if k % 3 == 1:
            words[len(words) // 2] = "reworded"
        elif k % 3 == 2:
            words.insert(len(words) // 2, "added")
        bench[row] = " ".join(words)
    return set(chosen)


def datasketch_baseline(items: list[str], bench: list[str], threshold: float) -> tuple[float, int]:
    """Seconds to index ``bench`` in ``MinHashLSH`` and query every item; items flagged."""
    from datasketch import MinHash, MinHashLSH  # type: ignore[import-untyped]

    def sketch(text: str) -> MinHash:
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([w.encode("utf-8") for w in set(tokenize(text))])
        return m

    start = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    for row, text in enumerate(bench):
        lsh.insert(str(row), sketch(text))
    flagged = sum(1 for text in items if lsh.query(sketch(text)))
    return time.perf_counter() - start, flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--bench", type=int, default=50_000)
    parser.add_argument("--datasketch", type=int, default=10_000,
                        help="items queried in the datasketch baseline (0: skip it)")
    args = parser.parse_args()
    rng = np.random.default_rng(46)
    vocab = np.array([f"w{i}" for i in range(50_000)], dtype=object)
    start = time.perf_counter()
    items = make_texts(args.items, rng, vocab)
    bench = make_texts(args.bench, rng, vocab)
    planted = plant(items, bench, max(1, args.bench // 50), rng)
    print(f"texts: {args.items:,} items, {args.bench:,} benchmark rows ({len(planted)} planted) "
          f"made in {time.perf_counter() - start:.1f} s; peak {peak_mib():.0f} MiB")
    for label, minhash in (("13-gram + MinHash 0.8", True), ("13-gram only", False)):
        start = time.perf_counter()
        matches = decontaminate(items, {"bench": bench}, minhash=minhash)
        took = time.perf_counter() - start
        flagged = {m.item for m in matches}
        print(f"{label}: {took:.1f} s ({args.items / took:,.0f} items/s), {len(flagged):,} flagged "
              f"(planted found {len(planted & flagged)}/{len(planted)}, others "
              f"{len(flagged - planted)}); peak {peak_mib():.0f} MiB")
    if args.datasketch:
        sub = items[: args.datasketch]
        took, n_flagged = datasketch_baseline(sub, bench, 0.8)
        print(f"datasketch MinHashLSH 0.8: {took:.1f} s for the {args.bench:,}-row index and "
              f"{len(sub):,} queries ({n_flagged} flagged); peak {peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
