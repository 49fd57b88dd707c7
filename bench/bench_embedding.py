"""Stage-2 benchmark: embedder throughput and ANN build/query time + recall at --n texts.

Recall is measured honestly against exact search on a random sample of query rows
(sample x n dot products - a measurement, not what the dedup does): the fraction of
true (cosine > threshold) neighbour pairs of the sampled rows that the index returned.

Run:  python bench/bench_embedding.py [--n 100000] [--local-n 5000]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_minhash import make_texts  # noqa: E402

from personahub.models.embedders import make_embedder  # noqa: E402
from personahub.personas.embedding import ANN_BACKENDS, neighbour_pairs  # noqa: E402


def exact_pairs_for(x: np.ndarray, rows: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    sims = x[rows] @ x.T
    out = set()
    for r, row in enumerate(rows):
        for c in np.flatnonzero(sims[r] > threshold):
            if c != row:
                out.add((min(row, c), max(row, c)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--local-n", type=int, default=5_000, help="0 skips the local model")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--sample", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--indexes", default=",".join(ANN_BACKENDS), help="comma-separated")
    args = ap.parse_args()

    texts, kind, _ = make_texts(args.n, args.seed)
    emb = make_embedder("hash")
    emb.embed(texts[:100])
    t0 = time.perf_counter()
    x = emb.embed(texts)
    dt = time.perf_counter() - t0
    print(
        f"hash embedder ({emb.name}, not a neural model): {args.n / dt:,.0f} texts/s "
        f"({dt:.2f}s for {args.n})"
    )

    if args.local_n and importlib.util.find_spec("sentence_transformers"):
        local = make_embedder("local")
        local.embed(texts[:64])  # load the model, warm up
        sub = texts[: args.local_n]
        t0 = time.perf_counter()
        local.embed(sub)
        dt = time.perf_counter() - t0
        print(
            f"local embedder ({local.name}, CPU): {len(sub) / dt:,.0f} texts/s "
            f"({dt:.1f}s for {len(sub)})"
        )
    elif args.local_n:
        print("local embedder: sentence-transformers not installed, skipped")

    rng = np.random.default_rng(0)
    rows = rng.choice(args.n, size=min(args.sample, args.n), replace=False)
    truth = exact_pairs_for(x, rows, args.threshold)
    in_sample = set(rows.tolist())
    print(
        f"\nANN at n={args.n}, dim={x.shape[1]}, k=16, threshold {args.threshold} "
        f"({len(truth)} true pairs touching {len(rows)} sampled rows)"
    )
    for name in args.indexes.split(","):
        if name != "ivf" and importlib.util.find_spec(name) is None:
            print(f"  {name:8s} not installed")
            continue
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        pairs = neighbour_pairs(x, args.threshold, k=16, index=name, timings=timings)
        total = time.perf_counter() - t0
        found = {(int(a), int(b)) for a, b in pairs if a in in_sample or b in in_sample}
        recall = len(found & truth) / max(1, len(truth))
        print(
            f"  {name:8s} build {timings['build']:6.2f}s  query {timings['query']:6.2f}s  "
            f"(k=16 for all {args.n} rows)  total {total:6.2f}s  pairs {len(pairs)}  "
            f"pair recall vs exact {recall:.4f}"
        )


if __name__ == "__main__":
    main()
