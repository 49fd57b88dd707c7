"""A table's columns kept in an unlinked temporary file, read back a range of rows at a time.

A column society's setup reads its personas' texts and attributes twice after writing them to the
hub (the archetypes' attribute levels, their fit sample and every chunk's assignment), between
phases that need memory of their own (the links' key index, the agents' insert). Held in memory
they are most of what the setup keeps per persona; in this file they cost a batch at a time.
"""

from __future__ import annotations

import tempfile
from typing import IO

import numpy as np
import pyarrow as pa


class RowFile:
    """A table written to an Arrow IPC file of ``batch``-row record batches, which the system
    removes when this object (its open file) goes.

    Args:
        table: the columns to keep.
        batch: rows a record batch (every batch but the last holds exactly this many).
    """

    def __init__(self, table: pa.Table, batch: int) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self._file: IO[bytes] = tempfile.TemporaryFile()  # unlinked already: nothing to clean up
        self._batch = batch
        self._rows = table.num_rows
        self.schema = table.schema
        with pa.ipc.new_file(pa.PythonFile(self._file, mode="w"), table.schema) as writer:
            for lo in range(0, table.num_rows, batch):
                writer.write_table(table.slice(lo, batch).combine_chunks(),
                                   max_chunksize=batch)

    def __len__(self) -> int:
        return self._rows

    def _batches(self, first: int, last: int) -> pa.Table:
        """Return record batches ``first`` to ``last`` (inclusive) as one table."""
        reader = pa.ipc.open_file(pa.PythonFile(self._file, mode="r"))
        return pa.Table.from_batches([reader.get_batch(i) for i in range(first, last + 1)],
                                     schema=self.schema)

    def slice(self, lo: int, hi: int) -> pa.Table:
        """Return rows [lo, hi)."""
        lo, hi = max(lo, 0), min(hi, self._rows)
        if hi <= lo:
            return self.schema.empty_table()
        first = lo // self._batch
        return self._batches(first, (hi - 1) // self._batch).slice(lo - first * self._batch,
                                                                     hi - lo)

    def take(self, at: np.ndarray) -> pa.Table:
        """Return the rows at the given positions, in their order, reading each batch once."""
        at = np.asarray(at, dtype=np.int64)
        if not at.size:
            return self.schema.empty_table()
        if at.min() < 0 or at.max() >= self._rows:
            raise IndexError(f"row positions must be in [0, {self._rows})")
        which = at // self._batch
        order = np.argsort(which, kind="stable")
        parts = []
        for b in np.unique(which).tolist():
            rows = at[which == b] - b * self._batch
            parts.append(self._batches(b, b).take(pa.array(rows)))
        table = pa.concat_tables(parts)
        # parts hold the rows grouped by batch: put them back in the order asked
        return table.take(pa.array(np.argsort(order, kind="stable")))
