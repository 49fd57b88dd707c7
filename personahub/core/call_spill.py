"""Call records that outlive a kill: each final attempt is appended at once to a small JSON-lines file,
which the kernel commits at resume or stop; batch commits alone would lose the billed attempts of a
batch that never commits.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import orjson

from personahub.core.contracts import SENT, CallRecord

SUFFIX = ".calls.jsonl"
_FIELDS = frozenset(f.name for f in fields(CallRecord))


class RecordSink(Protocol):
    """Where call records go as soon as they are final."""

    def sent(self, record: CallRecord) -> None:
        """Receive an attempt about to go out."""

    def early(self, records: Sequence[CallRecord]) -> None:
        """Receive attempts of a call still going on that no layer will change."""

    def done(self, records: Sequence[CallRecord]) -> None:
        """Every attempt of a call that ended."""


class SinkSlot:
    """The sink the seam's layers write to; one per client, so one switch reaches them all."""

    __slots__ = ("sink",)

    def __init__(self) -> None:
        self.sink: RecordSink | None = None


@dataclass(frozen=True)
class SpilledCall:
    """One line of a spill: the job's tags and the attempt's record."""

    tags: Mapping[str, object]
    record: CallRecord


def spill_path(db: str | Path, job_id: str) -> Path:
    """Where a job's spill lives: next to its database."""
    db = Path(db)
    return db.with_name(f"{db.name}.{job_id}{SUFFIX}")


class CallSpill:
    """Appends final call records as tagged JSON lines."""

    def __init__(self, path: str | Path, tags: Mapping[str, object] | None = None) -> None:
        self.path = Path(path)
        self.tags: dict[str, object] = dict(tags or {})
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._head = b'{"tags":' + orjson.dumps(dict(tags or {})) + b',"record":'
        self._early: set[str] = set()
        self._pending: set[str] = set()

    def _write(self, records: Sequence[CallRecord]) -> None:
        if self._fd is None or not records:
            return
        self._pending.update(r.call_id for r in records)
        # orjson: a record in 3 us where json.dumps takes 19 (bench/bench_faults.py --spill)
        head = self._head
        os.write(self._fd, b"".join(head + orjson.dumps(r.__dict__) + b"}\n" for r in records))

    def sent(self, record: CallRecord) -> None:
        """Write an attempt before its request goes out, so a kill leaves the billed attempt on record."""
        if self._fd is None:
            return
        self._pending.add(record.call_id)
        line = {**record.__dict__, "status": SENT, "tokens_in": None, "tokens_out": None}
        os.write(self._fd, self._head + orjson.dumps(line) + b"}\n")

    def early(self, records: Sequence[CallRecord]) -> None:
        """Write attempts of a call still going on."""
        fresh = [r for r in records if r.call_id not in self._early]
        self._early.update(r.call_id for r in fresh)
        self._write(fresh)

    def done(self, records: Sequence[CallRecord]) -> None:
        if self._early:
            written = self._early
            fresh = [r for r in records if r.call_id not in written]
            written.difference_update(r.call_id for r in records)
            records = fresh
        self._write(records)

    def sync(self) -> None:
        """Flush to the disk, so a machine crash spares it too."""
        if self._fd is not None:
            os.fsync(self._fd)

    def clear(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        self._pending.clear()

    def committed(self, call_ids: Iterable[str]) -> None:
        """Note committed attempts; once all are, the file is emptied."""
        self._pending.difference_update(call_ids)
        if not self._pending:
            self.clear()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CallSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read(path: str | Path) -> list[SpilledCall]:
    """Read the attempts a spill holds, in order; a line cut by a kill is skipped."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    calls: list[SpilledCall] = []
    for line in data.splitlines():
        try:
            item = orjson.loads(line)
            record = item["record"]
            if "batch_id" in record:  # a spill of schema version 2 and before
                record.setdefault("provider_batch_id", record.pop("batch_id"))
            values = {k: v for k, v in record.items() if k in _FIELDS}
            calls.append(SpilledCall(dict(item.get("tags") or {}), CallRecord(**values)))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue
    return calls


def remove(path: str | Path) -> None:
    Path(path).unlink(missing_ok=True)


def worker_folder(db: str | Path, job_id: str) -> Path:
    db = Path(db)
    return db.with_name(f"{db.name}.{job_id}.calls.d")


@dataclass(frozen=True)
class WorkerSpill:
    """What a worker process needs to spill a job's attempts (plain values: it travels by pickle)."""

    folder: str
    tags: Mapping[str, object]

    @classmethod
    def beside(cls, db: str | Path, job_id: str, tags: Mapping[str, object]) -> WorkerSpill:
        """Return the job's worker folder, created on the driver."""
        folder = worker_folder(db, job_id)
        folder.mkdir(exist_ok=True)
        return cls(str(folder), dict(tags))

    def open(self) -> CallSpill | None:
        """Open this worker's spill file; None when the worker does not see the folder."""
        folder = Path(self.folder)
        if not folder.is_dir():
            return None
        return CallSpill(folder / f"worker-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}",
                         self.tags)


def read_job(db: str | Path, job_id: str) -> list[SpilledCall]:
    """Every attempt the job's spills hold, the driver's first."""
    spilled = read(spill_path(db, job_id))
    folder = worker_folder(db, job_id)
    if folder.is_dir():
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            spilled.extend(read(path))
    return spilled


def remove_job(db: str | Path, job_id: str) -> None:
    remove(spill_path(db, job_id))
    remove_workers(db, job_id)


def remove_workers(db: str | Path, job_id: str) -> None:
    shutil.rmtree(worker_folder(db, job_id), ignore_errors=True)
