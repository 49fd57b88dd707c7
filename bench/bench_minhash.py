"""Stage-1 benchmark: vectorised ``minhash_duplicates`` vs a plain datasketch loop.

Synthetic persona-length texts (15-30 words drawn Zipf-like from a made-up vocabulary) with
planted near-duplicates of earlier texts, all from one seed:

* ``variant``: same words, different case / punctuation / spacing   (Jaccard 1)
* ``swap``:    two words swapped                                     (Jaccard 1)
* ``edit1``:   one word replaced by another                          (Jaccard ~0.88-0.94,
               i.e. right at the 0.9 threshold, so any MinHash decides these by chance)

Run:  python bench/bench_minhash.py [--n 100000] [--big 1000000] [--baseline-n N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from personahub.personas.minhash import MinHashConfig, minhash_duplicates, tokenize  # noqa: E402

KINDS = ("distinct", "variant", "swap", "edit1")


def make_vocab(rng: np.random.Generator, size: int) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lens = rng.integers(3, 10, size)
    words = {"".join(rng.choice(letters, k)) for k in lens}
    return np.array(sorted(words))


def make_texts(
    n: int, seed: int, dup_rate: float = 0.1
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, the planted kind of each (index into KINDS) and its source index (-1)."""
    rng = np.random.default_rng(seed)
    vocab = make_vocab(rng, 40_000)
    v = vocab.size
    weights = 1.0 / np.arange(1, v + 1) ** 0.8
    weights /= weights.sum()
    lengths = rng.integers(15, 31, n)
    words = rng.choice(v, size=(n, 30), p=weights)
    texts: list[str] = []
    kind = np.zeros(n, dtype=np.int8)
    src_of = np.full(n, -1, dtype=np.int64)
    is_dup = rng.random(n) < dup_rate
    is_dup[0] = False
    dup_kind = rng.integers(1, len(KINDS), n)
    punct = np.array([",", ".", ";", "!", " -"])
    for i in range(n):
        if not is_dup[i]:
            texts.append(" ".join(vocab[words[i, : lengths[i]]]))
            continue
        src = int(rng.integers(0, i))
        src_of[i] = src
        toks = texts[src].split()
        k = int(dup_kind[i])
        kind[i] = k
        if k == 1:  # case / punctuation / spacing variant
            j = int(rng.integers(0, len(toks)))
            toks[j] = toks[j].upper() + str(rng.choice(punct))
            text = "  ".join(toks).capitalize()
        elif k == 2:  # swap two words
            a, b = rng.choice(len(toks), 2, replace=False)
            toks[a], toks[b] = toks[b], toks[a]
            text = " ".join(toks)
        else:  # replace one word
            j = int(rng.integers(0, len(toks)))
            toks[j] = str(vocab[rng.integers(0, v)])
            text = " ".join(toks)
        texts.append(text)
    return texts, kind, src_of


def datasketch_baseline(texts: list[str], num_perm: int, threshold: float) -> np.ndarray:
    """The obvious per-text datasketch loop: MinHash per text, LSH query, insert if new."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dup = np.full(len(texts), -1, dtype=np.int64)
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm)
        m.update_batch([t.encode("utf-8") for t in set(tokenize(text))])
        found = lsh.query(m)
        if found:
            dup[i] = min(found)
        else:
            lsh.insert(i, m)
    return dup


def exact_jaccard(a: str, b: str) -> float:
    sa, sb = set(tokenize(a)), set(tokenize(b))
    return len(sa & sb) / max(1, len(sa | sb))


def report_truth(
    name: str,
    dup: np.ndarray,
    texts: list[str],
    kind: np.ndarray,
    src: np.ndarray,
    threshold: float,
) -> None:
    """Against the exact Jaccard of each planted text with its source."""
    planted = np.flatnonzero(kind > 0)
    jac = np.array([exact_jaccard(texts[i], texts[src[i]]) for i in planted])
    hit = dup[planted] >= 0
    above = jac >= threshold
    print(
        f"  {name:10s} planted with exact J>=t marked {hit[above].mean():7.2%} "
        f"(n={above.sum()}), planted with J<t marked {hit[~above].mean():7.2%} "
        f"(n={(~above).sum()}), unplanted marked {np.mean(dup[kind == 0] >= 0):.4%}"
    )


def report_agreement(ours: np.ndarray, base: np.ndarray, kind: np.ndarray) -> None:
    a, b = ours >= 0, base >= 0
    print(f"  agreement (both dup or both kept): {np.mean(a == b):.4%}")
    for k, name in enumerate(KINDS):
        sel = kind == k
        if sel.any():
            print(
                f"    {name:8s} n={sel.sum():7d}  ours marked {a[sel].mean():7.2%}  "
                f"datasketch marked {b[sel].mean():7.2%}  agree {np.mean(a[sel] == b[sel]):7.2%}"
            )


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=1_000_000, help="0 to skip the large run")
    ap.add_argument("--baseline-n", type=int, default=None, help="datasketch on first N only")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    cfg = MinHashConfig()

    texts, kind, src = make_texts(args.n, args.seed)
    print(
        f"n={args.n}: planted kinds {dict(zip(KINDS, np.bincount(kind, minlength=4), strict=True))}"
    )
    minhash_duplicates(texts[:1000], cfg)  # warm caches (lsh params), not timed
    ours, t_ours = timed(minhash_duplicates, texts, cfg)
    bn = args.baseline_n or args.n
    base, t_base = timed(datasketch_baseline, texts[:bn], cfg.num_perm, cfg.threshold)
    if bn < args.n:
        ours_sub, t_sub = timed(minhash_duplicates, texts[:bn], cfg)
        print(f"  [baseline on first {bn} texts only; ours re-run on the same subset]")
        print(f"  ours {t_sub:.2f}s   datasketch {t_base:.2f}s   ratio {t_base / t_sub:.1f}x")
        report_agreement(ours_sub, base, kind[:bn])
    else:
        print(f"  ours {t_ours:.2f}s   datasketch {t_base:.2f}s   ratio {t_base / t_ours:.1f}x")
        report_agreement(ours, base, kind)
        report_truth("ours", ours, texts, kind, src, cfg.threshold)
        report_truth("datasketch", base, texts, kind, src, cfg.threshold)

    if args.big:
        t0 = time.perf_counter()
        big, big_kind, big_src = make_texts(args.big, args.seed + 1)
        print(f"\nn={args.big}: generated in {time.perf_counter() - t0:.1f}s (not timed below)")
        dup, t_big = timed(minhash_duplicates, big, cfg)
        print(f"  ours {t_big:.2f}s for {args.big} texts ({args.big / t_big:,.0f} texts/s)")
        for k, name in enumerate(KINDS):
            sel = big_kind == k
            print(f"    {name:8s} n={sel.sum():7d}  marked {np.mean(dup[sel] >= 0):7.2%}")
        report_truth("ours", dup, big, big_kind, big_src, cfg.threshold)


if __name__ == "__main__":
    main()
