"""Stage-1 benchmark: recall, precision, time and peak memory of MinHash dedup, side by side.

Synthetic persona-length texts (15-30 words drawn Zipf-like from a made-up vocabulary) with
10% planted near-duplicates of earlier texts, all from one seed:

* ``variant``: same words, different case / punctuation / spacing   (Jaccard 1)
* ``swap``:    two words swapped                                     (Jaccard 1)
* ``edit1``:   one word replaced by another                          (Jaccard ~0.88-0.94,
               right at the 0.9 threshold)

A second corpus, ``templated`` (``--corpus``), is bench_ray's ``dedup_texts``: personas from one
template ("A {trait} {role} from {place}, aged {age}, who spends weekends on {hobby} and {hobby},
resident no. {i}."), one in ten an earlier text with two words swapped (``swap``, Jaccard 1).
Such texts share most words, so recall-minded bands fill buckets with pairs at J 0.4-0.8: the
case that made the stage 60x slower than the one issue 16 found before its fix.

Methods (each in its own child process, so time and peak memory are its own; the texts are
generated once and handed over in a pickle):

* ``ours``             ``minhash_duplicates``: bands for recall (16 x 8 at 0.9, the earliest 2
                       texts of a bucket), identical signatures paired, a low-byte slot
                       pre-filter, then exact Jaccard of the feature sets
* ``before``           the stage as issue 16 found it (``bench/baselines/minhash_d15e260.py``,
                       frozen): datasketch's optimal bands (5 x 25), candidates verified by
                       estimated Jaccard
* ``datasketch-bulk``  datasketch's bulk API: ``MinHash.bulk`` -> ``LeanMinHash``, one
                       ``MinHashLSH.insertion_session``, then each text's query verified by
                       ``jaccard`` against earlier kept texts (first seen kept)
* ``rensa``            if installed (optional, never a dependency): ``RMinHash.from_token_sets``,
                       ``RMinHashLSH`` (16 bands) ``insert_many``, same query/verify loop

Each method runs ``--repeat`` times in its process: ``time_s`` and ``cpu_s`` are the best,
``first_s`` the first call's seconds; ``warm-up_s`` is the untimed warm-up before them (imports,
and for ``ours`` on inputs that use them, loading the compiled kernels).

Scores, against the exact Jaccard of each planted text and its source (1-gram word sets):

* recall     planted texts with J >= 0.9 whose source is an original text, marked. A text
             planted from a text that is itself a duplicate is counted apart ("chained"): if it
             is within 0.9 of that duplicate only, keeping it is right (kept texts never point
             to removed ones), so no method can be scored on it.
* precision  marked texts whose exact Jaccard with the text they point to is >= 0.9;
             ``below_0.85`` counts marks under 0.85 (the issue's hard limit: 0).

Run:  python bench/bench_minhash.py [--corpus zipf|templated|both] [--n 100000] [--big 1000000]
      [--methods ours,before,datasketch-bulk,rensa] [--big-methods ours,before,rensa]
      [--templated-methods ours,before] [--templated-big 0] [--repeat 1]
Last line: ``RESULT recall=… precision=… time_s=… ratio_vs_datasketch_bulk=…
ratio_vs_before=… ratio_vs_before_templated=…`` (ours on zipf at --big, the datasketch ratio
at --n, where datasketch runs too; datasketch bulk at 1M takes minutes and ~5 GiB;
``ratio_vs_before`` is before's time / ours on zipf at --big (at --n with --big 0), the
templated ratio the same at --n on the templated corpus: >= 1 means ours is no slower).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from personahub.personas.minhash import (  # noqa: E402
    MinHashConfig,
    minhash_duplicates,
    sketch,
    tokenize,
    use_kernels,
    verified_pairs,
)

KINDS = ("distinct", "variant", "swap", "edit1")
METHODS = ("ours", "before", "datasketch-bulk", "rensa", "reference")
THRESHOLD = 0.9
NUM_PERM = 128


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


def make_templated(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """bench_ray's ``dedup_texts`` (same template, same random draws), with the planted kind
    (``swap``) and source of each copy recorded."""
    import random

    import _synthetic

    rng = random.Random(seed)
    texts: list[str] = []
    first: dict[str, int] = {}  # text -> its first index (a copy can repeat a text)
    kind = np.zeros(n, dtype=np.int8)
    src_of = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if texts and rng.random() < 0.1:
            source = rng.choice(texts)
            words = source.split()
            a, b = rng.sample(range(len(words)), 2)
            words[a], words[b] = words[b], words[a]
            kind[i], src_of[i] = 2, first[source]
            texts.append(" ".join(words))
            first.setdefault(texts[-1], i)
            continue
        texts.append(f"A {rng.choice(_synthetic.TRAITS)} {rng.choice(_synthetic.ROLES)} from "
                     f"{rng.choice(_synthetic.PLACES)}, aged {rng.randint(19, 80)}, who spends "
                     f"weekends on {rng.choice(_synthetic.HOBBIES)} and "
                     f"{rng.choice(_synthetic.HOBBIES)}, resident no. {i}.")
        first.setdefault(texts[-1], i)
    return texts, kind, src_of


# -- methods (run in a child) ------------------------------------------------------------------
def run_ours(texts: list[str]) -> np.ndarray:
    return minhash_duplicates(texts, MinHashConfig())


def run_before(texts: list[str]) -> np.ndarray:
    """The stage as issue 16 found it (datasketch's optimal bands, estimated-Jaccard
    verification), from the frozen copy in ``bench/baselines`` so that speed-ups of shared code
    since then count against it."""
    from baselines import minhash_d15e260 as before

    return before.minhash_duplicates(texts, before.MinHashConfig())


def _first_seen(n: int, query, similar, words: list[bool]) -> np.ndarray:
    """Each text in order: the earliest earlier *kept* candidate that verifies, else kept."""
    dup = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if not words[i]:
            continue
        for j in sorted(query(i)):
            if j < i and dup[j] < 0 and similar(i, j):
                dup[i] = j
                break
    return dup


def run_datasketch_bulk(texts: list[str]) -> np.ndarray:
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    sets = [[t.encode("utf-8") for t in set(tokenize(text))] for text in texts]
    sketches = [LeanMinHash(m) for m in MinHash.bulk(sets, num_perm=NUM_PERM)]
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    words = [bool(s) for s in sets]
    with lsh.insertion_session() as session:
        for i, m in enumerate(sketches):
            if words[i]:
                session.insert(i, m, check_duplication=False)
    return _first_seen(len(texts), lambda i: lsh.query(sketches[i]),
                       lambda i, j: sketches[i].jaccard(sketches[j]) >= THRESHOLD, words)


def run_rensa(texts: list[str]) -> np.ndarray:
    from rensa import RMinHash, RMinHashLSH

    sets = [sorted(set(tokenize(text))) for text in texts]
    sketches = RMinHash.from_token_sets(sets, NUM_PERM, 42)
    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=16)
    lsh.insert_many(sketches)
    return _first_seen(len(texts), lambda i: lsh.query(sketches[i]),
                       lambda i, j: sketches[i].jaccard(sketches[j]) >= THRESHOLD,
                       [bool(s) for s in sets])


def run_reference(texts: list[str]) -> np.ndarray:
    """The stage of another checkout (``--reference``, e.g. main in a second worktree)."""
    import importlib.util

    path = Path(os.environ["BENCH_MINHASH_REFERENCE"]) / "personahub" / "personas" / "minhash.py"
    spec = importlib.util.spec_from_file_location("minhash_reference", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--reference: no {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["minhash_reference"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.minhash_duplicates(texts, module.MinHashConfig())


RUNNERS = {"ours": run_ours, "reference": run_reference, "before": run_before,
           "datasketch-bulk": run_datasketch_bulk, "rensa": run_rensa}


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(method: str, texts_path: Path, out_path: Path, repeat: int = 1) -> None:
    with texts_path.open("rb") as fh:
        texts = pickle.load(fh)
    t0 = time.perf_counter()
    if method in ("ours", "before", "reference"):
        RUNNERS[method](texts[:1000])  # warm the cached band choices and imports, not timed
    if method == "ours" and use_kernels(len(texts)):  # load the compiled kernels, not timed
        sigs, features = sketch(texts[:1000], MinHashConfig(), compiled=True)
        verified_pairs(sigs, features, MinHashConfig(), compiled=True)
    warm = time.perf_counter() - t0
    base = _rss_mib()
    elapsed = cpu = float("inf")
    first = 0.0
    for rep in range(max(1, repeat)):  # best of ``repeat``: a shared machine's noise only adds
        t0, c0 = time.perf_counter(), _cpu_s()
        dup = RUNNERS[method](texts)
        first = first if rep else time.perf_counter() - t0
        elapsed = min(elapsed, time.perf_counter() - t0)
        cpu = min(cpu, _cpu_s() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(out_path, dup)
    print(json.dumps({"time_s": elapsed, "cpu_s": cpu, "peak_mib": max(0.0, peak - base),
                      "warm_s": warm, "first_s": first}))


def _cpu_s() -> float:
    """User and system CPU-seconds of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- scoring (parent) --------------------------------------------------------------------------
def exact_jaccard(a: str, b: str) -> float:
    sa, sb = set(tokenize(a)), set(tokenize(b))
    return len(sa & sb) / max(1, len(sa | sb))


def score(dup: np.ndarray, texts: list[str], kind: np.ndarray, src: np.ndarray) -> dict:
    planted = np.flatnonzero(kind > 0)
    jac = np.array([exact_jaccard(texts[i], texts[src[i]]) for i in planted])
    above = jac >= THRESHOLD
    original = kind[src[planted]] == 0
    hit = dup[planted] >= 0
    marked = np.flatnonzero(dup >= 0)
    mj = np.array([exact_jaccard(texts[i], texts[dup[i]]) for i in marked])
    return {
        "recall": float(hit[above & original].mean()),
        "n_pairs": int((above & original).sum()),
        "chained": float(hit[above & ~original].mean()) if (above & ~original).any() else 1.0,
        "precision": float((mj >= THRESHOLD).mean()) if marked.size else 1.0,
        "below_085": int((mj < 0.85).sum()),
        "marked": int(marked.size),
    }


def compare(n: int, seed: int, methods: list[str], workdir: Path,
            corpus: str = "zipf", repeat: int = 1) -> dict[str, dict]:
    t0 = time.perf_counter()
    texts, kind, src = (make_templated if corpus == "templated" else make_texts)(n, seed)
    texts_path = workdir / f"texts_{n}.pkl"
    with texts_path.open("wb") as fh:
        pickle.dump(texts, fh, protocol=pickle.HIGHEST_PROTOCOL)
    counts = dict(zip(KINDS, np.bincount(kind, minlength=4).tolist(), strict=True))
    print(f"\n{corpus} n={n:,}: planted {counts} (generated in {time.perf_counter() - t0:.1f}s, not timed)"
          f"; load average {os.getloadavg()[0]:.1f}")
    print(f"  {'method':16s} {'recall':>8s} {'chained':>8s} {'precision':>9s} {'<0.85':>6s} "
          f"{'marked':>8s} {'time_s':>8s} {'cpu_s':>8s} {'peak_MiB':>9s} {'first_s':>8s} "
          f"{'warm-up_s':>9s}")
    results: dict[str, dict] = {}
    for method in methods:
        out = workdir / f"dup_{method}_{n}_{corpus}.npy"
        proc = subprocess.run([sys.executable, __file__, "--child", method, "--texts",
                               str(texts_path), "--out", str(out), "--repeat", str(repeat)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            print(f"  {method:16s} skipped: {reason}")
            continue
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
        res = {**score(np.load(out), texts, kind, src), **measured}
        results[method] = res
        print(f"  {method:16s} {res['recall']:8.2%} {res['chained']:8.2%} {res['precision']:9.3%} "
              f"{res['below_085']:6d} {res['marked']:8d} {res['time_s']:8.2f} {res['cpu_s']:8.2f} "
              f"{res['peak_mib']:9.0f} {res['first_s']:8.2f} {res['warm_s']:9.2f}")
    if "ours" in results:
        for other in results:
            if other != "ours":
                ratio = results[other]["time_s"] / results["ours"]["time_s"]
                print(f"  {other} / ours time: {ratio:.2f}x")
        print(f"  (load average {os.getloadavg()[0]:.1f} at the end)")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=1_000_000, help="0 to skip the large run")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--big-methods", default="ours,before,rensa")
    ap.add_argument("--corpus", choices=("zipf", "templated", "both"), default="both")
    ap.add_argument("--templated-methods", default="ours,before",
                    help="rensa and datasketch-bulk verify each query's candidates in a Python "
                    "loop: minutes on templated text, so not by default")
    ap.add_argument("--templated-big", type=int, default=0,
                    help="a second templated run of this size (0 to skip)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1,
                    help="time each method this many times in its process, keep the best")
    ap.add_argument("--reference", type=Path,
                    help="a second checkout whose stage runs as method 'reference' "
                    "(e.g. main in another worktree), for a before/after ratio in one run")
    ap.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.texts, args.out, args.repeat)
        return
    if args.reference is not None:
        if not (args.reference / "personahub" / "personas" / "minhash.py").is_file():
            ap.error(f"--reference {args.reference}: no personahub/personas/minhash.py there")
        os.environ["BENCH_MINHASH_REFERENCE"] = str(args.reference.resolve())
    small: dict[str, dict] = {}
    big: dict[str, dict] = {}
    templ: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus in ("zipf", "both"):
            small = compare(args.n, args.seed, args.methods.split(","), Path(tmp),
                            repeat=args.repeat)
            big = (compare(args.big, args.seed + 1, args.big_methods.split(","), Path(tmp),
                           repeat=args.repeat) if args.big else {})
        if args.corpus in ("templated", "both"):
            templ = compare(args.n, 3, args.templated_methods.split(","), Path(tmp), "templated",
                            args.repeat)
            if args.templated_big:
                compare(args.templated_big, 3, args.templated_methods.split(","), Path(tmp),
                        "templated", args.repeat)
    nan = float("nan")
    final = big.get("ours") or small.get("ours") or templ.get("ours") or {
        "recall": nan, "precision": nan, "time_s": nan}
    ratio = (small["datasketch-bulk"]["time_s"] / small["ours"]["time_s"]
             if "datasketch-bulk" in small and "ours" in small else nan)
    ratio_t = (templ["before"]["time_s"] / templ["ours"]["time_s"]
               if "before" in templ and "ours" in templ else nan)
    zipf = big if "ours" in big else small
    ratio_b = (zipf["before"]["time_s"] / zipf["ours"]["time_s"]
               if "before" in zipf and "ours" in zipf else nan)
    print("\n(figures are one run; on a shared machine compare ratios within the run)")
    print(f"RESULT recall={final['recall']:.4f} precision={final['precision']:.4f} "
          f"time_s={final['time_s']:.2f} ratio_vs_datasketch_bulk={ratio:.1f} "
          f"ratio_vs_before={ratio_b:.2f} ratio_vs_before_templated={ratio_t:.2f}")


if __name__ == "__main__":
    main()
