"""A table kept in an unlinked temporary file and read back a range or a pick of rows at a time
(sim/row_file.py)."""

import numpy as np
import pyarrow as pa
import pytest

from personahub.sim.row_file import RowFile


def _table(n: int) -> pa.Table:
    parts = [pa.table({"text": [f"t{i}" for i in range(lo, min(lo + 4, n))],
                       "n": list(range(lo, min(lo + 4, n)))}) for lo in range(0, n, 4)]
    # several chunks, of other sizes than the file's batches
    return pa.concat_tables(parts) if parts else pa.table({"text": pa.array([], pa.string()),
                                                           "n": pa.array([], pa.int64())})


def test_a_range_reads_back_across_batches():
    table = _table(23)
    kept = RowFile(table, batch=5)
    assert len(kept) == 23
    for lo, hi in [(0, 23), (0, 5), (3, 12), (5, 10), (20, 23), (22, 40), (7, 7)]:
        assert kept.slice(lo, hi).equals(table.slice(lo, max(min(hi, 23) - lo, 0)))


def test_a_pick_reads_back_in_the_order_asked():
    table = _table(23)
    kept = RowFile(table, batch=5)
    at = np.array([22, 0, 7, 6, 19, 0, 11])
    assert kept.take(at).to_pylist() == table.take(pa.array(at)).to_pylist()
    assert kept.take(np.array([], dtype=np.int64)).num_rows == 0
    with pytest.raises(IndexError):
        kept.take(np.array([23]))


def test_an_empty_table_and_a_bad_batch():
    assert RowFile(_table(0), batch=3).slice(0, 5).num_rows == 0
    with pytest.raises(ValueError, match="batch"):
        RowFile(_table(3), batch=0)
