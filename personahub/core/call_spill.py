"""Call records that outlive a kill: each attempt appended to a small file as soon as it is final.

A job commits a batch's call records with the batch's rows, in one transaction: an exact account
of what was committed, but the attempts of a batch that never committed (a kill, an interrupt,
a stop) would be lost, and billed calls go uncounted. So the seam also hands every attempt, once
nothing will change it, to a ``RecordSink``; ``CallSpill`` is the one the job kernel uses: one
JSON line per attempt, appended with a single ``write`` to a file opened ``O_APPEND``. A write
reaches the operating system before the next attempt starts, so a ``kill -9`` loses nothing
written (only a crash of the machine would: ``sync`` fsyncs, for a kernel that commits a batch).

When an attempt is final (``contracts.CallRecord`` is changed by the layers above the endpoint
until then):
- a failed attempt that is asked again, or that ends the call, when the retry layer has decided
  (``seam_retry``);
- an answer the validating layer sends back for a second chance (``seam_validate``);
- every other attempt when its call ends, with a value, without, or with an exception that
  carries its records (``seam_accounting``, the top of the stack).

Nothing final is written twice: the attempts written during a call are remembered by ``call_id``
until the call ends. An HTTP attempt also gets a line as it goes out (``sent``: written by the
endpoint just before the request, status ``sent``, tokens unknown), since the server has it and a
paid API bills it whatever happens here: an attempt in flight at a kill keeps that line, and the
kernel writes it to ``llm_calls`` as a ``sent`` row (a resume asks again, as a new attempt). The
attempt's final line, written later, supersedes its ``sent`` line (``core.commit.commit_spilled``).

The kernel's side (see docs/models.md, "When calls fail"): open one spill per job, next to the
database (``spill_path``); ``LLMClient.spill_to(spill)`` while the job runs; at resume, and when
a job stops, insert the lines whose ``call_id`` is not in ``llm_calls`` yet (``read``: the tags
the kernel gave and the record: ``core.commit.commit_spilled``), then remove the file; after each
commit, report the attempts it wrote (``committed``): the file is emptied whenever every line in
it is committed, so it stays small.

Calls made elsewhere (``--executor ray``: the job's calls run in worker processes, which a kill
of the driver ends mid-batch) are spilled where they are made: each worker appends to a file of
its own in the job's worker folder (``worker_folder``, created by the driver; ``WorkerSpill``
travels to the workers and opens it there). Why not only ship each batch's records back with its
answers, as the workers do anyway: a Ray task returns when all of its calls are done, so the
attempts of the tasks in flight at a kill (a whole step's, for a run) would still be lost. The
kernel reads the driver's file and every worker's (``read_job``; the driver's first, so where a
call id is in both the record the driver's layers finished wins), and removes them together
(``remove_job``). A worker file is not emptied as batches commit (a worker does not see the
commits): it grows with the job, at about 300 bytes an attempt (twice that over HTTP: the
``sent`` line and the final one), and the kernel reads it once at
the job's end (``bench/bench_faults.py --spill``). On a cluster, a worker that does not see the
folder (the database's folder is not on a shared filesystem) spills nothing, and the records
shipped back with the answers are all there is, as before.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import orjson

from personahub.core.contracts import SENT, CallRecord

SUFFIX = ".calls.jsonl"
_FIELDS = frozenset(f.name for f in fields(CallRecord))


class RecordSink(Protocol):
    """Where final call records go as soon as they are final (see the module doc)."""

    def sent(self, record: CallRecord) -> None:
        """An attempt about to go out (its final record follows through ``early``/``done``)."""

    def early(self, records: Sequence[CallRecord]) -> None:
        """Attempts of a call still going on that no layer will change any more."""

    def done(self, records: Sequence[CallRecord]) -> None:
        """Every attempt of a call that ended (those given to ``early`` among them)."""


class SinkSlot:
    """The sink the seam's layers write to (None: none). One per client, shared by its layers,
    so that ``LLMClient.spill_to`` switches all of them at once."""

    __slots__ = ("sink",)

    def __init__(self) -> None:
        self.sink: RecordSink | None = None


@dataclass(frozen=True)
class SpilledCall:
    """One line of a spill: the tags the job gave (its kind and id) and the attempt's record."""

    tags: Mapping[str, Any]
    record: CallRecord


def spill_path(db: str | Path, job_id: str) -> Path:
    """Where a job's spill lives: next to its database, named after the job."""
    db = Path(db)
    return db.with_name(f"{db.name}.{job_id}{SUFFIX}")


class CallSpill:
    """Appends final call records to ``path`` as JSON lines tagged with ``tags`` (module doc)."""

    def __init__(self, path: str | Path, tags: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.tags: dict[str, Any] = dict(tags or {})
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._head = b'{"tags":' + orjson.dumps(dict(tags or {})) + b',"record":'
        self._early: set[str] = set()
        self._pending: set[str] = set()  # written, and not yet reported committed

    def _write(self, records: Sequence[CallRecord]) -> None:
        if self._fd is None or not records:
            return
        self._pending.update(r.call_id for r in records)
        # orjson: a record in 3 us where json.dumps takes 19 (bench/bench_faults.py --spill)
        head = self._head
        os.write(self._fd, b"".join(head + orjson.dumps(r.__dict__) + b"}\n" for r in records))

    def sent(self, record: CallRecord) -> None:
        """Write an attempt as it goes out: status ``sent``, tokens unknown (module doc). One
        ``write`` of a line of about 300 bytes, before the request: a kill after it leaves the
        billed attempt on record."""
        if self._fd is None:
            return
        self._pending.add(record.call_id)
        line = {**record.__dict__, "status": SENT, "tokens_in": None, "tokens_out": None}
        os.write(self._fd, self._head + orjson.dumps(line) + b"}\n")

    def early(self, records: Sequence[CallRecord]) -> None:
        """Write attempts of a call still going on (remembered, so ``done`` skips them)."""
        fresh = [r for r in records if r.call_id not in self._early]
        self._early.update(r.call_id for r in fresh)
        self._write(fresh)

    def done(self, records: Sequence[CallRecord]) -> None:
        """Write a finished call's attempts that ``early`` did not."""
        if self._early:
            written = self._early
            fresh = [r for r in records if r.call_id not in written]
            written.difference_update(r.call_id for r in records)
            records = fresh
        self._write(records)

    def sync(self) -> None:
        """Flush what was written to the disk (a machine crash, not only a kill, spares it)."""
        if self._fd is not None:
            os.fsync(self._fd)

    def clear(self) -> None:
        """Empty the file: every line in it is in ``llm_calls`` (committed or recovered)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        self._pending.clear()

    def committed(self, call_ids: Iterable[str]) -> None:
        """These attempts are in ``llm_calls`` now (a batch committed them); once every line
        written is, the file is emptied, so it holds only what a kill could lose."""
        self._pending.difference_update(call_ids)
        if not self._pending:
            self.clear()

    def close(self) -> None:
        """Close the file (kept on disk: ``read`` and ``remove`` are the kernel's)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CallSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read(path: str | Path) -> list[SpilledCall]:
    """The attempts a spill holds, in the order written (an attempt's ``sent`` line, then its
    final one); none when the file is missing. A line cut short by a kill in mid-write (the
    last one) is skipped; so is one that is not a record. Figures are as written: they become
    ``llm_calls`` rows through ``core.commit.call_rows``, which stores an impossible one as
    NULL."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    calls: list[SpilledCall] = []
    for line in data.splitlines():
        try:
            item = orjson.loads(line)
            values = {k: v for k, v in item["record"].items() if k in _FIELDS}
            calls.append(SpilledCall(dict(item.get("tags") or {}), CallRecord(**values)))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue
    return calls


def remove(path: str | Path) -> None:
    """Delete a spill once its job is over and every line is in ``llm_calls``."""
    Path(path).unlink(missing_ok=True)


def worker_folder(db: str | Path, job_id: str) -> Path:
    """Where a job's workers spill (a file each): next to the database, named after the job."""
    db = Path(db)
    return db.with_name(f"{db.name}.{job_id}.calls.d")


@dataclass(frozen=True)
class WorkerSpill:
    """What a worker process needs to spill a job's attempts: the job's worker folder and its
    tags (plain values: this travels to the workers by pickle)."""

    folder: str
    tags: Mapping[str, Any]

    @classmethod
    def beside(cls, db: str | Path, job_id: str, tags: Mapping[str, Any]) -> WorkerSpill:
        """The job's worker folder, created here on the driver (a worker never creates it)."""
        folder = worker_folder(db, job_id)
        folder.mkdir(exist_ok=True)
        return cls(str(folder), dict(tags))

    def open(self) -> CallSpill | None:
        """This worker's own spill file in the folder; None when the worker does not see the
        folder (another machine without the database's filesystem)."""
        folder = Path(self.folder)
        if not folder.is_dir():
            return None
        return CallSpill(folder / f"worker-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}",
                         self.tags)


def read_job(db: str | Path, job_id: str) -> list[SpilledCall]:
    """Every attempt job ``job_id``'s spills hold: the driver's file first, then each worker's."""
    spilled = read(spill_path(db, job_id))
    folder = worker_folder(db, job_id)
    if folder.is_dir():
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            spilled.extend(read(path))
    return spilled


def remove_job(db: str | Path, job_id: str) -> None:
    """Delete the driver's spill and the worker folder once every line is in ``llm_calls``."""
    remove(spill_path(db, job_id))
    remove_workers(db, job_id)


def remove_workers(db: str | Path, job_id: str) -> None:
    """Delete the job's worker folder (its lines are in ``llm_calls``)."""
    shutil.rmtree(worker_folder(db, job_id), ignore_errors=True)
