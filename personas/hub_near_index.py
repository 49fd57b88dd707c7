"""The near-duplicate index an expansion checks its new personas against, with the hub on disk.

It flags what a NearDuplicateIndex over the hub's live texts (then the texts added to it) flags,
but holds only the texts added during the expansion in memory: the hub's band hashes are
written once, a range of seq at a time (no sort of the whole hub), to Parquet files in the
job's folder, and each call looks its
texts' band hashes up there in one DuckDB join. A hub text proposed by a band is verified as in
memory (its band's slots equal, estimated Jaccard at or above the threshold) from its text,
read back by id; the earliest verified one wins, and hub texts come before added ones.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from personahub.personas.hub_memory import SAMPLE_MEMORY_MB, held_memory
from personahub.personas.minhash import lsh_params, signatures
from personahub.personas.near_dup import NearDuplicateIndex, band_hashes
from personahub.personas.store import survivor_ranges, texts_by_id

_EMPTY = np.iinfo(np.uint32).max
CHUNK_ROWS = 50_000  # hub texts signed at a time while the index is built


class HubNearIndex:
    """check_and_add and add_many of a NearDuplicateIndex whose first texts are the hub's."""

    def __init__(self, con: duckdb.DuckDBPyConnection, folder: Path, *, threshold: float = 0.9,
                 chunk_rows: int = CHUNK_ROWS) -> None:
        self.con = con
        self.folder = folder
        self.added = NearDuplicateIndex(threshold=threshold)
        self.config = self.added.config
        self.threshold = threshold
        self.bands, self.rows = lsh_params(threshold, self.config.num_perm)
        # DuckDB's default pool is most of the machine: the build's scan would keep every block
        # it read (428 MiB at 10M personas), so the build holds it to a sample's share
        with held_memory(con, SAMPLE_MEMORY_MB):
            self.hub_texts = self._build(survivor_ranges(con, chunk_rows))

    def _build(self, batches: Iterator[tuple[list[str], list[str]]]) -> int:
        """Write each hub chunk's band hashes and ids; return how many hub texts there are."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        number = 0
        for c, (ids, texts) in enumerate(batches):
            sigs = signatures(texts, self.config)
            words = np.flatnonzero(sigs[:, 0] != _EMPTY)
            hashes = band_hashes(sigs[words], self.bands, self.rows)
            numbers = np.arange(number, number + len(ids), dtype=np.int64)
            pq.write_table(pa.table({
                "band": pa.array(np.tile(np.arange(self.bands, dtype=np.int32), words.size)),
                "hash": pa.array(hashes.reshape(-1)),
                "number": pa.array(np.repeat(numbers[words], self.bands))}),
                self.folder / f"bands-{c:06d}.parquet")
            pq.write_table(pa.table({"number": pa.array(numbers), "persona_id": ids}),
                           self.folder / f"ids-{c:06d}.parquet")
            number += len(ids)
        return number

    def _files(self, name: str) -> list[str]:
        """Return the index's ``name`` shards as a list of paths (a glob pattern would read a
        ``[`` or ``*`` in the database's own path as a wildcard)."""
        return [str(path) for path in sorted(self.folder.glob(f"{name}-*.parquet"))]

    def __len__(self) -> int:
        return self.hub_texts + len(self.added)

    def _proposed(self, hashes: np.ndarray, words: np.ndarray) -> dict[int, list[tuple[int, int]]]:
        """Return, for each text with words, the (band, hub number) pairs its band hashes meet."""
        if not self.hub_texts or not words.any():
            return {}
        rows = np.flatnonzero(words)
        query = pa.table({
            "item": pa.array(np.repeat(rows, self.bands)),
            "band": pa.array(np.tile(np.arange(self.bands, dtype=np.int32), rows.size)),
            "hash": pa.array(hashes[rows].reshape(-1))})
        self.con.register("_near_query", query)
        try:
            found = self.con.execute(
                "SELECT q.item, b.band, b.number FROM read_parquet(?) AS b "
                "JOIN _near_query AS q ON q.band = b.band AND q.hash = b.hash",
                [self._files("bands")]).fetchnumpy()
        finally:
            self.con.unregister("_near_query")
        out: dict[int, list[tuple[int, int]]] = {}
        for item, band, number in zip(found["item"].tolist(), found["band"].tolist(),
                                      found["number"].tolist(), strict=True):
            out.setdefault(item, []).append((band, number))
        return out

    def _hub_signatures(self, numbers: Sequence[int]) -> dict[int, tuple[str, np.ndarray]]:
        """Return the id and signature of the given hub texts, from their texts."""
        if not numbers:
            return {}
        wanted = pa.table({"number": pa.array(sorted(set(numbers)), pa.int64())})
        self.con.register("_near_numbers", wanted)
        try:
            ids = self.con.execute(
                "SELECT i.number, i.persona_id FROM read_parquet(?) AS i "
                "JOIN _near_numbers AS w USING (number) ORDER BY i.number",
                [self._files("ids")]).fetchall()
        finally:
            self.con.unregister("_near_numbers")
        texts = texts_by_id(self.con, [pid for _, pid in ids])
        sigs = signatures([texts[pid] for _, pid in ids], self.config)
        return {number: (pid, sig) for (number, pid), sig in zip(ids, sigs, strict=True)}

    def _verified(self, sig: np.ndarray, proposed: list[tuple[int, int]],
                  hub: dict[int, tuple[str, np.ndarray]]) -> str | None:
        """Return the id of the earliest proposed hub text whose band and estimate match."""
        r = self.rows
        candidates = sorted({number for band, number in proposed
                             if np.array_equal(hub[number][1][band * r:(band + 1) * r],
                                               sig[band * r:(band + 1) * r])})
        for number in candidates:
            if float(np.mean(hub[number][1] == sig)) >= self.threshold:
                return hub[number][0]
        return None

    def check_and_add_many(self, items: Sequence[tuple[str, str]]) -> list[str | None]:
        """For each (key, text) in order, return the key it duplicates, or None after adding it."""
        sigs = signatures([text for _, text in items], self.config)
        words = (sigs != _EMPTY).any(axis=1)
        proposed = self._proposed(band_hashes(sigs, self.bands, self.rows), words)
        hub = self._hub_signatures([n for found in proposed.values() for _, n in found])
        flags: list[str | None] = []
        for i, (key, text) in enumerate(items):
            original = self._verified(sigs[i], proposed[i], hub) if i in proposed else None
            flags.append(original if original is not None else self.added.check_and_add(key, text))
        return flags

    def check_and_add(self, key: str, text: str) -> str | None:
        """Return the key text duplicates, or None after adding it."""
        return self.check_and_add_many([(key, text)])[0]

    def add_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Add every (key, text) after the hub's texts, without checking."""
        self.added.add_many(items)

    def close(self) -> None:
        """Remove the hub's band files."""
        shutil.rmtree(self.folder, ignore_errors=True)
