"""A Ray job's answers on disk: Parquet shards under a job folder next to the database.

A worker writes each batch's answers to a temporary name and renames it, so the rename marks the
shard complete. The driver commits answers in batch order and deletes a shard once all its
answers are committed; after a crash the resumed job commits what the shards hold without asking
the model again. Shards hold plain columns (key, answer JSON, calls JSON), no pickles and no
credentials. No Ray import here, and pyarrow only when a shard is touched, so a local job pays
for neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from itertools import chain
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import pyarrow as pa
from pydantic import BaseModel

from personahub.core.contracts import CacheEntry, CallRecord, StructuredResult
from personahub.core.errors import PersonahubError

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger(__name__)

COLUMNS = ("key", "value", "calls")
SHARD_SUFFIX = ".parquet"
PART_SUFFIX = ".part"  # a shard still being written


class ShardRow(TypedDict):
    """One answer as a shard holds it (the columns of ``COLUMNS``)."""

    key: str
    value: str  # the answer's text, as the asker's ``dump`` wrote it
    calls: str  # its calls, as ``calls_json`` wrote them


def jobs_root(db: str | Path) -> Path:
    """Return the folder of a database's job folders, beside the file."""
    return Path(f"{db}.jobs")


def job_folder(db: str | Path, job: str) -> Path:
    """Return a job's folder; a key that is not a plain file name gets a readable prefix and a hash."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", job):
        return jobs_root(db) / job
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", job)[:40].strip("._") or "job"
    return jobs_root(db) / f"{safe}-{hashlib.sha1(job.encode()).hexdigest()[:12]}"


def clear_job_folder(db: str | Path, job: str) -> None:
    """Remove a finished job's folder, and the parent folder when it is empty."""
    folder = job_folder(db, job)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    try:
        jobs_root(db).rmdir()
    except OSError:  # absent, or another job's folder is in it
        pass


def calls_json(calls: Sequence[StructuredResult[M]]) -> str:
    """Return an answer's calls (their records and cache entries) as JSON text."""
    return json.dumps([{"records": [asdict(r) for r in call.records],
                        "cache_entries": [asdict(e) for e in call.cache_entries]}
                       for call in calls])


def calls_of(text: str) -> list[StructuredResult[BaseModel]]:
    """Read calls back from JSON: results without values, for the batch commit."""
    return [StructuredResult(None, [CallRecord(**r) for r in call["records"]],
                             cache_entries=[CacheEntry(**e) for e in call["cache_entries"]])
            for call in json.loads(text)]


def write_shard(folder: str | Path, keys: Sequence[str], values: Sequence[str | None],
                calls: Sequence[str]) -> str:
    """Write one batch's answers as a shard, complete or absent; returns its file name."""
    import pyarrow.parquet as pq

    name = uuid.uuid4().hex
    table = pa.table({"key": pa.array(list(keys), pa.string()),
                      "value": pa.array(list(values), pa.string()),
                      "calls": pa.array(list(calls), pa.string())})
    part = Path(folder) / f".{name}{PART_SUFFIX}"
    pq.write_table(table, part)
    os.replace(part, Path(folder) / f"{name}{SHARD_SUFFIX}")
    return f"{name}{SHARD_SUFFIX}"


def check_folder(folder: str | Path) -> None:
    """Refuse to start a worker that cannot see the job folder: its answers would be lost."""
    if not Path(folder).is_dir():
        raise RuntimeError(f"job folder {folder} is not visible on this Ray node: put the database "
                           "on a filesystem every worker mounts at the same path")


class ShardStore:
    """The driver's side of a job folder: answers left by earlier passes, this pass's shards,
    and deletion once a shard's answers are committed."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.ready: dict[str, str] = {}  # item key -> shard file name
        self._tables: dict[str, dict[str, ShardRow]] = {}
        self._waiting: Counter[str] = Counter()  # shard -> uncommitted answers

    def open(self, needed: Iterable[str]) -> int:
        """Create the folder, or load the answers earlier shards hold for the needed keys,
        deleting useless or broken files. Returns how many answers are ready."""
        import pyarrow.parquet as pq

        self.folder.mkdir(parents=True, exist_ok=True)
        wanted = set(needed)
        for path in sorted(self.folder.iterdir()):
            if path.name.endswith(PART_SUFFIX) or not path.name.endswith(SHARD_SUFFIX):
                path.unlink(missing_ok=True)  # a write that never finished
                continue
            try:
                keys = pq.read_table(path, columns=["key"]).column("key").to_pylist()
            except (OSError, pa.ArrowException) as exc:
                log.warning("ignoring unreadable shard %s (its answers are asked again): %s",
                            path, exc)
                path.unlink(missing_ok=True)
                continue
            mine = [k for k in keys if k in wanted and k not in self.ready]
            for key in mine:
                self.ready[key] = path.name
            if mine:
                self._waiting[path.name] += len(mine)
            else:
                path.unlink(missing_ok=True)
        return len(self.ready)

    def arrived(self, shard: str, count: int) -> None:
        """Note a new shard's answers, waiting for their batch's commit."""
        self._waiting[shard] += count

    def row(self, shard: str, key: str) -> ShardRow:
        """Return the answer to a key; each shard is read once, when first needed."""
        table = self._tables.get(shard)
        if table is None:
            import pyarrow.parquet as pq

            rows = pq.read_table(self.folder / shard, columns=list(COLUMNS)).to_pylist()
            table = self._tables[shard] = {r["key"]: r for r in rows}
        return table[key]

    def committed(self, shards: Iterable[str]) -> None:
        """Count committed answers; delete shards whose answers are all committed."""
        for shard in shards:
            self._waiting[shard] -= 1
            if self._waiting[shard] <= 0:
                del self._waiting[shard]
                self._tables.pop(shard, None)
                (self.folder / shard).unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the folder after the pass; leftovers come from retried tasks."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:
            pass


def batches_from_shards(pieces: Iterable[Any], sizes: Sequence[int], store: ShardStore,
                        keys: Sequence[str]) -> Iterator[list[ShardRow]]:
    """Each batch's answer rows in batch order, from earlier shards and this pass's pieces.

    A batch is yielded once it and every batch before it are answered, and released when the
    caller asks for the next. An answer given twice (a retried task) counts once."""
    where = {i: store.ready[k] for i, k in enumerate(keys) if k in store.ready}
    start = 0
    batch = 0
    for piece in chain([{"index": (), "answer": ()}], pieces):  # what is ready first
        for index, shard in zip(piece["index"], piece["answer"], strict=True):
            i = int(index)
            if i >= start and i not in where:
                where[i] = str(shard)
                store.arrived(str(shard), 1)
        while batch < len(sizes) and all(i in where for i in range(start, start + sizes[batch])):
            span = range(start, start + sizes[batch])
            yield [store.row(where[i], keys[i]) for i in span]
            store.committed([where.pop(i) for i in span])
            start += sizes[batch]
            batch += 1
    if batch < len(sizes):
        raise PersonahubError(f"the executor returned no answer for batch {batch + 1} of {len(sizes)}")
    store.close()
