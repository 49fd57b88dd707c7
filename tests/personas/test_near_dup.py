"""The compact near-duplicate index flags exactly what the dict-of-buckets index flagged, and what
datasketch's ``MinHashLSH`` over the same signatures (as ``LeanMinHash``) flags."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest

import personahub.personas.near_dup as near_dup
from personahub.personas.minhash import MinHashConfig, lsh_params, signatures
from personahub.personas.near_dup import IndexesByKind, NearDuplicateIndex
from tests._datasketch_index import DatasketchNearDuplicateIndex
from tests._dict_index import DictNearDuplicateIndex
from tests._planted import planted_corpus


def _stream(seed: int) -> list[tuple[str, str]]:
    """Planted near-duplicates shuffled among their sources, plus empty texts and exact copies."""
    rng = random.Random(seed)
    texts = planted_corpus(250, 250, seed=seed, length=(8, 30)).texts
    rng.shuffle(texts)
    texts += ["", "!!!", ""] + texts[:40]
    return [(f"k{i}", text) for i, text in enumerate(texts)]


def _windowed_flags(items: list[tuple[str, str]], window: int) -> list[str | None]:
    """Brute force: the earliest of the latest ``window`` kept texts sharing a band exactly and
    whose estimated Jaccard reaches the threshold."""
    cfg = MinHashConfig()
    bands, rows = lsh_params(cfg.threshold, cfg.num_perm)
    sigs = signatures([t for _, t in items], cfg)
    kept: list[int] = []
    flags: list[str | None] = []
    for i, sig in enumerate(sigs):
        match = None
        if not (sig == np.iinfo(np.uint32).max).all():
            for j in kept[-window:]:
                shares = any(np.array_equal(sigs[j][b * rows:(b + 1) * rows], sig[b * rows:(b + 1) * rows])
                             for b in range(bands))
                if shares and float(np.mean(sigs[j] == sig)) >= cfg.threshold:
                    match = j
                    break
        if match is None:
            kept.append(i)
        flags.append(None if match is None else items[match][0])
    return flags


def _in_batches(index: object, items: list[tuple[str, str]], seed: int,
                log: dict[str, str] | None = None) -> list[str | None]:
    """Bulk-load a prefix, then check the rest in batches of varied size (single items too).

    ``log`` gets each call's texts after the call, as a run's emissions table gets a step's.
    """
    rng = random.Random(seed)
    pre = rng.randint(0, 120)
    index.add_many(items[:pre])  # type: ignore[attr-defined]
    flags: list[str | None] = [None] * pre
    i = pre
    while i < len(items):
        if log is not None:
            log.update(items[:i])
        batch = items[i : i + rng.choice([1, 1, 3, 17, 64, 150])]
        flags += index.check_and_add_many(batch)  # type: ignore[attr-defined]
        i += len(batch)
    return flags


class _Log(dict[str, str]):
    """Texts by key, read back by the index; counts what it reads."""

    reads = 0

    def read(self, keys: Sequence[str]) -> list[str]:
        self.reads += len(keys)
        return [self[k] for k in keys]


# (BLOCK, MERGE, BULK, READ_CACHE, HOT): small ones make a short stream cross every boundary
SIZES = [(1024, 2048, 65_536, 4096, 16_384), (4, 8, 16, 3, 8), (2, 3, 5, 1, 2),
         (64, 16, 100, 40, 128)]


@pytest.mark.parametrize("read_back", [False, True])
@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.slow
def test_flags_equal_the_dict_index(monkeypatch: pytest.MonkeyPatch,
                                    sizes: tuple[int, int, int, int, int], seed: int,
                                    read_back: bool) -> None:
    for name, size in zip(("BLOCK", "MERGE", "BULK", "READ_CACHE", "HOT"), sizes, strict=True):
        monkeypatch.setattr(near_dup, name, size)
    items = _stream(seed)
    log = _Log()
    compact = NearDuplicateIndex(texts=log.read if read_back else None)
    reference = DictNearDuplicateIndex()
    flags = _in_batches(compact, items, seed, log)
    assert flags == _in_batches(reference, items, seed)
    assert sum(f is not None for f in flags) > 100  # the stream does hold near-duplicates
    assert len(compact) == len(reference)
    log.update(items)
    for _, text in items[::25]:
        assert compact.find(text) == reference.find(text)
    block, _, _, cache, hot = sizes
    if read_back:  # signatures of the newest texts stay, and the latest read back
        assert sum(map(len, compact._blocks)) <= hot + block and len(compact._read) <= cache
        assert compact._held == {}
        assert (log.reads > 0) == (hot < len(items)) and log.reads < len(items) * 5
    else:
        assert sum(map(len, compact._blocks)) >= len(compact)


@pytest.mark.parametrize("read_back", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flags_equal_datasketch_minhashlsh(seed: int, read_back: bool) -> None:
    """The claim of ``personas/near_dup.py``: the flags of ``MinHashLSH`` plus verification."""
    items = _stream(seed)
    log = _Log()
    compact = NearDuplicateIndex(texts=log.read if read_back else None)
    lsh = DatasketchNearDuplicateIndex()
    flags = _in_batches(compact, items, seed, log)
    assert flags == _in_batches(lsh, items, seed)
    assert sum(f is not None for f in flags) > 100
    assert len(compact) == len(lsh)
    log.update(items)
    for _, text in items[::25]:
        assert compact.find(text) == lsh.find(text)


@pytest.mark.parametrize("read_back", [False, True])
@pytest.mark.parametrize("window", [1, 7, 40, pytest.param(300, marks=pytest.mark.slow)])
def test_max_items_matches_only_the_latest_kept_texts(monkeypatch: pytest.MonkeyPatch,
                                                      window: int, read_back: bool) -> None:
    monkeypatch.setattr(near_dup, "BLOCK", 8)
    monkeypatch.setattr(near_dup, "MERGE", 5)
    monkeypatch.setattr(near_dup, "BULK", 16)
    items = _stream(4)
    log = _Log()
    index = NearDuplicateIndex(max_items=window, texts=log.read if read_back else None)
    flags = []
    for i in range(0, len(items), 13):
        flags += index.check_and_add_many(items[i : i + 13])
        log.update(items[i : i + 13])
    assert flags == _windowed_flags(items, window)
    assert len(index) == window
    assert len(index._blocks) <= window // 8 + 2  # older signatures are let go
    assert len(index._keys._packed) <= window // 8 + 2


def test_max_items_beyond_the_stream_changes_nothing() -> None:
    items = _stream(5)
    index = NearDuplicateIndex(max_items=len(items))
    assert index.check_and_add_many(items) == DictNearDuplicateIndex().check_and_add_many(items)


def test_max_items_validation() -> None:
    with pytest.raises(ValueError):
        NearDuplicateIndex(max_items=0)


def test_indexes_by_kind_share_settings() -> None:
    indexes = IndexesByKind(max_items=3)
    assert indexes["a"] is indexes["a"] and indexes["a"].max_items == 3
    assert sorted(indexes) == ["a"]


@pytest.mark.slow  # imports every runtime module in a fresh interpreter
def test_runtime_code_imports_and_flags_without_datasketch() -> None:
    """datasketch is a dev dependency only: every runtime module imports, and the index flags,
    with ``import datasketch`` failing."""
    code = (
        "import importlib, pkgutil, sys\n"
        "sys.modules['datasketch'] = None  # any import of it raises ImportError\n"
        "for folder in ('personas', 'agents', 'sim', 'analysis'):\n"
        "    package = importlib.import_module('personahub.' + folder)\n"
        "    for module in pkgutil.iter_modules(package.__path__):\n"
        "        importlib.import_module(f'personahub.{folder}.{module.name}')\n"
        "from personahub.personas.near_dup import NearDuplicateIndex\n"
        "print(NearDuplicateIndex().check_and_add_many(\n"
        "    [('a', 'a baker from Leeds who rows'), ('b', 'A baker from Leeds, who rows!')]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[None, 'a']"
