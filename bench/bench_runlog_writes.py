"""Batched run-log writes (Arrow, one transaction) vs per-row INSERT, measured in one run.

    python bench/bench_runlog_writes.py [--rows 20000] [--per-row-rows 2000]

Per-row inserts are timed on a smaller sample (they are slow) and reported per row; the ratio
compares rows per second of both methods on the same table, machine and run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from personahub.core.store import connect, insert_rows, transaction


def rows(n: int, offset: int = 0) -> list[dict]:
    return [{
        "emission_id": f"bench:{1 + i // 1000}:{i}", "run_id": "bench", "step": 1 + i // 1000,
        "agent_id": i, "persona_id": f"p{i:015x}", "kind": ("instruction", "npc_dialogue")[i % 2],
        "content": {"instruction": f"Please help me plan item {i} of my week."},
        "text": f"Please help me plan item {i} of my week.", "target_persona_id": None,
        "model": "offline", "is_duplicate": False, "duplicate_of": None,
    } for i in range(offset, offset + n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--per-row-rows", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        con = connect(Path(folder) / "bench.duckdb")
        batch = rows(args.rows)
        started = time.perf_counter()
        with transaction(con):
            insert_rows(con, "emissions", batch)
        batched_s = time.perf_counter() - started

        single = rows(args.per_row_rows, offset=args.rows)
        columns = list(single[0])
        sql = (f"INSERT INTO emissions ({', '.join(columns)}) VALUES "
               f"({', '.join('?' for _ in columns)})")
        started = time.perf_counter()
        with transaction(con):
            for row in single:
                con.execute(sql, [json.dumps(v) if isinstance(v, dict) else v for v in row.values()])
        per_row_s = time.perf_counter() - started
        total = con.execute("select count(*) from emissions").fetchall()[0][0]
        assert total == args.rows + args.per_row_rows
    batched_rate = args.rows / batched_s
    per_row_rate = args.per_row_rows / per_row_s
    print(f"batched (Arrow, 1 transaction): {args.rows} rows in {batched_s:.3f} s "
          f"= {batched_rate:,.0f} rows/s")
    print(f"per-row INSERT (1 transaction): {args.per_row_rows} rows in {per_row_s:.3f} s "
          f"= {per_row_rate:,.0f} rows/s")
    print(f"ratio batched / per-row: {batched_rate / per_row_rate:,.0f}x")


if __name__ == "__main__":
    main()
