"""The incremental near-duplicate index: ours vs datasketch's ``MinHashLSH`` on the same signatures.

    python bench/bench_near_dup.py [--n 200000] [--batch 1000] [--variants ours,ours-read-back,datasketch]

What a run does with emissions (and expansion with personas): texts arrive a batch at a time and
each is flagged against everything kept before it. The texts are bench_minhash's persona-length
texts with planted near-duplicates (10%); a batch stands for one step's emissions of a kind.

Variants, each in a fresh process (resident memory is the process's, after minus before):
  ours            ``personas.near_dup.NearDuplicateIndex`` without a reader (every signature kept)
  ours-read-back  the same with a reader, as runs use it (older signatures read back)
  datasketch      ``tests/_datasketch_index.py``: ``MinHashLSH`` over ``LeanMinHash``-wrapped
                  signatures, candidates verified earliest first (the same signatures, so the
                  same flags; the difference is storage and per-text Python work)
Prints seconds (signatures included), MiB held, flagged texts and a digest of the flags, which
must agree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

from _synthetic import ROOT
from bench_minhash import make_texts

VARIANTS = ("ours", "ours-read-back", "datasketch")


def rss_mib() -> float:
    """Resident set size of this process now, in MiB (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> None:
    """Stream the texts through one variant; print its figures as one JSON line."""
    from personahub.personas.near_dup import NearDuplicateIndex

    texts, _, _ = make_texts(args.n, seed=7)
    items = [(f"e{i}", text) for i, text in enumerate(texts)]
    log = dict(items)
    if args.child == "datasketch":
        from tests._datasketch_index import DatasketchNearDuplicateIndex

        index = DatasketchNearDuplicateIndex()
    elif args.child == "ours-read-back":
        index = NearDuplicateIndex(texts=lambda keys: [log[k] for k in keys])
    else:
        index = NearDuplicateIndex()
    before = rss_mib()
    started = time.perf_counter()
    flags: list[str | None] = []
    for lo in range(0, len(items), args.batch):
        flags += index.check_and_add_many(items[lo : lo + args.batch])
    seconds = time.perf_counter() - started
    held = rss_mib() - before
    digest = hashlib.sha256(json.dumps(flags).encode()).hexdigest()[:12]
    print(json.dumps({"s": seconds, "mib": held, "flagged": sum(f is not None for f in flags),
                      "digest": digest}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000, help="texts per call (one step's)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"{args.n:,} texts in calls of {args.batch:,}; each variant in a fresh process")
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}")
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--n", str(args.n),
                              "--batch", str(args.batch)],
                             cwd=ROOT, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{variant}: failed\n{out.stderr}")
        f = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{variant:>15}: {f['s']:6.2f} s  {args.n / f['s']:9,.0f} texts/s  "
              f"{f['mib']:6.0f} MiB held  {f['flagged']:,} flagged  flags {f['digest']}")


if __name__ == "__main__":
    main()
