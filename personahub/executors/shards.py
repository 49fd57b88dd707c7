"""A Ray job's answers on disk: Parquet shards under a job folder next to the database.

A worker writes each finished batch's answers as one shard (``write_shard``): a temporary name,
then a rename, so a shard under its final name is complete — the rename is the batch's
completion marker — and a half-written one never is. The driver commits the shards' answers in
batch order through the job's own commit code and deletes a shard once every answer in it is
committed (``ShardStore``). A driver that dies leaves the uncommitted shards behind; the resumed
job commits their answers without asking the model again, ignores a temporary or unreadable
file (its answers are asked again), and empties the folder when its pass ends.

A shard holds plain columns, no pickles (answers are data): ``key`` (the item the answer is for,
stable across resumes: a persona id, a text id and relation), ``value`` (the answer as JSON text)
and ``calls`` (the answer's call records and cache entries as JSON text). No credential is in
them: call records name the endpoint by its index, never by its URL.

This module imports no Ray (the driver reads what the workers wrote with pyarrow alone), and
pyarrow's Parquet reader only when a shard is read or written: a local job pays for neither.
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
from typing import Any

import pyarrow as pa

from personahub.core.contracts import CacheEntry, CallRecord, StructuredResult
from personahub.core.errors import PersonahubError

log = logging.getLogger(__name__)

COLUMNS = ("key", "value", "calls")
SHARD_SUFFIX = ".parquet"
PART_SUFFIX = ".part"  # a shard being written; never read


def jobs_root(db: str | Path) -> Path:
    """The folder holding a database's job folders: ``<db>.jobs`` beside the file."""
    return Path(f"{db}.jobs")


def job_folder(db: str | Path, job: str) -> Path:
    """Job ``job``'s folder (``<db>.jobs/<job>``); a job key that is not a plain file name
    (a corpus name may hold anything) gets a readable prefix and a hash."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", job):
        return jobs_root(db) / job
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", job)[:40].strip("._") or "job"
    return jobs_root(db) / f"{safe}-{hashlib.sha1(job.encode()).hexdigest()[:12]}"


def clear_job_folder(db: str | Path, job: str) -> None:
    """Remove job ``job``'s folder (its job is over: every answer is committed), and the
    ``<db>.jobs`` folder when no other job has one."""
    folder = job_folder(db, job)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    try:
        jobs_root(db).rmdir()
    except OSError:  # absent, or another job's folder is in it
        pass


def calls_json(calls: Sequence[StructuredResult[Any]]) -> str:
    """An answer's calls (their records and cache entries) as JSON text."""
    return json.dumps([{"records": [asdict(r) for r in call.records],
                        "cache_entries": [asdict(e) for e in call.cache_entries]}
                       for call in calls])


def calls_of(text: str) -> list[StructuredResult[Any]]:
    """``calls_json`` read back: results without values, carrying what a batch commit writes."""
    return [StructuredResult(None, [CallRecord(**r) for r in call["records"]],
                             cache_entries=[CacheEntry(**e) for e in call["cache_entries"]])
            for call in json.loads(text)]


def write_shard(folder: str | Path, keys: Sequence[str], values: Sequence[str | None],
                calls: Sequence[str]) -> str:
    """Write one batch's answers as a shard in ``folder`` (temporary name, then renamed:
    complete or absent); returns the shard's file name."""
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
    """Refuse to start a worker that cannot see the job folder (a node without the shared
    filesystem the database is on): its answers would have nowhere to go."""
    if not Path(folder).is_dir():
        raise RuntimeError(f"job folder {folder} is not visible on this Ray node: put the database "
                           "on a filesystem every worker mounts at the same path")


class ShardStore:
    """The driver's side of a job folder: the answers earlier passes left (``ready``), the
    shards of this pass as they arrive, and each shard deleted once its answers are committed."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.ready: dict[str, str] = {}  # item key -> the shard (file name) answering it
        self._tables: dict[str, dict[str, dict[str, Any]]] = {}
        self._waiting: Counter[str] = Counter()  # shard -> answers not yet committed

    def open(self, needed: Iterable[str]) -> int:
        """Create the folder, or read the shards an earlier pass left: their answers to the
        ``needed`` keys become ``ready``; shards answering none, temporary files and unreadable
        shards are deleted. Returns how many answers are ready."""
        import pyarrow.parquet as pq

        self.folder.mkdir(parents=True, exist_ok=True)
        wanted = set(needed)
        for path in sorted(self.folder.iterdir()):
            if path.name.endswith(PART_SUFFIX) or not path.name.endswith(SHARD_SUFFIX):
                path.unlink(missing_ok=True)  # a write the dead driver's worker never finished
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
        """``count`` answers of this pass are in ``shard``, waiting for their batch's commit."""
        self._waiting[shard] += count

    def row(self, shard: str, key: str) -> dict[str, Any]:
        """The answer to ``key`` in ``shard`` (each shard read once, when first needed)."""
        table = self._tables.get(shard)
        if table is None:
            import pyarrow.parquet as pq

            rows = pq.read_table(self.folder / shard, columns=list(COLUMNS)).to_pylist()
            table = self._tables[shard] = {r["key"]: r for r in rows}
        return table[key]

    def committed(self, shards: Iterable[str]) -> None:
        """One committed answer per entry of ``shards``: a shard all of whose answers are
        committed is deleted."""
        for shard in shards:
            self._waiting[shard] -= 1
            if self._waiting[shard] <= 0:
                del self._waiting[shard]
                self._tables.pop(shard, None)
                (self.folder / shard).unlink(missing_ok=True)

    def close(self) -> None:
        """The pass is over and every batch committed: what is left (a shard of a retried
        task whose first try also finished) is nobody's; the folder goes."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:
            pass


def batches_from_shards(pieces: Iterable[Any], sizes: Sequence[int], store: ShardStore,
                        keys: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
    """Each batch's answer rows (the ``keys`` of the job's batches of ``sizes``, flattened), in
    batch order: from the shards an earlier pass left (``store.ready``) and from this pass's
    ``pieces`` (``index`` and ``answer``: the shard a worker wrote it to; any order). A batch is
    yielded once it and every batch before it are answered; when the caller asks for the next
    one, the batch is committed and its answers' shards are released. An answer given twice (a
    retried task) counts once."""
    where = {i: store.ready[k] for i, k in enumerate(keys) if k in store.ready}
    start = 0
    batch = 0
    for piece in chain([{"index": (), "answer": ()}], pieces):  # first: what is ready already
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
