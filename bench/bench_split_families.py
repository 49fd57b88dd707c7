"""Near-duplicate families for an evaluation's split: recall against exact Jaccard on planted
copies, and straddling pairs, the families' against the synthesis job's own flags.

For each seed a fresh corpus (tests/_planted.py ``planted_items``: templated items with copies
at exact Jaccard 0.905-0.951) is flagged as synthesis flags it (``NearDuplicateIndex``), then
split in half (seeded) two ways: by the flags' groups only (the split before families) and by
families at 0.9 (``evaluate_split.near_duplicate_pairs`` and the flags). A pair at or above 0.9
by brute-force exact Jaccard is found when both items are in one group, and straddles when they
are on two sides. Then the time to find the families of a larger corpus.

    python bench/bench_split_families.py [--seeds 20] [--n 200] [--large 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import time

from _synthetic import ROOT  # noqa: F401  (puts this checkout first on sys.path)

from personahub.personas.minhash import tokenize
from personahub.personas.near_dup import NearDuplicateIndex
from personahub.pipelines.evaluate_split import FAMILY_THRESHOLD, families, near_duplicate_pairs
from tests._planted import planted_items


def _halves(groups: dict[str, str], seed: int) -> set[str]:
    """The test half: whole groups in md5(seed:group) order while they fit, as split_job does."""
    members: dict[str, list[str]] = {}
    for item, group in groups.items():
        members.setdefault(group, []).append(item)
    target, test = len(groups) // 2, set[str]()
    for group in sorted(members, key=lambda g: hashlib.md5(f"{seed}:{g}".encode()).hexdigest()):
        if len(test) + len(members[group]) <= target:
            test.update(members[group])
    return test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--large", type=int, default=20_000)
    args = parser.parse_args()
    totals = {"pairs": 0, "flags found": 0, "families found": 0, "flags straddle": 0,
              "families straddle": 0}
    for seed in range(args.seeds):
        texts, _ = planted_items(seed, n=args.n, originals=args.n // 8)
        ids = [f"i{k:05d}" for k in range(len(texts))]
        flags = NearDuplicateIndex().check_and_add_many(list(zip(ids, texts, strict=True)))
        flagged = [(a, b) for a, b in zip(ids, flags, strict=True) if b is not None]
        found = near_duplicate_pairs(texts, FAMILY_THRESHOLD).tolist()
        by_flags = families(ids, flagged)
        by_families = families(ids, flagged + [(ids[a], ids[b]) for a, b in found])
        words = [set(tokenize(t)) for t in texts]
        pairs = [(ids[a], ids[b]) for a, b in itertools.combinations(range(len(texts)), 2)
                 if len(words[a] & words[b]) >= FAMILY_THRESHOLD * len(words[a] | words[b])]
        totals["pairs"] += len(pairs)
        for name, groups in (("flags", by_flags), ("families", by_families)):
            test = _halves(groups, seed)
            totals[f"{name} found"] += sum(groups[a] == groups[b] for a, b in pairs)
            totals[f"{name} straddle"] += sum((a in test) != (b in test) for a, b in pairs)
    print(f"{args.seeds} seeds x {args.n} items: {totals['pairs']} pairs at Jaccard >= "
          f"{FAMILY_THRESHOLD}")
    for name in ("flags", "families"):
        found = totals[f"{name} found"]
        print(f"  {name}: {found}/{totals['pairs']} grouped (recall "
              f"{found / max(1, totals['pairs']):.3f}), {totals[f'{name} straddle']} straddle")
    texts, _ = planted_items(99, n=args.large, originals=args.large // 8)
    start = time.perf_counter()
    found = near_duplicate_pairs(texts, FAMILY_THRESHOLD)
    took = time.perf_counter() - start
    print(f"families of {args.large} items: {took:.2f} s ({len(found)} pairs)")


if __name__ == "__main__":
    main()
